"""Peak memory and time of the prune decisions, single-frame (before issue 15) against two-pass (after).

Writes a synthetic run directory with what prune reads, without embedding anything: ``assignments/<stem>.parquet``
(id, cluster_id, dist_to_centroid; shards of ``--shard-docs``), ``dedup/<bucket>.parquet`` (stem, pos,
dup_max_sim with 5% near-duplicates and one null per cluster, dup_nn_id) and ``centroids.npy`` (k random unit
vectors of dimension 384) in a child process (a child's ``ru_maxrss`` starts at its parent's peak: generating 10M
documents in this process inflated every measured peak, to 826 MiB for a decide unit), then runs, each in its own
process (peak RSS from ``getrusage``'s ``ru_maxrss``):
- ``single``: ``load_scores`` + ``decide`` over one frame of every document (the old global step, without its
  per-shard output loop, so a lower bound of the old stage);
- ``global``: ``plan_decisions`` over ``RunSource`` (the new prune step: statistics and cuts, streamed by shard);
  ``--before-d-inter`` runs ``scorers.complexity.d_inter`` in one block (k² float64: 1.6 GiB at k = 10,000);
- ``unit``: one shard's decision as the ``decide`` stage makes it (its rows, its dedup rows, ``apply_plan``).

``--strategy quality`` (or ``dataman_level``) also writes ``quality/<stem>.parquet`` as the score stage does (id, 13
integer criteria, quality_overall, quality_score in steps of 0.1, quality_domain of 15, n_words log-normal around 300
with a long tail, source of 4) and reads clusters and quality, not dedup (those strategies do not need it).
``single`` is then the old global step itself (``twopass._single_frame_plan``: the frame of every numeric and quality
column); ``--stratify source,quality_domain`` selects DataMan's strata.

Usage:
    python bench/prune_memory.py --docs 1000000 --k 1000 --strategy dbp
    python bench/prune_memory.py --docs 1000000 --strategy quality --stratify source,quality_domain
    python bench/prune_memory.py --docs 1000000 --strategy dataman_level --keep-fraction 0.1 --workdir W
    python bench/prune_memory.py --docs 10000000 --k 10000 --buckets 200 --modes global,unit --workdir W \
        --json bench/out/prune_memory.json
    (``--workdir W`` keeps the synthetic run for the next call: 10M documents take about 20 s to write, 332 MB.)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def make_run(root: Path, docs: int, shard_docs: int, k: int, buckets: int, seed: int = 0) -> list[str]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    (root / "assignments").mkdir(parents=True)
    (root / "dedup").mkdir()
    cent = rng.standard_normal((k, 384)).astype(np.float32)
    np.save(root / "centroids.npy", cent / np.linalg.norm(cent, axis=1, keepdims=True))
    stems = []
    for s in range(0, docs, shard_docs):
        stem = f"shard{s // shard_docs:05d}"
        n = min(shard_docs, docs - s)
        ids = pa.array([f"{stem}-{i}" for i in range(n)])
        labels = rng.integers(0, k, n).astype(np.int32)
        dist = rng.gamma(4.0, 0.08, n).astype(np.float32)
        pq.write_table(
            pa.table({"id": ids, "cluster_id": labels, "dist_to_centroid": dist}),
            root / "assignments" / f"{stem}.parquet",
        )
        sims = np.where(rng.random(n) < 0.05, rng.uniform(0.95, 1.0, n), rng.uniform(0.2, 0.9, n)).astype(np.float32)
        sims[np.unique(labels, return_index=True)[1]] = np.nan  # the top-ranked member of each cluster
        nn = np.where(np.isnan(sims), None, ids.to_numpy(zero_copy_only=False)[rng.integers(0, n, n)])
        for b in range(buckets):  # the dedup stage's layout: dedup/<bucket>/<stem>.parquet, rows by position
            sel = np.flatnonzero(labels % buckets == b)
            (root / "dedup" / f"{b:05d}").mkdir(exist_ok=True)
            pq.write_table(
                pa.table({
                    "stem": pa.array([stem] * len(sel)), "pos": pa.array(sel.astype(np.int64)),
                    "dup_max_sim": pa.array(sims[sel], mask=np.isnan(sims[sel])),
                    "dup_nn_id": pa.array(nn[sel].tolist(), pa.string()),
                }),
                root / "dedup" / f"{b:05d}" / f"{stem}.parquet",
            )  # fmt: skip
        stems.append(stem)
    return stems


QUALITY_STRATEGIES = ("quality", "dataman_level")


def make_quality(root: Path, stems: list[str], seed: int = 1) -> None:
    """``quality/<stem>.parquet`` for every shard of a synthetic run, row-aligned with its assignments."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from winnow.scorers.base import CRITERION_COLUMNS

    rng = np.random.default_rng(seed)
    (root / "quality").mkdir(exist_ok=True)
    domains = [f"domain{i:02d}" for i in range(15)]
    for stem in stems:
        ids = pq.read_table(root / "assignments" / f"{stem}.parquet", columns=["id"]).column("id")
        n = len(ids)
        crit = {c: pa.array(rng.integers(1, 6, n).astype(np.int8)) for c in CRITERION_COLUMNS}
        words = np.minimum(np.exp(rng.normal(5.7, 1.0, n)), 200_000).astype(np.int32)
        cols = {
            "id": ids, **crit, "quality_overall": pa.array(rng.integers(1, 6, n).astype(np.int8)),
            "quality_score": pa.array(np.round(rng.uniform(1, 5, n), 1).astype(np.float32)),
            "quality_domain": pa.array(rng.choice(domains, n)), "n_words": pa.array(words),
            "source": pa.array(rng.choice(["web", "books", "code", "papers"], n, p=[0.6, 0.2, 0.15, 0.05])),
        }  # fmt: skip
        pq.write_table(pa.table(cols), root / "quality" / f"{stem}.parquet")


def measure(
    mode: str,
    root: str,
    stems: list[str],
    k: int,
    buckets: int,
    strategy: str,
    before_d_inter: bool = False,
    stratify: str = "",
    keep_fraction: str = "0.5",
) -> dict:
    import io

    import numpy as np

    from winnow.core.rundir import RunDir
    from winnow.pipeline.config import load_config
    from winnow.pipeline.prune import decide, load_scores
    from winnow.pipeline.prune.scores import RunSource
    from winnow.pipeline.prune.twopass import Plan, apply_plan, plan_decisions

    sets = [f"cluster.k={k}", f"cluster.n_buckets={buckets}", f"prune.strategy={strategy}",
            f"prune.keep_fraction={keep_fraction}"]  # fmt: skip
    sets += [f"prune.stratify=[{stratify}]"] if stratify else []
    quality = strategy in QUALITY_STRATEGIES
    dedup = not quality  # the quality strategies read clusters (when there are) and quality, not dedup
    cfg = load_config(None, sets, {"io.input": ["unused"], "io.output": root})
    run = RunDir(root)
    shards = [SimpleNamespace(stem=s) for s in stems]
    cent = np.load(io.BytesIO(run.read_bytes("centroids.npy")))
    t0 = time.perf_counter()
    if before_d_inter:  # the whole k x k matrix in one block, as before issue 15
        from functools import partial

        from winnow.pipeline.prune import twopass
        from winnow.scorers.complexity import d_inter

        twopass.d_inter = partial(d_inter, block_bytes=1 << 62)
    if mode == "single" and quality:  # the old global step of the quality strategies: one frame of every column
        from winnow.pipeline.prune.twopass import _single_frame_plan

        plan = _single_frame_plan(RunSource(run, shards, "id", True, False, buckets, cfg.run.seed, True), cfg, cent)
        kept = int(plan.rows["keep"].sum())
    elif mode == "single":
        frame = load_scores(run, shards, "id", True, True, buckets)
        kept = decide(frame, cfg, cent).kept
    elif mode == "global":
        src = RunSource(run, shards, "id", True, dedup, buckets, cfg.run.seed, quality)
        plan = plan_decisions(src, cfg, cent)
        kept = plan.summary["kept"]
        Path(root, "plan.json").write_text(json.dumps(plan.to_json()))
    else:  # one shard's decision, from the plan the global run saved
        plan = Plan.from_json(json.loads(Path(root, "plan.json").read_text()))
        src = RunSource(run, shards, "id", True, dedup, buckets, cfg.run.seed, quality)
        rows = src.rows(stems[0])
        sims = src.shard_sims(stems[0], rows.height)[0] if dedup else None
        keep, _reason, _ = apply_plan(plan, cfg, src.scores(stems[0], rows, sims))
        kept = int(keep.sum())
    return {"seconds": time.perf_counter() - t0, "kept": kept}


def child(args: argparse.Namespace) -> None:
    if args.mode == "make":
        stems = make_run(Path(args.root), args.docs, args.shard_docs, args.k, args.buckets)
        Path(args.root, "stems.json").write_text(json.dumps(stems))
        return
    stems = json.loads(Path(args.root, "stems.json").read_text())
    if args.mode == "make-quality":
        return make_quality(Path(args.root), stems)
    out = measure(
        args.mode, args.root, stems, args.k, args.buckets, args.strategy, args.before_d_inter, args.stratify,
        args.keep_fraction,
    )  # fmt: skip
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--shard-docs", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--buckets", type=int, default=20)
    ap.add_argument("--strategy", default="dbp")
    ap.add_argument("--stratify", default="", help="quality strategies: prune.stratify, e.g. source,quality_domain")
    ap.add_argument("--keep-fraction", default="0.5", help="prune.keep_fraction")
    ap.add_argument("--modes", default="single,global,unit")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--before-d-inter", action="store_true", help="the unblocked d_inter (before issue 15's fix)")
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        return child(args)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="prune_memory_")) / f"run{args.docs}"
    if not (root / "stems.json").exists():
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--mode", "make", "--root", str(root), "--docs", str(args.docs),
               "--shard-docs", str(args.shard_docs), "--k", str(args.k), "--buckets", str(args.buckets)]  # fmt: skip
        subprocess.run(cmd, check=True)
        print(f"synthetic run {root}: {args.docs:,} documents in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    if args.strategy in QUALITY_STRATEGIES and not (root / "quality").exists():
        subprocess.run([sys.executable, __file__, "--mode", "make-quality", "--root", str(root)], check=True)
    results = {}
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--mode", mode, "--root", str(root), "--k", str(args.k),
               "--buckets", str(args.buckets), "--strategy", args.strategy, "--stratify", args.stratify,
               "--keep-fraction", args.keep_fraction]  # fmt: skip
        cmd += ["--before-d-inter"] if args.before_d_inter else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{mode}: {results[mode]}", file=sys.stderr)
    info = {"docs": args.docs, "shard_docs": args.shard_docs, "k": args.k, "buckets": args.buckets,
            "strategy": args.strategy, "stratify": args.stratify, "keep_fraction": args.keep_fraction,
            "before_d_inter": args.before_d_inter,
            "results": results}  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(info, indent=2))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
