"""Synthetic fleets of any size, for benchmarks and property tests.

The generator draws site sizes, efficiencies, power contracts, conversion economics and lease
offers from ranges calibrated on the figures of ``scenarios/SOURCES.md`` (the ones the shipped
scenarios cite), and always returns a scenario that passes validation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .schema import Scenario
from .validate import validate_data

#: Power regions of synthetic fleets: (name, mean $/MWh, intra-period dispersion).
_REGIONS: tuple[tuple[str, float, float], ...] = (
    ("ercot-west", 38.0, 0.9),
    ("ercot-north", 42.0, 0.7),
    ("pjm", 48.0, 0.5),
    ("nyiso", 35.0, 0.4),
)


def synthetic_data(n_sites: int, seed: int = 0, *, years: float = 15.0) -> dict[str, Any]:
    """The mapping of a synthetic scenario (see :func:`synthetic`)."""
    if n_sites < 1:
        raise ValueError(f"n_sites must be >= 1, got {n_sites}")
    rng = np.random.default_rng([seed, n_sites])
    n_periods = round(years * 4)
    regions = _REGIONS[: max(1, min(len(_REGIONS), 1 + n_sites // 5))]
    sites = []
    for i in range(n_sites):
        region = regions[int(rng.integers(len(regions)))]
        block = float(rng.choice([25.0, 50.0, 100.0]))
        asic = block * int(rng.integers(2, 9))
        fixed = bool(rng.random() < 0.3)
        sites.append(
            {
                "name": f"site-{i:03d}",
                "region": region[0],
                "interconnect_mw": asic * float(rng.uniform(1.0, 1.3)),
                "asic_mw": asic,
                "efficiency_j_per_th": float(rng.uniform(13.5, 28.0)),
                "uptime": float(rng.uniform(0.90, 0.97)),
                "power": (
                    {
                        "market_indexed_share": 0.0,
                        "fixed_price_usd_per_mwh": float(rng.uniform(25.0, 40.0)),
                        "resale_allowed": bool(rng.random() < 0.7),
                    }
                    if fixed
                    else {"market_indexed_share": 1.0}
                ),
                "convertible_mw": asic * float(rng.choice([0.5, 0.75, 1.0])),
                "conversion": {
                    "block_mw": block,
                    "capex_usd_per_it_mw": float(rng.uniform(8.0e6, 1.2e7)),
                    "it_mw_per_utility_mw": float(rng.uniform(0.65, 0.80)),
                    "lead_time_periods": int(rng.integers(3, 8)),
                    "max_blocks_per_period": int(rng.integers(1, 3)),
                    "opex_usd_per_it_mw_year": 1.5e5,
                },
                "asic_salvage_usd_per_mw": float(rng.uniform(5e4, 1.5e5)),
                "fixed_opex_usd_per_mw_year": float(rng.uniform(5e4, 8e4)),
            }
        )
    total_mw = sum(s["asic_mw"] for s in sites)
    offers = []
    for j in range(max(1, n_sites // 4)):
        eligible = sorted(
            {
                sites[int(k)]["name"]
                for k in rng.choice(n_sites, size=min(n_sites, 3), replace=False)
            }
        )
        cap_it = min(
            s["convertible_mw"] * s["conversion"]["it_mw_per_utility_mw"]
            for s in sites
            if s["name"] in eligible
        )
        start = int(rng.integers(2, min(8, n_periods - 1)))
        offers.append(
            {
                "name": f"offer-{j:03d}",
                "tenant": f"tenant-{j:03d}",
                "it_mw": round(float(cap_it * rng.uniform(0.3, 0.8)), 1),
                "rate_usd_per_kw_month": float(rng.uniform(100.0, 165.0)),
                "escalator_per_year": float(rng.uniform(0.02, 0.03)),
                "term_years": float(rng.choice([10.0, 12.0, 15.0])),
                "earliest_start_period": start,
                "deliver_by_period": min(n_periods - 1, start + int(rng.integers(4, 10))),
                "late_penalty_usd_per_mw_period": 1.0e5,
                "eligible_sites": eligible,
                "tenant_default_prob_per_year": float(rng.uniform(0.003, 0.04)),
            }
        )
    capex_scale = total_mw * 0.7 * 1.0e7
    last = n_periods - 1
    facilities = [
        {
            "name": "senior-secured",
            "kind": "senior_secured",
            "size_usd": 0.5 * capex_scale,
            "rate_per_year": 0.07125,
            "draw_end_period": min(12, last),
            "tenor_years": 6.0,
            "repayment": "linear",
            "upfront_fee_share": 0.015,
        },
        {
            "name": "convertible",
            "kind": "convertible",
            "size_usd": 0.15 * capex_scale,
            "rate_per_year": 0.0,
            "draw_end_period": min(4, last),
            "tenor_years": 5.0,
            "repayment": "bullet",
            "upfront_fee_share": 0.02,
            "covenants": False,
        },
    ]
    names = ["btc", "hashrate"] + [f"power:{r[0]}" for r in regions]
    corr = np.eye(len(names))
    corr[0, 1] = corr[1, 0] = 0.3
    corr[2:, 2:] = 0.7
    np.fill_diagonal(corr, 1.0)
    return {
        "name": f"synthetic-{n_sites}-{seed}",
        "description": f"Synthetic fleet of {n_sites} sites (seed {seed}) for benchmarks.",
        "horizon": {"start_date": "2027-01-01", "years": years, "period": "quarter"},
        "sites": sites,
        "construction": {"max_blocks_per_period": max(2, n_sites // 2)},
        "gpu_racks": {"max_racks_per_period": 50 * n_sites},
        "lease_offers": offers,
        "debt_facilities": facilities,
        "covenants": {
            "min_dscr": 1.25,
            "max_leverage": 6.0,
            "min_cash_usd": 0.02 * capex_scale,
            "confidence": 0.9,
        },
        "treasury": {
            "btc_held": 20.0 * total_mw,
            "btc_floor": 2.0 * total_mw,
            "max_btc_sale_per_period": 5.0 * total_mw,
            "cash_usd": 0.1 * capex_scale,
        },
        "market": {
            "btc": {
                "price_usd": 60000.0,
                "drift_per_year": 0.12,
                "vol_per_year": 0.55,
                "jump_intensity_per_year": 4.0,
                "jump_mean_log": -0.1,
                "jump_std_log": 0.1,
            },
            "hashrate": {
                "hashrate_eh_s": 1000.0,
                "drift_per_year": 0.1,
                "vol_per_year": 0.15,
                "lag_periods": 1,
            },
            "halving": {"block_height_at_start": 982000},
            "fees_btc_per_block": 0.036,
            "power_regions": {
                r[0]: {
                    "mean_usd_per_mwh": r[1],
                    "initial_usd_per_mwh": r[1],
                    "intra_period_dispersion": r[2],
                }
                for r in regions
            },
            "ai_lease": {"rate_usd_per_kw_month": 130.0},
            "gpu_hour": {"price_usd": 2.91},
            "correlation": {"factors": names, "matrix": corr.round(6).tolist()},
        },
        "risk": {"cvar_alpha": 0.95, "cvar_weight": 0.1},
    }


def synthetic(n_sites: int, seed: int = 0, *, years: float = 15.0) -> Scenario:
    """A valid synthetic scenario of ``n_sites`` sites, deterministic in ``seed``.

    Parameters
    ----------
    n_sites
        Number of sites (1 or more; benchmarks use 10 to 200).
    seed
        Seed of the generator; the same seed gives the same scenario.
    years
        Horizon length [years], in quarters.
    """
    return validate_data(
        synthetic_data(n_sites, seed, years=years), f"synthetic({n_sites}, {seed})"
    )
