"""Config sections that the core layer itself reads (the run, shard I/O).

The whole config (``winnow.pipeline.config.WinnowConfig``) assembles these with the sections that live next to
their algorithms (``embed`` in ``winnow.embedding``, ``score.llm`` in ``winnow.scorers.llm``, ``mix`` in
``winnow.mixers.config``, ...).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from winnow.core.section import Section, StrList

#: the largest seed: FAISS's k-means takes a 32-bit signed seed, so a larger one would fail after embedding
MAX_SEED = 2**31 - 1


def check_seed(v: int | None) -> int | None:
    """Refuse seeds FAISS cannot take (it reads them as a 32-bit signed int), before any work starts."""
    if v is not None and v > MAX_SEED:
        raise ValueError(f"must be below 2**31 ({MAX_SEED + 1}): FAISS's k-means takes a 32-bit signed seed")
    return v


class RunSection(Section):
    """Run-wide settings.

    Args:
        name: a label for the run (defaults to the output directory's name).
        seed: the seed every random choice derives from (sampling, k-means init, tie-breaking); below 2**31
            (FAISS takes a 32-bit signed seed).
    """

    name: str | None = None
    seed: int = Field(0, ge=0)

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int) -> int:
        return check_seed(v)


class IOSection(Section):
    """Where shards come from and go, and how they are read.

    Args:
        input: input shards: paths, globs or fsspec URLs (``data/*.parquet``, ``s3://b/x/*.jsonl.gz``),
            or directories (every supported shard below them). ``--input`` on the CLI replaces this list.
        output: the run directory (``--output`` replaces it).
        text_field: the column / JSON key holding the document text.
        id_field: the column / JSON key holding a document id; rows without one get ``<shard-stem>:<row>``.
        source_field: the column / JSON key naming a document's source (stratification of quality selection and
            mixing pools); documents without it count as source null.
        read_batch_size: rows per record batch read from a shard; bounds memory with the embed batch.
        max_chars: texts longer than this are rejected as ``text_too_long`` (after reading, before embedding).
        limit: read at most this many records per shard (debugging); ``null`` for all.
        storage_options: passed to fsspec (``url_to_fs(path, **storage_options)``). Put credentials in the
            environment, not here: the resolved config is written to the run directory.
        compression: parquet compression codec of the files winnow writes.
        row_group_size: rows per parquet row group of the files winnow writes.
    """

    input: StrList = Field(default_factory=list)
    output: str | None = None
    text_field: str = Field("text", min_length=1)
    id_field: str = Field("id", min_length=1)
    source_field: str = Field("source", min_length=1)
    read_batch_size: int = Field(1024, ge=1, le=1_000_000)
    max_chars: int = Field(1_000_000, ge=1)
    limit: int | None = Field(None, ge=1)
    storage_options: dict[str, Any] = Field(default_factory=dict, repr=False)  # never in logs / executor.json
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    row_group_size: int = Field(16_384, ge=1)

    @field_validator("input")
    @classmethod
    def _no_empty_input(cls, v: list[str]) -> list[str]:
        # an empty pattern would resolve to the current directory and read whatever lies there
        if any(not pattern.strip() for pattern in v):
            raise ValueError('an input pattern is empty: give a path, glob, directory or URL ("" is not ".")')
        return v
