"""Benchmark: ``quality_domain`` (the heuristic rater's DataMan domain) on nltk_data sources with a clear domain.

Ground truth comes from the corpus's own ``source``/``subdomain`` labels (``CLEAR_GROUPS``): eight groups whose
DataMan domain is not in doubt. Fiction may be ``Entertainment`` (stories) or ``Culture`` (literature), bug
titles ``Technology`` or ``Coding``. Each group contributes up to ``--per-group`` documents (a seeded sample);
the headline number is the **macro** accuracy, the mean of the eight per-group accuracies, so movie_reviews'
2,016 documents weigh no more than 19 court transcripts. The non-English Genesis translations are scored
separately (``religion, non-English``: the bundled MiniLM is an English model) and left out of the macro.

Side by side, on the same stored embeddings (the score stage hands the rater stored MiniLM vectors):

- ``descriptions``: one prototype per domain, the mean of its description and keyword-list embeddings (the
  classifier before examples were added);
- ``examples: centroid``: one prototype per domain, the normalised mean of the description, the keyword list and
  the domain's hand-written example texts (``winnow.scorers.domain_examples``, shipped with the package);
- ``examples: max``: the best similarity over a domain's texts (1-nearest neighbour);
- ``examples: top-3 mean``: the mean of a domain's three best similarities;
- ``examples: softmax regression``: a multinomial logistic regression fitted (L-BFGS, L2) on the embeddings of
  the shipped texts;
- ``corpus seeds (not shippable)``: nearest centroid of ``--seeds`` documents per group drawn from the corpus
  outside the evaluation sample, added to the ``examples: centroid`` prototypes. It is an in-distribution upper
  bound for few-shot seeding, not an option: the seeds are the evaluation sources' own text.

``shipped`` is ``DomainClassifier`` as the package runs it (the ``examples: top-3 mean`` option; the two rows
differ only where ``min_similarity`` sends a document to ``Other``). The old check of
``bench/quality.py`` (the share of the unambiguous-source sample, 600 documents, in the expected domain) is
``bench/quality.py``'s ``domain_expected_share``.

    python bench/domains.py --input '../shared/data/nltk_data/*.parquet' --per-group 200 --out bench/out/domains.jsonl

Embeddings are cached in ``bench/out/domains_embeddings.npz`` (by document id; ``--no-cache`` re-embeds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from winnow.embedding.embed import Embedder  # noqa: E402
from winnow.embedding.section import EmbedSection  # noqa: E402
from winnow.scorers.domains import DOMAIN_NAMES, DomainClassifier, labelled_texts, looks_like_code  # noqa: E402

#: group → (accepted DataMan domains, {source: subdomains or None for all})
CLEAR_GROUPS: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...] | None]]] = {
    "medicine (pil)": (("Medicine",), {"pil": None}),
    "government (speeches, govt docs)": (
        ("Government",),
        {"inaugural": None, "state_union": ("state_union",), "brown": ("government",), "masc_tagged": ("govt-docs",)},
    ),
    "film reviews": (("Entertainment",), {"movie_reviews": None}),
    "software bug titles": (("Technology", "Coding"), {"problem_reports": None, "webtext": ("firefox_bug_titles",)}),
    "religion (English)": (
        ("Culture",),
        {
            "genesis": ("genesis_english-kjv", "genesis_english-web", "genesis_lolcat"),
            "brown": ("religion",),
        },
    ),
    "fiction": (
        ("Entertainment", "Culture"),
        {
            "shakespeare": None,
            "brown": ("fiction", "mystery", "science_fiction", "adventure", "romance"),
            "masc_tagged": ("fiction", "ficlets"),
        },
    ),
    "legal (court transcripts)": (("Law",), {"masc_tagged": ("court-transcript",)}),
    "product reviews": (("Retail E-commerce",), {"product_reviews": None}),
}
#: scored and printed, not in the macro: an English model on other languages
EXTRA_GROUPS = {
    "religion, non-English": (
        ("Culture",),
        {"genesis": ("genesis_finnish", "genesis_swedish", "genesis_german", "genesis_french", "genesis_portuguese")},
    ),
}


def select(df: pl.DataFrame, sources: dict[str, tuple[str, ...] | None]) -> np.ndarray:
    mask = np.zeros(len(df), dtype=bool)
    src = df["src"].to_numpy()
    sub = df["subdomain"].to_numpy()
    for s, subs in sources.items():
        mask |= (src == s) & (np.isin(sub, subs) if subs is not None else True)
    return np.flatnonzero(mask)


def embed_cached(embedder: Embedder, ids: list[str], texts: list[str], cache: Path | None) -> np.ndarray:
    have: dict[str, np.ndarray] = {}
    if cache is not None and cache.exists():
        z = np.load(cache, allow_pickle=False)
        have = dict(zip(z["ids"].tolist(), z["emb"], strict=True))
    todo = [i for i, d in enumerate(ids) if d not in have]
    if todo:
        vecs = embedder.encode([texts[i] for i in todo])
        for i, v in zip(todo, vecs, strict=True):
            have[ids[i]] = v
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(have)
            np.savez(cache, ids=np.array(keys), emb=np.stack([have[k] for k in keys]))
    return np.stack([have[d] for d in ids]).astype(np.float32)


def norm(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def softmax_regression(x: np.ndarray, y: np.ndarray, k: int, l2: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (weights ``[d, k]``, bias ``[k]``) by L-BFGS."""
    n, d = x.shape
    onehot = np.eye(k)[y]

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.sum(onehot * np.log(p + 1e-12)) / n + l2 * np.sum(w * w)
        g = (p - onehot) / n
        return loss, np.concatenate([(x.T @ g + 2 * l2 * w).ravel(), g.sum(axis=0)])

    res = minimize(f, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x[: d * k].reshape(d, k), res.x[d * k :]


def main() -> None:  # noqa: C901
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default="../shared/data/nltk_data/*.parquet", help="parquet glob (nltk_data schema)")
    ap.add_argument("--per-group", type=int, default=200, help="documents sampled per group")
    ap.add_argument("--seeds", type=int, default=5, help="corpus seeds per group for the not-shippable upper bound")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--out", default=None, help="append the JSON result to this file")
    args = ap.parse_args()

    df = pl.read_parquet(args.input, columns=["id", "text", "source", "subdomain"])
    df = df.with_columns(pl.col("source").str.split(":").list.last().alias("src"))
    rng = np.random.default_rng(args.seed)
    groups = {**CLEAR_GROUPS, **EXTRA_GROUPS}
    eval_idx: dict[str, np.ndarray] = {}
    seed_idx: dict[str, np.ndarray] = {}
    for g, (_, sources) in groups.items():
        perm = rng.permutation(select(df, sources))
        eval_idx[g] = np.sort(perm[: args.per_group])
        seed_idx[g] = perm[args.per_group : args.per_group + args.seeds]  # empty when the group is small
    all_idx = np.unique(np.concatenate(list(eval_idx.values()) + list(seed_idx.values())))
    ids = df["id"].to_list()
    texts = df["text"].to_list()

    embedder = Embedder(EmbedSection(device=args.device))
    t0 = time.perf_counter()
    cache = None if args.no_cache else Path(__file__).parent / "out" / "domains_embeddings.npz"
    emb_sel = embed_cached(embedder, [ids[i] for i in all_idx], [texts[i] for i in all_idx], cache)
    emb_of = dict(zip(all_idx.tolist(), emb_sel, strict=True))
    print(f"{len(all_idx)} documents embedded or loaded in {time.perf_counter() - t0:.0f}s")

    # the texts each option uses, embedded once
    # every text that stands for a domain (description, keyword list, examples), as the classifier embeds them
    lab_texts, lab_y = labelled_texts()
    lab_vecs = embedder.encode(lab_texts)
    k = len(DOMAIN_NAMES)
    e_desc, e_kw = lab_vecs[:k], lab_vecs[k : 2 * k]
    old_protos = norm(e_desc + e_kw)
    centroids = norm(np.stack([lab_vecs[lab_y == i].mean(axis=0) for i in range(k)]))
    w, b = softmax_regression(lab_vecs, lab_y, k)

    def per_domain(sims: np.ndarray, how: str) -> np.ndarray:  # sims [n, m] against lab_vecs → [n, k]
        out = np.full((sims.shape[0], k), -np.inf, dtype=np.float32)
        for i in range(k):
            s = np.sort(sims[:, lab_y == i], axis=1)[:, ::-1]
            out[:, i] = s[:, 0] if how == "max" else s[:, :3].mean(axis=1)
        return out

    seed_protos = centroids.copy()
    seed_sets: dict[int, list[np.ndarray]] = {}
    for g, (accepted, _) in CLEAR_GROUPS.items():
        if len(seed_idx[g]):
            seed_sets.setdefault(DOMAIN_NAMES.index(accepted[0]), []).extend(emb_of[i] for i in seed_idx[g])
    for i, vs in seed_sets.items():
        seed_protos[i] = norm(centroids[i] * 0.5 + norm(np.mean(vs, axis=0)) * 0.5)

    methods = {
        "descriptions (before)": lambda e: e @ old_protos.T,
        "examples: centroid": lambda e: e @ centroids.T,
        "examples: max": lambda e: per_domain(e @ lab_vecs.T, "max"),
        "examples: top-3 mean": lambda e: per_domain(e @ lab_vecs.T, "top3"),
        "examples: softmax regression": lambda e: e @ w + b,
        "corpus seeds (not shippable)": lambda e: e @ seed_protos.T,
    }
    shipped = DomainClassifier(embedder)

    table: dict[str, dict[str, float]] = {}
    confusions: dict[str, dict[str, int]] = {}
    for name in [*methods, "shipped"]:
        row = {}
        for g, (accepted, _) in groups.items():
            idx = eval_idx[g]
            e = np.stack([emb_of[i] for i in idx])
            gt = [texts[i] for i in idx]
            if name == "shipped":
                got = shipped.classify(gt, e)
            else:
                best = methods[name](e).argmax(axis=1)
                got = ["Coding" if looks_like_code(t) else DOMAIN_NAMES[j] for t, j in zip(gt, best, strict=True)]
            row[g] = float(np.mean([d in accepted for d in got]))
            if name == "shipped":
                confusions[g] = {d: got.count(d) for d in sorted(set(got), key=lambda d: -got.count(d))}
        row["macro"] = float(np.mean([row[g] for g in CLEAR_GROUPS]))
        table[name] = row

    names = list(table)
    print(f"\nper-group accuracy ({args.per_group} documents per group at most; n in the header)\n")
    head = " | ".join(f"{g} (n={len(eval_idx[g])})" for g in groups)
    print(f"| option | {head} | macro |\n|---|" + "---:|" * (len(groups) + 1))
    for name in names:
        cells = " | ".join(f"{table[name][g]:.0%}" for g in groups)
        print(f"| {name} | {cells} | **{table[name]['macro']:.1%}** |")
    print("\nshipped: domains given per group")
    for g, c in confusions.items():
        print(f"- {g}: " + ", ".join(f"{d} {n}" for d, n in c.items()))
    res = {
        "per_group_n": {g: len(eval_idx[g]) for g in groups},
        "accuracy": table,
        "shipped_confusion": confusions,
        "n_prototype_texts": len(lab_texts),
        "seed": args.seed,
    }
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
