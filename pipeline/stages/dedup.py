"""The dedup stage: SemDeDup within every cluster, one cluster bucket per unit."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from loguru import logger

from winnow.clustering.semdedup import resolve_backend, semdedup_cluster
from winnow.core.layout import arrow_to_vectors, bucket_name, read_parquet
from winnow.core.stats import ShardStats
from winnow.pipeline.config import WinnowConfig
from winnow.pipeline.stages.base import Stage, register_stage
from winnow.pipeline.stages.cluster import _CLUSTER_KEYS

DEDUP_SCHEMA = pa.schema(
    [("stem", pa.string()), ("pos", pa.int64()), ("dup_max_sim", pa.float32()), ("dup_nn_id", pa.string())]
)


@register_stage(order=400)
class DedupStage(Stage):
    """SemDeDup per cluster bucket: ``dedup/<bucket>.parquet`` with, per document, the max similarity to a
    higher-ranked member of its cluster (``dup_max_sim``, null for the top-ranked) and that member's id.

    ``dedup.backend`` / ``device`` / ``dtype`` choose where the similarities are computed; every choice writes the
    same bits, so they are not among the ``config_keys`` (switching reuses the outputs)."""

    name = "dedup"
    needs = ("assign",)
    writes = ("dedup/<bucket>.parquet",)
    config_keys = [*_CLUSTER_KEYS, "dedup.rank"]
    uses_shard_list = True

    def units(self) -> list[str]:
        return [bucket_name(b) for b in range(self.cfg.cluster.n_buckets)]

    def outputs(self, unit: str) -> list[str]:
        return [f"dedup/{unit}.parquet"]

    @classmethod
    def wants_gpu(cls, cfg: WinnowConfig) -> bool:
        """The torch backend (or ``auto``) on a device that is not the CPU."""
        return cfg.dedup.backend != "numpy" and cfg.dedup.device != "cpu"

    def setup(self) -> None:
        self.require("assign")
        self.backend, self.device = resolve_backend(self.cfg.dedup.backend, self.cfg.dedup.device)
        logger.info(f"dedup: SemDeDup with the {self.backend} backend on {self.device}")

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
            dc = self.cfg.dedup
            for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(t)], strict=True):
                cid = int(labels[lo])
                s_, nn = semdedup_cluster(
                    vecs[lo:hi], dist[lo:hi], rank=dc.rank, seed=self.cfg.run.seed, cluster_id=cid,
                    block=dc.block_size, backend=self.backend, device=self.device, dtype=dc.dtype,
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
