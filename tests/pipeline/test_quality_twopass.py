"""``quality``'s two-pass form (census, windows at the strata's quotas, cuts; then each shard alone) equals the
single-frame ``quality``: the same keep/drop, reasons, repeat column and ``prune.json`` summary.

Tie-heavy frames: integer scores (with nulls and NaN), integer word counts with nulls and zeros and a few long
documents, several shards, strata with null keys. Each case also runs with the radix search descending through every
digit (``COLLECT_CAP`` 3), with no window collected (``WINDOW_CAP`` 0: every stratum's cut from a search of its own)
and with only some windows collected.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from winnow.pipeline.config import load_config
from winnow.pipeline.prune import decide
from winnow.pipeline.prune import select as S
from winnow.pipeline.prune import twopass as TP
from winnow.pipeline.prune.strategies import quality as Q
from winnow.pipeline.prune.twopass import decide_two_pass

STEMS = ["a__x", "a", "b-2", "b", "zz"]


def tie_frame(seed: int, n: int = 700, nan_scores: bool = False) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    stems = np.sort(rng.choice(STEMS[: 2 + seed % 4], n))
    f = pl.DataFrame({"stem": stems}).with_columns(pl.int_range(0, pl.len()).over("stem").cast(pl.Int64).alias("pos"))
    words = rng.integers(0, 40, n).astype(np.float64)
    words[rng.random(n) < 0.03] = rng.integers(300, 3000)  # long documents: wide windows around the quotas
    words[rng.random(n) < 0.1] = np.nan
    score = rng.integers(0, 5, n).astype(np.float64)
    score[rng.random(n) < 0.1] = np.nan  # null below
    crit = [rng.integers(1, 4, n).astype(np.float64) for _ in range(2)]
    for c in crit:
        c[rng.random(n) < 0.1] = np.nan
    source = rng.choice(["web", "books", "code", "papers"], n, p=[0.5, 0.3, 0.15, 0.05]).astype(object)
    source[rng.random(n) < 0.05] = None
    domain = rng.choice(["Law", "Medicine", "Other"], n).astype(object)
    domain[rng.random(n) < 0.05] = None
    out = f.with_columns(
        pl.Series("id", [f"d{i}" for i in range(n)]),
        pl.Series("source", source.tolist(), dtype=pl.String),
        pl.Series("quality_domain", domain.tolist(), dtype=pl.String),
        pl.Series("n_words", words).fill_nan(None).cast(pl.Int32),
        pl.Series("quality_score", score.astype(np.float32)).fill_nan(None),
        pl.Series("quality_accuracy", crit[0]).fill_nan(None).cast(pl.Int8),
        pl.Series("quality_coherence", crit[1]).fill_nan(None).cast(pl.Int8),
    )
    if nan_scores:  # NaN (not null) ranks after -inf in the single frame's lexsort; ties among NaN by the hash
        nan = pl.Series(np.where(rng.random(n) < 0.1, np.nan, 1.0))
        out = out.with_columns((pl.col("quality_score") * nan.cast(pl.Float32)).alias("quality_score"))
    return out


def cfg_of(*sets: str):
    return load_config(None, ["prune.strategy=quality", *sets], {"io.input": ["unused"], "io.output": "unused"})


STRATA = "prune.stratify=[source,quality_domain]"
CASES = [
    ["prune.keep_fraction=0.4"],
    ["prune.keep_fraction=0.01"],
    ["prune.keep_count=1"],
    ["prune.keep_fraction=1.0"],
    ["prune.keep_fraction=0.37", STRATA],
    ["prune.keep_fraction=0.93", STRATA],
    ["prune.keep_count=3", STRATA],
    ["prune.keep_fraction=1.0", STRATA],
    ["prune.keep_fraction=0.5", "prune.stratify=[quality_domain]"],
    ["prune.keep_fraction=0.6", "prune.quality_by=[accuracy,coherence]", STRATA],
    ["prune.keep_fraction=0.25", "prune.quality_by=[coherence]"],
]
#: (COLLECT_CAP, WINDOW_CAP)
BIG = 1 << 22
CAPS = {"default": (BIG, BIG), "descend": (3, BIG), "no-window": (BIG, 0), "some-windows": (BIG, 60)}
#: (seed, caps): every seed with the defaults, two with each forced path
RUNS = [*((seed, "default") for seed in range(4)), (0, "descend"), (1, "descend"), (2, "no-window"), (3, "no-window"),
        (1, "some-windows"), (3, "some-windows")]  # fmt: skip


def assert_same(frame: pl.DataFrame, cfg) -> tuple:
    """The two-pass decisions of a token selection equal the single frame's (keep, reason, repeat, summary)."""
    ref = decide(frame, cfg, None)
    plan, keep, reason, repeat = decide_two_pass(frame, cfg, None)
    assert plan.rows is None  # the two-pass form, not the single frame's per-row result
    np.testing.assert_array_equal(keep, ref.keep)
    assert reason.tolist() == ref.reason.tolist()
    np.testing.assert_array_equal(repeat, ref.repeat)
    assert plan.summary == ref.summary
    assert plan.cluster_stats is None and ref.cluster_stats is None
    return plan, keep, reason, repeat


@pytest.mark.parametrize("sets", CASES, ids=[" ".join(s) for s in CASES])
@pytest.mark.parametrize(("seed", "caps"), RUNS, ids=[f"{seed}-{caps}" for seed, caps in RUNS])
def test_two_pass_quality_equals_single_frame(monkeypatch, sets, seed, caps):
    collect, window = CAPS[caps]
    monkeypatch.setattr(S, "COLLECT_CAP", collect)
    monkeypatch.setattr(Q, "WINDOW_CAP", window)
    assert_same(tie_frame(seed), cfg_of(*sets))


@pytest.mark.parametrize("seed", [5, 6])
def test_nan_scores_rank_after_every_number(seed):
    frame = tie_frame(seed, nan_scores=True)
    assert frame["quality_score"].is_nan().sum() > 10
    for sets in (["prune.keep_fraction=0.8"], ["prune.keep_fraction=0.7", STRATA]):
        assert_same(frame, cfg_of(*sets))


def by_hand(rows: list[tuple], stems: list[str] | None = None) -> pl.DataFrame:
    """``(source, n_words, quality_score)`` rows (``test_prune.py``'s hand-computed fixtures), one or more shards."""
    source, words, score = (list(c) for c in zip(*rows, strict=True))
    n = len(rows)
    stems = stems or ["s0"] * n
    f = pl.DataFrame({"stem": stems}).with_columns(pl.int_range(0, pl.len()).over("stem").cast(pl.Int64).alias("pos"))
    return f.with_columns(
        pl.Series("source", source), pl.Series("quality_domain", ["Other"] * n),
        pl.Series("n_words", words, dtype=pl.Int32), pl.Series("quality_score", score, dtype=pl.Float32),
    )  # fmt: skip


TWO_SOURCES = [("books", 30, 0.2), ("books", 30, 0.9), ("web", 10, 0.5), ("web", 10, 0.1), ("web", 10, 0.7),
               ("web", 10, 0.3)]  # fmt: skip
CLEAN_AND_NOISY = [
    *[("clean", 10, q) for q in (0.9, 0.8, 0.7, 0.6)],
    *[("noisy", 10, q) for q in (0.4, 0.3, 0.2, 0.1)],
]


def test_hand_computed_cases_through_the_two_pass_form():
    # test_prune.py's numbers: N = 4 of 6 -> T = 67 tokens, quotas 40 / 27; books draws 30 (10 short), web aims at 37
    ref = {"keep_count=4": [False, True, True, True, True, True], "keep_fraction=0.5": [False, True, True, False, True,
           False], "keep_fraction=1.0": [True] * 6}  # fmt: skip
    for sets, keep in ref.items():
        cfg = cfg_of(f"prune.{sets}", STRATA)
        plan, got, _, repeat = decide_two_pass(by_hand(TWO_SOURCES), cfg, None)
        assert got.tolist() == keep and repeat.tolist() == [int(k) for k in keep]
        assert_same(by_hand(TWO_SOURCES), cfg)
    plan, _, _, _ = decide_two_pass(by_hand(TWO_SOURCES), cfg_of("prune.keep_count=4", STRATA), None)
    assert [(b["source"], b["quota_tokens"], b["drawn_tokens"], b["kept"]) for b in plan.summary["by_stratum"]] == [
        ("books", 40, 30, 1), ("web", 27, 40, 4),
    ]  # fmt: skip
    assert (plan.summary["token_target"], plan.summary["tokens_drawn"], plan.summary["kept"]) == (67, 70, 5)
    # global by default: the clean source; stratified: half of each; the same split over two shards
    two_shards = ["p"] * 3 + ["q"] * 5
    for stems in (None, two_shards):
        _, keep, _, _ = decide_two_pass(by_hand(CLEAN_AND_NOISY, stems), cfg_of("prune.keep_fraction=0.5"), None)
        assert keep.tolist() == [True] * 4 + [False] * 4
        _, keep, _, _ = decide_two_pass(
            by_hand(CLEAN_AND_NOISY, stems), cfg_of("prune.keep_fraction=0.5", STRATA), None
        )
        assert keep.tolist() == [True, True, False, False, True, True, False, False]


def test_ties_at_the_cut_are_a_seeded_draw_across_shards():
    """200 documents of one score and length over two shards: the kept half is the smallest seeded hashes."""
    rows = [("web", 10, 3.0)] * 200
    frame = by_hand(rows, ["a_first"] * 100 + ["b_second"] * 100)
    kept = {}
    for seed in (0, 1):
        cfg = cfg_of("prune.keep_fraction=0.5", f"run.seed={seed}")
        assert_same(frame, cfg)
        _, keep, _, _ = decide_two_pass(frame, cfg, None)
        assert keep.sum() == 100 and 30 <= keep[:100].sum() <= 70
        kept[seed] = keep
    assert (kept[0] != kept[1]).any()


def test_the_global_step_never_builds_the_frame(monkeypatch):
    def no_frame(self):
        raise AssertionError("the two-pass quality read the whole frame")

    monkeypatch.setattr(TP.FrameSource, "frame", no_frame)
    plan, keep, _, _ = decide_two_pass(tie_frame(0), cfg_of("prune.keep_fraction=0.5", STRATA), None)
    assert plan.rows is None and plan.to_json()["single_frame"] is False
    assert 0 < keep.sum() < len(keep)


def test_the_plan_survives_json():
    """The decide stage reads the plan back from ``prune_plan.json``: strata keys (null ones too) and cuts."""
    frame = tie_frame(2)
    cfg = cfg_of("prune.keep_fraction=0.45", STRATA)
    plan, keep, _, _ = decide_two_pass(frame, cfg, None)
    back = TP.Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert any(Q.NULL_KEY in k for k in back.data["strata"])
    again = np.concatenate([TP.apply_plan(back, cfg, sh)[0] for sh in TP.FrameSource(frame, cfg.run.seed)])
    np.testing.assert_array_equal(again, keep)


def test_dataman_level_shares_the_two_pass_form():
    """``dataman_level`` runs the same machinery (``test_dataman_twopass.py`` tests it in depth)."""
    frame = tie_frame(1).with_columns(pl.Series("quality_overall", np.arange(700) % 5 + 1, dtype=pl.Int8))
    cfg = load_config(
        None, ["prune.strategy=dataman_level", "prune.dataman_level=4", "prune.keep_fraction=0.3"],
        {"io.input": ["unused"], "io.output": "unused"},
    )  # fmt: skip
    plan, keep, _, repeat = decide_two_pass(frame, cfg, None)
    ref = decide(frame, cfg, None)
    assert plan.rows is None and plan.to_json()["single_frame"] is False
    np.testing.assert_array_equal(keep, ref.keep)
    np.testing.assert_array_equal(repeat, ref.repeat)


# -- the weighted select and the predecessor cut ---------------------------------------------------------------------


@pytest.mark.parametrize("groups", [1, 4, 300])
def test_weighted_select_finds_the_row_where_the_running_weight_reaches_the_goal(groups):
    rng = np.random.default_rng(groups)
    n = 6000
    g = rng.integers(0, groups, n)
    keys = np.stack([rng.integers(0, 3, n), rng.integers(0, 2, n), rng.permutation(n)], axis=1).astype(np.uint64)
    w = rng.integers(1, 50, n)
    total = np.bincount(g, weights=w, minlength=groups).astype(np.int64)
    goal = rng.integers(-2, total + 3)
    goal[0] = 1
    chunks = [(g[i : i + 999], keys[i : i + 999], w[i : i + 999]) for i in range(0, n, 999)]
    order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0], g))
    for cap in (1 << 20, 2):
        c = S.weighted_select(lambda: iter(chunks), groups, goal, collect_cap=cap)
        for grp in range(groups):
            rows = order[g[order] == grp]
            cum = np.cumsum(w[rows])
            if goal[grp] < 1 or goal[grp] > total[grp]:
                assert not c.found[grp]
                continue
            i = int(np.searchsorted(cum, goal[grp]))
            assert c.found[grp] and c.rank[grp] == i and c.weight[grp] == w[rows[i]]
            assert c.before[grp] == (cum[i - 1] if i else 0)
            np.testing.assert_array_equal(c.key[grp], keys[rows[i]])


def test_predecessor_keeps_exactly_the_smaller_keys():
    big = np.uint64(0xFFFFFFFFFFFFFFFF)
    cut_keys = np.array([[5, 0, 0], [0, 0, 0], [0, 3, 0], [2, 2, 2]], dtype=np.uint64)
    cut = S.predecessor(cut_keys)
    assert cut.none.tolist() == [False, True, False, False]
    np.testing.assert_array_equal(cut.bound[0], [5 - 1, big, big])
    np.testing.assert_array_equal(cut.bound[2], [0, 3 - 1, big])
    np.testing.assert_array_equal(cut.bound[3], [2, 2, 1])
    probe = np.array([[4, 9, 9], [5, 0, 0], [0, 0, 0], [0, 2, 7], [0, 3, 0], [2, 2, 1], [2, 2, 2]], dtype=np.uint64)
    groups = np.array([0, 0, 1, 2, 2, 3, 3])
    assert cut.keep(groups, probe).tolist() == [True, False, False, True, False, True, False]
