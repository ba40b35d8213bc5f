"""The prune stage: the registered strategy's keep decisions from the stored scores (one global unit)."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from winnow.clustering.semdedup import is_duplicate
from winnow.core.stats import ShardStats
from winnow.pipeline import prune as P
from winnow.pipeline.prune import QUALITY_OUT, Decision
from winnow.pipeline.stages.base import Stage, register_stage

_PRUNE_KEYS = ["io", "embed", "cluster", "dedup", "score", "prune", "run.seed"]


@register_stage(order=600)
class PruneStage(Stage):
    """Turns the stored scores into keep decisions for ``prune.strategy`` and its target.

    Writes ``decisions/<stem>.parquet`` (row-aligned with the shard's valid rows: id, cluster_id,
    dist_to_centroid, dup_max_sim, dup_of, keep, drop_reason), ``cluster_stats.parquet`` and ``prune.json``.
    Cheap: changing the strategy or the target reruns only this stage and ``write``.
    """

    name = "prune"
    needs = ("embed",)
    writes = ("decisions/<stem>.parquet", "cluster_stats.parquet", "prune.json")
    optional_writes = ("cluster_stats.parquet",)  # strategies without clusters have none
    config_keys = _PRUNE_KEYS
    uses_shard_list = True

    def process_unit(self, unit: str, stats: ShardStats) -> None:
        strategy = self.cfg.prune.strategy
        self.require("embed")
        have_clusters = all(self.run_dir.exists(f"assignments/{s.stem}.parquet") for s in self.shards)
        if strategy in P.NEEDS_CLUSTERS or have_clusters:
            if strategy in P.NEEDS_CLUSTERS:
                self.require("assign")
            have_clusters = self.completed("assign")
        have_dedup = False
        if strategy in P.NEEDS_DEDUP:
            self.require("dedup")
            have_dedup = True
        elif have_clusters:
            have_dedup = self.completed("dedup")
        have_quality = False
        if strategy in P.NEEDS_QUALITY:
            self.require("score")
            have_quality = True
        elif self.cfg.score.backend != "none":
            have_quality = self.completed("score")
        frame = P.load_scores(
            self.run_dir, self.shards, self.cfg.io.id_field, have_clusters, have_dedup, self.cfg.cluster.n_buckets,
            quality=have_quality,
        )  # fmt: skip
        centroids = np.load(io.BytesIO(self.run_dir.read_bytes("centroids.npy"))) if have_clusters else None
        result = P.decide(frame, self.cfg, centroids)
        stats.input += result.n
        stats.kept += result.kept
        stats.dropped += result.n - result.kept
        for reason, count in result.dropped_by_reason.items():
            stats.count(f"dropped_{reason}", count)
        write_outputs(self, frame, result)


def write_outputs(stage: PruneStage, frame: pl.DataFrame, d: Decision) -> None:
    """``decisions/<stem>.parquet`` per shard, ``cluster_stats.parquet`` and ``prune.json``."""
    cfg = stage.cfg
    id_f = cfg.io.id_field
    eps = cfg.dedup.eps
    cols: dict[str, Any] = {
        "stem": frame["stem"],
        id_f: frame["id"],
    }
    if "cluster_id" in frame.columns:
        cols["cluster_id"] = frame["cluster_id"].cast(pl.Int32)
        cols["dist_to_centroid"] = frame["dist_to_centroid"].cast(pl.Float32)
    if "dup_max_sim" in frame.columns:
        sims = frame["dup_max_sim"].to_numpy().astype(np.float32)
        dup = is_duplicate(sims, eps)
        cols["dup_max_sim"] = frame["dup_max_sim"].cast(pl.Float32)
        nn = frame["dup_nn_id"].to_numpy()
        cols["dup_of"] = pl.Series("dup_of", np.where(dup, nn, None).tolist(), dtype=pl.String)
    for name in QUALITY_OUT:
        if name in frame.columns:
            cols[name] = frame[name]
    if d.repeat is not None:
        cols["repeat"] = pl.Series("repeat", d.repeat, dtype=pl.Int32)
    cols["keep"] = pl.Series("keep", d.keep, dtype=pl.Boolean)
    cols["drop_reason"] = pl.Series("drop_reason", d.reason.tolist(), dtype=pl.String)
    out = pl.DataFrame(cols)
    for shard in stage.shards:
        part = out.filter(pl.col("stem") == shard.stem).drop("stem").to_arrow()
        with stage.writer(f"decisions/{shard.stem}.parquet") as w:
            w.write(_plain_strings(part))
    if d.cluster_stats is not None:
        with stage.writer("cluster_stats.parquet") as w:
            w.write(d.cluster_stats.to_arrow())
    stage.run_dir.write_text("prune.json", json.dumps(d.summary, indent=2))


def _plain_strings(t: pa.Table) -> pa.Table:
    """polars writes large_string / string_view; the column contract says string."""
    fields = []
    for f in t.schema:
        if pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type):
            fields.append(pa.field(f.name, pa.string()))
        else:
            fields.append(f)
    return t.cast(pa.schema(fields))
