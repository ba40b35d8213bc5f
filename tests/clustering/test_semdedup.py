"""SemDeDup (DESIGN §3.3): the blocked max-similarity-to-earlier matches the dense strict lower triangle; planted
duplicate groups inside one cluster keep exactly one member each, chosen by ``rank``; ε thresholds one column."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from winnow.clustering.semdedup import (
    is_duplicate,
    kept_fraction_by_eps,
    max_sim_to_earlier,
    rank_order,
    semdedup_cluster,
)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def dense_reference(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(max_sim, argmax, sims)`` from the full matrix, float64, strict lower triangle; row 0 gets (nan, -1)."""
    e = emb.astype(np.float64)
    sims = e @ e.T
    n = len(e)
    masked = np.where(np.tril(np.ones((n, n), dtype=bool), k=-1), sims, -np.inf)
    arg = np.argmax(masked, axis=1) if n else np.zeros(0, np.int64)
    best = masked[np.arange(n), arg] if n else np.zeros(0)
    if n:
        best[0], arg[0] = np.nan, -1
    return best, arg, sims


# -- max_sim_to_earlier --------------------------------------------------------------------------------------------

N_REF = 53


@pytest.mark.parametrize("block", [1, 2, 7, 16, N_REF - 1, N_REF, N_REF + 5, 2048])
def test_max_sim_matches_dense_reference(block):
    emb = unit(np.random.default_rng(0).standard_normal((N_REF, 24)))
    sim, arg = max_sim_to_earlier(emb, block=block)
    ref_sim, ref_arg, _ = dense_reference(emb)
    assert sim.dtype == np.float32 and arg.dtype == np.int64
    assert sim.shape == arg.shape == (N_REF,)
    assert np.isnan(sim[0]) and arg[0] == -1
    assert not np.isnan(sim[1:]).any()
    np.testing.assert_allclose(sim[1:], ref_sim[1:], atol=1e-6)
    np.testing.assert_array_equal(arg, ref_arg)  # random vectors: no near ties
    assert (arg[1:] < np.arange(1, N_REF)).all()  # strictly earlier


@pytest.mark.parametrize("block", [1, 3, 7, 20, 21, 30])
def test_max_sim_with_exact_duplicates_and_ties(block):
    rng = np.random.default_rng(1)
    base = unit(rng.standard_normal((6, 8)))
    emb = base[rng.integers(0, 6, size=21)]  # 21 rows from 6 distinct vectors: many exact ties
    sim, arg = max_sim_to_earlier(emb, block=block)
    ref_sim, _, sims = dense_reference(emb)
    np.testing.assert_allclose(sim[1:], ref_sim[1:], atol=1e-6)
    # the argmax attains the maximum (among exact copies any earlier copy will do) and lies strictly before
    rows = np.arange(1, 21)
    assert (arg[1:] < rows).all()
    np.testing.assert_allclose(sims[rows, arg[1:]], ref_sim[1:], atol=1e-6)
    # a row with an earlier exact copy has similarity 1 to it
    first_seen = {}
    for i, row in enumerate(emb):
        key = row.tobytes()
        if key in first_seen:
            assert sim[i] == pytest.approx(1.0, abs=1e-6)
            assert emb[arg[i]].tobytes() == key
        first_seen.setdefault(key, i)


def test_max_sim_tiny_inputs():
    sim, arg = max_sim_to_earlier(np.zeros((0, 4), np.float32))
    assert sim.shape == arg.shape == (0,)
    sim, arg = max_sim_to_earlier(unit(np.ones((1, 4))))
    assert np.isnan(sim[0]) and arg.tolist() == [-1]
    e = unit(np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]))
    sim, arg = max_sim_to_earlier(e, block=1)
    # row 1: cos(e0, e1) = 0.6; row 2: max(cos(e0, e2) = 0, cos(e1, e2) = 0.8) = 0.8 at row 1
    np.testing.assert_allclose(sim[1:], [0.6, 0.8], atol=1e-6)
    assert arg.tolist() == [-1, 0, 1]


# -- planted duplicate groups in one cluster -----------------------------------------------------------------------


def planted(seed: int = 0, n_groups: int = 20, d: int = 64):
    """20 random base vectors, each with 0–3 copies: exact (identical row) or noisy (cosine > 0.99).

    Returns ``(emb, dist, group, keys)`` with rows shuffled; ``dist`` is ``1 − cos`` to the cluster's (normalised
    mean) centroid, as the assign stage computes it.
    """
    rng = np.random.default_rng(seed)
    base = unit(rng.standard_normal((n_groups, d)))
    rows, group = [], []
    for g in range(n_groups):
        rows.append(base[g])
        group.append(g)
        for c in range(int(rng.integers(0, 4))):
            if c == 0 and g % 3 == 0:
                rows.append(base[g].copy())  # an exact duplicate
            else:
                v = base[g] + rng.standard_normal(d) * 0.08 / np.sqrt(d)
                rows.append(v / np.linalg.norm(v))
            group.append(g)
    emb = np.asarray(rows, np.float32)
    group = np.asarray(group)
    perm = rng.permutation(len(emb))
    emb, group = emb[perm], group[perm]
    centroid = emb.astype(np.float64).mean(axis=0)
    centroid /= np.linalg.norm(centroid)
    dist = (1.0 - emb.astype(np.float64) @ centroid).astype(np.float32)
    keys = rng.permutation(10 * len(emb))[: len(emb)]  # unique, unrelated to position
    return emb, dist, group, keys


def test_planted_groups_are_what_they_claim():
    emb, _, group, _ = planted()
    sims = emb.astype(np.float64) @ emb.T.astype(np.float64)
    same = group[:, None] == group[None, :]
    assert sims[same].min() > 0.99
    assert sims[~same].max() < 0.6
    sizes = np.bincount(group)
    assert (sizes == 1).any() and (sizes >= 3).any()
    assert len(np.unique(emb, axis=0)) < len(emb)  # some exact duplicates


@pytest.mark.parametrize("rank", ["hard", "easy", "random"])
def test_one_member_per_group_survives(rank):
    emb, dist, group, keys = planted()
    sim, nn = semdedup_cluster(emb, dist, rank=rank, seed=0, keys=keys, block=7)
    dup = is_duplicate(sim, 0.05)
    kept = np.flatnonzero(~dup)
    assert sorted(group[kept].tolist()) == list(range(20))  # exactly one per group
    # every duplicate points at a member of its own group, and that member is ranked before it
    order = rank_order(dist, rank, seed=0, keys=keys)
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    for j in np.flatnonzero(dup):
        assert group[nn[j]] == group[j]
        assert position[nn[j]] < position[j]
        assert sim[j] > 0.99
    # survivors of multi-member groups are the group's top-ranked member
    for g in range(20):
        members = np.flatnonzero(group == g)
        top = members[np.argmin(position[members])]
        assert not dup[top]


@pytest.mark.parametrize("rank", ["hard", "easy"])
def test_survivor_follows_rank(rank):
    emb, dist, group, keys = planted()
    sim, _ = semdedup_cluster(emb, dist, rank=rank, keys=keys)
    kept = ~is_duplicate(sim, 0.05)
    checked_ties = 0
    for g in range(20):
        members = np.flatnonzero(group == g)
        d = dist[members].astype(np.float64)
        best = d.max() if rank == "hard" else d.min()  # hard: the farthest from the centroid; easy: the closest
        candidates = members[d == best]
        expected = candidates[np.argmin(keys[candidates])]  # exact copies tie on dist: the smallest key wins
        checked_ties += len(candidates) > 1
        assert kept[members].sum() == 1
        assert kept[expected], (g, rank)
    assert checked_ties > 0  # exact duplicates exercised the tie-break


def test_hard_and_easy_keep_different_members():
    emb, dist, group, keys = planted()
    hard = ~is_duplicate(semdedup_cluster(emb, dist, rank="hard", keys=keys)[0], 0.05)
    easy = ~is_duplicate(semdedup_cluster(emb, dist, rank="easy", keys=keys)[0], 0.05)
    multi = [g for g in range(20) if (group == g).sum() > 1]
    differ = [g for g in multi if not np.array_equal(hard[group == g], easy[group == g])]
    assert differ  # at least one noisy group where the farthest and the closest member differ


def test_random_rank_is_seeded_and_deterministic():
    emb, dist, group, keys = planted()
    a = semdedup_cluster(emb, dist, rank="random", seed=7, cluster_id=3, keys=keys)
    b = semdedup_cluster(emb, dist, rank="random", seed=7, cluster_id=3, keys=keys)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    kept = {
        (seed, cid): ~is_duplicate(
            semdedup_cluster(emb, dist, rank="random", seed=seed, cluster_id=cid, keys=keys)[0], 0.05
        )
        for seed, cid in [(7, 3), (8, 3), (7, 4)]
    }
    for k in kept.values():
        assert sorted(group[k].tolist()) == list(range(20))
    # another seed, or another cluster id, gives another permutation and another choice in some group
    assert not np.array_equal(kept[(7, 3)], kept[(8, 3)])
    assert not np.array_equal(kept[(7, 3)], kept[(7, 4)])
    # the order is a permutation that ignores the distances
    order = rank_order(dist, "random", seed=7, cluster_id=3, keys=keys)
    assert sorted(order.tolist()) == list(range(len(dist)))


def test_top_ranked_member_has_no_predecessor():
    emb, dist, group, keys = planted()
    for rank in ("hard", "easy", "random"):
        sim, nn = semdedup_cluster(emb, dist, rank=rank, seed=0, keys=keys)
        top = rank_order(dist, rank, seed=0, keys=keys)[0]
        assert np.isnan(sim).sum() == 1 and np.isnan(sim[top])
        assert nn[top] == -1 and (nn == -1).sum() == 1
        assert not is_duplicate(sim, 0.99)[top]  # never a duplicate, whatever eps
    hard_top = rank_order(dist, "hard", keys=keys)[0]
    assert dist[hard_top] == dist.max()
    easy_top = rank_order(dist, "easy", keys=keys)[0]
    assert dist[easy_top] == dist.min()


@pytest.mark.parametrize("rank", ["hard", "easy", "random"])
def test_order_independence(rank):
    emb, dist, group, keys = planted(seed=2)
    sim, nn = semdedup_cluster(emb, dist, rank=rank, seed=5, cluster_id=1, keys=keys)
    perm = np.random.default_rng(9).permutation(len(emb))
    sim_p, nn_p = semdedup_cluster(emb[perm], dist[perm], rank=rank, seed=5, cluster_id=1, keys=keys[perm])
    # member perm[i] of the original is row i of the shuffled input
    np.testing.assert_array_equal(sim_p, sim[perm])
    nn_key = np.where(nn >= 0, keys[np.maximum(nn, 0)], -1)
    nn_key_p = np.where(nn_p >= 0, keys[perm][np.maximum(nn_p, 0)], -1)
    np.testing.assert_array_equal(nn_key_p, nn_key[perm])


def test_semdedup_cluster_matches_dense_reference_in_rank_order():
    emb, dist, _, keys = planted(seed=3)
    order = rank_order(dist, "hard", keys=keys)
    sim, nn = semdedup_cluster(emb, dist, rank="hard", keys=keys, block=5)
    ref_sim, _, sims = dense_reference(emb[order])
    np.testing.assert_allclose(sim[order][1:], ref_sim[1:], atol=1e-6)
    # nn is an input index whose similarity attains the maximum
    for pos in range(1, len(order)):
        j = order[pos]
        assert float(emb[j].astype(np.float64) @ emb[nn[j]].astype(np.float64)) == pytest.approx(
            ref_sim[pos], abs=1e-6
        )


def test_empty_and_single_member_clusters():
    sim, nn = semdedup_cluster(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    assert sim.shape == nn.shape == (0,)
    sim, nn = semdedup_cluster(unit(np.ones((1, 4))), np.array([0.3], np.float32))
    assert np.isnan(sim[0]) and nn.tolist() == [-1]


def test_unknown_rank_is_rejected():
    with pytest.raises(ValueError, match="dedup.rank"):
        rank_order(np.zeros(3), "median")  # type: ignore[arg-type]


# -- ε --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored_column():
    """A realistic ``dup_max_sim`` column: planted groups plus random rows, one NaN."""
    emb, dist, _, keys = planted(seed=4)
    sim, _ = semdedup_cluster(emb, dist, rank="hard", keys=keys)
    return sim


@settings(max_examples=200, deadline=None)
@given(
    e1=st.floats(min_value=1e-4, max_value=0.999, allow_nan=False),
    e2=st.floats(min_value=1e-4, max_value=0.999, allow_nan=False),
)
def test_larger_eps_never_keeps_more(stored_column, e1, e2):
    lo, hi = sorted((e1, e2))
    kept_lo = ~is_duplicate(stored_column, lo)
    kept_hi = ~is_duplicate(stored_column, hi)
    assert kept_hi.sum() <= kept_lo.sum()
    assert not (kept_hi & ~kept_lo).any()  # what the larger ε keeps, the smaller keeps too
    fr = kept_fraction_by_eps(stored_column, [lo, hi])
    assert fr[float(hi)] <= fr[float(lo)]


@settings(max_examples=100, deadline=None)
@given(
    sims=st.lists(st.one_of(st.floats(-1.0, 1.0, width=32), st.just(float("nan"))), min_size=0, max_size=40),
    eps=st.lists(st.floats(min_value=1e-3, max_value=0.999), min_size=1, max_size=6),
)
def test_kept_fraction_by_eps_matches_counting(sims, eps):
    col = np.asarray(sims, np.float32)
    fr = kept_fraction_by_eps(col, eps)
    assert set(fr) == {float(e) for e in eps}
    for e in eps:
        if len(col) == 0:
            assert fr[float(e)] == 1.0
            continue
        kept = sum(1 for s in sims if np.isnan(s) or not (np.float32(s) >= 1.0 - e))
        assert fr[float(e)] == kept / len(col)


def test_kept_fraction_on_planted_groups(stored_column):
    n = len(stored_column)
    fr = kept_fraction_by_eps(stored_column, [0.001, 0.05, 0.3, 0.6])
    assert fr[0.05] == 20 / n  # one per group
    assert fr[0.001] >= fr[0.05]  # noisy copies at cosine ≈ 0.996 survive ε = 0.001, exact ones do not
    assert fr[0.001] < 1.0
    assert fr[0.6] <= fr[0.3] <= fr[0.05]


def test_is_duplicate_threshold_and_nan():
    col = np.array([np.nan, 0.95, 0.9499, 1.0, -1.0], np.float32)
    assert is_duplicate(col, 0.05).tolist() == [False, True, False, True, False]
    assert is_duplicate(col, 0.999).tolist() == [False, True, True, True, False]
