"""Result types shared by the NumPy and CUDA kernels (no dispatch: both backends import it).

Breach mask of a path (:attr:`PathOutcomes.breach_mask`), one bit per kind of event over the
horizon: :data:`BREACH_DSCR` (a DSCR test failed), :data:`BREACH_LEVERAGE` (a leverage test
failed), :data:`BREACH_MIN_CASH` (cash below the minimum at a period end after recourse), and
bit ``FACILITY_BIT0 + f`` when facility ``f`` was live and tested at a date a covenant was
breached (the first :data:`MASK_FACILITIES` facilities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Breach-mask bit: a DSCR covenant test failed.
BREACH_DSCR = 1
#: Breach-mask bit: a leverage covenant test failed.
BREACH_LEVERAGE = 2
#: Breach-mask bit: cash ended a period below the minimum after recourse (alive).
BREACH_MIN_CASH = 4
#: Breach-mask bits of covenant breaches (DSCR or leverage).
BREACH_COVENANT = BREACH_DSCR | BREACH_LEVERAGE
#: Bit of the first facility; facility ``f`` is bit ``FACILITY_BIT0 + f``.
FACILITY_BIT0 = 3
#: Facilities with a bit in the mask (bits 3..62 of an int64; later facilities have none).
MASK_FACILITIES = 60


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
    breach_mask: Any = None  # (n,) int64: bits of the module docstring; None: not split
