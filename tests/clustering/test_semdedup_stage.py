"""The dedup stage with ``dedup.backend: torch`` (issue 17): the settings reach SemDeDup, the stage writes the
numpy backend's columns bit for bit, the backend is not part of the stage's fingerprint, and ``wants_gpu`` follows
the config."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import winnow.pipeline.stages.dedup as dedup_stage
from winnow.core.errors import ConfigError
from winnow.pipeline.config import load_config
from winnow.pipeline.runner import run_pipeline
from winnow.pipeline.stages import STAGES, DedupStage

STAGES_TO_DEDUP = ["read", "embed", "fit", "assign", "dedup"]
WORDS = "river stone cloud apple engine violin planet garden winter copper harbor lantern".split()


def make_corpus(folder):
    """2 shards of 30 short documents; a few texts repeated across shards (exact duplicates)."""
    folder.mkdir(parents=True)
    rng = random.Random(7)
    repeated = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(3)]
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    for s in range(2):
        rows = []
        for i in range(30):
            text = repeated[i % 3] if i % 7 == 0 else " ".join(rng.choice(WORDS) for _ in range(12))
            rows.append({"id": f"s{s}-{i:02d}", "text": text})
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"s{s}.parquet")
    return folder


def cfg_for(corpus, out, *sets):
    base = ["cluster.k=3", "cluster.n_buckets=2", "embed.batch_size=16", "executor.workers=1"]
    return load_config(None, [*base, *sets], {"io.input": [str(corpus)], "io.output": str(out)})


def dedup_tables(out) -> dict[str, pa.Table]:
    """The dedup outputs without their metadata (which holds the hash of the whole config, backend included)."""
    files = sorted((out / "dedup").glob("*/*.parquet"))  # <bucket>/<stem>.parquet
    return {f"{p.parent.name}/{p.name}": pq.read_table(p).replace_schema_metadata(None) for p in files}


def same_tables(got: dict[str, pa.Table], want: dict[str, pa.Table]) -> None:
    assert got.keys() == want.keys()
    for name, t in want.items():
        assert got[name].equals(t), name
        sims = [x.column("dup_max_sim").to_numpy(zero_copy_only=False).astype(np.float32) for x in (got[name], t)]
        np.testing.assert_array_equal(sims[0].view(np.int32), sims[1].view(np.int32))


@pytest.fixture(scope="module")
def numpy_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("semdedup_stage")
    corpus = make_corpus(root / "corpus")
    out = root / "numpy"
    run_pipeline(cfg_for(corpus, out), STAGES_TO_DEDUP, progress=False)
    return corpus, out, dedup_tables(out)


def test_torch_backend_writes_the_numpy_columns(numpy_run, tmp_path, monkeypatch):
    corpus, base, want = numpy_run
    assert len(want) == 4 and sum(t.num_rows for t in want.values()) == 60  # 2 buckets x 2 shards
    assert sum(t.column("dup_max_sim").null_count for t in want.values()) == 3  # one top-ranked member per cluster
    dup = np.concatenate([t.column("dup_max_sim").to_numpy(zero_copy_only=False) for t in want.values()])
    assert (dup > 0.9999).sum() >= 6  # the repeated texts
    calls = []
    original = dedup_stage.semdedup_cluster

    def spy(*args, **kwargs):
        calls.append((kwargs["backend"], kwargs["device"], kwargs["dtype"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(dedup_stage, "semdedup_cluster", spy)
    for sets in (["dedup.backend=torch", "dedup.device=cpu"], ["dedup.backend=torch", "dedup.dtype=bfloat16"]):
        out = tmp_path / "-".join(sets)
        shutil.copytree(base, out)
        # the backend is not in the stage's fingerprint: the completed dedup is reused as it is
        calls.clear()
        run_pipeline(cfg_for(corpus, out, *sets), ["dedup"], progress=False)
        assert calls == []
        # redone from scratch with torch, it writes the same columns
        shutil.rmtree(out / "dedup")
        shutil.rmtree(out / "completions" / "dedup")
        run_pipeline(cfg_for(corpus, out, *sets), ["dedup"], progress=False)
        dtype = "bfloat16" if "dedup.dtype=bfloat16" in sets else "float32"
        assert calls and set(calls) == {("torch", "cpu", dtype)}
        same_tables(dedup_tables(out), want)


def test_wants_gpu_follows_the_backend_and_device(monkeypatch):
    assert STAGES["dedup"].obj is DedupStage
    assert not DedupStage.wants_gpu(load_config(None))  # the default: numpy
    assert DedupStage.wants_gpu(load_config(None, ["dedup.backend=torch"]))  # device auto
    assert DedupStage.wants_gpu(load_config(None, ["dedup.backend=auto"]))
    assert DedupStage.wants_gpu(load_config(None, ["dedup.backend=torch", "dedup.device=cuda"]))
    assert not DedupStage.wants_gpu(load_config(None, ["dedup.backend=torch", "dedup.device=cpu"]))
    assert not DedupStage.wants_gpu(load_config(None, ["dedup.backend=numpy", "dedup.device=cuda"]))


def test_dedup_settings_are_validated():
    cfg = load_config(None, ["dedup.backend=torch", "dedup.device=cpu", "dedup.dtype=float16"])
    assert (cfg.dedup.backend, cfg.dedup.device, cfg.dedup.dtype) == ("torch", "cpu", "float16")
    for bad in ("dedup.backend=jax", "dedup.device=tpu", "dedup.dtype=float64"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(None, [bad])
