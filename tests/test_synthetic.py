"""Synthetic fleets are valid for any size and deterministic in the seed."""

from __future__ import annotations

import re

import pytest

from hashpivot.scenarios import Scenario, synthetic, synthetic_data, validate_data
from hashpivot.scenarios.schema import SCENARIO_NAME_PATTERN


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


@pytest.mark.parametrize(("n", "seed"), [(1, 0), (50, 12345), (1000, 2**32)])
def test_synthetic_names_are_plain_identifiers(n: int, seed: int) -> None:
    data = synthetic_data(n, seed, years=2.0)
    assert re.fullmatch(SCENARIO_NAME_PATTERN, data["name"])
    if n <= 50:  # the 1,000-site fleet checks the name only (validation of it takes seconds)
        assert validate_data(data).name == data["name"]
