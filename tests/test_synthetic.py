"""Synthetic fleets are valid for any size and deterministic in the seed."""

from __future__ import annotations

import pytest

from hashpivot.scenarios import Scenario, synthetic, validate_data


@pytest.mark.parametrize("n", [1, 10, 200])
def test_synthetic_is_valid(n: int) -> None:
    sc = synthetic(n, seed=7)
    assert isinstance(sc, Scenario)
    assert len(sc.sites) == n
    assert sc.horizon.n_periods == 60
    validate_data(sc.model_dump(mode="json"))


@pytest.mark.parametrize("n", [1, 10, 200])
def test_synthetic_is_deterministic_in_seed(n: int) -> None:
    assert synthetic(n, seed=3) == synthetic(n, seed=3)
    assert synthetic(n, seed=3) != synthetic(n, seed=4)


def test_synthetic_rejects_empty_fleet() -> None:
    with pytest.raises(ValueError, match="n_sites"):
        synthetic(0)
