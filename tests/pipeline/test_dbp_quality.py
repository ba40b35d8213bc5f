"""``dbp_quality``: DBP (SemDeDup, then complexity quotas) over the best ``prune.quality_pool`` of the documents by
``quality_score`` — the DBP paper's recipe, which filters by a quality score before pruning."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from winnow.pipeline.config import load_config
from winnow.pipeline.prune import decide
from winnow.pipeline.prune.strategies.dbp import pool_size

K = 5


def scored_frame(seed: int, n: int = 600) -> tuple[pl.DataFrame, np.ndarray]:
    """Several shards, clusters, SemDeDup similarities (some null) and distinct quality scores."""
    rng = np.random.default_rng(seed)
    stems = np.sort(rng.choice(["a", "b", "c"], n))
    f = pl.DataFrame({"stem": stems}).with_columns(pl.int_range(0, pl.len()).over("stem").cast(pl.Int64).alias("pos"))
    sims = np.where(rng.random(n) < 0.1, np.nan, np.round(rng.random(n), 2)).astype(np.float32)
    f = f.with_columns(
        pl.Series("cluster_id", rng.integers(0, K, n).astype(np.int32)),
        pl.Series("dist_to_centroid", np.round(rng.random(n), 2).astype(np.float32)),
        pl.Series("dup_max_sim", sims).fill_nan(None),
        pl.Series("quality_score", rng.permutation(n).astype(np.float64) / n),  # distinct: the pool is known
    )
    cent = rng.standard_normal((K, 8)).astype(np.float32)
    return f, cent / np.linalg.norm(cent, axis=1, keepdims=True)


def cfg_of(*sets: str):
    return load_config(None, [*sets, "dedup.eps=0.2"], {"io.input": ["unused"], "io.output": "unused"})


def test_pool_size_rounds_half_up_and_holds_the_target():
    assert pool_size(0.5, 10, 3) == 5
    assert pool_size(0.25, 10, 1) == 3  # 2.5 -> 3
    assert pool_size(0.2, 10, 4) == 4  # the target is larger than the pool share
    assert pool_size(1.0, 7, 0) == 7


@pytest.mark.parametrize(("pool", "count"), [(0.5, 120), (0.3, 40), (0.8, 400)])
@pytest.mark.parametrize("seed", [0, 1])
def test_dbp_quality_is_dbp_on_the_best_documents(pool, count, seed):
    frame, cent = scored_frame(seed)
    n = frame.height
    sets = ("prune.strategy=dbp_quality", f"prune.keep_count={count}", f"prune.quality_pool={pool}")
    got = decide(frame, cfg_of(*sets), cent)
    size = max(int(np.floor(pool * n + 0.5)), count)
    best = np.argsort(-frame["quality_score"].to_numpy(), kind="stable")[:size]  # distinct scores: no ties
    in_pool = np.zeros(n, dtype=bool)
    in_pool[best] = True
    assert got.summary["quality_pool"] == size
    # outside the pool: dropped with their own reason; inside: exactly DBP's decision on the pool alone
    assert not got.keep[~in_pool].any()
    assert set(got.reason[~in_pool].tolist()) == {"quality_pool"}
    alone = decide(frame.filter(pl.Series(in_pool)), cfg_of("prune.strategy=dbp", f"prune.keep_count={count}"), cent)
    np.testing.assert_array_equal(got.keep[in_pool], alone.keep)
    assert got.reason[in_pool].tolist() == alone.reason.tolist()
    assert int(got.keep.sum()) == count
    # the books: kept + dropped = n
    assert got.summary["kept"] + sum(got.summary["dropped_by_reason"].values()) == n


def test_a_pool_of_every_document_is_dbp():
    frame, cent = scored_frame(2)
    a = decide(frame, cfg_of("prune.strategy=dbp_quality", "prune.keep_fraction=0.3", "prune.quality_pool=1.0"), cent)
    b = decide(frame, cfg_of("prune.strategy=dbp", "prune.keep_fraction=0.3"), cent)
    np.testing.assert_array_equal(a.keep, b.keep)
    assert a.reason.tolist() == b.reason.tolist()


def test_quality_pool_is_validated():
    with pytest.raises(Exception, match="quality_pool"):
        cfg_of("prune.strategy=dbp_quality", "prune.keep_fraction=0.3", "prune.quality_pool=0")
