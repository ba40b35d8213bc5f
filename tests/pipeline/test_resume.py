"""Resuming runs (DESIGN §2.2, §5): a failed shard is redone alone, a killed run resumes to the same bytes as an
uninterrupted one, and a grown shard list reuses the shards already done."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.core.errors import ShardError
from winnow.pipeline.config import WinnowConfig, load_config
from winnow.pipeline.stages import STAGES, EmbedStage, WriteStage

#: what ``winnow run`` executes
RUN_STAGES = list(STAGES)
#: the stages with one output file per input shard
SHARD_FOLDERS = ("curated", "embeddings", "rejects")
N_DOCS = 100  # per shard: enough that, at embed.batch_size=4, a kill lands while the run is busy

SUBJECTS = "the farmer|a student|our neighbour|the committee|a small robot|the old sailor|my cousin|the city".split(
    "|"
)
VERBS = "painted|repaired|described|ignored|photographed|sold|discovered|measured|cleaned|borrowed".split("|")
OBJECTS = (
    "a wooden bridge|the red bicycle|an ancient map|the broken clock|a quiet garden|the stone tower|"
    "a bowl of soup|the library roof|a paper kite|the harbour lights"
).split("|")
PLACES = "in spring|after lunch|near the river|during the storm|before sunrise|at the market|on Sunday".split("|")


def tiny_overrides() -> list[str]:
    sets = ["embed.batch_size=4", "embed.device=cpu", "executor.torch_threads=1"]  # CPU: byte-identical reruns
    if "cluster" in WinnowConfig.model_fields:  # once clustering is part of `winnow run`
        sets += ["cluster.k=2", "cluster.n_buckets=2", "cluster.device=cpu"]
    return sets


def docs(stem: str, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "id": f"{stem}-{i}",
            "text": f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
            f"{rng.choice(PLACES)}, number {i}.",
            "n": i,
        }
        for i in range(n)
    ]


def write_shard(folder: Path, name: str, n: int = N_DOCS, seed: int = 0) -> None:
    """A shard of ``n`` good documents plus one bad record; the format follows the suffix."""
    stem = name.split(".")[0]
    rows = docs(stem, n, seed)
    if name.endswith(".parquet"):
        rows.append({"id": f"{stem}-null", "text": None, "n": -1})
        pq.write_table(pa.Table.from_pylist(rows), folder / name)
        return
    lines = [json.dumps(r) for r in rows]
    lines.insert(n // 2, '{"id": "broken", "text": ')
    data = ("\n".join(lines) + "\n").encode()
    (folder / name).write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)


SHARDS = ["s0.jsonl", "s1.jsonl.gz", "s2.parquet", "s3.jsonl"]
STEMS = [s.split(".")[0] for s in SHARDS]


def make_corpus(folder: Path, names=SHARDS, n: int = N_DOCS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        write_shard(folder, name, n, seed=i)
    return folder


def make_cfg(corpus: Path, out: Path) -> WinnowConfig:
    return load_config(None, tiny_overrides(), {"io.input": [str(corpus)], "io.output": str(out)})


def final_files(out: Path, folders=SHARD_FOLDERS) -> dict[str, bytes]:
    return {
        f"{folder}/{p.name}": p.read_bytes() for folder in folders for p in sorted((out / folder).glob("*.parquet"))
    }


def markers(out: Path, stage: str) -> list[str]:
    folder = out / "completions" / stage
    return sorted(p.name for p in folder.iterdir() if ".tmp" not in p.name) if folder.is_dir() else []


def counts(out: Path, stage: str) -> dict:
    s = json.loads((out / "stats.json").read_text())["stages"][stage]
    return {k: s[k] for k in ("input", "kept", "dropped", "rejected", "rejected_by_reason")}


def record_calls(monkeypatch, stage_cls) -> list[str]:
    """Patch ``stage_cls.process_shard`` to log the stems it is called with."""
    calls: list[str] = []
    original = stage_cls.process_shard

    def wrapper(self, shard, stats):
        calls.append(shard.stem)
        return original(self, shard, stats)

    monkeypatch.setattr(stage_cls, "process_shard", wrapper)
    return calls


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(a) An uninterrupted run over 4 shards (jsonl, jsonl.gz, parquet, jsonl) and the bytes it wrote."""
    root = tmp_path_factory.mktemp("resume")
    corpus = make_corpus(root / "corpus")
    out = root / "reference"
    result = pipeline_run(make_cfg(corpus, out))
    return SimpleNamespace(corpus=corpus, out=out, files=final_files(out), result=result)


def pipeline_run(cfg: WinnowConfig, **kwargs):
    from winnow.pipeline.runner import run_pipeline

    return run_pipeline(cfg, RUN_STAGES, progress=False, **kwargs)


# -- (a) ----------------------------------------------------------------------------------------------------------


def test_reference_run_is_complete(reference):
    out = reference.out
    assert set(reference.files) == {f"{folder}/{stem}.parquet" for folder in SHARD_FOLDERS for stem in STEMS}
    for stage in ("embed", "write"):
        assert markers(out, stage) == STEMS
        assert counts(out, stage) == {
            "input": 4 * (N_DOCS + 1),
            "kept": 4 * N_DOCS,
            "dropped": 0,
            "rejected": 4,
            "rejected_by_reason": {"malformed_json": 3, "null_text": 1},
        }
    for stem in STEMS:
        ids = pq.read_table(out / "embeddings" / f"{stem}.parquet").column("id").to_pylist()
        assert ids == [f"{stem}-{i}" for i in range(N_DOCS)]
        assert pq.read_table(out / "curated" / f"{stem}.parquet").column("id").to_pylist() == ids


def test_rerun_of_a_complete_run_does_nothing(reference, tmp_path, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(reference.out, out)
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*.parquet")}
    embed_calls, write_calls = record_calls(monkeypatch, EmbedStage), record_calls(monkeypatch, WriteStage)
    pipeline_run(make_cfg(reference.corpus, out))
    assert embed_calls == [] and write_calls == []
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*.parquet")} == before


# -- (b) ----------------------------------------------------------------------------------------------------------


def test_failed_shard_is_redone_alone(reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    cfg = make_cfg(reference.corpus, out)
    failing_stem = STEMS[1]
    others = [s for s in STEMS if s != failing_stem]
    original = EmbedStage.process_shard

    def failing(self, shard, stats):
        if shard.stem == failing_stem:
            raise RuntimeError("injected failure")
        return original(self, shard, stats)

    monkeypatch.setattr(EmbedStage, "process_shard", failing)
    with pytest.raises(ShardError) as info:
        pipeline_run(cfg)
    message = str(info.value)
    assert "injected failure" in message
    assert re.findall(r"^\s+(\S+): ", message, flags=re.MULTILINE) == [failing_stem]  # the listing
    # the other shards were finished after the failure; only they have markers and outputs
    assert markers(out, "embed") == others
    assert markers(out, "write") == []
    assert sorted(p.name for p in (out / "embeddings").glob("*.parquet")) == [f"{s}.parquet" for s in others]
    assert (out / "failures" / "embed" / f"{failing_stem}.json").is_file()
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "embeddings").glob("*.parquet")}

    monkeypatch.undo()
    embed_calls, write_calls = record_calls(monkeypatch, EmbedStage), record_calls(monkeypatch, WriteStage)
    pipeline_run(cfg)
    assert embed_calls == [failing_stem]
    assert sorted(write_calls) == STEMS
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # finished shards untouched
    assert markers(out, "embed") == STEMS and markers(out, "write") == STEMS
    assert not (out / "failures" / "embed" / f"{failing_stem}.json").exists()
    assert final_files(out) == reference.files
    for stage in ("embed", "write"):
        assert counts(out, stage) == counts(reference.out, stage)


# -- (c) ----------------------------------------------------------------------------------------------------------


def check_no_partial_files(out: Path, reference_files: dict[str, bytes]) -> None:
    """Every file under a final name is whole; anything else is a temporary file."""
    for folder in SHARD_FOLDERS:
        if not (out / folder).is_dir():
            continue
        for p in (out / folder).iterdir():
            if p.name.endswith(".parquet"):
                pq.read_table(p)  # reads: not truncated
                if folder == "embeddings":
                    assert p.read_bytes() == reference_files[f"{folder}/{p.name}"], p.name
            else:
                assert ".tmp-" in p.name, p.name


@pytest.mark.timeout(420)
def test_killed_run_resumes_to_the_same_bytes(reference, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "winnow", "run", "--input", str(reference.corpus), "--output", str(out)]
    cmd += ["--no-progress", "-q"] + [arg for item in tiny_overrides() for arg in ("--set", item)]
    log = (tmp_path / "stderr.txt").open("wb")
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not markers(out, "embed"):
            assert proc.poll() is None, f"winnow ended before the kill: {(tmp_path / 'stderr.txt').read_text()}"
            assert time.monotonic() < deadline, "no embed completion marker in time"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    done = markers(out, "embed")
    assert 1 <= len(done) < len(STEMS), f"the kill did not land mid-run ({done})"
    assert markers(out, "write") == []
    check_no_partial_files(out, reference.files)

    embed_calls = record_calls(monkeypatch, EmbedStage)
    pipeline_run(make_cfg(reference.corpus, out))
    assert sorted(embed_calls) == [s for s in STEMS if s not in done]  # finished shards are not redone
    assert markers(out, "embed") == STEMS and markers(out, "write") == STEMS
    assert final_files(out) == reference.files
    for stage in ("embed", "write"):
        assert counts(out, stage) == counts(reference.out, stage)


class Interrupted(BaseException):
    """Stands for a kill: not an ``Exception``, so no stage records it as a shard failure."""


def test_interrupted_overwrite_then_resume(reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(reference.out, out)
    cfg = make_cfg(reference.corpus, out)
    original = EmbedStage.process_shard

    def killed(self, shard, stats):
        if shard.stem == STEMS[1]:
            raise Interrupted
        return original(self, shard, stats)

    monkeypatch.setattr(EmbedStage, "process_shard", killed)
    with pytest.raises(Interrupted):
        pipeline_run(cfg, overwrite=True)
    monkeypatch.undo()

    pipeline_run(cfg)
    for stage in ("embed", "write"):
        assert markers(out, stage) == STEMS, stage
    assert final_files(out) == reference.files


# -- (d) ----------------------------------------------------------------------------------------------------------


def test_added_shard_reuses_completed_shards(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "corpus", n=12)
    out = tmp_path / "out"
    cfg = make_cfg(corpus, out)
    pipeline_run(cfg)
    assert markers(out, "embed") == STEMS
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "embeddings").glob("*.parquet")}

    write_shard(corpus, "s4.jsonl", n=12, seed=4)
    embed_calls, write_calls = record_calls(monkeypatch, EmbedStage), record_calls(monkeypatch, WriteStage)
    pipeline_run(cfg)
    assert embed_calls == ["s4"]  # embeddings depend on the shard alone: only the new shard is embedded
    if getattr(WriteStage, "uses_shard_list", False):  # curated shards depend on corpus-wide decisions
        assert sorted(write_calls) == [*STEMS, "s4"]
    else:
        assert write_calls == ["s4"]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert markers(out, "embed") == [*STEMS, "s4"] and markers(out, "write") == [*STEMS, "s4"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["shards"] == 5
    assert stats["stages"]["embed"]["input"] == 5 * 13 and stats["stages"]["write"]["kept"] == 5 * 12

    # the same bytes as a fresh run over the five shards
    monkeypatch.undo()
    fresh = tmp_path / "fresh"
    pipeline_run(make_cfg(corpus, fresh))
    assert final_files(out) == final_files(fresh)


def test_stale_temporary_files_are_removed_and_nothing_else(tmp_path):
    from winnow.core.rundir import RunDir

    run = tmp_path / "run"
    stale = ["embeddings/a.parquet.tmp-0123abcd", "stats/embed/a.json.tmp-89abcdef"]
    # a shard may be named data.tmp: its completion marker is completions/<stage>/data.tmp
    kept = ["embeddings/a.parquet", "completions/embed/b.tmp", "curated/x.tmp-0123abcd.parquet", "c.tmp-XYZ"]
    for rel in stale + kept:
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(b"x")
    removed = RunDir(str(run)).remove_stale_temps()
    assert sorted(r.rsplit(str(run) + "/", 1)[-1] for r in removed) == sorted(stale)
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == sorted(kept)
    assert RunDir(str(tmp_path / "absent")).remove_stale_temps() == []
