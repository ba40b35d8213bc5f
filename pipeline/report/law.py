"""The Goyal et al. (2024) law in the report: the training budget, the mixer's quality buckets, the predicted error of
every kept set from its bucket composition, and the law fitted per bucket to the proxy LM (DESIGN §3.7).

**Buckets.** The report puts every document in the quality bucket the mixer would (``mix.pools.quality``, the rule of
:func:`winnow.mixers.pools.quality_rule`): ``q1``..``q<n>`` by linear quantiles of ``quality_score``,
``overall_1``..``overall_5`` by DataMan level, or the one bucket ``all`` (no quality scores, or ``none``). The
quantile edges are taken over every valid document of the run (the mixer takes them over the kept documents: the
same edges when the run kept everything).

**Predicted error.** A kept set is the union of its buckets' kept parts: ``E_i`` = the unique tokens (whitespace
words) it keeps of bucket ``i``, and :func:`winnow.mixers.laws.goyal_union_error` at the budget, with ``b_k`` the
mean of the buckets' exponents weighted by ``E_i`` (``b_mean="samples"``: a pruned kept set holds parts of buckets, so
an equal-weight mean would give one bucket's last document the weight of another's millions) and ``mix.tau_scaling``.
Two kept sets with the same composition get the same error; with one bucket this is the one-pool law.

**The fit.** With the proxy LM, each bucket is trained on twice (its documents outside the held-out slice, and a
seeded subsample that the proxy budget repeats about :data:`LAW_EPOCHS` times, so ``tau`` is measured), and
:func:`winnow.mixers.fit.fit_goyal` fits shared ``a``, ``d`` and ``b``, ``tau`` per bucket to every checkpoint. The
checkpoints' tokens are converted to the mixer's unit (whitespace words: ``tokens_seen × words / pool_tokens`` of
each run), so ``law_fit.json`` is read by ``winnow mix`` as ``mix.law.fitted`` unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from winnow.core.errors import ConfigError
from winnow.mixers.fit import fit_goyal, read_fitted_law
from winnow.mixers.laws import GOYAL_NORMALIZER, goyal_error, goyal_union_error
from winnow.mixers.plan import DatamanLevels, OneBucket, QuantileBuckets
from winnow.mixers.planner import BucketParams, ResolvedLaw, linear_quantiles, resolve_law
from winnow.mixers.pools import (
    ALL,
    DATAMAN_LEVELS,
    QUALITY_OVERALL,
    QUALITY_SCORE,
    dataman_buckets,
    quality_rule,
    quantile_buckets,
)
from winnow.pipeline.config import WinnowConfig
from winnow.pipeline.report.decisions import Point
from winnow.pipeline.report.proxy_lm import heldout_mask

__all__ = [
    "FIT_FORMAT",
    "LAW_EPOCHS",
    "LAW_POINT",
    "QualityBuckets",
    "bucket_law",
    "bucket_tokens",
    "composition_columns",
    "fitted_bucket_law",
    "law_fit_table",
    "law_points",
    "law_prediction_table",
    "predicted_error",
    "predicted_errors",
    "quality_buckets",
    "resolve_budget",
    "single_pool_law",
]

#: ``format`` of ``law_fit.json``.
FIT_FORMAT = "winnow.law_fit/1"
#: The proxy points of the law fit are named ``law:<bucket>`` (never a strategy name).
LAW_POINT = "law:"
#: How often the proxy budget should repeat each bucket's small pool (the runs that measure ``tau``).
LAW_EPOCHS = 4.0
#: Proxy tokens per whitespace word assumed only to size the small pool (the fit uses each run's measured ratio).
TOKENS_PER_WORD_GUESS = 1.3
#: The column of the unique tokens a kept set holds of bucket ``<label>``.
COLUMN_PREFIX = "unique_tokens_"
UNIT = "tokens (whitespace words, the mixer's default mix.token_count)"


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
    return resolve_law(cfg.mix, [(ALL, 1)], 1)


# =============================================================================================================
# The mixer's quality buckets over the report's documents
# =============================================================================================================
@dataclass(frozen=True)
class QualityBuckets:
    """Every document's quality bucket under ``mix.pools.quality`` (module doc).

    Args:
        definition: The bucket rule, as the mixer's plan writes it (``pool_definition.quality``).
        labels: The buckets holding documents, best first.
        ranks: Bucket label -> rank (1 = best).
        codes: Per document, the index of its bucket in ``labels``.
    """

    definition: QuantileBuckets | DatamanLevels | OneBucket
    labels: tuple[str, ...]
    ranks: dict[str, int]
    codes: np.ndarray

    @property
    def n_buckets(self) -> int:
        """Buckets of the definition (``n_buckets``, the 5 DataMan levels, or 1), present or not."""
        if isinstance(self.definition, QuantileBuckets):
            return self.definition.n_buckets
        return DATAMAN_LEVELS if isinstance(self.definition, DatamanLevels) else 1

    def mask(self, label: str) -> np.ndarray:
        """Documents of bucket ``label``."""
        return self.codes == self.labels.index(label)

    def to_dict(self) -> dict[str, Any]:
        """The definition as JSON (``law_fit.json``'s ``buckets``), with the documents it was computed over."""
        return {**self.definition.model_dump(), "present": list(self.labels),
                "over": "every valid document of the run"}  # fmt: skip


def _definition(frame: pl.DataFrame, cfg: WinnowConfig, has_quality: bool):
    kind, n = cfg.mix.pools.quality, cfg.mix.pools.n_buckets
    if kind == "quantiles" and has_quality and QUALITY_SCORE in frame.columns:
        score = frame[QUALITY_SCORE].cast(pl.Float64).fill_nan(None)
        values = score.drop_nulls().to_numpy().copy()
        edges = linear_quantiles(values, [i / n for i in range(1, n)], score.null_count()) if n > 1 else []
        if edges is not None:
            return quantile_buckets(edges, n)
        return OneBucket(kind="none", label=ALL, reason=f"every {QUALITY_SCORE} is null")
    if kind == "dataman_levels" and has_quality and QUALITY_OVERALL in frame.columns:
        return dataman_buckets()
    reason = "mix.pools.quality = none" if kind == "none" else "the run has no quality scores"
    return OneBucket(kind="none", label=ALL, reason=reason)


def quality_buckets(frame: pl.DataFrame, cfg: WinnowConfig, has_quality: bool = True) -> QualityBuckets:
    """The mixer's quality bucket of every row of ``frame`` (the report's documents; module doc).

    Args:
        frame: One row per document, with ``quality_score`` / ``quality_overall`` when the run has them.
        cfg: The run's config (``mix.pools``).
        has_quality: Whether the run's quality ratings were found (False: one bucket ``all``).
    """
    definition = _definition(frame, cfg, has_quality)
    bucket, rank, _ = quality_rule(definition)
    lab = frame.select(bucket.alias("bucket"), rank.cast(pl.Int64).alias("rank"))
    if lab.height != frame.height:  # a literal rule (one bucket) gives one row
        lab = pl.DataFrame({"bucket": [ALL] * frame.height, "rank": [1] * frame.height})
    present = lab.unique().sort("rank")
    labels = tuple(present["bucket"].to_list())
    index = {label: i for i, label in enumerate(labels)}
    codes = np.array([index[b] for b in lab["bucket"].to_list()], dtype=np.int64)
    return QualityBuckets(definition, labels, dict(zip(labels, present["rank"].to_list(), strict=True)), codes)


def bucket_tokens(keep: np.ndarray, buckets: QualityBuckets, words: np.ndarray) -> dict[str, float]:
    """Unique tokens (words) a kept set holds of each bucket, best first (0 for a bucket it does not touch)."""
    keep = np.asarray(keep, dtype=bool)
    w = np.asarray(words, dtype=np.float64)
    sums = np.bincount(buckets.codes[keep], weights=w[keep], minlength=len(buckets.labels))
    return {label: float(sums[i]) for i, label in enumerate(buckets.labels)}


def composition_columns(composition: Mapping[str, float]) -> dict[str, float]:
    """A composition as ``pruning_curves.csv`` columns: ``unique_tokens_<bucket>``."""
    return {f"{COLUMN_PREFIX}{label}": v for label, v in composition.items()}


# =============================================================================================================
# The law per bucket and the predicted error of a composition
# =============================================================================================================
def bucket_law(cfg: WinnowConfig, buckets: QualityBuckets) -> ResolvedLaw:
    """The law's parameters per bucket as the mixer resolves them (``mix.law``, then ``mix.law.fitted``, then the
    defaults); a fitted file whose pools are not these buckets is an error naming the file and the key."""
    if cfg.mix.law.fitted:
        read_fitted_law(cfg.mix.law.fitted, _all_labels(buckets), cfg.io.storage_options)
    return resolve_law(cfg.mix, [(lb, buckets.ranks[lb]) for lb in buckets.labels], buckets.n_buckets)


def _all_labels(buckets: QualityBuckets) -> list[str]:
    d = buckets.definition
    return list(d.labels) if isinstance(d, QuantileBuckets | DatamanLevels) else [d.label]


def predicted_error(composition: Mapping[str, float] | float, budget: int, law: ResolvedLaw) -> float:
    """Goyal et al. error after ``budget`` tokens drawn from a kept set (module doc); nan when it is empty.

    Args:
        composition: Unique tokens per quality bucket (:func:`bucket_tokens`), or a number: one bucket ``all``.
        budget: Training tokens.
        law: Parameters per bucket (:func:`bucket_law`, :func:`fitted_bucket_law`).
    """
    if not isinstance(composition, Mapping):
        composition = {ALL: float(composition)}
    sizes = {label: float(e) for label, e in composition.items() if e > 0}
    if not sizes:
        return math.nan
    params = [law.bucket(label) for label in sizes]
    return float(
        goyal_union_error(budget, list(sizes.values()), law.a, [p.b for p in params], [p.tau for p in params], law.d,
                          law.tau_scaling, b_mean="samples")
    )  # fmt: skip


def predicted_errors(curves: pl.DataFrame, law: ResolvedLaw, budget: int) -> pl.Series:
    """``predicted_error`` of every row of ``pruning_curves`` from its ``unique_tokens_<bucket>`` columns."""
    cols = [c for c in curves.columns if c.startswith(COLUMN_PREFIX) and c != "unique_tokens_kept"]
    out = []
    for r in curves.select(cols).iter_rows(named=True):
        out.append(predicted_error({c[len(COLUMN_PREFIX) :]: (v or 0.0) for c, v in r.items()}, budget, law))
    return pl.Series("predicted_error", out, dtype=pl.Float64).fill_nan(None)


def fitted_bucket_law(fit_json: Mapping[str, Any], buckets: QualityBuckets, cfg: WinnowConfig, source: str):
    """The law of a fresh fit (:func:`law_fit_table`) for these buckets, as the mixer would read it."""
    p = fit_json["params"]
    pools = {q["name"]: q for q in p["pools"]}
    params = tuple(
        BucketParams(lb, buckets.ranks[lb], float(pools[lb]["b"]), float(pools[lb]["tau"]), f"fitted: {source}")
        for lb in buckets.labels
    )
    return ResolvedLaw(float(p["a"]), f"fitted: {source}", float(p["d"]), f"fitted: {source}", params,
                       cfg.mix.tau_scaling, cfg.mix.b_mean)  # fmt: skip


def law_prediction_table(
    curves: pl.DataFrame,
    law,
    budget: int,
    corpus_tokens: int,
    max_repeats: float,
    points: int = 60,
    composition: Mapping[str, float] | None = None,
) -> pl.DataFrame:
    """``kind, strategy, keep_fraction, unique_tokens, unique_tokens_end, predicted_error, region`` behind
    ``law_prediction.png``.

    ``curve`` rows sample the law over pool sizes from ``budget / (4 · max_repeats)`` to ``4 ×`` the larger of the
    budget and the corpus, each pool having the corpus's bucket ``composition`` (a random sample; default one
    bucket ``all``); ``point`` rows are the pruning-curve points (their own composition); ``region`` rows span
    ``[unique_tokens, unique_tokens_end]``: ``beyond max_repeats`` (the budget would repeat the pool more than
    ``mix.max_repeats`` times) and ``extrapolated`` (more unique tokens than the corpus holds).
    """
    lo = max(1.0, budget / (4.0 * max_repeats))
    hi = 4.0 * max(budget, corpus_tokens)
    grid = np.geomspace(lo, hi, points)
    total = sum((composition or {}).values())
    share = {k: v / total for k, v in composition.items()} if composition and total > 0 else {ALL: 1.0}
    rows: list[dict[str, Any]] = [
        {"kind": "region", "unique_tokens": lo, "unique_tokens_end": budget / max_repeats,
         "region": "beyond max_repeats"},
        {"kind": "region", "unique_tokens": float(corpus_tokens), "unique_tokens_end": hi, "region": "extrapolated"},
    ]  # fmt: skip
    rows += [{"kind": "curve", "unique_tokens": float(e),
              "predicted_error": predicted_error({k: s * e for k, s in share.items()}, budget, law)}
             for e in grid]  # fmt: skip
    for r in curves.iter_rows(named=True):
        rows.append({"kind": "point", "strategy": r["strategy"], "keep_fraction": r["keep_fraction"],
                     "unique_tokens": float(r["unique_tokens_kept"]),
                     "predicted_error": r["predicted_error"]})  # fmt: skip
    schema = {"kind": pl.String, "strategy": pl.String, "keep_fraction": pl.Float64, "unique_tokens": pl.Float64,
              "unique_tokens_end": pl.Float64, "predicted_error": pl.Float64, "region": pl.String}  # fmt: skip
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema)


# =============================================================================================================
# The fit: proxy runs per bucket
# =============================================================================================================
def _subsample(docs: np.ndarray, words: np.ndarray, target: float, seed: int) -> np.ndarray:
    """A seeded subsample of ``docs`` (indices) holding about ``target`` words (at least one document)."""
    order = np.random.default_rng([seed, 0x4C4157]).permutation(docs)
    take = max(1, int(np.searchsorted(np.cumsum(words[order]), target)) + 1)
    return np.sort(order[: min(take, len(order))])


def law_points(
    frame: pl.DataFrame, buckets: QualityBuckets, proxy_tokens: int, heldout_fraction: float, seed: int
) -> tuple[list[Point], dict[tuple[str, float], float]]:
    """The proxy runs of the law fit: per bucket, its documents outside the held-out slice, and a seeded subsample
    the proxy budget repeats about :data:`LAW_EPOCHS` times (half of them when the bucket is smaller than that).

    Args:
        frame: The report's documents (``id``, ``n_words``).
        buckets: Their quality buckets.
        proxy_tokens: Tokens one proxy run trains on (``ProxyConfig.tokens_trained``).
        heldout_fraction: The proxy's held-out share (``ProxyConfig.heldout_fraction``).
        seed: The proxy's seed.

    Returns:
        The points (strategy ``law:<bucket>``, fraction = the share of the bucket's training words) and the words
        each point trains on, by ``(strategy, fraction)``.
    """
    held = heldout_mask(frame["id"].cast(pl.String).to_list(), heldout_fraction, seed)
    words = frame["n_words"].cast(pl.Float64).fill_null(0.0).to_numpy()
    points: list[Point] = []
    pool_words: dict[tuple[str, float], float] = {}
    for label in buckets.labels:
        docs = np.flatnonzero(buckets.mask(label) & ~held)
        total = float(words[docs].sum())
        if total <= 0:
            continue
        small = proxy_tokens / (LAW_EPOCHS * TOKENS_PER_WORD_GUESS)
        small = small if small < total else total / 2
        for chosen in (docs, _subsample(docs, words, small, seed)):
            keep = np.zeros(frame.height, dtype=bool)
            keep[chosen] = True
            w = float(words[chosen].sum())
            frac = round(w / total, 6)
            if (f"{LAW_POINT}{label}", frac) in pool_words or w <= 0:
                continue
            points.append(Point(f"{LAW_POINT}{label}", frac, keep, keep.astype(np.int64)))
            pool_words[(f"{LAW_POINT}{label}", frac)] = w
    return points, pool_words


_FIT_SCHEMA = {"kind": pl.String, "strategy": pl.String, "keep_fraction": pl.Float64, "tokens_seen": pl.Float64,
               "pool_tokens": pl.Float64, "loss": pl.Float64, "predicted": pl.Float64,
               "heldout": pl.Boolean}  # fmt: skip


def _law_runs(checkpoints: pl.DataFrame, pool_words: Mapping[tuple[str, float], float]) -> pl.DataFrame:
    """The law checkpoints in the mixer's unit: ``bucket, fraction, samples, pool_size, error``."""
    rows = []
    for r in checkpoints.iter_rows(named=True):
        if not str(r["strategy"]).startswith(LAW_POINT):
            continue
        words = pool_words.get((r["strategy"], r["keep_fraction"]))
        if not words or not r["pool_tokens"]:
            continue
        rows.append({"bucket": r["strategy"][len(LAW_POINT) :], "fraction": float(r["keep_fraction"]),
                     "samples": float(r["tokens_seen"]) * words / float(r["pool_tokens"]), "pool_size": words,
                     "error": float(r["loss"])})  # fmt: skip
    schema = {"bucket": pl.String, "fraction": pl.Float64, "samples": pl.Float64, "pool_size": pl.Float64,
              "error": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def law_fit_table(
    checkpoints: pl.DataFrame,
    pool_words: Mapping[tuple[str, float], float],
    buckets: QualityBuckets,
    meta: Mapping[str, Any] | None = None,
) -> tuple[pl.DataFrame, dict | None, str | None]:
    """Fit the Goyal law per quality bucket to the law points' proxy checkpoints (module doc); the table behind
    ``law_fit.png`` and ``law_fit.json``.

    Each bucket's largest checkpoint (in words seen) is held out. Table columns: ``kind`` (``observed`` /
    ``fitted``), ``strategy`` (the bucket), ``keep_fraction`` (the share of the bucket's training words),
    ``tokens_seen`` and ``pool_tokens`` (in the mixer's unit), ``loss``, ``predicted``, ``heldout``.

    Args:
        checkpoints: ``strategy, keep_fraction, tokens_seen, pool_tokens, loss`` per checkpoint; rows of strategies
            not named ``law:<bucket>`` are ignored.
        pool_words: Words each law point trains on (:func:`law_points`).
        buckets: The quality buckets.
        meta: Extra keys for the JSON (the proxy's settings).

    Returns:
        The table, the fit's JSON (``FitResult.to_dict()`` plus ``format``, ``unit``, ``buckets``, ``runs``; what
        ``winnow mix`` reads as ``mix.law.fitted``), and why there is no fit (or None).
    """
    runs = _law_runs(checkpoints, pool_words)
    if runs.height == 0:
        return pl.DataFrame([], schema=_FIT_SCHEMA), None, "no proxy checkpoints of the quality buckets"
    # starts of a: s_0 = a·E/1e5 from 0.3 to 1000 at the median pool (proxy pools are far smaller than the
    # paper's, so its a ≈ 0.025 would put every start outside the law's regime)
    scale = GOYAL_NORMALIZER / float(runs["pool_size"].median())
    a_grid = tuple(float(x) for x in np.clip(np.geomspace(0.3 * scale, 1000 * scale, 9), 1e-8, 1e4))
    try:
        fit = fit_goyal({c: runs[c].to_list() for c in ("samples", "pool_size", "error")}
                        | {"pool": runs["bucket"].to_list()}, holdout=1, a_grid=a_grid)  # fmt: skip
    except ValueError as e:
        return pl.DataFrame([], schema=_FIT_SCHEMA), None, f"the law could not be fitted per quality bucket: {e}"
    params = fit.params
    by_pool = {p.name: p for p in params.pools}
    held = np.zeros(runs.height, dtype=bool)
    held[list(fit.heldout_index)] = True
    rows = []
    for i, r in enumerate(runs.iter_rows(named=True)):
        pp = by_pool[r["bucket"]]
        pred = float(goyal_error(r["samples"], r["pool_size"], params.a, pp.b, pp.tau, params.d))
        rows.append({"kind": "observed", "strategy": r["bucket"], "keep_fraction": r["fraction"],
                     "tokens_seen": r["samples"], "pool_tokens": r["pool_size"], "loss": r["error"],
                     "predicted": pred, "heldout": bool(held[i])})  # fmt: skip
    grid = np.geomspace(float(runs["samples"].min()) / 2, float(runs["samples"].max()) * 4, 50)
    for (label, frac), g in runs.group_by(["bucket", "fraction"], maintain_order=True):
        pp, e = by_pool[label], float(g["pool_size"][0])
        for n, y in zip(grid, goyal_error(grid, e, params.a, pp.b, pp.tau, params.d), strict=True):
            rows.append({"kind": "fitted", "strategy": label, "keep_fraction": frac, "tokens_seen": float(n),
                         "pool_tokens": e, "loss": None, "predicted": float(y), "heldout": None})  # fmt: skip
    fit_json = {"format": FIT_FORMAT, **fit.to_dict(), "unit": UNIT, "buckets": buckets.to_dict(),
                "runs": runs.to_dicts(), **dict(meta or {})}  # fmt: skip
    return pl.DataFrame(rows, schema=_FIT_SCHEMA), fit_json, None
