"""Benchmark: what parsing each raw shard once saves (issue: each input parsed once per run).

Before the ``read`` stage, embed, score and write each parsed and validated the raw shard (``ShardReader``: the
schema pre-pass, JSON decoding, UTF-8 and id checks). Now ``read`` parses once and writes ``docs/<stem>.parquet``;
the three stages read that copy row group by row group. This times, side by side in one run and per format, the
reading work of one ``winnow run``: 3 parses of the raw file (before) against 1 parse + the copy's write + 3 reads
of the copy (after).

    python bench/read_once.py --input '../shared/data/nltk_data/*.parquet' --n 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit  # noqa: E402
from winnow.core.io import list_shards  # noqa: E402
from winnow.core.logging import setup_logging  # noqa: E402
from winnow.core.rundir import RunDir  # noqa: E402
from winnow.core.stats import ShardStats  # noqa: E402
from winnow.pipeline.config import load_config  # noqa: E402
from winnow.pipeline.stages import STAGES  # noqa: E402
from winnow.pipeline.stages.base import RejectSink, provenance  # noqa: E402


def corpus(pattern: str, n: int, folder: Path) -> dict[str, Path]:
    texts = [t for f in sorted(glob.glob(pattern)) for t in pq.read_table(f, columns=["text"])["text"].to_pylist()]
    texts = [t for t in texts if t and t.strip()][:n]
    texts = (texts * (n // max(len(texts), 1) + 1))[:n]  # repeat the corpus up to n documents
    rows = [{"id": f"d{i}", "text": t, "source": "bench"} for i, t in enumerate(texts)]
    files = {
        "parquet": folder / "p" / "corpus.parquet",
        "jsonl": folder / "j" / "corpus.jsonl",
        "jsonl.gz": folder / "g" / "corpus.jsonl.gz",
    }
    for f in files.values():
        f.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), files["parquet"])
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    files["jsonl"].write_bytes(data)
    files["jsonl.gz"].write_bytes(gzip.compress(data, mtime=0))
    return files


def read_all(stage_name: str, cfg, out: Path, shard) -> float:
    """Seconds one stage spends iterating ``ShardStage.read`` over the shard (nothing else)."""
    stage = STAGES[stage_name](cfg, str(out), [shard])
    stats = ShardStats()
    t0 = time.perf_counter()
    with RejectSink(stage.run_dir, shard, provenance(cfg, "read")) as rej:
        for _ in stage.read(shard, stats, rej):
            pass
    return time.perf_counter() - t0


def one_round(path: Path, tmp: Path) -> dict[str, float]:
    shard = list_shards([str(path)])[0]
    out = tmp / f"run-{time.perf_counter_ns()}"
    cfg = load_config(None, [], {"io.input": [str(path)], "io.output": str(out)})
    before = sum(read_all(s, cfg, out, shard) for s in ("embed", "score", "write"))  # no copy yet: raw parses
    t0 = time.perf_counter()
    for _ in STAGES["read"](cfg, str(out), [shard]).run():  # a datatrove step: a generator
        pass
    parse_and_copy = time.perf_counter() - t0
    reads = sum(read_all(s, cfg, out, shard) for s in ("embed", "score", "write"))
    copy_mb = RunDir(str(out)).fs.size(str(out / "docs" / f"{shard.stem}.parquet")) / 2**20
    return {"before_s": before, "after_s": parse_and_copy + reads, "parse_and_copy_s": parse_and_copy,
            "three_copy_reads_s": reads, "copy_mib": copy_mb}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default="../shared/data/nltk_data/*.parquet")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    setup_logging(-1)
    with tempfile.TemporaryDirectory() as tmp:
        files = corpus(a.input, a.n, Path(tmp))
        for fmt, path in files.items():
            rounds = [one_round(path, Path(tmp)) for _ in range(a.rounds)]
            best = {k: min(r[k] for r in rounds) for k in rounds[0]}
            emit({"bench": "read_once", "format": fmt, "docs": a.n, "raw_mib": path.stat().st_size / 2**20,
                  **{k: round(v, 3) for k, v in best.items()}, "speedup": round(best["before_s"] / best["after_s"], 2),
                  "machine": platform.machine(), "python": platform.python_version()}, a.out)  # fmt: skip


if __name__ == "__main__":
    main()
