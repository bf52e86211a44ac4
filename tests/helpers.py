"""Helpers shared by tests: scenarios with overridden fields, exact normal CDF."""

from __future__ import annotations

import copy
import math
from typing import Any

from hashpivot.scenarios import Scenario, parse_yaml, shipped_path, validate_data

#: Monte Carlo checks pass within this many standard errors.
N_SE = 4.0


def deep_update(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def shipped_data(name: str = "demo") -> dict[str, Any]:
    return parse_yaml(shipped_path(name).read_text())


def scenario(name: str = "demo", **changes: Any) -> Scenario:
    """A shipped scenario with nested fields replaced (``market={'btc': {...}}``)."""
    return validate_data(deep_update(shipped_data(name), changes))


def norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


QUIET_MARKET = {
    "btc": {"vol_per_year": 0.0, "jump_intensity_per_year": 0.0, "drift_per_year": 0.0},
    "hashrate": {
        "vol_per_year": 0.0,
        "drift_per_year": 0.0,
        "elasticity_to_btc": 0.0,
        "halving_step_log": 0.0,
    },
    "fees_btc_per_block": 0.0,
    "power_regions": {
        "ercot": {
            "mean_usd_per_mwh": 40.0,
            "initial_usd_per_mwh": 40.0,
            "vol_per_year": 0.0,
            "intra_period_dispersion": 0.0,
        }
    },
    "ai_lease": {"vol_per_year": 0.0},
    "ai_occupancy": {"vol_per_year": 0.0},
    "gpu_hour": {"vol_per_year": 0.0},
}
