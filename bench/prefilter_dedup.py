"""MinHash near-dedup: winnow's stages against datatrove's own pipeline on the same shards, plus recall/precision.

Both sides run datatrove's MinHash steps (signature → buckets → cluster) with the same config (5-grams, 14 bands ×
8 rows, seed 1) over the same parquet shards, one process:

* **datatrove**: ``LocalPipelineExecutor`` with ``ParquetReader`` → ``MinhashDedupSignature`` (one task per shard),
  then ``MinhashDedupBuckets`` (one task per band), then ``MinhashDedupCluster``;
* **winnow**: ``winnow prefilter`` with only MinHash on (lang, rules, exact off): stages read, prefilter (signatures
  per shard) and textdedup (buckets, cluster, survivors, ``textdedup/`` files).

The ground truth is the corpus's own list of near-duplicate pairs (``near_duplicate_pairs.tsv``: every pair with
word-5-gram Jaccard ≥ 0.5): recall over pairs with Jaccard ≥ 0.8, and the flagged pairs with Jaccard < 0.5 (not in the
list) for precision. Both sides must flag the same documents (datatrove's ``.remove`` count = winnow's drops).

    python bench/prefilter_dedup.py --data /work/shared/data/nltk_data --json bench/out/prefilter_dedup.jsonl
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))


def run_datatrove(data: str, work: Path, n_shards: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.utils.hashing import HashConfig

    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1, hash_config=HashConfig(64, "xxhash"))
    times = {}
    t0 = time.perf_counter()
    LocalPipelineExecutor(
        [
            ParquetReader(data, glob_pattern="*.parquet", text_key="text", id_key="id"),
            MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg),
        ],
        tasks=n_shards, workers=1, logging_dir=str(work / "logs1"),
    ).run()  # fmt: skip
    times["signature"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    LocalPipelineExecutor(
        [MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=cfg)],
        tasks=cfg.num_buckets, workers=1, logging_dir=str(work / "logs2"),
    ).run()  # fmt: skip
    times["buckets"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    LocalPipelineExecutor(
        [MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=cfg)],
        tasks=1, workers=1, logging_dir=str(work / "logs3"),
    ).run()  # fmt: skip
    times["cluster"] = time.perf_counter() - t0
    removed = sum(p.stat().st_size // 4 for p in (work / "remove").glob("*.remove"))
    return {"seconds": times, "total_seconds": sum(times.values()), "removed": removed}


def run_winnow(data: str, work: Path) -> tuple[dict, dict[str, str]]:
    from winnow.pipeline.config import load_config
    from winnow.pipeline.runner import run_pipeline

    work.mkdir(parents=True, exist_ok=True)
    cfg_path = work / "winnow.yaml"
    cfg_path.write_text(
        json.dumps(
            {
                "io": {"input": [data], "output": str(work / "run")},
                "prefilter": {
                    "lang": {"enabled": False},
                    "rules": {"enabled": False},
                    "exact": {"enabled": False},
                    "minhash": {"enabled": True, "n_grams": 5, "bands": 14, "rows": 8, "seed": 1},
                },
            }
        )
    )
    cfg = load_config(cfg_path)
    t0 = time.perf_counter()
    result = run_pipeline(cfg, ["read", "prefilter", "textdedup"], progress=False)
    total = time.perf_counter() - t0
    stages = {name: round(s.seconds, 2) for name, s in result.stages.items()}
    removed = result.stages["textdedup"].dropped
    import polars as pl

    member_group: dict[str, str] = {}  # every group member's id -> its group (the survivor's id)
    for path in sorted((work / "run" / "textdedup").glob("*.parquet")):
        stem = path.name.removesuffix(".parquet")
        t = pl.read_parquet(path)
        f = pl.read_parquet(work / "run" / "filters" / f"{stem}.parquet", columns=["id"])
        for pos, g in zip(t["pos"].to_list(), t["dup_group"].to_list(), strict=True):
            member_group[f["id"][pos]] = g
    return {"seconds": stages, "total_seconds": total, "removed": removed}, member_group


def quality(truth_path: Path, member_group: dict[str, str]) -> dict:
    truth = {}
    with truth_path.open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            truth[frozenset((row["id_a"], row["id_b"]))] = float(row["jaccard_5gram"])
    by_group: dict[str, list[str]] = {}
    for doc, g in member_group.items():
        by_group.setdefault(g, []).append(doc)
    flagged = {frozenset(p) for docs in by_group.values() for p in itertools.combinations(sorted(docs), 2)}
    out = {}
    for lo in (0.5, 0.8, 0.9):
        want = [p for p, j in truth.items() if j >= lo]
        out[f"recall_jaccard_ge_{lo}"] = round(sum(p in flagged for p in want) / max(len(want), 1), 4)
        out[f"pairs_jaccard_ge_{lo}"] = len(want)
    below = [p for p in flagged if p not in truth]  # every pair with Jaccard >= 0.5 is in the list
    out["flagged_pairs"] = len(flagged)
    out["flagged_pairs_jaccard_lt_0.5"] = len(below)
    out["precision_jaccard_ge_0.5"] = round(1 - len(below) / max(len(flagged), 1), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data/nltk_data", help="folder of parquet shards (text, id)")
    ap.add_argument("--json", default=None, help="append the result as one JSON line here")
    args = ap.parse_args()
    data = str(Path(args.data).resolve())
    n_shards = len(list(Path(data).glob("*.parquet")))
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        work = Path(tmp)
        import polars as pl

        n_docs = pl.scan_parquet(f"{data}/*.parquet").select(pl.len()).collect().item()
        dt = run_datatrove(data, work / "datatrove", n_shards)
        wn, groups = run_winnow(data, work / "winnow")
        shutil.rmtree(work / "datatrove", ignore_errors=True)
    res = {
        "bench": "prefilter_dedup",
        "docs": n_docs,
        "shards": n_shards,
        "datatrove": dt,
        "winnow": wn,
        "datatrove_docs_per_s": round(n_docs / dt["total_seconds"], 1),
        "winnow_docs_per_s": round(n_docs / wn["total_seconds"], 1),
        "winnow_overhead": round(wn["total_seconds"] / dt["total_seconds"] - 1, 3),
        "same_removed_count": dt["removed"] == wn["removed"],
    }
    truth = Path(data) / "near_duplicate_pairs.tsv"
    if truth.exists():
        res["quality"] = quality(truth, groups)
    from common import emit

    emit(res, args.json)


if __name__ == "__main__":
    main()
