"""``prototypicality_easy`` / ``_hard`` (Sorscher et al. 2022): keep the N closest to / farthest from their
centroid; with ``prune.balance`` every cluster first keeps its ``⌊balance·N/k⌋`` easiest / hardest."""

from __future__ import annotations

import math

import numpy as np

from winnow.pipeline.prune.base import Decision, PruneContext, take_top
from winnow.pipeline.prune.registry import STRATEGIES


def _prototypicality(ctx: PruneContext, largest: bool) -> Decision:
    keep, reason = ctx.empty()
    dist = ctx.frame["dist_to_centroid"].to_numpy()
    labels = ctx.frame["cluster_id"].to_numpy()
    idx = ctx.idx
    balance = ctx.cfg.prune.balance
    if balance > 0:
        k = ctx.centroids.shape[0] if ctx.centroids is not None else int(labels.max()) + 1
        floor_share = math.floor(balance * ctx.target / k)
        for c in np.unique(labels):
            members = idx[labels == c]
            keep[take_top(dist, members, min(floor_share, len(members)), largest)] = True
    rest = int(ctx.target - keep.sum())
    keep[take_top(dist, idx[~keep], rest, largest)] = True
    reason[~keep] = "prototypicality"
    return ctx.finish(keep, reason, ctx.default_cluster_stats())


@STRATEGIES.register("prototypicality_easy", order=30, needs=("clusters",), target="required")
def prototypicality_easy(ctx: PruneContext) -> Decision:
    """Keep the N documents closest to their centroid (prototypical, Sorscher et al. 2022)."""
    return _prototypicality(ctx, largest=False)


@STRATEGIES.register("prototypicality_hard", order=31, needs=("clusters",), target="required")
def prototypicality_hard(ctx: PruneContext) -> Decision:
    """Keep the N documents farthest from their centroid (hard examples, Sorscher et al. 2022)."""
    return _prototypicality(ctx, largest=True)
