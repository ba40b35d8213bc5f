"""The prune stage: the global step of the keep decisions (statistics and cuts); ``decide`` applies them per shard.

``write_outputs`` is the single-frame writer (every shard's decisions from one frame), kept for reference."""

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
from winnow.pipeline.prune.scores import RunSource
from winnow.pipeline.prune.twopass import plan_decisions
from winnow.pipeline.stages.base import Stage, register_stage

#: the global step's plan (what every shard's decision reads) and the per-row result of single-frame strategies
PLAN = "prune_plan.json"
ROWS = "prune_rows.parquet"
_PRUNE_KEYS = ["io", "embed", "cluster", "dedup", "score", "prune", "run.seed"]


@register_stage(order=600)
class PruneStage(Stage):
    """The global step of the decisions: small statistics and the cuts of ``prune.strategy`` (one global unit).

    Streams the stored numeric scores shard by shard (``prune.twopass``) and writes ``prune_plan.json`` (the target,
    the per-cluster quotas, the cuts of every ranking), ``cluster_stats.parquet`` and ``prune.json``; the
    ``decide`` stage then writes ``decisions/<stem>.parquet`` one shard per unit. A strategy without a two-pass form
    (a plug-in; every built-in has one) is decided here on a frame of its numeric and quality columns, and its per-row
    result goes to ``prune_rows.parquet``. Cheap: changing the strategy or the target reruns only prune, decide and
    write.
    """

    name = "prune"
    needs = ("embed",)
    writes = ("cluster_stats.parquet", "prune.json", PLAN, ROWS)
    optional_writes = ("cluster_stats.parquet", ROWS)  # strategies without clusters / two-pass ones have none
    config_keys = _PRUNE_KEYS
    uses_shard_list = True

    def inputs(self) -> tuple[bool, bool, bool]:
        """Which stored scores the decision reads: clusters, dedup, quality (required ones must be current)."""
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
        return have_clusters, have_dedup, have_quality

    def process_unit(self, unit: str, stats: ShardStats) -> None:
        clusters, dedup, quality = self.inputs()
        for s in self.shards:  # made under the plan this unit replaces: never to be read as current
            self.run_dir.remove(f"decisions/{s.stem}.parquet")
        src = RunSource(
            self.run_dir, self.shards, self.cfg.io.id_field, clusters, dedup, self.cfg.cluster.n_buckets,
            self.cfg.run.seed, quality=quality,
        )  # fmt: skip
        centroids = np.load(io.BytesIO(self.run_dir.read_bytes("centroids.npy"))) if clusters else None
        plan = plan_decisions(src, self.cfg, centroids)
        s = plan.summary
        stats.input += s["n"]
        stats.kept += s["kept"]
        stats.dropped += s["n"] - s["kept"]
        for reason, count in s["dropped_by_reason"].items():
            stats.count(f"dropped_{reason}", count)
        self.run_dir.remove(ROWS)
        if plan.rows is not None:
            with self.writer(ROWS) as w:
                w.write(_plain_strings(plan.rows.sort(["stem", "pos"]).to_arrow()))
        if plan.cluster_stats is not None:
            with self.writer("cluster_stats.parquet") as w:
                w.write(plan.cluster_stats.to_arrow())
        info = {**plan.to_json(), "clusters": clusters, "dedup": dedup, "quality": quality}
        self.run_dir.write_text(PLAN, json.dumps(info))
        self.run_dir.write_text("prune.json", json.dumps(s, indent=2))


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
