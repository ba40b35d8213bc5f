"""The pruning curves: every strategy at every keep fraction, decided from the stored scores, and the metrics of each
kept set (``pruning_curves.csv``; the columns are described in :mod:`winnow.pipeline.report.report`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from winnow.clustering.semdedup import is_duplicate
from winnow.core.errors import ConfigError
from winnow.pipeline.report.decisions import Point, decide_point, prune_logs_off, supported_strategies
from winnow.pipeline.report.law import (
    bucket_law,
    bucket_tokens,
    composition_columns,
    predicted_error,
    quality_buckets,
    resolve_budget,
)
from winnow.pipeline.report.scores import RunScores

__all__ = ["DEFAULT_FRACTIONS", "entropy_bits", "kept_metrics", "nan_to_null", "pruning_curves"]

#: Keep fractions of a report unless ``--fractions`` says otherwise (1.0 is the common anchor of every curve).
DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy in bits of a vector of non-negative counts (0 for an empty or one-category vector)."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if c.sum() <= 0:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum() + 0.0)


def kept_metrics(
    keep: np.ndarray,
    repeat: np.ndarray | None,
    n_words: np.ndarray,
    *,
    quality_score: np.ndarray | None = None,
    cluster_id: np.ndarray | None = None,
    domain: np.ndarray | None = None,
    duplicate: np.ndarray | None = None,
) -> dict[str, float | int]:
    """The metrics of one kept set (module doc); ``nan`` where a column is missing or nothing is kept.

    Args:
        keep: Kept documents (bool per row).
        repeat: Draws per row (the quality strategies), or None for ``keep`` itself.
        n_words: Whitespace words per row.
        quality_score: ``quality_score`` per row (NaN = unrated), or None.
        cluster_id: Cluster per row, or None.
        domain: Domain code per row (any hashable values), or None.
        duplicate: Whether each row is a SemDeDup duplicate at the configured eps, or None.

    Returns:
        ``n_kept, n_draws, tokens_kept, unique_tokens_kept, mean_quality_score, cluster_coverage, domain_entropy,
        dup_rate``.
    """
    keep = np.asarray(keep, dtype=bool)
    draws = keep.astype(np.int64) if repeat is None else np.asarray(repeat, dtype=np.int64)
    words = np.asarray(n_words, dtype=np.float64)
    n_kept = int(keep.sum())
    out: dict[str, float | int] = {
        "n_kept": n_kept,
        "n_draws": int(draws.sum()),
        "tokens_kept": int((words * draws).sum()),
        "unique_tokens_kept": int(words[keep].sum()),
        "mean_quality_score": math.nan,
        "cluster_coverage": math.nan,
        "domain_entropy": math.nan,
        "dup_rate": math.nan,
    }
    if quality_score is not None:
        q = np.asarray(quality_score, dtype=np.float64)
        w = draws * np.isfinite(q)
        if w.sum() > 0:
            out["mean_quality_score"] = float((np.nan_to_num(q) * w).sum() / w.sum())
    if cluster_id is not None and len(cluster_id):
        c = np.asarray(cluster_id)
        out["cluster_coverage"] = len(np.unique(c[keep])) / len(np.unique(c))
    if domain is not None and draws.sum() > 0:
        _, codes = np.unique(np.asarray(domain), return_inverse=True)
        out["domain_entropy"] = entropy_bits(np.bincount(codes.ravel(), weights=draws))
    if duplicate is not None and n_kept:
        out["dup_rate"] = float(np.asarray(duplicate, dtype=bool)[keep].mean())
    return out


def pruning_curves(
    scores: RunScores,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    strategies: Sequence[str] | None = None,
    budget_tokens: float | None = None,
) -> tuple[pl.DataFrame, list[Point], list[str]]:
    """Decide every (strategy, fraction) point from the stored scores and measure its kept set.

    Args:
        scores: The run's scores (:func:`winnow.pipeline.report.scores.load_run`).
        fractions: Keep fractions, each in (0, 1].
        strategies: Strategies (default every supported one of
            :data:`winnow.pipeline.report.decisions.CURVE_STRATEGIES`).
        budget_tokens: Budget of ``predicted_error`` (default: see :func:`winnow.pipeline.report.law.resolve_budget`).

    Returns:
        The ``pruning_curves.csv`` frame (module doc), the points' decisions, and notes for the report.
    """
    fractions = _check_fractions(fractions)
    names, notes = supported_strategies(scores, strategies)
    f = scores.frame
    words = f["n_words"].cast(pl.Float64).fill_null(0.0).to_numpy()
    budget, budget_source = resolve_budget(scores.cfg, int(words.sum()), budget_tokens)
    buckets = quality_buckets(f, scores.cfg, scores.quality)
    law = bucket_law(scores.cfg, buckets)
    quality = f["quality_score"].cast(pl.Float64).fill_null(np.nan).to_numpy() if scores.quality else None
    clusters = f["cluster_id"].to_numpy() if scores.clusters else None
    domain = f["domain"].to_numpy()
    dup = None
    if scores.dedup:
        dup = is_duplicate(f["dup_max_sim"].cast(pl.Float32).fill_null(np.nan).to_numpy(), scores.cfg.dedup.eps)
    rows, points = [], []
    exceeded: list[str] = []
    short: list[str] = []
    upsampled: list[str] = []
    with prune_logs_off():  # its per-decision warnings are collected into the notes instead
        for s in names:
            for frac in fractions:
                d = decide_point(scores, s, frac)
                repeat = d.repeat if d.repeat is not None else d.keep.astype(np.int32)
                if d.summary.get("target_exceeds_survivors"):
                    exceeded.append(f"{frac:g}")
                if d.summary.get("shortfall"):
                    short.append(f"{s} at {frac:g} ({d.summary['shortfall']} target tokens not drawn)")
                if d.repeat is not None and int(d.repeat.sum()) > int(d.keep.sum()):
                    upsampled.append(f"{s} at {frac:g} ({int(d.keep.sum()):,} for {int(d.repeat.sum()):,} draws)")
                m = kept_metrics(
                    d.keep, repeat, words, quality_score=quality, cluster_id=clusters, domain=domain, duplicate=dup
                )
                composition = bucket_tokens(d.keep, buckets, words)
                rows.append(
                    {
                        "strategy": s,
                        "keep_fraction": frac,
                        "target": int(math.floor(frac * f.height + 0.5)),
                        **m,
                        "budget_tokens": budget,
                        "predicted_error": predicted_error(composition, budget, law),
                        **composition_columns(composition),
                    }
                )
                points.append(Point(s, frac, d.keep, np.asarray(repeat, dtype=np.int64)))
    if exceeded:
        notes.append(
            f"dbp at keep fraction {', '.join(exceeded)}: the target exceeds the documents left after SemDeDup at "
            f"eps={scores.cfg.dedup.eps:g}, so the least-duplicated duplicates were kept too"
        )
    if upsampled:
        notes.append(
            "strata short of their quota were upsampled with replacement (distinct documents for draws; the repeats "
            f"are in n_draws and tokens_kept): {'; '.join(upsampled)}"
        )
    if short:
        notes.append(f"no eligible document in some strata, fewer draws than the target: {'; '.join(short)}")
    notes.append(f"budget of predicted_error: {budget:,} tokens ({budget_source})")
    notes.append(
        f"predicted_error: the Goyal law per quality bucket ({', '.join(buckets.labels)}; mix.pools.quality = "
        f"{scores.cfg.mix.pools.quality}) on each kept set's unique tokens per bucket (unique_tokens_<bucket>); "
        f"a, d: {law.a_source}"
    )
    return nan_to_null(pl.DataFrame(rows)), points, notes


def nan_to_null(frame: pl.DataFrame) -> pl.DataFrame:
    """Missing metrics are nulls (empty CSV cells), not NaN."""
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    out = sorted({float(x) for x in fractions})
    bad = [x for x in out if not (0.0 < x <= 1.0 and math.isfinite(x))]
    if not out or bad:
        msg = f"keep fractions must be in (0, 1], got {', '.join(f'{x:g}' for x in (bad or out)) or 'none'}"
        raise ConfigError(msg)
    return out
