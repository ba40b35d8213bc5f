"""Benchmark: does pruning buy a better model? Planted junk, four strategies, a proxy LM on clean held-out text (#16).

The corpus: real clean English documents of the public nltk_data text (ABC news, Brown, Penn Treebank WSJ, the
inaugural and State of the Union addresses, patient leaflets), cut into passages of 60 to 250 words at sentence
ends, with planted junk at known rates (``--rates``), each row's truth in ``junk_kind``:

* ``boilerplate``: templated web boilerplate and spam (navigation bars, cookie banners, "BUY NOW" ads, SEO keyword
  lists), lines drawn from fixed templates with random slot fillers;
* ``noise``: machine-generated noise (base64 blobs, hashes, tracking URLs, random letters with mojibake, number
  tables), every character drawn fresh;
* ``word_salad``: a clean passage (one not otherwise in the corpus) with its words in a random order;
* ``exact_dup``: a copy of a clean passage of the corpus (new id);
* ``near_dup``: a copy with about 8% of its words dropped or swapped and a dateline in front.

Passages of a held-out set of whole source documents (never in the corpus, nor copied, near-copied or shuffled into
it; ``eval_shingles_in_corpus`` in corpus.json is the share of their word 8-grams found in the corpus) are the
evaluation shard, each source filling its share of the clean passages (``eval_by_source``); each source's part is
also a separate ``--eval`` set, reported per source. The bench runs
``winnow run`` (configs/quickstart.yaml: the bundled MiniLM embedder, k-means, SemDeDup, the heuristic DataMan
rater) and ``winnow report --proxy lm --eval <heldout> --domain junk_kind`` for random, semdedup, dbp and quality
at the keep fractions, through the CLI, then prints strategy × keep fraction × eval loss (nats/token of the report's
BPE, mean ± standard error over the seeds), the difference from random in standard errors, and the planted junk's
share of the kept documents.

The CPU proxy has one layer: on 2 cores a 2-layer model gets a few hundred steps and whether and when it leaves its
loss plateau (seed- and data-dependent: at 800k tokens its loss spread over 5.2-5.8 nats/token between seeds, and
with templated boilerplate added to the clean text it left earlier in 2 of 3 seeds) decides the loss more than the
kept set's quality does (RESULTS.md). A 1-layer model has no such jump (seed standard deviation mostly under 0.02).

    python bench/value.py                      # CPU preset (2 cores: about 20 minutes)
    python bench/value.py --preset gpu --json bench/out/value.json

Options that change the corpus or the proxy are listed by ``--help``; ``--keep`` reuses the work folder's corpus and
run (only the report is redone).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
NLTK = Path(os.environ.get("WINNOW_NLTK_DATA", ROOT.parent / "shared" / "data" / "nltk_data"))
#: Clean English sources of nltk_data (edited, published prose; ``quality_label == "clean"``).
CLEAN_SOURCES = ("abc", "brown", "treebank", "inaugural", "state_union", "pil")
KINDS = ("clean", "boilerplate", "noise", "word_salad", "exact_dup", "near_dup")
STRATEGIES = ("random", "semdedup", "dbp", "dbp_quality", "quality")

PRESETS = {
    # 2 CPU cores, one torch thread for the proxy; see RESULTS.md for the measured wall time. One layer: for a 2-layer
    # model this short-trained, when it leaves its loss plateau (seed- and data-dependent) decides the loss
    "cpu": {"clean": 1500, "eval_docs": 250, "fractions": "0.2,0.35,0.5", "repeats": 3,
            "proxy": ["--proxy-preset", "tiny", "--proxy-tokens", "300000", "--proxy-layers", "1",
                      "--proxy-d-model", "96", "--proxy-context", "64", "--proxy-batch", "16", "--proxy-vocab", "2048",
                      "--proxy-eval-tokens", "16384", "--proxy-lr", "5e-3"]},
    # one GPU: a bigger corpus and the small (~23M-parameter) proxy
    "gpu": {"clean": 6000, "eval_docs": 600, "fractions": "0.1,0.2,0.35,0.5,0.75", "repeats": 3,
            "proxy": ["--proxy-preset", "small", "--proxy-tokens", "5000000", "--proxy-device", "cuda"]},
}  # fmt: skip

# ------------------------------------------------------------------------------------------------------------
# junk generators
# ------------------------------------------------------------------------------------------------------------
PRODUCTS = [
    "cheap flights",
    "weight loss pills",
    "car insurance",
    "phone cases",
    "designer watches",
    "vitamins",
    "web hosting",
    "payday loans",
    "running shoes",
    "LED lights",
    "garden furniture",
    "casino bonus",
    "crypto wallet",
    "dating app",
    "printer ink",
    "hair extensions",
    "gaming laptop",
    "protein powder",
]
BRANDS = ["BestDealz", "MegaStore Online", "ShopNow24", "SuperSaver Inc.", "TopPicks Ltd", "ClickMart", "DealHub"]
CITIES = ["New York", "Los Angeles", "Chicago", "Houston", "Miami", "Dallas", "Seattle", "Boston", "Denver"]
CATEGORIES = ["Electronics", "Health & Beauty", "Home & Garden", "Finance", "Travel", "Sports", "Deals"]
TEMPLATES = [
    "Click here to subscribe to our newsletter and get {pct}% off your first order!",
    "Copyright © {year} {brand}. All rights reserved.",
    "Privacy Policy | Terms of Use | Cookie Settings | Contact Us | Sitemap",
    "BUY {product} NOW at the LOWEST PRICE!!! Only ${price} - limited time offer!!!",
    "Call {phone} today or visit {url} for a FREE quote.",
    "Home > {category} > {product} > Compare prices",
    "Sign up | Log in | Forgot your password? | My account | Cart (0)",
    "Best {product} in {city}! cheap {product}, discount {product}, {product} deals, {product} online, buy {product}",
    "This website uses cookies to improve your experience. Accept all cookies? Yes / No / Manage preferences",
    "Share on Facebook | Tweet | Pin it | Email this page | Print",
    "Customers who bought {product} also bought {product2} and {product3}.",
    "FREE shipping on orders over ${price}!!! Hurry, offer ends {day}!",
    "Posted by admin on {date} | {n} comments | Read more >>",
    "Make ${price} a day working from home! No experience needed. Click here >>>",
    "Hot singles in {city} are waiting for you. Join FREE today!!!",
    "{brand} - #1 for {product} since {year}. Rated {stars}/5 by {n} customers.",
    "Tags: {product}, {product2}, {product3}, {category}, sale, cheap, best price, free shipping",
    "ACT NOW!!! {pct}% OFF ALL {product} - use code SAVE{pct} at checkout",
    "Related posts: Top 10 {product} of {year} | {product2} review | Why {product3} is trending",
    "You are here: Home / {category} / {product}",
]  # fmt: skip
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "midnight", "today"]


def boilerplate(rng: np.random.Generator) -> str:
    """A page of templated boilerplate and spam: 8 to 20 template lines with random fillers."""
    lines = []
    for _ in range(int(rng.integers(8, 21))):
        p = rng.choice(PRODUCTS, 3, replace=False)
        lines.append(
            str(rng.choice(TEMPLATES)).format(
                pct=int(rng.choice([10, 15, 20, 25, 30, 50, 70])),
                year=int(rng.integers(2005, 2025)),
                brand=rng.choice(BRANDS),
                product=p[0],
                product2=p[1],
                product3=p[2],
                price=int(rng.integers(5, 500)),
                phone=f"1-800-{int(rng.integers(100, 999))}-{int(rng.integers(1000, 9999))}",
                url=f"www.{str(rng.choice(BRANDS)).lower().replace(' ', '').replace('.', '')}.com",
                category=rng.choice(CATEGORIES),
                city=rng.choice(CITIES),
                day=rng.choice(DAYS),
                date=f"{int(rng.integers(1, 29))}/{int(rng.integers(1, 13))}/{int(rng.integers(2005, 2025))}",
                n=int(rng.integers(0, 999)),
                stars=f"{rng.uniform(3.5, 5):.1f}",
            )  # fmt: skip
        )
    return "\n".join(lines)


ALNUM = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
HEX = np.array(list("0123456789abcdef"))
B64 = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"))
#: Latin-1 readings of UTF-8 bytes (mojibake) and symbols seen in broken scrapes.
GARBLE = np.array(["Ã©", "Ã¨", "â€™", "â€œ", "â€\x9d", "Ã¼", "Ã¶", "Â", "ï»¿", "Ã±", "â€“", "Ã§", "�", "Ã¤", "Ã"])


def _chars(rng: np.random.Generator, alphabet: np.ndarray, lo: int, hi: int) -> str:
    return "".join(rng.choice(alphabet, int(rng.integers(lo, hi))))


def noise(rng: np.random.Generator) -> str:
    """A page of machine-generated noise: encoded blobs, hashes, tracking URLs, garbled characters, number tables.

    Every character is drawn fresh, so there is nothing to learn from it and nothing repeats within a page (unlike
    templated boilerplate, see RESULTS.md).
    """
    lines = []
    for _ in range(int(rng.integers(6, 14))):
        kind = int(rng.integers(0, 5))
        if kind == 0:  # an encoded blob
            lines.append(_chars(rng, B64, 60, 160) + "==")
        elif kind == 1:  # hashes and ids
            lines.append(" ".join(_chars(rng, HEX, 8, 41) for _ in range(int(rng.integers(3, 8)))))
        elif kind == 2:  # a tracking URL
            q = "&".join(
                f"{_chars(rng, ALNUM, 2, 6)}={_chars(rng, ALNUM, 4, 16)}" for _ in range(int(rng.integers(3, 7)))
            )
            lines.append(f"https://{_chars(rng, ALNUM, 4, 10).lower()}.{rng.choice(['com', 'net', 'io', 'xyz'])}/"
                         f"{_chars(rng, ALNUM, 6, 20)}?{q}")  # fmt: skip
        elif kind == 3:  # garbled text: random letters and mojibake
            lines.append(" ".join(_chars(rng, ALNUM, 1, 9) + (str(rng.choice(GARBLE)) if rng.random() < 0.4 else "")
                                  for _ in range(int(rng.integers(8, 20)))))  # fmt: skip
        else:  # a table of numbers
            lines.append(" | ".join(f"{rng.uniform(-1e4, 1e4):.{int(rng.integers(0, 5))}f}"
                                    for _ in range(int(rng.integers(4, 10)))))  # fmt: skip
    return "\n".join(lines)


def word_salad(text: str, rng: np.random.Generator) -> str:
    """The passage's words in a random order."""
    words = text.split()
    return " ".join(words[i] for i in rng.permutation(len(words)))


def near_dup(text: str, rng: np.random.Generator) -> str:
    """A copy with about 8% of the words dropped or swapped with a neighbour, and a dateline in front."""
    words = text.split()
    out: list[str] = []
    for w in words:
        u = rng.random()
        if u < 0.04:
            continue
        if u < 0.08 and out:
            out[-1], w = w, out[-1]
        out.append(w)
    dateline = f"{rng.choice(CITIES).upper()}, {rng.choice(DAYS[:7])} (staff report) -"
    return dateline + " " + " ".join(out)


# ------------------------------------------------------------------------------------------------------------
# the corpus
# ------------------------------------------------------------------------------------------------------------
def passages(text: str, lo: int = 60, hi: int = 250) -> list[str]:
    """Cut a document into passages of ``lo``..``hi`` words at sentence ends (a shorter tail is dropped)."""
    sents = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    out, cur, n = [], [], 0
    for s in sents:
        k = len(s.split())
        if n and n + k > hi:
            if n >= lo:
                out.append(" ".join(cur))
            cur, n = [], 0
        cur.append(s)
        n += k
    if n >= lo:
        out.append(" ".join(cur))
    return [p for p in out if len(p.split()) <= 2 * hi]


def clean_passages() -> pl.DataFrame:
    """``parent, source, text`` of every passage of the clean English sources."""
    rows = []
    for name in CLEAN_SOURCES:
        f = pl.read_parquet(NLTK / f"{name}.parquet").filter(
            (pl.col("quality_label") == "clean") & (pl.col("lang") == "en")
        )
        for r in f.iter_rows(named=True):
            parent = r["parent_id"] or r["id"]
            rows += [{"parent": parent, "source": name, "text": p} for p in passages(r["text"])]
    return pl.DataFrame(rows)


def build_corpus(folder: Path, n_clean: int, rates: dict[str, float], eval_docs: int, seed: int) -> dict:
    """Write ``folder/corpus/`` (4 parquet shards) and ``folder/heldout.parquet``; return the counts.

    ``rates`` are each junk kind's share of the whole corpus (the rest is clean): n = n_clean / (1 - sum(rates)).
    Evaluation passages come from whole source documents kept out of the corpus (no passage of their documents is
    trained on); word salad is made from passages outside both.
    """
    rng = np.random.default_rng(seed)
    pas = clean_passages()
    parents = pas["parent"].unique(maintain_order=True).to_list()
    rng.shuffle(parents)
    # whole documents into the evaluation set, each source up to its share of the clean passages (a source of long
    # documents, e.g. the patient leaflets, would otherwise fill it: 32% of it where the corpus has 15%)
    share = dict(pas.group_by("source").len().with_columns(pl.col("len") / pas.height).iter_rows())
    target = {k: max(1, round(v * eval_docs)) for k, v in share.items()}
    by_parent = dict(pas.group_by("parent", maintain_order=True).agg("source", "text").select(
        "parent", pl.struct(pl.col("source").list.first(), "text")).iter_rows())  # fmt: skip
    held_parents, held, held_src, have = set(), [], [], dict.fromkeys(target, 0)
    for p in parents:
        src, txt = by_parent[p]["source"], by_parent[p]["text"]
        if have[src] >= target[src]:
            continue
        held_parents.add(p)
        held += txt
        held_src += [src] * len(txt)
        have[src] += len(txt)
    rest = pas.filter(~pl.col("parent").is_in(list(held_parents)))
    order = rng.permutation(rest.height)
    n_total = round(n_clean / (1.0 - sum(rates.values())))
    counts = {k: round(rates.get(k, 0.0) * n_total) for k in KINDS[1:]}
    need = n_clean + counts["word_salad"]
    if need > rest.height:
        raise SystemExit(f"only {rest.height} clean passages outside the evaluation set; {need} needed")
    clean = rest[order[:n_clean].tolist()]
    salad_src = rest[order[n_clean:need].tolist()]["text"].to_list()
    texts = clean["text"].to_list()
    rows = [{"text": t, "junk_kind": "clean", "source": s} for t, s in zip(texts, clean["source"], strict=True)]
    rows += [
        {"text": boilerplate(rng), "junk_kind": "boilerplate", "source": "web"} for _ in range(counts["boilerplate"])
    ]
    rows += [{"text": noise(rng), "junk_kind": "noise", "source": "web"} for _ in range(counts["noise"])]
    rows += [{"text": word_salad(t, rng), "junk_kind": "word_salad", "source": "web"} for t in salad_src]
    dup_of = rng.choice(len(texts), counts["exact_dup"] + counts["near_dup"], replace=True)
    rows += [{"text": texts[i], "junk_kind": "exact_dup", "source": "web"} for i in dup_of[: counts["exact_dup"]]]
    rows += [{"text": near_dup(texts[i], rng), "junk_kind": "near_dup", "source": "web"}
             for i in dup_of[counts["exact_dup"] :]]  # fmt: skip
    frame = pl.DataFrame(rows)[rng.permutation(len(rows)).tolist()]
    frame = frame.with_columns(pl.format("doc-{}", pl.int_range(pl.len())).alias("id")).select(
        "id", "text", "junk_kind", "source"
    )
    corpus = folder / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(frame.height), 4)):
        frame[part.tolist()].write_parquet(corpus / f"part{k}.parquet")
    ev = pl.DataFrame({"id": [f"eval-{i}" for i in range(len(held))], "text": held, "source": held_src})
    ev.write_parquet(folder / "heldout.parquet")
    (folder / "by_source").mkdir(exist_ok=True)
    for (src,), part in ev.group_by("source"):
        part.write_parquet(folder / "by_source" / f"eval_{src}.parquet")
    return {"documents": frame.height, "by_kind": dict(frame["junk_kind"].value_counts().iter_rows()),
            "eval_documents": len(held), "eval_by_source": dict(sorted(have.items())),
            "eval_shingles_in_corpus": shared_shingles(held, frame["text"].to_list()),
            "words": int(frame["text"].str.split(" ").list.len().sum())}  # fmt: skip


def shared_shingles(evals: list[str], corpus: list[str], n: int = 8) -> float:
    """Share of the evaluation passages' word ``n``-grams that occur anywhere in the corpus (the leak check: near
    zero, since no passage, copy or word salad of a held-out document is in the corpus; stock phrases remain)."""

    def grams(t: str) -> set[tuple[str, ...]]:
        w = t.lower().split()
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    seen = set().union(*(grams(t) for t in corpus))
    ev = [g for t in evals for g in grams(t)]
    return sum(g in seen for g in ev) / max(1, len(ev))


# ------------------------------------------------------------------------------------------------------------
# run, report, table
# ------------------------------------------------------------------------------------------------------------
def winnow(*args: str) -> float:
    """Run the winnow CLI; its wall time in seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "winnow", *args], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def junk_share(folder: Path) -> pl.DataFrame:
    """``strategy, keep_fraction, junk_share`` and each kind's kept share, from the report's domain_share.csv."""
    ds = pl.read_csv(folder / "run" / "report" / "domain_share.csv")
    kept = ds.group_by("strategy", "keep_fraction").agg(
        (pl.col("kept").filter(pl.col("domain") != "clean").sum() / pl.col("kept").sum()).alias("junk_share"),
        *[pl.col("kept_share").filter(pl.col("domain") == k).first().alias(f"kept_{k}") for k in KINDS],
    )
    return kept


def table(folder: Path) -> pl.DataFrame:
    """Per point: eval loss mean ± se, bits/byte, the difference from random in standard errors, junk share."""
    c = pl.read_csv(folder / "run" / "report" / "pruning_curves.csv")
    c = c.select("strategy", "keep_fraction", "n_kept", loss="proxy_loss", se="proxy_loss_se", bpb="proxy_bpb")
    rnd = c.filter(pl.col("strategy") == "random").select("keep_fraction", r_loss="loss", r_se="se")
    c = c.join(rnd, on="keep_fraction", how="left").with_columns(
        z_vs_random=(pl.col("r_loss") - pl.col("loss")) / (pl.col("se") ** 2 + pl.col("r_se") ** 2).sqrt()
    )
    c = c.join(junk_share(folder), on=["strategy", "keep_fraction"], how="left")
    return c.drop("r_loss", "r_se").sort("keep_fraction", "strategy")


def by_source(folder: Path) -> str:
    """Markdown: strategy × keep × each held-out source's eval loss (the ``--eval`` sets ``eval_<source>``)."""
    c = pl.read_csv(folder / "run" / "report" / "pruning_curves.csv").sort("keep_fraction", "strategy")
    cols = sorted(x for x in c.columns if x.startswith("eval_eval_") and x.endswith("_loss"))
    names = [x[len("eval_eval_") : -len("_loss")] for x in cols]
    lines = ["| strategy | keep | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for r in c.iter_rows(named=True):
        lines.append(f"| {r['strategy']} | {r['keep_fraction']:g} | " + " | ".join(f"{r[x]:.3f}" for x in cols) + " |")
    return "\n".join(lines)


def markdown(t: pl.DataFrame) -> str:
    head = "| strategy | keep | docs | eval loss (nats/token) | bits/byte | Δ vs random (SE) | junk kept | "
    head += " | ".join(f"{k} kept" for k in KINDS) + " |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(KINDS)]
    for r in t.iter_rows(named=True):
        z = "-" if r["strategy"] == "random" or r["z_vs_random"] is None else f"{r['z_vs_random']:+.1f}"
        kinds = " | ".join(f"{r[f'kept_{k}']:.0%}" if r[f"kept_{k}"] is not None else "-" for k in KINDS)
        lines.append(f"| {r['strategy']} | {r['keep_fraction']:g} | {r['n_kept']:,} | {r['loss']:.4f} ± "
                     f"{r['se']:.4f} | {r['bpb']:.4f} | {z} | {r['junk_share']:.1%} | {kinds} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--work", default=str(ROOT / "bench" / "out" / "value"), help="work folder (corpus, run)")
    ap.add_argument("--clean", type=int, default=None, help="clean passages in the corpus (default: the preset's)")
    ap.add_argument("--rates", default="boilerplate=0.1,noise=0.15,word_salad=0.1,exact_dup=0.05,near_dup=0.05",
                    help="each junk kind's share of the corpus")  # fmt: skip
    ap.add_argument("--eval-docs", type=int, default=None, help="passages of the evaluation set (at least)")
    ap.add_argument("--fractions", default=None)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--repeats", type=int, default=None, help="proxy runs per point (seeds)")
    ap.add_argument("--proxy", default=None, help="extra `winnow report` proxy flags, as one string")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="reuse the work folder's corpus and run")
    ap.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    args = ap.parse_args(argv)
    pre = PRESETS[args.preset]
    folder = Path(args.work)
    rates = {k: float(v) for k, v in (x.split("=") for x in args.rates.split(","))}
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
        info = build_corpus(folder, args.clean or pre["clean"], rates, args.eval_docs or pre["eval_docs"], args.seed)
        (folder / "corpus.json").write_text(json.dumps(info))
        timings["corpus"] = time.perf_counter() - t0
        print(f"corpus: {info}", flush=True)
        timings["winnow_run"] = winnow(
            "run", "-c", "configs/quickstart.yaml", "-i", str(folder / "corpus"), "--output", str(folder / "run"),
            "--set", "cluster.k=24", "--set", "run.name=value", "-q",
        )  # fmt: skip
    info = json.loads((folder / "corpus.json").read_text())
    proxy = pre["proxy"] + (args.proxy.split() if args.proxy else [])
    timings["winnow_report"] = winnow(
        "report", "--run", str(folder / "run"), "--strategies", args.strategies, "--fractions",
        args.fractions or pre["fractions"], "--proxy", "lm", "--eval", str(folder / "heldout.parquet"),
        *[x for p in sorted((folder / "by_source").glob("*.parquet")) for x in ("--eval", str(p))],
        "--domain", "junk_kind", "--proxy-repeats", str(args.repeats or pre["repeats"]), "--seed", str(args.seed),
        *proxy, "-v",
    )  # fmt: skip
    t = table(folder)
    seconds = time.perf_counter() - t0
    print(markdown(t))
    print("\nEval loss per source of the held-out passages (nats/token, mean over the seeds):\n")
    print(by_source(folder))
    print(f"\n{info['documents']:,} documents ({info['by_kind']}), {info['eval_documents']} eval passages; "
          f"{seconds:,.0f} s in all ({', '.join(f'{k} {v:,.0f} s' for k, v in timings.items())}) on "
          f"{os.cpu_count()} CPU(s)")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        record = {"bench": "value", "preset": args.preset, "argv": argv or sys.argv[1:], "corpus": info,
                  "rates": rates, "proxy_flags": proxy, "seconds": seconds, "timings": timings,
                  "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                  "rows": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                           for r in t.to_dicts()]}  # fmt: skip
        with open(args.json, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
