"""Streaming accumulators: block-ordered sums bit-identical for any chunking."""

from __future__ import annotations

import numpy as np
import pytest

from hashpivot.kernels.accumulate import BLOCK_PATHS, OrderedSums, pairwise_row_sum


def canonical_sums(v: np.ndarray, block: int) -> np.ndarray:
    """The canonical order by hand: each block summed on its own, block sums added in order,
    then the last partial block."""
    total = np.zeros(v.shape[0])
    n_full = v.shape[1] // block
    for k in range(n_full):
        total = total + v[:, k * block : (k + 1) * block].sum(axis=1)
    return total + v[:, n_full * block :].sum(axis=1)


@pytest.mark.parametrize("block", [16, BLOCK_PATHS])
@pytest.mark.parametrize("chunk", [1, 7, 16, 999, 1024, 3000, 5000])
def test_any_chunking_gives_the_canonical_sums(block: int, chunk: int) -> None:
    rng = np.random.default_rng(chunk)
    n = 5000 if block == BLOCK_PATHS or chunk > 16 else 200
    v = rng.lognormal(size=(2, 3, n))  # two periods
    acc = OrderedSums(2, 3, block=block)
    for a in range(0, n, chunk):
        for t in range(2):
            acc.add(t, v[t, :, a : a + chunk])
    got = acc.result()
    for t in range(2):
        np.testing.assert_array_equal(got[t], canonical_sums(v[t], block))


def test_parts_equal_one_array() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=(5, 4100))
    whole, parts = OrderedSums(1, 5), OrderedSums(1, 5)
    for a, b in ((0, 700), (700, 2100), (2100, 4100)):
        whole.add(0, v[:, a:b])
        parts.add(0, [v[:2, a:b], v[2:3, a:b], v[3:, a:b]])
    np.testing.assert_array_equal(parts.result(), whole.result())
    np.testing.assert_array_equal(whole.result()[0], canonical_sums(v, BLOCK_PATHS))


def test_width_mismatch_is_error() -> None:
    with pytest.raises(ValueError, match="4 rows, the sums 5"):
        OrderedSums(1, 5).add(0, np.zeros((4, 10)))


def test_pairwise_row_sum_adds_in_halving_order() -> None:
    # rows 0+2 and 1+3 first, then the two: exact here, where a row-by-row sum loses the 1
    a = np.array([[1e16], [1.0], [-1e16], [1.0]])
    assert pairwise_row_sum(a.copy())[0] == 2.0
    seq = 0.0
    for x in a[:, 0]:
        seq += x
    assert seq == 1.0


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 7, 8, 33])
def test_pairwise_row_sum_matches_sum(rows: int) -> None:
    a = np.random.default_rng(rows).normal(size=(rows, 3, 5))
    np.testing.assert_allclose(pairwise_row_sum(a.copy()), a.sum(axis=0), rtol=1e-12, atol=1e-12)
    # odd counts: 3 rows -> row0 += row2, then row0 += row1
    if rows == 3:
        expect = (a[0] + a[2]) + a[1]
        np.testing.assert_array_equal(pairwise_row_sum(a.copy()), expect)
