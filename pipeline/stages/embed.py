"""The embed stage: every valid document of a shard to an L2-normalised vector under ``embeddings/``.

With ``embed.source`` no model is loaded: the vectors of shard ``<stem>`` are read from ``<source>/<stem>.parquet``
(another run's ``embeddings/`` works as is), row by row alongside the shard's valid rows, and checked: the same
number of rows, the same ids in the same order, one dimension (the same in every file), finite values and a
non-zero norm. Every failure names the file, the row and the problem.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from winnow.core.errors import CurationError
from winnow.core.io import ReadBatch, Shard, join_path
from winnow.core.layout import vectors_to_arrow
from winnow.core.stats import ShardStats
from winnow.embedding.embed import Embedder, model_label
from winnow.embedding.section import EXTERNAL
from winnow.pipeline.config import WinnowConfig
from winnow.pipeline.stages.base import (
    RejectSink,
    ShardStage,
    count_prefiltered,
    provenance,
    register_stage,
    require_prefilter,
)
from winnow.pipeline.stages.survivors import survivor_mask

#: the vector column of an embeddings file
EMBEDDING = "embedding"
#: value types accepted in a source file's vector column (converted to float32)
_FLOATS = (pa.float16(), pa.float32(), pa.float64())
#: a source vector whose norm is this close to 1 is unit-norm to float32 precision and is kept bit for bit (so
#: another run's vectors reproduce that run's results); the others are divided by their norm
_UNIT_TOLERANCE = 1e-5
#: rows of a source file decoded at a time (a read batch of the shard takes what it needs from them)
_SOURCE_BATCH = 4096


def _torch_threads(cfg: WinnowConfig) -> int:
    if cfg.executor.torch_threads:
        return cfg.executor.torch_threads
    return max(1, (os.cpu_count() or 1) // cfg.executor.workers)


@register_stage(order=100)
class EmbedStage(ShardStage):
    """Embeds every valid document (or takes its vector from ``embed.source``); writes
    ``embeddings/<stem>.parquet`` with ``id`` and ``embedding`` (row i = the shard's i-th valid record)."""

    name = "embed"
    needs = ()
    writes = ("embeddings/<stem>.parquet", "rejects/<stem>.parquet")
    config_keys = ["io", "embed"]

    @classmethod
    def wants_gpu(cls, cfg: WinnowConfig) -> bool:
        return cfg.embed.source is None and cfg.embed.device != "cpu"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.embedder: Embedder | None = None
        if self.cfg.embed.source is None:
            self.embedder = Embedder(self.cfg.embed, torch_threads=_torch_threads(self.cfg))
        #: ``winnow.model`` of the source file being copied (``embed.source``), recorded in the output's metadata
        self._source_model: str | None = None
        #: (dimension, file) of the first source file with vectors: every file must have the same dimension
        self._reference: tuple[int, str] | None = None

    def setup(self) -> None:
        require_prefilter(self)
        if self.embedder is not None:
            self.embedder.setup()

    def teardown(self) -> None:
        if self.embedder is not None:
            self.embedder.teardown()  # the model stays in the process's cache; tokenizer processes end

    def provenance(self) -> dict[str, str]:
        """Also records where and in which precision the vectors were computed (``embed.dtype=auto`` resolves
        per machine), or, with ``embed.source``, the source folder and the source file's own model label
        (``external`` when it records none)."""
        meta = {**super().provenance(), "winnow.model": model_label(self.cfg.embed)}
        if self.embedder is None:
            return {
                **meta,
                "winnow.embed_source": str(self.cfg.embed.source),
                "winnow.embed_source_model": self._source_model or EXTERNAL,
            }
        return {**meta, "winnow.embed_device": self.embedder.device, "winnow.embed_dtype": self.embedder.dtype}

    def schema(self, dimension: int | None = None) -> pa.Schema:
        """``id`` and ``embedding`` (fixed-size list of ``store_dtype``; the model's dimension unless given)."""
        value = pa.float16() if self.cfg.embed.store_dtype == "float16" else pa.float32()
        if dimension is None:
            assert self.embedder is not None
            dimension = self.embedder.dimension
        return pa.schema([(self.cfg.io.id_field, pa.string()), (EMBEDDING, pa.list_(value, dimension))])

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        if self.embedder is None:
            self._copy_source(shard, stats)
            return
        schema = self.schema()
        value_type = schema.field(EMBEDDING).type.value_type
        with (
            self.writer(f"embeddings/{shard.stem}.parquet", schema, vectors=True) as out,
            RejectSink(self.run_dir, shard, provenance(self.cfg, "read")) as rej,
        ):
            for batch in self.read(shard, stats, rej, survivors=True):
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

    # -- bring your own embeddings -------------------------------------------------------------------------------
    def _source_file(self, shard: Shard) -> SourceFile:
        return SourceFile(
            join_path(str(self.cfg.embed.source), f"{shard.stem}.parquet"),
            shard,
            self.cfg.io.id_field,
            self.cfg.io.storage_options,
        )

    def reference_dimension(self) -> tuple[int, str] | None:
        """``(dimension, file)`` of the first shard's source file that has one (cached): the dimension every
        source file must have, so that one shard's vectors are comparable with another's."""
        if self._reference is None:
            for shard in self.shards:
                try:
                    with self._source_file(shard) as src:
                        d = src.dimension()
                except CurationError:
                    continue  # that shard's own unit reports it
                if d is not None:
                    self._reference = (d, src.url)
                    break
        return self._reference

    def _copy_source(self, shard: Shard, stats: ShardStats) -> None:
        """Copy, check and normalise the shard's vectors from ``embed.source`` (the module doc)."""
        with self._source_file(shard) as src:
            d = src.dimension()
            ref = self.reference_dimension()
            if ref is not None and d is not None and d != ref[0]:
                raise CurationError(
                    f"embed.source: {src.url}: dimension {d}, but {ref[1]} has dimension {ref[0]}: every file needs "
                    "the same dimension"
                )
            d = d if d is not None else (ref[0] if ref is not None else 0)
            self._source_model = src.model
            schema = self.schema(d)
            value_type = schema.field(EMBEDDING).type.value_type
            with (
                self.writer(f"embeddings/{shard.stem}.parquet", schema, vectors=True) as out,
                RejectSink(self.run_dir, shard, provenance(self.cfg, "read")) as rej,
            ):
                # every valid row (the source file has one vector per valid row); pre-filtered rows are skipped below
                batches = self.read(shard, stats, rej)
                mask = survivor_mask(self.run_dir, self.cfg, shard.stem)
                seen = 0
                for batch in batches:
                    n = batch.table.num_rows
                    if n == 0:
                        continue
                    chunk = src.take(n)
                    if chunk.num_rows < n:  # the file ends early: a row missing before its end, or at its end
                        src.check_ids(chunk, batch)
                        valid = seen + n + sum(b.table.num_rows for b in batches)
                        raise src.count_error(valid)
                    vecs = src.vectors(chunk, batch, d)
                    ids = batch.table.column(self.cfg.io.id_field)
                    if mask is not None:
                        keep = mask[seen : seen + n]
                        vecs, ids = vecs[keep], ids.filter(pa.array(keep))
                        count_prefiltered(stats, keep)
                    seen += n
                    out.write(pa.table([ids, vectors_to_arrow(vecs, value_type)], schema=schema))
                    stats.kept += len(vecs)
                if src.left():
                    raise src.count_error(seen)


class SourceFile:
    """One shard's vectors in ``embed.source``, handed out batch by batch in the shard's order and checked.

    Args:
        url: ``<source>/<stem>.parquet``.
        shard: the shard it belongs to (named in messages).
        id_field: the id column (``io.id_field``).
        storage_options: fsspec options (``io.storage_options``).

    Raises:
        CurationError: the file is missing, not parquet, or lacks the id or a float-list ``embedding`` column.
    """

    def __init__(self, url: str, shard: Shard, id_field: str, storage_options: dict[str, Any] | None = None):
        self.url, self.shard, self.id_field = url, shard, id_field
        fs, path = url_to_fs(url, **(storage_options or {}))
        if not fs.exists(path):
            raise CurationError(
                f"embed.source: {url}: missing; embed.source needs one file per input shard, named like "
                f"embeddings/<stem>.parquet (this one for {shard.url})"
            )
        self._file = fs.open(path, "rb")
        try:
            self.pf = pq.ParquetFile(self._file)
        except (pa.ArrowInvalid, OSError) as e:
            self._file.close()
            raise CurationError(f"embed.source: {url}: not a readable parquet file ({type(e).__name__}: {e})") from e
        schema = self.pf.schema_arrow
        self._check_schema(schema)
        self.rows = self.pf.metadata.num_rows
        meta = schema.metadata or {}
        self.model = meta[b"winnow.model"].decode() if b"winnow.model" in meta else None
        self._batches = self.pf.iter_batches(batch_size=_SOURCE_BATCH, columns=[id_field, EMBEDDING])
        self._buf: list[pa.RecordBatch] = []
        self._buffered = 0
        self.pos = 0  # rows handed out so far

    def _check_schema(self, schema: pa.Schema) -> None:
        missing = [c for c in (self.id_field, EMBEDDING) if c not in schema.names]
        if missing:
            self._file.close()
            raise CurationError(
                f"embed.source: {self.url}: no {' and no '.join(map(repr, missing))} column (columns: "
                f"{', '.join(schema.names)}; the id column is io.id_field)"
            )
        typ = schema.field(EMBEDDING).type
        is_list = pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)
        if not is_list or typ.value_type not in _FLOATS:
            self._file.close()
            raise CurationError(
                f"embed.source: {self.url}: column 'embedding' is {typ}; expected a list (fixed-size or not) of "
                "float16, float32 or float64"
            )
        self.fixed = typ.list_size if pa.types.is_fixed_size_list(typ) else None

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._file.close()

    def _fill(self, n: int) -> None:
        while self._buffered < n:
            batch = next(self._batches, None)
            if batch is None:
                return
            self._buf.append(batch)
            self._buffered += batch.num_rows

    def dimension(self) -> int | None:
        """The file's dimension: its fixed list size, else the first row's length; ``None`` for an empty file."""
        if self.fixed is not None:
            return self.fixed
        self._fill(1)
        for batch in self._buf:
            if batch.num_rows:
                first = batch.column(EMBEDDING)[0]
                return len(first.values) if first.is_valid else None
        return None

    def take(self, n: int) -> pa.Table:
        """The next ``n`` rows (fewer at the end of the file)."""
        self._fill(n)
        if self._buf:
            table = pa.Table.from_batches(self._buf)
        else:
            table = self.pf.schema_arrow.empty_table().select([self.id_field, EMBEDDING])
        head, rest = table.slice(0, n), table.slice(n)
        self._buf, self._buffered = rest.to_batches(), rest.num_rows
        self.first = self.pos
        self.pos += head.num_rows
        return head

    def left(self) -> bool:
        """Whether rows remain after those handed out."""
        return self.pos < self.rows

    def count_error(self, valid: int) -> CurationError:
        return CurationError(
            f"embed.source: {self.url}: {self.rows} rows, but shard {self.shard.url} has {valid} valid rows: the file "
            "needs one row per valid row of its shard (rejected rows have none), in the shard's order"
        )

    def _fail(self, j: int, problem: str) -> CurationError:
        return CurationError(f"embed.source: {self.url}: row {self.first + j}: {problem}")

    def check_ids(self, chunk: pa.Table, batch: ReadBatch) -> None:
        """Raise unless the chunk's ids are the batch's first ids (derived ``<stem>:<row>`` ids included), in
        order."""
        have = pc.cast(chunk.column(self.id_field), pa.string())
        want = batch.table.column(self.id_field).slice(0, len(have))
        same = pc.fill_null(pc.equal(have, want), False)
        if pc.all(same).as_py():
            return
        j = int(np.flatnonzero(~same.to_numpy(zero_copy_only=False))[0])
        raise self._fail(
            j, f"id {have[j].as_py()!r}, but valid row {self.first + j} of shard {self.shard.url} (record "
            f"{int(batch.rows[j])}) has id {want[j].as_py()!r}: the rows must be the shard's valid rows, in order",
        )  # fmt: skip

    def vectors(self, chunk: pa.Table, batch: ReadBatch, d: int) -> np.ndarray:
        """The chunk's vectors, checked (ids, dimension ``d``, nulls, finite, non-zero) and L2-normalised,
        ``[n, d]`` float32."""
        self.check_ids(chunk, batch)
        col = chunk.column(EMBEDDING).combine_chunks()
        if col.null_count:
            raise self._fail(int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0]),
                             "embedding is null")  # fmt: skip
        if self.fixed is None:
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lengths != d)
            if len(bad):
                j = int(bad[0])
                raise self._fail(j, f"dimension {int(lengths[j])}, expected {d} (every row needs the same)")
        values = col.flatten()
        if values.null_count:
            j = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0]) // max(d, 1)
            raise self._fail(j, "a null value in the embedding")
        vecs = values.to_numpy(zero_copy_only=False).reshape(len(col), d).astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(vecs).all(axis=1))
        if len(bad):
            raise self._fail(int(bad[0]), "NaN or infinite value (or beyond float32's range)")
        return _normalise(vecs, self._fail)


def _normalise(vecs: np.ndarray, fail: Any) -> np.ndarray:
    """L2-normalise the rows in place (norms in float64); rows already unit-norm to float32 precision are kept."""
    wide = vecs.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))
    zero = np.flatnonzero(norms == 0)
    if len(zero):
        raise fail(int(zero[0]), "zero vector (norm 0): it has no direction to normalise")
    redo = np.abs(norms - 1.0) > _UNIT_TOLERANCE
    if redo.any():
        vecs[redo] = (wide[redo] / norms[redo, None]).astype(np.float32)
    return vecs
