"""The stages of ``winnow run`` (datatrove steps over shards, cluster buckets or one global unit).

Importing this package registers the built-in stages in ``STAGES`` (``base.py``); a new stage is one module here
with a ``@register_stage(order=N)`` class plus its import below.
"""

from winnow.pipeline.stages import cluster, dedup, embed, prune, score, write  # noqa: F401 - registers the stages
from winnow.pipeline.stages.base import STAGES, RejectSink, ShardStage, Stage, provenance, register_stage
from winnow.pipeline.stages.cluster import ASSIGN_SCHEMA_FIELDS, AssignStage, FitStage, fit_hashes
from winnow.pipeline.stages.dedup import DEDUP_SCHEMA, DedupStage
from winnow.pipeline.stages.embed import EmbedStage
from winnow.pipeline.stages.prune import PruneStage, write_outputs
from winnow.pipeline.stages.score import ScoreStage, build_rater
from winnow.pipeline.stages.write import WriteStage

__all__ = [
    "ASSIGN_SCHEMA_FIELDS", "DEDUP_SCHEMA", "STAGES", "AssignStage", "DedupStage", "EmbedStage", "FitStage",
    "PruneStage", "RejectSink", "ScoreStage", "ShardStage", "Stage", "WriteStage", "build_rater", "fit_hashes",
    "provenance", "register_stage", "write_outputs",
]  # fmt: skip
