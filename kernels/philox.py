"""Philox4x32-10 counter-based random numbers (Salmon et al., SC'11; Random123).

Every random number of hashpivot is a function of (seed, path, period, stream) alone: the key is
the seed (two 32-bit words, with a domain tag for evaluation paths) and the counter is
``(path_lo, path_hi, period, stream)``. So paths do not depend on chunk size, device or backend:
this NumPy version (uint64 arithmetic) and the CUDA version in ``market.cu`` give the same bits.

Layout of the draws of one (path, period):

- streams ``0 .. NORMAL_STREAMS-1``: four uint32 each, turned into four standard normals by
  Box–Muller on the pairs (x0, x1) and (x2, x3); normal ``i`` is lane ``i % 4`` of stream
  ``i // 4``;
- stream ``JUMP_STREAM``: lane 0 is the uniform of the period's Poisson jump count;
- streams ``DEFAULT_STREAM + l // 4``: lane ``l % 4`` is the uniform of lease ``l``'s default test.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
ROUNDS = 10
MASK32 = 0xFFFFFFFF

#: Streams reserved for normals (4 normals each).
NORMAL_STREAMS = 64
JUMP_STREAM = 64
DEFAULT_STREAM = 128

#: Key tags: paths for the MILP coefficients and fresh paths for out-of-sample evaluation.
TAG_SIMULATE = 0x00000000
TAG_EVALUATE = 0x5EED0E7A
#: Key tags of the i.i.d. scenario sets of validation
#: (:func:`~hashpivot.kernels.reduce.sample_scenarios`): sampled batches (replications, gap
#: batches), candidate selection, wait-and-see solves.
TAG_BATCH = 0xBA7C4E50
TAG_SELECT = 0x5E1EC7ED
TAG_WAIT_AND_SEE = 0x3A175EE0
#: Every named tag (distinct: each gives its own paths for the same seed).
TAGS = {
    "simulate": TAG_SIMULATE,
    "evaluate": TAG_EVALUATE,
    "batch": TAG_BATCH,
    "select": TAG_SELECT,
    "wait_and_see": TAG_WAIT_AND_SEE,
}

TWO_PI = 6.283185307179586
TWO_M32 = 2.0**-32


def seed_key(seed: int, tag: int = TAG_SIMULATE) -> tuple[int, int]:
    """The Philox key (k0, k1) of a seed; ``tag`` separates simulation from evaluation paths."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return seed & MASK32, ((seed >> 32) ^ tag) & MASK32


def philox4x32(
    counter: tuple[Any, Any, Any, Any], key: tuple[Any, Any], *, xp: ModuleType = np
) -> tuple[Any, Any, Any, Any]:
    """Philox4x32-10 of arrays of counter words under a key.

    Parameters
    ----------
    counter
        Four broadcastable arrays (or ints) of 32-bit counter words c0..c3.
    key
        Two 32-bit key words (ints or arrays).

    Returns
    -------
    tuple of four uint64 arrays holding 32-bit output words.
    """
    if xp.__name__ == "cupy":  # one fused elementwise kernel, not ~100 array operations
        words = [xp.asarray(c, dtype=xp.uint64) for c in counter]
        k = [xp.asarray(w, dtype=xp.uint64) for w in key]
        return _cupy_philox()(*words, *k)
    m32 = xp.uint64(MASK32)
    c0, c1, c2, c3 = (xp.asarray(c, dtype=xp.uint64) & m32 for c in counter)
    k0 = xp.asarray(key[0], dtype=xp.uint64) & m32
    k1 = xp.asarray(key[1], dtype=xp.uint64) & m32
    m0 = xp.uint64(PHILOX_M0)
    m1 = xp.uint64(PHILOX_M1)
    w0 = xp.uint64(PHILOX_W0)
    w1 = xp.uint64(PHILOX_W1)
    s32 = xp.uint64(32)
    for r in range(ROUNDS):
        if r:
            k0 = (k0 + w0) & m32
            k1 = (k1 + w1) & m32
        p0 = c0 * m0  # < 2**64: both factors < 2**32
        p1 = c2 * m1
        hi0, lo0 = p0 >> s32, p0 & m32
        hi1, lo1 = p1 >> s32, p1 & m32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


_PHILOX_CUDA = f"""
unsigned int a0 = (unsigned int)c0, a1 = (unsigned int)c1, a2 = (unsigned int)c2,
             a3 = (unsigned int)c3, q0 = (unsigned int)k0, q1 = (unsigned int)k1;
for (int r = 0; r < {ROUNDS}; ++r) {{
    if (r) {{ q0 += {PHILOX_W0}u; q1 += {PHILOX_W1}u; }}
    const unsigned long long p0 = (unsigned long long)a0 * {PHILOX_M0}ull;
    const unsigned long long p1 = (unsigned long long)a2 * {PHILOX_M1}ull;
    const unsigned int n0 = (unsigned int)(p1 >> 32) ^ a1 ^ q0;
    const unsigned int n2 = (unsigned int)(p0 >> 32) ^ a3 ^ q1;
    a0 = n0; a1 = (unsigned int)p1; a2 = n2; a3 = (unsigned int)p0;
}}
o0 = a0; o1 = a1; o2 = a2; o3 = a3;
"""


@cache
def _cupy_philox() -> Any:  # pragma: no cover - needs a GPU
    """:func:`philox4x32` as a CuPy elementwise kernel (the same words as the NumPy rounds)."""
    import cupy  # noqa: PLC0415

    return cupy.ElementwiseKernel(
        "uint64 c0, uint64 c1, uint64 c2, uint64 c3, uint64 k0, uint64 k1",
        "uint64 o0, uint64 o1, uint64 o2, uint64 o3",
        _PHILOX_CUDA,
        "hp_philox4x32_xp",
    )


def uniform(bits: Any, *, xp: ModuleType = np) -> Any:
    """Uniforms in the open interval (0, 1) from 32-bit words: (x + 0.5)·2⁻³²."""
    return (bits.astype(xp.float64) + 0.5) * TWO_M32


def path_counter(paths: Any, *, xp: ModuleType = np) -> tuple[Any, Any]:
    """Low and high counter words of (int64) path indices."""
    p = xp.asarray(paths, dtype=xp.uint64)
    return p & xp.uint64(MASK32), p >> xp.uint64(32)


def normals(
    key: tuple[int, int], paths: Any, period: int, count: int, *, xp: ModuleType = np
) -> Any:
    """``count`` standard normals per path for one period, shape ``(count, n_paths)``.

    All streams in one Philox call and one Box–Muller pass (the same operations on every
    element as stream by stream, so the same bits).
    """
    return _normals(key, paths, period, count, None, xp)[0]


def normals_and_uniform(
    key: tuple[int, int], paths: Any, period: int, count: int, stream: int, *, xp: ModuleType = np
) -> tuple[Any, Any]:
    """:func:`normals` and the uniform of lane 0 of ``stream`` (as :func:`lane_uniforms`
    gives it), both from one Philox call: the same bits as the two calls."""
    return _normals(key, paths, period, count, stream, xp)


def _normals(
    key: tuple[int, int], paths: Any, period: int, count: int, extra: int | None, xp: ModuleType
) -> tuple[Any, Any]:
    lo, hi = path_counter(paths, xp=xp)
    n_streams = (count + 3) // 4
    streams = xp.arange(n_streams + (extra is not None), dtype=xp.uint64)[:, None]
    if extra is not None:
        streams[n_streams] = extra
    x0, x1, x2, x3 = philox4x32((lo[None, :], hi[None, :], period, streams), key, xp=xp)
    u = uniform(x0[n_streams], xp=xp) if extra is not None else None
    x0, x1, x2, x3 = x0[:n_streams], x1[:n_streams], x2[:n_streams], x3[:n_streams]
    r = xp.sqrt(-2.0 * xp.log(uniform(xp.stack([x0, x2], axis=1), xp=xp)))  # (streams, 2, n)
    theta = TWO_PI * uniform(xp.stack([x1, x3], axis=1), xp=xp)
    out = xp.empty((n_streams, 2, 2, lo.shape[0]), dtype=xp.float64)
    out[:, :, 0] = r * xp.cos(theta)
    out[:, :, 1] = r * xp.sin(theta)
    return out.reshape(4 * n_streams, lo.shape[0])[:count], u


def stream_uniforms(
    key: tuple[int, int], paths: Any, period: int, first: int, count: int, *, xp: ModuleType = np
) -> Any:
    """``count`` uniforms per path: lane ``i % 4`` of stream ``first + i // 4``, shape
    ``(count, n_paths)`` (one Philox call for all streams)."""
    lo, hi = path_counter(paths, xp=xp)
    n_streams = (count + 3) // 4
    streams = xp.arange(first, first + n_streams, dtype=xp.uint64)[:, None]
    words = philox4x32((lo[None, :], hi[None, :], period, streams), key, xp=xp)
    return uniform(xp.stack(words, axis=1), xp=xp).reshape(4 * n_streams, lo.shape[0])[:count]


def lane_uniforms(
    key: tuple[int, int], paths: Any, period: int, stream: int, *, xp: ModuleType = np
) -> tuple[Any, Any, Any, Any]:
    """The four uniforms of one stream of one period, each of shape ``(n_paths,)``."""
    lo, hi = path_counter(paths, xp=xp)
    words = philox4x32((lo, hi, period, stream), key, xp=xp)
    return tuple(uniform(w, xp=xp) for w in words)  # type: ignore[return-value]
