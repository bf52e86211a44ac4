"""Result types shared by the NumPy and CUDA kernels (no dispatch: both backends import it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PathOutcomes:
    """Per-path results of one plan on a chunk of paths."""

    equity_usd: Any  # (n,)
    default_period: Any  # (n,) int, T = never
    breach: Any  # (n,) bool
    min_dscr: Any  # (n,)
    ai_share_sum: Any  # (T,) sum over the chunk's paths
    debt_sum_usd: Any  # (T,) sum over the chunk's paths
    cash_usd: Any  # (k, T) for the first k paths of the chunk (0 after default)
    emergency_btc: Any  # (n,)
    emergency_draw_usd: Any  # (n,)
    min_cash_breach: Any = None  # (n,) bool: cash below the minimum after recourse, alive
    breach_mask: Any = None  # (n,) int: bit0 DSCR, bit1 leverage, bit2 min cash, 3+f facility f
