"""The clustering stages: ``fit`` (spherical k-means on a sample) and ``assign`` (every vector to a centroid)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pyarrow as pa
from loguru import logger

from winnow.clustering.kmeans import MIN_POINTS_PER_CENTROID, SphericalKMeans, assign, points_per_centroid
from winnow.core.io import Shard, VectorWriter
from winnow.core.layout import (
    arrow_to_vectors,
    bucket_name,
    parquet_metadata,
    read_parquet,
    read_row_groups,
    vectors_to_arrow,
)
from winnow.core.stats import ShardStats
from winnow.pipeline.config import WinnowConfig
from winnow.pipeline.stages.base import ShardStage, Stage, register_stage

_CLUSTER_KEYS = ["io", "embed", "cluster", "run.seed"]
#: assign also writes SemDeDup's copy of the vectors, in ``dedup.bucket_dtype``
_ASSIGN_KEYS = [*_CLUSTER_KEYS, "dedup.bucket_dtype", "dedup.read_buffer_mib"]


def fit_hashes(ids: list[str], seed: int) -> np.ndarray:
    """A 64-bit hash of (seed, id) per id: the k-means sample is chosen by it, independent of shards and order."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest(), "little") for i in ids],
        dtype=np.uint64,
    )


@register_stage(order=200)
class FitStage(Stage):
    """Fits spherical k-means on a sample of the embeddings; writes ``centroids.npy`` and ``kmeans.json``."""

    name = "fit"
    needs = ("embed",)
    writes = ("centroids.npy", "kmeans.json")
    config_keys = _CLUSTER_KEYS
    uses_shard_list = True

    @classmethod
    def wants_gpu(cls, cfg: WinnowConfig) -> bool:
        return cfg.cluster.device != "cpu"

    def process_unit(self, unit: str, stats: ShardStats) -> None:
        self.require("embed")
        cc = self.cfg.cluster
        seed = self.cfg.cluster_seed
        dim = self.vector_dim()
        budget = None if cc.fit_max_mib is None else cc.fit_max_mib * 2**20
        per_centroid = cc.max_points_per_centroid if dim is None else points_per_centroid(
            cc.k, dim, cc.max_points_per_centroid, budget
        )  # fmt: skip
        logger.info(
            f"fit: {per_centroid} points per centroid (cluster.max_points_per_centroid={cc.max_points_per_centroid}, "
            f"cluster.fit_max_mib={cc.fit_max_mib}, k={cc.k}, dim={dim})"
        )
        chosen = self.choose_sample(cc.k * per_centroid, seed, stats)
        need = len(chosen) * (dim or 0) * 4
        if budget is not None and need > budget:
            logger.warning(
                f"fit: the k-means sample needs {need / 2**20:,.1f} MiB, more than cluster.fit_max_mib="
                f"{cc.fit_max_mib}, even at {per_centroid} points per centroid (FAISS's minimum is "
                f"{MIN_POINTS_PER_CENTROID}): lower cluster.k or raise cluster.fit_max_mib"
            )
        x = self.read_sample(chosen, dim or 1)
        km = SphericalKMeans(
            cc.k, niter=cc.niter, seed=seed, max_points_per_centroid=per_centroid,
            backend=cc.backend, device=cc.device, nredo=cc.nredo,
        )  # fmt: skip
        result = km.fit(x, overwrite_input=True)  # x is this stage's own array: normalised in place, no copy
        stats.count("fit_train_points", result.n_train)
        stats.count("fit_points_per_centroid", per_centroid)
        buf = io.BytesIO()
        np.save(buf, result.centroids)
        self.run_dir.write_bytes("centroids.npy", buf.getvalue())
        info = {
            "k": cc.k, "niter": cc.niter, "nredo": cc.nredo, "seed": seed,
            "backend": result.backend, "device": result.device,
            "n_documents": stats.input, "n_sample": int(len(x)), "n_train": result.n_train,
            "max_points_per_centroid": cc.max_points_per_centroid, "points_per_centroid": per_centroid,
            "fit_max_mib": cc.fit_max_mib, "objective": result.objective, "seconds": result.seconds,
        }  # fmt: skip
        self.run_dir.write_text("kmeans.json", json.dumps(info, indent=2))
        logger.info(
            f"fit: k={cc.k} on {result.n_train} of {stats.input} documents ({result.backend}/{result.device}), "
            f"objective {result.objective[0] if result.objective else float('nan'):.2f} -> "
            f"{result.objective[-1] if result.objective else float('nan'):.2f} in {result.seconds:.2f}s"
        )

    def vector_dim(self) -> int | None:
        """The embeddings' dimension, from the first shard's parquet schema (``None`` without shards)."""
        if not self.shards:
            return None
        meta = parquet_metadata(self.run_dir, f"embeddings/{self.shards[0].stem}.parquet")
        return meta.schema.to_arrow_schema().field("embedding").type.list_size

    def choose_sample(self, cap: int, seed: int, stats: ShardStats) -> np.ndarray:
        """Pass 1, ids only: ``[(shard, row)]``, sorted, of the sample (hash of (seed, id) below ``fit_fraction``)
        or of its ``cap`` smallest hashes, the points k-means trains on. Candidates are cut back to the ``cap``
        smallest whenever they pass ``2 × cap``, so memory is bounded by the cap, not by the corpus."""
        fraction = self.cfg.cluster.fit_fraction
        keep: list[np.ndarray] = []  # per shard: (hash, shard, row) as three uint64 columns
        held = n_sample = 0
        for i, shard in enumerate(self.shards):
            ids = read_parquet(self.run_dir, f"embeddings/{shard.stem}.parquet", [self.cfg.io.id_field])
            h = fit_hashes(ids.column(0).to_pylist(), seed)
            stats.input += len(h)
            stats.kept += len(h)
            member = np.arange(len(h)) if fraction >= 1.0 else np.nonzero(h / 2.0**64 < fraction)[0]
            keep.append(np.stack([h[member], np.full(len(member), i, np.uint64), member.astype(np.uint64)], axis=1))
            held += len(member)
            n_sample += len(member)
            if held > 2 * cap:
                keep = [_smallest(np.concatenate(keep), cap)]
                held = cap
        stats.count("fit_sample", n_sample)
        picked = _smallest(np.concatenate(keep), cap) if keep else np.zeros((0, 3), np.uint64)
        picked = picked[np.lexsort((picked[:, 2], picked[:, 1]))]  # by shard, then row
        return picked[:, 1:].astype(np.int64)

    def read_sample(self, chosen: np.ndarray, dim: int) -> np.ndarray:
        """Pass 2: the ``chosen`` vectors (``[(shard, row)]`` sorted) into one float32 array, a row group at a time
        (only the groups holding chosen rows), so besides the sample there is one row group in memory."""
        x = np.empty((len(chosen), dim), np.float32)
        bounds = np.searchsorted(chosen[:, 0], np.arange(len(self.shards) + 1))  # chosen is sorted by shard
        pool = pa.default_memory_pool()
        for i, shard in enumerate(self.shards):
            take = chosen[bounds[i] : bounds[i + 1], 1]
            if not len(take):
                continue
            rel = f"embeddings/{shard.stem}.parquet"
            meta = parquet_metadata(self.run_dir, rel)
            starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
            cuts = np.searchsorted(take, starts)  # take[cuts[g] : cuts[g + 1]] lie in row group g
            for g in np.flatnonzero(np.diff(cuts)):
                column = read_row_groups(self.run_dir, rel, [int(g)], ["embedding"], meta).column(0)
                lo, hi = bounds[i] + cuts[g], bounds[i] + cuts[g + 1]
                x[lo:hi] = arrow_to_vectors(column)[take[cuts[g] : cuts[g + 1]] - starts[g]]
                del column
            pool.release_unused()  # the arrow pool keeps freed buffers otherwise
        return x


def _smallest(rows: np.ndarray, cap: int) -> np.ndarray:
    """The ``cap`` rows of ``rows`` (hash, ...) with the smallest hashes (all of them when there are fewer)."""
    if len(rows) <= cap:
        return rows
    return rows[np.argpartition(rows[:, 0], cap - 1)[:cap]]


def pack_clusters(starts: np.ndarray, ends: np.ndarray, min_rows: int) -> list[tuple[int, int]]:
    """Row ranges of consecutive whole clusters (``starts[i]:ends[i]``, adjacent), each closed once it holds
    ``min_rows`` rows; the last holds what is left."""
    groups, first, rows = [], 0, 0
    for i in range(len(starts)):
        rows += int(ends[i] - starts[i])
        if rows >= min_rows or i == len(starts) - 1:
            groups.append((int(starts[first]), int(ends[i])))
            first, rows = i + 1, 0
    return groups


ASSIGN_SCHEMA_FIELDS = [("cluster_id", pa.int32()), ("dist_to_centroid", pa.float32())]
#: the value type of the bucket copy's vectors per ``dedup.bucket_dtype``
BUCKET_VALUE_TYPES = {"float32": pa.float32(), "float16": pa.float16()}


@register_stage(order=300)
class AssignStage(ShardStage):
    """Assigns every document to its nearest centroid.

    Writes ``assignments/<stem>.parquet`` (id, cluster_id, dist_to_centroid; row-aligned with the embeddings)
    and, for SemDeDup, ``buckets/<bucket>/<stem>.parquet`` (stem, pos, id, cluster_id, dist_to_centroid,
    embedding) with ``bucket = cluster_id % cluster.n_buckets``. A bucket file is sorted by (cluster_id, pos), and
    a row group ends only where a cluster does, once it holds ``group_rows`` rows (``dedup.read_buffer_mib``
    shared among the shards), so the dedup stage reads each file front to back, one cluster at a time, holding at
    most one row group per file. Its vectors are ``dedup.bucket_dtype``.
    """

    name = "assign"
    needs = ("fit",)
    writes = ("assignments/<stem>.parquet", "buckets/<bucket>/<stem>.parquet")
    config_keys = _ASSIGN_KEYS
    uses_shard_list = True

    def setup(self) -> None:
        self.require("fit")
        self.centroids = np.load(io.BytesIO(self.run_dir.read_bytes("centroids.npy")))

    def vector_writer(self, rel: str) -> VectorWriter:
        """``writer`` for a file with vectors (``VectorWriter``)."""
        io_ = self.cfg.io
        return VectorWriter(
            self.run_dir.url_of(rel), None, self.provenance(), compression=io_.compression,
            row_group_size=io_.row_group_size, storage_options=io_.storage_options,
        )  # fmt: skip

    def group_rows(self, vector_type: pa.FixedSizeListType) -> int:
        """Rows after which a bucket file's row group may end (at a cluster's end): ``dedup.read_buffer_mib`` of
        vectors shared among the shards, since a dedup unit holds one row group of each shard's file; 1 (a row group
        per cluster) at 0."""
        row_bytes = vector_type.list_size * vector_type.value_type.byte_width
        return max(1, self.cfg.dedup.read_buffer_mib * 2**20 // (row_bytes * max(1, len(self.shards))))

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        cc = self.cfg.cluster
        id_f = self.cfg.io.id_field
        for b in range(cc.n_buckets):  # a rerun under new centroids must not leave rows in other buckets
            self.run_dir.remove(f"buckets/{bucket_name(b)}/{shard.stem}.parquet")
        table = read_parquet(self.run_dir, f"embeddings/{shard.stem}.parquet")
        ids = table.column(id_f)
        vecs = arrow_to_vectors(table.column("embedding"))
        del table  # the vectors are a copy when the file has several row groups
        labels, dist = assign(vecs, self.centroids, backend=cc.backend, device=cc.device)
        n = len(labels)
        out = pa.table(
            [ids, pa.array(labels, pa.int32()), pa.array(dist, pa.float32())],
            names=[id_f, "cluster_id", "dist_to_centroid"],
        )
        with self.writer(f"assignments/{shard.stem}.parquet") as w:
            w.write(out)
        stats.input += n
        stats.kept += n
        if n == 0:  # every row rejected or pre-filtered: no bucket file (dedup reads none for this shard)
            return
        buckets = labels % cc.n_buckets
        order = np.lexsort((labels, buckets))  # by bucket, cluster, then position (a stable sort)
        sorted_labels = labels[order]
        value_type = BUCKET_VALUE_TYPES[self.cfg.dedup.bucket_dtype]
        starts = np.flatnonzero(np.r_[True, np.diff(sorted_labels) != 0])  # each cluster's first row
        ends = np.r_[starts[1:], n]
        cluster_bucket = sorted_labels[starts] % cc.n_buckets
        min_rows = self.group_rows(pa.list_(value_type, vecs.shape[1]))
        for b in np.unique(cluster_bucket):
            mine = cluster_bucket == b
            b_lo, b_hi = int(starts[mine][0]), int(ends[mine][-1])  # a bucket's rows are contiguous in `order`
            rows = order[b_lo:b_hi]  # one bucket's rows at a time: a shard's vectors are copied once per bucket
            part = pa.table(
                {
                    "stem": pa.array([shard.stem] * len(rows), pa.string()),
                    "pos": pa.array(rows.astype(np.int64)),
                    id_f: ids.take(pa.array(rows)),
                    "cluster_id": pa.array(sorted_labels[b_lo:b_hi], pa.int32()),
                    "dist_to_centroid": pa.array(dist[rows], pa.float32()),
                    "embedding": vectors_to_arrow(vecs[rows], value_type),
                }
            )
            with self.vector_writer(f"buckets/{bucket_name(int(b))}/{shard.stem}.parquet") as w:
                for lo, hi in pack_clusters(starts[mine], ends[mine], min_rows):
                    w.write(part.slice(lo - b_lo, hi - lo))  # one write: one row group (more past row_group_size)
