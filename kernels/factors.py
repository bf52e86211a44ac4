"""Layout of the reported factors shared by the NumPy and CUDA kernels.

Rows in kernel order: btc price, network hashrate, hashprice, AI lease rate, AI occupancy (as a
logit in log space), GPU-hour price, then the power price of every region. Start values shift
the running sums and center the log-space histograms; per-path features are averaged over
groups of periods.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .market import MarketParams

#: Row of the occupancy factor (logit, not log).
OCC_ROW = 4


def factor_values_from_logs(logs: Any, xp: Any = np) -> Any:
    """Values from log-values (logistic for the occupancy row), shape ``(6 + R, n)``."""
    vals = xp.exp(logs)
    vals[OCC_ROW] = 1.0 / (1.0 + xp.exp(-logs[OCC_ROW]))
    return vals


def start_logs(mp: MarketParams) -> np.ndarray:
    """Log start value of every reported factor: histogram centers and the shift of the sums."""
    ln_hp0 = np.log(mp.blocks_per_day * (mp.subsidy_btc[0] + mp.fees_btc) / 1000.0)
    return np.concatenate(
        [
            [mp.ln_p0, mp.ln_h0, ln_hp0 + mp.ln_p0 - mp.ln_h0, mp.ln_lease0, mp.occ_u0, mp.ln_gpu0],
            mp.power_x0,
        ]
    )


def feature_groups(mp: MarketParams, periods_per_group: int) -> np.ndarray:
    """Group index of each period for per-path features (yearly means by default)."""
    return np.arange(mp.n_periods) // periods_per_group
