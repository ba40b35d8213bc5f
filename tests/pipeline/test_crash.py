"""Crash safety end to end (DESIGN §2.2, §5): ``winnow run`` killed with SIGKILL at several random moments, with 1
or 2 workers, then rerun, writes the bytes of an uninterrupted run; after every kill, nothing partial is visible
under a final name (every such file is byte-identical to the uninterrupted run's), and every completion marker
stands for outputs that exist. The global steps (centroid fit, DBP quotas, the mixture plan) are idempotent.

The kill moments come from a seeded generator: set ``WINNOW_CRASH_SEED`` to replay a failure (the seed is in
the assertion messages). ``test_resume.py`` covers one kill at a fixed moment.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
import zstandard

from winnow.mixers.config import MixSection
from winnow.mixers.planner import build_plan, plan_json
from winnow.pipeline.config import load_config
from winnow.pipeline.runner import run_pipeline
from winnow.pipeline.stages import STAGES

RUN = list(STAGES)
SETS = [
    "cluster.k=2", "cluster.n_buckets=2", "embed.batch_size=8", "executor.torch_threads=1", "embed.device=cpu",
    "cluster.device=cpu", "prune.strategy=dbp", "prune.keep_fraction=0.5",
]  # fmt: skip
SHARDS = ["s0.jsonl", "s1.jsonl.gz", "s2.parquet", "s3.jsonl.zst"]
STEMS = [s.split(".")[0] for s in SHARDS]
N_DOCS = 24
#: completion markers of a whole run: a unit per shard for read, embed, assign, score, decide, write; 2 dedup
#: buckets; fit, prune (no prefilter section: its stages have no units)
N_MARKERS = 6 * len(SHARDS) + 2 + 2
N_KILLS = 4
PLAN = MixSection(budget_tokens=5_000, law={"a": 200.0})
#: files whose content may differ between runs (timings, the invocation's config, datatrove's task logs)
VOLATILE = ("logs/", "stats/", "stats.json", "kmeans.json", "config.resolved.yaml")

WORDS = (
    "river mountain engine library garden protein theorem market violin harbour glacier senate recipe pixel "
    "comet orchard bridge ledger canvas tunnel"
).split()


def write_corpus(folder: Path) -> Path:
    """Four shards (jsonl, jsonl.gz, parquet, jsonl.zst) of ``N_DOCS`` documents, a few near-duplicates and one
    bad record each."""
    folder.mkdir(parents=True)
    for i, name in enumerate(SHARDS):
        rng = random.Random(i)
        stem = name.split(".")[0]
        rows = []
        for j in range(N_DOCS):
            words = [rng.choice(WORDS) for _ in range(rng.randint(8, 40))]
            if j % 6 == 5:  # a near-duplicate of the document before
                words = rows[-1]["text"].split()[:-1] + ["again"]
            rows.append({"id": f"{stem}-{j}", "text": " ".join(words), "source": ["web", "books"][j % 2]})
        if name.endswith(".parquet"):
            rows.append({"id": f"{stem}-null", "text": None, "source": "web"})
            pq.write_table(pa.Table.from_pylist(rows), folder / name)
            continue
        lines = [json.dumps(r) for r in rows]
        lines.insert(N_DOCS // 2, '{"id": "broken", "text": ')
        data = ("\n".join(lines) + "\n").encode()
        if name.endswith(".gz"):
            data = gzip.compress(data, mtime=0)
        elif name.endswith(".zst"):
            data = zstandard.ZstdCompressor().compress(data)
        (folder / name).write_bytes(data)
    return folder


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file of a run directory but temporary ones, by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and not is_temp(p.name)
    }


def is_temp(name: str) -> bool:
    return ".tmp" in name  # AtomicParquetWriter: <name>.tmp-<hex>; RunDir.write_text/bytes: <name>.tmp


def deterministic(files: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if not k.startswith(VOLATILE)}


def counts(out: Path) -> dict:
    stages = json.loads((out / "stats.json").read_text())["stages"]
    keys = ("input", "kept", "dropped", "rejected", "rejected_by_reason")
    return {name: [s[k] for k in keys] for name, s in stages.items()}


def markers(out: Path) -> list[str]:
    return sorted(
        str(p.relative_to(out / "completions"))
        for p in (out / "completions").glob("*/*")
        if p.is_file() and not is_temp(p.name)
    )


def outputs_of(marker: str) -> list[str]:
    """The files a unit's completion marker vouches for."""
    stage, unit = marker.split("/")
    return {
        "read": [f"docs/{unit}.parquet"],
        "embed": [f"embeddings/{unit}.parquet"],
        "fit": ["centroids.npy", "kmeans.json"],
        "assign": [f"assignments/{unit}.parquet"],
        "dedup": [f"dedup/{unit}/{stem}.parquet" for stem in STEMS],  # every shard, in every bucket
        "score": [f"quality/{unit}.parquet"],
        "prune": ["cluster_stats.parquet", "prune.json"],
        "decide": [f"decisions/{unit}.parquet"],
        "write": [f"curated/{unit}.parquet"],
    }[stage]


def check_consistent(out: Path, reference, context: str) -> None:
    """No partial file under a final name, and every marker's outputs exist."""
    files = snapshot(out)
    for rel, data in files.items():
        if rel in reference.deterministic:
            assert data == reference.deterministic[rel], f"{context}: {rel} differs from the uninterrupted run"
        elif rel.startswith("logs/"):
            continue  # datatrove's logs, stats and rank completions (not outputs)
        elif rel == ".lock":
            continue  # the killed run's lock ended with it; its file stays until the next run takes it over
        elif rel.endswith(".json"):
            json.loads(data)  # stats/<stage>/<unit>.json, stats.json, kmeans.json: whole
        elif rel == "config.resolved.yaml":
            assert yaml.safe_load(data)["config_hash"] == reference.config_hash, context
        else:
            pytest.fail(f"{context}: unexpected file {rel}")
    for marker in markers(out):
        missing = [f for f in outputs_of(marker) if f not in files]
        assert not missing, f"{context}: marker {marker} without {missing}"
    if (out / "kmeans.json").exists():
        km = json.loads((out / "kmeans.json").read_text())
        assert km["objective"] == reference.kmeans["objective"], context
    if (out / "centroids.npy").exists():
        np.load(out / "centroids.npy")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    corpus = write_corpus(root / "corpus")
    out = root / "reference"
    run_pipeline(load_config(None, SETS, {"io.input": [str(corpus)], "io.output": str(out)}), RUN, progress=False)
    files = snapshot(out)
    assert len(markers(out)) == N_MARKERS
    assert not [p for p in out.rglob("*") if is_temp(p.name)]
    return SimpleNamespace(
        corpus=corpus, out=out, deterministic=deterministic(files), counts=counts(out),
        kmeans=json.loads((out / "kmeans.json").read_text()),
        config_hash=yaml.safe_load((out / "config.resolved.yaml").read_text())["config_hash"],
        plan=plan_json(build_plan(str(out), PLAN)),
    )  # fmt: skip


def start(reference, out: Path, workers: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "winnow", "run", "--input", str(reference.corpus), "--output", str(out)]
    cmd += [a for s in SETS for a in ("--set", s)] + ["--workers", str(workers), "--no-progress", "-q"]
    with log.open("ab") as f:
        return subprocess.Popen(cmd, cwd=out.parent, stdout=f, stderr=f, start_new_session=True)


def kill_at_random_moments(reference, out: Path, log: Path, rng: random.Random, context: str) -> list[tuple]:
    """Start ``winnow run`` on ``out`` and SIGKILL it, again and again, until the run completes or ``N_KILLS``
    kills landed while it ran; check the run directory after each kill. Returns what each attempt did."""
    history: list[tuple] = []
    while sum(h[-1] for h in history) < N_KILLS and len(history) < 2 * N_KILLS:
        done = len(markers(out)) if out.exists() else 0
        if done == N_MARKERS:
            break
        target = done + rng.randrange((N_MARKERS - done + 1) // 2)  # kill once this many units are complete …
        delay, workers = rng.uniform(0, 0.6), rng.choice([1, 2])  # … plus this many seconds
        attempt = f"{context}, attempt {len(history)} (after {target} markers + {delay:.2f}s, {workers} workers)"
        proc = start(reference, out, workers, log)
        try:
            deadline = time.monotonic() + 300
            while proc.poll() is None and (not out.exists() or len(markers(out)) < target):
                assert time.monotonic() < deadline, f"{attempt}: no progress: {log.read_text()[-2000:]}"
                time.sleep(0.01)
            time.sleep(delay)
            landed = proc.poll() is None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: datatrove's manager and workers too
            except ProcessLookupError:  # it had finished
                pass
            proc.wait(timeout=60)
        assert landed or proc.returncode == 0, f"{attempt}: winnow failed: {log.read_text()[-3000:]}"
        history.append((target, round(delay, 2), workers, len(markers(out)), landed))
        check_consistent(out, reference, attempt)
    return history


@pytest.mark.timeout(600)
def test_kill_9_at_random_moments_then_rerun_gives_the_uninterrupted_bytes(reference, tmp_path):
    seed = int(os.environ.get("WINNOW_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    log = tmp_path / "winnow.log"
    landed, report = 0, []
    # the stages after embed take about a second here, so a run may end before N_KILLS kills: then another one
    for round_ in range(3):
        out = tmp_path / f"killed-{round_}"
        context = f"seed {seed}, round {round_}"
        history = kill_at_random_moments(reference, out, log, rng, context)
        context += f", attempts (target, delay, workers, markers after, landed): {history}"
        run_pipeline(load_config(None, SETS, {"io.input": [str(reference.corpus)], "io.output": str(out)}), RUN)
        assert deterministic(snapshot(out)) == reference.deterministic, context
        assert counts(out) == reference.counts, context
        assert plan_json(build_plan(str(out), PLAN)) == reference.plan, context
        leftovers = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and is_temp(p.name))
        assert not leftovers, f"{context}: the rerun left temporary files of the killed attempts: {leftovers}"
        report.append(context)
        landed += sum(h[-1] and h[3] < N_MARKERS for h in history)  # killed while units were still to do
        if landed >= N_KILLS:
            break
    print("\n".join(report))
    assert landed >= 2, report


def test_global_steps_are_idempotent(reference, tmp_path):
    """Redoing the centroid fit, the SemDeDup buckets, the DBP quotas and the plan rewrites the same bytes."""
    out = tmp_path / "again"
    shutil.copytree(reference.out, out)
    cfg = load_config(None, SETS, {"io.input": [str(reference.corpus)], "io.output": str(out)})
    before = {k: v for k, v in snapshot(out).items() if k.startswith(("centroids", "cluster_stats", "prune.json"))}
    for stages in (["fit"], ["dedup"], ["prune", "decide"], ["fit", "assign", "dedup", "prune", "decide", "write"]):
        run_pipeline(cfg, stages, overwrite=True, progress=False)
        assert deterministic(snapshot(out)) == reference.deterministic, stages
    assert {k: snapshot(out)[k] for k in before} == before
    plan = build_plan(str(out), PLAN)
    assert plan_json(plan) == plan_json(build_plan(str(out), PLAN)) == reference.plan
