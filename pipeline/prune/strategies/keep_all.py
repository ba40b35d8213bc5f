"""``none``: keep every document."""

from __future__ import annotations

from winnow.pipeline.prune.base import Decision, PruneContext
from winnow.pipeline.prune.registry import STRATEGIES


@STRATEGIES.register("none", order=0, needs=(), target="optional", curve=False)
def keep_all(ctx: PruneContext) -> Decision:
    """Keep every document."""
    keep, reason = ctx.empty()
    keep[:] = True
    return ctx.finish(keep, reason, ctx.default_cluster_stats())
