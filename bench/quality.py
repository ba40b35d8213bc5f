"""Benchmark: the heuristic quality rater against the clean/noisy labels of the nltk_data corpus, and its domains.

1. ``quality_score`` of every document (``HeuristicRater``, no embeddings needed), then the ROC AUC of the score
   separating ``quality_label == clean`` from ``noisy`` (null labels are left out):
   - overall, and on the two halves of the sources (``dev``: the sources the proxies and weights were tuned
     on; ``holdout``: the others, see ``DEV_SOURCES``);
   - per source: within the source where it has both labels, and one-vs-rest (the source's documents against
     every document of the other label) for every labelled source;
   - without the two Genesis translations whose text is mis-encoded in the source files (Swedish: cp437 bytes;
     Portuguese: UTF-8 read as Latin-1), which the rater marks down for their broken characters although the
     labels call them clean.
2. ``quality_domain`` on a stratified sample (``--embed-sample`` documents, equal shares per source): the
   documents are embedded with the bundled model (slow on CPU) and given their domain (``DomainClassifier``);
   the distribution per source is printed, with the agreement of the keyword fallback. The domain accuracy
   per group of clear-domain sources, and the classifier options compared, are in ``bench/domains.py``.

    python bench/quality.py --input '../shared/data/nltk_data/*.parquet' --embed-sample 600 --out bench/quality.jsonl

Prints markdown tables; ``--out`` appends the JSON result as one line.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from winnow.scorers.domains import keyword_domains  # noqa: E402
from winnow.scorers.heuristic import HeuristicRater  # noqa: E402

#: sources looked at while choosing the proxies, calibrations and weights; the others are held out
DEV_SOURCES = ("abc", "brown", "pil", "shakespeare", "nps_chat", "problem_reports", "switchboard")
#: Genesis translations whose text is mis-encoded in nltk_data (see the module docstring)
MISENCODED = ("genesis_swedish", "genesis_portuguese")
#: sources whose DataMan domain is unambiguous, for a rough check of the domain classifier
EXPECTED_DOMAIN = {
    "pil": ("Medicine",),
    "inaugural": ("Government",),
    "state_union": ("Government",),
    "movie_reviews": ("Entertainment",),
    "problem_reports": ("Technology", "Coding"),
    "genesis": ("Culture",),
}


def load(pattern: str) -> pa.Table:
    files = sorted(glob.glob(pattern))
    if not files:
        sys.exit(f"no parquet file matches {pattern!r}")
    cols = ["id", "text", "quality_label", "source", "subdomain"]
    return pa.concat_tables([pq.read_table(f, columns=cols) for f in files])


def auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default="../shared/data/nltk_data/*.parquet", help="parquet glob (nltk_data schema)")
    ap.add_argument("--embed-sample", type=int, default=600, help="documents embedded for the domain part (0: skip)")
    ap.add_argument("--device", default="auto", help="embedding device: auto, cpu or cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="append the JSON result to this file")
    args = ap.parse_args()

    table = load(args.input)
    texts = table.column("text").to_pylist()
    label = np.array(table.column("quality_label").to_pylist(), dtype=object)
    source = np.array([s.split(":", 1)[-1] for s in table.column("source").to_pylist()], dtype=object)
    sub = np.array(table.column("subdomain").to_pylist(), dtype=object)

    # ---- 1. quality_score on every document
    rater = HeuristicRater(domain="keywords")
    rater.setup()
    t0 = time.perf_counter()
    rated = rater.rate(texts)
    secs = time.perf_counter() - t0
    score = rated.column("quality_score").to_numpy()
    overall = rated.column("quality_overall").to_numpy()
    known = (label == "clean") | (label == "noisy")
    y = (label == "clean").astype(np.int64)
    dev = np.isin(source, DEV_SOURCES)
    mis = np.isin(sub, MISENCODED)
    res: dict = {
        "n_docs": len(texts),
        "n_clean": int((label == "clean").sum()),
        "n_noisy": int((label == "noisy").sum()),
        "rate_seconds": round(secs, 2),
        "docs_per_s": round(len(texts) / secs, 1),
        "auc": auc(y[known], score[known]),
        "auc_dev": auc(y[known & dev], score[known & dev]),
        "auc_holdout": auc(y[known & ~dev], score[known & ~dev]),
        "auc_without_misencoded": auc(y[known & ~mis], score[known & ~mis]),
        "auc_holdout_without_misencoded": auc(y[known & ~dev & ~mis], score[known & ~dev & ~mis]),
        "dev_sources": list(DEV_SOURCES),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(f"rated {len(texts):,} documents in {secs:.1f}s ({res['docs_per_s']:,.0f} docs/s, one process)\n")
    print("| split | clean | noisy | ROC AUC (quality_score, clean vs noisy) |\n|---|---:|---:|---:|")
    for name, k in (
        ("all", known),
        ("dev sources", known & dev),
        ("holdout sources", known & ~dev),
        ("all, without mis-encoded Genesis sv/pt", known & ~mis),
        ("holdout, without mis-encoded Genesis sv/pt", known & ~dev & ~mis),
    ):
        print(f"| {name} | {int((k & (y == 1)).sum())} | {int((k & (y == 0)).sum())} | {fmt(auc(y[k], score[k]))} |")

    clean_all, noisy_all = known & (y == 1), known & (y == 0)
    per_source = []
    print(
        "\n| source | split | clean | noisy | null | mean score clean | mean score noisy | AUC within | "
        "AUC vs other label, all sources | overall 1..5 histogram |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    for s in sorted(set(source)):
        k = source == s
        c, n = k & clean_all, k & noisy_all
        within = auc(y[k & known], score[k & known])
        if c.any() or n.any():
            sel = c | noisy_all if c.any() and not n.any() else n | clean_all if n.any() and not c.any() else None
            # one-vs-rest: this source's labelled docs against all docs of the label it lacks (or, with both
            # labels, its clean docs against all noisy docs and all clean docs against its noisy docs, averaged)
            if sel is None:
                ovr = np.mean(
                    [auc(y[c | noisy_all], score[c | noisy_all]), auc(y[n | clean_all], score[n | clean_all])]
                )
            else:
                ovr = auc(y[sel], score[sel])
        else:
            ovr = None
        hist = np.bincount(overall[k], minlength=6)[1:].tolist()
        row = {
            "source": s,
            "split": "dev" if s in DEV_SOURCES else "holdout",
            "clean": int(c.sum()),
            "noisy": int(n.sum()),
            "null": int((k & ~known).sum()),
            "mean_score_clean": float(score[c].mean()) if c.any() else None,
            "mean_score_noisy": float(score[n].mean()) if n.any() else None,
            "auc_within": within,
            "auc_vs_other_label": None if ovr is None else float(ovr),
            "overall_hist_1_to_5": hist,
        }
        per_source.append(row)
        print(
            f"| {s} | {row['split']} | {row['clean']} | {row['noisy']} | {row['null']} | "
            f"{fmt(row['mean_score_clean'], '.2f')} | {fmt(row['mean_score_noisy'], '.2f')} | {fmt(within)} | "
            f"{fmt(row['auc_vs_other_label'])} | {hist} |"
        )
    res["per_source"] = per_source

    # ---- 2. domains on a stratified sample
    if args.embed_sample > 0:
        from winnow.embedding.embed import Embedder
        from winnow.pipeline.config import EmbedSection

        rng = np.random.default_rng(args.seed)
        sources = sorted(set(source))
        per = max(1, args.embed_sample // len(sources))
        idx = np.concatenate([rng.permutation(np.flatnonzero(source == s))[:per] for s in sources]).astype(np.int64)
        sample = [texts[i] for i in idx]
        embedder = Embedder(EmbedSection(device=args.device))
        t0 = time.perf_counter()
        embedder.setup()
        emb = embedder.encode(sample)
        embed_secs = time.perf_counter() - t0
        drater = HeuristicRater(embedder=embedder)
        drater.setup()
        dom = np.array(drater.rate(sample, emb).column("quality_domain").to_pylist(), dtype=object)
        kw = np.array(keyword_domains(sample), dtype=object)
        res["domain_sample"] = len(sample)
        res["embed_seconds"] = round(embed_secs, 1)
        res["embed_device"] = embedder.device
        res["keyword_agreement"] = float(np.mean(dom == kw))
        print(
            f"\ndomains: {len(sample)} documents ({per} per source) embedded on {embedder.device} in "
            f"{embed_secs:.0f}s (model load included); keyword fallback agrees with the embedding route on "
            f"{res['keyword_agreement']:.0%}\n"
        )
        print("| source | top domains (share of sampled documents) | expected | share expected |\n|---|---|---|---:|")
        dist = {}
        for s in sources:
            k = source[idx] == s
            counts = Counter(dom[k].tolist())
            dist[s] = dict(counts.most_common())
            top = ", ".join(f"{d} {c / k.sum():.0%}" for d, c in counts.most_common(4))
            exp = EXPECTED_DOMAIN.get(s)
            share = float(np.isin(dom[k], exp).mean()) if exp else None
            print(f"| {s} | {top} | {'/'.join(exp) if exp else '–'} | {fmt(share, '.0%')} |")
        res["domain_distribution"] = dist
        exp_mask = np.array([s in EXPECTED_DOMAIN for s in source[idx]])
        hits = np.array([d in EXPECTED_DOMAIN.get(s, ()) for d, s in zip(dom, source[idx], strict=True)])
        res["domain_expected_share"] = float(hits[exp_mask].mean()) if exp_mask.any() else None
        kw_hits = np.array([d in EXPECTED_DOMAIN.get(s, ()) for d, s in zip(kw, source[idx], strict=True)])
        res["domain_expected_share_keywords"] = float(kw_hits[exp_mask].mean()) if exp_mask.any() else None
        print(
            f"\nexpected domain on the unambiguous sources: embeddings {fmt(res['domain_expected_share'], '.0%')}, "
            f"keyword fallback {fmt(res['domain_expected_share_keywords'], '.0%')}"
        )
        overall_dist = Counter(dom.tolist())
        print("overall: " + ", ".join(f"{d} {c}" for d, c in overall_dist.most_common()))

    print()
    print(json.dumps({k: v for k, v in res.items() if k not in ("per_source", "domain_distribution")}, indent=2))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
