"""``scorers.complexity.d_inter`` computes the centroid distance matrix a block of rows at a time (issue 15): against
the whole-matrix computation it replaced (written out here as the reference) the same bits with one block and at
most the last bit with several, so the quotas and every decision are unchanged; and the hand-worked four-centroid
example."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.scorers.complexity import d_inter as blocked_d_inter


def d_inter(centroids: np.ndarray, neighbors: int = 20) -> np.ndarray:
    """The reference: the whole k × k distance matrix, each row sorted whole (the computation before issue 15)."""
    k = centroids.shape[0]
    if k < 2:
        return np.zeros(k, dtype=np.float64)
    c = centroids.astype(np.float64)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    dist = 1.0 - c @ c.T
    np.fill_diagonal(dist, np.inf)
    return np.sort(dist, axis=1)[:, : min(neighbors, k - 1)].mean(axis=1)

# c0 = (1,0,0), c1 = (0.6,0.8,0), c2 = (0,1,0), c3 = (0.6,0,0.8): cosine distances
#   c0: 0.4 (c1), 1.0 (c2), 0.4 (c3);  c1: 0.4, 0.2, 0.64;  c2: 1.0, 0.2, 1.0;  c3: 0.4, 0.64, 1.0
HAND = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.6, 0.0, 0.8]])


@pytest.mark.parametrize(
    ("neighbors", "expected"),
    [(1, [0.4, 0.2, 0.2, 0.4]), (2, [0.4, 0.3, 0.6, 0.52]), (3, [0.6, 1.24 / 3, 2.2 / 3, 0.68])],
)
@pytest.mark.parametrize("block_bytes", [1, 8 * 4 * 2, 1 << 20])  # one row, two rows, all rows per block
def test_by_hand(neighbors, expected, block_bytes):
    np.testing.assert_allclose(blocked_d_inter(HAND, neighbors, block_bytes), expected, atol=1e-12)


def test_fewer_than_two_centroids():
    assert blocked_d_inter(HAND[:1]).tolist() == [0.0]
    assert blocked_d_inter(HAND[:0]).tolist() == []


@pytest.mark.parametrize("k", [7, 300, 1200])
def test_one_block_same_bits_as_unblocked(k):
    rng = np.random.default_rng(k)
    c = rng.standard_normal((k, 48)).astype(np.float32)
    c[: k // 3] = c[0]  # repeated centroids: tied distances (0 to each other) among the nearest
    want = d_inter(c, 20)
    got = blocked_d_inter(c, 20)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))


@pytest.mark.parametrize("k", [7, 300, 1200])
@pytest.mark.parametrize("rows_per_block", [1, 64, 1000])
def test_blocks_agree_with_unblocked(k, rows_per_block):
    """Several blocks: the same values up to the last bit (BLAS may choose another kernel for a thin block)."""
    rng = np.random.default_rng(k)
    c = rng.standard_normal((k, 48)).astype(np.float32)
    c[: k // 3] = c[0]
    want = d_inter(c, 20)
    got = blocked_d_inter(c, 20, block_bytes=8 * k * rows_per_block)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
