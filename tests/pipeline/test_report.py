"""Run reports (issue #7): pruning curves from stored scores, the proxy LM, figures, report.md / report.html.

The synthetic run: 3 parquet shards of 40 documents on four topics with a source column, two texts planted twice
(exact duplicates), run through every stage with a stand-in embedder (a seeded vector per text around a topic
centre: no model is loaded) and the heuristic rater with keyword domains. Metrics are also checked by hand on
tiny arrays.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from tokenizers import Tokenizer
from typer.testing import CliRunner

from winnow.clustering.semdedup import is_duplicate
from winnow.core.errors import ConfigError
from winnow.pipeline.config import load_config
from winnow.pipeline.prune import NEEDS_QUALITY
from winnow.pipeline.report.law import bucket_law, bucket_tokens, predicted_error, quality_buckets
from winnow.pipeline.report.proxy_lm import EOS, ProxyConfig, encode, eval_windows, heldout_mask, train_proxy
from winnow.pipeline.report.proxy_tokenizer import ProxyTokenizer
from winnow.pipeline.report.report import (
    CURVE_STRATEGIES,
    build_report,
    entropy_bits,
    kept_metrics,
    load_run,
    pruning_curves,
    report_command,
)
from winnow.pipeline.runner import run_pipeline

TOPICS = {
    "cooking": "The chef simmered a pot of lentil soup with garlic, onions and olive oil before dinner.",
    "astronomy": "The telescope observed a spiral galaxy and the rings of Saturn during a clear night.",
    "football": "The striker scored a late penalty in the second half and the fans celebrated loudly.",
    "code": "The developer refactored the database query and debugged the unit tests before the release.",
}
STEMS = ["s0", "s1", "s2"]
N_PER_SHARD = 40
N = 3 * N_PER_SHARD
PLANTED = {("s0", 3): ("s1", 10), ("s1", 20): ("s2", 5)}  # the second place repeats the first place's text
FRACTIONS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
SETS = [
    "cluster.k=4",
    "cluster.n_buckets=2",
    "executor.workers=1",
    "executor.torch_threads=1",
    "score.domain=keywords",
    "prune.strategy=semdedup",
]
DIM = 16


def _text(stem: str, i: int, rng: np.random.Generator) -> str:
    topic = list(TOPICS)[(i + STEMS.index(stem)) % len(TOPICS)]
    words = TOPICS[topic].split()
    n = int(rng.integers(1, 6))  # 1..5 sentences: lengths differ, so tokens_kept differs from n_kept
    body = " ".join(" ".join(rng.permutation(words)) + "." for _ in range(n))
    return f"{TOPICS[topic]} {body} Note {int(rng.integers(10**6))}."


def make_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    texts = {(s, i): _text(s, i, rng) for s in STEMS for i in range(N_PER_SHARD)}
    for first, second in PLANTED.items():
        texts[second] = texts[first]
    for s, stem in enumerate(STEMS):
        rows = [
            {"id": f"{stem}-{i:02d}", "text": texts[(stem, i)], "source": ["web", "books"][(i + s) % 2]}
            for i in range(N_PER_SHARD)
        ]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"{stem}.parquet")
    return folder


def fake_vectors(texts) -> np.ndarray:
    """A unit vector per text: its topic's centre plus noise seeded by the text (same text, same vector)."""
    centres = np.eye(DIM, dtype=np.float32)[: len(TOPICS)] * 3.0
    out = np.empty((len(texts), DIM), dtype=np.float32)
    for j, t in enumerate(texts):
        topic = next((k for k, v in enumerate(TOPICS.values()) if t.startswith(v)), 0)
        seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
        out[j] = centres[topic] + np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def no_model(monkeypatch):
    """The embedder answers with :func:`fake_vectors`; loading the real model fails the test."""
    from winnow.embedding.embed import Embedder

    def setup(self):
        self.model = SimpleNamespace(get_embedding_dimension=lambda: DIM)

    monkeypatch.setattr(Embedder, "setup", setup)
    monkeypatch.setattr(Embedder, "encode", lambda self, texts: fake_vectors(texts))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from winnow.embedding.embed import Embedder

    mp = pytest.MonkeyPatch()
    mp.setattr(
        Embedder, "setup", lambda self: setattr(self, "model", SimpleNamespace(get_embedding_dimension=lambda: DIM))
    )
    mp.setattr(Embedder, "encode", lambda self, texts: fake_vectors(texts))
    try:
        root = tmp_path_factory.mktemp("report")
        corpus = make_corpus(root / "corpus")
        out = root / "run"
        cfg = load_config(None, SETS, {"io.input": [str(corpus)], "io.output": str(out)})
        run_pipeline(cfg, ["embed", "fit", "assign", "dedup", "score", "prune", "decide", "write"], progress=False)
    finally:
        mp.undo()
    levels = pl.concat([pl.read_parquet(out / "quality" / f"{s}.parquet") for s in STEMS])["quality_overall"]
    level = int(levels.mode().sort()[0])  # dataman_level needs documents at its level
    return SimpleNamespace(corpus=corpus, out=out, level=level)


@pytest.fixture
def run_copy(base, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base.out, out)
    return out


def read_curves(out: Path) -> pl.DataFrame:
    return pl.read_csv(out / "report" / "pruning_curves.csv")


# =============================================================================================================
# Metrics by hand
# =============================================================================================================
def test_kept_metrics_by_hand():
    # 6 documents, 3 clusters (cluster 2 has no kept member), domains a/a/b/b/c/c, two duplicates
    keep = np.array([True, True, False, True, False, False])
    words = np.array([10, 20, 30, 40, 50, 60])
    quality = np.array([1.0, 2.0, 5.0, np.nan, 4.0, 4.0])
    clusters = np.array([0, 0, 1, 1, 2, 2])
    domain = np.array(["a", "a", "b", "b", "c", "c"])
    dup = np.array([False, True, True, False, False, True])
    m = kept_metrics(keep, None, words, quality_score=quality, cluster_id=clusters, domain=domain, duplicate=dup)
    assert m["n_kept"] == m["n_draws"] == 3
    assert m["tokens_kept"] == m["unique_tokens_kept"] == 70
    assert m["cluster_coverage"] == pytest.approx(2 / 3)  # clusters 0 and 1 of 0, 1, 2
    assert m["dup_rate"] == pytest.approx(1 / 3)  # document 1 of 0, 1, 3
    assert m["mean_quality_score"] == pytest.approx(1.5)  # the unrated document 3 is left out
    p = np.array([2, 1]) / 3
    assert m["domain_entropy"] == pytest.approx(-(p * np.log2(p)).sum())  # a, a, b


def test_kept_metrics_with_repeats_and_nothing_kept():
    keep = np.array([True, True, False])
    repeat = np.array([3, 1, 0])
    words = np.array([10, 20, 30])
    m = kept_metrics(keep, repeat, words, quality_score=np.array([4.0, 2.0, 1.0]), domain=np.array(["x", "y", "y"]))
    assert (m["n_kept"], m["n_draws"], m["tokens_kept"], m["unique_tokens_kept"]) == (2, 4, 50, 30)
    assert m["mean_quality_score"] == pytest.approx((3 * 4.0 + 2.0) / 4)  # weighted by draws
    assert m["domain_entropy"] == pytest.approx(entropy_bits(np.array([3, 1])))
    assert math.isnan(m["cluster_coverage"]) and math.isnan(m["dup_rate"])  # no such columns
    none = kept_metrics(np.zeros(3, bool), None, words, quality_score=np.ones(3), duplicate=np.ones(3, bool))
    assert none["n_kept"] == 0 and math.isnan(none["mean_quality_score"]) and math.isnan(none["dup_rate"])
    assert entropy_bits(np.array([5, 5])) == pytest.approx(1.0) and entropy_bits(np.array([7])) == 0.0


# =============================================================================================================
# Pruning curves of the synthetic run
# =============================================================================================================
def test_curves_have_every_strategy_and_fraction(base, run_copy, no_model, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the report recomputed similarities or clusters")

    monkeypatch.setattr("winnow.clustering.semdedup.max_sim_to_earlier", forbidden)
    monkeypatch.setattr("winnow.embedding.embed.Embedder.encode", forbidden)
    report = build_report(str(run_copy), fractions=FRACTIONS, sets=[f"prune.dataman_level={base.level}"])
    c = read_curves(run_copy)
    assert c.height == len(CURVE_STRATEGIES) * len(FRACTIONS)
    assert set(c.select("strategy", "keep_fraction").iter_rows()) == {
        (s, f) for s in CURVE_STRATEGIES for f in FRACTIONS
    }
    for col in ("strategy", "keep_fraction", "n_kept", "tokens_kept", "mean_quality_score", "cluster_coverage",
                "domain_entropy", "dup_rate", "predicted_error", "budget_tokens"):  # fmt: skip
        assert col in c.columns, col
    assert c.height == report.curves.height
    # n_kept matches the fraction; the quality strategies select by tokens (DESIGN §3.6): their draws hold the
    # fraction of the corpus's tokens, within one document
    target = (pl.col("keep_fraction") * N + 0.5).floor().cast(pl.Int64)
    assert (c["target"] == c.select(target).to_series()).all()
    plain = c.filter(~pl.col("strategy").is_in(["quality", "dataman_level"]))
    assert (plain["n_draws"] == plain["target"]).all()
    assert (plain["n_kept"] == plain["target"]).all()
    assert (c["n_kept"] <= c["n_draws"]).all()
    words = pl.concat([pl.read_parquet(base.out / "quality" / f"{s}.parquet") for s in STEMS])["n_words"]
    total, longest = int(words.clip(lower_bound=1).sum()), int(words.max())
    for row in c.filter(pl.col("strategy").is_in(["quality", "dataman_level"])).iter_rows(named=True):
        assert abs(row["tokens_kept"] - row["keep_fraction"] * total) <= longest, row
        if row["strategy"] == "quality":
            assert row["n_kept"] == row["n_draws"], "quality never repeats a document"
    # every strategy keeps everything at fraction 1 (the quality strategies: up to their strata)
    full = plain.filter(pl.col("keep_fraction") == 1.0)
    assert full["cluster_coverage"].to_list() == [1.0] * full.height
    assert full["tokens_kept"].n_unique() == 1


def test_random_mean_quality_is_the_corpus_mean(run_copy, no_model):
    scores = load_run(str(run_copy))
    q = scores.frame["quality_score"].cast(pl.Float64).to_numpy()
    c, _, _ = pruning_curves(scores, FRACTIONS, ["random"])
    for row in c.iter_rows(named=True):
        f = row["keep_fraction"]
        n = row["n_kept"]
        se = q.std() * math.sqrt(max(1 - f, 0.0) / n)  # standard error with the finite-population correction
        assert abs(row["mean_quality_score"] - q.mean()) <= 4 * se + 1e-9, row
    one = c.filter(pl.col("keep_fraction") == 1.0)["mean_quality_score"][0]
    assert one == pytest.approx(q.mean())


def test_coverage_dup_rate_and_tokens_recomputed_by_hand(run_copy, no_model):
    from winnow.pipeline.prune import decide

    build_report(str(run_copy), fractions=(0.25, 0.5), strategies=["prototypicality_hard", "random"])
    c = read_curves(run_copy)
    scores = load_run(str(run_copy))
    f = scores.frame
    eps = scores.cfg.dedup.eps
    assert f.height == N
    # the planted copies are duplicates at the configured eps
    assert int(is_duplicate(f["dup_max_sim"].cast(pl.Float32).fill_null(np.nan).to_numpy(), eps).sum()) >= 2
    for s in ("prototypicality_hard", "random"):
        cfg = scores.cfg.model_copy(
            update={"prune": scores.cfg.prune.model_copy(update={"strategy": s, "keep_fraction": 0.5})}
        )
        keep = decide(f, cfg, scores.centroids).keep
        row = c.filter((pl.col("strategy") == s) & (pl.col("keep_fraction") == 0.5)).row(0, named=True)
        clusters = f["cluster_id"].to_numpy()
        assert row["cluster_coverage"] == pytest.approx(len(set(clusters[keep])) / len(set(clusters)))
        sims = f["dup_max_sim"].to_list()
        dups = [s_ is not None and s_ >= 1 - eps for s_ in sims]
        assert row["dup_rate"] == pytest.approx(sum(d for d, k in zip(dups, keep, strict=True) if k) / keep.sum())
        texts = pl.concat([pl.read_parquet(run_copy / "curated" / f"{st}.parquet") for st in STEMS])["text"]
        words = sum(len(t.split()) for t, k in zip(texts.to_list(), keep, strict=True) if k)
        assert row["tokens_kept"] == words
        domains = f["quality_domain"].to_numpy()[keep]
        _, counts = np.unique(domains, return_counts=True)
        assert row["domain_entropy"] == pytest.approx(entropy_bits(counts))
        # the law: the kept unique tokens of each quality bucket (the mixer's pools) at the budget (default: the
        # corpus's tokens), each bucket with its own b; with one bucket it is the one-pool law (test_law_loop.py)
        budget = sum(len(t.split()) for t in texts.to_list())
        assert row["budget_tokens"] == budget
        buckets = quality_buckets(f, scores.cfg, scores.quality)
        comp = bucket_tokens(keep, buckets, f["n_words"].to_numpy())
        assert sum(comp.values()) == pytest.approx(words)
        want = predicted_error(comp, budget, bucket_law(scores.cfg, buckets))
        assert row["predicted_error"] == pytest.approx(want)


def test_budget_from_the_mix_config(run_copy, no_model):
    build_report(str(run_copy), fractions=(0.5, 1.0), strategies=["random"], sets=["mix.budget_tokens=2e6"])
    c = read_curves(run_copy)
    assert c["budget_tokens"].to_list() == [2_000_000, 2_000_000]
    err = c["predicted_error"].to_list()
    assert err[0] > err[1]  # fewer unique tokens, more repetition: a higher predicted error


def test_run_without_quality_scores_leaves_the_quality_strategies_out(run_copy, no_model):
    shutil.rmtree(run_copy / "quality")
    report = build_report(str(run_copy), fractions=(0.2, 0.5, 1.0))
    c = read_curves(run_copy)
    assert set(c["strategy"]) == set(CURVE_STRATEGIES) - set(NEEDS_QUALITY)  # quality, dataman_level, dbp_quality
    assert c["mean_quality_score"].is_null().all()
    # tokens from the curated texts, domains from the source column
    scores = load_run(str(run_copy))
    assert scores.domain_column == "source" and set(scores.frame["domain"]) == {"web", "books"}
    assert any("quality" in n for n in report.notes)
    assert c.filter(pl.col("keep_fraction") == 1.0)["domain_entropy"][0] == pytest.approx(1.0)  # 60 web, 60 books


# =============================================================================================================
# Files: CSV next to every PNG, report.md, self-contained report.html
# =============================================================================================================
def test_report_files(run_copy, no_model):
    report = build_report(str(run_copy), fractions=FRACTIONS)
    rep = run_copy / "report"
    pngs = sorted(p.stem for p in rep.glob("*.png"))
    assert pngs == sorted(["pruning_curves", "score_histograms", "cluster_sizes", "domain_share", "law_prediction"])
    for stem in pngs:
        assert (rep / f"{stem}.csv").is_file(), stem  # every figure is drawn from the table next to it
        assert (rep / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (rep / "report.md").read_text()
    for stem in pngs:
        assert f"]({stem}.png)" in md
    assert "| stage | input | kept |" in md and "## Pruning curves" in md
    html = (rep / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)
    assert 'src="' not in html and "src='http" not in html and ".png'" not in html.replace("data:image/png", "")
    assert set(report.files) >= {f"report/{s}.png" for s in pngs} | {"report/report.md", "report/report.html"}
    hist = pl.read_csv(rep / "score_histograms.csv")
    assert set(hist["score"]) == {"quality_score", "dist_to_centroid", "dup_max_sim"}
    assert hist.filter(pl.col("kind") == "threshold")["x0"][0] == pytest.approx(0.95)  # 1 - dedup.eps
    sizes = pl.read_csv(rep / "cluster_sizes.csv")
    assert sizes["size"].sum() == N and sizes.height == 4
    share = pl.read_csv(rep / "domain_share.csv")
    one = share.filter((pl.col("keep_fraction") == 1.0) & (pl.col("strategy") == "random"))
    assert one["kept_share"].to_list() == [1.0] * one.height


def test_mixture_plan_goes_into_the_report(run_copy, no_model):
    from winnow.mixers.planner import build_plan, write_plan
    from winnow.pipeline.cli.mix import load_mix_config

    _, mix = load_mix_config(None, ["mix.budget_tokens=20000"])
    write_plan(str(run_copy), build_plan(str(run_copy), mix, seed=0))
    build_report(str(run_copy), fractions=(0.5, 1.0), strategies=["random"])
    md = (run_copy / "report" / "report.md").read_text()
    assert "## Mixture plan" in md and "Why:" in md and "**chosen**" in md


# =============================================================================================================
# The proxy LM
# =============================================================================================================
TINY = ProxyConfig(tokens=4096, layers=1, d_model=16, heads=2, context=16, batch_size=8, eval_tokens=512,
                   checkpoints=2, seed=3, threads=1)  # fmt: skip


def test_heldout_mask_is_a_fixed_share_independent_of_order():
    ids = [f"doc-{i}" for i in range(200)]
    m = heldout_mask(ids, 0.05, seed=1)
    assert m.sum() == 10
    perm = np.random.default_rng(0).permutation(200)
    m2 = heldout_mask([ids[i] for i in perm], 0.05, seed=1)
    assert {ids[i] for i in perm[m2]} == {ids[i] for i in np.flatnonzero(m)}
    assert not np.array_equal(m, heldout_mask(ids, 0.05, seed=2))


def test_encode_and_windows():
    s = encode(["ab", "é"])
    assert s.tolist() == [97, 98, EOS, 0xC3, 0xA9, EOS]
    w = eval_windows(np.arange(100), context=9, max_tokens=27)
    assert w.shape == (3, 10) and w[0, 0] == 0 and (np.diff(w, axis=1) == 1).all()


def test_train_proxy_is_seeded_and_learns():
    text = ["the cat sat on the mat. " * 20, "a dog ran in the park. " * 20] * 4
    train = encode(text)
    held = eval_windows(encode(["the cat ran in the park. " * 10]), TINY.context, TINY.eval_tokens)
    a = train_proxy(train, held, TINY)
    b = train_proxy(train, held, TINY)
    assert a.loss == b.loss and a.checkpoints == b.checkpoints
    assert a.loss < math.log(257)  # better than uniform over the vocabulary
    assert [t for t, _ in a.checkpoints] == [TINY.tokens_trained // 2, TINY.tokens_trained]
    assert a.params > 0 and a.epochs == pytest.approx(TINY.tokens_trained / len(train))
    with pytest.raises(ValueError, match="heads"):
        ProxyConfig(d_model=10, heads=4)


def test_report_with_proxy_lm(run_copy, no_model):
    report = build_report(str(run_copy), fractions=(0.3, 0.6, 1.0), strategies=["random", "quality"], proxy=TINY)
    c = read_curves(run_copy)
    assert c["proxy_loss"].is_finite().all() and c["proxy_loss_sd"].is_null().all()
    for col, value in (("proxy_tokens", TINY.tokens_trained), ("proxy_layers", 1), ("proxy_d_model", 16),
                       ("proxy_context", 16), ("proxy_seed", 3)):  # fmt: skip
        assert c[col].to_list() == [value] * c.height, col
    assert (c["proxy_params"] > 0).all()
    # random at 1.0 keeps every document: less than the whole corpus is trained on (the held-out slice is excluded)
    row = c.filter((pl.col("strategy") == "random") & (pl.col("keep_fraction") == 1.0)).row(0, named=True)
    total = sum(len(t.encode()) + 1 for t in load_run(str(run_copy), texts=True).frame["text"].to_list())
    assert 0 < row["proxy_pool_tokens"] < total
    rep = run_copy / "report"
    ckpt = pl.read_csv(rep / "proxy_checkpoints.csv")
    assert ckpt.height == 2 * c.height
    assert (rep / "law_fit.csv").is_file() and (rep / "law_fit.png").is_file() and report.fit is not None
    fit = pl.read_csv(rep / "law_fit.csv")
    held = fit.filter(pl.col("kind") == "observed").filter(pl.col("heldout"))
    # one held-out checkpoint (the largest) per quality bucket the law is fitted on
    assert set(held["strategy"]) == {"q1", "q2", "q3", "q4"} and held.height == 4


def test_proxy_repeats_are_averaged(run_copy, no_model):
    from dataclasses import replace

    build_report(str(run_copy), fractions=(0.5,), strategies=["random"], proxy=replace(TINY, repeats=2))
    row = read_curves(run_copy).row(0, named=True)
    build_report(str(run_copy), fractions=(0.5,), strategies=["random"], proxy=TINY)
    first = read_curves(run_copy)["proxy_loss"][0]  # the run with the base seed alone
    second = 2 * row["proxy_loss"] - first  # the mean of the two runs is proxy_loss
    assert row["proxy_repeats"] == 2 and second != pytest.approx(first)
    assert row["proxy_loss_sd"] == pytest.approx(abs(first - second) / math.sqrt(2))


def _count_trainings(monkeypatch) -> list[int]:
    calls: list[int] = []
    train = ProxyTokenizer.train.__func__

    def counted(cls, *args, **kwargs):
        calls.append(1)
        return train(cls, *args, **kwargs)

    monkeypatch.setattr(ProxyTokenizer, "train", classmethod(counted))
    return calls


def test_one_tokenizer_for_every_point(run_copy, no_model, monkeypatch):
    calls = _count_trainings(monkeypatch)
    build_report(str(run_copy), fractions=(0.5, 1.0), strategies=["random", "quality"], proxy=TINY)
    assert calls == [1]  # trained once for the report, not per kept set
    tok = Tokenizer.from_file(str(run_copy / "report" / "tokenizer.json"))
    scores = load_run(str(run_copy), texts=True)
    held = heldout_mask(scores.frame["id"].to_list(), TINY.heldout_fraction, TINY.seed)
    texts = [t for t, h in zip(scores.frame["text"].to_list(), held, strict=True) if not h]
    c = read_curves(run_copy)
    row = c.filter((pl.col("strategy") == "random") & (pl.col("keep_fraction") == 1.0)).row(0, named=True)
    # the pool is counted in that tokenizer's tokens: every training document's tokens plus its end token
    assert row["proxy_pool_tokens"] == sum(len(e.ids) + 1 for e in tok.encode_batch(texts))
    assert (c["proxy_vocab"] == tok.get_vocab_size()).all()


def test_eval_shards_are_read_and_reported(run_copy, no_model, tmp_path):
    from dataclasses import replace

    clean = ["The committee approved the annual budget after a short debate.", "Rain fell on the quiet town."]
    (tmp_path / "clean.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(clean))
    )
    build_report(
        str(run_copy),
        fractions=(0.5,),
        strategies=["random"],
        proxy=replace(TINY, evals=(str(tmp_path / "clean.jsonl"),)),
    )
    row = read_curves(run_copy).row(0, named=True)
    assert row["proxy_eval"] == "clean" and row["proxy_loss"] == row["eval_clean_loss"]
    assert math.isfinite(row["eval_heldout_loss"]) and row["eval_heldout_loss"] != row["eval_clean_loss"]
    tok = Tokenizer.from_file(str(run_copy / "report" / "tokenizer.json"))
    tokens = sum(len(e.ids) + 1 for e in tok.encode_batch(clean))
    n_bytes = sum(len(t.encode()) + 1 for t in clean)
    assert row["proxy_bpb"] == pytest.approx(row["proxy_loss"] * tokens / (n_bytes * math.log(2)))
    assert row["eval_clean_bpb"] == row["proxy_bpb"]
    assert set(pl.read_csv(run_copy / "report" / "proxy_checkpoints.csv")["eval"]) == {"clean"}
    with pytest.raises(ConfigError, match="does not exist"):
        build_report(
            str(run_copy), fractions=(0.5,), strategies=["random"], proxy=replace(TINY, evals=("nowhere.jsonl",))
        )


def test_command_proxy_flags(run_copy, no_model, tmp_path):
    (tmp_path / "ref.jsonl").write_text(json.dumps({"text": "A short clean reference sentence for the proxy."}) + "\n")
    args = ["report", "--run", str(run_copy), "--fractions", "0.5", "--strategies", "random", "--proxy", "lm",
            "--proxy-tokenizer", "bytes", "--proxy-tokens", "512", "--proxy-layers", "1", "--proxy-d-model", "16",
            "--proxy-heads", "2", "--proxy-context", "16", "--proxy-batch", "8", "--proxy-eval-tokens", "256",
            "--proxy-repeats", "2", "--eval", str(tmp_path / "ref.jsonl"), "-q"]  # fmt: skip
    r = CliRunner().invoke(cli(), args)
    assert r.exit_code == 0, r.output
    row = read_curves(run_copy).row(0, named=True)
    assert (row["proxy_vocab"], row["proxy_repeats"], row["proxy_layers"], row["proxy_eval"]) == (257, 2, 1, "ref")
    assert row["proxy_loss_se"] == pytest.approx(row["proxy_loss_sd"] / math.sqrt(2))
    assert row["proxy_bpb"] == pytest.approx(row["proxy_loss"] / math.log(2))  # bytes: one token per byte
    assert not (run_copy / "report" / "tokenizer.json").exists()


# =============================================================================================================
# The command
# =============================================================================================================
def cli() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("report")(report_command)
    app.command("version")(lambda: None)  # a second command keeps `report` a subcommand, as in winnow
    return app


def test_command(run_copy, no_model):
    r = CliRunner().invoke(cli(), ["report", "--run", str(run_copy), "--fractions", "0.2,0.5,1", "-q"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().endswith("report/report.md")
    assert set(read_curves(run_copy)["keep_fraction"]) == {0.2, 0.5, 1.0}


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--fractions", "0.5,1.5"], 2, "keep fractions must be in (0, 1]"),
        (["--fractions", "half"], 2, "comma-separated"),
        (["--proxy", "gpt"], 2, "--proxy"),
        (["--proxy", "lm", "--proxy-preset", "huge"], 2, "proxy preset must be one of tiny, small"),
        (["--proxy", "lm", "--eval", "nowhere.jsonl"], 2, "does not exist"),
        (["--proxy", "lm", "--proxy-tokenizer", "nowhere.json"], 2, "no such file"),
        (["--strategies", "magic"], 2, "unknown strategy"),
        (["--set", "dedup.epsilon=0.1"], 2, "dedup.epsilon"),
    ],
)
def test_command_usage_errors(run_copy, args, code, needle):
    r = CliRunner().invoke(cli(), ["report", "--run", str(run_copy), *args])
    assert r.exit_code == code, r.output
    assert needle in r.output


def test_command_on_a_folder_that_is_no_run(tmp_path):
    r = CliRunner().invoke(cli(), ["report", "--run", str(tmp_path)])
    assert r.exit_code == 2 and "not a winnow run directory" in r.output
