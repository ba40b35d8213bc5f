"""Each raw input shard is parsed and validated once per run (the ``read`` stage); later stages read its copy."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from tests.pipeline.test_resume import STEMS, final_files, make_cfg, make_corpus
from winnow.core import io as core_io
from winnow.pipeline.runner import run_pipeline
from winnow.pipeline.stages import STAGES


def count_parses(monkeypatch) -> list[str]:
    """Patch ``ShardReader.__iter__`` to log the stem of every raw shard parsed."""
    parsed: list[str] = []
    original = core_io.ShardReader.__iter__

    def wrapper(self):
        parsed.append(self.shard.stem)
        return original(self)

    monkeypatch.setattr(core_io.ShardReader, "__iter__", wrapper)
    return parsed


def test_a_run_parses_each_raw_shard_once(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "corpus", n=12)
    parsed = count_parses(monkeypatch)
    cfg = make_cfg(corpus, tmp_path / "out")
    run_pipeline(cfg, list(STAGES), progress=False)
    assert sorted(parsed) == sorted(STEMS)  # once each, though embed, score and write all read the shards
    # a rerun with only a prune setting changed parses nothing
    parsed.clear()
    cfg2 = cfg.model_copy(update={"prune": cfg.prune.model_copy(update={"strategy": "random", "keep_fraction": 0.5})})
    run_pipeline(cfg2, list(STAGES), progress=False)
    assert parsed == []


def test_reading_the_copy_gives_the_bytes_of_parsing_the_raw_files(tmp_path):
    """With and without the read stage: the same curated shards, the same line-exact rejects, the same books."""
    corpus = make_corpus(tmp_path / "corpus", n=40)
    with_copy, without = tmp_path / "with", tmp_path / "without"
    run_pipeline(make_cfg(corpus, with_copy), list(STAGES), progress=False)
    run_pipeline(make_cfg(corpus, without), [s for s in STAGES if s != "read"], progress=False)
    assert (with_copy / "docs").is_dir() and not (without / "docs").exists()
    assert final_files(with_copy) == final_files(without)
    books = [json.loads((out / "stats.json").read_text())["stages"] for out in (with_copy, without)]
    for stage in ("embed", "score", "write"):
        assert books[0][stage]["input"] == books[1][stage]["input"]
        assert books[0][stage]["rejected_by_reason"] == books[1][stage]["rejected_by_reason"]
    # every shard of the corpus holds one bad record: the read stage rejects it with its line or row
    rejects = {stem: pq.read_table(with_copy / "rejects" / f"{stem}.parquet").to_pylist() for stem in STEMS}
    assert all(len(r) == 1 for r in rejects.values())
    assert books[0]["read"]["rejected"] == len(STEMS) and books[0]["read"]["kept"] == 40 * len(STEMS)


def test_copy_keeps_the_read_batches(tmp_path):
    """One row group per read batch (even with a small io.row_group_size), so later stages see the same batches."""
    corpus = make_corpus(tmp_path / "corpus", n=30)
    cfg = make_cfg(corpus, tmp_path / "out")
    cfg = cfg.model_copy(update={"io": cfg.io.model_copy(update={"read_batch_size": 8, "row_group_size": 3})})
    run_pipeline(cfg, ["read"], progress=False)
    meta = pq.read_metadata(tmp_path / "out" / "docs" / "s2.parquet")  # a parquet shard: 30 good rows + 1 null
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == 30 and all(s <= 8 for s in sizes) and len(sizes) == 4
