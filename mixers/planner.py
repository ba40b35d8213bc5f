"""The mixture planner: pools + budget + law → ``mixture_plan.json`` (DESIGN §3.7–3.10).

**Pools.** Only kept rows (``keep == True``) are in pools. A pool is a quality bucket × a domain:

* quality buckets (``mix.pools.quality``): ``quantiles`` of ``quality_score`` over the kept documents, labelled
  ``q1`` (lowest) .. ``q<n>`` (highest), a document going to ``q<i>`` with ``i = 1 + #edges strictly below its
  score``; or the DataMan levels of ``quality_overall`` (``overall_1`` .. ``overall_5``); or ``none``. **When the
  curated shards have no quality column** (quality scoring has not run) **there is one bucket, ``all``**, and the
  plan says so in ``warnings`` and ``pool_definition.quality.reason``. A kept row without a score goes to the
  lowest bucket (counted in ``warnings``).
* domains (``mix.pools.domain``): the values of a column (``source`` by default, or ``quality_domain``), null
  being ``unknown``; or one domain ``all``.

Per pool: ``documents`` (kept rows), ``unique_tokens`` (Σ tokens of its rows) and ``pass_tokens`` (Σ tokens ×
``repeat``: one pass over the pool as the selection defined it; equal to ``unique_tokens`` without a ``repeat``
column). Tokens are whitespace words (regex ``\\S+``) by default, or a local tokenizer's token count. The rule
that puts a row in its pool and the token count are :mod:`winnow.mixers.pools`, which the loader uses too.

**Candidates.** Quality buckets are ranked by the law's ``b`` (most negative first; ties keep quality order), and
the candidates are the unions of the top m buckets, m = 1..M, every domain of a bucket included. The Goyal et al.
(2024) union law (:func:`winnow.mixers.laws.goyal_union_error`, in token units: ``n`` = the budget, ``E_i`` = a
bucket's unique tokens) predicts each candidate's error. The law does not see domains or phases: it scores the union at
the whole budget. Each candidate also records Muennighoff et al.'s effective tokens ``D'`` of repeating its unique
tokens (and the predicted loss when ``mix.model_params`` is known), as context.

**Allocation.** Within a union, tokens go to pools in proportion to their unique tokens (so every pool of the
base phase is repeated equally often, and the union behaves as the one pool the law assumes). With
``mix.upsample.domains`` there are two phases: ``base`` over tokens ``[0, T)`` with ``T = round((1 − fraction)
· budget)``, then ``upsample`` over ``[T, budget)``, where pools of the upsampled domains have weight
``unique_tokens · factor`` (renormalised). Without upsampled domains there is one phase, ``base``. Each phase's
tokens are split into whole tokens by largest remainder, so the pools' tokens sum exactly to each phase and the
phases to the budget.

**Choice.** A pool's ``unique_epochs`` (its tokens / its unique tokens) may be fractional and must not exceed
``mix.max_repeats``; ``epochs`` (its tokens / its pass tokens: the passes the loader makes) is never larger. The
plan takes the candidate with the lowest predicted error among those within the cap (the smallest m on ties). When
the law's own best exceeds the cap, ``choice.cap_binds`` is true and the chosen union is a larger one. If even
all the data exceeds the cap, no plan is made (:class:`PlanError`).

In the law's regime (``s_0 = a·min(E, n)/1e5 > 1``) a smaller budget never chooses a larger union than a bigger
budget (filter hard at small compute, keep more at large compute); outside it the choice is not reliable and the
plan warns.

**The plan** (``<run>/mixture_plan.json``, the model :class:`winnow.mixers.plan.MixturePlan`, keys in this order)::

    format            "winnow.mixture_plan/1"
    winnow_version, config_hash (of <run>/config.resolved.yaml), seed (for the loader)
    budget            {tokens, source, flops, model_params}
    max_repeats
    token_count       {method, ...}: how the loader must count tokens to follow the plan
    law               {name, reference, unit, a: {value, source}, d: {value, source}, tau_scaling, b_mean,
                       buckets: [{quality_bucket, quality_rank, b, tau, source}]}
    pool_definition   {keep_column, repeat_column, text_column, id_column, quality: {kind, column, edges, ...},
                       domain: {column, null}}: how a curated row maps to its pool (and which columns the
                       loader reads; a plan without id_column is read with the loader's id_field, default id)
    shards            [{path (relative to the run), rows, kept_rows}]
    candidates        [{m, quality_buckets, pools, documents, unique_tokens, unique_epochs, s0, in_regime,
                        predicted_error, effective_tokens, muennighoff_loss, max_unique_epochs, max_unique_epochs_pool,
                        within_cap, law_best, chosen, note}]
    choice            {m, quality_buckets, predicted_error, law_best_m, cap_binds, reason}
    phases            [{name, start_token, end_token, tokens, (domains, factor, fraction)}]
    pools             [{pool, quality_bucket, quality_rank, domain, chosen, documents, unique_tokens, pass_tokens,
                        tokens, epochs, unique_epochs, phase_tokens: {phase: n}, phase_weights: {phase: w}}]
    warnings          [str]

The plan holds no timestamp and no absolute path of the run, so the same inputs give the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import polars as pl
import pyarrow.dataset as pads
import yaml

import winnow
from winnow.core.errors import ConfigError, ShardError
from winnow.core.rundir import RunDir
from winnow.mixers.config import GOYAL_REFERENCE, GOYAL_REFERENCE_A, GOYAL_REFERENCE_D, MixSection, default_bucket_law
from winnow.mixers.laws import GOYAL_NORMALIZER, effective_data, goyal_union_error, muennighoff_loss
from winnow.mixers.plan import (
    PLAN_FILE,
    PLAN_FORMAT,
    BasePhase,
    Budget,
    Candidate,
    Choice,
    DatamanLevels,
    DomainColumn,
    Law,
    LawBucket,
    LawParameter,
    MixturePlan,
    OneBucket,
    OneDomain,
    PlanCore,
    PlanPool,
    PoolDefinition,
    QuantileBuckets,
    Shard,
    TokenizerCount,
    UpsamplePhase,
    WhitespaceCount,
)
from winnow.mixers.pools import (
    ALL,
    DATAMAN_LEVELS,
    KEEP,
    NULL_DOMAIN,
    QUALITY_OVERALL,
    QUALITY_SCORE,
    REPEAT,
    PoolRule,
    TokenCounter,
    dataman_buckets,
    kept_expr,
    pool_rule,
    quantile_buckets,
    token_count_rule,
    token_counter,
)

__all__ = [
    "PLAN_FILE",
    "PLAN_FORMAT",
    "POOL_COLUMNS",
    "BucketParams",
    "PlanError",
    "PoolStats",
    "ResolvedLaw",
    "build_mixture_plan",
    "build_plan",
    "choose_mixture",
    "plan_json",
    "plan_mixture",
    "pool_stats",
    "resolve_law",
    "token_counter",
    "write_plan",
]

#: Columns of a pool-statistics frame, the planner's input.
POOL_COLUMNS = ("quality_bucket", "quality_rank", "domain", "documents", "unique_tokens", "pass_tokens")
BASE, UPSAMPLE = "base", "upsample"
#: Candidates needing more epochs than this are not evaluated (the law's cost grows with the epochs).
MAX_EVAL_EPOCHS = 100_000
LAW_REFERENCE = "Goyal et al. 2024, Scaling Laws for Data Filtering (CVPR 2024): union of the top m buckets"


class PlanError(ConfigError):
    """No plan can be made from this run and these settings (no shards, no kept rows, a budget the cap forbids)."""


# =============================================================================================================
# The law's parameters per quality bucket
# =============================================================================================================
@dataclass(frozen=True)
class BucketParams:
    """Goyal et al. parameters of one quality bucket and where they came from.

    Args:
        quality_bucket: The bucket's label (``q4``, ``overall_5``, ``all``).
        quality_rank: 1 = highest quality.
        b: Utility exponent (< 0).
        tau: Half-life in repetitions (> 0).
        source: ``"config (mix.law.buckets)"``, ``"fitted: <path>"`` or ``"default (...)"``.
    """

    quality_bucket: str
    quality_rank: int
    b: float
    tau: float
    source: str


@dataclass(frozen=True)
class ResolvedLaw:
    """The Goyal et al. law the planner uses, every parameter labelled with its source.

    Args:
        a: Shared sample-efficiency scale (per token).
        a_source: Where ``a`` came from.
        d: Shared error floor.
        d_source: Where ``d`` came from.
        buckets: One :class:`BucketParams` per quality bucket, best first.
        tau_scaling: ``"pools"`` or ``"none"`` (see :func:`winnow.mixers.laws.union_exponents`).
        b_mean: ``"pools"`` or ``"samples"``.
        warnings: Things the user should know about the resolution (defaults used, unmatched names).
    """

    a: float
    a_source: str
    d: float
    d_source: str
    buckets: tuple[BucketParams, ...]
    tau_scaling: str = "pools"
    b_mean: str = "pools"
    warnings: tuple[str, ...] = field(default=())

    def bucket(self, label: str) -> BucketParams:
        """The parameters of the bucket ``label``."""
        for p in self.buckets:
            if p.quality_bucket == label:
                return p
        have = ", ".join(p.quality_bucket for p in self.buckets)
        msg = f"the law has no parameters for quality bucket {label!r} (it has {have})"
        raise PlanError(msg)

    def to_law(self) -> Law:
        """The plan's ``law`` section."""
        return Law(
            name="goyal",
            reference=LAW_REFERENCE,
            unit="tokens",
            a=LawParameter(value=self.a, source=self.a_source),
            d=LawParameter(value=self.d, source=self.d_source),
            tau_scaling=self.tau_scaling,
            b_mean=self.b_mean,
            buckets=[
                LawBucket(quality_bucket=p.quality_bucket, quality_rank=p.quality_rank, b=p.b, tau=p.tau,
                          source=p.source)
                for p in self.buckets
            ],
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The plan's ``law`` section as a JSON-ready dict."""
        return self.to_law().model_dump()


def _read_fitted(path: str) -> tuple[float, float, dict[str, tuple[float, float]], list[str]]:
    """Read ``winnow laws fit --law goyal --json`` output (or a bare GoyalParams dict): a, d, {name: (b, tau)}."""
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        msg = f"mix.law.fitted: no such file: {path}"
        raise ConfigError(msg) from None
    except (OSError, ValueError) as e:
        msg = f"mix.law.fitted: {path}: not a JSON file ({e})"
        raise ConfigError(msg) from None
    notes: list[str] = []
    if isinstance(data, dict) and "params" in data:
        if data.get("law", "goyal") != "goyal":
            msg = f"mix.law.fitted: {path} is a fit of the {data.get('law')!r} law; the planner needs a goyal fit"
            raise ConfigError(msg)
        if data.get("success") is False:
            notes.append(f"the fit in {path} did not converge ({data.get('message', '')}); its parameters are used")
        data = data["params"]
    try:
        a, d = float(data["a"]), float(data["d"])
        pools = {str(p.get("name", "")): (float(p["b"]), float(p["tau"])) for p in data["pools"]}
    except (KeyError, TypeError, ValueError, AttributeError):
        msg = (
            f"mix.law.fitted: {path}: expected the JSON of `winnow laws fit --law goyal --json` "
            '(or {"a", "d", "pools": [{"name", "b", "tau"}]})'
        )
        raise ConfigError(msg) from None
    if not (math.isfinite(a) and a > 0 and math.isfinite(d) and d >= 0):
        msg = f"mix.law.fitted: {path}: a must be > 0 and d >= 0, got a={a}, d={d}"
        raise ConfigError(msg)
    for name, (b, tau) in pools.items():
        if not (math.isfinite(b) and b < 0 and math.isfinite(tau) and tau > 0):
            msg = f"mix.law.fitted: {path}: pool {name!r} needs b < 0 and tau > 0, got b={b}, tau={tau}"
            raise ConfigError(msg)
    return a, d, pools, notes


def resolve_law(mix: MixSection, buckets: Sequence[tuple[str, int]], n_buckets: int | None = None) -> ResolvedLaw:
    """Resolve the law's parameters for these buckets: ``mix.law`` first, then ``mix.law.fitted``, then defaults.

    Args:
        mix: The mix config.
        buckets: ``(label, rank)`` of every quality bucket present, rank 1 = best.
        n_buckets: How many buckets the pool definition has (for the defaults' interpolation, see
            :func:`winnow.mixers.config.default_bucket_law`); default the largest rank.

    Returns:
        A :class:`ResolvedLaw` with the buckets best first.

    Raises:
        ConfigError: The fitted file is missing or malformed.
    """
    law = mix.law
    n_buckets = n_buckets or max(r for _, r in buckets)
    fitted: dict[str, tuple[float, float]] = {}
    warnings: list[str] = []
    fa = fd = None
    if law.fitted:
        fa, fd, fitted, notes = _read_fitted(law.fitted)
        warnings.extend(notes)
    fit_src = f"fitted: {law.fitted}"

    def pick(value: float | None, key: str, fit_value: float | None, default: float, default_src: str):
        if value is not None:
            return value, f"config (mix.law.{key})"
        if fit_value is not None:
            return fit_value, fit_src
        return default, default_src

    a, a_src = pick(law.a, "a", fa, GOYAL_REFERENCE_A, f"default ({GOYAL_REFERENCE}: best_a)")
    d, d_src = pick(law.d, "d", fd, GOYAL_REFERENCE_D, f"default ({GOYAL_REFERENCE}: d_value)")
    params = []
    for label, rank in sorted(buckets, key=lambda t: t[1]):
        if label in law.buckets:
            p = law.buckets[label]
            params.append(BucketParams(label, rank, p.b, p.tau, f"config (mix.law.buckets.{label})"))
        elif label in fitted:
            b, tau = fitted[label]
            params.append(BucketParams(label, rank, b, tau, fit_src))
        else:
            b, tau, src = default_bucket_law(rank, n_buckets)
            params.append(BucketParams(label, rank, b, tau, src))
            if law.fitted:
                warnings.append(f"{law.fitted} has no pool named {label!r}: its b and tau are defaults")
    labels = {label for label, _ in buckets}
    unknown = sorted(set(law.buckets) - labels)
    if unknown:
        warnings.append(
            f"mix.law.buckets has {', '.join(unknown)}, not a quality bucket here ({', '.join(sorted(labels))})"
        )
    defaults = (["a"] if a_src.startswith("default") else []) + (["d"] if d_src.startswith("default") else [])
    defaults += [f"b, tau of {p.quality_bucket}" for p in params if p.source.startswith("default")]
    if defaults:
        warnings.append(
            f"law parameters {'; '.join(defaults)} are defaults fitted by Goyal et al. 2024 on image-text data, not "
            "on your corpus: fit them to proxy runs with `winnow laws fit --law goyal --json` and set mix.law.fitted"
        )
    return ResolvedLaw(a, a_src, d, d_src, tuple(params), mix.tau_scaling, mix.b_mean, tuple(warnings))


# =============================================================================================================
# The optimiser: pure functions over a pool-statistics frame
# =============================================================================================================
def _check_pools(pools: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in POOL_COLUMNS if c not in pools.columns]
    if missing:
        msg = f"pool statistics lack column(s) {', '.join(missing)}; available: {', '.join(pools.columns) or '(none)'}"
        raise ValueError(msg)
    pools = pools.select(
        pl.col("quality_bucket").cast(pl.String),
        pl.col("quality_rank").cast(pl.Int64),
        pl.col("domain").cast(pl.String),
        pl.col("documents").cast(pl.Int64),
        pl.col("unique_tokens").cast(pl.Int64),
        pl.col("pass_tokens").cast(pl.Int64),
    )
    if pools.select(pl.any_horizontal(pl.all().is_null()).any()).item():
        raise ValueError("pool statistics have null values")
    if pools.select(pl.struct("quality_bucket", "domain").is_duplicated().any()).item():
        raise ValueError("pool statistics have more than one row for a (quality_bucket, domain)")
    pairs = pools.select("quality_bucket", "quality_rank").unique()
    if pairs["quality_bucket"].n_unique() != pairs.height or pairs["quality_rank"].n_unique() != pairs.height:
        raise ValueError("every quality bucket needs exactly one quality_rank, and every rank one bucket")
    if pools.filter((pl.col("unique_tokens") < 0) | (pl.col("pass_tokens") < pl.col("unique_tokens"))).height:
        raise ValueError("pool statistics need 0 <= unique_tokens <= pass_tokens")
    return pools


def _round_to_total(x: np.ndarray, total: int) -> np.ndarray:
    """Whole numbers summing to ``total`` by largest remainder (ties to the earlier entry)."""
    if total == 0 or x.size == 0:
        return np.zeros(x.size, dtype=np.int64)
    base = np.floor(x).astype(np.int64)
    short = int(total - base.sum())
    if short > 0:
        order = np.argsort(-(x - base), kind="stable")
        base[order[:short]] += 1
    elif short < 0:  # floating-point excess: take from the smallest remainders
        order = np.argsort(x - base, kind="stable")
        base[order[:-short]] -= 1
    return base


def _allocate(unique: np.ndarray, upsampled: np.ndarray, base_tokens: int, up_tokens: int, factor: float):
    """Phase weights and whole tokens per pool: base ∝ unique tokens; upsample ∝ unique tokens × factor."""
    w_base = unique / unique.sum()
    w_up = unique * np.where(upsampled, factor, 1.0)
    w_up = w_up / w_up.sum()
    t_base = _round_to_total(w_base * base_tokens, base_tokens)
    return w_base, w_up, t_base, _round_to_total(w_up * up_tokens, up_tokens)


def _budget(mix: MixSection, budget_tokens: int | None) -> tuple[int, str]:
    if budget_tokens is not None:
        if budget_tokens < 1 or int(budget_tokens) != budget_tokens:
            msg = f"the budget must be a whole number of tokens >= 1, got {budget_tokens}"
            raise PlanError(msg)
        return int(budget_tokens), "argument"
    try:
        tokens, source = mix.resolved_budget()
    except ValueError as e:
        raise PlanError(str(e)) from None
    if tokens is None:
        msg = "no budget: set mix.budget_tokens (or --budget-tokens), or mix.flops with mix.model_params"
        raise PlanError(msg)
    return tokens, source


def _pools_with_tokens(pools: pl.DataFrame, warnings: list[str]) -> pl.DataFrame:
    """The pools with tokens, best bucket first (then by domain); the others are named in ``warnings``."""
    empty = pools.filter(pl.col("unique_tokens") == 0)
    if empty.height:
        names = ", ".join(f"{b}/{d}" for b, d in empty.select("quality_bucket", "domain").iter_rows())
        warnings.append(f"pool(s) with no tokens left out: {names}")
        pools = pools.filter(pl.col("unique_tokens") > 0)
    if pools.height == 0:
        raise PlanError("no pool has any tokens: nothing to plan")
    return pools.sort(["quality_rank", "domain"])


@dataclass(frozen=True)
class _Buckets:
    """The quality buckets of the pools, best first, with the law's parameters and the pools' place in them."""

    labels: list[str]
    b: np.ndarray
    tau: np.ndarray
    unique: np.ndarray  # unique tokens per bucket (float64)
    documents: np.ndarray
    order: np.ndarray  # bucket indices, most negative b first (ties keep quality order)
    pool_names: list[str]  # per pool: <bucket>/<domain>
    pool_bucket: np.ndarray  # per pool: index of its bucket in labels
    pool_unique: np.ndarray  # per pool: unique tokens (float64)


def _bucket_table(pools: pl.DataFrame, mix: MixSection, law: ResolvedLaw | None, n_quality_buckets: int | None):
    """The :class:`_Buckets` of ``pools`` and the law (default :func:`resolve_law` for these buckets)."""
    buckets = (
        pools.group_by("quality_bucket", "quality_rank")
        .agg(pl.col("unique_tokens").sum(), pl.col("documents").sum(), pl.len().alias("pools"))
        .sort("quality_rank")
    )
    labels = buckets["quality_bucket"].to_list()
    if law is None:
        law = resolve_law(mix, list(zip(labels, buckets["quality_rank"].to_list(), strict=True)), n_quality_buckets)
    bs = np.array([law.bucket(lb).b for lb in labels])
    table = _Buckets(
        labels=labels,
        b=bs,
        tau=np.array([law.bucket(lb).tau for lb in labels]),
        unique=buckets["unique_tokens"].to_numpy().astype(np.float64),
        documents=buckets["documents"].to_numpy(),
        order=np.argsort(bs, kind="stable"),
        pool_names=[f"{b}/{d}" for b, d in pools.select("quality_bucket", "domain").iter_rows()],
        pool_bucket=np.array([labels.index(b) for b in pools["quality_bucket"].to_list()]),
        pool_unique=pools["unique_tokens"].to_numpy().astype(np.float64),
    )
    return table, law


def _phase_split(mix: MixSection, budget: int, domains: set[str], warnings: list[str]) -> tuple[int, int]:
    """Tokens of the base and the upsampling phase (0 without ``mix.upsample.domains``); warns on odd settings."""
    up = mix.upsample
    if not up.domains:
        return budget, 0
    base_tokens = math.floor(budget * (1.0 - up.fraction) + 0.5)
    if not 0.1 <= up.fraction <= 0.2:
        warnings.append(
            f"mix.upsample.fraction = {up.fraction:g} is outside 0.1-0.2, the range Blakeney et al. 2024 studied"
        )
    absent = [d for d in up.domains if d not in domains]
    if absent:
        have = ", ".join(sorted(domains))
        warnings.append(f"mix.upsample.domains {', '.join(absent)} not among the pools' domains ({have})")
    return base_tokens, budget - base_tokens


@dataclass(frozen=True)
class _Allocation:
    """A candidate's pools (a mask over all pools) and their phase weights and tokens."""

    inside: np.ndarray
    w_base: np.ndarray
    w_up: np.ndarray
    t_base: np.ndarray
    t_up: np.ndarray


def _candidate(
    m: int, bk: _Buckets, law: ResolvedLaw, mix: MixSection, budget: int, split: tuple[int, int], upsampled: np.ndarray
) -> tuple[Candidate, _Allocation]:
    """The union of the top ``m`` buckets: its law score, its allocation and its largest repeat."""
    members = bk.order[:m]
    inside = np.isin(bk.pool_bucket, members)
    size = float(bk.unique[members].sum())
    unique = bk.pool_unique[inside]
    w_base, w_up, t_base, t_up = _allocate(unique, upsampled[inside], split[0], split[1], mix.upsample.factor)
    u_epochs = (t_base + t_up) / unique
    worst = int(np.argmax(u_epochs))
    epochs = budget / size
    error = None
    if epochs <= MAX_EVAL_EPOCHS:
        sizes, b_m, tau_m = bk.unique[members], bk.b[members], bk.tau[members]
        error = float(goyal_union_error(budget, sizes, law.a, b_m, tau_m, law.d, law.tau_scaling, law.b_mean))
    s0 = law.a * min(size, budget) / GOYAL_NORMALIZER
    loss = None if mix.model_params is None else float(muennighoff_loss(mix.model_params, budget, size))
    candidate = Candidate(
        m=m,
        quality_buckets=[bk.labels[i] for i in members],
        pools=int(inside.sum()),
        documents=int(bk.documents[members].sum()),
        unique_tokens=int(round(size)),
        unique_epochs=epochs,
        s0=s0,
        in_regime=bool(s0 > 1),
        predicted_error=error,
        effective_tokens=float(effective_data(size, budget)),
        muennighoff_loss=loss,
        max_unique_epochs=float(u_epochs[worst]),
        max_unique_epochs_pool=[n for n, i in zip(bk.pool_names, inside, strict=True) if i][worst],
        within_cap=bool(u_epochs[worst] <= mix.max_repeats * (1 + 1e-12)),
        law_best=False,
        chosen=False,
        note="",
    )
    return candidate, _Allocation(inside, w_base, w_up, t_base, t_up)


def _choose(candidates: list[Candidate], budget: int, cap: float, total_unique: int) -> tuple[Candidate, Candidate]:
    """``(law's best, chosen)``: the lowest predicted error overall and within the cap (smallest m on ties).

    Marks both candidates and writes every candidate's note.
    """
    evaluated = [c for c in candidates if c.predicted_error is not None]
    feasible = [c for c in evaluated if c.within_cap]
    if not feasible:
        last = candidates[-1]
        msg = (
            f"a budget of {budget:,} tokens cannot be met within mix.max_repeats = {cap:g}: even all "
            f"{len(candidates)} quality bucket(s) ({total_unique:,} unique tokens) would repeat pool "
            f"{last.max_unique_epochs_pool} {last.max_unique_epochs:.4g} times. Lower the "
            "budget, raise mix.max_repeats, lower mix.upsample.factor, or keep more documents"
        )
        raise PlanError(msg)
    law_best = min(evaluated, key=lambda c: (c.predicted_error, c.m))
    chosen = min(feasible, key=lambda c: (c.predicted_error, c.m))
    law_best.law_best = True
    chosen.chosen = True
    for c in candidates:
        c.note = _note(c, chosen, cap)
    return law_best, chosen


def _choice(candidates: list[Candidate], law_best: Candidate, chosen: Candidate, cap: float) -> Choice:
    """The plan's ``choice`` section, with the reason in words."""
    cap_binds = law_best is not chosen
    if cap_binds:
        reason = (
            f"the law's best union, top {law_best.m} ({', '.join(law_best.quality_buckets)}; predicted error "
            f"{law_best.predicted_error:.6g}), would repeat pool {law_best.max_unique_epochs_pool} "
            f"{law_best.max_unique_epochs:.4g} times > mix.max_repeats = {cap:g}; top {chosen.m} "
            f"({', '.join(chosen.quality_buckets)}) has the lowest predicted error "
            f"({chosen.predicted_error:.6g}) within the cap, so the plan keeps more pools"
        )
    else:
        reason = (
            f"top {chosen.m} ({', '.join(chosen.quality_buckets)}) has the lowest predicted error "
            f"({chosen.predicted_error:.6g}) of the {len(candidates)} candidate(s) and repeats no pool more "
            f"than {chosen.max_unique_epochs:.4g} times (mix.max_repeats = {cap:g})"
        )
    return Choice(
        m=chosen.m,
        quality_buckets=chosen.quality_buckets,
        predicted_error=chosen.predicted_error,
        law_best_m=law_best.m,
        cap_binds=cap_binds,
        reason=reason,
    )


def _phases(
    mix: MixSection, budget: int, base_tokens: int, upsampled: np.ndarray, warnings: list[str]
) -> list[BasePhase | UpsamplePhase]:
    """The plan's phases; ``upsampled`` is the mask of the chosen pools in ``mix.upsample.domains``."""
    phases: list[BasePhase | UpsamplePhase] = [
        BasePhase(name=BASE, start_token=0, end_token=base_tokens, tokens=base_tokens)
    ]
    up = mix.upsample
    if not up.domains:
        return phases
    phases.append(
        UpsamplePhase(name=UPSAMPLE, start_token=base_tokens, end_token=budget, tokens=budget - base_tokens,
                      domains=list(up.domains), factor=up.factor, fraction=up.fraction)
    )  # fmt: skip
    if not upsampled.any() or upsampled.all():
        warnings.append(
            "the upsampling phase changes nothing: the chosen pools are "
            + ("all" if upsampled.any() else "none")
            + " of mix.upsample.domains"
        )
    return phases


def _plan_pools(pools: pl.DataFrame, names: list[str], alloc: _Allocation, phase_names: list[str]) -> list[PlanPool]:
    """The plan's ``pools`` section: every pool with tokens, its tokens and weights per phase."""
    out = []
    j = 0
    for i, row in enumerate(pools.iter_rows(named=True)):
        tokens = {BASE: 0, UPSAMPLE: 0}
        weights = {BASE: 0.0, UPSAMPLE: 0.0}
        if alloc.inside[i]:
            tokens = {BASE: int(alloc.t_base[j]), UPSAMPLE: int(alloc.t_up[j])}
            weights = {BASE: float(alloc.w_base[j]), UPSAMPLE: float(alloc.w_up[j])}
            j += 1
        total = sum(tokens[p] for p in phase_names)
        out.append(
            PlanPool(
                pool=names[i],
                quality_bucket=row["quality_bucket"],
                quality_rank=row["quality_rank"],
                domain=row["domain"],
                chosen=bool(alloc.inside[i]),
                documents=row["documents"],
                unique_tokens=row["unique_tokens"],
                pass_tokens=row["pass_tokens"],
                tokens=total,
                epochs=total / row["pass_tokens"],
                unique_epochs=total / row["unique_tokens"],
                phase_tokens={p: tokens[p] for p in phase_names},
                phase_weights={p: weights[p] for p in phase_names},
            )
        )
    return out


def choose_mixture(
    pools: pl.DataFrame,
    mix: MixSection,
    *,
    law: ResolvedLaw | None = None,
    budget_tokens: int | None = None,
    n_quality_buckets: int | None = None,
) -> PlanCore:
    """Choose pools, repeats and phases for a budget (module doc): the core of the mixture plan.

    Args:
        pools: Pool statistics with ``POOL_COLUMNS`` (one row per quality bucket × domain).
        mix: The mix config (budget, cap, upsampling, law settings).
        law: The law's parameters; default :func:`resolve_law` of ``mix`` for the buckets in ``pools``.
        budget_tokens: The budget; default ``mix.budget_tokens`` or ``mix.flops / (6 · mix.model_params)``.
        n_quality_buckets: Buckets in the pool definition, for the default parameters (default the largest rank).

    Returns:
        The :class:`~winnow.mixers.plan.PlanCore`: ``budget``, ``max_repeats``, ``law``, ``candidates``,
        ``choice``, ``phases``, ``pools`` and ``warnings`` (layout in the module doc).

    Raises:
        PlanError: No budget, no tokens, or a budget that even all the pools cannot cover within the cap.
        ValueError: Malformed pool statistics.
    """
    pools = _check_pools(pools)
    budget, budget_source = _budget(mix, budget_tokens)
    warnings: list[str] = []
    pools = _pools_with_tokens(pools, warnings)
    bk, law = _bucket_table(pools, mix, law, n_quality_buckets)
    warnings.extend(law.warnings)
    split = _phase_split(mix, budget, set(pools["domain"].to_list()), warnings)
    upsampled = np.array([d in set(mix.upsample.domains) for d in pools["domain"].to_list()])
    cap = mix.max_repeats
    scored = [_candidate(m, bk, law, mix, budget, split, upsampled) for m in range(1, len(bk.labels) + 1)]
    candidates = [c for c, _ in scored]
    law_best, chosen = _choose(candidates, budget, cap, int(bk.pool_unique.sum()))
    choice = _choice(candidates, law_best, chosen, cap)
    if not chosen.in_regime:
        warnings.append(
            f"s_0 = a·min(E, n)/1e5 = {chosen.s0:.3g} <= 1 for the chosen union: outside the Goyal law's regime "
            "(there a more negative b predicts a higher error), so the choice between unions is not reliable; fit "
            "the law (mix.law.fitted) or set mix.law.a for your token counts"
        )
    alloc = scored[chosen.m - 1][1]
    phases = _phases(mix, budget, split[0], upsampled[alloc.inside], warnings)
    return PlanCore(
        budget=Budget(tokens=budget, source=budget_source, flops=mix.flops, model_params=mix.model_params),
        max_repeats=cap,
        law=law.to_law(),
        candidates=candidates,
        choice=choice,
        phases=phases,
        pools=_plan_pools(pools, bk.pool_names, alloc, [p.name for p in phases]),
        warnings=warnings,
    )


def plan_mixture(
    pools: pl.DataFrame,
    mix: MixSection,
    *,
    law: ResolvedLaw | None = None,
    budget_tokens: int | None = None,
    n_quality_buckets: int | None = None,
) -> dict[str, Any]:
    """:func:`choose_mixture` as a JSON-ready dict (the plan's sections, in the written order)."""
    core = choose_mixture(pools, mix, law=law, budget_tokens=budget_tokens, n_quality_buckets=n_quality_buckets)
    return core.model_dump()


def _note(c: Candidate, chosen: Candidate, cap: float) -> str:
    if c.predicted_error is None:
        note = f"not evaluated: {c.unique_epochs:.4g} epochs of its unique tokens"
    elif c is chosen:
        note = "chosen: lowest predicted error within mix.max_repeats"
        if c.law_best:
            note += " (the law's best)"
    elif not c.within_cap:
        note = (
            f"exceeds mix.max_repeats = {cap:g}: pool {c.max_unique_epochs_pool} would be repeated "
            f"{c.max_unique_epochs:.4g} times"
        )
    else:
        diff = c.predicted_error - chosen.predicted_error
        note = f"predicted error {diff:+.3g} vs the chosen"
    if not c.in_regime:
        note += f"; outside the law's regime (s_0 = {c.s0:.3g} <= 1)"
    return note


# =============================================================================================================
# Pool statistics from a run directory's curated shards
# =============================================================================================================
@dataclass(frozen=True)
class PoolStats:
    """Pools of a run's curated shards.

    Args:
        pools: One row per quality bucket × domain with ``POOL_COLUMNS``, best bucket first.
        shards: Rows and kept rows per curated shard, ``path`` relative to the run.
        definition: How a curated row maps to its pool (the plan's ``pool_definition``).
        token_count: How tokens were counted (the plan's ``token_count``).
        n_quality_buckets: Buckets in the definition (``n_buckets``, 5 levels, or 1).
        warnings: Fallbacks and data notes.
    """

    pools: pl.DataFrame
    shards: tuple[Shard, ...]
    definition: PoolDefinition
    token_count: WhitespaceCount | TokenizerCount
    n_quality_buckets: int
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _Curated:
    """One curated shard: a lazy scan and its schema (nothing read yet).

    Args:
        rel: Its path relative to the run (``curated/<stem>.parquet``).
        scan: The lazy scan of the file.
        schema: Its columns and types.
    """

    rel: str
    scan: pl.LazyFrame
    schema: pl.Schema

    @property
    def names(self) -> list[str]:
        return self.schema.names()

    def __contains__(self, column: str) -> bool:
        return column in self.schema

    def collect(self, query: pl.LazyFrame, what: str) -> pl.DataFrame:
        """``query`` (over :attr:`scan`) run by polars' streaming engine: the file is read in morsels of the columns
        the query needs, so memory holds a morsel and the query's state (sums, or the column it returns), never
        the shard.

        Raises:
            ShardError: The file cannot be read or the query fails on its values.
        """
        try:
            return query.collect(engine="streaming")
        except Exception as e:  # polars/pyarrow raise many kinds for a corrupt file
            raise ShardError(self.rel, f"{what}: {e}") from None


def _scan(rd: RunDir, rel: str) -> pl.LazyFrame:
    protocol = rd.fs.protocol
    if "file" in (protocol if isinstance(protocol, (tuple, list)) else (protocol,)):
        return pl.scan_parquet(rd._p(rel))
    return pl.scan_pyarrow_dataset(pads.dataset(rd._p(rel), filesystem=rd.fs, format="parquet"))


def _presence(shards: dict[str, _Curated], column: str) -> list[str]:
    return [rel for rel, shard in shards.items() if column in shard]


def _run_shard_files(rd: RunDir) -> list[str]:
    """The curated files of the run's shards: those of its ``manifest.json`` (the only list anyone reads: a shard
    removed from the inputs is not planned over even if its file is still there), or, for a run made before
    manifests, the ``curated/`` listing."""
    names = rd.shard_files("curated")
    missing = [n for n in names if not rd.exists("curated", n)]
    if missing:
        msg = (
            f"{rd.url_of('curated')}: {len(missing)} of the run's {len(names)} shard(s) have no curated file "
            f"(e.g. {missing[0]}): run `winnow run` (or `winnow write`) on this run first"
        )
        raise PlanError(msg)
    return names


def _curated_shards(rd: RunDir, run_dir: str, text_field: str) -> dict[str, _Curated]:
    """Lazy scans of ``curated/*.parquet`` with their schemas, each checked for the keep and text columns."""
    if not rd.fs.isdir(rd.path):
        msg = f"run directory not found: {run_dir}"
        raise PlanError(msg)
    names = _run_shard_files(rd)
    if not names:
        msg = f"no curated shards in {rd.url_of('curated')}: run `winnow run` (or `winnow write`) on this run first"
        raise PlanError(msg)
    shards = {}
    for rel in (f"curated/{n}" for n in names):
        try:
            scan = _scan(rd, rel)
            shards[rel] = _Curated(rel, scan, scan.collect_schema())
        except Exception as e:  # polars/pyarrow raise many kinds for a corrupt file
            raise ShardError(rel, f"cannot read: {e}") from None
    for rel, shard in shards.items():
        for column in (KEEP, text_field):
            if column not in shard:
                msg = f"{rel}: no {column!r} column (columns: {', '.join(shard.names)})"
                raise PlanError(msg)
    return shards


def _quality_kind(mix: MixSection, shards: dict[str, _Curated], warnings: list[str]) -> tuple[str, str]:
    """``(kind, reason for one bucket)``: ``mix.pools.quality``, or ``none`` when no shard has its column."""
    quality = mix.pools.quality
    q_column = {"quantiles": QUALITY_SCORE, "dataman_levels": QUALITY_OVERALL}.get(quality)
    reason = "mix.pools.quality = none"
    if q_column is None:
        return quality, reason
    have = _presence(shards, q_column)
    if not have:
        reason = f"the curated shards have no {q_column} column (quality scoring has not run)"
        warnings.append(f"{reason}: one quality bucket, {ALL!r}")
        return "none", reason
    if len(have) < len(shards):
        missing = [r for r in shards if r not in have]
        msg = f"{q_column} is in {len(have)} of {len(shards)} curated shards (missing from {', '.join(missing)})"
        raise PlanError(msg)
    return quality, reason


def _domain_column(mix: MixSection, shards: dict[str, _Curated], warnings: list[str]) -> str | None:
    """The domain column, or None for one domain (``mix.pools.domain = none``, or the default column is absent)."""
    d_column: str | None = None if mix.pools.domain == "none" else mix.pools.domain
    if d_column is None:
        return None
    have = _presence(shards, d_column)
    if not have and "domain" not in mix.pools.model_fields_set:
        warnings.append(f"the curated shards have no {d_column!r} column: one domain, {ALL!r}")
        return None
    if len(have) < len(shards):
        missing = [r for r in shards if r not in have]
        available = sorted(set().union(*(s.names for s in shards.values())))
        msg = (
            f"mix.pools.domain = {d_column!r} is missing from {', '.join(missing)} "
            f"(columns: {', '.join(available)}; or set mix.pools.domain=none)"
        )
        raise PlanError(msg)
    return d_column


def _repeat_column(shard: _Curated) -> str | None:
    return REPEAT if REPEAT in shard else None


def _shard_rows(shards: dict[str, _Curated], run_dir: str) -> list[Shard]:
    """Rows and kept rows of every shard; refuses a negative repeat count, and shards without kept rows."""
    out = []
    for rel, shard in shards.items():
        rep_col = _repeat_column(shard)
        rep = pl.col(REPEAT).cast(pl.Int64).fill_null(1) if rep_col else pl.lit(1, dtype=pl.Int64)
        counts = shard.collect(
            shard.scan.select(
                pl.len().alias("rows"), kept_expr(KEEP, rep_col).sum().alias("kept"), (rep < 0).sum().alias("neg")
            ),
            "cannot read",
        )
        if counts["neg"][0]:
            raise ShardError(rel, f"{counts['neg'][0]} row(s) with a negative {REPEAT!r}")
        out.append(Shard(path=rel, rows=int(counts["rows"][0]), kept_rows=int(counts["kept"][0])))
    if sum(s.kept_rows for s in out) == 0:
        msg = f"no kept rows (keep == true) in the {len(out)} curated shard(s) of {run_dir}: nothing to plan"
        raise PlanError(msg)
    return out


def linear_quantiles(values: np.ndarray, qs: Sequence[float], nulls: int = 0) -> list[float] | None:
    """The ``linear`` quantiles of ``values`` and ``nulls`` nulls (``values`` without nulls or NaN), as polars computes
    them for such a column, reordering ``values`` in place (``np.partition``: no sorted copy).

    Polars sorts the nulls first: for ``n`` values, quantile ``q`` is at ``i = (n - 1)·q + nulls``, and it is
    ``lower`` when ``i`` is whole, else ``lower + (i - ⌊i⌋)·(upper - lower)`` (``lower`` if ``upper == lower``), with
    ``lower`` and ``upper`` the values of rank ``⌊i⌋ - nulls`` and the next: the float64 numbers of polars'
    ``quantile(q, interpolation="linear")`` (``tests/mixers/test_loader_memory.py`` checks them against it).
    ``None`` when there are no values.
    """
    n = len(values)
    if n == 0:
        return None
    pos = [(n - 1) * q + nulls for q in qs]
    low = [int(p) for p in pos]
    values.partition(sorted({r for lo in low for r in (lo - nulls, min(lo - nulls + 1, n - 1))}))
    out = []
    for p, lo in zip(pos, low, strict=True):
        a, b = float(values[lo - nulls]), float(values[min(lo - nulls + 1, n - 1)])
        out.append(a if a == b or p == lo else (p - lo) * (b - a) + a)
    return out


def _kept_scores(shards: dict[str, _Curated], kept_rows: int) -> tuple[np.ndarray, int]:
    """``(quality_score of every kept row that has one, kept rows without one)`` (NaN = null), shard by shard into
    one array of at most ``kept_rows`` entries: float32 when every shard stores float32 (4 bytes per kept row),
    else float64."""
    f32 = all(s.schema[QUALITY_SCORE] == pl.Float32 for s in shards.values())
    out = np.empty(kept_rows, dtype=np.float32 if f32 else np.float64)
    n = nulls = 0
    for shard in shards.values():
        score = pl.col(QUALITY_SCORE) if f32 else pl.col(QUALITY_SCORE).cast(pl.Float64)
        query = shard.scan.filter(kept_expr(KEEP, _repeat_column(shard))).select(score.fill_nan(None))
        column = shard.collect(query, f"cannot read {QUALITY_SCORE}").to_series()
        values = column.drop_nulls().to_numpy()
        nulls += len(column) - len(values)
        if n + len(values) > len(out):  # the shard changed since its rows were counted
            out = np.concatenate([out[:n], np.empty(n + len(values) - len(out), out.dtype)])
        out[n : n + len(values)] = values
        n += len(values)
    return out[:n], nulls


def _quantile_edges(shards: dict[str, _Curated], n: int, kept_rows: int) -> list[float] | None:
    """The ``n - 1`` linear quantiles of ``quality_score`` (NaN = null) over the kept rows; None if all are null."""
    qs = [i / n for i in range(1, n)]
    if not qs:
        return []
    values, nulls = _kept_scores(shards, kept_rows)
    return linear_quantiles(values, qs, nulls)


def _quality_definition(
    kind: str, reason: str, n: int, shards: dict[str, _Curated], rows: list[Shard], warnings: list[str]
) -> QuantileBuckets | DatamanLevels | OneBucket:
    """The plan's ``pool_definition.quality`` for this kind (quantile edges computed over the kept rows)."""
    if kind == "quantiles":
        edges = _quantile_edges(shards, n, sum(s.kept_rows for s in rows))
        if edges is not None:
            return quantile_buckets(edges, n)
        warnings.append(f"no kept document has a {QUALITY_SCORE}: one quality bucket, {ALL!r}")
        return OneBucket(kind="none", label=ALL, reason=f"every kept {QUALITY_SCORE} is null")
    if kind == "dataman_levels":
        return dataman_buckets()
    return OneBucket(kind="none", label=ALL, reason=reason)


def _n_buckets(quality: QuantileBuckets | DatamanLevels | OneBucket) -> int:
    """Buckets of a quality definition: ``n_buckets``, the 5 DataMan levels, or 1."""
    if isinstance(quality, QuantileBuckets):
        return quality.n_buckets
    return DATAMAN_LEVELS if isinstance(quality, DatamanLevels) else 1


def _shard_pools(shard: _Curated, rule: PoolRule, counter: TokenCounter) -> pl.DataFrame:
    """Documents, unique tokens, pass tokens and null quality scores per pool of one shard's kept rows: one
    streaming query over the pool rule's columns and the text, the tokens counted morsel by morsel."""
    names = shard.names
    tokens = (
        pl.col(rule.definition.text_column)
        .cast(pl.String)
        .map_batches(lambda texts: pl.Series(counter.counts(texts), dtype=pl.Int64), pl.Int64, is_elementwise=True)
    )
    query = (
        shard.scan.filter(rule.kept(names))
        .select(
            tokens.alias("_tokens"),
            rule.bucket.alias("quality_bucket"),
            rule.rank.cast(pl.Int64).alias("quality_rank"),
            rule.domain.alias("domain"),
            rule.repeat(names).alias("_rep"),
            rule.quality_null.alias("_qnull"),
        )
        .group_by("quality_bucket", "quality_rank", "domain")
        .agg(
            pl.len().cast(pl.Int64).alias("documents"),
            pl.col("_tokens").sum().alias("unique_tokens"),
            (pl.col("_tokens") * pl.col("_rep")).sum().alias("pass_tokens"),
            pl.col("_qnull").cast(pl.Int64).sum().alias("_qnull"),
        )
    )
    agg = shard.collect(query, "cannot count pools")
    if isinstance(rule.definition.quality, DatamanLevels):
        bad = agg.filter((pl.col("quality_rank") < 1) | (pl.col("quality_rank") > DATAMAN_LEVELS))
        if bad.height:
            raise ShardError(shard.rel, f"{QUALITY_OVERALL} must be 1..5, got {', '.join(bad['quality_bucket'])}")
    return agg


def _null_quality_warning(pools: pl.DataFrame, quality: QuantileBuckets | DatamanLevels | OneBucket) -> list[str]:
    """A warning when kept documents without a quality score went to the lowest bucket."""
    n_null = int(pools["_qnull"].sum())
    if not n_null or isinstance(quality, OneBucket):
        return []
    lowest = "q1" if isinstance(quality, QuantileBuckets) else "overall_1"
    return [f"{n_null} kept document(s) without a quality score counted in the lowest bucket, {lowest}"]


def pool_stats(
    run_dir: str,
    mix: MixSection,
    *,
    text_field: str = "text",
    id_field: str = "id",
    storage_options: dict[str, Any] | None = None,
) -> PoolStats:
    """Count documents and tokens per pool over ``<run_dir>/curated/*.parquet`` (kept rows only).

    Each pass over a shard is one query of polars' streaming engine over the columns it needs (keep and repeat;
    then the quality score, for quantile edges; then the pool rule's columns and the text, tokens counted morsel
    by morsel), so memory holds a morsel and the per-pool sums, never a whole column of the shards, plus 4 bytes
    per kept row for the quality score's quantiles (float32 scores).

    Args:
        run_dir: The run directory (local path or fsspec URL).
        mix: The mix config (``pools``, ``token_count``).
        text_field: The text column (``io.text_field``; default ``text``).
        id_field: The id column (``io.id_field``; default ``id``), recorded in the definition for the loader.
        storage_options: fsspec options of a remote run directory.

    Returns:
        The :class:`PoolStats`.

    Raises:
        PlanError: No run directory, no curated shards, missing columns, no kept rows.
        ShardError: A shard cannot be read or holds invalid values.
    """
    rd = RunDir(run_dir, storage_options)
    shards = _curated_shards(rd, run_dir, text_field)
    warnings: list[str] = []
    kind, reason = _quality_kind(mix, shards, warnings)
    d_column = _domain_column(mix, shards, warnings)
    rows = _shard_rows(shards, run_dir)
    quality = _quality_definition(kind, reason, mix.pools.n_buckets, shards, rows, warnings)
    definition = PoolDefinition(
        keep_column=KEEP,
        repeat_column=REPEAT if _presence(shards, REPEAT) else None,
        text_column=text_field,
        id_column=id_field,
        quality=quality,
        domain=DomainColumn(column=d_column, null=NULL_DOMAIN) if d_column else OneDomain(column=None, label=ALL),
    )
    rule = pool_rule(definition)
    counter = TokenCounter(token_count_rule(mix.token_count), mix.token_count.batch_size)
    pools = (
        pl.concat([_shard_pools(shard, rule, counter) for shard in shards.values()])
        .group_by("quality_bucket", "quality_rank", "domain")
        .agg(pl.col("documents", "unique_tokens", "pass_tokens", "_qnull").sum())
        .sort("quality_rank", "domain")
    )
    warnings += _null_quality_warning(pools, quality)
    return PoolStats(
        pools=pools.select(POOL_COLUMNS),
        shards=tuple(rows),
        definition=definition,
        token_count=counter.rule,
        n_quality_buckets=_n_buckets(quality),
        warnings=tuple(warnings),
    )


# =============================================================================================================
# The whole plan, written atomically
# =============================================================================================================
def _config_hash(rd: RunDir) -> str | None:
    if not rd.exists("config.resolved.yaml"):
        return None
    try:
        data = yaml.safe_load(rd.read_text("config.resolved.yaml"))
    except yaml.YAMLError:
        return None
    value = data.get("config_hash") if isinstance(data, dict) else None
    return None if value is None else str(value)


def build_mixture_plan(
    run_dir: str,
    mix: MixSection,
    *,
    text_field: str = "text",
    id_field: str = "id",
    seed: int = 0,
    storage_options: dict[str, Any] | None = None,
    budget_tokens: int | None = None,
) -> MixturePlan:
    """The full mixture plan of a run: :func:`pool_stats` + :func:`choose_mixture` + provenance (module doc).

    Args:
        run_dir: The run directory (local path or fsspec URL).
        mix: The mix config.
        text_field: The text column (``io.text_field``).
        id_field: The id column (``io.id_field``), recorded as ``pool_definition.id_column``.
        seed: The run's seed, recorded when ``mix.seed`` is null.
        storage_options: fsspec options of a remote run directory.
        budget_tokens: Overrides the config's budget.

    Returns:
        The :class:`~winnow.mixers.plan.MixturePlan`.
    """
    stats = pool_stats(run_dir, mix, text_field=text_field, id_field=id_field, storage_options=storage_options)
    core = choose_mixture(stats.pools, mix, budget_tokens=budget_tokens, n_quality_buckets=stats.n_quality_buckets)
    config_hash = _config_hash(RunDir(run_dir, storage_options))
    warnings = list(stats.warnings)
    if config_hash is None:
        warnings.append("no config_hash: the run directory has no readable config.resolved.yaml")
    return MixturePlan(
        format=PLAN_FORMAT,
        winnow_version=winnow.__version__,
        config_hash=config_hash,
        seed=mix.seed if mix.seed is not None else seed,
        budget=core.budget,
        max_repeats=core.max_repeats,
        token_count=stats.token_count,
        law=core.law,
        pool_definition=stats.definition,
        shards=list(stats.shards),
        candidates=core.candidates,
        choice=core.choice,
        phases=core.phases,
        pools=core.pools,
        warnings=warnings + core.warnings,
    )


def build_plan(
    run_dir: str,
    mix: MixSection,
    *,
    text_field: str = "text",
    id_field: str = "id",
    seed: int = 0,
    storage_options: dict[str, Any] | None = None,
    budget_tokens: int | None = None,
) -> dict[str, Any]:
    """:func:`build_mixture_plan` as a JSON-ready dict (the keys and values written to ``mixture_plan.json``)."""
    plan = build_mixture_plan(
        run_dir,
        mix,
        text_field=text_field,
        id_field=id_field,
        seed=seed,
        storage_options=storage_options,
        budget_tokens=budget_tokens,
    )
    return plan.to_dict()


def _as_plan(plan: MixturePlan | Mapping[str, Any]) -> MixturePlan:
    """The plan as a :class:`MixturePlan` (a dict is validated: only a well-formed plan is written)."""
    return plan if isinstance(plan, MixturePlan) else MixturePlan.model_validate(plan)


def plan_json(plan: MixturePlan | Mapping[str, Any]) -> str:
    """The plan as the text written to ``mixture_plan.json`` (indented, UTF-8, newline-terminated)."""
    return _as_plan(plan).to_json()


def write_plan(
    run_dir: str, plan: MixturePlan | Mapping[str, Any], storage_options: dict[str, Any] | None = None
) -> str:
    """Write ``<run_dir>/mixture_plan.json`` atomically (temporary name, then rename); return its URL."""
    text = plan_json(plan)
    rd = RunDir(run_dir, storage_options)
    rd.write_bytes(PLAN_FILE, text.encode("utf-8"))
    return rd.url_of(PLAN_FILE)
