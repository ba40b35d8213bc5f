"""The score stage: DataMan-style quality ratings and a domain per document, by the configured rater backend."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from winnow.core.errors import CurationError
from winnow.core.io import Shard
from winnow.core.layout import arrow_to_vectors, read_parquet
from winnow.core.stats import ShardStats
from winnow.embedding.embed import Embedder
from winnow.pipeline.config import WinnowConfig
from winnow.pipeline.stages.base import RejectSink, ShardStage, provenance, register_stage, require_prefilter
from winnow.pipeline.stages.embed import _torch_threads
from winnow.scorers.backends import RATERS
from winnow.scorers.base import QUALITY_SCHEMA


def build_rater(cfg: WinnowConfig, embedder: Embedder | None = None):
    """The rater of ``score.backend`` (constructed cheaply; ``setup()`` loads models)."""
    backend = cfg.score.backend
    if backend == "none":
        raise CurationError(f"score.backend={backend!r} has no rater")
    return RATERS[backend].obj.from_config(cfg.score, cfg.embed, embedder)


@register_stage(order=500)
class ScoreStage(ShardStage):
    """Rates every valid document on the DataMan criteria; writes ``quality/<stem>.parquet`` (row-aligned: id,
    the quality columns, ``n_words`` and ``source``). The heuristic backend reuses the stored embeddings for the
    domain; the llm backend caches answers in ``quality/<stem>.llm-cache.jsonl`` so a killed shard resumes."""

    name = "score"
    needs = ()
    writes = ("quality/<stem>.parquet", "quality/<stem>.llm-cache.jsonl")
    optional_writes = ("quality/<stem>.llm-cache.jsonl",)  # llm backend only
    config_keys = ["io", "embed", "score"]

    @classmethod
    def wants_gpu(cls, cfg: WinnowConfig) -> bool:
        # the model-based raters (a local chat LM, the student) run on the embed device; the heuristic rater is CPU
        backend = cfg.score.backend
        return backend != "none" and bool(RATERS[backend].meta["gpu"]) and cfg.embed.device != "cpu"

    def units(self) -> list[str]:
        return [] if self.cfg.score.backend == "none" else super().units()

    def setup(self) -> None:
        require_prefilter(self)
        score = self.cfg.score
        self.uses_embeddings = score.backend != "none" and RATERS[score.backend].obj.uses_embeddings(score)
        if self.uses_embeddings:
            self.require("embed")
        self.embedder = Embedder(self.cfg.embed, torch_threads=_torch_threads(self.cfg))
        self.rater = build_rater(self.cfg, self.embedder)
        self.rater.setup()

    def teardown(self) -> None:
        self.rater.teardown()

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:

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
            for batch in self.read(shard, stats, rej, survivors=True):
                n = batch.table.num_rows
                if n == 0:
                    continue
                texts = batch.table.column(self.cfg.io.text_field).to_pylist()
                ids = batch.table.column(id_f)
                emb = vecs[offset : offset + n] if vecs is not None else None
                if emb is not None and len(emb) != n:
                    raise CurationError(f"embeddings/{shard.stem}.parquet does not match the shard: rerun embed")
                if hasattr(self.rater, "rate_cached"):  # raters that resume from a per-shard answer cache (llm)
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
