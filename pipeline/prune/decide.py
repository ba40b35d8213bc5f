"""``decide``: the keep decision of ``prune.strategy`` for every row of the canonical frame."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from winnow.pipeline.prune.base import Decision, PruneContext
from winnow.pipeline.prune.registry import STRATEGIES

if TYPE_CHECKING:
    from winnow.pipeline.config import WinnowConfig


def decide(frame: pl.DataFrame, cfg: WinnowConfig, centroids: np.ndarray | None) -> Decision:
    """Keep decisions for every row of ``frame`` by the registered strategy ``cfg.prune.strategy``."""
    strategy = STRATEGIES[cfg.prune.strategy]
    return strategy.obj(PruneContext.build(frame, cfg, centroids))
