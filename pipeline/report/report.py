"""Run reports: pruning curves from stored scores, a measured proxy-LM curve, figures and ``report.md`` (issue #7).

``winnow report --run DIR`` writes ``DIR/report/``. Data first, then figures (STYLE rule 24): every PNG is drawn
from the CSV of the same name next to it, by one function that returns a ``matplotlib.figure.Figure`` (Agg canvas,
no pyplot state, no ``rcParams`` changes).

**Pruning curves** (``pruning_curves.csv``). For every strategy of :data:`CURVE_STRATEGIES` that the run's scores
support and every keep fraction, :func:`winnow.pipeline.prune.decide` — the same pure function the prune stage calls — is
run on the stored columns (assignments, SemDeDup similarities, quality ratings) with ``prune.strategy`` and
``prune.keep_fraction`` replaced. Nothing is embedded, clustered or deduplicated again. One row per point:

====================== =======================================================================================
``target``             N = ``round(keep_fraction · documents)``
``n_kept``             distinct documents kept
``n_draws``            documents drawn, repeats included (the quality strategies upsample short strata; = n_kept
                       for the others)
``tokens_kept``        Σ ``n_words`` × repeat over the kept documents (whitespace words, as ``quality/``'s
                       ``n_words`` and the mixer's default token count)
``unique_tokens_kept`` Σ ``n_words`` over the distinct kept documents
``mean_quality_score`` mean ``quality_score`` of the draws (empty without quality scores)
``cluster_coverage``   share of the non-empty clusters with at least one kept document
``domain_entropy``     Shannon entropy, in bits, of the draws over domains (``quality_domain``; ``source`` when
                       the run has no quality scores; a null domain counts as ``unknown``)
``dup_rate``           share of the distinct kept documents that are semantic duplicates at ``dedup.eps``
                       (``dup_max_sim ≥ 1 − eps``: the stored SemDeDup definition, whether or not the
                       higher-ranked member they duplicate is kept)
``budget_tokens``      the training budget: ``mix.budget_tokens`` (or ``mix.flops / (6 · mix.model_params)``) of
                       the run's config, else the corpus's tokens (one epoch of the unpruned corpus)
``predicted_error``    Goyal et al. (2024) error at ``budget_tokens`` of the kept set taken as **one pool** of
                       ``unique_tokens_kept`` unique tokens (:func:`winnow.mixers.laws.goyal_error`)
====================== =======================================================================================

The predicted error uses the parameters the mixer would use for a single bucket named ``all``
(:func:`winnow.mixers.planner.resolve_law`: ``mix.law.a``/``d``/``buckets.all``, then ``mix.law.fitted``, then the
reference defaults ``a = 0.025``, ``d = 0.1``, ``b = -0.12``, ``tau = 6``). With one ``b`` for every kept set, the
prediction sees **quantity and repetition only**: two strategies keeping the same number of tokens get the same
predicted error. Upsampled repeats are not unique tokens, so the pool size is ``unique_tokens_kept``. Quality
differences between strategies show up in ``mean_quality_score`` and, measured, in ``proxy_loss``.

**Proxy LM** (``--proxy lm``, :mod:`winnow.pipeline.report.proxy_lm`). A small byte-level causal LM is trained from scratch on
each point's kept documents (minus a fixed held-out 5% of the corpus, excluded from every training set) for a fixed
number of tokens, and its held-out loss is ``proxy_loss`` (nats per byte; with ``repeats`` > 1 the mean over runs
with seeds ``seed, seed + 1, …`` and their standard deviation ``proxy_loss_sd``). Points with the same training set
(e.g. every strategy at fraction 1) are trained once. The budget and model size are columns of the CSV
(``proxy_tokens``, ``proxy_params``, ``proxy_layers``, ``proxy_d_model``, ``proxy_context``, ``proxy_seed``,
``proxy_repeats``), as are the training pool (``proxy_pool_tokens``) and the epochs over it (``proxy_epochs``).
The held-out loss at evenly spaced checkpoints goes to ``proxy_checkpoints.csv`` and ``law_fit.csv``: the Goyal law
is fitted to it (``winnow.mixers.fit.fit_goyal``, one pool per strategy, samples = tokens seen, pool size = the training
pool), the last checkpoint of every point held out, and ``law_fit.png`` shows the observed points, the fitted
curves and the extrapolated region.

**Figures**: ``pruning_curves.png`` (every metric against the keep fraction, one line per strategy),
``score_histograms.png`` (quality score, distance to centroid, SemDeDup similarity, with the cut that keeps each
fraction and the duplicate threshold), ``cluster_sizes.png`` (cluster sizes by rank, log scale), ``domain_share.png``
(kept share per domain and strategy at one fraction), ``law_prediction.png`` (the law's predicted error against the
kept pool's unique tokens) and, with the proxy, ``law_fit.png``. ``report.md`` links them; ``report.html`` embeds
them and needs nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import typer
import yaml
from loguru import logger
from pydantic import ValidationError
from winnow.clustering.semdedup import is_duplicate
from winnow.core.errors import ConfigError, CurationError
from winnow.core.io import Shard, list_shards
from winnow.core.rundir import RunDir
from winnow.pipeline.config import WinnowConfig, apply_override, format_validation_error, parse_override

import winnow

__all__ = [
    "CURVE_STRATEGIES",
    "DEFAULT_FRACTIONS",
    "Report",
    "RunScores",
    "build_report",
    "cluster_size_table",
    "domain_share_table",
    "fig_cluster_sizes",
    "fig_domain_share",
    "fig_law_fit",
    "fig_law_prediction",
    "fig_pruning_curves",
    "fig_score_histograms",
    "kept_metrics",
    "law_prediction_table",
    "load_run",
    "pruning_curves",
    "report_command",
    "score_histogram_table",
]

#: Keep fractions of a report unless ``--fractions`` says otherwise (1.0 is the common anchor of every curve).
DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
#: Strategies of the pruning curves, in plotting order (each where the run's scores support it).
CURVE_STRATEGIES: tuple[str, ...] = (
    "random", "semdedup", "prototypicality_easy", "prototypicality_hard", "dbp", "quality", "dataman_level",
)  # fmt: skip
REPORT_DIR = "report"
#: Metric columns of ``pruning_curves.csv`` drawn in ``pruning_curves.png``: column -> (panel title, y label).
METRICS: dict[str, tuple[str, str]] = {
    "tokens_kept": ("tokens kept", "whitespace words (× repeat)"),
    "mean_quality_score": ("mean quality score", "quality_score (1–5)"),
    "cluster_coverage": ("cluster coverage", "share of clusters kept"),
    "domain_entropy": ("domain entropy", "bits"),
    "dup_rate": ("duplicate rate", "share of kept docs"),
    "predicted_error": ("predicted error (Goyal law)", "error at the budget"),
    "proxy_loss": ("proxy LM held-out loss (± sd over repeats)", "nats per byte"),
}
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "h")


def _style(strategy: str) -> dict[str, Any]:
    """The same colour and marker for a strategy in every figure."""
    names = list(CURVE_STRATEGIES)
    i = names.index(strategy) if strategy in names else len(names) + sum(map(ord, strategy)) % 2
    return {"color": _COLORS[i % len(_COLORS)], "marker": _MARKERS[i % len(_MARKERS)]}


# =============================================================================================================
# Loading a run
# =============================================================================================================
@dataclass
class RunScores:
    """Every stored score of a run, one row per valid document in canonical order (shards by name, rows in order).

    Args:
        run: The run directory.
        cfg: The run's resolved config (``config.resolved.yaml``) with the report's ``--set`` overrides.
        frame: ``stem, pos, id`` + ``cluster_id, dist_to_centroid`` (clusters) + ``dup_max_sim, dup_nn_id`` (dedup)
            + the quality columns (quality) + ``n_words`` and ``domain`` (always) + ``text`` (when asked for).
        centroids: ``centroids.npy``, or None without clusters.
        clusters: Whether assignments were found.
        dedup: Whether SemDeDup similarities were found.
        quality: Whether quality ratings were found.
        domain_column: The column ``domain`` was taken from (``quality_domain``, ``source``, another, or ``none``).
        notes: Things the reader of the report should know (fallbacks taken).
    """

    run: RunDir
    cfg: WinnowConfig
    frame: pl.DataFrame
    centroids: np.ndarray | None
    clusters: bool
    dedup: bool
    quality: bool
    domain_column: str
    notes: list[str] = field(default_factory=list)


def _run_config(rd: RunDir, sets: Sequence[str] | None, inputs: Sequence[str] | None) -> WinnowConfig:
    if not rd.exists("config.resolved.yaml"):
        msg = f"{rd.url}: not a winnow run directory (no config.resolved.yaml); run `winnow run` first"
        raise ConfigError(msg)
    data = yaml.safe_load(rd.read_text("config.resolved.yaml")) or {}
    data.pop("winnow_version", None)
    data.pop("config_hash", None)
    io_section = data.setdefault("io", {})
    io_section["storage_options"] = {k: v for k, v in (io_section.get("storage_options") or {}).items()
                                     if v != "<redacted>"}  # fmt: skip
    source = f"{rd.url}/config.resolved.yaml"
    for item in sets or []:
        parts, value = parse_override(item)
        apply_override(data, parts, value)
        source += f" + --set {item}"
    if inputs:
        io_section["input"] = list(inputs)
    try:
        return WinnowConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def _shards(cfg: WinnowConfig, rd: RunDir, notes: list[str]) -> list[Shard]:
    """The run's shards: its inputs when they still resolve, else the shards found under ``embeddings/``."""
    try:
        return list_shards(cfg.io.input, cfg.io.storage_options)
    except (ConfigError, OSError, ValueError) as e:
        stems = [n[: -len(".parquet")] for n in rd.listdir("embeddings") if n.endswith(".parquet")]
        if not stems:
            msg = f"{rd.url}: no embeddings/ and the inputs do not resolve ({e}); run `winnow run` first"
            raise CurationError(msg) from None
        notes.append(
            f"the run's inputs ({', '.join(cfg.io.input)}) do not resolve from here; the {len(stems)} shard(s) under "
            "embeddings/ were used (pass --input to name the inputs)"
        )
        return [Shard(url=rd.url_of("embeddings", f"{s}.parquet"), stem=s, format="parquet") for s in stems]


def _read_columns(rd: RunDir, cfg: WinnowConfig, shards: list[Shard], columns: list[str]) -> pl.DataFrame | None:
    """``columns`` (plus the id) of every valid row, from ``curated/`` or, without it, from the input shards."""
    from winnow.core.io import ShardReader
    from winnow.core.layout import read_parquet

    id_f = cfg.io.id_field
    frames = []
    for shard in shards:
        rel = f"curated/{shard.stem}.parquet"
        if rd.exists(rel):
            with rd.fs.open(rd._p(rel), "rb") as f:
                names = pq.read_schema(f).names
            want = [id_f, *[c for c in columns if c in names and c != id_f]]
            t = read_parquet(rd, rel, columns=want)
        else:
            try:
                tables = [b.table for b in ShardReader(shard, cfg.io)]
            except Exception:  # noqa: BLE001 - a missing or unreadable input: the caller decides
                return None
            if not tables:
                continue
            t = pa.concat_tables(tables, promote_options="default")
            t = t.select([c for c in [id_f, *columns] if c in t.column_names])
        f = pl.from_arrow(t)
        assert isinstance(f, pl.DataFrame)
        frames.append(f.rename({id_f: "_id"}).with_columns(pl.lit(shard.stem).alias("_stem")))
    if not frames:
        return None
    return pl.concat(frames, how="diagonal_relaxed")


def load_run(
    run_dir: str,
    *,
    sets: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    domain: str = "auto",
    texts: bool = False,
) -> RunScores:
    """Read a run's stored scores (:func:`winnow.pipeline.prune.load_scores`), its centroids, word counts and domains.

    Args:
        run_dir: The run directory.
        sets: ``key=value`` overrides applied to the run's resolved config (e.g. ``dedup.eps=0.1``,
            ``mix.budget_tokens=1e6``).
        inputs: Replace ``io.input`` (where the input shards are now), used to list the shards.
        storage_options: fsspec options of a remote run directory.
        domain: ``auto`` (``quality_domain``, else ``source``), or the name of a column of the curated shards.
        texts: Also read every document's text (the proxy LM needs it).

    Returns:
        A :class:`RunScores`.

    Raises:
        ConfigError: Not a run directory, a bad override, an unknown domain column.
        CurationError: The stored outputs are missing or do not match each other.
    """
    from winnow.core.layout import bucket_name
    from winnow.pipeline.prune import load_scores

    rd = RunDir(run_dir, storage_options)
    cfg = _run_config(rd, sets, inputs)
    notes: list[str] = []
    shards = _shards(cfg, rd, notes)
    stems = [s.stem for s in shards]
    clusters = rd.exists("centroids.npy") and all(rd.exists(f"assignments/{s}.parquet") for s in stems)
    dedup = clusters and all(rd.exists(f"dedup/{bucket_name(b)}.parquet") for b in range(cfg.cluster.n_buckets))
    quality = all(rd.exists(f"quality/{s}.parquet") for s in stems)
    if not clusters and not all(rd.exists(f"embeddings/{s}.parquet") for s in stems):
        msg = f"{rd.url}: neither assignments/ nor embeddings/ cover the {len(stems)} shard(s): run `winnow run` first"
        raise CurationError(msg)
    try:
        frame = load_scores(rd, shards, cfg.io.id_field, clusters, dedup, cfg.cluster.n_buckets, quality=quality)
    except FileNotFoundError as e:
        msg = f"{rd.url}: a stored output is missing ({e}); run `winnow run` (or pass --input with the run's inputs)"
        raise CurationError(msg) from None
    centroids = np.load(io.BytesIO(rd.read_bytes("centroids.npy"))) if clusters else None
    for what, have in (("clusters", clusters), ("SemDeDup similarities", dedup), ("quality scores", quality)):
        if not have:
            notes.append(f"the run has no {what}: the strategies and metrics that need them are left out")

    want = [cfg.io.text_field] if (texts or "n_words" not in frame.columns) else []
    domain_col = "quality_domain" if (domain == "auto" and quality) else domain
    if domain == "auto" and not quality:
        domain_col = cfg.io.source_field
    if domain_col not in frame.columns and domain_col != "none":
        want.append(domain_col)
    extra = _read_columns(rd, cfg, shards, want) if want else None
    if extra is not None:
        if extra.height != frame.height or not extra["_id"].cast(pl.String).equals(
            frame["id"].cast(pl.String), check_names=False
        ):
            msg = f"{rd.url}: curated/ does not match the stored scores row for row: rerun `winnow run`"
            raise CurationError(msg)
        for c in want:
            if c in extra.columns and c not in frame.columns:
                frame = frame.with_columns(extra[c].alias("text" if c == cfg.io.text_field else c))
    if texts and "text" not in frame.columns:
        msg = f"{rd.url}: no curated/ shards and the inputs cannot be read: the proxy LM needs the texts"
        raise CurationError(msg)
    if "n_words" not in frame.columns:
        if "text" not in frame.columns:
            msg = f"{rd.url}: no word counts (quality/) and no texts (curated/ or the inputs) to count them from"
            raise CurationError(msg)
        frame = frame.with_columns(
            pl.col("text").fill_null("").str.count_matches(r"\S+").cast(pl.Int64).alias("n_words")
        )
    if domain_col == "none":
        frame = frame.with_columns(pl.lit("all").alias("domain"))
    elif domain_col in frame.columns:
        frame = frame.with_columns(pl.col(domain_col).cast(pl.String).fill_null("unknown").alias("domain"))
    elif domain == "auto":
        notes.append(f"no {domain_col} column: domain entropy and shares use one domain, 'all'")
        domain_col = "none"
        frame = frame.with_columns(pl.lit("all").alias("domain"))
    else:
        msg = f"--domain {domain}: no such column in the curated shards"
        raise ConfigError(msg)
    return RunScores(rd, cfg, frame, centroids, clusters, dedup, quality, domain_col, notes)


# =============================================================================================================
# Metrics of a kept set
# =============================================================================================================
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


# =============================================================================================================
# Budget and law
# =============================================================================================================
def resolve_budget(cfg: WinnowConfig, corpus_tokens: int, budget_tokens: float | None = None) -> tuple[int, str]:
    """The token budget of ``predicted_error``: the argument, the run's ``mix`` budget, else the corpus's tokens."""
    if budget_tokens is not None:
        if not budget_tokens >= 1:
            msg = f"--budget-tokens must be >= 1, got {budget_tokens:g}"
            raise ConfigError(msg)
        return int(budget_tokens), "--budget-tokens"
    try:
        tokens, source = cfg.mix.resolved_budget()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if tokens is not None:
        return int(tokens), str(source)
    return max(int(corpus_tokens), 1), "default: the corpus's tokens (one epoch of the unpruned corpus)"


def single_pool_law(cfg: WinnowConfig):
    """The Goyal law's parameters for one bucket ``all`` (:func:`winnow.mixers.planner.resolve_law`, as the mixer)."""
    from winnow.mixers.planner import resolve_law

    return resolve_law(cfg.mix, [("all", 1)], 1)


def predicted_error(unique_tokens: float, budget: int, law) -> float:
    """Goyal et al. error after ``budget`` tokens drawn from one pool of ``unique_tokens`` (nan for an empty pool)."""
    from winnow.mixers.laws import goyal_error

    if unique_tokens <= 0:
        return math.nan
    p = law.bucket("all")
    return float(goyal_error(budget, float(unique_tokens), law.a, p.b, p.tau, law.d))


# =============================================================================================================
# The sweep
# =============================================================================================================
@dataclass
class Point:
    """One (strategy, keep fraction) decision: kept rows and draws per row."""

    strategy: str
    fraction: float
    keep: np.ndarray
    repeat: np.ndarray


def supported_strategies(scores: RunScores, wanted: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """The strategies of ``wanted`` (default :data:`CURVE_STRATEGIES`) the run's scores support, and why others not."""
    from winnow.pipeline.prune import NEEDS_CLUSTERS, NEEDS_DEDUP, NEEDS_QUALITY

    out, notes = [], []
    for s in wanted or CURVE_STRATEGIES:
        if s not in CURVE_STRATEGIES:
            msg = f"unknown strategy {s!r}; allowed: {', '.join(CURVE_STRATEGIES)}"
            raise ConfigError(msg)
        if s in NEEDS_CLUSTERS and not scores.clusters:
            notes.append(f"{s}: left out, the run has no clusters")
        elif s in NEEDS_DEDUP and not scores.dedup:
            notes.append(f"{s}: left out, the run has no SemDeDup similarities")
        elif s in NEEDS_QUALITY and not scores.quality:
            notes.append(f"{s}: left out, the run has no quality scores")
        elif s == "dataman_level":
            level = scores.cfg.prune.dataman_level
            at = int((scores.frame["quality_overall"] == level).sum())
            if at == 0:
                notes.append(
                    f"dataman_level: left out, no document has quality_overall = {level} (prune.dataman_level)"
                )
            else:
                out.append(s)
        else:
            out.append(s)
    return out, notes


def _decide(scores: RunScores, strategy: str, fraction: float):
    from winnow.pipeline.prune import decide

    cfg = scores.cfg
    prune = cfg.prune.model_copy(update={"strategy": strategy, "keep_fraction": fraction, "keep_count": None})
    return decide(scores.frame, cfg.model_copy(update={"prune": prune}), scores.centroids)


def pruning_curves(
    scores: RunScores,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    strategies: Sequence[str] | None = None,
    budget_tokens: float | None = None,
) -> tuple[pl.DataFrame, list[Point], list[str]]:
    """Decide every (strategy, fraction) point from the stored scores and measure its kept set.

    Args:
        scores: The run's scores (:func:`load_run`).
        fractions: Keep fractions, each in (0, 1].
        strategies: Strategies (default every supported one of :data:`CURVE_STRATEGIES`).
        budget_tokens: Budget of ``predicted_error`` (default: see :func:`resolve_budget`).

    Returns:
        The ``pruning_curves.csv`` frame (module doc), the points' decisions, and notes for the report.
    """
    fractions = _check_fractions(fractions)
    names, notes = supported_strategies(scores, strategies)
    f = scores.frame
    words = f["n_words"].cast(pl.Float64).fill_null(0.0).to_numpy()
    budget, budget_source = resolve_budget(scores.cfg, int(words.sum()), budget_tokens)
    law = single_pool_law(scores.cfg)
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
    logger.disable("winnow.pipeline.prune")  # its per-decision warnings are collected into the notes instead
    try:
        for s in names:
            for frac in fractions:
                d = _decide(scores, s, frac)
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
                rows.append(
                    {
                        "strategy": s,
                        "keep_fraction": frac,
                        "target": int(math.floor(frac * f.height + 0.5)),
                        **m,
                        "budget_tokens": budget,
                        "predicted_error": predicted_error(m["unique_tokens_kept"], budget, law),
                    }
                )
                points.append(Point(s, frac, d.keep, np.asarray(repeat, dtype=np.int64)))
    finally:
        logger.enable("winnow.pipeline.prune")
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
    return _nan_to_null(pl.DataFrame(rows)), points, notes


def _nan_to_null(frame: pl.DataFrame) -> pl.DataFrame:
    """Missing metrics are nulls (empty CSV cells), not NaN."""
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    out = sorted({float(x) for x in fractions})
    bad = [x for x in out if not (0.0 < x <= 1.0 and math.isfinite(x))]
    if not out or bad:
        msg = f"keep fractions must be in (0, 1], got {', '.join(f'{x:g}' for x in (bad or out)) or 'none'}"
        raise ConfigError(msg)
    return out


# =============================================================================================================
# The other tables
# =============================================================================================================
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


def law_prediction_table(
    curves: pl.DataFrame, law, budget: int, corpus_tokens: int, max_repeats: float, points: int = 60
) -> pl.DataFrame:
    """``kind, strategy, keep_fraction, unique_tokens, unique_tokens_end, predicted_error, region`` behind
    ``law_prediction.png``.

    ``curve`` rows sample the law over pool sizes from ``budget / (4 · max_repeats)`` to ``4 ×`` the larger of the
    budget and the corpus; ``point`` rows are the pruning-curve points; ``region`` rows span ``[unique_tokens,
    unique_tokens_end]``: ``beyond max_repeats`` (the budget would repeat the pool more than ``mix.max_repeats``
    times) and ``extrapolated`` (more unique tokens than the corpus holds).
    """
    lo = max(1.0, budget / (4.0 * max_repeats))
    hi = 4.0 * max(budget, corpus_tokens)
    grid = np.geomspace(lo, hi, points)
    rows: list[dict[str, Any]] = [
        {"kind": "region", "unique_tokens": lo, "unique_tokens_end": budget / max_repeats,
         "region": "beyond max_repeats"},
        {"kind": "region", "unique_tokens": float(corpus_tokens), "unique_tokens_end": hi, "region": "extrapolated"},
    ]  # fmt: skip
    rows += [{"kind": "curve", "unique_tokens": float(e), "predicted_error": predicted_error(e, budget, law)}
             for e in grid]  # fmt: skip
    for r in curves.iter_rows(named=True):
        rows.append({"kind": "point", "strategy": r["strategy"], "keep_fraction": r["keep_fraction"],
                     "unique_tokens": float(r["unique_tokens_kept"]),
                     "predicted_error": r["predicted_error"]})  # fmt: skip
    schema = {"kind": pl.String, "strategy": pl.String, "keep_fraction": pl.Float64, "unique_tokens": pl.Float64,
              "unique_tokens_end": pl.Float64, "predicted_error": pl.Float64, "region": pl.String}  # fmt: skip
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema)


# =============================================================================================================
# The proxy LM over the points
# =============================================================================================================
def proxy_curves(scores: RunScores, points: Sequence[Point], cfg) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Train the proxy LM on every point's kept set (minus the held-out slice); one row per point, checkpoints.

    Returns:
        ``(per_point, checkpoints, info)``: per point ``strategy, keep_fraction`` and the ``proxy_*`` columns;
        per checkpoint ``strategy, keep_fraction, tokens_seen, pool_tokens, loss``; and the held-out slice's size.
    """
    from winnow.pipeline.report.proxy_lm import encode, eval_windows, heldout_mask, train_proxy

    f = scores.frame
    texts = f["text"].fill_null("").to_list()
    held = heldout_mask(f["id"].cast(pl.String).to_list(), cfg.heldout_fraction, cfg.seed)
    heldout = eval_windows(encode([t for t, h in zip(texts, held, strict=True) if h]), cfg.context, cfg.eval_tokens)
    order = np.random.default_rng([cfg.seed, 0x50524F58]).permutation(f.height)  # one document order for all
    cache: dict[str, Any] = {}
    rows, ckpts = [], []
    for i, p in enumerate(points):
        counts = np.where(held, 0, p.repeat)
        key = hashlib.sha256(counts.astype(np.int64).tobytes()).hexdigest()
        if key not in cache:
            docs = order[counts[order] > 0]
            docs = np.repeat(docs, counts[docs])
            cache[key] = []
            if len(docs):
                stream = encode([texts[j] for j in docs])
                cache[key] = [
                    train_proxy(stream, heldout, replace(cfg, seed=cfg.seed + r)) for r in range(cfg.repeats)
                ]
                runs = cache[key]
                losses = np.array([r.loss for r in runs])
                logger.info(
                    f"proxy {i + 1}/{len(points)}: {p.strategy} @ {p.fraction:g}: loss {losses.mean():.4f}"
                    + (f" ± {losses.std(ddof=1):.4f}" if len(runs) > 1 else "")
                    + f" ({runs[0].epochs:.3g} epochs of {runs[0].train_tokens:,} tokens, "
                    f"{sum(r.seconds for r in runs):.1f}s)"
                )
        runs = cache[key]
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
    info = {"heldout_documents": int(held.sum()), "heldout_tokens": int(heldout.shape[0] * cfg.context),
            "trained_points": sum(1 for v in cache.values() if v),
            "device": next((v[0].device for v in cache.values() if v), "-")}  # fmt: skip
    schema = {"strategy": pl.String, "keep_fraction": pl.Float64, "tokens_seen": pl.Int64, "pool_tokens": pl.Int64,
              "loss": pl.Float64}  # fmt: skip
    return _nan_to_null(pl.DataFrame(rows)), pl.DataFrame(ckpts, schema=schema), info


def law_fit_table(checkpoints: pl.DataFrame) -> tuple[pl.DataFrame, dict | None, str | None]:
    """Fit the Goyal law to the proxy checkpoints (one pool per strategy); the table behind ``law_fit.png``.

    Every point's last checkpoint is held out (``holdout`` = the points per strategy: their ``tokens_seen`` tie
    at the maximum). Columns: ``kind`` (``observed`` / ``fitted``), ``strategy, keep_fraction, tokens_seen,
    pool_tokens, loss, predicted, heldout``.

    Returns:
        The table, the fit's JSON (``FitResult.to_dict()``), and why there is no fit (or None).
    """
    from winnow.mixers.fit import fit_goyal
    from winnow.mixers.laws import goyal_error

    schema = {"kind": pl.String, "strategy": pl.String, "keep_fraction": pl.Float64,
              "tokens_seen": pl.Float64, "pool_tokens": pl.Float64, "loss": pl.Float64, "predicted": pl.Float64,
              "heldout": pl.Boolean}  # fmt: skip
    if checkpoints.height == 0:
        return pl.DataFrame([], schema=schema), None, "no proxy checkpoints"
    per_pool = checkpoints.group_by("strategy").agg(pl.col("keep_fraction").n_unique())["keep_fraction"].max()
    runs = {
        "samples": checkpoints["tokens_seen"].to_list(),
        "pool_size": checkpoints["pool_tokens"].to_list(),
        "error": checkpoints["loss"].to_list(),
        "pool": checkpoints["strategy"].to_list(),
    }
    try:
        fit = fit_goyal(runs, holdout=int(per_pool))
    except ValueError as e:
        return pl.DataFrame([], schema=schema), None, f"the law could not be fitted: {e}"
    params = fit.params
    by_pool = {p.name: p for p in params.pools}
    held = np.zeros(checkpoints.height, dtype=bool)
    held[list(fit.heldout_index)] = True
    rows = []
    for i, r in enumerate(checkpoints.iter_rows(named=True)):
        pp = by_pool[r["strategy"]]
        pred = float(goyal_error(r["tokens_seen"], r["pool_tokens"], params.a, pp.b, pp.tau, params.d))
        rows.append({"kind": "observed", **{k: r[k] for k in ("strategy", "keep_fraction", "tokens_seen",
                     "pool_tokens", "loss")}, "predicted": pred, "heldout": bool(held[i])})  # fmt: skip
    seen = checkpoints["tokens_seen"].to_numpy().astype(np.float64)
    grid = np.geomspace(seen.min() / 2, seen.max() * 4, 50)
    for (s, frac), g in checkpoints.group_by(["strategy", "keep_fraction"], maintain_order=True):
        pp = by_pool[s]
        e = float(g["pool_tokens"][0])
        pred = goyal_error(grid, e, params.a, pp.b, pp.tau, params.d)
        for n, y in zip(grid, pred, strict=True):
            rows.append({"kind": "fitted", "strategy": s, "keep_fraction": frac, "tokens_seen": float(n),
                         "pool_tokens": e, "loss": None, "predicted": float(y), "heldout": None})  # fmt: skip
    return pl.DataFrame(rows, schema=schema), fit.to_dict(), None


# =============================================================================================================
# Figures: one function per figure, each from its table
# =============================================================================================================
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _compact(v: float) -> str:
    """1500 -> 1.5k, 2e6 -> 2M: tick labels of token counts."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def _log_ticks(axis, subs: Sequence[float] = (1.0, 2.0, 5.0), compact: bool = False) -> None:
    """Log scale with plain tick labels at ``subs`` × powers of ten (no ``2×10^4`` labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if axis.axis_name == "y":
        axis.axes.set_yscale("log")
    else:
        axis.axes.set_xscale("log")
    axis.set_major_locator(LogLocator(base=10, subs=tuple(subs)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v) if compact else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def fig_pruning_curves(curves: pl.DataFrame):
    """Every metric of ``pruning_curves.csv`` against the keep fraction, one line per strategy."""
    metrics = [m for m in METRICS if m in curves.columns and curves[m].cast(pl.Float64).is_finite().any()]
    ncols = 4 if len(metrics) > 6 else 3
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig = _figure(4.0 * ncols, 3.2 * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    strategies = list(dict.fromkeys(curves["strategy"].to_list()))
    for ax, m in zip(axes, metrics, strict=False):
        title, ylabel = METRICS[m]
        for s in strategies:
            g = curves.filter(pl.col("strategy") == s).sort("keep_fraction")
            x, y = g["keep_fraction"].to_numpy(), g[m].cast(pl.Float64).to_numpy()
            ax.plot(x, y, label=s, lw=1.5, ms=4, **_style(s))
            if m == "proxy_loss" and "proxy_loss_sd" in g.columns and g["proxy_loss_sd"].is_not_null().any():
                sd = g["proxy_loss_sd"].cast(pl.Float64).fill_null(0.0).to_numpy()
                ax.fill_between(x, y - sd, y + sd, color=_style(s)["color"], alpha=0.15, lw=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("keep fraction")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if m == "tokens_kept":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 7), frameon=False)
    fig.suptitle("Pruning curves: every strategy decided from the stored scores")
    return fig


def fig_score_histograms(table: pl.DataFrame):
    """Histograms of the scores, with the cut that keeps each fraction and the SemDeDup duplicate threshold."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    names = list(dict.fromkeys(table["score"].to_list()))
    labels = {"quality_score": "quality_score (higher = better)", "dist_to_centroid": "dist_to_centroid (1 − cos)",
              "dup_max_sim": "dup_max_sim (cosine to a higher-ranked member)"}  # fmt: skip
    fig = _figure(4.6 * max(1, len(names)), 4.4)
    axes = fig.subplots(1, max(1, len(names)), squeeze=False).ravel()
    fractions = sorted({x for x in table["keep_fraction"].drop_nulls().to_list()})
    cmap = colormaps["viridis"]
    color = {fr: cmap(i / max(1, len(fractions) - 1)) for i, fr in enumerate(fractions)}
    for ax, name in zip(axes, names, strict=False):
        t = table.filter(pl.col("score") == name)
        bins = t.filter(pl.col("kind") == "bin")
        ax.bar(bins["x0"].to_numpy(), bins["count"].to_numpy(), width=(bins["x1"] - bins["x0"]).to_numpy(),
               align="edge", color="#c7c7c7", edgecolor="#7f7f7f", lw=0.4)  # fmt: skip
        cuts = t.filter(pl.col("kind") == "cut")
        for r in cuts.iter_rows(named=True):
            ax.axvline(r["x0"], color=color[r["keep_fraction"]], ls="--", lw=1.3)
        for r in t.filter(pl.col("kind") == "threshold").iter_rows(named=True):
            ax.axvline(r["x0"], color="#d62728", lw=2.0, label=r["label"])
            ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
        how = cuts["label"][0] if cuts.height else ""
        ax.set_title(f"{name}\ncuts: {how}" if how else name, fontsize=9)
        ax.set_xlabel(labels.get(name, name))
        ax.set_ylabel("documents")
        ax.grid(alpha=0.3, axis="y")
    handles = [Line2D([], [], color=color[fr], ls="--", lw=1.3, label=f"keep {fr:g}") for fr in fractions]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, title=None)
    fig.suptitle("Score distributions and the global cut that keeps each fraction (dashed)")
    return fig


def fig_cluster_sizes(table: pl.DataFrame):
    """Cluster sizes by rank (largest first), before and after SemDeDup, on a log scale."""
    fig = _figure(6.4, 4.0)
    ax = fig.subplots()
    t = table.sort("rank")
    ax.plot(t["rank"].to_numpy(), t["size"].to_numpy(), "o-", ms=3, lw=1.2, label="size", color="#1f77b4")
    after = t.sort("size_after_dedup", descending=True)
    if not t["size"].equals(t["size_after_dedup"]):
        ax.plot(np.arange(1, t.height + 1), after["size_after_dedup"].to_numpy(), "s--", ms=3, lw=1.0,
                label="after SemDeDup (sorted)", color="#ff7f0e")  # fmt: skip
    _log_ticks(ax.yaxis)
    ax.set_xlabel("cluster rank (1 = largest)")
    ax.set_ylabel("documents (log scale)")
    sizes = t["size"].to_numpy()
    ax.set_title(
        f"{t.height} clusters: median {np.median(sizes):g}, max {sizes.max()}, empty {(sizes == 0).sum()}", fontsize=10
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def fig_domain_share(table: pl.DataFrame, fraction: float):
    """Kept share per domain (rows) and strategy (columns) at one keep fraction, as an annotated heatmap."""
    t = table.filter(pl.col("keep_fraction") == fraction)
    strategies = list(dict.fromkeys(t["strategy"].to_list()))
    totals = (
        t.group_by("domain").agg(pl.col("documents").first()).sort(["documents", "domain"], descending=[True, False])
    )
    domains = totals["domain"].to_list()
    grid = np.full((len(domains), len(strategies)), np.nan)
    for r in t.iter_rows(named=True):
        grid[domains.index(r["domain"]), strategies.index(r["strategy"])] = r["kept_share"]
    fig = _figure(1.3 * len(strategies) + 3.6, 0.36 * len(domains) + 2.4)
    ax = fig.subplots()
    im = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="Blues", aspect="auto")
    for i in range(len(domains)):
        for j in range(len(strategies)):
            v = grid[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
    ax.set_xticks(range(len(strategies)), strategies, rotation=30, ha="right")
    docs = dict(zip(totals["domain"].to_list(), totals["documents"].to_list(), strict=True))
    ax.set_yticks(range(len(domains)), [f"{d} ({docs[d]:,})" for d in domains])
    ax.set_xlabel("strategy")
    ax.set_ylabel("domain (documents)")
    ax.set_title(f"Share of each domain's documents kept at keep fraction {fraction:g}", fontsize=10)
    fig.colorbar(im, ax=ax, label="kept share")
    return fig


def fig_law_prediction(table: pl.DataFrame, budget: int):
    """The Goyal law's predicted error against the kept pool's unique tokens, with the pruning-curve points."""
    fig = _figure(8.0, 4.6)
    ax = fig.subplots()
    curve = table.filter(pl.col("kind") == "curve").sort("unique_tokens")
    ax.plot(curve["unique_tokens"].to_numpy(), curve["predicted_error"].to_numpy(), color="black", lw=1.5,
            label="law (one pool)")  # fmt: skip
    for r in table.filter(pl.col("kind") == "region").iter_rows(named=True):
        colour = "#d62728" if r["region"] == "beyond max_repeats" else "#7f7f7f"
        if r["unique_tokens_end"] > r["unique_tokens"]:
            ax.axvspan(r["unique_tokens"], r["unique_tokens_end"], color=colour, alpha=0.12, label=r["region"])
    pts = table.filter(pl.col("kind") == "point")
    for s in dict.fromkeys(pts["strategy"].to_list()):
        g = pts.filter(pl.col("strategy") == s)
        st = _style(s)
        ax.scatter(g["unique_tokens"].to_numpy(), g["predicted_error"].to_numpy(), s=22, color=st["color"],
                   marker=st["marker"], label=s, zorder=3)  # fmt: skip
    ax.axvline(budget, color="#2ca02c", ls=":", lw=1.2, label=f"budget ({budget:,.0f} tokens)")
    _log_ticks(ax.xaxis, compact=True)
    ax.set_xlim(curve["unique_tokens"].min(), curve["unique_tokens"].max())
    ax.set_xlabel("unique tokens of the kept pool (E, whitespace words)")
    ax.set_ylabel("predicted error at the budget")
    ax.grid(alpha=0.3, which="both")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right upper", frameon=False)
    ax.set_title("Goyal et al. 2024 law: the kept set as one pool, trained for the budget", fontsize=10)
    return fig


def fig_law_fit(table: pl.DataFrame):
    """The Goyal law fitted to the proxy-LM checkpoints: observed points, fitted curves, extrapolated region."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    obs = table.filter(pl.col("kind") == "observed")
    fit = table.filter(pl.col("kind") == "fitted")
    strategies = list(dict.fromkeys(obs["strategy"].to_list()))
    ncols = min(4, max(1, len(strategies)))
    nrows = math.ceil(len(strategies) / ncols)
    fig = _figure(max(3.8 * ncols, 9.0), 3.3 * nrows + 1.2)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    fractions = sorted(set(obs["keep_fraction"].to_list()))
    cmap = colormaps["viridis"]
    color = {fr: cmap(i / max(1, len(fractions) - 1)) for i, fr in enumerate(fractions)}
    train_max = obs.filter(~pl.col("heldout"))["tokens_seen"].max()
    x_max = fit["tokens_seen"].max()
    for ax, s in zip(axes, strategies, strict=False):
        ax.axvspan(train_max, x_max, color="#7f7f7f", alpha=0.12)
        for fr in fractions:
            g = fit.filter((pl.col("strategy") == s) & (pl.col("keep_fraction") == fr))
            ax.plot(g["tokens_seen"].to_numpy(), g["predicted"].to_numpy(), color=color[fr], lw=1.2)
            o = obs.filter((pl.col("strategy") == s) & (pl.col("keep_fraction") == fr))
            tr, ho = o.filter(~pl.col("heldout")), o.filter(pl.col("heldout"))
            ax.scatter(tr["tokens_seen"].to_numpy(), tr["loss"].to_numpy(), color=color[fr], s=18, zorder=3)
            ax.scatter(ho["tokens_seen"].to_numpy(), ho["loss"].to_numpy(), facecolors="none", edgecolors=color[fr],
                       s=40, lw=1.4, zorder=3)  # fmt: skip
        _log_ticks(ax.xaxis, compact=True)
        _log_ticks(ax.yaxis, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0))
        ax.set_title(s, fontsize=10)
        ax.set_xlabel("training tokens seen")
        ax.set_ylabel("held-out loss (nats/byte)")
        ax.grid(alpha=0.3, which="both")
    for ax in axes[len(strategies) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=color[fr], marker="o", lw=1.2, label=f"keep {fr:g}") for fr in fractions]
    handles += [
        Line2D([], [], ls="", marker="o", mfc="none", mec="black", label="held out (last checkpoint)"),
        Line2D([], [], color="#7f7f7f", alpha=0.4, lw=8, label="extrapolated"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), frameon=False, fontsize=8)
    fig.suptitle("Goyal et al. 2024 law fitted to the proxy LM (pool = strategy, E = its kept tokens)")
    return fig


# =============================================================================================================
# report.md / report.html
# =============================================================================================================
Block = tuple  # ("h", level, text) | ("p", text) | ("table", header, rows) | ("img", file, alt) | ("ul", items)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "–"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.{digits}g}"
    return str(v)


def _md(blocks: Sequence[Block]) -> str:
    out = []
    for b in blocks:
        if b[0] == "h":
            out.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "ul":
            out.append("\n".join(f"- {x}" for x in b[1]))
        elif b[0] == "table":
            header, rows = b[1], b[2]
            lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif b[0] == "img":
            out.append(f"![{b[2]}]({b[1]})")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def _html(blocks: Sequence[Block], images: dict[str, bytes], title: str) -> str:
    css = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 7px}"
        "th{background:#f3f3f3}td{text-align:right}td:first-child{text-align:left}img{max-width:100%}"
        "code{background:#f3f3f3;padding:0 3px}"
    )
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{css}</style></head><body>"]  # fmt: skip
    for b in blocks:
        if b[0] == "h":
            out.append(f"<h{b[1]}>{_inline_html(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            out.append(f"<p>{_inline_html(b[1])}</p>")
        elif b[0] == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(x)}</li>" for x in b[1]) + "</ul>")
        elif b[0] == "table":
            head = "".join(f"<th>{_inline_html(str(h))}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b[0] == "img":
            data = base64.b64encode(images[b[1]]).decode("ascii")
            out.append(f"<figure><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(b[1])}</figcaption></figure>")  # fmt: skip
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _stats_table(rd: RunDir) -> Block | None:
    if not rd.exists("stats.json"):
        return None
    stats = json.loads(rd.read_text("stats.json"))
    rows = []
    for name, s in stats.get("stages", {}).items():
        seconds = s.get("seconds") or 0.0
        rate = f"{s.get('kept', 0) / seconds:,.1f}" if seconds else "–"
        rows.append([name, _fmt(s.get("input")), _fmt(s.get("kept")), _fmt(s.get("dropped")),
                     _fmt(s.get("rejected")), f"{seconds:,.1f}", rate])  # fmt: skip
    return ("table", ["stage", "input", "kept", "dropped", "rejected", "seconds", "docs/s"], rows)


def _plan_blocks(rd: RunDir) -> list[Block]:
    if not rd.exists("mixture_plan.json"):
        return [("p", "No `mixture_plan.json` in the run: run `winnow mix` to plan a mixture.")]
    plan = json.loads(rd.read_text("mixture_plan.json"))
    choice, budget, law = plan["choice"], plan["budget"], plan["law"]
    rows = [
        [c["m"], ", ".join(c["quality_buckets"]), _fmt(c["unique_tokens"]), _fmt(c["unique_epochs"]),
         _fmt(c["predicted_error"]), _fmt(c["within_cap"]), "**chosen**" if c["chosen"] else ""]
        for c in plan["candidates"]
    ]  # fmt: skip
    blocks: list[Block] = [
        ("p", f"Budget {budget['tokens']:,} tokens ({budget['source']}); the plan trains on the top "
              f"{choice['m']} quality bucket(s): {', '.join(choice['quality_buckets'])} (Goyal et al. law, "
              f"a = {law['a']['value']:g}, d = {law['d']['value']:g})."),
        ("p", f"Why: {choice['reason']}."),
        ("table", ["m", "quality buckets", "unique tokens", "epochs", "predicted error", "within cap", ""], rows),
    ]  # fmt: skip
    if plan.get("warnings"):
        blocks.append(("ul", [f"plan warning: {w}" for w in plan["warnings"]]))
    return blocks


@dataclass
class Report:
    """What :func:`build_report` wrote.

    Args:
        curves: The ``pruning_curves.csv`` frame.
        files: Paths written, relative to the run directory.
        notes: The report's notes.
        fit: The proxy law fit (``FitResult.to_dict()``), or None.
    """

    curves: pl.DataFrame
    files: list[str]
    notes: list[str]
    fit: dict | None = None


def build_report(
    run_dir: str,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    strategies: Sequence[str] | None = None,
    proxy=None,
    budget_tokens: float | None = None,
    sets: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    domain: str = "auto",
    storage_options: dict[str, Any] | None = None,
) -> Report:
    """Compute every table of a run's report, draw its figures and write ``<run>/report/`` (module doc).

    Args:
        run_dir: The run directory.
        fractions: Keep fractions (default :data:`DEFAULT_FRACTIONS`).
        strategies: Strategies (default every supported one of :data:`CURVE_STRATEGIES`).
        proxy: A :class:`winnow.pipeline.report.proxy_lm.ProxyConfig` to measure ``proxy_loss``, or None (default).
        budget_tokens: Budget of ``predicted_error`` (default ``mix.budget_tokens``, else the corpus's tokens).
        sets: ``key=value`` overrides of the run's resolved config.
        inputs: Where the run's input shards are now (replaces ``io.input``).
        domain: Domain column (``auto``: ``quality_domain``, else ``source``).
        storage_options: fsspec options of a remote run directory.

    Returns:
        A :class:`Report`.
    """
    scores = load_run(
        run_dir, sets=sets, inputs=inputs, storage_options=storage_options, domain=domain, texts=proxy is not None
    )
    rd = scores.run
    curves, points, notes = pruning_curves(scores, fractions, strategies, budget_tokens)
    if curves.height == 0:
        msg = "no strategy can be evaluated on this run: " + "; ".join(notes)
        raise CurationError(msg)
    notes = scores.notes + notes
    law = single_pool_law(scores.cfg)
    budget = int(curves["budget_tokens"][0])
    corpus_tokens = int(scores.frame["n_words"].cast(pl.Float64).fill_null(0).sum())
    fit_json = None
    fit_note = None
    tables: dict[str, pl.DataFrame] = {}
    proxy_info: dict[str, Any] = {}
    if proxy is not None:
        per_point, ckpts, proxy_info = proxy_curves(scores, points, proxy)
        curves = curves.join(per_point, on=["strategy", "keep_fraction"], how="left", maintain_order="left")
        tables["law_fit"], fit_json, fit_note = law_fit_table(ckpts)
        tables["proxy_checkpoints"] = ckpts
    tables = {"pruning_curves": curves, **tables}
    tables["score_histograms"] = score_histogram_table(scores, sorted(set(curves["keep_fraction"].to_list())))
    if scores.clusters:
        tables["cluster_sizes"] = cluster_size_table(scores)
    tables["domain_share"] = domain_share_table(scores, points)
    tables["law_prediction"] = law_prediction_table(curves, law, budget, corpus_tokens, scores.cfg.mix.max_repeats)

    fracs = sorted(set(curves["keep_fraction"].to_list()))
    ref_fraction = min(fracs, key=lambda x: (abs(x - 0.5), x))
    figures = {
        "pruning_curves": fig_pruning_curves(curves),
        "domain_share": fig_domain_share(tables["domain_share"], ref_fraction),
        "law_prediction": fig_law_prediction(tables["law_prediction"], budget),
    }
    if tables["score_histograms"].height:
        figures["score_histograms"] = fig_score_histograms(tables["score_histograms"])
    if "cluster_sizes" in tables:
        figures["cluster_sizes"] = fig_cluster_sizes(tables["cluster_sizes"])
    if "law_fit" in tables and tables["law_fit"].height:
        figures["law_fit"] = fig_law_fit(tables["law_fit"])

    files: list[str] = []
    for name, t in tables.items():
        rd.write_text(f"{REPORT_DIR}/{name}.csv", t.write_csv())
        files.append(f"{REPORT_DIR}/{name}.csv")
    images = {}
    for name, fig in figures.items():
        images[f"{name}.png"] = _png(fig)
        rd.write_bytes(f"{REPORT_DIR}/{name}.png", images[f"{name}.png"])
        files.append(f"{REPORT_DIR}/{name}.png")
    if fit_json is not None:
        rd.write_text(f"{REPORT_DIR}/law_fit.json", json.dumps(fit_json, indent=2))
        files.append(f"{REPORT_DIR}/law_fit.json")
    if fit_note:
        notes.append(fit_note)

    blocks = _report_blocks(scores, curves, law, budget, ref_fraction, figures, proxy, proxy_info, fit_json, notes)
    title = f"winnow report: {scores.cfg.run.name or rd.url.rsplit('/', 1)[-1]}"
    rd.write_text(f"{REPORT_DIR}/report.md", _md(blocks))
    rd.write_text(f"{REPORT_DIR}/report.html", _html(blocks, images, title))
    files += [f"{REPORT_DIR}/report.md", f"{REPORT_DIR}/report.html"]
    return Report(curves, files, notes, fit_json)


def curves_markdown(curves: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The pruning-curves table as report rows (the main columns, formatted)."""
    cols = ["strategy", "keep_fraction", "n_kept", "tokens_kept", "mean_quality_score", "cluster_coverage",
            "domain_entropy", "dup_rate", "predicted_error", "proxy_loss", "proxy_loss_sd"]  # fmt: skip
    if "n_draws" in curves.columns and (curves["n_draws"] != curves["n_kept"]).any():
        cols.insert(3, "n_draws")  # the quality strategies upsampled some strata
    cols = [c for c in cols if c in curves.columns and (c != "proxy_loss_sd" or curves[c].is_not_null().any())]
    rows = [[_fmt(r[c]) for c in cols] for r in curves.iter_rows(named=True)]
    return cols, rows


def _report_blocks(scores, curves, law, budget, ref_fraction, figures, proxy, proxy_info, fit_json, notes):
    rd, cfg, f = scores.run, scores.cfg, scores.frame
    name = cfg.run.name or rd.url.rsplit("/", 1)[-1]
    blocks: list[Block] = [
        ("h", 1, f"winnow report: {name}"),
        ("p", f"{f.height:,} documents in {f['stem'].n_unique()} shard(s), "
              f"{int(f['n_words'].cast(pl.Float64).fill_null(0).sum()):,} whitespace words. Config hash "
              f"`{cfg.fingerprint()}`, winnow {winnow.__version__}. Clusters: {_fmt(scores.clusters)} "
              f"(k = {cfg.cluster.k}), SemDeDup: {_fmt(scores.dedup)} (eps = {cfg.dedup.eps:g}), quality scores: "
              f"{_fmt(scores.quality)} ({cfg.score.backend}), domains from `{scores.domain_column}`."),
        ("h", 2, "Run summary (stats.json)"),
    ]  # fmt: skip
    stats = _stats_table(rd)
    blocks.append(stats if stats else ("p", "No `stats.json` in the run."))
    if rd.exists("prune.json"):
        p = json.loads(rd.read_text("prune.json"))
        reasons = ", ".join(f"{k} {v:,}" for k, v in (p.get("dropped_by_reason") or {}).items()) or "none"
        blocks.append(("p", f"The run's own decision: strategy `{p.get('strategy')}`, target "
                            f"{_fmt(p.get('target'))}, kept {p.get('kept', 0):,} of {p.get('n', 0):,} "
                            f"(dropped: {reasons})."))  # fmt: skip
    blocks += [("h", 2, "Mixture plan"), *_plan_blocks(rd)]
    blocks += [
        ("h", 2, "Pruning curves"),
        ("p", "Every strategy at every keep fraction, decided by the prune stage's own function from the stored "
              "scores (no re-embedding, re-clustering or re-deduplication). `tokens_kept`: whitespace words × "
              "repeat; `cluster_coverage`: share of non-empty clusters with a kept document; `domain_entropy`: "
              "bits over the kept documents' domains; `dup_rate`: share of kept documents with `dup_max_sim ≥ "
              f"1 − eps` (eps = {cfg.dedup.eps:g}); `predicted_error`: the Goyal et al. law at a budget of "
              f"{budget:,} tokens for one pool of the kept unique tokens (it sees quantity, not quality). "
              "Full table: `pruning_curves.csv`."),
        ("table", *curves_markdown(curves)),
        ("img", "pruning_curves.png", "pruning curves"),
    ]  # fmt: skip
    if proxy is not None:
        blocks.append(("p", f"Proxy LM: {proxy.layers} layers, d = {proxy.d_model}, context {proxy.context}, "
                            f"{int(curves['proxy_params'].drop_nulls().max() or 0):,} parameters, byte-level, "
                            f"{proxy.tokens_trained:,} training tokens per point (batch {proxy.batch_size}, lr "
                            f"{proxy.lr:g}, seed {proxy.seed}, {proxy.repeats} run(s) per point) on "
                            f"{proxy_info.get('device')}; held-out slice: "
                            f"{proxy_info.get('heldout_documents', 0):,} documents "
                            f"({proxy.heldout_fraction:.0%}, excluded from every training set), "
                            f"{proxy_info.get('heldout_tokens', 0):,} tokens evaluated; "
                            f"{proxy_info.get('trained_points', 0)} distinct training sets. `proxy_loss` is in nats "
                            "per byte."))  # fmt: skip
    if "score_histograms" in figures:
        blocks += [("h", 2, "Scores"), ("img", "score_histograms.png", "score histograms")]
    if "cluster_sizes" in figures:
        blocks += [("h", 2, "Clusters"), ("img", "cluster_sizes.png", "cluster sizes")]
    blocks += [("h", 2, "Domains"), ("p", f"Share of each domain's documents kept at keep fraction "
                                          f"{ref_fraction:g}; every fraction is in `domain_share.csv`."),
               ("img", "domain_share.png", "kept share per domain")]  # fmt: skip
    p_all = law.bucket("all")
    blocks += [
        ("h", 2, "Scaling law"),
        ("table", ["parameter", "value", "source"], [
            ["a", _fmt(law.a), law.a_source], ["d", _fmt(law.d), law.d_source],
            ["b (pool all)", _fmt(p_all.b), p_all.source], ["tau (pool all)", _fmt(p_all.tau), p_all.source],
        ]),
        ("img", "law_prediction.png", "law prediction"),
    ]  # fmt: skip
    if fit_json is not None:
        pools = ", ".join(f"{p['name']}: b = {p['b']:.3g}, tau = {p['tau']:.3g}" for p in fit_json["params"]["pools"])
        blocks += [
            ("p", f"Fitted to the proxy LM's checkpoints (`law_fit.csv`, `law_fit.json`): a = "
                  f"{fit_json['params']['a']:.3g}, d = {fit_json['params']['d']:.3g}; {pools}. Mean relative error "
                  f"{_fmt(fit_json['train_rel_error'])} on the training checkpoints, "
                  f"{_fmt(fit_json['heldout_rel_error'])} on the held-out last checkpoints."),
            ("img", "law_fit.png", "law fit"),
        ]  # fmt: skip
    if notes:
        blocks += [("h", 2, "Notes"), ("ul", list(notes))]
    return blocks


# =============================================================================================================
# The command
# =============================================================================================================
def _parse_list(text: str | None, what: str, cast=str) -> list | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    try:
        return [cast(x) for x in items]
    except ValueError:
        msg = f"{what}: expected a comma-separated list, got {text!r}"
        raise typer.BadParameter(msg) from None


def report_command(
    run: Annotated[str, typer.Option("--run", "-r", help="The run directory (written by `winnow run`).")],
    proxy: Annotated[
        str, typer.Option("--proxy", help="none, or lm: train a small byte-level LM per point (proxy_loss).")
    ] = "none",
    fractions: Annotated[
        str | None,
        typer.Option(
            "--fractions", help="Keep fractions, e.g. 0.1,0.2,0.5 (default 0.1,0.2,0.3,0.5,0.7,0.9,1)."
        ),  # fmt: skip
    ] = None,
    strategies: Annotated[
        str | None, typer.Option("--strategies", help="Strategies (default: every one the run's scores support).")
    ] = None,
    budget_tokens: Annotated[
        float | None,
        typer.Option(
            "--budget-tokens", help="Budget of predicted_error (default mix.budget_tokens, else the corpus)."
        ),
    ] = None,
    proxy_tokens: Annotated[int, typer.Option("--proxy-tokens", help="Proxy LM training tokens per point.")] = 200_000,
    proxy_layers: Annotated[int, typer.Option("--proxy-layers", help="Proxy LM layers.")] = 2,
    proxy_d_model: Annotated[int, typer.Option("--proxy-d-model", help="Proxy LM width.")] = 64,
    proxy_context: Annotated[int, typer.Option("--proxy-context", help="Proxy LM context (bytes).")] = 128,
    proxy_batch: Annotated[int, typer.Option("--proxy-batch", help="Proxy LM windows per step.")] = 32,
    proxy_device: Annotated[str, typer.Option("--proxy-device", help="auto, cpu or cuda.")] = "auto",
    proxy_threads: Annotated[int, typer.Option("--proxy-threads", help="torch CPU threads for the proxy LM.")] = 1,
    proxy_repeats: Annotated[
        int, typer.Option("--proxy-repeats", help="Proxy LM runs per point (seeds seed, seed+1, ...), averaged.")
    ] = 1,
    seed: Annotated[int | None, typer.Option("--seed", help="Proxy LM seed (default run.seed).")] = None,
    domain: Annotated[
        str, typer.Option("--domain", help="Domain column: auto (quality_domain, else source) or a curated column.")
    ] = "auto",
    input: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="Where the run's input shards are now (io.input).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a key of the run's config: --set dedup.eps=0.1; repeatable."),
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs (-v INFO).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on the console.")] = False,
) -> None:
    """Write <run>/report/: pruning curves of every strategy from the stored scores (CSV + PNG), score histograms,
    cluster sizes, kept share per domain, the scaling law, and report.md / report.html.

    With --proxy lm a small LM is trained on each point's kept documents for a fixed token budget and its held-out
    loss is reported beside the law's prediction (CPU: seconds per point with the defaults).

    Example: winnow report --run runs/quickstart --fractions 0.1,0.3,0.5,0.7,1 --proxy lm
    """
    from rich.console import Console
    from winnow.core.cli_util import exit_on_error
    from winnow.core.logging import setup_logging

    err = Console(stderr=True, soft_wrap=True)
    setup_logging(-1 if quiet else verbose)
    if proxy not in ("none", "lm"):
        raise typer.BadParameter(f"--proxy must be none or lm, got {proxy!r}")
    fracs = _parse_list(fractions, "--fractions", float)
    names = _parse_list(strategies, "--strategies")
    with exit_on_error(err):
        proxy_cfg = None
        if proxy == "lm":
            from winnow.pipeline.report.proxy_lm import ProxyConfig

            run_seed = seed
            if run_seed is None:
                run_seed = _run_config(RunDir(run), set_, None).run.seed
            try:
                proxy_cfg = ProxyConfig(tokens=proxy_tokens, layers=proxy_layers, d_model=proxy_d_model,
                                        context=proxy_context, batch_size=proxy_batch, device=proxy_device,
                                        threads=proxy_threads, seed=run_seed, repeats=proxy_repeats)  # fmt: skip
            except ValueError as e:
                raise ConfigError(str(e)) from None
        result = build_report(
            run, fractions=fracs or DEFAULT_FRACTIONS, strategies=names, proxy=proxy_cfg,
            budget_tokens=budget_tokens, sets=set_, inputs=input, domain=domain,
        )  # fmt: skip
    if not quiet:
        c = result.curves
        err.print(
            f"{c['strategy'].n_unique()} strategies × {c['keep_fraction'].n_unique()} keep fractions; "
            f"{len(result.files)} files",
            highlight=False,
        )
    typer.echo(f"{run.rstrip('/')}/{REPORT_DIR}/report.md")
