"""The prune step's reads of a run (``RunSource``): per-shard dedup files, the similarity cache and its bound.

A synthetic run directory (assignments, centroids and ``dedup/<bucket>/<stem>.parquet`` as the stages write them)
is decided through the stored files with every similarity kept between the passes, with none kept
(``SIMS_CACHE_DOCS = 0``: every pass reads each shard's files again) and with some kept, and on the canonical frame
in memory: the plans and the decisions must be the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import winnow.pipeline.prune.scores as scores_mod
from winnow.core.errors import CurationError
from winnow.core.io import Shard
from winnow.core.layout import dedup_file
from winnow.core.rundir import RunDir
from winnow.pipeline.config import load_config
from winnow.pipeline.prune import decide
from winnow.pipeline.prune.scores import RunSource, load_scores
from winnow.pipeline.prune.twopass import apply_plan, plan_decisions

K, BUCKETS = 6, 3
SIZES = {"a": 140, "b": 95, "c": 160}


def make_run(root: Path, seed: int = 0) -> list[Shard]:
    rng = np.random.default_rng(seed)
    (root / "assignments").mkdir(parents=True)
    cent = rng.standard_normal((K, 8)).astype(np.float32)
    np.save(root / "centroids.npy", cent / np.linalg.norm(cent, axis=1, keepdims=True))
    for stem, n in SIZES.items():
        ids = np.array([f"{stem}-{i}" for i in range(n)], dtype=object)
        labels = rng.integers(0, K, n).astype(np.int32)
        dist = np.round(rng.random(n), 2).astype(np.float32)  # ties
        pq.write_table(pa.table({"id": ids.tolist(), "cluster_id": labels, "dist_to_centroid": dist}),
                       root / "assignments" / f"{stem}.parquet")  # fmt: skip
        sims = np.where(rng.random(n) < 0.15, np.nan, np.round(rng.random(n), 2)).astype(np.float32)
        nn = np.where(np.isnan(sims), None, ids[rng.integers(0, n, n)])
        for b in range(BUCKETS):
            sel = np.flatnonzero(labels % BUCKETS == b)
            path = root / dedup_file(b, stem)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({
                "stem": [stem] * len(sel), "pos": sel.astype(np.int64),
                "dup_max_sim": pa.array(sims[sel], mask=np.isnan(sims[sel])),
                "dup_nn_id": pa.array(nn[sel].tolist(), pa.string()),
            }), path)  # fmt: skip
    return [Shard(url=str(root / f"{stem}.parquet"), stem=stem, format="parquet") for stem in SIZES]


def cfg_of(*sets: str):
    return load_config(None, [*sets, "dedup.eps=0.3", f"cluster.n_buckets={BUCKETS}"],
                       {"io.input": ["unused"], "io.output": "unused"})  # fmt: skip


def source(root: Path, shards: list[Shard]) -> RunSource:
    return RunSource(RunDir(str(root)), shards, "id", clusters=True, dedup=True, n_buckets=BUCKETS, seed=0)


@pytest.mark.parametrize("sets", [["prune.strategy=dbp", "prune.keep_fraction=0.4"],
                                  ["prune.strategy=semdedup", "prune.keep_count=100"]])  # fmt: skip
# every shard's similarities kept; none; a's 140 (then b's 95 would make 235 > 200, and c's 160 too)
@pytest.mark.parametrize(("cache", "kept"), [(10**9, ("a", "b", "c")), (0, ()), (200, ("a",))])
def test_the_similarity_cache_bound_does_not_change_the_decisions(tmp_path, monkeypatch, sets, cache, kept):
    shards = make_run(tmp_path)
    cfg = cfg_of(*sets)
    cent = np.load(tmp_path / "centroids.npy")
    frame = load_scores(RunDir(str(tmp_path)), shards, "id", clusters=True, dedup=True, n_buckets=BUCKETS)
    ref = decide(frame, cfg, cent)
    monkeypatch.setattr(scores_mod, "SIMS_CACHE_DOCS", cache)
    src = source(tmp_path, shards)
    plan = plan_decisions(src, cfg, cent)
    assert sorted(src._sims) == list(kept) and src._cached == sum(SIZES[s] for s in kept)
    keep = np.concatenate([apply_plan(plan, cfg, sh)[0] for sh in src])
    np.testing.assert_array_equal(keep, ref.keep)
    assert plan.summary == ref.summary


def test_a_unit_reads_its_own_rows_with_the_nearest_ids(tmp_path):
    shards = make_run(tmp_path)
    src = source(tmp_path, shards)
    sims, nn = src.shard_sims("b", SIZES["b"])
    parts = [pq.read_table(tmp_path / dedup_file(b, "b")) for b in range(BUCKETS)]
    rows = pa.concat_tables(parts).sort_by("pos")
    assert rows.column("pos").to_pylist() == list(range(SIZES["b"]))
    np.testing.assert_array_equal(np.isnan(sims), rows.column("dup_max_sim").is_null().to_numpy(zero_copy_only=False))
    assert nn.tolist() == rows.column("dup_nn_id").to_pylist()


def test_a_missing_dedup_file_is_named(tmp_path):
    shards = make_run(tmp_path)
    (tmp_path / dedup_file(1, "c")).unlink()
    with pytest.raises(CurationError, match=r"dedup/00001/c\.parquet: missing"):
        list(source(tmp_path, shards))


def test_a_dedup_file_short_of_rows_says_what_to_rerun(tmp_path):
    shards = make_run(tmp_path)
    path = tmp_path / dedup_file(2, "a")
    t = pq.read_table(path)
    pq.write_table(t.slice(0, t.num_rows - 1), path)
    with pytest.raises(CurationError, match=r"rows of a for 140 documents: rerun `winnow dedup`"):
        list(source(tmp_path, shards))
