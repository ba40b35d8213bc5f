"""The embed stage: every valid document of a shard to an L2-normalised vector under ``embeddings/``."""

from __future__ import annotations

import os
import time
from typing import Any

import pyarrow as pa
from winnow.core.io import Shard
from winnow.core.layout import vectors_to_arrow
from winnow.core.stats import ShardStats
from winnow.embedding.embed import Embedder
from winnow.pipeline.config import WinnowConfig
from winnow.pipeline.stages.base import RejectSink, ShardStage, provenance, register_stage


def _torch_threads(cfg: WinnowConfig) -> int:
    if cfg.executor.torch_threads:
        return cfg.executor.torch_threads
    return max(1, (os.cpu_count() or 1) // cfg.executor.workers)


@register_stage(order=100)
class EmbedStage(ShardStage):
    """Embeds every valid document; writes ``embeddings/<stem>.parquet`` with ``id`` and ``embedding``
    (row i = the shard's i-th valid record)."""

    name = "embed"
    needs = ()
    writes = ("embeddings/<stem>.parquet", "rejects/<stem>.parquet")
    config_keys = ["io", "embed"]

    @classmethod
    def wants_gpu(cls, cfg: WinnowConfig) -> bool:
        return cfg.embed.device != "cpu"

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
