r"""How a set of n market paths is sampled: i.i.d. (Philox, the default everywhere) or as a
Latin hypercube (the optimality-gap batches, :mod:`hashpivot.optimizer.validation`).

Latin hypercube sampling (McKay, Beckman & Conover 1979)
    Every scalar random input of a path — each period's standard normals z (the correlated
    shocks and the jump size, :attr:`~hashpivot.kernels.market.MarketParams.n_normals` of
    them) and its BTC jump-count uniform — is one dimension j of D = T·(n_normals + 1). In
    dimension j, path i gets u_ij = (π_j(i) + U_ij)/n with π_j an independent uniformly random
    permutation of 0 … n − 1 and U_ij i.i.d. uniform on [0, 1); normals are z = Φ⁻¹(u). So each
    of the n equal strata of every dimension holds exactly one path, and each single path is
    uniform on [0, 1)^D: its marginal law is exactly that of an i.i.d. path (the paths are
    dependent, not differently distributed). Sample means of any function of a path stay
    unbiased; for functions that are nearly additive in the inputs their variance falls
    (Stein 1987), and Freimer, Linderoth & Thomas (2012) found the optimism bias of SAA
    optima shrinks with it. Tenant defaults stay i.i.d. (Philox by path index).

The design is drawn by a NumPy ``Generator`` seeded from (seed, tag) alone: the same seed and
tag give the same paths on any backend and in any worker.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from scipy.special import ndtri

from .market import MarketParams, Shocks

#: Smallest uniform fed to Φ⁻¹ (and 1 minus it the largest): the stratum edges 0 and 1,
#: reached with probability ~2⁻⁵³, would give infinite normals.
U_CLIP = 1e-300
#: Purpose word of the design's seed (apart from any other use of the same seed).
LHS_PURPOSE = 0x1A71C


class Sampling(StrEnum):
    """How n paths are sampled."""

    IID = "iid"
    LHS = "lhs"


def latin_hypercube(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    """A Latin hypercube of ``n`` points in [0, 1)^``dims``, shape ``(dims, n)``:
    u[j, i] = (π_j(i) + U_ij)/n, one independent permutation π_j per dimension."""
    if n < 1 or dims < 0:
        raise ValueError(f"n must be >= 1 and dims >= 0, got n={n}, dims={dims}")
    perms = rng.permuted(np.tile(np.arange(n, dtype=np.float64), (dims, 1)), axis=1)
    return (perms + rng.random((dims, n))) / n


def design_rng(seed: int, tag: int) -> np.random.Generator:
    """The Generator of the design of (``seed``, ``tag``)."""
    words = [int(seed) & (2**63 - 1), int(tag) & (2**32 - 1), LHS_PURPOSE]
    return np.random.default_rng(np.random.SeedSequence(words))


def lhs_shocks(mp: MarketParams, n: int, seed: int, tag: int) -> Shocks:
    """Latin hypercube :class:`~hashpivot.kernels.market.Shocks` of ``n`` paths (module
    docstring): every (period, normal) and every period's jump uniform stratified."""
    t, k = mp.n_periods, mp.n_normals
    u = latin_hypercube(design_rng(seed, tag), n, t * (k + 1))
    np.clip(u, U_CLIP, 1.0 - np.finfo(np.float64).epsneg, out=u)
    z = ndtri(u[: t * k]).reshape(t, k, n)
    return Shocks(z=z, u_jump=u[t * k :].reshape(t, n))
