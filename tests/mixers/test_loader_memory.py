"""Streaming reads (issue 15): ``winnow mix`` streams each pass over the curated shards and ``MixtureDataset``'s
index reads them row group by row group, never a whole column of every shard; the index costs a few bytes per
document in numpy arrays; the plan and the loader's order are those of reading everything at once (polars'
quantiles, the same documents and texts)."""

from __future__ import annotations

import hashlib
import json
import re
import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import winnow.mixers.loader as loader
from winnow.mixers.config import MixSection
from winnow.mixers.loader import _COUNTS, _POOLS, MixtureDataset, _Growing
from winnow.mixers.planner import build_mixture_plan, linear_quantiles, plan_json, write_plan

pytestmark = [pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")]
SOURCES = ("web", "code", "books", None)
LAW = {"a": 1.0, "buckets": {f"q{i}": {"b": -0.1, "tau": 5.0} for i in range(1, 6)}}
MIX = {"pools": {"quality": "quantiles", "n_buckets": 5, "domain": "source"}, "law": LAW, "max_repeats": 1000}


def make_run(root: Path, shards: int, rows: int, row_group: int, seed: int = 0, words: int = 12) -> Path:
    """Curated shards with short texts (vectorised: fast at 10^5 rows), null and NaN scores, a repeat column in
    odd shards, and a row group of dropped rows in each shard."""
    rng = np.random.default_rng(seed)
    run = root / "run"
    (run / "curated").mkdir(parents=True)
    vocab = pa.array([f"w{i}" for i in range(500)])
    for s in range(shards):
        lengths = rng.integers(0, 2 * words, rows)
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        text = pc.binary_join(pa.ListArray.from_arrays(offsets, vocab.take(rng.integers(0, 500, lengths.sum()))), " ")
        score = rng.uniform(0, 5, rows).astype(np.float32)
        score[rng.random(rows) < 0.03] = np.nan
        keep = rng.random(rows) < 0.8
        keep[row_group : 2 * row_group] = False  # a row group without documents
        cols = {
            "id": pc.binary_join_element_wise(pa.scalar(f"s{s}"), pa.array(np.arange(rows).astype(str)), ":"),
            "text": text,
            "source": pa.array([SOURCES[i] for i in rng.integers(0, 4, rows)], pa.string()),
            "quality_score": pa.array(score, mask=rng.random(rows) < 0.02),
            "keep": pa.array(keep),
        }
        if s % 2:
            cols["repeat"] = pa.array(rng.choice([0, 1, 1, 1, 2, 3], rows).astype(np.int32))
        pq.write_table(pa.table(cols), run / "curated" / f"s{s}.parquet", row_group_size=row_group)
    (run / "config.resolved.yaml").write_text("winnow_version: 0.1.0\nconfig_hash: abc\n")
    return run


def plan_for(run: Path, budget: int = 400_000) -> str:
    plan = build_mixture_plan(str(run), MixSection.model_validate({**MIX, "budget_tokens": budget}), seed=1)
    write_plan(str(run), plan)
    return plan_json(plan)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("stream"), shards=3, rows=40_000, row_group=4096)


# -- the planner ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 2000])
def test_linear_quantiles_are_polars_quantiles(n):
    rng = np.random.default_rng(n)
    qs = [i / k for k in (2, 3, 4, 5, 7, 10, 16) for i in range(1, k)]
    for trial in range(20):
        values = (rng.random(n) * rng.choice([1, 5, 1000])).astype(np.float32 if trial % 2 else np.float64)
        if trial % 3 == 0:
            values = np.round(values, 1)  # ties
        if trial % 5 == 1:
            values[: n // 3] = np.inf
        nulls = int(rng.integers(0, 3 * n)) if trial % 4 else 0
        column = pl.Series([*values.astype(np.float64).tolist(), *[None] * nulls], dtype=pl.Float64).shuffle(trial)
        expected = [column.quantile(q, "linear") for q in qs]
        got = linear_quantiles(values.copy(), qs, nulls)
        assert np.array_equal(np.array(got), np.array(expected), equal_nan=True), (n, trial)
    assert linear_quantiles(np.zeros(0), [0.5], 3) is None


def test_the_planner_streams_each_pass_over_the_columns_it_needs(run, monkeypatch):
    """Every pass over a shard is a query of polars' streaming engine projecting some of its columns (never the
    ids), so no whole column of the shards is held (bench/RESULTS.md, "Streaming reads", measures the memory)."""
    queries: list[tuple[str | None, str]] = []
    collect = pl.LazyFrame.collect

    def recorded(self, *args, **kwargs):
        queries.append((kwargs.get("engine"), self.explain()))
        return collect(self, *args, **kwargs)

    before = plan_for(run)
    monkeypatch.setattr(pl.LazyFrame, "collect", recorded)
    assert plan_for(run) == before
    scans = [(engine, plan) for engine, plan in queries if "Parquet SCAN" in plan]
    assert len(scans) == 3 * 3  # rows, scores, pools: one query per shard and pass
    assert all(engine == "streaming" for engine, _ in scans)
    projected = [re.search(r"PROJECT (\d+)/(\d+) COLUMNS", plan) for _, plan in scans]
    assert all(m is not None and int(m.group(1)) < int(m.group(2)) for m in projected)


# -- the loader's index ----------------------------------------------------------------------------------------


def order_digest(ds: MixtureDataset) -> str:
    h = hashlib.sha256(f"{ds.num_samples} {ds.fingerprint}".encode())
    for row in ds:
        h.update(json.dumps(row, sort_keys=True).encode())
    return h.hexdigest()


def test_the_index_costs_a_few_bytes_per_document(run):
    plan_for(run)
    tracemalloc.start()
    try:
        ds = MixtureDataset(str(run), check_version=False)
        _, peak = tracemalloc.get_traced_memory()  # numpy's arrays (Arrow's and polars' buffers are not traced)
    finally:
        tracemalloc.stop()
    index = ds._index
    docs = len(index.doc_tokens)
    items = sum(len(v) for v in index.items.values())
    held = sum(getattr(index, f).nbytes for f in vars(index) if isinstance(getattr(index, f), np.ndarray))
    held += sum(v.nbytes for v in index.items.values())
    assert (
        docs > 80_000 and index.doc_tokens.dtype == np.uint8 and all(v.dtype == np.int32 for v in index.items.values())
    )
    assert held <= docs * 1.2 + items * 4 + 4096  # tokens, one bit per row, the items
    assert peak < 16 * docs, peak / docs  # the arrays while building (about 8), not ~85 bytes per document
    assert all(isinstance(v, np.ndarray) for v in [index.doc_tokens, index.kept_bits, index.rg_start])


def test_documents_map_to_their_rows_through_the_kept_bits(run):
    plan_for(run)
    ds = MixtureDataset(str(run), check_version=False, seed=3, shuffle_block=2)
    kept = []
    for s in range(3):
        t = pl.read_parquet(run / "curated" / f"s{s}.parquet")
        rep = pl.col("repeat").fill_null(1) if "repeat" in t.columns else pl.lit(1)
        kept += t.filter(pl.col("keep") & (rep > 0))["text"].to_list()
    n = 0
    for row, (i, doc, pool, phase) in zip(ds, ds.global_order(), strict=False):
        assert (row["index"], row["text"], row["pool"], row["phase"]) == (i, kept[doc], pool, phase)
        n += 1
    assert n == ds.num_samples > 0
    assert int(ds.document_tokens([0]).dtype.itemsize) == 8


def test_the_order_does_not_depend_on_the_index_dtypes(tmp_path, monkeypatch):
    """Long documents widen the token counts (uint8 -> uint16); int64 everywhere gives the same order and texts."""
    run = make_run(tmp_path, shards=2, rows=3000, row_group=500, words=200)
    plan_for(run, budget=2_000_000)
    ds = MixtureDataset(str(run), check_version=False, seed=5)
    assert ds._index.doc_tokens.dtype == np.uint16
    narrow = order_digest(ds)
    monkeypatch.setattr(loader, "_COUNTS", (np.int64,))
    monkeypatch.setattr(loader, "_POOLS", (np.int64,))
    monkeypatch.setattr(loader, "_INT32_MAX", 0)  # int64 items
    wide = MixtureDataset(str(run), check_version=False, seed=5)
    assert wide._index.doc_tokens.dtype == np.int64 and wide._index.items[0].dtype == np.int64
    assert order_digest(wide) == narrow


def test_growing_arrays_widen_to_hold_their_values():
    g = _Growing(_COUNTS, 2)
    g.extend(np.array([1, 200], np.int64))
    assert g.array().dtype == np.uint8
    g.extend(np.array([300], np.int64))
    assert g.array().dtype == np.uint16
    g.extend(np.array([70_000, 2**40], np.int64))
    assert g.array().dtype == np.int64 and g.array().tolist() == [1, 200, 300, 70_000, 2**40]
    p = _Growing(_POOLS)
    p.extend(np.array([-1, 5], np.int32))
    assert p.array().dtype == np.int8 and p.array().tolist() == [-1, 5]
    p.extend(np.array([40_000], np.int32))
    assert p.array().dtype == np.int32
