"""The proxy LM over the pruning-curve points: one small byte-level LM trained per distinct kept set, its held-out
loss per point and at every checkpoint (the model and trainer are in :mod:`winnow.pipeline.report.proxy_lm`)."""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl
from loguru import logger
from tqdm.auto import tqdm

from winnow.pipeline.report.curves import nan_to_null
from winnow.pipeline.report.decisions import Point
from winnow.pipeline.report.proxy_lm import encode, eval_windows, heldout_mask, train_proxy
from winnow.pipeline.report.scores import RunScores

__all__ = ["proxy_curves"]


def proxy_curves(scores: RunScores, points: Sequence[Point], cfg) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Train the proxy LM on every point's kept set (minus the held-out slice); one row per point, checkpoints.

    Returns:
        ``(per_point, checkpoints, info)``: per point ``strategy, keep_fraction`` and the ``proxy_*`` columns;
        per checkpoint ``strategy, keep_fraction, tokens_seen, pool_tokens, loss``; and the held-out slice's size.
    """
    f = scores.frame
    texts = f["text"].fill_null("").to_list()
    held = heldout_mask(f["id"].cast(pl.String).to_list(), cfg.heldout_fraction, cfg.seed)
    heldout = eval_windows(encode([t for t, h in zip(texts, held, strict=True) if h]), cfg.context, cfg.eval_tokens)
    order = np.random.default_rng([cfg.seed, 0x50524F58]).permutation(f.height)  # one document order for all
    cache: dict[str, Any] = {}
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
                stream = encode([texts[j] for j in docs])
                for r in range(cfg.repeats):
                    cache[key].append(train_proxy(stream, heldout, replace(cfg, seed=cfg.seed + r)))
                    bar.update(1)
                runs = cache[key]
                losses = np.array([r.loss for r in runs])
                logger.info(
                    f"proxy {i + 1}/{len(points)}: {p.strategy} @ {p.fraction:g}: loss {losses.mean():.4f}"
                    + (f" ± {losses.std(ddof=1):.4f}" if len(runs) > 1 else "")
                    + f" ({runs[0].epochs:.3g} epochs of {runs[0].train_tokens:,} tokens, "
                    f"{sum(r.seconds for r in runs):.1f}s)"
                )
        runs = cache[key]
        bar.n = (i + 1) * cfg.repeats  # a cached or empty kept set costs no run
        bar.refresh()
        losses = np.array([r.loss for r in runs])
        rows.append(
            {
                "strategy": p.strategy,
                "keep_fraction": p.fraction,
                "proxy_loss": float(losses.mean()) if len(runs) else math.nan,
                "proxy_loss_sd": float(losses.std(ddof=1)) if len(runs) > 1 else math.nan,
                "proxy_repeats": len(runs),
                "proxy_tokens": cfg.tokens_trained,
                "proxy_pool_tokens": runs[0].train_tokens if runs else 0,
                "proxy_epochs": runs[0].epochs if runs else math.nan,
                "proxy_params": runs[0].params if runs else None,
                "proxy_layers": cfg.layers,
                "proxy_d_model": cfg.d_model,
                "proxy_context": cfg.context,
                "proxy_seed": cfg.seed,
            }
        )
        if runs:  # each checkpoint's loss, averaged over the repeats
            for j, (seen, _) in enumerate(runs[0].checkpoints):
                loss = float(np.mean([r.checkpoints[j][1] for r in runs]))
                ckpts.append({"strategy": p.strategy, "keep_fraction": p.fraction, "tokens_seen": seen,
                              "pool_tokens": runs[0].train_tokens, "loss": loss})  # fmt: skip
    bar.close()
    info = {"heldout_documents": int(held.sum()), "heldout_tokens": int(heldout.shape[0] * cfg.context),
            "trained_points": sum(1 for v in cache.values() if v),
            "device": next((v[0].device for v in cache.values() if v), "-")}  # fmt: skip
    schema = {"strategy": pl.String, "keep_fraction": pl.Float64, "tokens_seen": pl.Int64, "pool_tokens": pl.Int64,
              "loss": pl.Float64}  # fmt: skip
    return nan_to_null(pl.DataFrame(rows)), pl.DataFrame(ckpts, schema=schema), info
