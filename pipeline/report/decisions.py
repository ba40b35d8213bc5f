"""The report's one door to the prune stage: the stored scores it reads and the decisions it makes from them.

Every name the report takes from :mod:`winnow.pipeline.prune` is imported here and nowhere else: ``load_scores``
(the stored assignments, SemDeDup similarities and quality ratings, row for row), ``decide`` (the pure function the
prune stage calls), ``NEEDS_*`` (which scores a strategy needs) and ``STRATEGIES`` (the registered strategies).
The report never imports the stages or the runner.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from loguru import logger

from winnow.core.errors import ConfigError, CurationError
from winnow.core.io import Shard
from winnow.core.rundir import RunDir
from winnow.pipeline.config import WinnowConfig
from winnow.pipeline.prune import NEEDS_CLUSTERS, NEEDS_DEDUP, NEEDS_QUALITY, STRATEGIES, decide, load_scores

if TYPE_CHECKING:
    from winnow.pipeline.report.scores import RunScores

__all__ = ["CURVE_STRATEGIES", "Point", "decide_point", "prune_logs_off", "read_stored_scores", "supported_strategies"]

#: Strategies of the pruning curves, in plotting order (each where the run's scores support it): every registered
#: strategy that does not opt out with ``curve=False`` (``none`` keeps everything: no curve).
CURVE_STRATEGIES: tuple[str, ...] = tuple(e.name for e in STRATEGIES.entries() if e.meta.get("curve", True))


def read_stored_scores(
    rd: RunDir, cfg: WinnowConfig, shards: list[Shard], clusters: bool, dedup: bool, quality: bool
) -> pl.DataFrame:
    """The run's stored scores (:func:`winnow.pipeline.prune.load_scores`); a missing output is a CurationError."""
    try:
        return load_scores(rd, shards, cfg.io.id_field, clusters, dedup, cfg.cluster.n_buckets, quality=quality)
    except FileNotFoundError as e:
        msg = f"{rd.url}: a stored output is missing ({e}); run `winnow run` (or pass --input with the run's inputs)"
        raise CurationError(msg) from None


@dataclass
class Point:
    """One (strategy, keep fraction) decision: kept rows and draws per row."""

    strategy: str
    fraction: float
    keep: np.ndarray
    repeat: np.ndarray


def supported_strategies(scores: RunScores, wanted: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """The strategies of ``wanted`` (default :data:`CURVE_STRATEGIES`) the run's scores support, and why others not."""
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
    if any(s in NEEDS_QUALITY for s in out):
        strata = scores.cfg.prune.stratify
        how = f"stratified by {', '.join(strata)} (DataMan's recipe)" if strata else "global (the best of the corpus)"
        notes.append(f"quality strategies: {how} selection by tokens (prune.stratify)")
    return out, notes


def decide_point(scores: RunScores, strategy: str, fraction: float):
    """The prune stage's decision with ``prune.strategy`` and ``prune.keep_fraction`` replaced."""
    cfg = scores.cfg
    prune = cfg.prune.model_copy(update={"strategy": strategy, "keep_fraction": fraction, "keep_count": None})
    return decide(scores.frame, cfg.model_copy(update={"prune": prune}), scores.centroids)


@contextmanager
def prune_logs_off() -> Iterator[None]:
    """Silence the prune stage's per-decision warnings (the caller collects them into the report's notes)."""
    logger.disable("winnow.pipeline.prune")
    try:
        yield
    finally:
        logger.enable("winnow.pipeline.prune")
