"""Benchmark: documents per second of ``winnow.mixers.loader.MixtureDataset`` in one process, from local parquet.

Builds a synthetic run directory once (``--workdir``): ``--shards`` curated shards of ``--rows`` documents with
``--words`` words on average (uniform 0.2x-1.8x), row groups of ``--row-group`` rows, 85% kept, a
``quality_score`` and one of four ``source`` values per row; then a real plan with ``winnow.mixers.planner.build_plan``
(4 quality buckets x 4 sources, equal law parameters per bucket; the budget ``--epochs`` times the kept tokens,
the last 20% upsampling one source). It then times:

* ``index``: building the dataset (one pass over the shards' pool columns and texts, to count tokens);
* ``order``: the first pass's global order alone (``global_order``, no text);
* ``docs``: iterating ``--n`` documents (id, text, pool, phase dicts), as rank 0 of ``--world-size`` ranks; with
  ``--world-size`` > 1 the process still walks the whole global order and yields its share;
* ``resume``: the first document after loading a state 90% into the epoch (no sample before it is produced);
* ``packed`` (``--seq-len``): the same with a whitespace-word tokenizer and packing, in tokens/s.

    python bench/loader.py --n 1000000
    python bench/loader.py --n 1000000 --world-size 8

Prints a markdown table; ``--out`` appends the JSON result as one line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from winnow.mixers.config import MixSection  # noqa: E402
from winnow.mixers.loader import MixtureDataset  # noqa: E402
from winnow.mixers.planner import PLAN_FILE, build_plan, write_plan  # noqa: E402

SOURCES = ("web", "code", "books", "papers")


def make_run(root: Path, shards: int, rows: int, words: int, row_group: int, seed: int) -> Path:
    """The synthetic run directory (reused when it exists with the same parameters)."""
    spec = {"shards": shards, "rows": rows, "words": words, "row_group": row_group, "seed": seed}
    marker = root / "spec.json"
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return root / "run"
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(50_000)], dtype=object)
    run = root / "run"
    (run / "curated").mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        lengths = rng.integers(max(1, words // 5), max(2, words * 9 // 5), rows)
        flat = vocab[rng.zipf(1.3, int(lengths.sum())) % len(vocab)]
        ends = np.cumsum(lengths)
        texts = [" ".join(flat[e - n : e]) for n, e in zip(lengths, ends, strict=True)]
        table = pa.table(
            {
                "id": [f"s{s}:{i}" for i in range(rows)],
                "text": texts,
                "source": pa.array(np.array(SOURCES, dtype=object)[rng.integers(0, len(SOURCES), rows)]),
                "quality_score": pa.array(rng.uniform(0, 5, rows).astype(np.float32)),
                "keep": pa.array(rng.uniform(size=rows) < 0.85),
            }
        )
        pq.write_table(table, run / "curated" / f"s{s:03d}.parquet", row_group_size=row_group, compression="zstd")
    (run / "config.resolved.yaml").write_text("winnow_version: bench\nconfig_hash: bench\n")
    marker.write_text(json.dumps(spec))
    (run / PLAN_FILE).unlink(missing_ok=True)
    return run


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/winnow_bench_loader")
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--rows", type=int, default=65_536, help="documents per shard")
    ap.add_argument("--words", type=int, default=100, help="mean words per document")
    ap.add_argument("--row-group", type=int, default=16_384)
    ap.add_argument("--epochs", type=float, default=1.5, help="budget / kept tokens")
    ap.add_argument("--n", type=int, default=1_000_000, help="documents to iterate")
    ap.add_argument("--world-size", type=int, default=1, help="iterate as rank 0 of this many ranks")
    ap.add_argument("--seq-len", type=int, default=0, help="also time packing into sequences of this length")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    t0 = time.perf_counter()
    # in a child process, so that this process's peak memory is the loader's
    spec = (Path(args.workdir), args.shards, args.rows, args.words, args.row_group, args.seed)
    child = multiprocessing.get_context("spawn").Process(target=make_run, args=spec)
    child.start()
    child.join()
    if child.exitcode:
        sys.exit(f"making the synthetic run failed (exit code {child.exitcode})")
    run = Path(args.workdir) / "run"
    made = time.perf_counter() - t0
    if not (run / PLAN_FILE).exists():
        kept_tokens = 0
        for f in sorted((run / "curated").glob("*.parquet")):
            t = pq.read_table(f, columns=["text", "keep"])
            import polars as pl

            df = pl.from_arrow(t)
            kept_tokens += int(df.filter(pl.col("keep")).select(pl.col("text").str.count_matches(r"\S+").sum()).item())
        mix = MixSection.model_validate(
            {
                "budget_tokens": int(kept_tokens * args.epochs),
                "pools": {"quality": "quantiles", "n_buckets": 4, "domain": "source"},
                "upsample": {"domains": ["code"], "fraction": 0.2, "factor": 2.0},
                "max_repeats": 64,
                # equal law parameters per bucket: the law then keeps every bucket (16 pools)
                "law": {"a": 1.0, "buckets": {f"q{i}": {"b": -0.1, "tau": 5.0} for i in range(1, 5)}},
            }
        )
        write_plan(str(run), build_plan(str(run), mix, seed=args.seed))
    plan = json.loads((run / PLAN_FILE).read_text())
    chosen = [p for p in plan["pools"] if p["tokens"] > 0]

    rss0 = rss_mib()
    t0 = time.perf_counter()
    ds = MixtureDataset(str(run), rank=0, world_size=args.world_size, check_version=False)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_total = ds.num_samples
    t_sched = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_order = sum(1 for _ in zip(range(args.n * args.world_size), ds.global_order(), strict=False))
    t_order = time.perf_counter() - t0

    t0 = time.perf_counter()
    it = iter(ds)
    first = next(it)
    t_first = time.perf_counter() - t0
    n = 1
    chars = len(first["text"])
    for row in it:
        n += 1
        chars += len(row["text"])
        if n >= args.n:
            break
    t_docs = time.perf_counter() - t0
    stats = ds.reader_stats
    res = {
        "bench": "loader",
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "shards": args.shards,
        "rows": args.shards * args.rows,
        "row_group": args.row_group,
        "mean_words": args.words,
        "pools": len(chosen),
        "budget_tokens": plan["budget"]["tokens"],
        "epoch_samples": n_total,
        "world_size": args.world_size,
        "make_s": made,
        "index_s": t_index,
        "schedule_s": t_sched,
        "order_per_s": n_order / t_order,
        "first_doc_s": t_first,
        "docs": n,
        "docs_s": t_docs,
        "docs_per_s": n / t_docs,
        "mb_text_per_s": chars / t_docs / 1e6,
        "row_groups_read": stats.get("row_groups_read"),
        "row_groups_total": int(sum(pq.ParquetFile(run / s["path"]).num_row_groups for s in plan["shards"])),
        "decoded_mb": stats.get("bytes_read", 0) / 1e6,
        "rss_before_mib": rss0,
        "peak_rss_mib": rss_mib(),
    }
    late = MixtureDataset(str(run), rank=0, world_size=args.world_size, check_version=False)
    t0 = time.perf_counter()
    late.load_state_dict(late.state_for(int(n_total * 0.9) // args.world_size * args.world_size))
    next(iter(late))
    res["resume_first_doc_s"] = time.perf_counter() - t0
    if args.seq_len:
        ws = MixtureDataset(
            str(run), rank=0, world_size=args.world_size, check_version=False, tokenizer=lambda t: [len(w) for w in
            t.split()], seq_len=args.seq_len, eos_token_id=0,
        )  # fmt: skip
        t0 = time.perf_counter()
        seqs = 0
        for _ in ws:
            seqs += 1
            if seqs * args.seq_len >= n * args.words:
                break
        secs = time.perf_counter() - t0
        res.update(packed_seq_len=args.seq_len, packed_tokens_per_s=seqs * args.seq_len / secs)
    print("| measure | value |\n|---|---:|")
    for k in ("rows", "pools", "epoch_samples", "world_size", "index_s", "schedule_s", "order_per_s", "first_doc_s",
              "docs", "docs_per_s", "mb_text_per_s", "row_groups_read", "row_groups_total", "decoded_mb",
              "rss_before_mib", "peak_rss_mib", "resume_first_doc_s", "packed_tokens_per_s"):  # fmt: skip
        if k in res:
            v = res[k]
            print(f"| {k} | {v:,.3f} |" if isinstance(v, float) else f"| {k} | {v:,} |")
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
