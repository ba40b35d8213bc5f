"""Per-shard stages as datatrove ``PipelineStep``s.

A ``ShardStage`` processes the shards ``shards[rank::world_size]`` of its task (one task per shard by default):
for each it skips the shard if its completion marker exists, else reads it through ``ShardReader``, writes its
outputs atomically, its rejects to ``rejects/<stem>.parquet``, its stats to ``stats/<stage>/<stem>.json`` and
finally its marker. A shard that fails is recorded under ``failures/<stage>/`` and the task goes on, so the run
can list every failed shard at the end instead of stopping at the first.

Subclasses implement ``process_shard`` only; reading, rejects, stats, timing and markers live here.
"""

from __future__ import annotations

import os
import time
import traceback
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import pyarrow as pa
from datatrove.pipeline.base import PipelineStep
from loguru import logger
from tqdm.auto import tqdm

import pipeline
from pipeline.config import WinnowConfig
from pipeline.embed import Embedder, model_label
from pipeline.io import REJECT_SCHEMA, AtomicParquetWriter, ReadBatch, Shard, ShardReader
from pipeline.rundir import RunDir
from pipeline.stats import ShardStats


def provenance(cfg: WinnowConfig, stage: str) -> dict[str, str]:
    """Key/value metadata stored in every parquet file winnow writes."""
    return {
        "winnow.version": pipeline.__version__,
        "winnow.config_hash": cfg.fingerprint(),
        "winnow.model": model_label(cfg.embed.model),
        "winnow.stage": stage,
    }


class RejectSink:
    """Streams reject records of one shard to ``rejects/<stem>.parquet``; removes a stale file if none."""

    def __init__(self, run: RunDir, shard: Shard, metadata: dict[str, str]):
        self.url = run.url_of("rejects", f"{shard.stem}.parquet")
        self.run, self.shard, self.metadata = run, shard, metadata
        self.writer: AtomicParquetWriter | None = None

    def add(self, rejects: list[dict[str, Any]]) -> None:
        if not rejects:
            return
        if self.writer is None:
            self.writer = AtomicParquetWriter(
                self.url, REJECT_SCHEMA, self.metadata, storage_options=self.run.storage_options
            )
        self.writer.write(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA))

    def __enter__(self) -> RejectSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.writer is not None:
            self.writer.__exit__(exc_type, exc, tb)
        elif exc_type is None:
            self.run.remove(f"rejects/{self.shard.stem}.parquet")


class ShardStage(PipelineStep):
    """Base of the per-shard stages.

    Args:
        cfg: the validated config.
        run_dir: the run directory URL.
        shards: every input shard of the run (a task takes ``shards[rank::world_size]``).
        overwrite: redo shards whose completion marker exists.
        progress: show a per-shard row progress bar (only sensible with one worker in the main process).
    """

    type = "winnow"
    name: ClassVar[str] = "stage"

    def __init__(
        self,
        cfg: WinnowConfig,
        run_dir: str,
        shards: list[Shard],
        overwrite: bool = False,
        progress: bool = False,
    ):
        super().__init__()
        self.cfg = cfg
        self.run_dir = RunDir(run_dir, cfg.io.storage_options)
        self.shards = shards
        self.overwrite = overwrite
        self.progress = progress

    def __repr__(self) -> str:
        return f"winnow: {self.name}"

    def setup(self) -> None:
        """Load models / indexes. Called once per task before the first shard that needs work."""

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        if data:
            yield from data
        ready = False
        for shard in self.shards[rank::world_size]:
            if not self.overwrite and self.run_dir.is_complete(self.name, shard.stem):
                logger.info(f"{self.name}: {shard.stem} already complete, skipped")
                self.stat_update("shards_skipped")
                continue
            if not ready:
                self.setup()
                ready = True
            self._run_shard(shard)

    def _run_shard(self, shard: Shard) -> None:
        stats = ShardStats(shards=1)
        t0 = time.perf_counter()
        self.run_dir.remove(f"failures/{self.name}/{shard.stem}.json")
        try:
            with self.track_time():
                self.process_shard(shard, stats)
            stats.seconds = time.perf_counter() - t0
            stats.check(f"{self.name} {shard.url}")
        except Exception as e:  # noqa: BLE001 - recorded, listed at the end of the run
            logger.exception(f"{self.name}: shard {shard.url} failed")
            self.stat_update("shards_failed")
            self.run_dir.write_failure(
                self.name, shard.stem,
                {"shard": shard.url, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()},
            )  # fmt: skip
            return
        self.run_dir.write_stats(self.name, shard.stem, stats)
        self.run_dir.mark_complete(self.name, shard.stem)
        self.stat_update("shards_done")
        self.stat_update("docs_kept", value=stats.kept)
        self.stat_update("docs_rejected", value=stats.rejected)
        rate = stats.kept / stats.seconds if stats.seconds else 0.0
        logger.info(
            f"{self.name}: {shard.stem}: input={stats.input} kept={stats.kept} rejected={stats.rejected} "
            f"in {stats.seconds:.1f}s ({rate:.1f} docs/s)"
        )

    def read(self, shard: Shard, stats: ShardStats, rejects: RejectSink) -> Iterator[ReadBatch]:
        """Validated batches of ``shard``; rejects go to ``rejects`` and are counted in ``stats``."""
        bar = tqdm(desc=f"{self.name} {shard.stem}", unit="doc", disable=not self.progress, leave=False)
        try:
            for batch in ShardReader(shard, self.cfg.io):
                rejects.add(batch.rejects)
                stats.add_rejects(batch.rejects)
                stats.input += batch.table.num_rows
                bar.update(batch.table.num_rows + len(batch.rejects))
                yield batch
        finally:
            bar.close()

    def output_url(self, folder: str, shard: Shard) -> str:
        return self.run_dir.url_of(folder, f"{shard.stem}.parquet")

    def writer(self, folder: str, shard: Shard, schema: pa.Schema | None = None) -> AtomicParquetWriter:
        return AtomicParquetWriter(
            self.output_url(folder, shard),
            schema,
            provenance(self.cfg, self.name),
            compression=self.cfg.io.compression,
            row_group_size=self.cfg.io.row_group_size,
            storage_options=self.cfg.io.storage_options,
        )

    @abstractmethod
    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        """Do this stage's work on one shard, counting into ``stats`` (kept/dropped; rejects are counted by ``read``)."""


def _torch_threads(cfg: WinnowConfig) -> int:
    if cfg.executor.torch_threads:
        return cfg.executor.torch_threads
    return max(1, (os.cpu_count() or 1) // cfg.executor.workers)


class EmbedStage(ShardStage):
    """Embeds every valid document; writes ``embeddings/<stem>.parquet`` with ``id`` and ``embedding``."""

    name = "embed"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.embedder = Embedder(self.cfg.embed, torch_threads=_torch_threads(self.cfg))

    def setup(self) -> None:
        self.embedder.setup()

    def schema(self) -> pa.Schema:
        value = pa.float16() if self.cfg.embed.store_dtype == "float16" else pa.float32()
        return pa.schema(
            [(self.cfg.io.id_field, pa.string()), ("embedding", pa.list_(value, self.embedder.dimension))]
        )

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        schema = self.schema()
        value_type = schema.field("embedding").type.value_type
        with self.writer("embeddings", shard, schema) as out, RejectSink(self.run_dir, shard, out.metadata_str) as rej:
            for batch in self.read(shard, stats, rej):
                if batch.table.num_rows == 0:
                    continue
                texts = batch.table.column(self.cfg.io.text_field).to_pylist()
                t0 = time.perf_counter()
                vecs = self.embedder.encode(texts)
                stats.count("embed_seconds", time.perf_counter() - t0)
                flat = pa.array(vecs.astype(value_type.to_pandas_dtype(), copy=False).ravel(), type=value_type)
                emb = pa.FixedSizeListArray.from_arrays(flat, vecs.shape[1])
                out.write(pa.table([batch.table.column(self.cfg.io.id_field), emb], schema=schema))
                stats.kept += batch.table.num_rows


class WriteStage(ShardStage):
    """Writes ``curated/<stem>.parquet``: every valid input row, its columns unchanged, plus ``keep`` and
    ``drop_reason``. Until a prune stage decides otherwise every valid row is kept."""

    name = "write"

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        with self.writer("curated", shard) as out, RejectSink(self.run_dir, shard, out.metadata_str) as rej:
            for batch in self.read(shard, stats, rej):
                n = batch.table.num_rows
                table = batch.table.append_column("keep", pa.array([True] * n, pa.bool_()))
                table = table.append_column("drop_reason", pa.nulls(n, pa.string()))
                out.write(table)
                stats.kept += n
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


#: stages in the order ``winnow run`` executes them
STAGES: dict[str, type[ShardStage]] = {"embed": EmbedStage, "write": WriteStage}
