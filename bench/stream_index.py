"""Benchmark: peak memory of ``winnow mix`` (the planner) and of ``MixtureDataset``'s index build, two
implementations side by side on the same synthetic curated shards.

For every ``--docs`` N it writes (once, reused under ``--workdir``) a run directory whose ``curated/`` holds
``--shards`` parquet shards of N / shards documents each, laid out as the write stage writes them: ``id``, a short
``text`` (``--words`` words on average, zipf over a 20,000-word vocabulary), ``source`` (four values and some
nulls), the quality columns the planner reads (``quality_score`` float32, ``quality_overall`` int8,
``quality_domain``), ``n_words``, ``keep`` (85% true) and ``repeat`` (mostly 1, some 0, 2 and 3), in row groups of
``--row-group`` rows. Then, for each implementation (``new``: the installed winnow; ``old``: the sources under
``--old``, a layout as ``pip install`` makes it, e.g. ``tools/import_contract.py``'s ``stage`` of a ``git worktree``
of HEAD), each measure runs in its own process and reads its peak resident set (``ru_maxrss``):

* ``mix``: ``build_mixture_plan`` (4 quality quantiles x source domains, an upsampling phase) and the plan's JSON;
  the plan's sha256 is printed, so the implementations can be checked to write the same bytes;
* ``index``: ``MixtureDataset(plan)`` (the index build), then its schedule and the first ``--order`` samples of
  the global order (no text): their sha256 and ``num_samples`` check that the order is the same.

``rss0`` is the process after its imports (polars, pyarrow, torch for the loader), ``peak`` the whole process's
peak, ``delta`` their difference: what the measure itself costs.

    git worktree add /tmp/winnow_old HEAD
    python -c "import sys; sys.path.insert(0, 'tools'); import import_contract as c, pathlib as p; \\
        c.stage(p.Path('/tmp/winnow_old_layout'), repo=p.Path('/tmp/winnow_old'))"
    python bench/stream_index.py --docs 1000000 10000000 --old /tmp/winnow_old_layout
    git worktree remove /tmp/winnow_old
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

SOURCES = ("web", "code", "books", "papers")
MIX = {
    "budget_tokens": None,  # set from the kept tokens: 1.5 passes
    "pools": {"quality": "quantiles", "n_buckets": 4, "domain": "source"},
    "upsample": {"domains": ["code"], "fraction": 0.2, "factor": 2.0},
    "max_repeats": 64,
    "law": {"a": 1.0, "buckets": {f"q{i}": {"b": -0.1, "tau": 5.0} for i in range(1, 5)}},  # keeps every bucket
}


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------------------------
# the synthetic run
# ---------------------------------------------------------------------------------------------------------------
def make_run(root: Path, docs: int, shards: int, words: int, row_group: int, seed: int = 0) -> Path:
    """The run directory (reused when ``root/spec.json`` matches)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    spec = {"docs": docs, "shards": shards, "words": words, "row_group": row_group, "seed": seed}
    run = root / "run"
    marker = root / "spec.json"
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return run
    (run / "curated").mkdir(parents=True, exist_ok=True)
    for old in (run / "curated").glob("*.parquet"):
        old.unlink()
    vocab = pa.array([f"w{i}" for i in range(20_000)])
    per = docs // shards
    for s in range(shards):
        rng = np.random.default_rng([seed, s])
        n = per + (1 if s < docs % shards else 0)
        lengths = rng.integers(max(1, words // 4), words * 7 // 4 + 1, n)
        flat = vocab.take(pa.array(rng.zipf(1.3, int(lengths.sum())) % len(vocab)))
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        text = pc.binary_join(pa.ListArray.from_arrays(offsets, flat), " ")
        src = np.array(SOURCES, dtype=object)[rng.integers(0, len(SOURCES), n)]
        src[rng.random(n) < 0.02] = None
        rep = rng.choice(np.array([0, 1, 2, 3], np.int32), n, p=[0.03, 0.87, 0.07, 0.03])
        table = pa.table(
            {
                "id": pc.binary_join_element_wise(pa.scalar(f"s{s}"), pa.array(np.arange(n).astype(str)), ":"),
                "text": text,
                "source": pa.array(src, pa.string()),
                "quality_overall": pa.array(rng.integers(1, 6, n).astype(np.int8)),
                "quality_score": pa.array(rng.uniform(1, 5, n).astype(np.float32)),
                "quality_domain": pa.array(np.array(SOURCES, dtype=object)[rng.integers(0, 4, n)], pa.string()),
                "n_words": pa.array(lengths.astype(np.int32)),
                "keep": pa.array(rng.random(n) < 0.85),
                "repeat": pa.array(rep),
            }
        )
        pq.write_table(table, run / "curated" / f"s{s:04d}.parquet", row_group_size=row_group, compression="zstd")
        del table, text, flat
    (run / "config.resolved.yaml").write_text("winnow_version: bench\nconfig_hash: bench\n")
    marker.write_text(json.dumps(spec))
    return run


def budget_tokens(run: Path) -> int:
    """1.5 passes over the kept documents' whitespace words (n_words equals them here)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    total = 0
    for f in sorted((run / "curated").glob("*.parquet")):
        for b in pq.ParquetFile(f).iter_batches(columns=["n_words", "keep", "repeat"]):
            kept = pc.and_(b.column("keep"), pc.greater(b.column("repeat"), 0))
            total += int(pc.sum(pc.filter(b.column("n_words"), kept)).as_py() or 0)
    return int(total * 1.5)


# ---------------------------------------------------------------------------------------------------------------
# the measures (each in its own process)
# ---------------------------------------------------------------------------------------------------------------
def measure_mix(run: str, budget: int, plan_out: str | None) -> dict:
    import winnow.mixers.planner as planner
    from winnow.mixers.config import MixSection
    from winnow.mixers.planner import build_mixture_plan, plan_json

    rss0 = _rss_mib()
    t0 = time.perf_counter()
    plan = build_mixture_plan(run, MixSection.model_validate({**MIX, "budget_tokens": budget}), seed=0)
    text = plan_json(plan)
    seconds = time.perf_counter() - t0
    if plan_out:
        Path(plan_out).write_text(text, encoding="utf-8")
    return {"module": planner.__file__, "rss0": rss0, "peak": _peak_mib(), "seconds": seconds,
            "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}  # fmt: skip


def measure_index(run: str, order: int) -> dict:
    import numpy as np

    import winnow.mixers.loader as loader
    from winnow.mixers.loader import MixtureDataset

    rss0 = _rss_mib()
    t0 = time.perf_counter()
    ds = MixtureDataset(run, check_version=False)
    seconds = time.perf_counter() - t0
    peak_index = _peak_mib()
    after_index = _rss_mib()
    t0 = time.perf_counter()
    h = hashlib.sha256(ds.fingerprint.encode())
    n = ds.num_samples
    docs: list[int] = []
    for i, doc, pool, phase in ds.global_order():
        docs.append(doc)
        h.update(f"{i} {doc} {pool} {phase}\n".encode())
        if i + 1 >= order:
            break
    h.update(np.asarray(ds.document_tokens(np.asarray(docs)), dtype=np.int64).tobytes())
    return {"module": loader.__file__, "rss0": rss0, "peak": peak_index, "rss_after": after_index,
            "seconds": seconds, "order_seconds": time.perf_counter() - t0, "peak_with_order": _peak_mib(),
            "num_samples": n, "sha256": h.hexdigest()[:16]}  # fmt: skip


def child(args: argparse.Namespace) -> None:
    if args.child == "mix":
        res = measure_mix(args.run, args.budget, args.plan_out)
    else:
        res = measure_index(args.run, args.order)
    print("RESULT " + json.dumps(res), flush=True)


def run_child(impl: str, old: str | None, what: str, run: Path, extra: list[str]) -> dict:
    env = dict(os.environ)
    if impl == "old":
        env["PYTHONPATH"] = old + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, __file__, "--child", what, "--run", str(run), *extra]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if p.returncode or line is None:
        sys.exit(f"{impl} {what} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    res = json.loads(line[len("RESULT ") :])
    where = Path(old).resolve() if impl == "old" else Path(__file__).resolve().parents[1]
    if impl == "old" and not Path(res["module"]).resolve().is_relative_to(where):
        sys.exit(f"the old implementation was not imported: {res['module']} is not under {where}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--words", type=int, default=12, help="mean words per document")
    ap.add_argument("--row-group", type=int, default=16_384)
    ap.add_argument("--order", type=int, default=200_000, help="samples of the global order hashed")
    ap.add_argument("--old", default=None, help="a layout of the old sources (see the module doc); omit: new only")
    ap.add_argument("--workdir", default="/tmp/winnow_bench_stream")
    ap.add_argument("--out", default=None, help="append the results as JSON lines")
    ap.add_argument("--child", choices=["mix", "index"], help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--plan-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    impls = ["old", "new"] if args.old else ["new"]
    rows = []
    for docs in args.docs:
        t0 = time.perf_counter()
        run = make_run(Path(args.workdir) / f"d{docs}", docs, args.shards, args.words, args.row_group)
        budget = budget_tokens(run)
        print(f"# {docs:,} documents: run {run} ready in {time.perf_counter() - t0:.0f} s", flush=True)
        results = {}
        for impl in impls:
            plan_out = str(run / "mixture_plan.json") if impl == impls[-1] else None
            extra = ["--budget", str(budget)] + (["--plan-out", plan_out] if plan_out else [])
            results[(impl, "mix")] = run_child(impl, args.old, "mix", run, extra)
        for impl in impls:
            results[(impl, "index")] = run_child(impl, args.old, "index", run, ["--order", str(args.order)])
        for (impl, what), r in results.items():
            row = {"docs": docs, "impl": impl, "measure": what, **r}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps({**row, "host": platform.node(), "cpus": os.cpu_count()}) + "\n")
    print("\n| documents | measure | impl | after imports | peak | peak - imports | held after | seconds | sha256 |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        held = f"{r['rss_after'] - r['rss0']:.0f}" if "rss_after" in r else "-"
        print(f"| {r['docs']:,} | {r['measure']} | {r['impl']} | {r['rss0']:.0f} | {r['peak']:.0f} | "
              f"{r['peak'] - r['rss0']:.0f} | {held} | {r['seconds']:.1f} | {r['sha256']} |")  # fmt: skip
    print("\nMiB (resident set); index: peak and held of MixtureDataset(plan); its schedule and order walk after it:")
    for r in rows:
        if r["measure"] == "index":
            print(f"  {r['docs']:,} {r['impl']}: peak with the order walk {r['peak_with_order']:.0f} MiB, "
                  f"{r['num_samples']:,} samples, walk {r['order_seconds']:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
