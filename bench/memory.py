"""Peak memory of each stage for a corpus 1× and N× as large, with the same shard size (DESIGN §4: the peak RSS of
the per-shard stages does not grow with the corpus, only with shard and batch size).

Writes a synthetic corpus of ``--shards`` shards (jsonl and parquet, ``--docs`` documents each) and one ``--scale``
times larger (more shards of the same size), runs every stage of ``winnow run`` in its own process with the local
executor and one worker, and reads each process's peak resident set size from the kernel (``wait4``'s
``ru_maxrss``: exact, no sampling). Per-shard stages (embed, assign, score, write) should stay flat, and so should
dedup: a unit is a cluster bucket, but it holds one cluster's vectors at a time plus at most
``dedup.read_buffer_mib`` of read-ahead (issue 15), so its memory follows the largest cluster, not
``1/n_buckets`` of the corpus. The global steps (fit, prune) grow with the corpus by design.

Usage:
    python bench/memory.py                     # 4 vs 40 shards of 500 documents
    python bench/memory.py --shards 2 --docs 200 --scale 10 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ["embed", "fit", "assign", "dedup", "score", "prune", "decide", "write"]
PER_SHARD = {"embed", "assign", "score", "decide", "write"}
WORDS = (
    "the a of to and in is was for on with as by at from that this it be are or an which river mountain engine "
    "library garden protein theorem market violin harbour glacier senate recipe pixel comet orchard bridge ledger "
    "canvas tunnel council planet museum vaccine tractor poem budget algorithm festival ocean"
).split()


def write_corpus(folder: Path, shards: int, docs: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    for s in range(shards):
        rng = random.Random(seed * 1_000_003 + s)
        texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80))) for _ in range(docs)]
        rows = [{"id": f"s{s}-{i}", "text": t, "source": "web"} for i, t in enumerate(texts)]
        if s % 2:
            pq.write_table(pa.Table.from_pylist(rows), folder / f"shard{s:04d}.parquet")
        else:
            (folder / f"shard{s:04d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def overrides(args: argparse.Namespace) -> list[str]:
    device = getattr(args, "device", "cpu")
    return [
        f"cluster.k={args.k}", f"cluster.n_buckets={args.n_buckets}", f"embed.batch_size={args.batch_size}",
        f"embed.device={device}", f"cluster.device={device}", f"executor.torch_threads={args.threads}",
        "prune.strategy=dbp", "prune.keep_fraction=0.5",
    ]  # fmt: skip


def run_stage(stage: str, corpus: Path, out: Path, sets: list[str], log: Path | None = None) -> dict:
    """Run one stage in a fresh process with these ``--set`` overrides; its peak RSS and wall time.

    The peak is ``wait4``'s ``ru_maxrss``: the largest resident set of the process (or of any child it waited for).
    With ``log``, the process's stdout and stderr go to that file (appended) instead of this process's.
    """
    cmd = [sys.executable, __file__, "--_stage", stage, "--_corpus", str(corpus), "--_out", str(out)]
    cmd += [a for s in sets for a in ("--_set", s)]
    trace = out.parent / f"{out.name}-{stage}-rss.json"
    cmd += ["--_trace", str(trace)]
    sink = open(log, "ab") if log else None  # noqa: SIM115 - closed below
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=sink)
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if sink:
            sink.close()
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"stage {stage} failed ({proc.returncode})" + (f"; see {log}" if log else ""))
    rss = json.loads(trace.read_text())
    return {"stage": stage, "peak_rss_mib": usage.ru_maxrss / 1024, "seconds": seconds, "rss_after_units_mib": rss}


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _stage_main(stage: str, corpus: str, out: str, sets: list[str], trace: str) -> None:
    from winnow.pipeline.config import load_config
    from winnow.pipeline.runner import run_pipeline
    from winnow.pipeline.stages import Stage

    rss: list[float] = []
    run_unit = Stage._run_unit

    def traced(self, unit, fp):  # the resident set after each unit: growth per unit shows up here
        run_unit(self, unit, fp)
        rss.append(round(_rss_mib(), 1))

    Stage._run_unit = traced
    cfg = load_config(None, sets, {"io.input": [corpus], "io.output": out})
    run_pipeline(cfg, [stage], progress=False)
    Path(trace).write_text(json.dumps(rss))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=4, help="shards of the 1× corpus")
    ap.add_argument("--docs", type=int, default=500, help="documents per shard (both corpora)")
    ap.add_argument("--scale", type=int, default=10, help="the larger corpus has scale × shards")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--n-buckets", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "auto", "cuda"], help="embed.device and cluster.device")
    ap.add_argument("--workdir", help="keep the corpora and runs here (default: a temporary folder, removed)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    ap.add_argument("--_stage", help=argparse.SUPPRESS)
    ap.add_argument("--_corpus", help=argparse.SUPPRESS)
    ap.add_argument("--_out", help=argparse.SUPPRESS)
    ap.add_argument("--_set", action="append", default=[], help=argparse.SUPPRESS)
    ap.add_argument("--_trace", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._stage:
        _stage_main(args._stage, args._corpus, args._out, args._set, args._trace)
        return

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="winnow-memory-"))
    results: dict[str, dict[str, dict]] = {}
    try:
        for label, n_shards in (("1x", args.shards), (f"{args.scale}x", args.shards * args.scale)):
            corpus, out = work / f"corpus-{label}", work / f"run-{label}"
            for p in (corpus, out):
                shutil.rmtree(p, ignore_errors=True)
            write_corpus(corpus, n_shards, args.docs)
            results[label] = {}
            for stage in STAGES:
                r = run_stage(stage, corpus, out, overrides(args))
                results[label][stage] = r
                print(f"{label} ({n_shards} shards × {args.docs} docs) {stage}: peak RSS {r['peak_rss_mib']:.0f} MiB, "
                      f"{r['seconds']:.1f}s", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    small, big = results["1x"], results[f"{args.scale}x"]
    info = {
        "shards": [args.shards, args.shards * args.scale], "docs_per_shard": args.docs, "k": args.k,
        "n_buckets": args.n_buckets, "batch_size": args.batch_size, "threads": args.threads, "results": results,
    }  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2))
    if args.markdown:
        x = f"{args.scale}×"
        lines = [
            f"| stage | kind | 1× peak RSS (MiB) | {x} peak RSS (MiB) | ratio | {x}: RSS after units 1 / ½ / all "
            f"(MiB) | 1× s | {x} s |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for stage in STAGES:
            a, b = small[stage], big[stage]
            kind = "per shard" if stage in PER_SHARD else ("per bucket" if stage == "dedup" else "global")
            t = b["rss_after_units_mib"]
            trace = " / ".join(f"{v:.0f}" for v in (t[0], t[len(t) // 2], t[-1])) if len(t) > 1 else f"{t[0]:.0f}"
            lines.append(
                f"| {stage} | {kind} | {a['peak_rss_mib']:.0f} | {b['peak_rss_mib']:.0f} | "
                f"{b['peak_rss_mib'] / a['peak_rss_mib']:.2f} | {trace} | {a['seconds']:.1f} | {b['seconds']:.1f} |"
            )
        print("\n".join(lines))
    else:
        print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
