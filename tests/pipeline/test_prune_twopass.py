"""The two-pass decisions (global statistics and cuts, then each shard alone) equal the single-frame ``decide``.

Frames with many ties (scores rounded to two decimals, null similarities) and several shards; the radix select is
also run with a collect threshold of 3 rows, so that it descends through every digit level instead of collecting.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from winnow.pipeline.config import load_config
from winnow.pipeline.prune import STRATEGIES, decide
from winnow.pipeline.prune import select as S
from winnow.pipeline.prune.base import row_hash, shard_row_hash
from winnow.pipeline.prune.twopass import decide_two_pass

K = 7


def frame_and_centroids(seed: int, n: int = 1500):
    rng = np.random.default_rng(seed)
    stems = np.sort(rng.choice(["a", "b", "c__d", "e"], n))
    f = pl.DataFrame({"stem": stems}).with_columns(pl.int_range(0, pl.len()).over("stem").cast(pl.Int64).alias("pos"))
    sims = np.where(rng.random(n) < 0.1, np.nan, np.round(rng.random(n), 2)).astype(np.float32)
    f = f.with_columns(
        pl.Series("id", [f"i{i}" for i in range(n)]),
        pl.Series("cluster_id", rng.integers(0, K, n).astype(np.int32)),
        pl.Series("dist_to_centroid", np.round(rng.random(n), 2).astype(np.float32)),
        pl.Series("dup_max_sim", sims).fill_nan(None),
        # dbp_quality's pool: one decimal (ties across the pool's cut) and some nulls (-inf)
        pl.Series("quality_score", np.where(rng.random(n) < 0.05, np.nan, np.round(rng.random(n), 1))).fill_nan(None),
    )
    cent = rng.standard_normal((K, 8)).astype(np.float32)
    return f, cent / np.linalg.norm(cent, axis=1, keepdims=True)


def cfg_of(*sets: str):
    return load_config(None, [*sets, "dedup.eps=0.2"], {"io.input": ["unused"], "io.output": "unused"})


CASES = [
    ["prune.strategy=none"],
    ["prune.strategy=random", "prune.keep_fraction=0.3"],
    ["prune.strategy=semdedup"],
    ["prune.strategy=semdedup", "prune.keep_count=1000"],
    ["prune.strategy=semdedup", "prune.keep_count=10"],  # the cut inside the ties of the null similarities
    ["prune.strategy=prototypicality_easy", "prune.keep_fraction=0.4"],
    ["prune.strategy=prototypicality_hard", "prune.keep_fraction=0.4", "prune.balance=0.7"],
    ["prune.strategy=prototypicality_easy", "prune.keep_count=700", "prune.balance=1.0"],
    ["prune.strategy=dbp", "prune.keep_fraction=0.4"],
    ["prune.strategy=dbp", "prune.keep_fraction=0.97"],  # above the survivors: the least-duplicated duplicates
    ["prune.strategy=dbp", "prune.keep_fraction=0.3", "prune.dbp_keep=easy"],
    ["prune.strategy=dbp_quality", "prune.keep_fraction=0.2"],
    ["prune.strategy=dbp_quality", "prune.keep_fraction=0.45", "prune.quality_pool=0.5"],  # above the survivors
]


def test_every_builtin_strategy_has_a_two_pass_form():
    two_pass = {e.name for e in STRATEGIES.entries() if e.meta.get("two_pass")}
    assert two_pass == set(STRATEGIES.names())


@pytest.mark.parametrize("cap", [1 << 20, 3], ids=["collect", "descend"])
@pytest.mark.parametrize("sets", CASES, ids=[" ".join(s) for s in CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_two_pass_equals_single_frame(monkeypatch, sets, cap, seed):
    monkeypatch.setattr(S, "COLLECT_CAP", cap)
    frame, cent = frame_and_centroids(seed)
    cfg = cfg_of(*sets)
    ref = decide(frame, cfg, cent)
    plan, keep, reason, repeat = decide_two_pass(frame, cfg, cent)
    np.testing.assert_array_equal(keep, ref.keep)
    assert reason.tolist() == ref.reason.tolist()
    assert repeat is None
    assert plan.summary == ref.summary
    assert plan.cluster_stats.equals(ref.cluster_stats)
    # the books: kept + dropped = n, a drop reason exactly where dropped, the target to the row
    assert plan.summary["kept"] + sum(plan.summary["dropped_by_reason"].values()) == frame.height
    assert ((reason == None) == keep).all()  # noqa: E711 - elementwise on an object array
    if ref.target is not None:
        assert int(keep.sum()) == ref.target


def test_two_pass_decisions_do_not_depend_on_how_the_shards_are_cut():
    """The same documents under the same stems in another frame order: the same decisions per (stem, row)."""
    frame, cent = frame_and_centroids(3)
    cfg = cfg_of("prune.strategy=prototypicality_hard", "prune.keep_fraction=0.25", "prune.balance=0.5")
    _, keep, _, _ = decide_two_pass(frame, cfg, cent)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=5).sort(["stem", "pos"])
    _, again, _, _ = decide_two_pass(shuffled, cfg, cent)
    np.testing.assert_array_equal(keep, again)


@pytest.mark.parametrize("groups", [1, 5, 3000])
def test_select_cuts_at_the_nth_key_of_every_group(groups):
    rng = np.random.default_rng(groups)
    n = 20_000
    g = rng.integers(0, groups, n)
    keys = np.stack([rng.integers(0, 4, n), rng.integers(0, 3, n), rng.permutation(n)], axis=1).astype(np.uint64)
    need = rng.integers(0, 12, groups)
    need[0] = n  # more than the group holds: all of it
    chunks = [(g[i : i + 3000], keys[i : i + 3000]) for i in range(0, n, 3000)]
    for cap in (1 << 20, 2):
        cuts = S.select(lambda: iter(chunks), groups, need, collect_cap=cap)
        kept = cuts.keep(g, keys)
        order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0], g))
        expect = np.zeros(n, bool)
        starts = np.searchsorted(g[order], np.arange(groups))
        ends = np.searchsorted(g[order], np.arange(groups), side="right")
        for grp in range(groups):
            expect[order[starts[grp] : min(ends[grp], starts[grp] + need[grp])]] = True
        np.testing.assert_array_equal(kept, expect)


def test_score_word_orders_like_the_floats():
    x = np.array([-np.inf, -2.5, -1e-300, -0.0, 0.0, 1e-300, 0.5, 3.0, np.inf])
    w = S.score_word(x, largest=False)
    assert (np.diff(w.astype(object)) >= 0).all()
    assert w[3] == w[4]  # -0.0 ties with 0.0, as float comparison says
    assert (np.diff(S.score_word(x, largest=True).astype(object)) <= 0).all()


def test_shard_row_hash_is_row_hash():
    stems, pos = pl.Series(["x__y"] * 5), pl.Series(range(5))
    np.testing.assert_array_equal(shard_row_hash("x__y", 5, 7), row_hash(stems, pos, 7))
    assert not np.array_equal(shard_row_hash("x__y", 5, 7, "random"), row_hash(stems, pos, 7))


def quality_frame(seed: int, n: int = 400) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    stems = np.sort(rng.choice(["s0", "s1", "s2"], n))
    f = pl.DataFrame({"stem": stems}).with_columns(pl.int_range(0, pl.len()).over("stem").cast(pl.Int64).alias("pos"))
    return f.with_columns(
        pl.Series("source", rng.choice(["web", "books"], n)),
        pl.Series("quality_domain", rng.choice(["Law", "Other"], n)),
        pl.Series("n_words", rng.integers(1, 300, n).astype(np.int32)),
        pl.Series("quality_score", rng.integers(1, 6, n).astype(np.float32)),
        pl.Series("quality_overall", rng.integers(1, 6, n).astype(np.int8)),
    )


@pytest.mark.parametrize(
    "sets",
    [
        ["prune.strategy=quality", "prune.keep_fraction=0.4"],
        ["prune.strategy=quality", "prune.keep_fraction=0.6", "prune.stratify=[source,quality_domain]"],
        ["prune.strategy=dataman_level", "prune.keep_fraction=0.5", "prune.dataman_level=4"],
        ["prune.strategy=dataman_level"],
    ],
)
def test_quality_strategies_through_the_plan(sets):
    """quality / dataman_level: their two-pass forms (no per-row result in the plan) equal the single frame."""
    frame = quality_frame(0)
    cfg = cfg_of(*sets)
    ref = decide(frame, cfg, None)
    plan, keep, reason, repeat = decide_two_pass(frame, cfg, None)
    assert plan.rows is None
    np.testing.assert_array_equal(keep, ref.keep)
    np.testing.assert_array_equal(repeat, ref.repeat)
    assert reason.tolist() == ref.reason.tolist()
    assert plan.summary == ref.summary


def test_a_strategy_without_a_two_pass_form_goes_through_the_plan_rows(monkeypatch):
    """A plug-in without ``two_pass`` is decided on one frame; the plan carries its rows to the shards."""
    monkeypatch.setitem(STRATEGIES["dataman_level"].meta, "two_pass", None)
    frame = quality_frame(1)
    cfg = cfg_of("prune.strategy=dataman_level", "prune.keep_fraction=0.5", "prune.dataman_level=2")
    ref = decide(frame, cfg, None)
    plan, keep, reason, repeat = decide_two_pass(frame, cfg, None)
    assert plan.rows is not None and plan.rows.height == frame.height
    np.testing.assert_array_equal(keep, ref.keep)
    np.testing.assert_array_equal(repeat, ref.repeat)
    assert reason.tolist() == ref.reason.tolist()
    assert plan.summary == ref.summary
