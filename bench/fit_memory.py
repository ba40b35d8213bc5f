"""Peak memory of the ``fit`` stage alone (issue 15: every global step within 1.5 GiB at 10M documents, k = 10,000).

Writes, in a child process, a run directory's ``embeddings/`` folder of ``--docs`` synthetic clustered unit vectors
(384 float32, ``id`` and ``embedding`` per shard of ``--shard-docs``: ``bench/scaling.py``'s ``write_vectors``, the
vectors of its ``--embeddings synthetic`` mode), then runs the fit stage's unit (``FitStage.process_unit``, its own
config and imports, without the runner and without checking that an embed stage ran) in another child and reads
that child's peak resident set (``getrusage``'s ``ru_maxrss``: exact, no sampling). A child's ``ru_maxrss`` starts
at its parent's peak (the kernel keeps the high-water mark across fork and exec), so nothing large is made here.

Reported: the peak, the resident set after the imports and the config (``baseline``), the bytes of the vectors
k-means trains on (``sample``: the points chosen x dim x 4) and ``(peak - baseline) / sample``, the overhead on
top of the sample (1.0: nothing but the sample). The vectors are written with ``cluster.fit_fraction`` 1 in mind:
the sample is then the ``--docs`` documents, of which k-means keeps the k x points-per-centroid smallest hashes.
``OMP_NUM_THREADS`` defaults to 1 (FAISS on a shared machine); memory does not depend on ``--niter``.

Usage:
    python bench/fit_memory.py --docs 1000000 --k 10000 --niter 1 --workdir /tmp/fitmem        # default cap
    python bench/fit_memory.py --docs 1000000 --k 2000 --niter 2 --workdir /tmp/fitmem \\
        --set cluster.fit_max_mib=null                                                             # no cap
    (``--workdir`` keeps the vectors for the next call: 1M documents are 1.5 GB; ``--clean`` removes them after.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scaling  # noqa: E402 - bench/scaling.py: the synthetic vectors


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make(root: Path, docs: int, shard_docs: int, topics: int, seed: int, dim: int) -> None:
    """``<root>/embeddings/shardNNNNN.parquet`` and ``<root>/stems.json``."""
    info = scaling.write_vectors(root / "embeddings", docs, shard_docs, topics, 0.05, seed, dim)
    stems = sorted(p.stem for p in (root / "embeddings").glob("*.parquet"))
    (root / "stems.json").write_text(json.dumps({"stems": stems, "docs": docs, "bytes": info["vector_bytes"]}))


def measure(root: Path, sets: list[str]) -> dict:
    """The fit stage's unit on ``root``'s embeddings; its peak RSS and what it recorded."""
    import numpy as np

    from winnow.clustering.kmeans import _faiss
    from winnow.core.stats import ShardStats
    from winnow.pipeline.config import load_config
    from winnow.pipeline.stages.cluster import FitStage

    stems = json.loads((root / "stems.json").read_text())["stems"]
    cfg = load_config(None, ["cluster.device=cpu", *sets], {"io.input": ["unused"], "io.output": str(root)})
    stage = FitStage(cfg, str(root), [SimpleNamespace(stem=s) for s in stems])
    stage.require = lambda name: None  # no embed stage ran: the vectors were written as its output
    _faiss()  # its libraries belong to the baseline, not to the sample
    baseline = _peak_mib()
    stats = ShardStats(shards=1)
    t0 = time.perf_counter()
    stage.process_unit("all", stats)
    seconds = time.perf_counter() - t0
    info = json.loads((root / "kmeans.json").read_text())
    dim = np.load(root / "centroids.npy").shape[1]
    sample_mib = info["n_train"] * dim * 4 / 2**20
    peak = _peak_mib()
    return {
        "peak_rss_mib": round(peak, 1), "baseline_rss_mib": round(baseline, 1), "sample_mib": round(sample_mib, 1),
        "overhead_x": round((peak - baseline) / sample_mib, 2) if sample_mib else None, "seconds": round(seconds, 1),
        "kmeans": info, "counters": stats.counters,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--shard-docs", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=10_000)
    ap.add_argument("--niter", type=int, default=1)
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=384, help="vector dimension (a small one: pass 1 at many documents)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="more --set overrides for the fit stage (repeatable)")
    ap.add_argument("--workdir", help="keep the vectors here for the next call (default: a temporary folder)")
    ap.add_argument("--clean", action="store_true", help="remove the vectors afterwards, also from --workdir")
    ap.add_argument("--json", help="append the result, one line, to this file")
    ap.add_argument("--_mode", help=argparse.SUPPRESS)
    ap.add_argument("--_root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._mode == "make":
        return make(Path(args._root), args.docs, args.shard_docs, args.topics, args.seed, args.dim)
    sets = [f"cluster.k={args.k}", f"cluster.niter={args.niter}", "cluster.fit_fraction=1", *args.set]
    if args._mode == "fit":
        out = measure(Path(args._root), sets)
        print(json.dumps(out))
        return None

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fit_memory_"))
    root = work / (f"run{args.docs}-{args.shard_docs}" + ("" if args.dim == 384 else f"-d{args.dim}"))
    me = [sys.executable, __file__, "--docs", str(args.docs), "--shard-docs", str(args.shard_docs)]
    try:
        if not (root / "stems.json").exists():
            shutil.rmtree(root, ignore_errors=True)
            t0 = time.perf_counter()
            cmd = [*me, "--topics", str(args.topics), "--seed", str(args.seed), "--dim", str(args.dim)]
            cmd += ["--_mode", "make", "--_root", str(root)]
            subprocess.run(cmd, check=True)
            print(f"vectors {root}: {args.docs:,} documents in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        cmd = [*me, "--k", str(args.k), "--niter", str(args.niter), "--_mode", "fit", "--_root", str(root)]
        cmd += [a for s in args.set for a in ("--set", s)]
        proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if args.clean or not args.workdir:
            shutil.rmtree(root if args.workdir else work, ignore_errors=True)
    result = {
        "docs": args.docs, "shard_docs": args.shard_docs, "dim": args.dim, "k": args.k, "niter": args.niter,
        "sets": args.set, "omp_threads": os.environ["OMP_NUM_THREADS"],
        "bench_process_max_rss_mib": round(_peak_mib(), 1), **result,
    }  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=2))
    return None


if __name__ == "__main__":
    main()
