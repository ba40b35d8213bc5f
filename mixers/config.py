"""The ``mix`` section of the config: budget, pools, law parameters, repeat cap and upsampling (DESIGN §3.7–3.10).

Every model is frozen and forbids unknown keys, like the sections of :mod:`winnow.pipeline.config`. ``MixSection`` is
mounted on the whole config as ``mix``::

    mix:
      budget_tokens: 2e6            # or flops + model_params (tokens = flops / (6 · model_params))
      pools: {quality: quantiles, n_buckets: 4, domain: source}
      max_repeats: 16
      law: {fitted: runs/x/report/law_fit.json}  # or a, d and buckets.<label>.{b, tau}; defaults otherwise
      upsample: {domains: [code, math], fraction: 0.2, factor: 2}

The Goyal et al. (2024) defaults are the reference code's fit for T-MARS quality buckets of DataComp medium
(``GOYAL_REFERENCE``): image-text data, not text. The planner labels every parameter with its source so a plan
that rests on them says so; fit the law to your corpus with ``winnow report --proxy lm`` (``report/law_fit.json``) or
to your own proxy runs with ``winnow laws fit --law goyal --json``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from winnow.core.section import Section, StrList

__all__ = [
    "GOYAL_REFERENCE",
    "GOYAL_REFERENCE_A",
    "GOYAL_REFERENCE_B",
    "GOYAL_REFERENCE_D",
    "GOYAL_REFERENCE_POOLED",
    "GOYAL_REFERENCE_TAU",
    "BucketLaw",
    "LawSection",
    "MixSection",
    "PoolsSection",
    "TokenCountSection",
    "UpsampleSection",
    "default_bucket_law",
]

#: Where the default law parameters come from.
GOYAL_REFERENCE = (
    "Goyal et al. 2024 reference code, locuslab/scaling_laws_data_filtering results/parameter_values.jsonl, "
    "id tmars_imagenet1k_utility"
)
#: Shared sample-efficiency scale of the reference fit (its ``best_a``). The paper counts image-text samples;
#: winnow counts tokens, so ``s_0 = a·min(E, n)/1e5 > 1`` (the law's regime) needs more than 4M tokens.
GOYAL_REFERENCE_A = 0.025
#: Shared error floor (the reference fit's ``d_value``, also ``estimate_best_pool.py --d``).
GOYAL_REFERENCE_D = 0.1
#: ``b`` of the T-MARS top 0–10%, 10–20%, 20–30%, 30–40% buckets (best first).
GOYAL_REFERENCE_B = (-0.16, -0.125, -0.1, -0.085)
#: ``tau`` (the reference's ``c_values``) of the same buckets.
GOYAL_REFERENCE_TAU = (6.7272727272727275, 8.545454545454547, 5.2727272727272725, 2.2727272727272725)
#: ``(b, tau)`` of the reference's pooled bucket ``tmars_top0to40p_random25p`` (a random 25% of the top 40%).
GOYAL_REFERENCE_POOLED = (-0.12, 6.0)


_Section = Section  # every config section: extra="forbid", frozen


def _parse_number(v: Any) -> Any:
    """Read ``"2e6"`` or ``"1_000"`` (YAML 1.1 and ``--set`` leave them strings) as numbers."""
    if isinstance(v, str):
        try:
            return float(v.strip().replace("_", ""))
        except ValueError:
            return v  # pydantic names the key and the bad value
    return v


def default_bucket_law(rank: int, n_buckets: int) -> tuple[float, float, str]:
    """Default ``(b, tau, source)`` of the quality bucket of ``rank`` (1 = best) out of ``n_buckets``.

    One bucket takes the reference's pooled bucket (a random 25% of its top 40%, the closest thing to "all the
    data"); four buckets take the reference's four buckets as they are; any other count interpolates linearly over
    bucket rank between the reference's best (top 0–10%) and its worst (top 30–40%) bucket, so ``b`` still
    increases (less utility) from the best bucket to the worst.

    Args:
        rank: 1-based rank of the bucket, 1 = highest quality.
        n_buckets: How many quality buckets the pool definition has (``pools.n_buckets``, 5 DataMan levels, or 1).

    Returns:
        ``b``, ``tau`` and a ``"default (...)"`` label naming the source.
    """
    if n_buckets < 1 or not 1 <= rank <= n_buckets:
        msg = f"bucket rank must be in 1..{n_buckets}, got {rank}"
        raise ValueError(msg)
    if n_buckets == 1:
        b, tau = GOYAL_REFERENCE_POOLED
        return b, tau, f"default ({GOYAL_REFERENCE}: pooled bucket tmars_top0to40p_random25p)"
    names = ("top 0-10%", "top 10-20%", "top 20-30%", "top 30-40%")
    if n_buckets == len(GOYAL_REFERENCE_B):
        return (
            GOYAL_REFERENCE_B[rank - 1],
            GOYAL_REFERENCE_TAU[rank - 1],
            f"default ({GOYAL_REFERENCE}: T-MARS {names[rank - 1]} bucket)",
        )
    x = (rank - 1) / (n_buckets - 1)
    grid = np.linspace(0.0, 1.0, len(GOYAL_REFERENCE_B))
    b = float(np.interp(x, grid, GOYAL_REFERENCE_B))
    tau = float(np.interp(x, grid, GOYAL_REFERENCE_TAU))
    return b, tau, f"default ({GOYAL_REFERENCE}: T-MARS buckets interpolated at rank {rank} of {n_buckets})"


class PoolsSection(_Section):
    """How kept documents are split into pools: quality bucket × domain.

    Args:
        quality: ``quantiles`` (default): ``n_buckets`` equal-count buckets of ``quality_score`` over the kept
            documents, labelled ``q1`` (lowest scores) to ``q<n>`` (highest); ``dataman_levels``: one bucket per
            ``quality_overall`` level 1..5, labelled ``overall_1`` to ``overall_5``; ``none``: one bucket ``all``.
            When the curated shards have no quality column yet (quality scoring has not run), the planner falls
            back to the single bucket ``all`` and says so in the plan.
        n_buckets: Number of quantile buckets (default 4, as many as the Goyal et al. reference buckets).
        domain: Column naming the domain of a document: ``source`` (default), ``quality_domain`` (the DataMan
            domain the scorer adds), any other column of the curated shards, or ``none`` for one domain ``all``.
            When the default ``source`` is missing the planner falls back to ``none``; a column set explicitly must
            exist.
    """

    quality: Literal["quantiles", "dataman_levels", "none"] = "quantiles"
    n_buckets: int = Field(4, ge=1, le=100)
    domain: str = Field("source", min_length=1)


class TokenCountSection(_Section):
    """How the unique tokens of a pool are counted.

    Args:
        method: ``whitespace`` (default): whitespace-separated words (the regex ``\\S+``), an approximation that a
            BPE tokenizer typically exceeds by 20-40% on English text; ``tokenizer``: a real tokenizer (exact).
        tokenizer: With ``method: tokenizer``: a local ``tokenizer.json`` file or a directory holding one (or a
            transformers tokenizer directory). Never fetched from a hub. Default ``null``.
        batch_size: Texts per tokenizer call (default 1024).
    """

    method: Literal["whitespace", "tokenizer"] = "whitespace"
    tokenizer: str | None = None
    batch_size: int = Field(1024, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _tokenizer_path(self) -> TokenCountSection:
        if self.method == "tokenizer" and not self.tokenizer:
            raise ValueError("token_count.method=tokenizer needs token_count.tokenizer (a local path)")
        if self.method == "whitespace" and self.tokenizer:
            raise ValueError("token_count.tokenizer is only used with token_count.method=tokenizer")
        return self


class BucketLaw(_Section):
    """Goyal et al. (2024) parameters of one quality bucket.

    Args:
        b: Utility exponent of fresh data, ``< 0``; more negative means higher quality. Required.
        tau: Half-life of the utility in repetitions, ``> 0``. Required.
    """

    b: float = Field(lt=0)
    tau: float = Field(gt=0)


class LawSection(_Section):
    """The Goyal et al. (2024) quality-quantity law the planner minimises (DESIGN §3.7).

    Each value is taken from the first of: this section, the ``fitted`` file, the defaults (``GOYAL_REFERENCE``).
    The plan records which for every parameter.

    Args:
        fitted: Path of a Goyal fit: ``<run>/report/law_fit.json`` written by ``winnow report --proxy lm`` (one
            pool per quality bucket of ``mix.pools``, fitted to proxy runs on each bucket, in whitespace-word
            tokens), the JSON that ``winnow laws fit --law goyal --json`` prints, or a bare ``{"a", "d", "pools":
            [{"name", "b", "tau"}]}``. Its pools are matched to quality buckets by name (``q1``..``q4``,
            ``overall_1``..``overall_5``, ``all``). Default ``null``.
        a: Shared sample-efficiency scale, ``> 0``, per token (default ``null``: fitted, else 0.025).
        d: Shared error floor, ``>= 0`` (default ``null``: fitted, else 0.1).
        buckets: ``b`` and ``tau`` per bucket label, e.g. ``{q4: {b: -0.16, tau: 6.7}}``; buckets left out are
            fitted or default (default ``{}``).
    """

    fitted: str | None = None
    a: float | None = Field(None, gt=0)
    d: float | None = Field(None, ge=0)
    buckets: dict[str, BucketLaw] = Field(default_factory=dict)

    @field_validator("a", "d", mode="before")
    @classmethod
    def _numbers(cls, v: Any) -> Any:
        return _parse_number(v)

    @field_validator("a", "d")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class UpsampleSection(_Section):
    """The end-of-training domain upsampling phase (Blakeney et al. 2024; DESIGN §3.9).

    Training follows the base mix until ``(1 − fraction)`` of the budget, then a mix in which the pools of
    ``domains`` have their weight multiplied by ``factor`` (all weights renormalised).

    Args:
        domains: Domains to upsample (values of ``pools.domain``); empty (default) means no second phase.
        fraction: Share of the budget in the upsampling phase, in (0, 1) (default 0.2; the paper's range is
            0.1-0.2, and the planner warns outside it).
        factor: Weight multiplier of the upsampled domains, ``> 1`` (default 2.0, a starting point, not a value
            from the paper: "no proportions are hard-coded", pick yours).
    """

    domains: StrList = Field(default_factory=list)
    fraction: float = Field(0.2, gt=0.0, lt=1.0)
    factor: float = Field(2.0, gt=1.0)


class MixSection(_Section):
    """The mixture planner (``winnow mix``): which pools to train on, how often, and in which phases.

    Args:
        budget_tokens: Training tokens to plan for (``2e6`` is accepted). Default ``null``: use ``flops`` and
            ``model_params``, or ``--budget-tokens``.
        flops: Training compute; the budget is then ``flops / (6 · model_params)`` tokens (C ≈ 6·N·D). Exclusive
            with ``budget_tokens``. Default ``null``.
        model_params: Model parameters N: needed with ``flops``; when given, each candidate also gets the
            Muennighoff et al. (2023) predicted loss. Default ``null``.
        pools: How kept documents are grouped into pools (:class:`PoolsSection`).
        token_count: How tokens are counted (:class:`TokenCountSection`; default whitespace words).
        max_repeats: Cap on the epochs of any pool's unique tokens (default 16: Muennighoff et al. 2023 find
            repeated tokens lose their value beyond about 16 epochs, R*_D ≈ 15.4). Never exceeded: when the law's
            best union would exceed it, the planner takes the best union that does not, which keeps more pools.
        law: The Goyal et al. law's parameters (:class:`LawSection`).
        tau_scaling: How ``tau`` combines in a union of buckets: ``pools`` (default, the reference code)
            multiplies each bucket's ``tau`` by the number of buckets combined; ``none`` keeps it.
        b_mean: How ``b`` combines in a union: ``pools`` (default, DESIGN §3.7 and the reference) is the plain
            mean over buckets; ``samples`` weights each bucket by its unique tokens, which matches the planner's
            proportional allocation when bucket sizes differ.
        upsample: The end-of-training upsampling phase (:class:`UpsampleSection`).
        seed: Seed recorded in the plan for the loader's sampling order (default ``null``: ``run.seed``).
    """

    budget_tokens: int | None = Field(None, gt=0)
    flops: float | None = Field(None, gt=0)
    model_params: float | None = Field(None, gt=0)
    pools: PoolsSection = Field(default_factory=PoolsSection)
    token_count: TokenCountSection = Field(default_factory=TokenCountSection)
    max_repeats: float = Field(16.0, gt=0.0, le=10_000.0)
    law: LawSection = Field(default_factory=LawSection)
    tau_scaling: Literal["pools", "none"] = "pools"
    b_mean: Literal["pools", "samples"] = "pools"
    upsample: UpsampleSection = Field(default_factory=UpsampleSection)
    seed: int | None = Field(None, ge=0)

    @field_validator("budget_tokens", mode="before")
    @classmethod
    def _whole_tokens(cls, v: Any) -> Any:
        v = _parse_number(v)
        if isinstance(v, float) and math.isfinite(v):
            if not v.is_integer():
                raise ValueError(f"must be a whole number of tokens, got {v!r}")
            return int(v)
        return v

    @field_validator("flops", "model_params", mode="before")
    @classmethod
    def _numbers(cls, v: Any) -> Any:
        return _parse_number(v)

    @field_validator("flops", "model_params", "max_repeats")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @model_validator(mode="after")
    def _budget(self) -> MixSection:
        if self.budget_tokens is not None and self.flops is not None:
            raise ValueError("mix.budget_tokens and mix.flops are exclusive: set one")
        if self.flops is not None and self.model_params is None:
            raise ValueError("mix.flops needs mix.model_params (tokens = flops / (6 · model_params))")
        return self

    def resolved_budget(self) -> tuple[int | None, str | None]:
        """The token budget and where it came from: ``(tokens, key)``, or ``(None, None)`` when none is set.

        Raises:
            ValueError: ``flops / (6 · model_params)`` is below one token.
        """
        if self.budget_tokens is not None:
            return self.budget_tokens, "mix.budget_tokens"
        if self.flops is not None and self.model_params is not None:
            tokens = math.floor(self.flops / (6.0 * self.model_params))
            if tokens < 1:
                msg = f"mix.flops / (6 · mix.model_params) = {self.flops / (6 * self.model_params):g} tokens, < 1"
                raise ValueError(msg)
            return tokens, "mix.flops / (6 · mix.model_params)"
        return None, None
