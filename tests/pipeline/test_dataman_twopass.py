"""``dataman_level``'s two-pass form (census of the level's tokens, windows where each stratum's goal or rest can cut,
rounds and cuts; then each shard alone) equals the single-frame ``dataman_level``: the same keep/drop, reasons,
``repeat`` column and ``prune.json`` summary.

Tie-heavy frames: integer word counts with nulls and zeros (one token each), several shards, strata with null keys,
``quality_overall`` with nulls and a source that never reaches the level (a stratum without eligible documents).
Targets below the level's tokens (a sample), above them (short strata, upsampled in rounds), right at the boundary
(some strata short, some not) and at whole multiples of them (the rest of the rounds wraps around a stratum's end:
two intervals), and no target. Each case also runs with the radix search descending through every digit
(``COLLECT_CAP`` 3), with no window collected (``WINDOW_CAP`` 0) and with only some collected.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tests.pipeline.test_quality_twopass import assert_same
from winnow.pipeline.config import load_config
from winnow.pipeline.prune import select as S
from winnow.pipeline.prune import twopass as TP
from winnow.pipeline.prune.base import row_hash
from winnow.pipeline.prune.strategies import quality as Q
from winnow.pipeline.prune.twopass import decide_two_pass

STEMS = ["a__x", "a", "b-2", "b", "zz"]
LEVEL = 3
STRATA = "prune.stratify=[source,quality_domain]"


def tie_frame(seed: int, n: int = 700, long_docs: bool = True) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    stems = np.sort(rng.choice(STEMS[: 2 + seed % 4], n))
    f = pl.DataFrame({"stem": stems}).with_columns(pl.int_range(0, pl.len()).over("stem").cast(pl.Int64).alias("pos"))
    words = rng.integers(0, 40, n).astype(np.float64)
    if long_docs:  # a few long documents: windows as wide as whole strata
        words[rng.random(n) < 0.03] = rng.integers(300, 3000)
    words[rng.random(n) < 0.1] = np.nan
    source = rng.choice(["web", "books", "code", "papers"], n, p=[0.5, 0.3, 0.15, 0.05]).astype(object)
    source[rng.random(n) < 0.05] = None
    domain = rng.choice(["Law", "Medicine", "Other"], n).astype(object)
    domain[rng.random(n) < 0.05] = None
    overall = rng.integers(1, 6, n).astype(np.float64)
    overall[source == "papers"] = 1  # papers never reach the level: strata without an eligible document
    overall[rng.random(n) < 0.08] = np.nan
    return f.with_columns(
        pl.Series("id", [f"d{i}" for i in range(n)]),
        pl.Series("source", source.tolist(), dtype=pl.String),
        pl.Series("quality_domain", domain.tolist(), dtype=pl.String),
        pl.Series("n_words", words).fill_nan(None).cast(pl.Int32),
        pl.Series("quality_score", rng.integers(0, 5, n).astype(np.float32)),
        pl.Series("quality_overall", overall).fill_nan(None).cast(pl.Int8),
    )


def cfg_of(*sets: str):
    return load_config(
        None, ["prune.strategy=dataman_level", f"prune.dataman_level={LEVEL}", *sets],
        {"io.input": ["unused"], "io.output": "unused"},
    )  # fmt: skip


def level_share(frame: pl.DataFrame) -> float:
    """The level's tokens over all tokens (the keep fraction at which the level just covers the budget)."""
    t = np.maximum(frame["n_words"].fill_null(1).to_numpy(), 1)
    return float(t[(frame["quality_overall"] == LEVEL).fill_null(False).to_numpy()].sum() / t.sum())


def count_for(frame: pl.DataFrame, multiple: float) -> str:
    """``keep_count`` whose token budget is closest to ``multiple`` times the level's tokens."""
    t = np.maximum(frame["n_words"].fill_null(1).to_numpy(), 1)
    n, w = frame.height, int(t.sum())
    e = int(t[(frame["quality_overall"] == LEVEL).fill_null(False).to_numpy()].sum())
    counts = np.arange(n + 1)
    budgets = (2 * counts * w + n) // (2 * n)
    return f"prune.keep_count={int(counts[np.argmin(np.abs(budgets - multiple * e))])}"


#: (name, sets as a function of the frame)
CASES = {
    "sample": lambda f: [count_for(f, 0.45)],
    "tiny": lambda f: ["prune.keep_count=1"],
    "sample-strata": lambda f: [count_for(f, 0.6), STRATA],
    "short": lambda f: [count_for(f, 1.7)],
    "short-strata": lambda f: [count_for(f, 2.4), STRATA],
    "every-token-strata": lambda f: ["prune.keep_fraction=1.0", STRATA],
    "boundary-strata": lambda f: [count_for(f, 1.0), STRATA],
    "twice-strata": lambda f: [count_for(f, 2.0), STRATA],
    "thrice-domain": lambda f: [count_for(f, 3.0), "prune.stratify=[quality_domain]"],
    "no-target": lambda f: [],
    "no-target-strata": lambda f: [STRATA],
}
BIG = 1 << 22
CAPS = {"default": (BIG, BIG), "descend": (3, BIG), "no-window": (BIG, 0), "some-windows": (BIG, 60)}
#: (seed, long documents, caps)
RUNS = [(0, True, "default"), (1, True, "default"), (2, False, "default"), (3, False, "default"),
        (0, False, "descend"), (1, True, "descend"), (2, True, "no-window"), (3, False, "no-window"),
        (1, False, "some-windows"), (2, False, "some-windows")]  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(
    ("seed", "long_docs", "caps"), RUNS, ids=[f"{s}-{'long' if g else 'short'}-{c}" for s, g, c in RUNS]
)
def test_two_pass_dataman_level_equals_single_frame(monkeypatch, case, seed, long_docs, caps):
    collect, window = CAPS[caps]
    monkeypatch.setattr(S, "COLLECT_CAP", collect)
    monkeypatch.setattr(Q, "WINDOW_CAP", window)
    frame = tie_frame(seed, long_docs=long_docs)
    assert 0.05 < level_share(frame) < 0.3  # the level's tokens: at most a third of all (three rounds fit)
    plan, keep, reason, repeat = assert_same(frame, cfg_of(*CASES[case](frame)))
    level = (frame["quality_overall"] == LEVEL).fill_null(False).to_numpy()
    assert not keep[~level].any() and (reason[~level] == "dataman_level").all()
    assert (keep == (repeat > 0)).all()
    s = plan.summary
    assert s["kept"] + sum(s["dropped_by_reason"].values()) == frame.height
    if case.startswith("no-target"):
        assert (repeat == level).all()
        return
    assert s["draws"] == int(repeat.sum()) == s["kept"] + s["upsampled_draws"]
    assert s["strata_without_eligible"] >= (1 if case.endswith("strata") else 0)


def test_the_cases_cover_short_wrapping_and_partly_short_strata(monkeypatch):
    """The cases above reach every path: short strata, a rest that wraps around a stratum's end (two intervals),
    and, at the boundary, strata short and not short in one run. Every goal falls in its stratum's collected
    window: one weighted search per plan (the intervals' ends), none of a stratum's own."""
    seen = {"two-slots": 0, "short": 0, "mixed": 0}
    real, searches = Q._intervals, []
    search = Q.weighted_select
    monkeypatch.setattr(Q, "weighted_select", lambda *a, **k: searches.append(1) or search(*a, **k))

    def spy(c, quotas, short):
        lo, hi = real(c, quotas, short)
        seen["two-slots"] += int((hi[:, 1] >= lo[:, 1]).any())
        seen["short"] += int(short.any())
        seen["mixed"] += int(short.any() and not short[c.eligible_docs > 0].all())
        return lo, hi

    monkeypatch.setattr(Q, "_intervals", spy)
    for seed in (2, 3):
        frame = tie_frame(seed, long_docs=False)
        for case in ("short", "boundary-strata", "twice-strata", "thrice-domain", "sample-strata"):
            searches.clear()
            assert_same(frame, cfg_of(*CASES[case](frame)))
            assert len(searches) == 1, case
    assert seen["two-slots"] and seen["short"] and seen["mixed"]


def test_no_document_at_the_level_is_a_shortfall():
    frame = tie_frame(0).with_columns(pl.lit(None, dtype=pl.Int8).alias("quality_overall"))
    for sets in (["prune.keep_fraction=0.3"], ["prune.keep_fraction=0.3", STRATA], []):
        plan, keep, _, _ = assert_same(frame, cfg_of(*sets))
        assert not keep.any()
        if sets:
            assert plan.summary["shortfall"] == plan.summary["token_target"] > 0
            assert plan.summary["tokens_drawn"] == 0


def test_rounds_spread_the_draws_evenly():
    """A short stratum draws every document r or r + 1 times: r = floor(goal / level tokens), the hash-order prefix
    of the rest once more."""
    frame = tie_frame(1)
    cfg = cfg_of("prune.keep_fraction=0.8", STRATA)
    plan, keep, _, repeat = assert_same(frame, cfg)
    level = (frame["quality_overall"] == LEVEL).fill_null(False).to_numpy()
    h = row_hash(frame["stem"], frame["pos"], cfg.run.seed, Q.SAMPLE_SALT)
    codes = Q.strata(frame, ["source", "quality_domain"])
    for s, r in enumerate(plan.data["rounds"]):
        rows = np.flatnonzero((codes == s) & level)
        if not len(rows):
            assert r == 0
            continue
        assert r >= 1  # at 0.8 of the tokens every stratum with documents at the level is short
        rows = rows[np.lexsort((rows, h[rows]))]  # the sample order
        got = repeat[rows]
        assert set(got.tolist()) <= {r, r + 1}
        assert (np.diff(got) <= 0).all()  # the r + 1 draws go to a prefix of the hash order


def test_the_global_step_never_builds_the_frame(monkeypatch):
    def no_frame(self):
        raise AssertionError("the two-pass dataman_level read the whole frame")

    monkeypatch.setattr(TP.FrameSource, "frame", no_frame)
    for sets in (["prune.keep_fraction=0.6", STRATA], []):
        plan, keep, _, repeat = decide_two_pass(tie_frame(0), cfg_of(*sets), None)
        assert plan.rows is None and plan.to_json()["single_frame"] is False
        assert 0 < keep.sum() < len(keep)


def test_the_plan_survives_json():
    """The decide stage reads the plan back from ``prune_plan.json``: strata keys, rounds and cuts."""
    frame = tie_frame(2)
    for sets in (["prune.keep_fraction=0.5", STRATA], []):
        cfg = cfg_of(*sets)
        plan, keep, reason, repeat = decide_two_pass(frame, cfg, None)
        back = TP.Plan.from_json(json.loads(json.dumps(plan.to_json())))
        parts = [TP.apply_plan(back, cfg, sh) for sh in TP.FrameSource(frame, cfg.run.seed)]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), keep)
        np.testing.assert_array_equal(np.concatenate([p[2] for p in parts]), repeat)
        assert np.concatenate([p[1] for p in parts]).tolist() == reason.tolist()


def test_the_sample_is_a_seeded_draw_independent_of_the_shard_order():
    """200 documents at the level, one length, over two shards: the kept half is the smallest salted hashes, which
    change with the seed, and are not ``quality``'s tie-break order."""
    n = 200
    frame = pl.DataFrame(
        {
            "stem": ["a_first"] * (n // 2) + ["b_second"] * (n // 2), "pos": list(range(n // 2)) * 2,
            "source": ["web"] * n, "quality_domain": ["Other"] * n,
            "n_words": pl.Series([10] * n, dtype=pl.Int32),
            "quality_overall": pl.Series([LEVEL] * n, dtype=pl.Int8),
        }
    )  # fmt: skip
    kept = {}
    for seed in (0, 1):
        cfg = cfg_of("prune.keep_fraction=0.5", f"run.seed={seed}")
        _, keep, _, _ = assert_same(frame, cfg)
        salted = np.argsort(row_hash(frame["stem"], frame["pos"], seed, Q.SAMPLE_SALT), kind="stable")[: n // 2]
        assert keep.tolist() == np.isin(np.arange(n), salted).tolist()
        plain = np.argsort(row_hash(frame["stem"], frame["pos"], seed), kind="stable")[: n // 2]
        assert not np.isin(np.arange(n), plain)[keep].all()  # another hash than quality's tie-break
        assert 30 <= int(keep[: n // 2].sum()) <= 70
        kept[seed] = keep
    assert (kept[0] != kept[1]).any()
