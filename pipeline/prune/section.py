"""The ``prune`` config section; its allowed strategies are the registered ones."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from winnow.core.section import Section
from winnow.pipeline.prune.registry import STRATEGIES, needs_target
from winnow.scorers.base import CRITERIA

#: the registered strategies, in registration order (the built-ins register when the package is imported)
PRUNE_STRATEGIES = STRATEGIES.names()


class PruneSection(Section):
    """Turning scores into keep decisions (DESIGN §3.3–3.5). Changing any of these reuses every stored score.

    Args:
        strategy: a registered strategy: ``none``, ``random``, ``semdedup``, ``prototypicality_easy``,
            ``prototypicality_hard``, ``dbp``, ``dbp_quality``, ``quality`` or ``dataman_level`` (see
            ``winnow strategies``).
        keep_fraction: share of valid documents to keep (rounded to the nearest row).
        keep_count: number of documents to keep (instead of ``keep_fraction``).
        balance: prototypicality only: each cluster keeps at least ``⌊balance·N/k⌋`` (capped at its size).
        dbp_neighbors: l, the nearest other centroids in ``d_inter``.
        dbp_temperature: τ of the softmax over complexities.
        dbp_balance: lower bound share of the DBP quotas (``min(⌊balance·N/k⌋, n_j − 1)``).
        dbp_min_cluster_size: clusters with fewer members (after SemDeDup) take the mean complexity of the others.
        dbp_keep: within a cluster keep the ``hard``est (farthest from the centroid, default) or ``easy``est.
        quality_pool: ``dbp_quality`` only: DBP chooses among this share of the documents, the best by
            ``quality_score`` (at least the target; the DBP paper filters by a quality score first).
        quality_by: ``quality`` strategy: rank by the sum of these criteria (e.g. ``[accuracy, coherence]``);
            empty (default) ranks by ``quality_score``.
        dataman_level: ``dataman_level`` strategy: keep documents whose ``quality_overall`` equals this.
        stratify: quality strategies: ``[]`` (default) selects over the whole corpus (``quality`` keeps the best f
            of the tokens); ``[source, quality_domain]`` is DataMan's recipe: strata by source, then domain, each
            with a token quota proportional to its share of the eligible tokens (all tokens for ``quality``, the
            level's tokens for ``dataman_level``). ``dataman_level`` upsamples only when the level holds fewer
            tokens than the budget, in rounds (every document at the level ⌊goal/E⌋ times, a seeded-hash prefix
            once more); the draws go to the ``repeat`` column.
    """

    strategy: Literal[PRUNE_STRATEGIES] = "none"
    keep_fraction: float | None = Field(None, gt=0.0, le=1.0)
    keep_count: int | None = Field(None, ge=0)
    balance: float = Field(0.0, ge=0.0, le=1.0)
    dbp_neighbors: int = Field(20, ge=1)
    dbp_temperature: float = Field(0.5, gt=0.0)
    dbp_balance: float = Field(0.5, ge=0.0, le=1.0)
    dbp_min_cluster_size: int = Field(2, ge=1)
    dbp_keep: Literal["hard", "easy"] = "hard"
    quality_pool: float = Field(0.5, gt=0.0, le=1.0)
    quality_by: list[str] = Field(default_factory=list)
    dataman_level: int = Field(5, ge=1, le=5)
    stratify: list[Literal["source", "quality_domain"]] = Field(default_factory=list)

    @field_validator("quality_by")
    @classmethod
    def _criteria(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in CRITERIA]
        if bad:
            raise ValueError(f"unknown criteria {bad}; allowed: {', '.join(CRITERIA)}")
        return v

    @model_validator(mode="after")
    def _target(self) -> PruneSection:
        if self.keep_fraction is not None and self.keep_count is not None:
            raise ValueError("prune.keep_fraction and prune.keep_count are exclusive: set one")
        if needs_target(self.strategy) and self.keep_fraction is None and self.keep_count is None:
            raise ValueError(f"prune.strategy={self.strategy} needs prune.keep_fraction or prune.keep_count")
        return self
