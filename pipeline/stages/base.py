"""The stage base classes and the stage registry.

Per-shard stages as datatrove ``PipelineStep``s.

A ``ShardStage`` processes the shards ``shards[rank::world_size]`` of its task (one task per shard by default):
for each it skips the shard if its completion marker exists, else reads it through ``ShardReader``, writes its
outputs atomically, its rejects to ``rejects/<stem>.parquet``, its stats to ``stats/<stage>/<stem>.json`` and
finally its marker. A shard that fails is recorded under ``failures/<stage>/`` and the task goes on, so the run
can list every failed shard at the end instead of stopping at the first.

Subclasses implement ``process_shard`` only; reading, rejects, stats, timing and markers live here.

A stage registers itself with ``@register_stage(order=N)``: ``STAGES`` lists them in the order ``winnow run``
executes them (by ``order``), and the CLI, the runner and the executors' GPU placement read it.
"""

from __future__ import annotations

import errno
import hashlib
import time
import traceback
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.pipeline.base import PipelineStep
from loguru import logger
from tqdm.auto import tqdm

import winnow
from winnow.core.cli_util import check_interrupted
from winnow.core.errors import CurationError
from winnow.core.io import REJECT_SCHEMA, AtomicParquetWriter, ReadBatch, Shard, ShardReader, VectorWriter
from winnow.core.registry import Registry
from winnow.core.rundir import RunDir
from winnow.core.stats import ShardStats
from winnow.embedding.embed import model_label
from winnow.pipeline.config import WinnowConfig
from winnow.pipeline.stages.survivors import dedup_digest, dedup_on, survivor_mask

#: the ``read`` stage's columnar copy of every shard's valid rows, and the column holding each row's record index
DOCS = "docs"
ROW_COLUMN = "__winnow_row"

#: every registered stage, in the order ``winnow run`` executes them
STAGES: Registry[type[Stage]] = Registry("stage", "stages", ordered=True)


def register_stage(order: int) -> Callable[[type[Stage]], type[Stage]]:
    """Class decorator: register a stage under its ``name`` at position ``order`` of ``winnow run``."""

    def add(cls: type[Stage]) -> type[Stage]:
        return STAGES.register(cls.name, order=order, needs=cls.needs, writes=cls.writes)(cls)

    return add


def provenance(cfg: WinnowConfig, stage: str) -> dict[str, str]:
    """Key/value metadata stored in every parquet file winnow writes."""
    return {
        "winnow.version": winnow.__version__,
        "winnow.config_hash": cfg.fingerprint(),
        "winnow.model": model_label(cfg.embed),
        "winnow.stage": stage,
    }


class RejectSink:
    """Streams reject records of one shard to ``rejects/<stem>.parquet``; removes a stale file if none.

    Every stage that reads a shard validates it the same way and writes the same rejects (stage ``read`` in the
    metadata), so whichever stage wrote them last, the file's bytes are the same.
    """

    def __init__(self, run: RunDir, shard: Shard, metadata: dict[str, str]):
        self.url = run.url_of("rejects", f"{shard.stem}.parquet")
        self.run, self.shard, self.metadata = run, shard, metadata
        self.writer: AtomicParquetWriter | None = None
        #: set when the stage reads the ``read`` stage's copy: that stage's rejects file stays as it is
        self.keep_existing = False

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
        elif exc_type is None and not self.keep_existing:
            self.run.remove(f"rejects/{self.shard.stem}.parquet")


def _describe(e: Exception, run_url: str) -> str:
    """A unit's error for the console and ``failures/``: a full disk names the run directory and the way out."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        where = f" ({e.filename})" if e.filename else ""
        return (
            f"no space left on the device of {run_url}{where}: free space and rerun the same command (completed "
            "units are kept; no partial file is left under a final name)"
        )
    return f"{type(e).__name__}: {e}"


class Stage(PipelineStep):
    """Base of every stage: a list of work units (shards, cluster buckets, or one global unit).

    A task takes ``units()[rank::world_size]`` (one task per unit by default). A unit is skipped when its
    completion marker holds this stage's config fingerprint; otherwise it runs, writes its outputs atomically,
    its stats to ``stats/<stage>/<unit>.json`` and its marker last. A unit that fails is recorded under
    ``failures/<stage>/`` and the task goes on.

    Args:
        cfg: the validated config.
        run_dir: the run directory URL.
        shards: every input shard of the run.
        overwrite: redo units whose completion marker exists.
        progress: show per-unit progress bars (sensible with one worker in the main process).
    """

    type = "winnow"
    name: ClassVar[str] = "stage"
    #: stages whose outputs this one always reads (documentation and ``winnow stages``; optional reads are
    #: checked where they happen)
    needs: ClassVar[tuple[str, ...]] = ()
    #: what it writes in the run directory (``<stem>``: one file per input shard; the runner removes those of shards
    #: no longer in the manifest)
    writes: ClassVar[tuple[str, ...]] = ()
    #: the entries of ``writes`` a complete unit may lack (rejects of a clean shard, buckets without rows, caches):
    #: the others are checked before a unit is skipped (``outputs``)
    optional_writes: ClassVar[tuple[str, ...]] = ("rejects/<stem>.parquet",)
    #: config sections / fields whose values change this stage's outputs (and those of the stages before it)
    config_keys: ClassVar[list[str]] = ["io", "embed"]
    #: whether the outputs depend on the whole list of input shards (global steps and everything after them)
    uses_shard_list: ClassVar[bool] = False
    #: whether the stage runs after the pre-filters and sees their survivors only: the ``prefilter`` section is then
    #: part of its fingerprint, and (per shard) which rows the text dedup dropped is part of its markers
    after_prefilter: ClassVar[bool] = True

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
        #: the units this execution runs (the runner sets the incomplete ones; datatrove's task ``rank`` indexes
        #: this list); ``None``: every unit
        self.todo: list[str] | None = None

    def __repr__(self) -> str:
        return f"winnow: {self.name}"

    @classmethod
    def fingerprint_for(cls, cfg: WinnowConfig, shards: list[Shard]) -> str:
        """The fingerprint of the config values the stage uses; with ``uses_shard_list``, also of every input
        shard's URL and content fingerprint (a grown, replaced, added or removed shard redoes the global steps)."""
        extra = [[s.url, s.fingerprint] for s in shards] if cls.uses_shard_list else None
        keys = cls.config_keys
        if cls.after_prefilter and cfg.prefilter is not None and "prefilter" not in keys:
            keys = [*keys, "prefilter"]
        return cfg.fingerprint(keys, extra=extra)

    @property
    def fingerprint(self) -> str:
        return self.fingerprint_for(self.cfg, self.shards)

    def units(self) -> list[str]:
        return ["all"]

    def marker(self, unit: str, fingerprint: str | None = None) -> str:
        """What a unit's completion marker holds: the stage's config fingerprint."""
        return fingerprint or self.fingerprint

    def outputs(self, unit: str) -> list[str]:
        """The files a complete ``unit`` has (relative to the run directory): ``writes`` but ``optional_writes``,
        ``<stem>`` standing for every input shard. The runner redoes a complete unit when one is missing or
        unreadable."""
        out: list[str] = []
        for pattern in self.writes:
            if pattern in self.optional_writes:
                continue
            if "<stem>" in pattern:
                out += [pattern.replace("<stem>", s.stem) for s in self.shards]
            elif "<" not in pattern:
                out.append(pattern)
        return out

    def setup(self) -> None:
        """Load models / indexes. Called once per task before the first unit that needs work."""

    def teardown(self) -> None:
        """Free what ``setup`` took (tokenizer processes, HTTP sessions, GPU memory). Called once per task after
        its last unit, if ``setup`` ran."""

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        if data:
            yield from data
        ready = False
        fp = self.fingerprint
        try:
            units = self.units() if self.todo is None else self.todo
            for unit in units[rank::world_size]:
                check_interrupted()
                if not self.overwrite and self.run_dir.is_complete(self.name, unit, self.marker(unit, fp)):
                    logger.info(f"{self.name}: {unit} already complete, skipped")
                    self.stat_update("units_skipped")
                    continue
                if not ready:
                    self.setup()
                    ready = True
                self._run_unit(unit, fp)
        finally:
            if ready:
                self.teardown()

    def _run_unit(self, unit: str, fp: str) -> None:
        stats = ShardStats(shards=1)
        t0 = time.perf_counter()
        self.run_dir.remove(f"failures/{self.name}/{unit}.json")
        try:
            with self.track_time():
                self.process_unit(unit, stats)
            stats.seconds = time.perf_counter() - t0
            stats.check(f"{self.name} {unit}")
        except Exception as e:  # noqa: BLE001 - recorded, listed at the end of the run
            error = _describe(e, self.run_dir.url)
            logger.error(f"{self.name}: {unit} failed: {error}")
            logger.opt(exception=e).debug("traceback")  # the task's log file keeps it
            self.stat_update("units_failed")
            try:
                self.run_dir.write_failure(
                    self.name, unit, {"unit": unit, "error": error, "traceback": traceback.format_exc()}
                )
            except OSError as full:  # a full disk may not take the record either: the run still lists the unit
                logger.error(f"{self.name}: {unit}: could not record the failure ({full})")
            return
        self.run_dir.write_stats(self.name, unit, stats)
        self.run_dir.mark_complete(self.name, unit, self.marker(unit, fp))
        self.stat_update("units_done")
        self.stat_update("docs_kept", value=stats.kept)
        self.stat_update("docs_rejected", value=stats.rejected)
        rate = stats.kept / stats.seconds if stats.seconds else 0.0
        logger.info(
            f"{self.name}: {unit}: input={stats.input} kept={stats.kept} dropped={stats.dropped} "
            f"rejected={stats.rejected} in {stats.seconds:.1f}s ({rate:.1f} docs/s)"
        )

    @abstractmethod
    def process_unit(self, unit: str, stats: ShardStats) -> None:
        """Do this stage's work on one unit, counting into ``stats``."""

    @classmethod
    def wants_gpu(cls, cfg: WinnowConfig) -> bool:
        """Whether this stage's tasks should get a GPU under ``cfg`` (executors place tasks by this)."""
        return False

    def require(self, name: str) -> None:
        """Raise unless every unit of the earlier stage ``name`` completed under the current config."""
        probe = STAGES[name](self.cfg, self.run_dir.url, self.shards)
        fp = probe.fingerprint
        missing = [u for u in probe.units() if not self.run_dir.is_complete(name, u, probe.marker(u, fp))]
        if missing:
            msg = (
                f"stage {self.name} needs the outputs of stage {name} for the current config, but "
                f"{len(missing)} of its units are missing or stale (e.g. {missing[0]}): run `winnow {name}` "
                "(or `winnow run`) first"
            )
            raise CurationError(msg)

    def completed(self, name: str) -> bool:
        """Whether the earlier stage ``name`` completed under the current config (``require`` without raising)."""
        try:
            self.require(name)
            return True
        except CurationError:
            return False

    def provenance(self) -> dict[str, str]:
        """The metadata of the files this stage writes."""
        return provenance(self.cfg, self.name)

    def writer(self, rel: str, schema: pa.Schema | None = None, vectors: bool = False) -> AtomicParquetWriter:
        """An atomic parquet writer for ``<run>/<rel>`` with provenance metadata and the io settings (``vectors``: a
        file with an ``embedding`` column, written by ``VectorWriter``)."""
        return (VectorWriter if vectors else AtomicParquetWriter)(
            self.run_dir.url_of(rel),
            schema,
            self.provenance(),
            compression=self.cfg.io.compression,
            row_group_size=self.cfg.io.row_group_size,
            storage_options=self.cfg.io.storage_options,
        )


def count_prefiltered(stats: ShardStats, keep: np.ndarray) -> None:
    """Count a batch's rows the pre-filters dropped (``keep`` false) as ``dropped``, counter ``prefiltered``."""
    gone = int(len(keep) - keep.sum())
    stats.dropped += gone
    stats.count("prefiltered", gone)


def require_prefilter(stage: Stage) -> None:
    """Raise unless the pre-filters (when the config has them) completed: a stage that reads survivors needs them."""
    if stage.cfg.prefilter is not None:
        stage.require("prefilter")
        if dedup_on(stage.cfg):
            stage.require("textdedup")


class ShardStage(Stage):
    """A stage with one unit per input shard; subclasses implement ``process_shard``."""

    def units(self) -> list[str]:
        return [s.stem for s in self.shards]

    def marker(self, unit: str, fingerprint: str | None = None) -> str:
        """The config fingerprint plus a hash of the shard's URL and content fingerprint: another file under the same
        name, or the same file grown or replaced, is redone."""
        shard = next(s for s in self.shards if s.stem == unit)
        digest = hashlib.sha256(f"{shard.url}\n{shard.fingerprint}".encode()).hexdigest()[:12]
        if self.after_prefilter and dedup_on(self.cfg):  # survivors also depend on the other shards
            return f"{fingerprint or self.fingerprint}-{digest}-{dedup_digest(self.run_dir, unit)}"
        return f"{fingerprint or self.fingerprint}-{digest}"

    def outputs(self, unit: str) -> list[str]:
        """The per-shard files of ``writes`` (but ``optional_writes``) for the shard ``unit``."""
        return [p.replace("<stem>", unit) for p in self.writes if "<stem>" in p and p not in self.optional_writes
                and "<" not in p.replace("<stem>", "")]  # fmt: skip

    def process_unit(self, unit: str, stats: ShardStats) -> None:
        shard = next(s for s in self.shards if s.stem == unit)
        self.process_shard(shard, stats)

    @abstractmethod
    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        """This stage's work on one shard (rejects are counted by ``read``; count kept/dropped here)."""

    def read(
        self, shard: Shard, stats: ShardStats, rejects: RejectSink, survivors: bool = False
    ) -> Iterator[ReadBatch]:
        """Validated batches of ``shard``; rejects go to ``rejects`` and are counted in ``stats``.

        With ``survivors`` (and a ``prefilter`` section), only the rows every pre-filter kept: the others are counted
        as ``dropped`` (``prefiltered``) and never reach the stage.

        When the ``read`` stage has parsed the shard under the current config, this reads its columnar copy
        (``docs/<stem>.parquet``, one row group per read batch, so batches are the same) instead of parsing the
        raw file again, and takes the rejects' counts from its stats (the rejects file it wrote stays as it is).
        """
        batches = self._read_all(shard, stats, rejects)
        mask = survivor_mask(self.run_dir, self.cfg, shard.stem) if survivors else None
        if mask is None:
            yield from batches
            return
        offset = 0
        for batch in batches:
            n = batch.table.num_rows
            keep = mask[offset : offset + n]
            offset += n
            if len(keep) < n:
                break
            if not keep.all():
                count_prefiltered(stats, keep)
                batch = ReadBatch(batch.table.filter(pa.array(keep)), batch.rows[keep], batch.rejects)
            yield batch
        if offset != len(mask):  # past the mask's end the read stopped: the shard has at least ``offset`` rows
            have = f"at least {offset}" if offset > len(mask) else f"{offset}"
            raise CurationError(
                f"{shard.url}: filters/{shard.stem}.parquet covers {len(mask)} rows but the shard has {have} valid "
                "rows (was the input changed since the run?): rerun `winnow run`"
            )

    def _read_all(self, shard: Shard, stats: ShardStats, rejects: RejectSink) -> Iterator[ReadBatch]:
        if self.name != "read" and self._parsed(shard):
            yield from self._read_parsed(shard, stats, rejects)
            return
        bar = self._bar(shard, total=None)
        try:
            for batch in ShardReader(shard, self.cfg.io):
                rejects.add(batch.rejects)
                stats.add_rejects(batch.rejects)
                stats.input += batch.table.num_rows
                yield batch
                bar.update(batch.table.num_rows + len(batch.rejects))  # once the stage is done with the batch
        finally:
            bar.close()

    def _bar(self, shard: Shard, total: int | None):
        """Documents of ``shard`` this stage has processed (advanced when the stage asks for the next batch, so it
        counts documents embedded or scored, not rows read ahead), with a total and ETA when known. On a TTY in
        the main process only (``progress``)."""
        return tqdm(desc=f"{self.name} {shard.stem}", total=total, unit="doc", disable=not self.progress, leave=True)

    def _parsed(self, shard: Shard) -> bool:
        """Whether ``read`` completed for ``shard`` under the current config (its copy is then the input)."""
        if "read" not in STAGES:
            return False
        probe = STAGES["read"](self.cfg, self.run_dir.url, self.shards)
        return self.run_dir.is_complete("read", shard.stem, probe.marker(shard.stem, probe.fingerprint))

    def _read_parsed(self, shard: Shard, stats: ShardStats, rejects: RejectSink) -> Iterator[ReadBatch]:
        parsed = self.run_dir.read_stats("read", [shard.stem])
        stats.input += parsed.rejected
        stats.rejected += parsed.rejected
        for reason, n in parsed.rejected_by_reason.items():
            stats.rejected_by_reason[reason] = stats.rejected_by_reason.get(reason, 0) + n
        rejects.keep_existing = True
        url = self.run_dir.url_of(DOCS, f"{shard.stem}.parquet")
        with self.run_dir.fs.open(self.run_dir._p(DOCS, f"{shard.stem}.parquet"), "rb") as f:
            try:
                pf = pq.ParquetFile(f)
            except (pa.ArrowInvalid, OSError) as e:
                raise CurationError(f"{url}: unreadable ({e}); rerun `winnow run` to parse the shard again") from e
            bar = self._bar(shard, total=pf.metadata.num_rows)
            try:
                for i in range(pf.num_row_groups):
                    table = pf.read_row_group(i)
                    rows = table.column(ROW_COLUMN).to_numpy()
                    table = table.drop_columns([ROW_COLUMN])
                    stats.input += table.num_rows
                    yield ReadBatch(table, rows)
                    bar.update(table.num_rows)
            finally:
                bar.close()
