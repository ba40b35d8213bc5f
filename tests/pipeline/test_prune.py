"""Pruning end to end (DESIGN §3.3–3.5): ``run_pipeline`` over a tiny synthetic corpus, then every strategy and
target by rerunning only ``prune`` and ``write`` on a copy of one embedded, clustered and deduplicated run.

The corpus: 3 parquet shards of 40 short documents on four topics (cooking, astronomy, football, programming),
with three exact-duplicate texts planted across shards (two pairs and one triple) and one null text (a reject).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.clustering.semdedup import kept_fraction_by_eps
from winnow.core.errors import ShardError
from winnow.pipeline.config import load_config
from winnow.pipeline.runner import run_pipeline
from winnow.pipeline.stages import (
    STAGES,
    AssignStage,
    DedupStage,
    EmbedStage,
    FitStage,
    PruneStage,
    ScoreStage,
    WriteStage,
)  # fmt: skip
from winnow.scorers.base import QUALITY_SCHEMA

ALL = list(STAGES)
PRUNE = ["prune", "decide", "write"]  # what `winnow prune` runs: the global step, the per-shard decisions, the output
K = 4
EPS = 0.05
BASE_SETS = [
    f"cluster.k={K}",
    "cluster.n_buckets=2",
    "embed.batch_size=16",
    "executor.workers=1",
    "executor.torch_threads=2",
    "prune.strategy=semdedup",
    f"dedup.eps={EPS}",
]

TOPICS = {
    "cooking": (
        ["The chef", "My grandmother", "A home cook", "The baker", "Our neighbour"],
        ["simmered", "roasted", "seasoned", "kneaded", "whisked"],
        ["the tomato sauce", "a loaf of sourdough bread", "the garlic and onions", "a pot of lentil soup", "pasta"],
        ["with olive oil and basil.", "for forty minutes.", "before dinner.", "in a cast iron pan.", "with salt."],
    ),
    "astronomy": (
        ["The telescope", "An astronomer", "The space probe", "A radio observatory", "The satellite"],
        ["observed", "photographed", "measured", "detected", "mapped"],
        ["a spiral galaxy", "the rings of Saturn", "a supernova remnant", "the microwave background", "an exoplanet"],
        ["during a clear night.", "from low orbit.", "with infrared sensors.", "beyond the Milky Way.", "at dawn."],
    ),
    "football": (
        ["The striker", "The goalkeeper", "The home team", "The coach", "A young midfielder"],
        ["scored", "saved", "defended", "celebrated", "missed"],
        ["a penalty kick", "a header from a corner", "the final match", "a free kick", "a late equaliser"],
        ["in front of the fans.", "in the second half.", "during extra time.", "at the stadium.", "in the derby."],
    ),
    "programming": (
        ["The developer", "A software engineer", "The compiler", "Our build server", "The Python interpreter"],
        ["refactored", "debugged", "optimised", "compiled", "tested"],
        ["the database query", "a recursive function", "the memory allocator", "the unit tests", "a handler"],
        ["before the release.", "to fix a crash.", "with a profiler.", "in the CI pipeline.", "for speed."],
    ),
}
STEMS = ["s0", "s1", "s2"]
N_PER_SHARD = 40
N_VALID = 3 * N_PER_SHARD  # s1 also has one null text: a reject
#: exact duplicate texts planted across shards: text -> the (stem, row) places it appears at
DUPES = {
    "The chef simmered the tomato sauce with olive oil and basil. It smelled wonderful.": [("s0", 3), ("s1", 10)],
    "The telescope observed a spiral galaxy during a clear night. Astronomers were thrilled.": [("s0", 20), ("s2", 5)],
    "The striker scored a penalty kick in the second half. The crowd went wild.": [("s1", 30), ("s2", 17), ("s2", 33)],
}
CURATED_TYPES = {
    "id": pa.string(),
    "text": pa.string(),
    "cluster_id": pa.int32(),
    "dist_to_centroid": pa.float32(),
    "dup_max_sim": pa.float32(),
    "dup_of": pa.string(),
    **{f.name: f.type for f in QUALITY_SCHEMA},  # score.backend=heuristic by default
    "keep": pa.bool_(),
    "drop_reason": pa.string(),
}


def make_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    planted = {place: text for text, places in DUPES.items() for place in places}
    topics = list(TOPICS.values())
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    for s, stem in enumerate(STEMS):
        rows = []
        for i in range(N_PER_SHARD):
            text = planted.get((stem, i))
            if text is None:
                subj, verb, obj, tail = topics[(i + s) % len(topics)]
                text = " ".join([rng.choice(subj), rng.choice(verb), rng.choice(obj), rng.choice(tail)])
                text += f" Note {rng.randint(0, 10**6)}."
            rows.append({"id": f"{stem}-{i:02d}", "text": text})
        if stem == "s1":
            rows.insert(25, {"id": "s1-bad", "text": None})
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"{stem}.parquet")
    return folder


def make_cfg(corpus: Path, out: Path, *sets: str):
    return load_config(None, [*BASE_SETS, *sets], {"io.input": [str(corpus)], "io.output": str(out)})


def run(corpus: Path, out: Path, *sets: str, stages=ALL, **kwargs):
    return run_pipeline(make_cfg(corpus, out, *sets), stages, progress=False, **kwargs)


def curated_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "curated").glob("*.parquet"))}


def curated(out: Path) -> pl.DataFrame:
    """Every curated row in canonical order (shards by name, rows in order), with its shard's stem."""
    frames = [pl.read_parquet(out / "curated" / f"{stem}.parquet").with_columns(stem=pl.lit(stem)) for stem in STEMS]
    return pl.concat(frames)


def stage_stats(out: Path, stage: str) -> dict:
    return json.loads((out / "stats.json").read_text())["stages"][stage]


def marker_mtimes(out: Path, stage: str) -> dict[str, int]:
    folder = out / "completions" / stage
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} if folder.is_dir() else {}


def record_calls(monkeypatch, cls, method: str) -> list[str]:
    calls: list[str] = []
    original = getattr(cls, method)

    def wrapper(self, unit, stats):
        calls.append(getattr(unit, "stem", unit))
        return original(self, unit, stats)

    monkeypatch.setattr(cls, method, wrapper)
    return calls


def record_all(monkeypatch) -> dict[str, list[str]]:
    """Calls of every registered stage's unit method (a new stage missing here fails the tests that use this)."""
    return {
        "read": record_calls(monkeypatch, STAGES["read"].obj, "process_shard"),
        "prefilter": record_calls(monkeypatch, STAGES["prefilter"].obj, "process_shard"),
        "textdedup": record_calls(monkeypatch, STAGES["textdedup"].obj, "process_unit"),
        "embed": record_calls(monkeypatch, EmbedStage, "process_shard"),
        "fit": record_calls(monkeypatch, FitStage, "process_unit"),
        "assign": record_calls(monkeypatch, AssignStage, "process_shard"),
        "dedup": record_calls(monkeypatch, DedupStage, "process_unit"),
        "score": record_calls(monkeypatch, ScoreStage, "process_shard"),
        "prune": record_calls(monkeypatch, PruneStage, "process_unit"),
        "decide": record_calls(monkeypatch, STAGES["decide"].obj, "process_shard"),
        "write": record_calls(monkeypatch, WriteStage, "process_shard"),
    }


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One full run (semdedup at ε = 0.05, no target): the run every other test copies and reprunes."""
    root = tmp_path_factory.mktemp("prune")
    corpus = make_corpus(root / "corpus")
    out = root / "base"
    t0 = time.perf_counter()
    result = run(corpus, out)
    return SimpleNamespace(
        corpus=corpus, out=out, result=result, files=curated_bytes(out), frame=curated(out),
        seconds=time.perf_counter() - t0,
    )  # fmt: skip


@pytest.fixture
def rerun(base, tmp_path):
    """``rerun(*sets, stages=...)``: a copy of the base run, rerun with extra overrides; returns its directory."""
    out = tmp_path / "run"
    shutil.copytree(base.out, out)

    def go(*sets: str, stages=ALL, **kwargs) -> Path:
        run(base.corpus, out, *sets, stages=stages, **kwargs)
        return out

    return go


def target_of(fraction: float) -> int:
    return int(math.floor(fraction * N_VALID + 0.5))


def dup_mask(frame: pl.DataFrame, eps: float = EPS) -> np.ndarray:
    sims = frame["dup_max_sim"].to_numpy().astype(np.float64)  # null -> NaN
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(sims, nan=-np.inf) >= 1.0 - eps


# -- the base run ---------------------------------------------------------------------------------------------------


def test_curated_columns_and_types(base):
    for stem in STEMS:
        table = pq.read_table(base.out / "curated" / f"{stem}.parquet")
        assert {f.name: f.type for f in table.schema} == CURATED_TYPES
        assert table.column("id").to_pylist() == [f"{stem}-{i:02d}" for i in range(N_PER_SHARD)]
    f = base.frame
    assert f.height == N_VALID
    assert f["cluster_id"].min() >= 0 and f["cluster_id"].max() < K
    assert f["dist_to_centroid"].min() >= 0 and f["dist_to_centroid"].max() <= 2
    assert f["keep"].null_count() == 0
    # drop_reason exactly on dropped rows; here (semdedup, no target) every drop is a duplicate
    assert (f["drop_reason"].is_null() == f["keep"]).all()
    assert set(f.filter(~pl.col("keep"))["drop_reason"].to_list()) == {"semdedup_duplicate"}
    # dup_of exactly where dup_max_sim >= 1 − ε; each cluster has one top-ranked member (null similarity)
    dup = dup_mask(f)
    assert (f["dup_of"].is_not_null().to_numpy() == dup).all()
    assert f["dup_max_sim"].null_count() == f["cluster_id"].n_unique()
    assert f.filter(pl.col("dup_max_sim").is_null())["cluster_id"].n_unique() == f["cluster_id"].n_unique()
    # dup_of names a document of the same cluster
    by_id = dict(zip(f["id"].to_list(), f["cluster_id"].to_list(), strict=True))
    for row in f.filter(pl.col("dup_of").is_not_null()).iter_rows(named=True):
        assert by_id[row["dup_of"]] == row["cluster_id"]


def test_planted_exact_duplicates_keep_one_copy(base):
    f = base.frame
    for text, places in DUPES.items():
        ids = [f"{stem}-{row:02d}" for stem, row in places]
        rows = f.filter(pl.col("id").is_in(ids)).sort(["stem", "id"])
        assert rows["text"].to_list() == [text] * len(places)
        assert rows["cluster_id"].n_unique() == 1 and rows["dist_to_centroid"].n_unique() == 1
        assert rows["keep"].sum() == 1, rows
        kept = rows.filter(pl.col("keep"))["id"].item()
        # the copies tie on distance: the canonical order (shard name, row) breaks the tie
        assert kept == ids[0]
        others = rows.filter(~pl.col("keep"))
        assert others["dup_of"].to_list() == [kept] * (len(places) - 1)
        assert others["drop_reason"].to_list() == ["semdedup_duplicate"] * (len(places) - 1)
        assert (others["dup_max_sim"] > 0.9999).all()


def test_semdedup_without_target_drops_exactly_the_duplicates(base):
    f = base.frame
    assert (f["keep"].to_numpy() == ~dup_mask(f)).all()
    prune = stage_stats(base.out, "prune")
    assert prune["kept"] == int((~dup_mask(f)).sum())
    assert prune["dropped"] == int(dup_mask(f).sum()) >= 4  # at least the planted copies


def test_prune_json_eps_sweep_matches_the_column(base):
    summary = json.loads((base.out / "prune.json").read_text())
    sims = base.frame["dup_max_sim"].to_numpy().astype(np.float32)
    sweep = [float(e) for e in summary["kept_fraction_by_eps"]]
    expected = kept_fraction_by_eps(sims, sweep)
    for e in sweep:
        counted = float(np.mean(~(np.nan_to_num(sims, nan=-np.inf) >= 1.0 - e)))
        assert summary["kept_fraction_by_eps"][str(e)] == pytest.approx(counted) == pytest.approx(expected[e])
    assert summary["kept_fraction_by_eps"][str(EPS)] == pytest.approx(base.frame["keep"].mean())


def check_books(out: Path) -> None:
    prune, write = stage_stats(out, "prune"), stage_stats(out, "write")
    for s in (prune, write):
        assert s["input"] == s["kept"] + s["dropped"] + s["rejected"]
    assert prune["input"] == N_VALID and prune["rejected"] == 0  # prune sees valid documents only
    assert write["input"] == N_VALID + 1 and write["rejected"] == 1
    assert write["rejected_by_reason"] == {"null_text": 1}
    assert (prune["kept"], prune["dropped"]) == (write["kept"], write["dropped"])


def test_stats_json_balances(base):
    check_books(base.out)
    assert base.result.stages["write"].kept == int(base.frame["keep"].sum())


# -- targets --------------------------------------------------------------------------------------------------------

TARGETS = [
    (["prune.strategy=random", "prune.keep_fraction=0.37"], target_of(0.37)),
    (["prune.strategy=random", "prune.keep_count=50"], 50),
    (["prune.strategy=semdedup", "prune.keep_fraction=0.37"], target_of(0.37)),
    (["prune.strategy=semdedup", "prune.keep_fraction=0.95"], target_of(0.95)),  # more than the non-duplicates
    (["prune.strategy=semdedup", "prune.keep_count=77"], 77),
    (["prune.strategy=prototypicality_easy", "prune.keep_fraction=0.37"], target_of(0.37)),
    (["prune.strategy=prototypicality_easy", "prune.keep_count=50"], 50),
    (["prune.strategy=prototypicality_hard", "prune.keep_fraction=0.5"], 60),
    (["prune.strategy=prototypicality_hard", "prune.keep_fraction=0.3", "prune.balance=1.0"], 36),
    (["prune.strategy=prototypicality_easy", "prune.keep_fraction=0.6", "prune.balance=0.5"], 72),
    (["prune.strategy=dbp", "prune.keep_fraction=0.37"], target_of(0.37)),
    (["prune.strategy=dbp", "prune.keep_count=30", "prune.dbp_keep=easy"], 30),
    (["prune.strategy=none"], N_VALID),
]


@pytest.mark.parametrize("sets, target", TARGETS, ids=[" ".join(s) for s, _ in TARGETS])
def test_target_is_honoured_to_the_row(rerun, sets, target):
    out = rerun(*sets, stages=PRUNE)
    f = curated(out)
    assert f.height == N_VALID
    assert int(f["keep"].sum()) == target
    assert (f["drop_reason"].is_null() == f["keep"]).all()
    summary = json.loads((out / "prune.json").read_text())
    assert summary["kept"] == target
    assert summary["strategy"] == sets[0].split("=")[1]
    check_books(out)


def test_target_fraction_rounds_to_the_nearest_row():
    assert target_of(0.37) == 44  # 0.37 · 120 = 44.4
    assert target_of(0.375) == 45  # 45.0
    assert target_of(0.3625) == 44  # 43.5 rounds up


def test_prototypicality_easy_keeps_the_smallest_distances(rerun):
    f = curated(rerun("prune.strategy=prototypicality_easy", "prune.keep_fraction=0.37", stages=PRUNE))
    dist = f["dist_to_centroid"].to_numpy().astype(np.float64)
    keep = f["keep"].to_numpy()
    assert dist[keep].max() <= dist[~keep].min()
    order = np.lexsort((np.arange(N_VALID), dist))  # ties: canonical order
    assert set(np.flatnonzero(keep)) == set(order[: target_of(0.37)])
    assert set(f.filter(~pl.col("keep"))["drop_reason"].to_list()) == {"prototypicality"}


def test_prototypicality_hard_keeps_the_largest_distances(rerun):
    f = curated(rerun("prune.strategy=prototypicality_hard", "prune.keep_count=50", stages=PRUNE))
    dist = f["dist_to_centroid"].to_numpy().astype(np.float64)
    keep = f["keep"].to_numpy()
    assert dist[keep].min() >= dist[~keep].max()
    assert set(np.flatnonzero(keep)) == set(np.lexsort((np.arange(N_VALID), -dist))[:50])


@pytest.mark.parametrize("strategy", ["prototypicality_easy", "prototypicality_hard"])
def test_prototypicality_balance_gives_every_cluster_its_floor(rerun, strategy):
    target, balance = 36, 1.0
    f = curated(rerun(f"prune.strategy={strategy}", "prune.keep_count=36", f"prune.balance={balance}",
                      stages=PRUNE))  # fmt: skip
    floor_share = math.floor(balance * target / K)  # 9
    counts = f.group_by("cluster_id").agg(kept=pl.col("keep").sum(), size=pl.len())
    for row in counts.iter_rows(named=True):
        assert row["kept"] >= min(floor_share, row["size"]), row
    assert int(f["keep"].sum()) == target
    # within each cluster the kept ones are the easiest / hardest
    hard = strategy.endswith("hard")
    for (_c,), g in f.group_by("cluster_id"):
        kept, dropped = g.filter(pl.col("keep"))["dist_to_centroid"], g.filter(~pl.col("keep"))["dist_to_centroid"]
        if len(kept) and len(dropped):
            assert (kept.min() >= dropped.max()) if hard else (kept.max() <= dropped.min())
    # unbalanced, the same target starves some cluster below its floor (or the test says nothing)
    unbalanced = curated(rerun(f"prune.strategy={strategy}", "prune.keep_count=36", stages=PRUNE))
    per = unbalanced.group_by("cluster_id").agg(kept=pl.col("keep").sum(), size=pl.len())
    assert any(r["kept"] < min(floor_share, r["size"]) for r in per.iter_rows(named=True))


def test_semdedup_with_target_keeps_the_least_duplicated(rerun):
    f = curated(rerun("prune.strategy=semdedup", "prune.keep_fraction=0.37", stages=PRUNE))
    score = np.nan_to_num(f["dup_max_sim"].to_numpy().astype(np.float64), nan=-np.inf)
    keep = f["keep"].to_numpy()
    assert score[keep].max() <= score[~keep].min()
    assert f["dup_max_sim"].null_count() == K and f.filter(pl.col("dup_max_sim").is_null())["keep"].all()
    reasons = f.filter(~pl.col("keep"))
    dup = dup_mask(reasons)
    assert (reasons["drop_reason"].to_numpy()[dup] == "semdedup_duplicate").all()
    assert (reasons["drop_reason"].to_numpy()[~dup] == "semdedup_rank").all()


def test_dbp_quotas(rerun):
    out = rerun("prune.strategy=dbp", "prune.keep_fraction=0.37", stages=PRUNE)
    target = target_of(0.37)
    f = curated(out)
    stats = pl.read_parquet(out / "cluster_stats.parquet").sort("cluster_id")
    assert stats.columns == ["cluster_id", "size", "size_after_dedup", "d_intra", "d_inter", "complexity", "quota"]
    assert stats.height == K
    assert int(stats["quota"].sum()) == target
    dup = dup_mask(f)
    keep = f["keep"].to_numpy()
    assert not (keep & dup).any()  # the target is below the survivors: no duplicate kept
    assert set(f.filter(~pl.col("keep") & pl.Series(dup))["drop_reason"].to_list()) <= {"semdedup_duplicate"}
    assert set(f.filter(~pl.col("keep") & ~pl.Series(dup))["drop_reason"].to_list()) == {"dbp_quota"}
    labels = f["cluster_id"].to_numpy()
    dist = f["dist_to_centroid"].to_numpy().astype(np.float64)
    for row in stats.iter_rows(named=True):
        c = row["cluster_id"]
        members = labels == c
        survivors = members & ~dup
        assert row["size"] == int(members.sum())
        assert row["size_after_dedup"] == int(survivors.sum())
        assert row["d_intra"] == pytest.approx(dist[survivors].mean(), abs=1e-6)
        assert int(keep[members].sum()) == row["quota"]  # per-cluster kept counts are the quotas
        assert row["quota"] <= row["size_after_dedup"]
        assert row["quota"] >= min(math.floor(0.5 * target / K), row["size_after_dedup"] - 1)
        # the hardest survivors are kept
        kept_d, rest_d = dist[survivors & keep], dist[survivors & ~keep]
        if len(kept_d) and len(rest_d):
            assert kept_d.min() >= rest_d.max()
    np.testing.assert_allclose(stats["complexity"], stats["d_inter"] * stats["d_intra"], rtol=1e-12)
    summary = json.loads((out / "prune.json").read_text())
    assert summary["cluster_quota_sum"] == target


def test_dbp_target_above_the_survivors_keeps_them_all(rerun):
    f = curated(rerun("prune.strategy=dbp", "prune.keep_fraction=0.98", stages=PRUNE))
    dup = dup_mask(f)
    keep = f["keep"].to_numpy()
    assert int(keep.sum()) == target_of(0.98)
    assert keep[~dup].all()


def test_random_is_seeded(rerun):
    a = curated(rerun("prune.strategy=random", "prune.keep_fraction=0.5", stages=PRUNE))["keep"]
    b = curated(rerun("prune.strategy=random", "prune.keep_count=60", stages=PRUNE))["keep"]
    assert a.equals(b)  # the same target, the same seed: the same draw


def test_keep_count_above_the_documents_is_an_error(rerun):
    with pytest.raises(ShardError, match="keep_count=500"):
        rerun("prune.strategy=random", "prune.keep_count=500", stages=PRUNE)


# -- reruns, determinism, prerequisites -----------------------------------------------------------------------------


def test_two_fresh_runs_write_identical_bytes(base, tmp_path):
    out = tmp_path / "again"
    run(base.corpus, out)
    assert curated_bytes(out) == base.files
    assert (out / "centroids.npy").read_bytes() == (base.out / "centroids.npy").read_bytes()


@pytest.mark.parametrize(
    "sets",
    [
        ["prune.strategy=dbp", "prune.keep_fraction=0.5"],
        ["prune.strategy=prototypicality_hard", "prune.keep_count=40", "prune.balance=0.5"],
        ["dedup.eps=0.2"],  # ε thresholds the stored column: no new similarities
    ],
    ids=["dbp", "prototypicality", "eps"],
)
def test_changing_only_prune_reruns_only_prune_and_write(base, rerun, monkeypatch, sets):
    out_before = {s: marker_mtimes(base.out, s) for s in ALL}
    calls = record_all(monkeypatch)

    def no_model(self):
        raise AssertionError("the embedding model was loaded")

    monkeypatch.setattr("winnow.embedding.embed.Embedder.setup", no_model)
    t0 = time.perf_counter()
    out = rerun(*sets)  # every stage asked for, as `winnow run` does
    seconds = time.perf_counter() - t0
    assert calls == {
        "read": [], "prefilter": [], "textdedup": [], "embed": [], "fit": [], "assign": [], "dedup": [], "score": [],
        "prune": ["all"], "decide": STEMS, "write": STEMS,
    }  # fmt: skip
    after = {s: marker_mtimes(out, s) for s in ALL}
    for s in ("read", "embed", "fit", "assign", "dedup", "score"):
        assert after[s] == out_before[s], s  # copytree keeps mtimes: untouched
    for s in ("prune", "decide", "write"):
        assert all(after[s][u] > out_before[s][u] for u in after[s]), s
    assert seconds < max(10.0, 0.5 * base.seconds)
    check_books(out)


def test_a_second_identical_run_does_nothing(rerun, monkeypatch):
    calls = record_all(monkeypatch)
    rerun()
    assert calls == {s: [] for s in ALL}


def test_missing_prerequisite_names_the_stage_to_run(base, tmp_path):
    out = tmp_path / "fresh"
    with pytest.raises(ShardError) as info:
        run(base.corpus, out, "prune.strategy=dbp", "prune.keep_fraction=0.5", stages=PRUNE)
    assert "winnow embed" in str(info.value)
    assert not (out / "curated").exists()
    assert (out / "failures" / "prune" / "all.json").is_file()


def test_missing_dedup_names_dedup(base, tmp_path):
    out = tmp_path / "nodedup"
    shutil.copytree(base.out, out)
    shutil.rmtree(out / "completions" / "dedup")
    with pytest.raises(ShardError, match="winnow dedup"):
        run(base.corpus, out, "prune.strategy=dbp", "prune.keep_fraction=0.5", stages=PRUNE)
    # a strategy that needs no dedup still works, without the dedup columns
    run(base.corpus, out, "prune.strategy=random", "prune.keep_fraction=0.5", stages=PRUNE)
    f = curated(out)
    assert "dup_max_sim" not in f.columns and "cluster_id" in f.columns
    assert int(f["keep"].sum()) == 60


def test_stale_assignments_name_the_cluster_stages(base, tmp_path):
    out = tmp_path / "stale"
    shutil.copytree(base.out, out)
    # another k: fit, assign and dedup are stale for this config
    with pytest.raises(ShardError, match=r"winnow (fit|assign)"):
        run(base.corpus, out, "cluster.k=3", "prune.strategy=prototypicality_easy", "prune.keep_count=10",
            stages=PRUNE)  # fmt: skip


def test_overwrite_redoes_everything(base, rerun, monkeypatch):
    calls = record_all(monkeypatch)
    out = rerun(overwrite=True)
    assert calls == {  # no prefilter section: the pre-filter stages have no units
        "read": STEMS, "prefilter": [], "textdedup": [], "embed": STEMS, "fit": ["all"], "assign": STEMS,
        "dedup": ["00000", "00001"], "score": STEMS, "prune": ["all"], "decide": STEMS, "write": STEMS,
    }  # fmt: skip
    assert curated_bytes(out) == base.files


def test_fewer_buckets_in_an_existing_run_dir(base, rerun):
    """Lowering ``cluster.n_buckets`` in an existing run dir leaves a stale ``dedup/00001/``; prune must read
    only the current buckets (it once joined both and decided over 172 rows instead of 120)."""
    out = rerun("cluster.n_buckets=1")  # refit, reassign, rededup into one bucket; dedup/00001/ is stale
    f = curated(out)
    assert f.height == N_VALID
    assert (f["keep"].to_numpy() == ~dup_mask(f)).all()


# -- quality strategies: DataMan selection by tokens (DESIGN §3.6) ---------------------------------------------------
# The target N (documents) becomes a token budget T = round(N · W / n); each stratum's quota is its token share of T,
# and a stratum keeps the prefix of its ranking whose tokens come closest to its quota (plus the rounding left over by
# the strata before it). Quotas in tokens were once applied as document counts: a stratum of long documents got more
# draws than it has documents, so at keep_fraction 1 some documents were repeated.


def quality_frame(rows: list[tuple]) -> pl.DataFrame:
    """A prune frame from ``(source, n_words, quality_score, quality_overall)`` rows, in canonical order."""
    source, words, score, overall = (list(c) for c in zip(*rows, strict=True))
    n = len(rows)
    return pl.DataFrame(
        {
            "stem": ["s0"] * n,
            "pos": list(range(n)),
            "id": [f"d{i}" for i in range(n)],
            "source": source,
            "quality_domain": ["Other"] * n,
            "n_words": pl.Series(words, dtype=pl.Int32),
            "quality_score": pl.Series(score, dtype=pl.Float32),
            "quality_overall": pl.Series(overall, dtype=pl.Int8),
        }
    )


def decide_quality(frame: pl.DataFrame, *sets: str):
    from winnow.pipeline.prune import decide

    cfg = load_config(None, list(sets), {"io.input": ["unused"], "io.output": "unused"})
    return decide(frame, cfg, None)


#: DataMan's recipe, an explicit option (the default selection is global)
STRATA = "prune.stratify=[source,quality_domain]"

#: two sources: "books" two documents of 30 words (60 tokens), "web" four of 10 (40 tokens); W = 100, n = 6
TWO_SOURCES = [
    ("books", 30, 0.2, 5), ("books", 30, 0.9, 3),
    ("web", 10, 0.5, 5), ("web", 10, 0.1, 5), ("web", 10, 0.7, 2), ("web", 10, 0.3, 2),
]  # fmt: skip


def test_quality_at_fraction_one_keeps_every_document_once():
    """The bug: token-share quotas (books 60%, web 40%) applied as document counts gave books round(0.6 · 6) = 4
    draws of its 2 documents (each repeated) and web 2 of its 4 documents."""
    d = decide_quality(quality_frame(TWO_SOURCES), "prune.strategy=quality", "prune.keep_fraction=1.0", STRATA)
    assert d.keep.all()
    assert d.repeat.tolist() == [1] * 6
    assert (d.reason == None).all()  # noqa: E711 - an object array
    s = d.summary
    assert (s["token_target"], s["tokens_drawn"], s["draws"], s["upsampled_draws"]) == (100, 100, 6, 0)
    assert [(b["source"], b["quota_tokens"], b["drawn_tokens"], b["kept"]) for b in s["by_stratum"]] == [
        ("books", 60, 60, 2), ("web", 40, 40, 4),
    ]  # fmt: skip


def test_quality_half_by_hand():
    # N = 3 -> T = round(3 · 100 / 6) = 50 tokens: books 30 (its best document), web 20 (its best two)
    d = decide_quality(quality_frame(TWO_SOURCES), "prune.strategy=quality", "prune.keep_fraction=0.5", STRATA)
    assert d.keep.tolist() == [False, True, True, False, True, False]
    assert d.repeat.tolist() == [0, 1, 1, 0, 1, 0]
    assert d.reason.tolist() == ["quality_rank", None, None, "quality_rank", None, "quality_rank"]
    s = d.summary
    assert (s["target"], s["token_target"], s["tokens_drawn"]) == (3, 50, 50)
    assert [(b["quota_tokens"], b["drawn_tokens"]) for b in s["by_stratum"]] == [(30, 30), (20, 20)]


def test_quality_target_is_in_tokens_with_the_rounding_carried_on():
    # keep_count 4 -> T = round(400 / 6) = 67; quotas 40.2 / 26.8 -> 40 / 27 (largest remainder).
    # books: 30 tokens (1 document) is closer to 40 than 60, 10 short -> web aims at 27 + 10 = 37: 40 tokens (4
    # documents) is closer than 30. 70 tokens in 5 documents: within one document (30) of T, not N documents.
    d = decide_quality(quality_frame(TWO_SOURCES), "prune.strategy=quality", "prune.keep_count=4", STRATA)
    assert d.keep.tolist() == [False, True, True, True, True, True]
    assert d.repeat.max() == 1
    s = d.summary
    assert (s["target"], s["token_target"], s["tokens_drawn"], s["draws"]) == (4, 67, 70, 5)
    assert [(b["quota_tokens"], b["drawn_tokens"]) for b in s["by_stratum"]] == [(40, 30), (27, 40)]


def sample_order(frame: pl.DataFrame, rows: list[int], seed: int = 0) -> list[int]:
    """``dataman_level``'s sample order of ``rows``: ascending ``row_hash(stem, row, seed, "dataman_level")``."""
    from winnow.pipeline.prune.base import row_hash

    h = row_hash(frame["stem"], frame["pos"], seed, "dataman_level")
    return sorted(rows, key=lambda r: (int(h[r]), r))


def test_dataman_level_upsamples_only_short_strata_by_hand():
    # level 5: books has one 30-token document (row 0) for a quota of 60 -> 2 rounds (60 tokens, rest 0); web two
    # 10-token documents (rows 2, 3: 20 tokens) for a quota of 40 -> 2 rounds each (40 tokens, rest 0)
    d = decide_quality(
        quality_frame(TWO_SOURCES), "prune.strategy=dataman_level", "prune.dataman_level=5", "prune.keep_fraction=1",
        STRATA,
    )  # fmt: skip
    assert d.repeat.tolist() == [2, 0, 2, 2, 0, 0]
    assert d.keep.tolist() == [True, False, True, True, False, False]
    assert d.reason.tolist() == [None, "dataman_level", None, None, "dataman_level", "dataman_level"]
    s = d.summary
    # 6 draws of 3 documents: 3 beyond one per kept document
    assert (s["token_target"], s["tokens_drawn"], s["draws"], s["upsampled_draws"]) == (100, 100, 6, 3)
    assert [(b["quota_tokens"], b["drawn_tokens"], b["kept"], b["draws"]) for b in s["by_stratum"]] == [
        (60, 60, 1, 2), (40, 40, 2, 4),
    ]  # fmt: skip
    # N = 5 -> T = round(500 / 6) = 83; quotas 49.8 / 33.2 -> 50 / 33. books: 1 round (30), rest 20: its document
    # once more (30 is closer to 20 than 0) -> 60 drawn, 10 over. web aims at 33 - 10 = 23: 1 round (20), rest 3:
    # nothing more (0 is closer to 3 than 10) -> 20 drawn
    d = decide_quality(
        quality_frame(TWO_SOURCES), "prune.strategy=dataman_level", "prune.dataman_level=5", "prune.keep_count=5",
        STRATA,
    )  # fmt: skip
    assert d.repeat.tolist() == [2, 0, 1, 1, 0, 0]
    s = d.summary
    assert (s["token_target"], s["tokens_drawn"], s["draws"], s["upsampled_draws"]) == (83, 80, 4, 1)
    assert [(b["quota_tokens"], b["drawn_tokens"]) for b in s["by_stratum"]] == [(50, 60), (33, 20)]
    # at a smaller target no stratum is short: no repeats. N = 2 -> T = 33; quotas 20 / 13; books takes its level-5
    # document (30, closer to 20 than 0), 10 over -> web aims at 3: nothing
    d = decide_quality(
        quality_frame(TWO_SOURCES), "prune.strategy=dataman_level", "prune.dataman_level=5",
        "prune.keep_fraction=0.3", STRATA,
    )  # fmt: skip
    assert d.repeat.tolist() == [1, 0, 0, 0, 0, 0]
    assert d.reason.tolist() == [None, "dataman_level", "dataman_sample", "dataman_sample"] + ["dataman_level"] * 2
    # without a target: every document at the level, once
    d = decide_quality(quality_frame(TWO_SOURCES), "prune.strategy=dataman_level", "prune.dataman_level=5")
    assert d.repeat.tolist() == [1, 0, 1, 1, 0, 0]


#: one source: three documents of 10 tokens at level 5 (rows 0-2), three at level 1; W = 60, n = 6
THREE_AT_LEVEL = [("web", 10, 0.5, 5)] * 3 + [("web", 10, 0.5, 1)] * 3


def test_dataman_level_sample_and_rounds_follow_the_seeded_hash_order():
    frame = quality_frame(THREE_AT_LEVEL)
    sets = ("prune.strategy=dataman_level", "prune.dataman_level=5")
    first, second, third = order = sample_order(frame, [0, 1, 2])
    assert order == [1, 2, 0]  # row_hash("s0", row, 0, "dataman_level"), smallest first
    # N = 2 -> T = 20 of the level's 30 tokens: the prefix of the hash order closest to 20, its first two documents
    d = decide_quality(frame, *sets, "prune.keep_count=2")
    assert d.keep.tolist() == [i in (first, second) for i in range(6)]
    assert d.reason[third] == "dataman_sample" and (d.reason[3:] == "dataman_level").all()
    # another seed, another order: its first two documents
    d = decide_quality(frame, *sets, "prune.keep_count=2", "run.seed=1")
    assert d.keep.tolist() == [i in sample_order(frame, [0, 1, 2], 1)[:2] for i in range(6)]
    # N = 5 -> T = 50 > 30: 1 round (30 tokens), rest 20: the first two in hash order once more (20 is closer than 10
    # or 30)
    d = decide_quality(frame, *sets, "prune.keep_count=5")
    assert d.repeat.tolist() == [2 if i in (first, second) else 1 for i in range(3)] + [0, 0, 0]
    assert (d.summary["tokens_drawn"], d.summary["draws"], d.summary["upsampled_draws"]) == (50, 5, 2)
    # N = 6 -> T = 60: exactly 2 rounds
    assert decide_quality(frame, *sets, "prune.keep_count=6").repeat.tolist() == [2, 2, 2, 0, 0, 0]


#: a clean and a noisy source of equal size: "the best half" is the clean source
CLEAN_AND_NOISY = [
    *[("clean", 10, q, 4) for q in (0.9, 0.8, 0.7, 0.6)],
    *[("noisy", 10, q, 2) for q in (0.4, 0.3, 0.2, 0.1)],
]


def test_quality_is_global_by_default():
    # T = 40 tokens: globally the four clean documents; with DataMan's strata each source keeps its share, 20 tokens
    d = decide_quality(quality_frame(CLEAN_AND_NOISY), "prune.strategy=quality", "prune.keep_fraction=0.5")
    assert d.keep.tolist() == [True] * 4 + [False] * 4
    assert d.summary["selection"] == "global" and d.summary["strata"] == 1
    d = decide_quality(quality_frame(CLEAN_AND_NOISY), "prune.strategy=quality", "prune.keep_fraction=0.5", STRATA)
    assert d.keep.tolist() == [True, True, False, False, True, True, False, False]
    assert d.summary["selection"] == "stratified by source, quality_domain (DataMan)"


#: level 5: books two 30-token documents (60 level tokens), web one 10-token document (10); W = 100, n = 6
LEVEL_IN_BOOKS = [
    ("books", 30, 0.5, 5), ("books", 30, 0.5, 5),
    ("web", 10, 0.5, 5), ("web", 10, 0.5, 2), ("web", 10, 0.5, 2), ("web", 10, 0.5, 2),
]  # fmt: skip


def test_dataman_level_quotas_follow_the_level_tokens():
    """DataMan filters to the level first: quotas are shares of the level's tokens, not of all tokens. Shares of all
    tokens (books 60%, web 40%) gave web a quota of 20 against its 10 level tokens, so its one document was drawn
    twice although the level's 70 tokens exceed the budget of 50."""
    sets = ("prune.strategy=dataman_level", "prune.dataman_level=5", STRATA)
    frame = quality_frame(LEVEL_IN_BOOKS)
    first = sample_order(frame, [0, 1])[0]
    assert first == 1  # row_hash("s0", row, 0, "dataman_level"): row 1's is the smaller
    d = decide_quality(frame, *sets, "prune.keep_fraction=0.5")  # N = 3, T = 50
    s = d.summary
    # quotas 50 * 60 / 70 = 42.9 -> 43 and 7.1 -> 7; books: the first 30-token document in hash order (30 is closer
    # to 43 than 60), 13 short -> web aims at 7 + 13 = 20 and has 10 level tokens: one document, no upsampling (its
    # quota 7 <= 10: the carry alone never repeats a document)
    assert [(b["source"], b["quota_tokens"], b["eligible_tokens"]) for b in s["by_stratum"]] == [
        ("books", 43, 60), ("web", 7, 10),
    ]  # fmt: skip
    assert s["upsampled_draws"] == 0
    assert d.repeat.tolist() == [int(first == 0), int(first == 1), 1, 0, 0, 0]
    assert (s["token_target"], s["tokens_drawn"]) == (50, 40)
    # the level short of the budget (70 < T = 100): every stratum upsampled in proportion. quotas 85.7 -> 86 and
    # 14.3 -> 14; books: 1 round (60), rest 26: the first document in hash order once more (30 is closer to 26 than
    # 0) -> 90, 4 over -> web aims at 10: 1 round of its one document (10), rest 0
    d = decide_quality(frame, *sets, "prune.keep_fraction=1")
    s = d.summary
    assert [b["quota_tokens"] for b in s["by_stratum"]] == [86, 14]
    assert d.repeat.tolist() == [1 + (first == 0), 1 + (first == 1), 1, 0, 0, 0]
    assert (s["tokens_drawn"], s["upsampled_draws"]) == (100, 1)


def test_quality_ties_are_broken_by_a_seeded_hash_not_by_shard_name():
    """Integer ratings tie often: at the cut, a tie must not favour earlier-named shards."""
    n = 200
    frame = pl.DataFrame(
        {
            "stem": ["a_first"] * (n // 2) + ["b_second"] * (n // 2),
            "pos": list(range(n // 2)) * 2,
            "id": [f"d{i}" for i in range(n)],
            "source": ["web"] * n,
            "quality_domain": ["Other"] * n,
            "n_words": pl.Series([10] * n, dtype=pl.Int32),
            "quality_score": pl.Series([3.0] * n, dtype=pl.Float32),
            "quality_overall": pl.Series([3] * n, dtype=pl.Int8),
        }
    )
    from winnow.pipeline.prune.base import row_hash

    kept = {}
    for seed in (0, 1):
        d = decide_quality(frame, "prune.strategy=quality", "prune.keep_fraction=0.5", f"run.seed={seed}")
        order = np.argsort(row_hash(frame["stem"], frame["pos"], seed), kind="stable")
        assert d.keep.tolist() == np.isin(np.arange(n), order[: n // 2]).tolist()  # the smallest hashes
        first = int(d.keep[: n // 2].sum())
        assert 30 <= first <= 70, first  # not "every document of the first shard"
        kept[seed] = d.keep.copy()
    assert (kept[0] != kept[1]).any()  # the tie-break is a seeded draw
    # the hash depends on (stem, row) only: reordering the shards does not change which documents win
    swapped = pl.concat([frame[n // 2 :], frame[: n // 2]])
    d = decide_quality(swapped, "prune.strategy=quality", "prune.keep_fraction=0.5", "run.seed=0")
    assert np.concatenate([d.keep[n // 2 :], d.keep[: n // 2]]).tolist() == kept[0].tolist()


def random_quality_frame(seed: int, n: int = 600) -> pl.DataFrame:
    """Sources and domains of very different sizes, document lengths correlated with the score."""
    rng = np.random.default_rng(seed)
    source = rng.choice(["web", "books", "code", "papers"], n, p=[0.55, 0.25, 0.15, 0.05])
    domain = rng.choice(["Medicine", "Law", "Coding", None], n, p=[0.4, 0.3, 0.2, 0.1])
    score = rng.normal(size=n)
    long_source = np.where(np.isin(source, ["books", "papers"]), 400, 60)
    words = np.maximum(1, (long_source * np.exp(0.5 * score + rng.normal(scale=0.5, size=n)))).astype(np.int64)
    words[rng.random(n) < 0.02] = 0  # counted as one token
    return pl.DataFrame(
        {
            "stem": ["s0"] * n, "pos": np.arange(n), "id": [f"d{i}" for i in range(n)],
            "source": source.tolist(), "quality_domain": domain.tolist(),
            "n_words": pl.Series(words, dtype=pl.Int32),
            "quality_score": pl.Series(score, dtype=pl.Float32),
            "quality_overall": pl.Series(rng.integers(1, 6, n), dtype=pl.Int8),
        }
    )  # fmt: skip


def stratum_codes(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    keys = frame.select(columns).rows() if columns else [()] * frame.height
    order = {k: i for i, k in enumerate(set(keys))}
    return np.array([order[k] for k in keys])


def in_stratum(frame: pl.DataFrame, row: dict) -> np.ndarray:
    """The members of a ``prune.json`` ``by_stratum`` row (its key columns, null included)."""
    mask = np.ones(frame.height, dtype=bool)
    for c in ("source", "quality_domain"):
        if c in row:
            mask &= (frame[c].is_null() if row[c] is None else frame[c] == row[c]).fill_null(False).to_numpy()
    return mask


@pytest.mark.parametrize("stratify", ["[source,quality_domain]", "[source]", "[]"])
@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.37, 0.5, 0.8, 0.99, 1.0])
def test_quality_token_shares_and_budget(stratify, fraction):
    frame = random_quality_frame(7)
    n = frame.height
    sets = ["prune.strategy=quality", f"prune.keep_fraction={fraction}", f"prune.stratify={stratify}"]
    d = decide_quality(frame, *sets)
    tokens = np.maximum(frame["n_words"].to_numpy(), 1)
    score = frame["quality_score"].to_numpy()
    big = int(tokens.max())
    W = int(tokens.sum())
    N = math.floor(fraction * n + 0.5)
    T = math.floor(N * W / n + 0.5)
    assert d.summary["token_target"] == T
    assert set(d.repeat.tolist()) <= {0, 1} and d.summary["upsampled_draws"] == 0  # quality never repeats
    assert (d.keep == (d.repeat == 1)).all()
    kept_tokens = int(tokens[d.keep].sum())
    assert d.summary["tokens_drawn"] == kept_tokens
    assert abs(kept_tokens - T) <= big / 2  # within (half) a document of the budget
    assert int(d.keep.sum()) + int((~d.keep).sum()) == n
    assert (d.reason[~d.keep] == "quality_rank").all() and (d.reason[d.keep] == None).all()  # noqa: E711
    columns = [c for c in ("source", "quality_domain") if c in stratify]
    code = stratum_codes(frame, columns)
    for s in np.unique(code):
        members = code == s
        w_s = int(tokens[members].sum())
        got = int(tokens[members & d.keep].sum())
        # the token share of every stratum is its share of the corpus, to about one document
        assert abs(got - T * w_s / W) <= big + 1, (s, got, T * w_s / W)
        # within a stratum the kept documents are the best by quality_score
        kept_s, dropped_s = score[members & d.keep], score[members & ~d.keep]
        if len(kept_s) and len(dropped_s):
            assert kept_s.min() >= dropped_s.max()
    if fraction == 1.0:
        assert d.keep.all()
    # strata large against a document: shares match the requested ones closely
    for b in d.summary["by_stratum"]:
        assert b["drawn_tokens"] <= b["tokens"]
        if b["quota_tokens"] >= 20 * big:
            assert b["drawn_tokens"] / T == pytest.approx(b["tokens"] / W, rel=0.1)


@pytest.mark.parametrize("fraction", [0.05, 0.3, 1.0])
def test_dataman_level_repeats_only_where_a_stratum_is_short(fraction):
    frame = random_quality_frame(11)
    sets = ["prune.strategy=dataman_level", "prune.dataman_level=4", f"prune.keep_fraction={fraction}"]
    d = decide_quality(frame, *sets)
    tokens = np.maximum(frame["n_words"].to_numpy(), 1)
    level = frame["quality_overall"].to_numpy() == 4
    assert not (d.keep & ~level).any()
    assert (d.keep == (d.repeat > 0)).all()
    assert abs(int((tokens * d.repeat).sum()) - d.summary["token_target"]) <= tokens.max()
    for b in d.summary["by_stratum"]:
        members = in_stratum(frame, b)
        assert b["eligible_tokens"] == int(tokens[members & level].sum())
        if d.repeat[members].max(initial=0) > 1:
            assert b["quota_tokens"] > b["eligible_tokens"]  # only a short stratum is upsampled
            # in rounds: every document at the level drawn r or r + 1 times, r = draws // documents
            drawn = d.repeat[members & level]
            assert drawn.max() - drawn.min() <= 1 and drawn.min() == b["draws"] // len(drawn)
        else:
            assert b["draws"] == b["kept"]
    assert d.summary["draws"] == int(d.repeat.sum()) == int(d.keep.sum()) + d.summary["upsampled_draws"]


# -- quality strategies through the pipeline ------------------------------------------------------------------------


def n_words(out: Path) -> np.ndarray:
    q = pl.concat([pl.read_parquet(out / "quality" / f"{stem}.parquet") for stem in STEMS])
    return np.maximum(q["n_words"].fill_null(1).to_numpy(), 1)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_quality_strategy_end_to_end(rerun, fraction):
    out = rerun("prune.strategy=quality", f"prune.keep_fraction={fraction}", stages=PRUNE)
    f = curated(out)
    assert f.height == N_VALID
    keep, repeat = f["keep"].to_numpy(), f["repeat"].to_numpy()
    assert set(repeat.tolist()) <= {0, 1} and (keep == (repeat == 1)).all()  # no document repeated
    tokens = n_words(out)
    summary = json.loads((out / "prune.json").read_text())
    T = math.floor(target_of(fraction) * int(tokens.sum()) / N_VALID + 0.5)
    assert summary["token_target"] == T and summary["unit"] == "tokens"
    assert abs(int(tokens[keep].sum()) - T) <= tokens.max()
    assert summary["kept"] == int(keep.sum()) == summary["draws"]
    if fraction == 1.0:
        assert keep.all() and (repeat == 1).all()
    assert (f["drop_reason"].is_null() == f["keep"]).all()
    check_books(out)  # input = kept + dropped + rejected for prune and write


def test_dataman_level_end_to_end(base, rerun):
    level = int(base.frame["quality_overall"].drop_nulls().mode().sort()[0])
    out = rerun("prune.strategy=dataman_level", f"prune.dataman_level={level}", "prune.keep_fraction=0.5",
                stages=PRUNE)  # fmt: skip
    f = curated(out)
    keep, repeat = f["keep"].to_numpy(), f["repeat"].to_numpy()
    assert (f.filter(pl.col("keep"))["quality_overall"] == level).all()
    assert (keep == (repeat > 0)).all()
    tokens = n_words(out)
    summary = json.loads((out / "prune.json").read_text())
    assert abs(int((tokens * repeat).sum()) - summary["token_target"]) <= tokens.max()
    for b in summary["by_stratum"]:
        assert b["draws"] == b["kept"] or b["quota_tokens"] > b["eligible_tokens"]
    check_books(out)


def test_fit_reads_only_the_points_kmeans_trains_on(rerun):
    """k-means trains on at most k x max_points_per_centroid points: the fit stage picks them itself, the ids
    with the smallest hashes of (seed, id) within the fit_fraction sample, and reads only their vectors."""
    from winnow.clustering.kmeans import SphericalKMeans
    from winnow.core.layout import arrow_to_vectors
    from winnow.pipeline.stages import fit_hashes

    cap = K * 5  # 20 of the 120 valid documents
    out = rerun("cluster.max_points_per_centroid=5", "cluster.fit_fraction=0.5", stages=["fit"])
    counters = stage_stats(out, "fit")["counters"]
    ids, vecs = [], []
    for stem in STEMS:
        t = pq.read_table(out / "embeddings" / f"{stem}.parquet")
        ids += t.column("id").to_pylist()
        vecs.append(arrow_to_vectors(t.column("embedding")))
    h = fit_hashes(ids, 0)
    sample = np.nonzero(h / 2.0**64 < 0.5)[0]
    assert counters["fit_sample"] == len(sample) > cap
    assert counters["fit_train_points"] == cap
    chosen = np.sort(sample[np.argsort(h[sample])[:cap]])  # the smallest hashes, in corpus order
    expected = SphericalKMeans(K, niter=20, seed=0, max_points_per_centroid=5).fit(np.concatenate(vecs)[chosen])
    assert np.load(out / "centroids.npy").tobytes() == expected.centroids.tobytes()
