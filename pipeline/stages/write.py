"""The write stage: ``curated/<stem>.parquet``, every valid input row with its scores and ``keep``/``drop_reason``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from loguru import logger

from winnow.core.errors import CurationError
from winnow.core.io import Shard
from winnow.core.layout import read_parquet
from winnow.core.stats import ShardStats
from winnow.pipeline.config import WinnowConfig
from winnow.pipeline.stages.base import RejectSink, ShardStage, provenance, register_stage
from winnow.pipeline.stages.prune import _PRUNE_KEYS, PruneStage
from winnow.pipeline.stages.survivors import PREFILTER_COLUMNS, prefilter_table


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
            self.require("decide")
        if not self.decided and self.run_dir.exists("decisions"):
            logger.warning("write: decisions/ exist but were made under another config; writing every row as kept")

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        decisions = None
        if self.decided:
            decisions = read_parquet(self.run_dir, f"decisions/{shard.stem}.parquet")
        pre = prefilter_table(self.run_dir, self.cfg, shard.stem) if self.cfg.prefilter is not None else None
        offset = done = 0  # valid rows written; survivors' decisions used
        with (
            self.writer(f"curated/{shard.stem}.parquet") as out,
            RejectSink(self.run_dir, shard, provenance(self.cfg, "read")) as rej,
        ):
            for batch in self.read(shard, stats, rej):
                n = batch.table.num_rows
                alive = np.ones(n, dtype=bool)
                if pre is not None:
                    part_pre = pre.slice(offset, n)
                    if part_pre.num_rows != n:
                        raise self._mismatch(shard, f"filters/{shard.stem}.parquet")
                    alive = pc.is_null(part_pre.column("drop_reason")).to_numpy(zero_copy_only=False)
                table = batch.table
                if decisions is not None:
                    k = int(alive.sum())
                    part = decisions.slice(done, k)
                    self._check_ids(shard, part, table.filter(pa.array(alive)) if pre is not None else table)
                    table = _add_decisions(table, part, alive, self.cfg.io.id_field)
                    done += k
                else:
                    table = table.append_column("keep", pa.array(alive, pa.bool_()))
                    table = table.append_column("drop_reason", pa.nulls(n, pa.string()))
                if pre is not None:
                    table = _add_prefilter(table, part_pre)
                keep = table.column("keep").to_numpy(zero_copy_only=False)
                offset += n
                out.write(table)
                stats.kept += int(keep.sum())
                stats.dropped += int(n - keep.sum())
            if decisions is not None and done != decisions.num_rows:
                raise self._mismatch(shard, f"decisions/{shard.stem}.parquet")
            if out.schema is None:  # no valid row at all: an empty file with the base columns
                out.schema = _empty_curated_schema(self.cfg).with_metadata(out.metadata)

    def _check_ids(self, shard: Shard, part: pa.Table, table: pa.Table) -> None:
        id_f = self.cfg.io.id_field
        if part.num_rows != table.num_rows or not part.column(id_f).equals(table.column(id_f)):
            raise self._mismatch(shard, f"decisions/{shard.stem}.parquet")

    @staticmethod
    def _mismatch(shard: Shard, rel: str) -> CurationError:
        return CurationError(
            f"{shard.url}: {rel} does not match the shard's rows (was the input changed since the run?); rerun with "
            "--overwrite"
        )


def _add_decisions(table: pa.Table, part: pa.Table, alive: np.ndarray, id_f: str) -> pa.Table:
    """The decision columns for every row of ``table``: the survivors' from ``part`` (row-aligned with them), nulls
    for pre-filtered rows (``keep`` false, ``repeat`` 0; their ``drop_reason``/``dup_of`` come from the pre-filter)."""
    full = bool(alive.all())
    if not full:
        index = np.full(len(alive), -1, dtype=np.int64)
        index[alive] = np.arange(int(alive.sum()))
        take = pa.array(index, mask=index < 0)
    for name in part.column_names:
        if name == id_f:
            continue
        col = part.column(name) if full else part.column(name).take(take)
        if not full and name == "keep":
            col = pc.fill_null(col, False)
        elif not full and name == "repeat":
            col = pc.fill_null(col, 0)
        table = table.append_column(name, col)
    return table


def _add_prefilter(table: pa.Table, pre: pa.Table) -> pa.Table:
    """The pre-filters' columns; their ``drop_reason`` and ``dup_of`` fill the rows the prune step never saw."""
    for name in ("drop_reason", "dup_of"):
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.coalesce(table.column(name), pre.column(name)))
        else:
            table = table.append_column(name, pre.column(name))
    for name in PREFILTER_COLUMNS:
        table = table.append_column(name, pre.column(name))
    return table


def _empty_curated_schema(cfg: WinnowConfig) -> pa.Schema:
    return pa.schema(
        [
            (cfg.io.id_field, pa.string()),
            (cfg.io.text_field, pa.string()),
            ("keep", pa.bool_()),
            ("drop_reason", pa.string()),
        ]
    )
