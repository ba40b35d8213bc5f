"""``random``: N documents drawn uniformly without replacement (seeded by ``run.seed``)."""

from __future__ import annotations

import numpy as np

from winnow.pipeline.prune.base import Decision, PruneContext
from winnow.pipeline.prune.registry import STRATEGIES


@STRATEGIES.register("random", order=10, needs=(), target="required")
def random(ctx: PruneContext) -> Decision:
    """N documents drawn uniformly without replacement (seeded)."""
    keep, reason = ctx.empty()
    rng = np.random.default_rng([ctx.cfg.run.seed, 0x52414E44])
    keep[rng.permutation(ctx.n)[: ctx.target]] = True
    reason[~keep] = "random"
    return ctx.finish(keep, reason, ctx.default_cluster_stats())
