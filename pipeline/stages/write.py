"""The write stage: ``curated/<stem>.parquet``, every valid input row with its scores and ``keep``/``drop_reason``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from loguru import logger

from winnow.core.errors import CurationError
from winnow.core.io import Shard
from winnow.core.layout import read_parquet
from winnow.core.stats import ShardStats
from winnow.pipeline.config import WinnowConfig
from winnow.pipeline.stages.base import RejectSink, ShardStage, provenance, register_stage
from winnow.pipeline.stages.prune import _PRUNE_KEYS, PruneStage


@register_stage(order=700)
class WriteStage(ShardStage):
    """Writes ``curated/<stem>.parquet``: every valid input row, its columns unchanged, plus the score columns and
    ``keep``/``drop_reason`` from the prune stage (when it ran for the current config; else every row is kept)."""

    name = "write"
    needs = ()
    writes = ("curated/<stem>.parquet", "rejects/<stem>.parquet")
    config_keys = _PRUNE_KEYS
    uses_shard_list = True

    def setup(self) -> None:
        self.decided = self.run_dir.is_complete("prune", "all", PruneStage.fingerprint_for(self.cfg, self.shards))
        if self.decided:
            self.require("prune")
        if not self.decided and self.run_dir.exists("decisions"):
            logger.warning("write: decisions/ exist but were made under another config; writing every row as kept")

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        id_f = self.cfg.io.id_field
        decisions = None
        if self.decided:
            decisions = read_parquet(self.run_dir, f"decisions/{shard.stem}.parquet")
        offset = 0
        with (
            self.writer(f"curated/{shard.stem}.parquet") as out,
            RejectSink(self.run_dir, shard, provenance(self.cfg, "read")) as rej,
        ):
            for batch in self.read(shard, stats, rej):
                n = batch.table.num_rows
                table = batch.table
                if decisions is not None:
                    part = decisions.slice(offset, n)
                    if part.num_rows != n or not part.column(id_f).equals(table.column(id_f)):
                        raise CurationError(
                            f"{shard.url}: decisions/{shard.stem}.parquet does not match the shard's rows "
                            "(was the input changed since the run?); rerun with --overwrite"
                        )
                    for name in part.column_names:
                        if name != id_f:
                            table = table.append_column(name, part.column(name))
                    keep = part.column("keep").to_numpy(zero_copy_only=False)
                else:
                    keep = np.ones(n, dtype=bool)
                    table = table.append_column("keep", pa.array(keep, pa.bool_()))
                    table = table.append_column("drop_reason", pa.nulls(n, pa.string()))
                offset += n
                out.write(table)
                stats.kept += int(keep.sum())
                stats.dropped += int(n - keep.sum())
            if out.schema is None:  # no valid row at all: an empty file with the base columns
                out.schema = _empty_curated_schema(self.cfg).with_metadata(out.metadata)


def _empty_curated_schema(cfg: WinnowConfig) -> pa.Schema:
    return pa.schema(
        [
            (cfg.io.id_field, pa.string()),
            (cfg.io.text_field, pa.string()),
            ("keep", pa.bool_()),
            ("drop_reason", pa.string()),
        ]
    )
