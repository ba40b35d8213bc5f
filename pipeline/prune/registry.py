"""The prune strategy registry.

A strategy is a function ``(ctx: PruneContext) -> Decision`` in its own module under ``strategies/``, registered
with what it needs and whether it needs a target::

    @STRATEGIES.register("random", order=10, needs=(), target="required")
    def random(ctx): ...

``order`` places it in lists (the config's allowed values, the report). ``needs`` names the stored scores it reads:
``clusters`` (assignments and centroids), ``dedup`` (SemDeDup similarities), ``quality`` (the ``quality/``
ratings). ``target`` is ``required`` (``keep_fraction`` or ``keep_count`` must be set) or ``optional``.
``curve=False`` leaves it out of the report's pruning curves. The config's allowed ``prune.strategy`` values, the
prune stage's requirements and the report's strategy list are read from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from winnow.core.registry import Registry

if TYPE_CHECKING:
    from winnow.pipeline.prune.base import Decision, PruneContext

Strategy = Callable[["PruneContext"], "Decision"]
STRATEGIES: Registry[Strategy] = Registry("prune strategy", "prune.strategy", ordered=True)


def needing(score: str) -> tuple[str, ...]:
    """The strategies that need ``score`` (``clusters``, ``dedup`` or ``quality``)."""
    return tuple(e.name for e in STRATEGIES.entries() if score in e.meta.get("needs", ()))


def needs_target(name: str) -> bool:
    return STRATEGIES[name].meta.get("target") == "required"
