"""The proxy LM over the pruning-curve points: one small LM trained per distinct kept set, its loss on every
evaluation set per point and the primary set's loss at every checkpoint (the model and trainer are in
:mod:`winnow.pipeline.report.proxy_lm`, the tokenizer in :mod:`winnow.pipeline.report.proxy_tokenizer`).

The tokenizer is made once per report (trained on a seeded sample of the whole corpus, or loaded) and every
document is encoded once; each point's training stream is its kept documents' tokens in one seeded order. The
evaluation sets are the held-out slice (``heldout``) and each ``evals`` entry (named by its file stem), the first
entry the primary one. Per point: ``proxy_loss`` (primary, nats per token, mean over the repeats),
``proxy_loss_sd`` and ``proxy_loss_se`` (their standard deviation and standard error of the mean), ``proxy_bpb``
(bits per byte) and, per set ``<name>``, ``eval_<name>_loss``, ``eval_<name>_loss_se`` and ``eval_<name>_bpb``.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl
from loguru import logger
from tqdm.auto import tqdm

from winnow.core.errors import CurationError
from winnow.core.io import ShardReader, list_shards
from winnow.pipeline.report.curves import nan_to_null
from winnow.pipeline.report.decisions import Point
from winnow.pipeline.report.proxy_lm import ProxyConfig, ProxyResult, eval_windows, heldout_mask, train_proxy
from winnow.pipeline.report.proxy_tokenizer import ProxyTokenizer, bits_per_byte, text_bytes
from winnow.pipeline.report.scores import RunScores

__all__ = ["TOKENIZER_FILE", "EvalSet", "eval_sets", "proxy_curves", "read_eval_texts"]

#: Where the report keeps the trained tokenizer (relative to the run directory).
TOKENIZER_FILE = "report/tokenizer.json"


@dataclass
class EvalSet:
    """One evaluation set: its windows and the size of what they were cut from.

    Args:
        name: ``heldout`` or the eval shard's stem.
        windows: ``[n, context + 1]`` token windows (:func:`~winnow.pipeline.report.proxy_lm.eval_windows`).
        documents: Documents of the set.
        tokens: Tokens of the whole set (end-of-document tokens included).
        bytes: UTF-8 bytes of the whole set (plus one per document).
    """

    name: str
    windows: np.ndarray
    documents: int
    tokens: int
    bytes: int

    @property
    def tokens_evaluated(self) -> int:
        """Tokens whose loss is measured (the windows' targets)."""
        return int(self.windows.shape[0] * (self.windows.shape[1] - 1))

    def bpb(self, nats_per_token: float) -> float:
        """Bits per byte of a loss on this set (the set's tokens per byte)."""
        return bits_per_byte(nats_per_token, self.tokens, self.bytes)


def read_eval_texts(path: str, io, storage_options: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """The texts of an eval path (a file, folder or glob of shards, read as the run reads its inputs) and its name."""
    shards = list_shards([path], storage_options)
    texts: list[str] = []
    for shard in shards:
        for batch in ShardReader(shard, io):
            texts.extend(batch.table.column(io.text_field).to_pylist())
    if not texts:
        msg = f"--eval {path!r}: no document with a text field {io.text_field!r}"
        raise CurationError(msg)
    stem = shards[0].stem if len(shards) == 1 else path.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "eval"
    return name, texts


def eval_sets(tok: ProxyTokenizer, heldout: list[str], evals: list[tuple[str, list[str]]], cfg: ProxyConfig):
    """The evaluation sets by name, the primary first (the first of ``evals``, else the held-out slice)."""
    named = [(n, t) for n, t in evals]
    named.append(("heldout", heldout))
    out: dict[str, EvalSet] = {}
    for name, texts in named:
        key, k = name, 2
        while key in out:
            key, k = f"{name}_{k}", k + 1
        stream = tok.encode(texts)
        out[key] = EvalSet(key, eval_windows(stream, cfg.context, cfg.eval_tokens), len(texts), len(stream),
                           text_bytes(texts))  # fmt: skip
    return out


def _tokenizer(scores: RunScores, texts: list[str], cfg: ProxyConfig) -> ProxyTokenizer:
    """The report's one tokenizer (module doc), written to ``report/tokenizer.json`` unless it is bytes."""
    tok = ProxyTokenizer.load(cfg.tokenizer, texts, cfg.vocab_size, cfg.tokenizer_chars, cfg.seed)
    js = tok.to_json()
    if js is not None:
        scores.run.write_text(TOKENIZER_FILE, js)
    return tok


def _stats(runs: list[ProxyResult], name: str) -> tuple[float, float, float]:
    """Mean, sd and standard error of the runs' loss on one set (nan where undefined)."""
    x = np.array([r.eval_losses[name] for r in runs])
    if not len(x):
        return math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    return float(x.mean()), sd, sd / math.sqrt(len(x))


def _row(p: Point, runs: list[ProxyResult], sets: dict[str, EvalSet], cfg: ProxyConfig, vocab: int) -> dict:
    primary = next(iter(sets))
    mean, sd, se = _stats(runs, primary)
    row = {
        "strategy": p.strategy,
        "keep_fraction": p.fraction,
        "proxy_loss": mean,
        "proxy_loss_sd": sd,
        "proxy_loss_se": se,
        "proxy_bpb": sets[primary].bpb(mean),
        "proxy_eval": primary,
        "proxy_repeats": len(runs),
        "proxy_tokens": cfg.tokens_trained,
        "proxy_pool_tokens": runs[0].train_tokens if runs else 0,
        "proxy_epochs": runs[0].epochs if runs else math.nan,
        "proxy_params": runs[0].params if runs else None,
        "proxy_layers": cfg.layers,
        "proxy_d_model": cfg.d_model,
        "proxy_context": cfg.context,
        "proxy_vocab": vocab,
        "proxy_seed": cfg.seed,
    }
    for name, s in sets.items():
        m, _, e = _stats(runs, name)
        row.update({f"eval_{name}_loss": m, f"eval_{name}_loss_se": e, f"eval_{name}_bpb": s.bpb(m)})
    return row


def proxy_curves(
    scores: RunScores, points: Sequence[Point], cfg: ProxyConfig
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Train the proxy LM on every point's kept set (minus the held-out slice); one row per point, checkpoints.

    Returns:
        ``(per_point, checkpoints, info)``: per point ``strategy, keep_fraction`` and the ``proxy_*`` and
        ``eval_*`` columns (module doc); per checkpoint ``strategy, keep_fraction, tokens_seen, pool_tokens, loss``
        (the primary set's loss, mean over the repeats) and ``eval``; and ``info``: the held-out slice's size, the
        tokenizer and each evaluation set.
    """
    f = scores.frame
    texts = f["text"].fill_null("").to_list()
    held = heldout_mask(f["id"].cast(pl.String).to_list(), cfg.heldout_fraction, cfg.seed)
    evals = [read_eval_texts(p, scores.cfg.io, scores.cfg.io.storage_options) for p in cfg.evals]
    tok = _tokenizer(scores, texts, cfg)
    sets = eval_sets(tok, [t for t, h in zip(texts, held, strict=True) if h], evals, cfg)
    windows = {n: s.windows for n, s in sets.items()}
    docs_tokens = tok.encode_docs(texts)
    order = np.random.default_rng([cfg.seed, 0x50524F58]).permutation(f.height)  # one document order for all
    cache: dict[str, list[ProxyResult]] = {}
    rows, ckpts = [], []
    # one tick per proxy run (point x repeat), on a terminal only; a point whose kept set was trained already ticks
    # at once
    bar = tqdm(total=len(points) * cfg.repeats, desc="proxy lm", unit="run", disable=not sys.stderr.isatty())
    for i, p in enumerate(points):
        bar.set_postfix_str(f"{p.strategy} @ {p.fraction:g}")
        counts = np.where(held, 0, p.repeat)
        key = hashlib.sha256(counts.astype(np.int64).tobytes()).hexdigest()
        if key not in cache:
            docs = order[counts[order] > 0]
            docs = np.repeat(docs, counts[docs])
            cache[key] = []
            if len(docs):
                stream = np.concatenate([docs_tokens[j] for j in docs])
                for r in range(cfg.repeats):
                    cache[key].append(train_proxy(stream, windows, replace(cfg, seed=cfg.seed + r), tok.vocab_size))
                    bar.update(1)
                _log(i, len(points), p, cache[key])
        runs = cache[key]
        bar.n = (i + 1) * cfg.repeats  # a cached or empty kept set costs no run
        bar.refresh()
        rows.append(_row(p, runs, sets, cfg, tok.vocab_size))
        if runs:  # each checkpoint's primary loss, averaged over the repeats
            primary = next(iter(sets))
            for j, (seen, _) in enumerate(runs[0].checkpoints):
                loss = float(np.mean([r.checkpoints[j][1] for r in runs]))
                ckpts.append({"strategy": p.strategy, "keep_fraction": p.fraction, "tokens_seen": seen,
                              "pool_tokens": runs[0].train_tokens, "loss": loss, "eval": primary})  # fmt: skip
    bar.close()
    info = {"heldout_documents": int(held.sum()), "heldout_tokens": sets["heldout"].tokens_evaluated,
            "trained_points": sum(1 for v in cache.values() if v),
            "device": next((v[0].device for v in cache.values() if v), "-"),
            "tokenizer": tok.describe(), "vocab": tok.vocab_size, "primary_eval": next(iter(sets)),
            "tokenizer_file": TOKENIZER_FILE if tok.to_json() is not None else None,
            "evals": {n: {"documents": s.documents, "tokens": s.tokens, "bytes": s.bytes,
                          "tokens_evaluated": s.tokens_evaluated} for n, s in sets.items()}}  # fmt: skip
    schema = {"strategy": pl.String, "keep_fraction": pl.Float64, "tokens_seen": pl.Int64, "pool_tokens": pl.Int64,
              "loss": pl.Float64, "eval": pl.String}  # fmt: skip
    return nan_to_null(pl.DataFrame(rows)), pl.DataFrame(ckpts, schema=schema), info


def _log(i: int, n: int, p: Point, runs: list[ProxyResult]) -> None:
    losses = np.array([r.loss for r in runs])
    logger.info(
        f"proxy {i + 1}/{n}: {p.strategy} @ {p.fraction:g}: loss {losses.mean():.4f}"
        + (f" ± {losses.std(ddof=1) / math.sqrt(len(runs)):.4f} (se)" if len(runs) > 1 else "")
        + f" ({runs[0].epochs:.3g} epochs of {runs[0].train_tokens:,} tokens, {sum(r.seconds for r in runs):.1f}s)"
    )
