"""Per-shard stages as datatrove ``PipelineStep``s.

A ``ShardStage`` processes the shards ``shards[rank::world_size]`` of its task (one task per shard by default):
for each it skips the shard if its completion marker exists, else reads it through ``ShardReader``, writes its
outputs atomically, its rejects to ``rejects/<stem>.parquet``, its stats to ``stats/<stage>/<stem>.json`` and
finally its marker. A shard that fails is recorded under ``failures/<stage>/`` and the task goes on, so the run
can list every failed shard at the end instead of stopping at the first.

Subclasses implement ``process_shard`` only; reading, rejects, stats, timing and markers live here.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import traceback
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datatrove.pipeline.base import PipelineStep
from loguru import logger
from tqdm.auto import tqdm
from winnow.clustering.kmeans import SphericalKMeans, assign
from winnow.clustering.semdedup import semdedup_cluster
from winnow.core.errors import CurationError
from winnow.core.io import REJECT_SCHEMA, AtomicParquetWriter, ReadBatch, Shard, ShardReader
from winnow.core.layout import arrow_to_vectors, bucket_name, read_parquet, vectors_to_arrow
from winnow.core.rundir import RunDir
from winnow.core.stats import ShardStats
from winnow.embedding.embed import Embedder, model_label
from winnow.pipeline.config import WinnowConfig

import winnow


def provenance(cfg: WinnowConfig, stage: str) -> dict[str, str]:
    """Key/value metadata stored in every parquet file winnow writes."""
    return {
        "winnow.version": winnow.__version__,
        "winnow.config_hash": cfg.fingerprint(),
        "winnow.model": model_label(cfg.embed.model),
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
    #: config sections / fields whose values change this stage's outputs (and those of the stages before it)
    config_keys: ClassVar[list[str]] = ["io", "embed"]
    #: whether the outputs depend on the whole list of input shards (global steps and everything after them)
    uses_shard_list: ClassVar[bool] = False

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

    @classmethod
    def fingerprint_for(cls, cfg: WinnowConfig, shards: list[Shard]) -> str:
        extra = [s.url for s in shards] if cls.uses_shard_list else None
        return cfg.fingerprint(cls.config_keys, extra=extra)

    @property
    def fingerprint(self) -> str:
        return self.fingerprint_for(self.cfg, self.shards)

    def units(self) -> list[str]:
        return ["all"]

    def marker(self, unit: str, fingerprint: str | None = None) -> str:
        """What a unit's completion marker holds: the stage's config fingerprint."""
        return fingerprint or self.fingerprint

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
            for unit in self.units()[rank::world_size]:
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
            logger.error(f"{self.name}: {unit} failed: {type(e).__name__}: {e}")
            logger.opt(exception=e).debug("traceback")  # the task's log file keeps it
            self.stat_update("units_failed")
            self.run_dir.write_failure(
                self.name,
                unit,
                {"unit": unit, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()},
            )
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

    def require(self, stage: type[Stage]) -> None:
        """Raise unless every unit of an earlier ``stage`` completed under the current config."""
        probe = stage(self.cfg, self.run_dir.url, self.shards)
        fp = probe.fingerprint
        missing = [u for u in probe.units() if not self.run_dir.is_complete(stage.name, u, probe.marker(u, fp))]
        if missing:
            msg = (
                f"stage {self.name} needs the outputs of stage {stage.name} for the current config, but "
                f"{len(missing)} of its units are missing or stale (e.g. {missing[0]}): run `winnow {stage.name}` "
                "(or `winnow run`) first"
            )
            raise CurationError(msg)

    def provenance(self) -> dict[str, str]:
        """The metadata of the files this stage writes."""
        return provenance(self.cfg, self.name)

    def writer(self, rel: str, schema: pa.Schema | None = None) -> AtomicParquetWriter:
        """An atomic parquet writer for ``<run>/<rel>`` with provenance metadata and the io settings."""
        return AtomicParquetWriter(
            self.run_dir.url_of(rel),
            schema,
            self.provenance(),
            compression=self.cfg.io.compression,
            row_group_size=self.cfg.io.row_group_size,
            storage_options=self.cfg.io.storage_options,
        )


class ShardStage(Stage):
    """A stage with one unit per input shard; subclasses implement ``process_shard``."""

    def units(self) -> list[str]:
        return [s.stem for s in self.shards]

    def marker(self, unit: str, fingerprint: str | None = None) -> str:
        """The config fingerprint plus a hash of the shard's URL: another file under the same name is redone."""
        url = next(s.url for s in self.shards if s.stem == unit)
        return f"{fingerprint or self.fingerprint}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"

    def process_unit(self, unit: str, stats: ShardStats) -> None:
        shard = next(s for s in self.shards if s.stem == unit)
        self.process_shard(shard, stats)

    @abstractmethod
    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        """This stage's work on one shard (rejects are counted by ``read``; count kept/dropped here)."""

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


def _torch_threads(cfg: WinnowConfig) -> int:
    if cfg.executor.torch_threads:
        return cfg.executor.torch_threads
    return max(1, (os.cpu_count() or 1) // cfg.executor.workers)


class EmbedStage(ShardStage):
    """Embeds every valid document; writes ``embeddings/<stem>.parquet`` with ``id`` and ``embedding``
    (row i = the shard's i-th valid record)."""

    name = "embed"
    config_keys = ["io", "embed"]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.embedder = Embedder(self.cfg.embed, torch_threads=_torch_threads(self.cfg))

    def setup(self) -> None:
        self.embedder.setup()

    def teardown(self) -> None:
        self.embedder.teardown()  # the model stays in the process's cache; tokenizer processes end

    def provenance(self) -> dict[str, str]:
        """Also records where and in which precision the vectors were computed (``embed.dtype=auto`` resolves
        per machine)."""
        return {
            **super().provenance(),
            "winnow.embed_device": self.embedder.device,
            "winnow.embed_dtype": self.embedder.dtype,
        }

    def schema(self) -> pa.Schema:
        value = pa.float16() if self.cfg.embed.store_dtype == "float16" else pa.float32()
        return pa.schema(
            [(self.cfg.io.id_field, pa.string()), ("embedding", pa.list_(value, self.embedder.dimension))]
        )

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        schema = self.schema()
        value_type = schema.field("embedding").type.value_type
        with (
            self.writer(f"embeddings/{shard.stem}.parquet", schema) as out,
            RejectSink(self.run_dir, shard, provenance(self.cfg, "read")) as rej,
        ):
            for batch in self.read(shard, stats, rej):
                if batch.table.num_rows == 0:
                    continue
                texts = batch.table.column(self.cfg.io.text_field).to_pylist()
                t0 = time.perf_counter()
                vecs = self.embedder.encode(texts)
                stats.count("embed_seconds", time.perf_counter() - t0)
                out.write(
                    pa.table(
                        [batch.table.column(self.cfg.io.id_field), vectors_to_arrow(vecs, value_type)], schema=schema
                    )
                )
                stats.kept += batch.table.num_rows


# -- clustering ----------------------------------------------------------------------------------------------------

_CLUSTER_KEYS = ["io", "embed", "cluster", "run.seed"]


def fit_hashes(ids: list[str], seed: int) -> np.ndarray:
    """A 64-bit hash of (seed, id) per id: the k-means sample is chosen by it, independent of shards and order."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest(), "little") for i in ids],
        dtype=np.uint64,
    )


class FitStage(Stage):
    """Fits spherical k-means on a sample of the embeddings; writes ``centroids.npy`` and ``kmeans.json``."""

    name = "fit"
    config_keys = _CLUSTER_KEYS
    uses_shard_list = True

    def process_unit(self, unit: str, stats: ShardStats) -> None:
        self.require(EmbedStage)
        cc = self.cfg.cluster
        seed = self.cfg.cluster_seed
        # pass 1, ids only: the sample (hash below fit_fraction), then at most the k x max_points_per_centroid
        # points k-means trains on (the smallest hashes), so memory is bounded by that cap, not by the corpus
        cap = cc.k * cc.max_points_per_centroid
        rows, hashes = [], []
        for i, shard in enumerate(self.shards):
            ids = read_parquet(self.run_dir, f"embeddings/{shard.stem}.parquet", [self.cfg.io.id_field])
            h = fit_hashes(ids.column(0).to_pylist(), seed)
            stats.input += len(h)
            stats.kept += len(h)
            member = np.arange(len(h)) if cc.fit_fraction >= 1.0 else np.nonzero(h / 2.0**64 < cc.fit_fraction)[0]
            rows.append(np.stack([np.full(len(member), i), member], axis=1))
            hashes.append(h[member])
        chosen = np.concatenate(rows) if rows else np.zeros((0, 2), np.int64)
        h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        stats.count("fit_sample", len(h))
        if len(h) > cap:
            chosen = chosen[np.sort(np.argpartition(h, cap - 1)[:cap])]
        # pass 2: the chosen vectors, shard by shard
        parts = []
        bounds = np.searchsorted(chosen[:, 0], np.arange(len(self.shards) + 1))  # chosen is sorted by shard
        for i, shard in enumerate(self.shards):
            take = chosen[bounds[i] : bounds[i + 1], 1]
            if len(take):
                column = read_parquet(self.run_dir, f"embeddings/{shard.stem}.parquet", ["embedding"]).column(0)
                parts.append(arrow_to_vectors(column)[take])
        x = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
        del parts
        km = SphericalKMeans(
            cc.k, niter=cc.niter, seed=seed, max_points_per_centroid=cc.max_points_per_centroid,
            backend=cc.backend, device=cc.device, nredo=cc.nredo,
        )  # fmt: skip
        result = km.fit(x, overwrite_input=True)  # x is this stage's own copy: no second one
        stats.count("fit_train_points", result.n_train)
        buf = io.BytesIO()
        np.save(buf, result.centroids)
        self.run_dir.write_bytes("centroids.npy", buf.getvalue())
        info = {
            "k": cc.k, "niter": cc.niter, "nredo": cc.nredo, "seed": seed,
            "backend": result.backend, "device": result.device,
            "n_documents": stats.input, "n_sample": int(len(x)), "n_train": result.n_train,
            "max_points_per_centroid": cc.max_points_per_centroid, "objective": result.objective,
            "seconds": result.seconds,
        }  # fmt: skip
        self.run_dir.write_text("kmeans.json", json.dumps(info, indent=2))
        logger.info(
            f"fit: k={cc.k} on {result.n_train} of {stats.input} documents ({result.backend}/{result.device}), "
            f"objective {result.objective[0] if result.objective else float('nan'):.2f} -> "
            f"{result.objective[-1] if result.objective else float('nan'):.2f} in {result.seconds:.2f}s"
        )


ASSIGN_SCHEMA_FIELDS = [("cluster_id", pa.int32()), ("dist_to_centroid", pa.float32())]


class AssignStage(ShardStage):
    """Assigns every document to its nearest centroid.

    Writes ``assignments/<stem>.parquet`` (id, cluster_id, dist_to_centroid; row-aligned with the embeddings)
    and, for SemDeDup, ``buckets/<bucket>/<stem>.parquet`` (stem, pos, id, cluster_id, dist_to_centroid,
    embedding) with ``bucket = cluster_id % cluster.n_buckets``.
    """

    name = "assign"
    config_keys = _CLUSTER_KEYS
    uses_shard_list = True

    def setup(self) -> None:
        self.require(FitStage)
        self.centroids = np.load(io.BytesIO(self.run_dir.read_bytes("centroids.npy")))

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        cc = self.cfg.cluster
        id_f = self.cfg.io.id_field
        for b in range(cc.n_buckets):  # a rerun under new centroids must not leave rows in other buckets
            self.run_dir.remove(f"buckets/{bucket_name(b)}/{shard.stem}.parquet")
        table = read_parquet(self.run_dir, f"embeddings/{shard.stem}.parquet")
        vecs = arrow_to_vectors(table.column("embedding"))
        labels, dist = assign(vecs, self.centroids, backend=cc.backend, device=cc.device)
        n = len(labels)
        ids = table.column(id_f)
        out = pa.table(
            [ids, pa.array(labels, pa.int32()), pa.array(dist, pa.float32())],
            names=[id_f, "cluster_id", "dist_to_centroid"],
        )
        with self.writer(f"assignments/{shard.stem}.parquet") as w:
            w.write(out)
        pos = np.arange(n, dtype=np.int64)
        buckets = labels % cc.n_buckets
        for b in np.unique(buckets):
            sel = np.flatnonzero(buckets == b)
            part = pa.table(
                {
                    "stem": pa.array([shard.stem] * len(sel), pa.string()),
                    "pos": pa.array(pos[sel]),
                    id_f: ids.take(pa.array(sel)),
                    "cluster_id": pa.array(labels[sel], pa.int32()),
                    "dist_to_centroid": pa.array(dist[sel], pa.float32()),
                    "embedding": table.column("embedding").take(pa.array(sel)),
                }
            )
            with self.writer(f"buckets/{bucket_name(int(b))}/{shard.stem}.parquet") as w:
                w.write(part)
        stats.input += n
        stats.kept += n


DEDUP_SCHEMA = pa.schema(
    [("stem", pa.string()), ("pos", pa.int64()), ("dup_max_sim", pa.float32()), ("dup_nn_id", pa.string())]
)


class DedupStage(Stage):
    """SemDeDup per cluster bucket: ``dedup/<bucket>.parquet`` with, per document, the max similarity to a
    higher-ranked member of its cluster (``dup_max_sim``, null for the top-ranked) and that member's id."""

    name = "dedup"
    config_keys = [*_CLUSTER_KEYS, "dedup.rank"]
    uses_shard_list = True

    def units(self) -> list[str]:
        return [bucket_name(b) for b in range(self.cfg.cluster.n_buckets)]

    def setup(self) -> None:
        self.require(AssignStage)

    def process_unit(self, unit: str, stats: ShardStats) -> None:
        id_f = self.cfg.io.id_field
        stems = {s.stem for s in self.shards}
        files = [f for f in self.run_dir.listdir(f"buckets/{unit}") if f.endswith(".parquet") and f[:-8] in stems]
        tables = [read_parquet(self.run_dir, f"buckets/{unit}/{f}") for f in sorted(files)]
        with self.writer(f"dedup/{unit}.parquet", DEDUP_SCHEMA) as out:
            if not tables:
                return
            t = pa.concat_tables(tables)
            order = np.lexsort(
                (
                    t.column("pos").to_numpy(),
                    np.asarray(t.column("stem").to_pylist()),
                    t.column("cluster_id").to_numpy(),
                )
            )
            t = t.take(pa.array(order))
            labels = t.column("cluster_id").to_numpy()
            dist = t.column("dist_to_centroid").to_numpy()
            vecs = arrow_to_vectors(t.column("embedding"))
            ids = np.asarray(t.column(id_f).to_pylist(), dtype=object)
            sims = np.full(len(t), np.nan, np.float32)
            nn_ids = np.full(len(t), None, dtype=object)
            bounds = np.flatnonzero(np.diff(labels)) + 1
            pairs = 0
            for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(t)], strict=True):
                cid = int(labels[lo])
                s_, nn = semdedup_cluster(
                    vecs[lo:hi], dist[lo:hi], rank=self.cfg.dedup.rank, seed=self.cfg.run.seed, cluster_id=cid,
                    block=self.cfg.dedup.block_size,
                )  # fmt: skip
                sims[lo:hi] = s_
                has = nn >= 0
                nn_ids[lo:hi][has] = ids[lo:hi][nn[has]]
                pairs += (hi - lo) * (hi - lo - 1) // 2
            stats.count("pairs", pairs)
            stats.count("clusters", len(bounds) + 1)
            out.write(
                pa.table(
                    {
                        "stem": t.column("stem"),
                        "pos": t.column("pos"),
                        "dup_max_sim": pa.array(sims, pa.float32(), mask=np.isnan(sims)),
                        "dup_nn_id": pa.array(nn_ids.tolist(), pa.string()),
                    }
                )
            )
            stats.input += len(t)
            stats.kept += len(t)


# -- quality scoring ------------------------------------------------------------------------------------------------


def build_rater(cfg: WinnowConfig, embedder: Embedder | None = None):
    """The rater of ``score.backend`` (constructed cheaply; ``setup()`` loads models)."""
    backend = cfg.score.backend
    if backend == "heuristic":
        from winnow.scorers.heuristic import HeuristicRater

        return HeuristicRater(embed=cfg.embed, embedder=embedder, domain=cfg.score.domain)
    if backend == "llm":
        from winnow.scorers.llm import LLMRater

        return LLMRater(cfg.score.llm)
    if backend == "student":
        from winnow.scorers.student import StudentRater

        return StudentRater(cfg.score.student, embed_model=model_label(cfg.embed.model))
    raise CurationError(f"score.backend={backend!r} has no rater")


class ScoreStage(ShardStage):
    """Rates every valid document on the DataMan criteria; writes ``quality/<stem>.parquet`` (row-aligned: id,
    the quality columns, ``n_words`` and ``source``). The heuristic backend reuses the stored embeddings for the
    domain; the llm backend caches answers in ``quality/<stem>.llm-cache.jsonl`` so a killed shard resumes."""

    name = "score"
    config_keys = ["io", "embed", "score"]

    def units(self) -> list[str]:
        return [] if self.cfg.score.backend == "none" else super().units()

    def setup(self) -> None:
        score = self.cfg.score
        heuristic_embeds = score.backend == "heuristic" and score.domain != "keywords"
        self.uses_embeddings = score.backend == "student" or heuristic_embeds
        if self.uses_embeddings:
            self.require(EmbedStage)
        self.embedder = Embedder(self.cfg.embed, torch_threads=_torch_threads(self.cfg))
        self.rater = build_rater(self.cfg, self.embedder)
        self.rater.setup()

    def teardown(self) -> None:
        self.rater.teardown()

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        from winnow.scorers.base import QUALITY_SCHEMA

        id_f, src_f = self.cfg.io.id_field, self.cfg.io.source_field
        vecs = None
        if self.uses_embeddings:
            vecs = arrow_to_vectors(read_parquet(self.run_dir, f"embeddings/{shard.stem}.parquet").column("embedding"))
        schema = pa.schema([(id_f, pa.string()), *QUALITY_SCHEMA, ("n_words", pa.int32()), ("source", pa.string())])
        before = dict(getattr(self.rater, "stats", {}) or {})
        offset = 0
        with (
            self.writer(f"quality/{shard.stem}.parquet", schema) as out,
            RejectSink(self.run_dir, shard, provenance(self.cfg, "read")) as rej,
        ):
            for batch in self.read(shard, stats, rej):
                n = batch.table.num_rows
                if n == 0:
                    continue
                texts = batch.table.column(self.cfg.io.text_field).to_pylist()
                ids = batch.table.column(id_f)
                emb = vecs[offset : offset + n] if vecs is not None else None
                if emb is not None and len(emb) != n:
                    raise CurationError(f"embeddings/{shard.stem}.parquet does not match the shard: rerun embed")
                if self.cfg.score.backend == "llm":
                    cache = self.run_dir.url_of("quality", f"{shard.stem}.llm-cache.jsonl")
                    self.run_dir.fs.makedirs(self.run_dir._p("quality"), exist_ok=True)
                    rated = self.rater.rate_cached(ids.to_pylist(), texts, cache)
                else:
                    rated = self.rater.rate(texts, emb)
                words = pa.array([len(t.split()) for t in texts], pa.int32())
                if src_f in batch.table.column_names:
                    source = pc.cast(batch.table.column(src_f), pa.string())
                else:
                    source = pa.nulls(n, pa.string())
                out.write(pa.table([ids, *rated.columns, words, source], schema=schema))
                offset += n
                stats.kept += n
        after = dict(getattr(self.rater, "stats", {}) or {})
        for key, value in after.items():
            if isinstance(value, (int, float)) and value - before.get(key, 0):
                stats.count(key, value - before.get(key, 0))


# -- pruning and writing ---------------------------------------------------------------------------------------------

_PRUNE_KEYS = ["io", "embed", "cluster", "dedup", "score", "prune", "run.seed"]


class PruneStage(Stage):
    """Turns the stored scores into keep decisions for ``prune.strategy`` and its target.

    Writes ``decisions/<stem>.parquet`` (row-aligned with the shard's valid rows: id, cluster_id,
    dist_to_centroid, dup_max_sim, dup_of, keep, drop_reason), ``cluster_stats.parquet`` and ``prune.json``.
    Cheap: changing the strategy or the target reruns only this stage and ``write``.
    """

    name = "prune"
    config_keys = _PRUNE_KEYS
    uses_shard_list = True

    def process_unit(self, unit: str, stats: ShardStats) -> None:
        from winnow.pipeline import prune as P

        strategy = self.cfg.prune.strategy
        self.require(EmbedStage)
        have_clusters = all(self.run_dir.exists(f"assignments/{s.stem}.parquet") for s in self.shards)
        if strategy in P.NEEDS_CLUSTERS or have_clusters:
            if strategy in P.NEEDS_CLUSTERS:
                self.require(AssignStage)
            have_clusters = self._complete(AssignStage)
        have_dedup = False
        if strategy in P.NEEDS_DEDUP:
            self.require(DedupStage)
            have_dedup = True
        elif have_clusters:
            have_dedup = self._complete(DedupStage)
        have_quality = False
        if strategy in P.NEEDS_QUALITY:
            self.require(ScoreStage)
            have_quality = True
        elif self.cfg.score.backend != "none":
            have_quality = self._complete(ScoreStage)
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
        P.write_outputs(self, frame, result)

    def _complete(self, stage: type[Stage]) -> bool:
        try:
            self.require(stage)
            return True
        except CurationError:
            return False


class WriteStage(ShardStage):
    """Writes ``curated/<stem>.parquet``: every valid input row, its columns unchanged, plus the score columns and
    ``keep``/``drop_reason`` from the prune stage (when it ran for the current config; else every row is kept)."""

    name = "write"
    config_keys = _PRUNE_KEYS
    uses_shard_list = True

    def setup(self) -> None:
        self.decided = self.run_dir.is_complete("prune", "all", PruneStage.fingerprint_for(self.cfg, self.shards))
        if self.decided:
            self.require(PruneStage)
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


#: stages in the order ``winnow run`` executes them
STAGES: dict[str, type[Stage]] = {
    "embed": EmbedStage,
    "fit": FitStage,
    "assign": AssignStage,
    "dedup": DedupStage,
    "score": ScoreStage,
    "prune": PruneStage,
    "write": WriteStage,
}
