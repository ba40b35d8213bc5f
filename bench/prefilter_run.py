"""The pre-filters' effect on a whole ``winnow run``: the same shards with and without ``configs/web.yaml``'s block.

Runs every stage (bundled MiniLM on CPU, heuristic quality, SemDeDup) twice on the same input, once with no
``prefilter`` section and once with every pre-filter on, and prints the wall time, the CPU time (this process and
its children: the number a shared machine distorts least), each stage's seconds and how many documents were
embedded. The pre-filters pay for themselves when the embedding they save exceeds their own cost.

    python bench/prefilter_run.py --data <nltk_data> --per-shard 100 --json bench/out/prefilter_run.jsonl
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))


def sample(data: Path, out: Path, per_shard: int) -> int:
    """The first ``per_shard`` rows of each parquet shard (id, text, source), written under ``out``."""
    import pyarrow.parquet as pq

    out.mkdir(parents=True)
    n = 0
    for path in sorted(data.glob("*.parquet")):
        t = pq.read_table(path, columns=["id", "text", "source"]).slice(0, per_shard)
        pq.write_table(t, out / path.name)
        n += t.num_rows
    return n


def run(inputs: Path, out: Path, prefilter: bool, k: int) -> dict:
    from winnow.pipeline.config import load_config
    from winnow.pipeline.runner import STAGES, run_pipeline

    sets = [
        "embed.model=bundled", "embed.device=cpu", f"cluster.k={k}", "cluster.fit_fraction=1.0",
        "cluster.n_buckets=4", "prune.strategy=semdedup", "score.backend=heuristic",
    ]  # fmt: skip
    if prefilter:
        sets.append("prefilter={}")
    cfg = load_config(None, sets, {"io.input": [str(inputs)], "io.output": str(out)})
    t0, c0 = time.perf_counter(), _cpu()
    result = run_pipeline(cfg, list(STAGES), progress=False)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {
        "prefilter": prefilter,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "stage_seconds": {name: round(s.seconds, 1) for name, s in result.stages.items()},
        "embedded": result.stages["embed"].kept,
        "kept": result.stages["write"].kept,
    }


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children: what a loaded machine distorts least."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data/nltk_data", help="folder of parquet shards")
    ap.add_argument("--per-shard", type=int, default=100, help="rows taken from each shard")
    ap.add_argument("--k", type=int, default=20, help="cluster.k")
    ap.add_argument("--json", default=None, help="append the result as one JSON line here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        root = Path(tmp)
        n = sample(Path(args.data), root / "in", args.per_shard)
        runs = [run(root / "in", root / f"run{int(p)}", p, args.k) for p in (False, True)]
    res = {"bench": "prefilter_run", "docs": n, "runs": runs,
           "saved_wall_fraction": round(1 - runs[1]["wall_seconds"] / runs[0]["wall_seconds"], 3),
           "saved_cpu_fraction": round(1 - runs[1]["cpu_seconds"] / runs[0]["cpu_seconds"], 3)}  # fmt: skip
    from common import emit

    emit(res, args.json)


if __name__ == "__main__":
    main()
