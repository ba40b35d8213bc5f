"""``none``: keep every document."""

from __future__ import annotations

import numpy as np

from winnow.pipeline.prune.base import Decision, PruneContext
from winnow.pipeline.prune.registry import STRATEGIES
from winnow.pipeline.prune.twopass import Plan, PlanInput, ShardScores, TwoPass, reasons


def _plan(inp: PlanInput) -> Plan:
    return Plan(inp.cfg.prune.strategy, inp.target, cluster_stats=inp.default_cluster_stats())


def _apply(plan: Plan, cfg, sh: ShardScores):
    keep = np.ones(sh.n, dtype=bool)
    return keep, reasons(sh.n)


@STRATEGIES.register("none", order=0, needs=(), target="optional", curve=False, two_pass=TwoPass(_plan, _apply))
def keep_all(ctx: PruneContext) -> Decision:
    """Keep every document."""
    keep, reason = ctx.empty()
    keep[:] = True
    return ctx.finish(keep, reason, ctx.default_cluster_stats())
