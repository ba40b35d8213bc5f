"""Keep decisions from stored scores: one global, deterministic step (DESIGN §3.3–3.5).

Scoring is separate from deciding: this module reads the columns the earlier stages stored (cluster
assignments, SemDeDup similarities) into one frame, in the canonical order (shards sorted by name, rows in shard
order), and decides ``keep`` / ``drop_reason`` for ``prune.strategy`` and its target. Ties are broken by that
canonical order, so the result never depends on workers or shard sizes.

Each strategy is one module under ``strategies/`` that registers itself in ``STRATEGIES`` (``registry.py``) with
what it needs; adding one is one new module plus its test. Strategies (N = the target, from ``keep_fraction``
rounded to the nearest row, or ``keep_count``):
- ``none``: keep everything.
- ``random``: N documents drawn uniformly without replacement (seeded).
- ``semdedup``: without a target, drop every duplicate at ``dedup.eps`` (``dup_max_sim ≥ 1 − ε``); with a target,
  keep the N least-duplicated documents (lowest ``dup_max_sim``; the top-ranked member of a cluster first).
- ``prototypicality_easy`` / ``_hard``: keep the N closest to / farthest from their centroid; with
  ``prune.balance`` every cluster first keeps its ``⌊balance·N/k⌋`` easiest / hardest (capped at its size).
- ``dbp``: SemDeDup at ``dedup.eps`` first, then per-cluster quotas by water-filling over
  ``softmax(d_inter · d_intra / τ)``; within a cluster keep the hardest (``prune.dbp_keep``). If N exceeds the
  documents left after SemDeDup, all of them are kept plus the least-duplicated duplicates, and a warning says so.
- ``quality`` / ``dataman_level`` (DataMan, DESIGN §3.6): a selection by *tokens* of the best documents (global by
  default; DataMan's strata by source and domain with ``prune.stratify``); see ``strategies/quality.py``.
"""

from winnow.pipeline.prune import strategies as _strategies  # noqa: F401 - registers the built-in strategies
from winnow.pipeline.prune.base import QUALITY_OUT, Decision, PruneContext, cluster_table, target_size
from winnow.pipeline.prune.decide import decide
from winnow.pipeline.prune.registry import STRATEGIES, needing, needs_target
from winnow.pipeline.prune.scores import load_scores

#: strategies by the stored scores they read (derived from the registry)
NEEDS_CLUSTERS = needing("clusters")
NEEDS_DEDUP = needing("dedup")
NEEDS_QUALITY = needing("quality")

__all__ = [
    "NEEDS_CLUSTERS", "NEEDS_DEDUP", "NEEDS_QUALITY", "QUALITY_OUT", "STRATEGIES", "Decision", "PruneContext",
    "cluster_table", "decide", "load_scores", "needing", "needs_target", "target_size",
]  # fmt: skip
