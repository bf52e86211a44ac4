"""Philox4x32-10 known answers (Random123) and the derived uniforms and normals."""

from __future__ import annotations

import numpy as np
import pytest

from hashpivot.kernels import philox

KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("ctr", "key", "expected"), KAT)
def test_known_answers(ctr: tuple, key: tuple, expected: tuple) -> None:
    out = philox.philox4x32(ctr, key)
    assert tuple(int(w) for w in out) == expected


def test_vectorised_equals_scalar() -> None:
    rng = np.random.default_rng(0)
    ctr = rng.integers(0, 2**32, size=(4, 50), dtype=np.uint64)
    key = (123456789, 987654321)
    vec = np.stack(philox.philox4x32(tuple(ctr), key))
    for i in range(50):
        one = philox.philox4x32(tuple(int(c) for c in ctr[:, i]), key)
        assert tuple(int(w) for w in one) == tuple(int(w) for w in vec[:, i])


def test_uniforms_open_interval() -> None:
    bits = np.array([0, 1, 2**31, 2**32 - 1], dtype=np.uint64)
    u = philox.uniform(bits)
    assert np.all(u > 0.0) and np.all(u < 1.0)


def test_normals_are_standard() -> None:
    z = philox.normals(philox.seed_key(7), np.arange(200_000), period=3, count=6)
    n = z.shape[1]
    assert np.all(np.abs(z.mean(axis=1)) < 4.0 / np.sqrt(n))
    assert np.all(np.abs(z.var(axis=1) - 1.0) < 4.0 * np.sqrt(2.0 / n))
    c = np.corrcoef(z)
    assert np.all(np.abs(c - np.eye(6)) < 4.0 / np.sqrt(n))


def test_streams_and_tags_are_distinct() -> None:
    paths = np.arange(1000)
    a = philox.normals(philox.seed_key(1), paths, 0, 4)
    b = philox.normals(philox.seed_key(1, philox.TAG_EVALUATE), paths, 0, 4)
    c = philox.normals(philox.seed_key(2), paths, 0, 4)
    assert not np.allclose(a, b) and not np.allclose(a, c)
    np.testing.assert_array_equal(a, philox.normals(philox.seed_key(1), paths, 0, 4))


def test_large_seeds_and_paths() -> None:
    k = philox.seed_key(2**62 + 5)
    assert all(0 <= w < 2**32 for w in k)
    z = philox.normals(k, np.array([2**40, 2**40 + 1]), 0, 2)
    assert np.all(np.isfinite(z))


def test_batched_streams_follow_the_layout() -> None:
    """Normal i is lane i % 4 of stream i // 4 by Box–Muller on (x0, x1), (x2, x3); uniform i
    of ``stream_uniforms`` is lane i % 4 of stream first + i // 4 (one call, same bits)."""
    key = philox.seed_key(99)
    paths = np.arange(2**32 - 3, 2**32 + 500, dtype=np.int64)  # crosses the high counter word
    lo, hi = philox.path_counter(paths)
    z = philox.normals(key, paths, 5, 7)
    assert z.shape == (7, paths.shape[0])
    for stream in range(2):
        x = philox.philox4x32((lo, hi, 5, stream), key)
        for pair in range(2):
            i = 4 * stream + 2 * pair
            r = np.sqrt(-2.0 * np.log(philox.uniform(x[2 * pair])))
            theta = philox.TWO_PI * philox.uniform(x[2 * pair + 1])
            np.testing.assert_array_equal(z[i], r * np.cos(theta))
            if i + 1 < 7:
                np.testing.assert_array_equal(z[i + 1], r * np.sin(theta))
    u = philox.stream_uniforms(key, paths, 3, philox.DEFAULT_STREAM, 6)
    assert u.shape == (6, paths.shape[0])
    for i in range(6):
        lanes = philox.lane_uniforms(key, paths, 3, philox.DEFAULT_STREAM + i // 4)
        np.testing.assert_array_equal(u[i], lanes[i % 4])


def test_normals_and_uniform_are_the_bits_of_the_separate_calls() -> None:
    """One Philox call for the normals and the jump stream gives the bits of two calls."""
    key = philox.seed_key(77, philox.TAG_EVALUATE)
    paths = np.arange(3000, 4500, dtype=np.int64)
    for t, count in ((0, 10), (5, 7), (59, 4)):
        z, u = philox.normals_and_uniform(key, paths, t, count, philox.JUMP_STREAM)
        np.testing.assert_array_equal(z, philox.normals(key, paths, t, count))
        lane = philox.lane_uniforms(key, paths, t, philox.JUMP_STREAM)[0]
        np.testing.assert_array_equal(u, lane)
