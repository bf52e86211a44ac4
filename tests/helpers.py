"""Helpers shared by tests: scenarios with overridden fields, exact normal CDF."""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

from hashpivot.scenarios import Scenario, parse_yaml, shipped_path, validate_data
from hashpivot.scenarios.synthetic import synthetic_data

#: Monte Carlo checks pass within this many standard errors.
N_SE = 4.0
#: ``optimize`` keywords of the pipeline without its validation (one replication, no
#: calibration, no gap batches): for tests whose subject is something else.
NO_VALIDATION: dict[str, Any] = {"replications": 1, "calibration_rounds": 0, "validate": False}
#: The same as ``hashpivot optimize`` flags.
NO_VALIDATION_FLAGS = ["--replications", "1", "--calibration-rounds", "0", "--no-validate"]


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
        "down_response_per_year": 0.0,
        "up_response_per_year": 0.0,
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


def tiny_data(
    n_sites: int = 1,
    n_periods: int = 4,
    *,
    lease: bool = False,
    facility: bool = False,
    cvar_weight: float = 0.0,
    **changes: Any,
) -> dict[str, Any]:
    """A tiny scenario (1–2 sites, a few quarters, lead time 1) for brute-force checks."""
    base = shipped_data("demo")
    sites = [
        {
            "name": f"s{i}",
            "region": "ercot",
            "interconnect_mw": 60.0,
            "asic_mw": 60.0,
            "efficiency_j_per_th": 17.5 + 4 * i,
            "uptime": 0.95,
            "convertible_mw": 60.0 - 20 * i,
            "conversion": {
                "block_mw": 20.0,
                "capex_usd_per_it_mw": 8.0e6 + 1e6 * i,
                "it_mw_per_utility_mw": 0.7,
                "lead_time_periods": 1,
                "max_blocks_per_period": 2,
            },
            "asic_salvage_usd_per_mw": 5.0e4,
        }
        for i in range(n_sites)
    ]
    data = {
        "name": "tiny",
        "horizon": {
            "start_date": "2027-01-01",
            "years": n_periods / 4,
            "period": "quarter",
            "discount_rate": 0.1,
            "cash_interest_rate": 0.03,
        },
        "sites": sites,
        "construction": {"max_blocks_per_period": 3},
        "gpu_racks": {"enabled": False},
        "lease_offers": [
            {
                "name": "L",
                "it_mw": 14.0,
                "rate_usd_per_kw_month": 160.0,
                "term_years": 10,
                "earliest_start_period": 1,
                "deliver_by_period": 2,
                "late_penalty_usd_per_mw_period": 2.0e4,
                "eligible_sites": [s["name"] for s in sites],
                "tenant_default_prob_per_year": 0.0,
            }
        ]
        if lease
        else [],
        "debt_facilities": [
            {
                "name": "F",
                "kind": "term_loan",
                "size_usd": 2.0e8,
                "rate_per_year": 0.08,
                "draw_start_period": 0,
                "draw_end_period": 0,
                "tenor_years": 5,
                "repayment": "bullet",
                "upfront_fee_share": 0.01,
            }
        ]
        if facility
        else [],
        "covenants": {
            "min_dscr": 0.0,
            "max_leverage": 1000.0,
            "min_cash_usd": 1.0e7,
            "confidence": 1.0,
        },
        "treasury": {"btc_held": 0.0, "cash_usd": 1.5e8},
        "market": base["market"],
        "valuation": {"ai_noi_multiple": 8.0, "mining_margin_multiple": 1.0},
        "risk": {"cvar_alpha": 0.8, "cvar_weight": cvar_weight},
    }
    return deep_update(data, changes)


def tiny(**kwargs: Any) -> Scenario:
    return validate_data(tiny_data(**kwargs))


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` (hidden ones included) with its bytes or link target."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = p.read_bytes()
            else:
                out[rel] = "dir"
    return out


def validation_example(*, holds: bool = True) -> dict[str, Any]:
    """A hand-made ``summary["validation"]`` (the shape ``optimize`` writes): 3 replications,
    a gap interval, a covenant bound that holds (or not), 2 calibration rounds, VSS, EVPI."""
    cand = [
        # replication, seed, in sample, out of sample, s.e., − kept, s.e., MW, leases, gap
        (0, 101, 617.24e6, 593.21e6, 1.43e6, -7.96e6, 0.91e6, 140.0, ["hyperscaler-a"], 1e-4),
        (1, 102, 621.0e6, 601.17e6, 1.41e6, 0.0, 0.0, 140.0, ["hyperscaler-a"], 2e-4),
        (2, 103, 609.9e6, 599.95e6, 1.38e6, -1.22e6, 0.88e6, 105.0, [], 1e-4),
    ]
    upper = 0.0871 if holds else 0.1362
    return {
        "replications": {
            "count": 3,
            "chosen": 1,
            "selection_paths": 20_000,
            "spread_usd": 7.96e6,
            "candidates": [
                {
                    "replication": r,
                    "seed": s,
                    "in_sample_objective_usd": ins,
                    "selection_objective_usd": obj,
                    "selection_stderr_usd": se,
                    "diff_vs_chosen_usd": d,
                    "diff_stderr_usd": dse,
                    "converted_mw": mw,
                    "leases_signed": leases,
                    "gap": gap,
                }
                for r, s, ins, obj, se, d, dse, mw, leases, gap in cand
            ],
        },
        "gap_ci": {
            "gbar_usd": 3.12e6,
            "s_usd": 2.05e6,
            "batches": 10,
            "batch_scenarios": 32,
            "batch_mean_paths": 4000,
            "upper95_usd": 4.31e6,
            "upper95_rel": 0.00717,
            "per_batch_usd": [3.1e6, 0.2e6, 5.5e6, 1.0e6, 4.4e6, 2.9e6, 6.0e6, 0.8e6, 3.3e6, 4.0e6],
        },
        "covenant_bound": {
            "confidence": 0.95,
            "target": 0.10,
            "paths": 20_000,
            "p_breach": 0.0823 if holds else 0.1315,
            "upper95": upper,
            "per_covenant": {
                "dscr": {"p": 0.0512, "upper95": 0.0538},
                "leverage": {"p": 0.0311, "upper95": 0.0332},
                "min_cash": {"p": 0.0024, "upper95": 0.0031},
            },
            "per_facility": {
                "senior-secured-2031": {"p": 0.0605, "upper95": 0.0634},
                "gpu-equipment-financing": {"p": 0.0, "upper95": 0.000150},
            },
            "p_default": 0.0035,
            "p_default_upper95": 0.0044,
            "holds": holds,
            "why": None
            if holds
            else "3 calibration rounds could not bring the bound below the limit",
        },
        "calibration_rounds": [
            {
                "round": 0,
                "in_sample_confidence": 0.9,
                "excuse_budget": 0.1,
                "in_sample_p_breach": 0.0625,
                "oos_p_breach": 0.1412,
                "oos_upper95": 0.1462,
                "paths": 5_000,
                "objective_usd": 606.04e6,
                "accepted": False,
            },
            {
                "round": 1,
                "in_sample_confidence": 0.975,
                "excuse_budget": 0.025,
                "in_sample_p_breach": 0.0,
                "oos_p_breach": 0.0823 if holds else 0.1315,
                "oos_upper95": upper,
                "paths": 5_000,
                "objective_usd": 601.17e6,
                "accepted": holds,
            },
        ],
        "vss": {
            "rp_usd": 601.17e6,
            "eev_usd": 560.55e6,
            "vss_usd": 40.62e6,
            "stderr_usd": 2.54e6,
            "lower95_usd": 35.64e6,
            "upper95_usd": 45.60e6,
        },
        "evpi": {
            "ws_usd": 655.3e6,
            "rp_usd": 601.17e6,
            "evpi_usd": 54.13e6,
            "stderr_usd": 6.1e6,
            "lower95_usd": 42.17e6,
            "upper95_usd": 64.16e6,
            "scenarios": 64,
        },
    }


def extreme_hashprice_data() -> dict[str, Any]:
    """Valid extremes that drive ln hashprice to ~85 by year 40 with no randomness: BTC at $10M
    growing at 100%/year, a 0.1 EH/s network shrinking 50%/year that never responds upwards,
    100 BTC subsidy halving every 1M blocks plus 50 BTC fees, 200 blocks a day, 1 J/TH sites."""
    d = synthetic_data(3, 1, years=40.0)
    m = d["market"]
    m["btc"].update(price_usd=1e7, drift_per_year=1.0, vol_per_year=0.0)
    m["btc"].update(jump_intensity_per_year=0.0)
    m["hashrate"].update(
        hashrate_eh_s=0.1, drift_per_year=-0.5, vol_per_year=0.0, up_response_per_year=0.0
    )
    m["halving"].update(
        block_height_at_start=0,
        blocks_per_day=200.0,
        initial_subsidy_btc=100.0,
        interval_blocks=1_000_000,
    )
    m["fees_btc_per_block"] = 50.0
    for s in d["sites"]:
        s["efficiency_j_per_th"] = 1.0
    return d
