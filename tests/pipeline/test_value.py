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
import json
import math
from dataclasses import replace
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
