"""Benchmark: the measured pruning curve (proxy LM) beside the predicted one, on a real run (issue #7).

Needs a run directory with embeddings, clusters, SemDeDup and quality scores, e.g. the nltk_data corpus:

    winnow run -c configs/quickstart.yaml -i ../shared/data/nltk_data --output /tmp/nltkrun \\
        --set cluster.k=50 --set io.read_batch_size=2048 --set run.name=nltk
    python bench/report_proxy.py --run /tmp/nltkrun --strategies random,quality --fractions 0.02,0.05,0.1,0.3,1 \\
        --proxy-tokens 2000000 --repeats 3 --domain domain --eval clean_reference.parquet \\
        --out bench/out/report_proxy.jsonl

It calls :func:`winnow.pipeline.report.build.build_report` with ``--proxy lm`` for the given strategies and
fractions (so
``<run>/report/`` is rewritten with them) and prints a markdown table of the measured ``proxy_loss`` beside the
law's ``predicted_error`` and the kept set's statistics. ``--out`` appends the result as one JSON line (settings,
machine, per-point rows, the law fit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from winnow.pipeline.report.proxy_lm import ProxyConfig  # noqa: E402
from winnow.pipeline.report.report import build_report  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run directory (winnow run output)")
    ap.add_argument("--strategies", default="random,quality")
    ap.add_argument("--fractions", default="0.02,0.05,0.1,0.3,1")
    ap.add_argument("--preset", default="tiny", help="proxy preset (tiny, small); the flags below override it")
    ap.add_argument("--tokenizer", default="bpe", help="bpe (trained on the run's text), bytes, or a tokenizer.json")
    ap.add_argument("--vocab", type=int, default=None, help="BPE vocabulary (default: the preset's)")
    ap.add_argument("--eval", action="append", default=[], help="evaluation shard (repeatable; the first is primary)")
    ap.add_argument("--proxy-tokens", type=int, default=None)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--d-model", type=int, default=None)
    ap.add_argument("--context", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domain", default="auto", help="domain column of the report (auto, or e.g. domain)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per point (seeds seed, seed+1, ...), averaged")
    ap.add_argument("--out", default=None, help="append the result as a JSON line to this file")
    args = ap.parse_args(argv)

    import torch

    proxy = ProxyConfig.from_preset(
        args.preset, tokens=args.proxy_tokens, layers=args.layers, d_model=args.d_model, context=args.context,
        batch_size=args.batch_size, threads=args.threads, seed=args.seed, repeats=args.repeats,
        tokenizer=args.tokenizer, vocab_size=args.vocab, evals=tuple(args.eval),
    )  # fmt: skip
    strategies = [s for s in args.strategies.split(",") if s]
    fractions = [float(x) for x in args.fractions.split(",") if x]
    t0 = time.perf_counter()
    report = build_report(args.run, fractions=fractions, strategies=strategies, proxy=proxy, domain=args.domain)
    seconds = time.perf_counter() - t0
    c = report.curves
    cols = ["strategy", "keep_fraction", "n_kept", "tokens_kept", "mean_quality_score", "domain_entropy",
            "dup_rate", "proxy_pool_tokens", "proxy_epochs", "proxy_loss", "proxy_loss_se", "proxy_bpb",
            "predicted_error"]  # fmt: skip
    print(f"proxy LM ({proxy.preset}, tokenizer {proxy.tokenizer}, loss on {c['proxy_eval'][0]}, nats/token): "
          f"{proxy.layers} layers, d={proxy.d_model}, context {proxy.context}, vocabulary {c['proxy_vocab'][0]:,}, "
          f"{int(c['proxy_params'].max()):,} parameters, {proxy.tokens_trained:,} training tokens per point, "
          f"seeds {proxy.seed}..{proxy.seed + proxy.repeats - 1}; {seconds:,.0f} s in all on "
          f"{os.cpu_count()} CPU(s)\n")  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|")
    for r in c.iter_rows(named=True):
        cells = []
        for k in cols:
            v = r[k]
            if isinstance(v, float):
                exact = k in ("proxy_loss", "proxy_loss_se", "proxy_bpb", "predicted_error", "dup_rate")
                cells.append(f"{v:.4f}" if exact else f"{v:,.3g}")
            elif isinstance(v, int):
                cells.append(f"{v:,}")
            else:
                cells.append(str(v))
        print("| " + " | ".join(cells) + " |")
    if report.fit:
        p = report.fit["params"]
        pools = ", ".join(f"{q['name']}: b={q['b']:.3g}, tau={q['tau']:.3g}" for q in p["pools"])
        train, held = report.fit["train_rel_error"], report.fit["heldout_rel_error"]
        print(f"\nGoyal fit to the checkpoints: a={p['a']:.3g}, d={p['d']:.3g}; {pools}; mean relative error "
              f"train {train:.3g}, held-out {held:.3g}")  # fmt: skip
    for n in report.notes:
        print(f"note: {n}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        record = {
            "bench": "report_proxy",
            "run": args.run,
            "proxy": proxy.to_dict(),
            "seconds": seconds,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
            "rows": c.to_dicts(),
            "fit": report.fit,
        }
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
