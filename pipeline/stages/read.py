"""The read stage: each raw input shard parsed and validated once per run.

It writes the shard's valid rows, every input column as read (ids derived where absent), to
``docs/<stem>.parquet`` with each row's record index, one row group per read batch, and the rejects, line-exact, to
``rejects/<stem>.parquet``. The later per-shard stages (embed, score, write) read that copy instead of parsing the
raw file again (``ShardStage.read``); they fall back to the raw file when this stage has not run for the current
config (e.g. ``winnow score`` on a run made before it existed).
"""

from __future__ import annotations

import pyarrow as pa

from winnow.core.io import AtomicParquetWriter, Shard
from winnow.core.stats import ShardStats
from winnow.pipeline.stages.base import DOCS, ROW_COLUMN, RejectSink, ShardStage, provenance, register_stage


@register_stage(order=50)
class ReadStage(ShardStage):
    """Parses and validates a shard once: ``docs/<stem>.parquet`` (valid rows) and ``rejects/<stem>.parquet``."""

    name = "read"
    needs = ()
    writes = (f"{DOCS}/<stem>.parquet", "rejects/<stem>.parquet")
    config_keys = ["io"]
    after_prefilter = False

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        io = self.cfg.io
        writer = AtomicParquetWriter(
            self.run_dir.url_of(DOCS, f"{shard.stem}.parquet"),
            None,
            self.provenance(),
            compression=io.compression,
            # one row group per read batch: later stages then see the same batches as a parse of the raw file
            row_group_size=max(io.row_group_size, io.read_batch_size),
            storage_options=io.storage_options,
        )
        with writer as out, RejectSink(self.run_dir, shard, provenance(self.cfg, "read")) as rej:
            for batch in self.read(shard, stats, rej):
                n = batch.table.num_rows
                if n:
                    out.write(batch.table.append_column(ROW_COLUMN, pa.array(batch.rows, pa.int64())))
                    stats.kept += n
            if out.schema is None:  # no valid row: an empty copy with the base columns
                out.schema = pa.schema(
                    [(io.id_field, pa.string()), (io.text_field, pa.string()), (ROW_COLUMN, pa.int64())]
                ).with_metadata(out.metadata)
