"""The dedup stage: SemDeDup within every cluster, one cluster bucket per unit, one cluster at a time.

A unit reads its bucket's files (``buckets/<bucket>/<stem>.parquet``, one per shard, written by assign sorted by
cluster with row groups that each hold one cluster) one cluster at a time: for each cluster, in ascending id, the
cluster's row groups of every file, files in stem order. Each file is thus read front to back, and the unit holds
the vectors of one cluster, not of its bucket. A file written before this layout (not sorted by cluster, or without
row-group statistics) is read whole and sorted in memory instead.

The output is partitioned the way the decisions are made, by shard: ``dedup/<bucket>/<stem>.parquet`` holds the
bucket's rows of one input shard, by position (stem, pos, dup_max_sim, dup_nn_id), and every shard of the manifest
gets one in every bucket, empty where it has no rows there. A ``decide`` unit then reads its own shard's rows, one
small file per bucket, instead of decoding every row of the corpus (the classic shuffle: buckets × shards files,
the layout of ``buckets/`` too). The unit holds its bucket's output rows (about 30 bytes per document plus the
nearest id) until the end, to write them per shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from loguru import logger

from winnow.clustering.semdedup import resolve_backend, semdedup_cluster
from winnow.core.layout import (
    arrow_to_vectors,
    bucket_name,
    dedup_file,
    parquet_metadata,
    read_parquet,
    read_row_groups,
)
from winnow.core.rundir import RunDir
from winnow.core.stats import ShardStats
from winnow.pipeline.config import DedupSection, WinnowConfig
from winnow.pipeline.stages.base import Stage, register_stage
from winnow.pipeline.stages.cluster import _ASSIGN_KEYS

DEDUP_SCHEMA = pa.schema(
    [("stem", pa.string()), ("pos", pa.int64()), ("dup_max_sim", pa.float32()), ("dup_nn_id", pa.string())]
)
#: below this many pairs a cluster never dominates anything worth a warning (some tens of milliseconds)
MIN_WARN_PAIRS = 10**7
#: pairs per second of the numpy backend on one core of a 2-core Xeon (bench/RESULTS.md, "SemDeDup backends"):
#: only for the estimate in the warning
PAIRS_PER_SECOND = 2e8


def pairs_of(n: int) -> int:
    return n * (n - 1) // 2


def dominant_clusters(sizes: dict[int, int], dc: DedupSection) -> list[str]:
    """One message per cluster of a bucket whose pairwise pass dominates (``dedup.warn_cluster_pairs``,
    ``dedup.warn_pair_share``): its id, size, pairs, share of the bucket's pairs, estimated seconds, what to do."""
    total = sum(pairs_of(n) for n in sizes.values())
    msgs = []
    for cid, n in sorted(sizes.items()):
        pairs = pairs_of(n)
        share = pairs / total if total else 0.0
        big = pairs >= dc.warn_cluster_pairs
        dominant = len(sizes) > 1 and pairs >= MIN_WARN_PAIRS and share >= dc.warn_pair_share
        if big or dominant:
            others = (sum(sizes.values()) - n) / (len(sizes) - 1) if len(sizes) > 1 else 0.0
            msgs.append(
                f"cluster {cid} has {n:,} members: {pairs:,} pairs ({pairs:.2e}), {share:.0%} of its bucket's pairs "
                f"and time (the bucket's {len(sizes) - 1} other clusters average {others:,.0f} members), about "
                f"{pairs / PAIRS_PER_SECOND:,.0f} s on one CPU core and {n * 4 / 2**20:.0f} MiB per vector "
                f"dimension; raise cluster.k (or look for a flood of near-copies) so that no cluster dominates"
            )
    return msgs


@dataclass
class _BucketFile:
    """One shard's rows of a bucket, handed out one cluster at a time in ascending cluster id.

    A cluster-sorted file (assign's layout) is read row group by row group as its clusters are asked for: a group
    is read once, when its first cluster is, and dropped when a later cluster no longer needs it, so the file holds
    at most the groups that the current cluster spans. A file of the older layout (not sorted by cluster) is read
    whole and sorted in memory."""

    rel: str
    stem: str
    metadata: pq.FileMetaData
    labels: np.ndarray  #: cluster_id per row, ascending
    starts: np.ndarray  #: first row of each row group, and the row count at the end
    sizes: dict[int, int]
    table: pa.Table | None = None  #: the whole file (older layout), sorted by (cluster_id, pos)
    cache: dict[int, pa.Table] = field(default_factory=dict)

    @classmethod
    def open(cls, run: RunDir, rel: str, stem: str) -> _BucketFile:
        meta = parquet_metadata(run, rel)
        labels = read_row_groups(run, rel, None, ["cluster_id"]).column(0).to_numpy()
        starts = np.r_[0, np.cumsum([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])]
        table = None
        if (np.diff(labels) < 0).any():  # the older layout: rows by position, clusters interleaved
            table = read_parquet(run, rel)
            order = np.lexsort((table.column("pos").to_numpy(), labels))
            table, labels = table.take(pa.array(order)), labels[order]
        ids, counts = np.unique(labels, return_counts=True)
        return cls(rel, stem, meta, labels, starts, dict(zip(ids.tolist(), counts.tolist(), strict=True)), table)

    def read(self, run: RunDir, cid: int) -> pa.Table:
        """The rows of cluster ``cid`` by position; a later call must ask for a larger id."""
        lo, hi = np.searchsorted(self.labels, cid), np.searchsorted(self.labels, cid, side="right")
        if self.table is not None:
            return self.table.slice(lo, hi - lo)
        g0, g1 = (int(np.searchsorted(self.starts, r, side="right")) - 1 for r in (lo, hi - 1))
        missing = [g for g in range(g0, g1 + 1) if g not in self.cache]
        if missing:
            t = read_row_groups(run, self.rel, missing, metadata=self.metadata)
            for g in missing:
                self.cache[g] = t.slice(self.starts[g] - self.starts[missing[0]], self.starts[g + 1] - self.starts[g])
        parts = [self.cache[g] for g in range(g0, g1 + 1)]
        for g in [g for g in self.cache if g < g1 or (g == g1 and hi == self.starts[g1 + 1])]:
            del self.cache[g]  # no later cluster has rows there
        t = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        return t.slice(lo - self.starts[g0], hi - lo)


@register_stage(order=400)
class DedupStage(Stage):
    """SemDeDup per cluster bucket: ``dedup/<bucket>.parquet`` with, per document, the max similarity to a
    higher-ranked member of its cluster (``dup_max_sim``, null for the top-ranked) and that member's id.

    A unit holds one cluster's vectors at a time (the module docstring), so its memory is bounded by the largest
    cluster, not by the bucket; a cluster whose pairwise pass dominates is logged with its numbers.

    ``dedup.backend`` / ``device`` / ``dtype`` choose where the similarities are computed; every choice writes the
    same bits, so they are not among the ``config_keys`` (switching reuses the outputs)."""

    name = "dedup"
    needs = ("assign",)
    writes = ("dedup/<bucket>/<stem>.parquet",)
    config_keys = [*_ASSIGN_KEYS, "dedup.rank"]
    uses_shard_list = True

    def units(self) -> list[str]:
        return [bucket_name(b) for b in range(self.cfg.cluster.n_buckets)]

    def outputs(self, unit: str) -> list[str]:
        return [dedup_file(unit, s.stem) for s in self.shards]

    @classmethod
    def wants_gpu(cls, cfg: WinnowConfig) -> bool:
        """The torch backend (or ``auto``) on a device that is not the CPU."""
        return cfg.dedup.backend != "numpy" and cfg.dedup.device != "cpu"

    def setup(self) -> None:
        self.require("assign")
        self.backend, self.device = resolve_backend(self.cfg.dedup.backend, self.cfg.dedup.device)
        logger.info(f"dedup: SemDeDup with the {self.backend} backend on {self.device}")

    def bucket_files(self, unit: str) -> list[_BucketFile]:
        """The bucket's files of the manifest's shards, in stem order (the output's order within a cluster)."""
        stems = {s.stem for s in self.shards}
        found = [f[:-8] for f in self.run_dir.listdir(f"buckets/{unit}") if f.endswith(".parquet")]
        return [_BucketFile.open(self.run_dir, f"buckets/{unit}/{s}.parquet", s) for s in sorted(found) if s in stems]

    def process_unit(self, unit: str, stats: ShardStats) -> None:
        files = self.bucket_files(unit)
        sizes: dict[int, int] = {}
        for f in files:
            for cid, n in f.sizes.items():
                sizes[cid] = sizes.get(cid, 0) + n
        for msg in dominant_clusters(sizes, self.cfg.dedup):
            logger.warning(f"dedup bucket {unit}: {msg}")
        per_stem: dict[str, list[pa.Table]] = {s.stem: [] for s in self.shards}
        for cid in sorted(sizes):
            have = [f for f in files if cid in f.sizes]
            parts = [f.read(self.run_dir, cid) for f in have]
            out, at = self.dedup_cluster(cid, parts), 0
            for f, part in zip(have, parts, strict=True):
                per_stem[f.stem].append(out.slice(at, part.num_rows))
                at += part.num_rows
        for stem, tables in per_stem.items():
            t = pa.concat_tables(tables) if tables else DEDUP_SCHEMA.empty_table()
            with self.writer(dedup_file(unit, stem), DEDUP_SCHEMA) as w:
                w.write(t.sort_by("pos"))
        if sizes:
            stats.count("pairs", sum(pairs_of(n) for n in sizes.values()))
            stats.count("clusters", len(sizes))
            stats.input += sum(sizes.values())
            stats.kept += sum(sizes.values())

    def dedup_cluster(self, cid: int, parts: list[pa.Table]) -> pa.Table:
        """SemDeDup of one cluster's rows (``parts``: one table per shard, in stem order, rows by position)."""
        t = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        dc = self.cfg.dedup
        sims, nn = semdedup_cluster(
            arrow_to_vectors(t.column("embedding")), t.column("dist_to_centroid").to_numpy(), rank=dc.rank,
            seed=self.cfg.run.seed, cluster_id=cid, block=dc.block_size, backend=self.backend, device=self.device,
            dtype=dc.dtype,
        )  # fmt: skip
        ids = np.asarray(t.column(self.cfg.io.id_field).to_pylist(), dtype=object)
        nn_ids = np.full(len(ids), None, dtype=object)
        has = nn >= 0
        nn_ids[has] = ids[nn[has]]
        return pa.table(
            {
                "stem": t.column("stem"),
                "pos": t.column("pos"),
                "dup_max_sim": pa.array(sims, pa.float32(), mask=np.isnan(sims)),
                "dup_nn_id": pa.array(nn_ids.tolist(), pa.string()),
            }
        )
