"""``random``: N documents drawn uniformly without replacement (seeded by ``run.seed``).

The draw: the N documents with the smallest seeded hash of (stem, row) (``row_hash`` salted ``random``, ties by the
canonical order), so every shard decides alone from the global cut (``twopass``).
"""

from __future__ import annotations

import numpy as np

from winnow.pipeline.prune.base import Decision, PruneContext, row_hash, shard_row_hash
from winnow.pipeline.prune.registry import STRATEGIES
from winnow.pipeline.prune.select import sort_keys
from winnow.pipeline.prune.twopass import Plan, PlanInput, ShardScores, TwoPass, reasons

_SALT = "random"


def _keys(sh: ShardScores) -> np.ndarray:
    return sort_keys(shard_row_hash(sh.stem, sh.n, sh.seed, _SALT), sh.canon, np.zeros(sh.n, np.uint64))


def _plan(inp: PlanInput) -> Plan:
    cut = inp.top(lambda sh: (np.zeros(sh.n, np.int64), _keys(sh)), inp.target)
    return Plan(inp.cfg.prune.strategy, inp.target, {"draw": cut}, cluster_stats=inp.default_cluster_stats())


def _apply(plan: Plan, cfg, sh: ShardScores):
    keep = plan.cuts["draw"].keep(np.zeros(sh.n, np.int64), _keys(sh))
    reason = reasons(sh.n)
    reason[~keep] = "random"
    return keep, reason


@STRATEGIES.register("random", order=10, needs=(), target="required", two_pass=TwoPass(_plan, _apply))
def random(ctx: PruneContext) -> Decision:
    """N documents drawn uniformly without replacement (seeded)."""
    keep, reason = ctx.empty()
    if "stem" in ctx.frame.columns:
        h = row_hash(ctx.frame["stem"], ctx.frame["pos"], ctx.cfg.run.seed, _SALT)
    else:
        h = shard_row_hash("", ctx.n, ctx.cfg.run.seed, _SALT)
    keep[np.lexsort((ctx.idx, h))[: ctx.target]] = True
    reason[~keep] = "random"
    return ctx.finish(keep, reason, ctx.default_cluster_stats())
