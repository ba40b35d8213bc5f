"""The report's other tables: score histograms with their cuts, cluster sizes, and the kept share per domain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from winnow.clustering.semdedup import is_duplicate
from winnow.pipeline.report.decisions import Point
from winnow.pipeline.report.scores import RunScores

__all__ = ["cluster_size_table", "domain_share_table", "score_histogram_table"]


def score_histogram_table(scores: RunScores, fractions: Sequence[float], bins: int = 40) -> pl.DataFrame:
    """Long table behind ``score_histograms.png``: per score, ``bin`` rows and ``cut`` / ``threshold`` rows.

    Columns: ``score, kind, x0, x1, count, keep_fraction, label``. ``bin``: a histogram bin ``[x0, x1)`` with its
    ``count``. ``cut``: ``x0`` is the global cut that keeps ``keep_fraction`` of the documents by this score
    (quality: the highest scores; distance: the farthest, prototypicality_hard; similarity: the least duplicated,
    semdedup). ``threshold``: the SemDeDup duplicate threshold ``1 − dedup.eps``.
    """
    f = scores.frame
    rows: list[dict[str, Any]] = []
    spec = []
    if scores.quality:
        spec.append(("quality_score", "keep the highest"))
    if scores.clusters:
        spec.append(("dist_to_centroid", "keep the farthest (prototypicality_hard)"))
    if scores.dedup:
        spec.append(("dup_max_sim", "keep the least duplicated (semdedup)"))
    for name, how in spec:
        v = f[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        v = v[np.isfinite(v)]
        if len(v) == 0:
            continue
        counts, edges = np.histogram(v, bins=bins)
        for c, x0, x1 in zip(counts, edges[:-1], edges[1:], strict=True):
            rows.append({"score": name, "kind": "bin", "x0": float(x0), "x1": float(x1), "count": int(c),
                         "keep_fraction": None, "label": None})  # fmt: skip
        for frac in fractions:
            if frac >= 1.0:
                continue
            q = 1.0 - frac if name != "dup_max_sim" else frac
            if name == "dup_max_sim":  # documents without a predecessor (null) come first
                n_null = f.height - len(v)
                q = (frac * f.height - n_null) / max(len(v), 1)
                if q <= 0:
                    continue
            rows.append({"score": name, "kind": "cut", "x0": float(np.quantile(v, min(max(q, 0.0), 1.0))),
                         "x1": None, "count": None, "keep_fraction": frac, "label": how})  # fmt: skip
        if name == "dup_max_sim":
            rows.append({"score": name, "kind": "threshold", "x0": 1.0 - scores.cfg.dedup.eps, "x1": None,
                         "count": None, "keep_fraction": None,
                         "label": f"duplicate threshold 1 - eps (eps = {scores.cfg.dedup.eps:g})"})  # fmt: skip
    schema = {"score": pl.String, "kind": pl.String, "x0": pl.Float64, "x1": pl.Float64, "count": pl.Int64,
              "keep_fraction": pl.Float64, "label": pl.String}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def cluster_size_table(scores: RunScores) -> pl.DataFrame:
    """``cluster_id, size, size_after_dedup, rank`` per cluster (rank 1 = largest), behind ``cluster_sizes.png``."""
    f = scores.frame
    k = scores.centroids.shape[0] if scores.centroids is not None else int(f["cluster_id"].max()) + 1
    labels = f["cluster_id"].to_numpy()
    size = np.bincount(labels, minlength=k)
    if scores.dedup:
        dup = is_duplicate(f["dup_max_sim"].cast(pl.Float32).fill_null(np.nan).to_numpy(), scores.cfg.dedup.eps)
        after = np.bincount(labels[~dup], minlength=k)
    else:
        after = size
    order = np.lexsort((np.arange(k), -size))
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(1, k + 1)
    return pl.DataFrame(
        {"cluster_id": np.arange(k, dtype=np.int64), "size": size.astype(np.int64),
         "size_after_dedup": after.astype(np.int64), "rank": rank}
    ).sort("rank")  # fmt: skip


def domain_share_table(scores: RunScores, points: Sequence[Point]) -> pl.DataFrame:
    """``strategy, keep_fraction, domain, documents, kept, kept_share`` (share of the domain's documents kept)."""
    dom = scores.frame["domain"].to_numpy().astype(str)
    names, codes = np.unique(dom, return_inverse=True)
    total = np.bincount(codes, minlength=len(names))
    rows = []
    for p in points:
        kept = np.bincount(codes[p.keep], minlength=len(names))
        for i, name in enumerate(names):
            share = float(kept[i] / total[i])
            rows.append({"strategy": p.strategy, "keep_fraction": p.fraction, "domain": str(name),
                         "documents": int(total[i]), "kept": int(kept[i]), "kept_share": share})  # fmt: skip
    schema = {"strategy": pl.String, "keep_fraction": pl.Float64, "domain": pl.String, "documents": pl.Int64,
              "kept": pl.Int64, "kept_share": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)
