r"""Statistics of estimates: the objective with its CVaR term, paired standard errors, exact
binomial bounds and the Mak–Morton–Wood optimality-gap interval.

Objective and its influence function
    J(W) = E[W] − λ·CVaR_α(L),  L = −W,  CVaR_α(L) = min_η { η + E[(L − η)⁺]/(1 − α) }.
    On M paths the plug-in estimate takes η̂ = the ⌈(1 − α)M⌉-th largest loss, which makes the
    Rockafellar–Uryasev form equal the mean of the worst (1 − α)M losses (fractional at the
    boundary), as :mod:`hashpivot.kernels.evaluate` computes it. Its influence function is
        φ(W) = W − λ·(η + (L − η)⁺/(1 − α)) − J,
    so Ĵ ≈ J + mean(φ) and Var(Ĵ) ≈ Var(φ)/M (delta method; e.g. Hong & Liu 2009, "Simulating
    sensitivities of conditional value at risk", Manag. Sci. 55(2)). For two plans on common
    paths the paired difference uses φ_a − φ_b path by path, so its standard error includes the
    CVaR term — the mean-equity standard error alone understates it.

    Streaming (:class:`ObjectiveAccumulator`): only the worst ⌈(1 − α)M⌉ paths of each plan have
    (L − η)⁺ > 0, so per plan we keep those rows — with every plan's W on the same path — plus
    running sums of W and of the cross products W_a·W_b. Memory is O(P·(1 − α)M), not O(P·M).

Exact binomial bound (Clopper & Pearson 1934)
    One-sided upper (1 − β) bound on p after k events in n trials: the β-upper quantile of
    Beta(k + 1, n − k); 1 when k = n. With k = 0 it is 1 − β^{1/n}.

Optimality-gap interval for a maximisation (Mak, Morton & Wood 1999)
    On B independent batches of scenarios, G_b = max_x Ĵ_b(x) − Ĵ_b(x̂) ≥ 0 for the chosen plan
    x̂; E[G_b] ≥ the true gap. Reported: Ḡ, s (ddof = 1) and the one-sided upper bound
    Ḡ + t_{1−β, B−1}·s/√B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

from .accumulate import OrderedSums

#: Default confidence of one-sided bounds.
CONFIDENCE = 0.95


def tail_count(alpha: float, paths: int) -> int:
    """Paths in the CVaR tail: ⌈(1 − α)·M⌉ (at least 1)."""
    return max(1, math.ceil((1.0 - alpha) * paths - 1e-9))


def cvar_of_sorted(worst_first: np.ndarray, alpha: float, paths: int) -> tuple[float, float]:
    """(CVaR_α, VaR_α) of losses from the worst ⌈(1 − α)M⌉ of them, sorted worst first."""
    tail = (1.0 - alpha) * paths
    full = min(int(math.floor(tail)), len(worst_first))
    k = tail_count(alpha, paths)
    eta = float(worst_first[k - 1])
    nxt = float(worst_first[full]) if full < len(worst_first) else 0.0
    total = float(worst_first[:full].sum()) + (tail - full) * nxt
    return total / tail, eta


def objective_influence(w: np.ndarray, alpha: float, lam: float) -> tuple[float, np.ndarray]:
    """Plug-in objective Ĵ and the per-path values ψ_i with mean(ψ) = Ĵ, Var(Ĵ) ≈ var(ψ)/M.

    Parameters
    ----------
    w
        Terminal equity per path [$], shape (M,).
    alpha, lam
        CVaR level α and weight λ of the objective E[W] − λ·CVaR_α(−W).
    """
    w = np.asarray(w, dtype=float)
    loss = -w
    m = len(w)
    worst = -np.sort(w)[: tail_count(alpha, m)]
    cvar, eta = cvar_of_sorted(worst, alpha, m)
    psi = w - lam * (eta + np.maximum(loss - eta, 0.0) / (1.0 - alpha))
    return float(w.mean() - lam * cvar), psi


@dataclass(frozen=True)
class ObjectiveEstimate:
    """Objective of each plan on common paths, with standard errors that include CVaR."""

    names: tuple[str, ...]
    paths: int
    objective_usd: np.ndarray  # (P,)
    mean_usd: np.ndarray  # (P,)
    cvar_usd: np.ndarray  # (P,)
    stderr_usd: np.ndarray  # (P,) s.e. of each objective
    mean_stderr_usd: np.ndarray  # (P,) s.e. of each mean alone
    paired_stderr_usd: np.ndarray  # (P, P) s.e. of objective_a − objective_b

    def diff(self, a: str, b: str) -> tuple[float, float]:
        """(objective_a − objective_b, its standard error) [$]."""
        i, j = self.names.index(a), self.names.index(b)
        return (
            float(self.objective_usd[i] - self.objective_usd[j]),
            float(self.paired_stderr_usd[i, j]),
        )


def _lowest(rows: np.ndarray, ids: np.ndarray, j: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of lowest ``rows[:, j]``, ties broken by lowest id (in no fixed order).

    The same set as the first ``k`` of ``np.lexsort((ids, rows[:, j]))`` in linear time: a
    partition finds the k-th value; the rows below it are kept and the ties at it are filled
    in by id.
    """
    if len(rows) <= k:
        return rows, ids
    col = rows[:, j]
    kth = np.partition(col, k - 1)[k - 1]
    below = np.flatnonzero(col < kth)
    ties = np.flatnonzero(col == kth)
    ties = ties[np.argsort(ids[ties], kind="stable")[: k - len(below)]]
    keep = np.concatenate([below, ties])
    return rows[keep], ids[keep]


class _Tail:
    """A superset of the ``k`` lowest rows (by column ``j``, then id) of everything admitted.

    Rows are buffered and pruned to the ``k`` lowest only when more than ``2k`` are held, so
    the linear-time selection runs once per ``k`` admitted rows rather than once per chunk.
    After a prune only rows at or below the ``k``-th value then (``cut``) can still enter the
    ``k`` lowest, so the rest are not admitted. The ``k`` lowest are a set: the result does
    not depend on the chunking.
    """

    def __init__(self, j: int, k: int, width: int) -> None:
        self.j, self.k = j, k
        self.rows: list[np.ndarray] = [np.empty((0, width))]
        self.ids: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
        self.held = 0
        self.cut = np.inf

    def admit(self, rows: np.ndarray, ids: np.ndarray) -> None:
        enter = rows[:, self.j] <= self.cut
        # kept rows are copies: the caller may reuse its buffers for the next chunk
        rows, ids = (rows[enter], ids[enter]) if not enter.all() else (rows.copy(), ids.copy())
        self.rows.append(rows)
        self.ids.append(ids)
        self.held += len(ids)
        if self.held > 2 * self.k:
            self.prune()

    def prune(self) -> tuple[np.ndarray, np.ndarray]:
        """Keep the ``k`` lowest; returns them (rows, ids)."""
        rows, ids = _lowest(np.concatenate(self.rows), np.concatenate(self.ids), self.j, self.k)
        self.rows, self.ids, self.held = [rows], [ids], len(ids)
        if len(ids) >= self.k:
            self.cut = float(rows[:, self.j].max())
        return rows, ids


class ObjectiveAccumulator:
    """Streaming objective E[W] − λ·CVaR_α(−W) of P plans on common paths.

    Feed chunks of paths in order with :meth:`add`; the result does not depend on how the paths
    are chunked (ties in the tail are broken by path index).
    """

    def __init__(self, names: list[str] | tuple[str, ...], alpha: float, lam: float, paths: int):
        self.names = tuple(names)
        self.alpha, self.lam, self.paths = alpha, lam, paths
        p = len(self.names)
        self.k = tail_count(alpha, paths)
        self._sums = OrderedSums(1, p + p * p)  # Σ W_a and Σ W_a·W_b, chunk-invariant
        self.seen = 0
        # per plan j: its lowest-W paths; rows hold every plan's W on a path
        self._tails = [_Tail(j, self.k, p) for j in range(p)]

    def add(self, w: np.ndarray, first_path: int) -> None:
        """Add a chunk: ``w`` of shape (n, P), paths ``first_path … first_path + n − 1``."""
        w = np.asarray(w, dtype=float)
        n, p = w.shape
        wt = np.ascontiguousarray(w.T)  # (P, n): the sums take rows of paths
        self._sums.add(0, [wt, (wt[:, None, :] * wt[None, :, :]).reshape(p * p, n)])
        idx = np.arange(first_path, first_path + n, dtype=np.int64)
        for tail in self._tails:
            tail.admit(w, idx)
        self.seen += n

    def merge(self, other: ObjectiveAccumulator) -> None:
        """Add the partial state of another range of the same paths (e.g. from a worker).

        The tails merge exactly (ties broken by path index); the sums add ``other``'s total to
        this one's, so merging the same ranges in the same order gives bit-identical results
        (:func:`~hashpivot.kernels.evaluate.evaluate_plans` fixes the ranges).
        """
        if (other.names, other.alpha, other.lam, other.paths) != (
            self.names,
            self.alpha,
            self.lam,
            self.paths,
        ):
            raise ValueError("cannot merge accumulators of different plans, risk or paths")
        self._sums.add_raw(other._sums.result())
        for tail, theirs in zip(self._tails, other._tails, strict=True):
            tail.admit(np.concatenate(theirs.rows), np.concatenate(theirs.ids))
        self.seen += other.seen

    def result(self) -> ObjectiveEstimate:
        """Objectives, CVaRs and standard errors (delta method, see the module docstring)."""
        m = self.seen
        if m != self.paths:
            raise ValueError(f"expected {self.paths} paths, got {m}")
        p = len(self.names)
        a, lam = self.alpha, self.lam
        totals = self._sums.result()[0]
        w_sum, w_cross = totals[:p], totals[p:].reshape(p, p)
        mean = w_sum / m
        cvar, eta = np.zeros(p), np.zeros(p)
        # the union of the plans' tail paths, by path index (a canonical order: the sums below
        # do not depend on how the paths were chunked or merged); wm: every plan's W on them
        tails = [tail.prune() for tail in self._tails]
        ids_all, first = np.unique(np.concatenate([i for _, i in tails]), return_index=True)
        wm = np.concatenate([w for w, _ in tails])[first]
        # hm[:, j]: (L_j − η_j)⁺/(1 − α) on plan j's tail paths, 0 elsewhere
        hm = np.zeros((len(ids_all), p))
        for j, (tail_w, tail_i) in enumerate(tails):
            order = np.lexsort((tail_i, tail_w[:, j]))
            worst = -tail_w[order, j]
            cvar[j], eta[j] = cvar_of_sorted(worst, a, m)
            over = worst > eta[j]
            pos = np.searchsorted(ids_all, tail_i[order][over])
            hm[pos, j] = (worst[over] - eta[j]) / (1.0 - a)
        obj = mean - lam * cvar
        # Σψ_aψ_b − with ψ = W − λh (η constant drops out of the variance)
        s_h = hm.sum(axis=0)
        s_psi = w_sum - lam * s_h
        cross = w_cross - lam * (wm.T @ hm + hm.T @ wm) + lam * lam * (hm.T @ hm)
        cov = (cross - np.outer(s_psi, s_psi) / m) / max(m - 1, 1)
        var = np.clip(np.diag(cov), 0.0, None)
        paired = np.sqrt(np.clip(var[:, None] + var[None, :] - 2.0 * cov, 0.0, None) / m)
        np.fill_diagonal(paired, 0.0)
        mvar = np.clip((np.diag(w_cross) - w_sum**2 / m) / max(m - 1, 1), 0.0, None)
        return ObjectiveEstimate(
            names=self.names,
            paths=m,
            objective_usd=obj,
            mean_usd=mean,
            cvar_usd=cvar,
            stderr_usd=np.sqrt(var / m),
            mean_stderr_usd=np.sqrt(mvar / m),
            paired_stderr_usd=paired,
        )


def clopper_pearson_upper(events: int, trials: int, confidence: float = CONFIDENCE) -> float:
    """Exact one-sided upper confidence bound on a probability after ``events`` in ``trials``."""
    if trials <= 0:
        return 1.0
    if not 0 <= events <= trials:
        raise ValueError(f"events must lie in 0..{trials}, got {events}")
    if events == trials:
        return 1.0
    return float(_st.beta.ppf(confidence, events + 1, trials - events))


@dataclass(frozen=True)
class GapInterval:
    """Mak–Morton–Wood one-sided interval on the optimality gap of a maximisation [$]."""

    gbar_usd: float
    s_usd: float
    batches: int
    upper95_usd: float
    upper95_rel: float  # upper bound over |objective|
    confidence: float = CONFIDENCE

    def to_json(self) -> dict[str, float | int]:
        return {
            "gbar_usd": self.gbar_usd,
            "s_usd": self.s_usd,
            "batches": self.batches,
            "upper95_usd": self.upper95_usd,
            "upper95_rel": self.upper95_rel,
            "confidence": self.confidence,
        }


def mmw_gap_interval(
    batch_optimum_usd: np.ndarray,
    plan_value_usd: np.ndarray,
    objective_usd: float,
    confidence: float = CONFIDENCE,
) -> GapInterval:
    """MMW interval from each batch's optimum and the chosen plan's value on the same batch.

    Parameters
    ----------
    batch_optimum_usd, plan_value_usd
        max_x Ĵ_b(x) and Ĵ_b(x̂) per batch b (maximisation), shape (B,), B ≥ 2.
    objective_usd
        The plan's objective estimate, to express the bound relative to it.
    """
    g = np.asarray(batch_optimum_usd, float) - np.asarray(plan_value_usd, float)
    b = len(g)
    if b < 2:
        raise ValueError("the gap interval needs at least 2 batches")
    gbar = float(g.mean())
    s = float(g.std(ddof=1))
    upper = gbar + float(_st.t.ppf(confidence, b - 1)) * s / math.sqrt(b)
    rel = upper / abs(objective_usd) if objective_usd else math.inf
    return GapInterval(gbar, s, b, upper, rel, confidence)
