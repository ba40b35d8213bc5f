"""Benchmark: winnow's fused rule filters against datatrove's own (Gopher repetition, Gopher quality, C4 quality,
FineWeb quality; ``winnow.scorers.rules``), on the same documents in one process on one core.

For each implementation it times every filter alone (the others disabled) and the chain of the four (a document
stops at its first failing filter), in CPU seconds of this process so that other work on a shared machine does not
skew the ratio (wall-clock rates go in the JSON too), then compares the decisions: per filter, keep/drop and the
reason; for the chain, keep/drop and ``(rule, detail)``. Every disagreement is listed with both verdicts.

    python bench/prefilter_rules.py --input '../shared/data/nltk_data/*.parquet' [--limit 2000] [--json out.jsonl]

``--filters chain`` times and compares the chain only (the per-filter runs take most of the time). ``--limit N``
takes N documents of a fixed shuffle (seed 0), so every source is represented.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from winnow.scorers.rules import RULE_NAMES, RuleFilters, RulesSection  # noqa: E402

BATCH = 256


def load(pattern: str, limit: int | None) -> tuple[list[str], list[str], list[str]]:
    files = sorted(glob.glob(pattern))
    if not files:
        sys.exit(f"no parquet file matches {pattern!r}")
    t = pa.concat_tables([pq.read_table(f, columns=["id", "text", "source"]) for f in files])
    ids, texts, sources = (t.column(c).to_pylist() for c in ("id", "text", "source"))
    order = list(range(len(texts)))
    if limit is not None and limit < len(order):
        random.Random(0).shuffle(order)
        order = sorted(order[:limit])
    return [ids[i] for i in order], [texts[i] for i in order], [sources[i] for i in order]


def run(section: RulesSection, texts: list[str]) -> tuple[list, float, float]:
    """Verdicts, wall seconds and this process's CPU seconds (the fair measure on a shared machine)."""
    filters = RuleFilters(section)
    filters.setup()
    filters.check(texts[:8])  # warm up (spaCy's first calls, numpy)
    t0, c0 = time.perf_counter(), time.process_time()
    out = []
    for i in range(0, len(texts), BATCH):
        out.extend(filters.check(texts[i : i + BATCH]))
    return out, time.perf_counter() - t0, time.process_time() - c0


def keep(v) -> str:
    return "keep" if v is None else "drop"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--input", default=os.path.join(os.path.dirname(__file__), "../../shared/data/nltk_data/*.parquet")
    )
    ap.add_argument("--limit", type=int, default=None, help="documents (a fixed shuffle); all by default")
    ap.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    ap.add_argument(
        "--filters",
        default=",".join((*RULE_NAMES, "chain")),
        help="comma-separated runs among the filter names and 'chain' (all by default)",
    )
    args = ap.parse_args()
    runs = [r for r in (*RULE_NAMES, "chain") if r in args.filters.split(",")]
    if not runs:
        sys.exit(f"--filters names none of {', '.join((*RULE_NAMES, 'chain'))}")

    ids, texts, sources = load(args.input, args.limit)
    n = len(texts)
    words = sum(len(t.split()) for t in texts) / max(n, 1)
    print(f"{n} documents, {words:.0f} whitespace words on average", flush=True)

    res = {"bench": "prefilter_rules", "docs": n, "mean_words": round(words, 1), "python": platform.python_version()}
    verdicts: dict[str, dict[str, list]] = {"datatrove": {}, "fused": {}}
    rows = []
    for name in runs:
        flags = {r: (name in (r, "chain")) for r in RULE_NAMES}
        row = {"filter": name}
        for impl in ("datatrove", "fused"):
            v, secs, cpu = run(RulesSection(implementation=impl, **flags), texts)
            verdicts[impl][name] = v
            row[f"{impl}_docs_s"] = round(n / cpu, 1)
            row[f"{impl}_wall_docs_s"] = round(n / secs, 1)
            row[f"{impl}_dropped"] = sum(x is not None for x in v)
        a, b = verdicts["datatrove"][name], verdicts["fused"][name]
        row["speedup"] = round(row["fused_docs_s"] / row["datatrove_docs_s"], 2)
        row["agree_keep_drop"] = round(sum(keep(x) == keep(y) for x, y in zip(a, b, strict=True)) / n, 5)
        row["agree_verdict"] = round(sum(x == y for x, y in zip(a, b, strict=True)) / n, 5)
        rows.append(row)
        print(
            f"{name:18s} datatrove {row['datatrove_docs_s']:8.1f} docs/s  fused {row['fused_docs_s']:8.1f} docs/s  "
            f"x{row['speedup']:5.2f}  dropped {row['datatrove_dropped']}/{row['fused_dropped']}  "
            f"agree keep/drop {row['agree_keep_drop']:.4%}  verdict {row['agree_verdict']:.4%}",
            flush=True,
        )
    res["filters"] = rows

    print(
        "\n| filter | datatrove docs/CPU-s | fused docs/CPU-s | speed-up | dropped (dt/fused) | agree keep/drop ",
        end="",
    )
    print("| agree reason |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['filter']} | {r['datatrove_docs_s']:.1f} | {r['fused_docs_s']:.1f} | {r['speedup']:.2f}x | "
            f"{r['datatrove_dropped']}/{r['fused_dropped']} | {r['agree_keep_drop']:.2%} | {r['agree_verdict']:.2%} |"
        )

    reasons: dict[str, int] = {}
    for v in verdicts["datatrove"].get("chain", []):
        key = "kept" if v is None else f"{v[0]}:{v[1]}"
        reasons[key] = reasons.get(key, 0) + 1
    res["datatrove_chain_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    print("\ndatatrove chain verdicts:", json.dumps(res["datatrove_chain_reasons"]))

    disagreements = []
    for name in runs:
        a, b = verdicts["datatrove"][name], verdicts["fused"][name]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                disagreements.append({"filter": name, "id": ids[i], "source": sources[i], "datatrove": x, "fused": y})
    res["disagreements"] = disagreements
    print(f"\n{len(disagreements)} disagreements")
    for d in disagreements:
        print(f"  [{d['filter']}] {d['id']} ({d['source']}): datatrove {d['datatrove']}  fused {d['fused']}")

    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
