"""``prototypicality_easy`` / ``_hard`` (Sorscher et al. 2022): keep the N closest to / farthest from their
centroid; with ``prune.balance`` every cluster first keeps its ``⌊balance·N/k⌋`` easiest / hardest.

Two-pass form: with a balance, one cut per cluster (its floor's easiest / hardest), then one global cut over the
rest; without, one global cut. Ties: the seeded ``row_hash`` of (stem, row), then the canonical order."""

from __future__ import annotations

import math

import numpy as np

from winnow.pipeline.prune.base import Decision, PruneContext, take_top
from winnow.pipeline.prune.registry import STRATEGIES
from winnow.pipeline.prune.select import select
from winnow.pipeline.prune.twopass import Plan, PlanInput, ShardScores, TwoPass, reasons


def _largest(strategy: str) -> bool:
    return strategy == "prototypicality_hard"


def _floor_keep(plan: Plan, sh: ShardScores, keys: np.ndarray) -> np.ndarray:
    if "floor" not in plan.cuts:
        return np.zeros(sh.n, dtype=bool)
    return plan.cuts["floor"].keep(sh.labels, keys)


def _plan(inp: PlanInput) -> Plan:
    p, largest = inp.cfg.prune, _largest(inp.cfg.prune.strategy)
    plan = Plan(p.strategy, inp.target, cluster_stats=inp.default_cluster_stats())
    rest = inp.target
    if p.balance > 0:
        k = inp.centroids.shape[0] if inp.centroids is not None else len(inp.totals.size)
        need = np.minimum(math.floor(p.balance * inp.target / k), inp.totals.size)
        plan.cuts["floor"] = select(inp.stream(lambda sh: (sh.labels, sh.keys(sh.dist, largest))), len(need), need)
        rest = int(inp.target - need.sum())

    def others(sh: ShardScores):
        keys = sh.keys(sh.dist, largest)
        left = ~_floor_keep(plan, sh, keys)
        return np.zeros(int(left.sum()), np.int64), keys[left]

    plan.cuts["rest"] = inp.top(others, rest)
    return plan


def _apply(plan: Plan, cfg, sh: ShardScores):
    keys = sh.keys(sh.dist, _largest(plan.strategy))
    keep = _floor_keep(plan, sh, keys)
    left = np.flatnonzero(~keep)
    keep[left] = plan.cuts["rest"].keep(np.zeros(len(left), np.int64), keys[left])
    reason = reasons(sh.n)
    reason[~keep] = "prototypicality"
    return keep, reason


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
            keep[take_top(dist, members, min(floor_share, len(members)), largest, ctx.tie)] = True
    rest = int(ctx.target - keep.sum())
    keep[take_top(dist, idx[~keep], rest, largest, ctx.tie)] = True
    reason[~keep] = "prototypicality"
    return ctx.finish(keep, reason, ctx.default_cluster_stats())


_TWO_PASS = TwoPass(_plan, _apply)


@STRATEGIES.register("prototypicality_easy", order=30, needs=("clusters",), target="required", two_pass=_TWO_PASS)
def prototypicality_easy(ctx: PruneContext) -> Decision:
    """Keep the N documents closest to their centroid (prototypical, Sorscher et al. 2022)."""
    return _prototypicality(ctx, largest=False)


@STRATEGIES.register("prototypicality_hard", order=31, needs=("clusters",), target="required", two_pass=_TWO_PASS)
def prototypicality_hard(ctx: PruneContext) -> Decision:
    """Keep the N documents farthest from their centroid (hard examples, Sorscher et al. 2022)."""
    return _prototypicality(ctx, largest=True)
