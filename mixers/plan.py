"""The mixture plan as typed models: exactly the JSON ``winnow mix`` writes to ``<run>/mixture_plan.json``.

The planner (:mod:`winnow.mixers.planner`) builds a :class:`MixturePlan` and writes :meth:`MixturePlan.to_json`;
the loader (:mod:`winnow.mixers.loader`) reads the file with :meth:`MixturePlan.model_validate`. Every model
forbids keys it does not know, so a plan from another layout is refused with the key named
(:func:`describe_validation_error`) rather than misread. The section layout and its meaning are in the planner's
module docstring.

Sections whose shape depends on a kind are unions told apart by one key: ``token_count`` by ``method``,
``pool_definition.quality`` by ``kind``, ``pool_definition.domain`` by whether ``column`` is null, and each phase
by its ``name``. :meth:`MixturePlan.to_dict` gives back the keys in the order the planner writes them, so a plan
read from a file and dumped again gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

__all__ = [
    "PLAN_FILE",
    "PLAN_FORMAT",
    "BasePhase",
    "Budget",
    "Candidate",
    "Choice",
    "DatamanLevels",
    "Domain",
    "DomainColumn",
    "Law",
    "LawBucket",
    "LawParameter",
    "MixturePlan",
    "OneBucket",
    "OneDomain",
    "Phase",
    "PlanCore",
    "PlanPool",
    "PoolDefinition",
    "Quality",
    "QuantileBuckets",
    "Shard",
    "TokenCount",
    "TokenizerCount",
    "UpsamplePhase",
    "WhitespaceCount",
    "describe_validation_error",
]

PLAN_FORMAT = "winnow.mixture_plan/1"
PLAN_FILE = "mixture_plan.json"


class _Model(BaseModel):
    """A plan section: unknown keys are errors (a plan of another layout is refused, not misread)."""

    model_config = ConfigDict(extra="forbid")


# =============================================================================================================
# Budget and law
# =============================================================================================================
class Budget(_Model):
    """The token budget the plan fills and where it came from."""

    tokens: int = Field(description="Training tokens the plan fills: the pools' tokens sum to it.")
    source: str = Field(description="Where the budget came from (argument, mix.budget_tokens, mix.flops ...).")
    flops: float | None = Field(description="mix.flops, when the budget was derived from it (else as configured).")
    model_params: float | None = Field(description="mix.model_params (model parameters N), when known.")


class LawParameter(_Model):
    """A shared parameter of the law with its source."""

    value: float = Field(description="The parameter's value.")
    source: str = Field(description='"config (mix.law.<key>)", "fitted: <path>" or "default (...)".')


class LawBucket(_Model):
    """The law's parameters of one quality bucket."""

    quality_bucket: str = Field(description="The bucket's label (q4, overall_5, all).")
    quality_rank: int = Field(description="1 = highest quality.")
    b: float = Field(description="Utility exponent (< 0).")
    tau: float = Field(description="Half-life in repetitions (> 0).")
    source: str = Field(description="Where b and tau came from.")


class Law(_Model):
    """The Goyal et al. (2024) union law the planner scored the candidates with."""

    name: Literal["goyal"] = Field(description="The law: always goyal.")
    reference: str = Field(description="The paper and the variant of the law.")
    unit: Literal["tokens"] = Field(description="Units of the law's n and E_i.")
    a: LawParameter = Field(description="Shared sample-efficiency scale (per token).")
    d: LawParameter = Field(description="Shared error floor.")
    tau_scaling: Literal["pools", "none"] = Field(description="How tau scales with the union's pools.")
    b_mean: Literal["pools", "samples"] = Field(description="How the union's b is averaged.")
    buckets: list[LawBucket] = Field(description="Parameters per quality bucket, best first.")


# =============================================================================================================
# How tokens are counted
# =============================================================================================================
class WhitespaceCount(_Model):
    """Tokens are whitespace-separated words."""

    method: Literal["whitespace"] = Field(description="Count regex \\S+ matches of the text.")
    rule: str = Field(description="The rule in words.")


class TokenizerCount(_Model):
    """Tokens are a local tokenizer's token ids (no special tokens, no truncation)."""

    method: Literal["tokenizer"] = Field(description="Count the token ids of a local tokenizer.")
    tokenizer: str = Field(description="A tokenizer.json file, or a local directory holding a tokenizer.")
    special_tokens: Literal[False] = Field(description="Special tokens are not counted.")


TokenCount = Annotated[WhitespaceCount | TokenizerCount, Field(discriminator="method")]


# =============================================================================================================
# How a curated row maps to its pool
# =============================================================================================================
class QuantileBuckets(_Model):
    """Quality buckets by quantiles of a score over the kept documents."""

    kind: Literal["quantiles"] = Field(description="Buckets are quantiles of column.")
    column: str = Field(description="The score column (quality_score).")
    n_buckets: int = Field(description="Number of buckets.")
    edges: list[float] = Field(description="The n_buckets - 1 quantile edges, ascending.")
    labels: list[str] = Field(description="Bucket labels, lowest first (q1 .. q<n>).")
    rule: str = Field(description="The rule in words.")


class DatamanLevels(_Model):
    """Quality buckets by DataMan's overall level (1..5)."""

    kind: Literal["dataman_levels"] = Field(description="Buckets are the levels of column.")
    column: str = Field(description="The level column (quality_overall).")
    labels: list[str] = Field(description="Bucket labels, lowest first (overall_1 .. overall_5).")
    rule: str = Field(description="The rule in words.")


class OneBucket(_Model):
    """One quality bucket for every document."""

    kind: Literal["none"] = Field(description="No quality buckets.")
    label: str = Field(description="The one bucket's label (all).")
    reason: str = Field(description="Why there is one bucket (mix.pools.quality = none, no quality column ...).")


Quality = Annotated[QuantileBuckets | DatamanLevels | OneBucket, Field(discriminator="kind")]


class DomainColumn(_Model):
    """Domains are the values of a column."""

    column: str = Field(description="The domain column (source, quality_domain ...).")
    null: str = Field(description="The domain of a null value (unknown).")


class OneDomain(_Model):
    """One domain for every document."""

    column: None = Field(description="No domain column.")
    label: str = Field(description="The one domain's label (all).")


def _domain_tag(value: Any) -> str:
    """``column`` when the domain section names a column, ``none`` otherwise."""
    column = value.get("column") if isinstance(value, dict) else getattr(value, "column", None)
    return "none" if column is None else "column"


Domain = Annotated[
    Annotated[DomainColumn, Tag("column")] | Annotated[OneDomain, Tag("none")], Discriminator(_domain_tag)
]


class PoolDefinition(_Model):
    """How a curated row maps to its pool, and which columns the loader reads."""

    keep_column: str = Field(description="Rows with a true value are kept (null = not kept).")
    repeat_column: str | None = Field(
        description="Repeat count per row (null = 1, <= 0 = not kept); null when no curated shard has one."
    )
    text_column: str = Field(description="The text column (io.text_field).")
    id_column: str | None = Field(
        None, description="The id column (io.id_field); a plan without it is read with the loader's id_field."
    )
    quality: Quality = Field(description="The quality bucket of a row.")
    domain: Domain = Field(description="The domain of a row.")


class Shard(_Model):
    """A curated shard the plan was made from."""

    path: str = Field(description="Path relative to the run directory (curated/<stem>.parquet).")
    rows: int = Field(description="Rows in the shard.")
    kept_rows: int = Field(description="Kept rows (keep true and repeat > 0).")


# =============================================================================================================
# The decision: candidates, choice, phases, pools
# =============================================================================================================
class Candidate(_Model):
    """A union of the top m quality buckets, scored by the law."""

    m: int = Field(description="Number of quality buckets in the union.")
    quality_buckets: list[str] = Field(description="The union's buckets, in the law's order (most negative b first).")
    pools: int = Field(description="Pools (bucket × domain) in the union.")
    documents: int = Field(description="Kept documents in the union.")
    unique_tokens: int = Field(description="Unique tokens of the union.")
    unique_epochs: float = Field(description="Budget / unique tokens.")
    s0: float = Field(description="a · min(E, n) / 1e5: the law's regime needs s0 > 1.")
    in_regime: bool = Field(description="s0 > 1.")
    predicted_error: float | None = Field(description="The law's error at the budget; null when not evaluated.")
    effective_tokens: float = Field(description="Muennighoff et al.'s effective tokens D' of the repetition.")
    muennighoff_loss: float | None = Field(
        description="Muennighoff et al.'s predicted loss, when model_params is set."
    )
    max_unique_epochs: float = Field(description="The largest unique_epochs of the union's pools.")
    max_unique_epochs_pool: str = Field(description="The pool with max_unique_epochs.")
    within_cap: bool = Field(description="max_unique_epochs <= mix.max_repeats.")
    law_best: bool = Field(description="The lowest predicted error, cap or no cap.")
    chosen: bool = Field(description="The candidate the plan follows.")
    note: str = Field(description="Why the candidate was or was not chosen.")


class Choice(_Model):
    """The candidate the plan follows and why."""

    m: int = Field(description="The chosen union: the top m quality buckets.")
    quality_buckets: list[str] = Field(description="Its buckets.")
    predicted_error: float = Field(description="Its predicted error.")
    law_best_m: int = Field(description="m of the law's best candidate, cap or no cap.")
    cap_binds: bool = Field(description="mix.max_repeats ruled out the law's best candidate.")
    reason: str = Field(description="The choice in words.")


class BasePhase(_Model):
    """The base phase: tokens go to the chosen pools in proportion to their unique tokens."""

    name: Literal["base"] = Field(description="The phase's name.")
    start_token: int = Field(description="First token of the phase (0).")
    end_token: int = Field(description="Token after the phase.")
    tokens: int = Field(description="end_token - start_token.")


class UpsamplePhase(_Model):
    """The upsampling phase: the pools of some domains weigh factor times more."""

    name: Literal["upsample"] = Field(description="The phase's name.")
    start_token: int = Field(description="First token of the phase (the base phase's end).")
    end_token: int = Field(description="Token after the phase (the budget).")
    tokens: int = Field(description="end_token - start_token.")
    domains: list[str] = Field(description="The upsampled domains (mix.upsample.domains).")
    factor: float = Field(description="Their weight factor (mix.upsample.factor).")
    fraction: float = Field(description="The phase's share of the budget (mix.upsample.fraction).")


Phase = Annotated[BasePhase | UpsamplePhase, Field(discriminator="name")]


class PlanPool(_Model):
    """One pool (quality bucket × domain): its size and its tokens in the plan."""

    pool: str = Field(description="<quality_bucket>/<domain>.")
    quality_bucket: str = Field(description="The pool's quality bucket.")
    quality_rank: int = Field(description="The bucket's rank, 1 = highest quality.")
    domain: str = Field(description="The pool's domain.")
    chosen: bool = Field(description="The pool is in the chosen union.")
    documents: int = Field(description="Kept documents.")
    unique_tokens: int = Field(description="Σ tokens of its documents.")
    pass_tokens: int = Field(description="Σ tokens × repeat: one pass over the pool.")
    tokens: int = Field(description="Tokens the plan trains on from the pool.")
    epochs: float = Field(description="tokens / pass_tokens: the passes the loader makes.")
    unique_epochs: float = Field(description="tokens / unique_tokens (<= mix.max_repeats).")
    phase_tokens: dict[str, int] = Field(description="Tokens per phase.")
    phase_weights: dict[str, float] = Field(description="Share of each phase's tokens.")


class PlanCore(_Model):
    """The planner's decision for a pool-statistics frame (:func:`winnow.mixers.planner.plan_mixture`)."""

    budget: Budget = Field(description="The token budget.")
    max_repeats: float = Field(description="mix.max_repeats: the cap on a pool's unique_epochs.")
    law: Law = Field(description="The law and its parameters.")
    candidates: list[Candidate] = Field(description="Every union of the top m buckets, m = 1..M.")
    choice: Choice = Field(description="The chosen candidate.")
    phases: list[Phase] = Field(description="The phases, contiguous from token 0 to the budget.")
    pools: list[PlanPool] = Field(description="Every pool with tokens, best bucket first.")
    warnings: list[str] = Field(description="Things the user should know about the decision.")


# =============================================================================================================
# The plan
# =============================================================================================================
class MixturePlan(_Model):
    """``<run>/mixture_plan.json``: what to train on, how often and in which phases, and how to find it."""

    format: Literal["winnow.mixture_plan/1"] = Field(description="The plan's format and version.")
    winnow_version: str = Field(description="The winnow version that made the plan.")
    config_hash: str | None = Field(description="config_hash of <run>/config.resolved.yaml; null without one.")
    seed: int = Field(description="The loader's default seed (mix.seed, else the run's seed).")
    budget: Budget = Field(description="The token budget.")
    max_repeats: float = Field(description="mix.max_repeats: the cap on a pool's unique_epochs.")
    token_count: TokenCount = Field(description="How the loader must count tokens to follow the plan.")
    law: Law = Field(description="The law and its parameters.")
    pool_definition: PoolDefinition = Field(description="How a curated row maps to its pool.")
    shards: list[Shard] = Field(description="The curated shards the plan was made from.")
    candidates: list[Candidate] = Field(description="Every union of the top m buckets, m = 1..M.")
    choice: Choice = Field(description="The chosen candidate.")
    phases: list[Phase] = Field(description="The phases, contiguous from token 0 to the budget.")
    pools: list[PlanPool] = Field(description="Every pool with tokens, best bucket first.")
    warnings: list[str] = Field(description="Fallbacks, defaults and data notes.")

    def to_dict(self) -> dict[str, Any]:
        """The plan as a JSON-ready dict, keys in the written order."""
        return self.model_dump(mode="python")

    def to_json(self) -> str:
        """The text of ``mixture_plan.json``: indented, UTF-8, newline-terminated, no NaN or infinity.

        Python's ``json`` (not pydantic's serializer) writes it, so numbers keep the form the planner has always
        written (``1e-05``, ``8.0``) and the same plan gives the same bytes.
        """
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# =============================================================================================================
# Validation errors in words
# =============================================================================================================
#: Fields whose value is a tagged union: pydantic puts the tag in an error's location after them.
_UNION_FIELDS = frozenset({"token_count", "quality", "domain"})


def _location(loc: Sequence[str | int]) -> str:
    """``pools[0].phase_tokens`` from pydantic's ``("pools", 0, "phase_tokens")``, union tags left out."""
    out = ""
    tag_next = False
    for i, key in enumerate(loc):
        if tag_next and isinstance(key, str):
            tag_next = False
            continue
        tag_next = key in _UNION_FIELDS or (isinstance(key, int) and i > 0 and loc[i - 1] == "phases")
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "(the plan)"


def describe_validation_error(error: ValidationError, limit: int = 5) -> str:
    """The problems of a refused plan in words, each naming its key: missing keys, unknown keys, bad values."""
    missing: list[str] = []
    unknown: list[str] = []
    bad: list[str] = []
    for e in error.errors(include_url=False):
        where = _location(e["loc"])
        if e["type"] == "missing":
            missing.append(where)
        elif e["type"] == "extra_forbidden":
            unknown.append(where)
        else:
            got = repr(e.get("input"))
            bad.append(f"{where} ({e['msg']}; got {got if len(got) <= 60 else got[:57] + '...'})")

    def listed(items: list[str]) -> str:
        return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")

    parts = []
    if missing:
        parts.append(f"the plan lacks {listed(missing)}")
    if unknown:
        parts.append(f"the plan has unknown key(s) {listed(unknown)}")
    if bad:
        parts.append(f"bad value(s): {'; '.join(bad[:limit])}" + (" ..." if len(bad) > limit else ""))
    return "; ".join(parts)
