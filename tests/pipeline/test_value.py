"""Does the proxy LM see what pruning buys (issue #16)? A junk-heavy corpus where ``quality`` must beat ``random``.

The corpus is generated here: clean English passages from a small grammar (subjects, verbs, objects and adverbials
joined into two-clause sentences) and, as half of the corpus, junk: the words of clean passages in a random order
without punctuation (word salad) and templated web boilerplate. The run goes through the real stages (a stand-in
embedder: a seeded vector per text; the heuristic rater with keyword domains), then ``build_report`` trains the
proxy LM on each strategy's kept half and evaluates it on a separate clean shard (``evals``). The heuristic rater
ranks the junk low, so ``quality`` at keep 0.5 trains on clean text only while ``random`` trains on half junk: its
clean-text loss must be worse by more than 3 standard errors of the difference (3 seeds each).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.pipeline.config import load_config
from winnow.pipeline.report.proxy_lm import ProxyConfig
from winnow.pipeline.report.report import build_report
from winnow.pipeline.runner import run_pipeline

_spec = importlib.util.spec_from_file_location("value_bench", Path(__file__).parents[2] / "bench" / "value.py")
value_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(value_bench)

SUBJECTS = [
    "the farmer",
    "the teacher",
    "a young doctor",
    "the old fisherman",
    "my neighbour",
    "the council",
    "a small company",
    "the scientist",
    "the children",
    "our team",
    "the new mayor",
    "a local baker",
]
VERBS = ["visited", "described", "repaired", "studied", "sold", "painted", "measured", "found", "opened", "built"]
OBJECTS = [
    "the wooden bridge",
    "a new school",
    "the river valley",
    "an old map",
    "the village market",
    "a quiet garden",
    "the stone church",
    "the harbour wall",
    "a long report",
    "the empty station",
]
ADVERBIALS = [
    "near the harbour",
    "before the winter",
    "after the long meeting",
    "in the northern town",
    "during the storm",
    "with great care",
    "for the first time",
    "on a cold morning",
]
LINKS = ["and", "but", "while", "because", "so"]
SPAM = [
    "Click here to subscribe and get 50% off!!!", "Copyright 2024 ShopNow. All rights reserved.",
    "Privacy Policy | Terms | Contact Us | Sitemap", "BUY CHEAP PILLS NOW - LIMITED OFFER >>>",
    "Sign up | Log in | Cart (0)", "Share on Facebook | Tweet | Email", "Call 1-800-555-0199 for a FREE quote",
]  # fmt: skip
DIM = 8


def clean_passage(rng: np.random.Generator) -> str:
    sents = []
    for _ in range(int(rng.integers(4, 8))):
        a, b = (f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ADVERBIALS)}"
                for _ in range(2))  # fmt: skip
        s = f"{a}, {rng.choice(LINKS)} {b}."
        sents.append(s[0].upper() + s[1:])
    return " ".join(sents)


def salad(rng: np.random.Generator) -> str:
    words = clean_passage(rng).lower().replace(",", "").replace(".", "").split()
    return " ".join(words[i] for i in rng.permutation(len(words)))


def spam(rng: np.random.Generator) -> str:
    return "\n".join(str(rng.choice(SPAM)) for _ in range(int(rng.integers(6, 12))))


def fake_vectors(texts) -> np.ndarray:
    out = np.stack(
        [
            np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")).normal(size=DIM)
            for t in texts
        ]  # fmt: skip
    ).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def junk_run(tmp_path_factory):
    from winnow.embedding.embed import Embedder

    root = tmp_path_factory.mktemp("value")
    rng = np.random.default_rng(11)
    kinds = ["clean"] * 120 + ["word_salad"] * 60 + ["boilerplate"] * 60
    rows = [{"id": f"d{i}", "text": {"clean": clean_passage, "word_salad": salad, "boilerplate": spam}[k](rng),
             "junk_kind": k} for i, k in enumerate(kinds)]  # fmt: skip
    rows = [rows[i] for i in rng.permutation(len(rows))]
    (root / "corpus").mkdir()
    for s in range(2):
        pq.write_table(pa.Table.from_pylist(rows[s::2]), root / "corpus" / f"s{s}.parquet")
    with open(root / "clean_eval.jsonl", "w") as f:
        for i in range(40):
            f.write(json.dumps({"id": f"e{i}", "text": clean_passage(rng)}) + "\n")
    mp = pytest.MonkeyPatch()
    mp.setattr(
        Embedder, "setup", lambda self: setattr(self, "model", SimpleNamespace(get_embedding_dimension=lambda: DIM))
    )
    mp.setattr(Embedder, "encode", lambda self, texts: fake_vectors(texts))
    try:
        sets = ["executor.workers=1", "executor.torch_threads=1", "score.domain=keywords", "prune.strategy=random",
                "prune.keep_fraction=0.5"]  # fmt: skip
        cfg = load_config(None, sets, {"io.input": [str(root / "corpus")], "io.output": str(root / "run")})
        run_pipeline(cfg, ["embed", "score"], progress=False)
    finally:
        mp.undo()
    return SimpleNamespace(run=root / "run", eval=root / "clean_eval.jsonl")


PROXY = ProxyConfig(
    tokens=24_576, layers=1, d_model=32, heads=2, context=64, batch_size=16, lr=5e-3, vocab_size=384,
    eval_tokens=4096, checkpoints=2, repeats=3, seed=0, threads=1, device="cpu",
)  # fmt: skip


def test_quality_beats_random_on_a_junk_heavy_corpus(junk_run):
    report = build_report(
        str(junk_run.run),
        fractions=(0.5,),
        strategies=["random", "quality"],
        proxy=replace_evals(junk_run.eval),
        domain="junk_kind",
    )
    c = report.curves
    share = pl.read_csv(junk_run.run / "report" / "domain_share.csv")
    q_junk = share.filter((pl.col("strategy") == "quality") & (pl.col("domain") != "clean"))["kept"].sum()
    r_junk = share.filter((pl.col("strategy") == "random") & (pl.col("domain") != "clean"))["kept"].sum()
    assert q_junk <= 2 and r_junk >= 40  # the rater ranks the junk low; random keeps about half of it
    q = c.filter(pl.col("strategy") == "quality").row(0, named=True)
    r = c.filter(pl.col("strategy") == "random").row(0, named=True)
    assert q["proxy_eval"] == "clean_eval" and q["proxy_repeats"] == 3
    assert q["proxy_loss"] == pytest.approx(q["eval_clean_eval_loss"])
    se = math.hypot(q["proxy_loss_se"], r["proxy_loss_se"])
    assert se > 0
    assert r["proxy_loss"] - q["proxy_loss"] > 3 * se, (r["proxy_loss"], q["proxy_loss"], se)


def replace_evals(path) -> ProxyConfig:
    return replace(PROXY, evals=(str(path),))


# ------------------------------------------------------------------------------------------------------------
# bench/value.py: its corpus (synthetic passages stand in for nltk_data, which tests must not read)
# ------------------------------------------------------------------------------------------------------------
def fake_passages(rng: np.random.Generator) -> pl.DataFrame:
    """Three sources; ``long`` has few documents of many passages (the case that skewed the old evaluation set)."""
    rows = []
    for source, docs, per_doc in (("short", 120, 1), ("mid", 30, 4), ("long", 6, 20)):
        for d in range(docs):
            for k in range(per_doc):
                words = [f"{source}{int(w)}" for w in rng.integers(0, 500, 80)]
                rows.append(
                    {"parent": f"{source}-{d}", "source": source, "text": " ".join(words) + f" P-{source}-{d}-{k}."}
                )
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def bench_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vb")
    pas = fake_passages(np.random.default_rng(3))
    mp = pytest.MonkeyPatch()
    mp.setattr(value_bench, "clean_passages", lambda: pas)
    rates = {"boilerplate": 0.1, "noise": 0.15, "word_salad": 0.1, "exact_dup": 0.05, "near_dup": 0.05}
    try:
        info = value_bench.build_corpus(folder, 100, rates, 40, seed=0)
    finally:
        mp.undo()
    corpus = pl.read_parquet(folder / "corpus" / "*.parquet")
    return SimpleNamespace(
        folder=folder, pas=pas, info=info, corpus=corpus, held=pl.read_parquet(folder / "heldout.parquet")
    )


def test_bench_corpus_counts_and_no_leak(bench_corpus):
    c, held, pas = bench_corpus.corpus, bench_corpus.held, bench_corpus.pas
    # 100 clean passages are 55% of 182 documents; each kind its rate of the total
    counts = dict(c["junk_kind"].value_counts().iter_rows())
    assert counts == {"clean": 100, "boilerplate": 18, "noise": 27, "word_salad": 18, "exact_dup": 9, "near_dup": 9}
    # no passage of a held-out document is in the corpus: not as itself, nor as a copy, near copy or word salad
    held_parents = set(pas.join(held.select("text"), on="text", how="semi")["parent"])
    held_words = {w for t in held["text"] for w in t.split() if w.startswith("P-")}  # the passage markers
    for t in c["text"]:
        assert not held_words & set(t.split())
    assert bench_corpus.info["eval_shingles_in_corpus"] == 0.0
    assert held_parents.isdisjoint(set(pas.join(c.select("text"), on="text", how="semi")["parent"]))
    # exact copies are copies of corpus passages
    clean = set(c.filter(pl.col("junk_kind") == "clean")["text"])
    assert set(c.filter(pl.col("junk_kind") == "exact_dup")["text"]) <= clean


def test_bench_eval_set_follows_the_source_mix(bench_corpus):
    """Each source fills its share of the 40 evaluation passages (whole documents; ``long`` has 20 a document):
    short 120/360 -> 13, mid 120/360 -> 13, long 120/360 -> 13, each overshooting by less than one document."""
    by = bench_corpus.info["eval_by_source"]
    assert set(by) == {"short", "mid", "long"}
    for source, per_doc in (("short", 1), ("mid", 4), ("long", 20)):
        assert 13 <= by[source] < 13 + per_doc, by
    assert sorted(p.name for p in (bench_corpus.folder / "by_source").iterdir()) == [
        "eval_long.parquet", "eval_mid.parquet", "eval_short.parquet",
    ]  # fmt: skip


def test_bench_noise_has_nothing_to_learn():
    a = value_bench.noise(np.random.default_rng(5))
    assert a == value_bench.noise(np.random.default_rng(5))
    lines = a.split("\n")
    assert 6 <= len(lines) < 14 and len(set(lines)) == len(lines)  # no line repeats within a page
    b = value_bench.noise(np.random.default_rng(6))
    assert not set(lines) & set(b.split("\n"))  # nor across pages
