"""Cash-flow helpers against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from hashpivot.kernels.cashflow import cvar, trailing_sum


def _cvar_brute(losses: np.ndarray, weights: np.ndarray, alpha: float) -> float:
    """min over η of η + E[(L − η)⁺]/(1 − α): the minimum sits at one of the losses."""
    w = weights / weights.sum()
    return min(eta + (w * np.maximum(losses - eta, 0)).sum() / (1 - alpha) for eta in losses)


@pytest.mark.parametrize("seed", range(5))
def test_cvar_equals_rockafellar_uryasev(seed: int) -> None:
    rng = np.random.default_rng(seed)
    losses = rng.normal(size=17)
    weights = rng.random(17)
    for alpha in (0.5, 0.8, 0.95, 0.99):
        assert cvar(losses, weights, alpha) == pytest.approx(
            _cvar_brute(losses, weights, alpha), rel=1e-12
        )


def test_trailing_sum() -> None:
    x = np.arange(1.0, 7.0)
    np.testing.assert_allclose(trailing_sum(x, 3), [1, 3, 6, 9, 12, 15])
