"""The stages of ``winnow run`` (datatrove steps over shards, cluster buckets or one global unit).

Importing this package imports every module in it, and each registers its stages in ``STAGES`` (``base.py``) with
``@register_stage(order=N)``: a new stage is one new module here (plus its test); ``order`` places it in
``winnow run``.
"""

import importlib
import pkgutil

from winnow.pipeline.stages.base import STAGES, RejectSink, ShardStage, Stage, provenance, register_stage
from winnow.pipeline.stages.cluster import ASSIGN_SCHEMA_FIELDS, AssignStage, FitStage, fit_hashes
from winnow.pipeline.stages.dedup import DEDUP_SCHEMA, DedupStage
from winnow.pipeline.stages.embed import EmbedStage
from winnow.pipeline.stages.prune import PruneStage, write_outputs
from winnow.pipeline.stages.score import ScoreStage, build_rater
from winnow.pipeline.stages.write import WriteStage

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "ASSIGN_SCHEMA_FIELDS", "DEDUP_SCHEMA", "STAGES", "AssignStage", "DedupStage", "EmbedStage", "FitStage",
    "PruneStage", "RejectSink", "ScoreStage", "ShardStage", "Stage", "WriteStage", "build_rater", "fit_hashes",
    "provenance", "register_stage", "write_outputs",
]  # fmt: skip
