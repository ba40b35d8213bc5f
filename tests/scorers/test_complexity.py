"""Concept complexity and DBP quotas (DESIGN §3.5) against values worked out by hand, and water-filling checked
for feasibility and optimality (exhaustively on tiny cases, by the pairwise-exchange certificate on larger ones)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from winnow.pipeline.config import load_config
from winnow.pipeline.prune import cluster_table
from winnow.scorers.complexity import complexity, d_inter, dbp_quotas, quota_bounds, softmax, water_fill

# -- the hand-worked example ----------------------------------------------------------------------------------------
#
# Four unit centroids in 3-d with rational cosines:
#   c0 = (1, 0, 0), c1 = (0.6, 0.8, 0), c2 = (0, 1, 0), c3 = (0.6, 0, 0.8)
# cos(c0,c1) = 0.6   cos(c0,c2) = 0    cos(c0,c3) = 0.6
# cos(c1,c2) = 0.8   cos(c1,c3) = 0.36 cos(c2,c3) = 0
# so the cosine distances 1 − cos are
#         c0    c1    c2    c3
#   c0    -     0.4   1.0   0.4
#   c1    0.4   -     0.2   0.64
#   c2    1.0   0.2   -     1.0
#   c3    0.4   0.64  1.0   -
CENTROIDS = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.6, 0.0, 0.8]])

# d_inter with l >= 3 (all others): row means
D_INTER_ALL = [(0.4 + 1.0 + 0.4) / 3, (0.4 + 0.2 + 0.64) / 3, (1.0 + 0.2 + 1.0) / 3, (0.4 + 0.64 + 1.0) / 3]
# = [0.6, 0.41333.., 0.73333.., 0.68]
D_INTER_1 = [0.4, 0.2, 0.2, 0.4]  # the single nearest other centroid
D_INTER_2 = [(0.4 + 0.4) / 2, (0.2 + 0.4) / 2, (0.2 + 1.0) / 2, (0.4 + 0.64) / 2]  # = [0.4, 0.3, 0.6, 0.52]

# members: (cluster_id, dist_to_centroid); member 4 (cluster 1, dist 0.6) is a SemDeDup duplicate
MEMBERS = [(0, 0.1), (0, 0.3), (1, 0.1), (1, 0.2), (1, 0.6), (2, 0.5), (3, 0.1), (3, 0.2), (3, 0.3), (3, 0.4)]
SURVIVORS = np.array([True, True, True, True, False, True, True, True, True, True])
SIZES = [2, 3, 1, 4]
SIZES_AFTER_DEDUP = [2, 2, 1, 4]
# d_intra over the survivors: (0.1+0.3)/2, (0.1+0.2)/2 (0.6 is a duplicate), 0.5/1, (0.1+0.2+0.3+0.4)/4
D_INTRA = [0.2, 0.15, 0.5, 0.25]
# complexity d_inter · d_intra: 0.6·0.2 = 0.12, 0.41333·0.15 = 0.062, (cluster 2 has 1 < 2 members: the mean of
# the others, (0.12 + 0.062 + 0.17) / 3 = 0.352 / 3 = 0.117333..), 0.68·0.25 = 0.17
COMPLEXITY = [0.12, 0.062, 0.352 / 3, 0.17]
# softmax at τ = 0.5: exp(C / 0.5) normalised
_E = [math.exp(0.24), math.exp(0.124), math.exp(0.704 / 3), math.exp(0.34)]
P = [e / sum(_E) for e in _E]  # ≈ [0.2506, 0.2232, 0.2493, 0.2770]


def example_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {"cluster_id": [m[0] for m in MEMBERS], "dist_to_centroid": [m[1] for m in MEMBERS]},
        schema={"cluster_id": pl.Int32, "dist_to_centroid": pl.Float32},
    )


def cfg(*sets: str):
    return load_config(None, list(sets))


def test_the_example_centroids_are_unit_and_have_the_stated_cosines():
    np.testing.assert_allclose(np.linalg.norm(CENTROIDS, axis=1), 1.0)
    np.testing.assert_allclose(
        1.0 - CENTROIDS @ CENTROIDS.T,
        [[0, 0.4, 1.0, 0.4], [0.4, 0, 0.2, 0.64], [1.0, 0.2, 0, 1.0], [0.4, 0.64, 1.0, 0]],
        atol=1e-12,
    )


@pytest.mark.parametrize("neighbors, expected", [(20, D_INTER_ALL), (3, D_INTER_ALL), (2, D_INTER_2), (1, D_INTER_1)])
def test_d_inter_by_hand(neighbors, expected):
    np.testing.assert_allclose(d_inter(CENTROIDS, neighbors), expected, atol=1e-12)
    # scaling the centroids does not matter: cosines
    np.testing.assert_allclose(d_inter(CENTROIDS * [[2.0], [0.5], [3.0], [1.0]], neighbors), expected, atol=1e-12)


def test_d_inter_few_clusters():
    assert d_inter(CENTROIDS[:1]).tolist() == [0.0]
    np.testing.assert_allclose(d_inter(CENTROIDS[:2]), [0.4, 0.4])  # each other's only neighbour


def test_cluster_table_by_hand():
    size, size_s, d_intra, d_int, comp = cluster_table(example_frame(), CENTROIDS, SURVIVORS, cfg())
    assert size.tolist() == SIZES
    assert size_s.tolist() == SIZES_AFTER_DEDUP
    np.testing.assert_allclose(d_intra, D_INTRA, atol=1e-7)  # float32 distances
    np.testing.assert_allclose(d_int, D_INTER_ALL, atol=1e-12)
    np.testing.assert_allclose(comp, COMPLEXITY, atol=1e-7)


def test_cluster_table_uses_dbp_neighbors_and_min_size():
    _, _, _, d_int, comp = cluster_table(
        example_frame(), CENTROIDS, SURVIVORS, cfg("prune.dbp_neighbors=1", "prune.dbp_min_cluster_size=3")
    )
    np.testing.assert_allclose(d_int, D_INTER_1, atol=1e-12)
    # sizes after dedup [2, 2, 1, 4]: only cluster 3 has >= 3 members: 0.4 · 0.25 = 0.1; the others take its value
    np.testing.assert_allclose(comp, [0.1, 0.1, 0.1, 0.1], atol=1e-7)


def test_cluster_with_no_survivors_takes_the_mean_of_the_others():
    survivors = SURVIVORS.copy()
    survivors[[0, 1]] = False  # cluster 0 loses both members
    size, size_s, d_intra, _, comp = cluster_table(example_frame(), CENTROIDS, survivors, cfg())
    assert size_s.tolist() == [0, 2, 1, 4]
    assert d_intra[0] == 0.0
    # clusters 0 (0 members) and 2 (1 member) are below 2: both take the mean of 0.062 and 0.17 = 0.116
    np.testing.assert_allclose(comp, [0.116, 0.062, 0.116, 0.17], atol=1e-7)


def test_complexity_by_hand():
    np.testing.assert_allclose(complexity([0.2, 0.15, 0.5, 0.25], D_INTER_ALL, SIZES_AFTER_DEDUP), COMPLEXITY)
    # min_cluster_size=1: nobody is small, cluster 2 keeps 0.73333 · 0.5 = 0.366667
    np.testing.assert_allclose(
        complexity([0.2, 0.15, 0.5, 0.25], D_INTER_ALL, SIZES_AFTER_DEDUP, min_cluster_size=1),
        [0.12, 0.062, 1.1 / 3, 0.17],
    )
    # every cluster small: 0
    assert complexity([0.1, 0.2], [0.5, 0.5], [1, 0]).tolist() == [0.0, 0.0]


def test_softmax_by_hand():
    np.testing.assert_allclose(softmax([0.0, math.log(2.0)], temperature=1.0), [1 / 3, 2 / 3])
    # τ = 0.5 doubles the logits: exp(2 ln 2) = 4
    np.testing.assert_allclose(softmax([0.0, math.log(2.0)], temperature=0.5), [1 / 5, 4 / 5])
    np.testing.assert_allclose(softmax([1000.0, 1000.0 + math.log(3.0)], temperature=1.0), [1 / 4, 3 / 4])
    np.testing.assert_allclose(softmax(COMPLEXITY, 0.5), P)
    assert softmax([0.3, 0.3, 0.3]).tolist() == pytest.approx([1 / 3] * 3)


def test_quota_bounds_by_hand():
    # N = 16, k = 4, balance 0.5: ⌊0.5·16/4⌋ = 2, capped at n_j − 1 = [1, 1, 0, 3]
    lb, ub = quota_bounds(SIZES_AFTER_DEDUP, 16, 0.5)
    assert lb.tolist() == [1, 1, 0, 2] and ub.tolist() == SIZES_AFTER_DEDUP
    # N = 6: ⌊0.75⌋ = 0
    assert quota_bounds(SIZES_AFTER_DEDUP, 6, 0.5)[0].tolist() == [0, 0, 0, 0]
    # empty clusters never get a negative lower bound
    assert quota_bounds([0, 5], 10, 1.0)[0].tolist() == [0, 4]


def test_dbp_quotas_by_hand_n6():
    # ideal = 6·P ≈ [1.5036, 1.3389, 1.4956, 1.6618]; lb = 0, ub = [2, 2, 1, 4].
    # cluster 2 clips at its ub 1; the others: 1.5036 + 1.3389 + 1.6618 + 3λ = 6 − 1  →  λ ≈ 0.1652
    # x ≈ [1.6688, 1.5041, 1, 1.8270]; floors [1, 1, 1, 1] = 4, the 2 left go to the largest fractions
    # (0.8270 → cluster 3, 0.6688 → cluster 0)  →  [2, 1, 1, 2]
    comp, prob, quota = dbp_quotas(SIZES_AFTER_DEDUP, D_INTRA, D_INTER_ALL, 6)
    np.testing.assert_allclose(comp, COMPLEXITY, atol=1e-12)
    np.testing.assert_allclose(prob, P, atol=1e-12)
    assert quota.tolist() == [2, 1, 1, 2]
    lam = (6 - 1 - 6 * (P[0] + P[1] + P[3])) / 3
    assert lam == pytest.approx(0.1652, abs=1e-4)


def test_dbp_quotas_by_hand_n7():
    # ideal = 7·P ≈ [1.7542, 1.5621, 1.7449, 1.9387]; cluster 2 clips at 1 and cluster 0 at 2, then
    # 1.5621 + 1.9387 + 2λ = 7 − 1 − 2  →  λ ≈ 0.2496; x ≈ [2, 1.8117, 1, 2.1883]; floors sum to 6, the last unit
    # goes to the largest fraction (0.8117, cluster 1)  →  [2, 2, 1, 2]
    _, _, quota = dbp_quotas(SIZES_AFTER_DEDUP, D_INTRA, D_INTER_ALL, 7)
    assert quota.tolist() == [2, 2, 1, 2]
    assert 7 * P[0] + (4 - 7 * (P[1] + P[3])) / 2 > 2  # cluster 0 really is clipped


def test_water_fill_by_hand():
    # no bound active, λ = 0: floors [3, 3, 3], the unit left goes to the largest fraction (0.4)
    assert water_fill([3.3, 3.3, 3.4], [0, 0, 0], [10, 10, 10], 10).tolist() == [3, 3, 4]
    # cluster 2 clips at ub 1; 5 + λ + 3 + λ = 9 → λ = 0.5: [5.5, 3.5, 1]; tie on 0.5: the lower index wins
    assert water_fill([5, 3, 2], [0, 0, 0], [10, 10, 1], 10).tolist() == [6, 3, 1]
    # a lower bound binds: cluster 1 held at 3; 8 + λ + 1 + λ = 7 → λ = −1: [7, 3, 0]
    assert water_fill([8, 1, 1], [0, 3, 0], [10, 10, 10], 10).tolist() == [7, 3, 0]
    # the extremes of the feasible range
    assert water_fill([5, 3, 2], [1, 1, 1], [4, 4, 4], 3).tolist() == [1, 1, 1]
    assert water_fill([5, 3, 2], [1, 1, 1], [4, 4, 4], 12).tolist() == [4, 4, 4]
    assert water_fill([], [], [], 0).tolist() == []


@pytest.mark.parametrize("target", [2, 13, -1])
def test_water_fill_target_out_of_range(target):
    with pytest.raises(ValueError, match="target"):
        water_fill([5, 3, 2], [1, 1, 1], [4, 4, 4], target)


def test_water_fill_inconsistent_bounds():
    with pytest.raises(ValueError, match="lower bound"):
        water_fill([1, 1], [3, 0], [2, 5], 3)


# -- water-filling: properties --------------------------------------------------------------------------------------


def sq_err(x, ideal) -> float:
    return float(np.sum((np.asarray(x, np.float64) - np.asarray(ideal, np.float64)) ** 2))


def brute_force(ideal, lb, ub, target) -> float:
    """The smallest squared error over every integer vector in the box with the right sum."""
    best = math.inf
    for x in itertools.product(*[range(int(a), int(b) + 1) for a, b in zip(lb, ub, strict=True)]):
        if sum(x) == target:
            best = min(best, sq_err(x, ideal))
    return best


def exchange_certificate(x, ideal, lb, ub, tol=1e-9) -> None:
    """Separable convex objective, one sum constraint: x is optimal iff no unit moved from j to i helps."""
    x = np.asarray(x, np.float64)
    ideal = np.asarray(ideal, np.float64)
    for i in range(len(x)):
        if x[i] >= ub[i]:
            continue
        for j in range(len(x)):
            if i == j or x[j] <= lb[j]:
                continue
            gain = ((x[i] + 1 - ideal[i]) ** 2 - (x[i] - ideal[i]) ** 2) + (
                (x[j] - 1 - ideal[j]) ** 2 - (x[j] - ideal[j]) ** 2
            )
            assert gain >= -tol, (i, j, x.tolist(), ideal.tolist())


@st.composite
def instances(draw, max_k=8, max_size=30):
    k = draw(st.integers(1, max_k))
    sizes = np.array(draw(st.lists(st.integers(0, max_size), min_size=k, max_size=k)), np.int64)
    weights = np.array(draw(st.lists(st.floats(1e-6, 1.0), min_size=k, max_size=k)))
    prob = weights / weights.sum()
    balance = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))
    total = int(sizes.sum())
    target = draw(st.integers(0, total))
    lb, ub = quota_bounds(sizes, target, balance)
    assume(lb.sum() <= target)  # a high balance can make the lower bounds alone exceed a target
    return target * prob, lb, ub, target


@settings(max_examples=400, deadline=None)
@given(instances())
def test_water_fill_feasible_and_optimal(inst):
    ideal, lb, ub, target = inst
    x = water_fill(ideal, lb, ub, target)
    assert x.dtype == np.int64
    assert int(x.sum()) == target
    assert (x >= lb).all() and (x <= ub).all()
    exchange_certificate(x, ideal, lb, ub)


@settings(max_examples=300, deadline=None)
@given(
    k=st.integers(1, 3),
    data=st.data(),
)
def test_water_fill_matches_exhaustive_search(k, data):
    ub = np.array(data.draw(st.lists(st.integers(0, 6), min_size=k, max_size=k)), np.int64)
    lb = np.array([data.draw(st.integers(0, int(u))) for u in ub], np.int64)
    hi = min(int(ub.sum()), 10)
    assume(int(lb.sum()) <= hi)
    target = data.draw(st.integers(int(lb.sum()), hi))
    ideal = np.array(data.draw(st.lists(st.floats(0.0, 10.0), min_size=k, max_size=k)))
    x = water_fill(ideal, lb, ub, target)
    assert int(x.sum()) == target and (x >= lb).all() and (x <= ub).all()
    assert sq_err(x, ideal) <= brute_force(ideal, lb, ub, target) + 1e-9


@settings(max_examples=200, deadline=None)
@given(instances(max_k=12, max_size=200), st.floats(0.05, 5.0))
def test_dbp_quotas_sum_and_bounds(inst, temperature):
    _, lb, ub, target = inst
    k = len(ub)
    rng = np.random.default_rng(k + target)
    d_intra = rng.uniform(0.05, 0.6, size=k)
    d_int = rng.uniform(0.2, 1.2, size=k)
    comp, prob, quota = dbp_quotas(ub, d_intra, d_int, target, temperature=temperature, balance=0.0)
    assert prob.sum() == pytest.approx(1.0) and (prob > 0).all()
    assert int(quota.sum()) == target
    assert (quota >= 0).all() and (quota <= ub).all()
    exchange_certificate(quota, target * prob, np.zeros(k), ub)
