"""The decide stage: one shard's keep decisions from the prune step's plan and the shard's own stored scores."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from winnow.core.errors import CurationError
from winnow.core.io import Shard
from winnow.core.layout import read_parquet
from winnow.core.stats import ShardStats
from winnow.pipeline.prune import QUALITY_OUT
from winnow.pipeline.prune.scores import RunSource
from winnow.pipeline.prune.twopass import Plan, apply_plan
from winnow.pipeline.stages.base import ShardStage, register_stage
from winnow.pipeline.stages.prune import _PRUNE_KEYS, PLAN, ROWS, _plain_strings


@register_stage(order=650)
class DecideStage(ShardStage):
    """Writes ``decisions/<stem>.parquet`` per shard, row-aligned with its ``embeddings/`` rows: id, cluster_id,
    dist_to_centroid, dup_max_sim, dup_of, the quality columns, repeat (quality strategies), keep, drop_reason.

    Each shard decides alone from ``prune_plan.json`` (the cuts, quotas and target of the global ``prune`` step)
    and its own rows: the tasks run in parallel, each holding one shard."""

    name = "decide"
    needs = ("prune",)
    writes = ("decisions/<stem>.parquet",)
    config_keys = _PRUNE_KEYS
    uses_shard_list = True

    def setup(self) -> None:
        self.require("prune")
        info = json.loads(self.run_dir.read_text(PLAN))
        self.flags = info["clusters"], info["dedup"], info["quality"]
        self.plan = Plan.from_json(info)
        self.single_frame = bool(info.get("single_frame"))
        self.src = RunSource(
            self.run_dir, self.shards, self.cfg.io.id_field, *self.flags[:2], self.cfg.cluster.n_buckets,
            self.cfg.run.seed, quality=self.flags[2],
        )  # fmt: skip

    def _plan_for(self, stem: str) -> Plan:
        """The plan, with this shard's rows of ``prune_rows.parquet`` for a single-frame strategy."""
        if not self.single_frame:
            return self.plan
        with self.run_dir.fs.open(self.run_dir._p(ROWS), "rb") as f:
            rows = pl.from_arrow(pq.read_table(f, filters=[("stem", "==", stem)]))
        return dataclasses.replace(self.plan, rows=rows)

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        cfg, stem = self.cfg, shard.stem
        id_f = cfg.io.id_field
        clusters, dedup, quality = self.flags
        rows = self.src.rows(stem)
        sims = nn = None
        if dedup:
            sims, nn = self.src.shard_sims(stem, rows.height)
        sh = self.src.scores(stem, rows, sims)
        keep, reason, repeat = apply_plan(self._plan_for(stem), cfg, sh)
        cols: dict[str, pa.Array] = {id_f: rows[id_f].to_arrow()}
        if clusters:
            cols["cluster_id"] = pa.array(rows["cluster_id"].to_numpy(), pa.int32())
            cols["dist_to_centroid"] = pa.array(rows["dist_to_centroid"].to_numpy(), pa.float32())
        if dedup:
            dup = sh.dup(cfg.dedup.eps)
            cols["dup_max_sim"] = pa.array(sims, pa.float32(), mask=np.isnan(sims))
            cols["dup_of"] = pa.array(np.where(dup, nn, None).tolist(), pa.string())
        if quality:
            q = pl.from_arrow(read_parquet(self.run_dir, f"quality/{stem}.parquet"))
            if q.height != rows.height or not q[id_f].equals(rows[id_f], check_names=False):
                raise CurationError(f"quality/{stem}.parquet does not match the shard: rerun `winnow score`")
            for name in QUALITY_OUT:
                if name in q.columns:
                    cols[name] = q[name].to_arrow()
        if repeat is not None:
            cols["repeat"] = pa.array(repeat, pa.int32())
        cols["keep"] = pa.array(keep, pa.bool_())
        cols["drop_reason"] = pa.array(reason.tolist(), pa.string())
        with self.writer(f"decisions/{stem}.parquet") as w:
            w.write(_plain_strings(pa.table(cols)))
        n, kept = len(keep), int(keep.sum())
        stats.input += n
        stats.kept += kept
        stats.dropped += n - kept
