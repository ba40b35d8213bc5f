"""A proxy language model: measure a pruning curve by training on each kept set (issue #7, ``--proxy lm``).

For every point of a pruning curve a small causal transformer is trained from scratch on the kept documents for a
fixed number of training tokens and evaluated on one fixed held-out slice of the corpus. Everything that could
differ between points except the kept set is held fixed:

* **Tokens are bytes** (UTF-8, vocabulary 257: the 256 byte values and an end-of-document token). A tokenizer built
  from each kept set would change the unit of the loss between points; bytes keep ``proxy_loss`` (mean
  cross-entropy per byte, in nats; divide by ln 2 for bits per byte) comparable across strategies and fractions.
  Nothing is downloaded.
* **The held-out slice** is a fixed share of the documents (:func:`heldout_mask`, ``heldout_fraction`` = 5%,
  chosen by a seeded hash of the id, so it does not depend on the order or the sharding) and is excluded from every
  training set. At most ``eval_tokens`` of it are evaluated (windows spread evenly over the slice).
* **The budget** is ``tokens`` training tokens: ``ceil(tokens / (batch_size · context))`` steps of ``batch_size``
  windows of ``context`` tokens. A kept set smaller than the budget is repeated: the kept documents are
  concatenated once (seeded order, each document as often as its ``repeat``), cut into windows, and every epoch
  visits all windows in a fresh seeded order.
* **Optimisation**: AdamW (β = 0.9, 0.95), linear warm-up over ``warmup`` of the steps then a constant learning
  rate, so the loss at an intermediate checkpoint approximates a run trained to that many tokens (the law fit of
  the report uses these checkpoints). Model initialisation, data order and evaluation are seeded; on CPU a rerun
  gives the same losses.

The model: token and position embeddings, ``layers`` pre-norm blocks (causal multi-head attention through
``torch.nn.functional.scaled_dot_product_attention``, a 4× GELU MLP), a final LayerNorm and an output layer tied
to the token embedding. It runs on CUDA when present (``device="auto"``), else on CPU, where the defaults (2
layers, d = 64, context 128, 200k tokens) take seconds per point.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from winnow.core.device import torch_device

__all__ = [
    "EOS",
    "VOCAB",
    "ProxyConfig",
    "ProxyResult",
    "build_model",
    "encode",
    "eval_windows",
    "heldout_mask",
    "train_proxy",
]

#: Byte values 0..255 plus the end-of-document token.
VOCAB = 257
EOS = 256


@dataclass(frozen=True)
class ProxyConfig:
    """Settings of the proxy LM and its training run (module doc).

    Args:
        tokens: Training tokens (bytes) per point, ``> 0`` (default 200,000: seconds on 2 CPU cores).
        layers: Transformer blocks (default 2).
        d_model: Width (default 64).
        heads: Attention heads; must divide ``d_model`` (default 4).
        context: Tokens per training window (default 128).
        batch_size: Windows per step (default 32).
        lr: Peak AdamW learning rate (default 3e-3).
        weight_decay: AdamW weight decay of the matrices (default 0.1).
        warmup: Share of the steps with a linear warm-up (default 0.1).
        heldout_fraction: Share of the documents in the held-out slice (default 0.05).
        eval_tokens: At most this many held-out tokens are evaluated (default 32,768).
        checkpoints: Evaluations of the held-out loss, evenly spaced over the run, the last at the end (default 4).
        seed: Seed of the held-out slice, the initialisation and the data order (default 0).
        repeats: Independent runs per point, with model and data-order seeds ``seed, seed + 1, …`` and the same
            held-out slice; the report averages them and gives their standard deviation (default 1). At the
            defaults on nltk_data the seed alone moves the held-out loss by about 0.02 nats/byte (sd).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda`` (default ``auto``).
        threads: torch CPU threads during a run, restored afterwards (default 1; ``None``: torch's own setting).
            Models this small gain little from more threads and lose badly when the cores are shared: on the 2-core
            development machine, with another process running, 2 threads took 16× longer than 1.
    """

    tokens: int = 200_000
    layers: int = 2
    d_model: int = 64
    heads: int = 4
    context: int = 128
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: float = 0.1
    heldout_fraction: float = 0.05
    eval_tokens: int = 32_768
    checkpoints: int = 4
    seed: int = 0
    repeats: int = 1
    device: str = "auto"
    threads: int | None = 1

    def __post_init__(self) -> None:
        positive = (
            "tokens", "layers", "d_model", "heads", "context", "batch_size", "eval_tokens", "checkpoints", "repeats",
        )  # fmt: skip
        for name in positive:
            if int(getattr(self, name)) < 1:
                msg = f"proxy {name} must be >= 1, got {getattr(self, name)}"
                raise ValueError(msg)
        if self.d_model % self.heads:
            msg = f"proxy heads ({self.heads}) must divide d_model ({self.d_model})"
            raise ValueError(msg)
        if not 0.0 < self.heldout_fraction < 1.0:
            msg = f"proxy heldout_fraction must be in (0, 1), got {self.heldout_fraction}"
            raise ValueError(msg)
        if not 0.0 <= self.warmup < 1.0:
            msg = f"proxy warmup must be in [0, 1), got {self.warmup}"
            raise ValueError(msg)
        if self.threads is not None and self.threads < 1:
            msg = f"proxy threads must be >= 1, got {self.threads}"
            raise ValueError(msg)
        if self.device not in ("auto", "cpu", "cuda"):
            msg = f"proxy device must be auto, cpu or cuda, got {self.device!r}"
            raise ValueError(msg)

    @property
    def steps(self) -> int:
        """Optimiser steps of one run."""
        return math.ceil(self.tokens / (self.batch_size * self.context))

    @property
    def tokens_trained(self) -> int:
        """Tokens actually trained on: whole steps, so ``tokens`` rounded up to a multiple of a batch."""
        return self.steps * self.batch_size * self.context

    def to_dict(self) -> dict:
        """JSON-ready dict of the settings."""
        return asdict(self)


@dataclass(frozen=True)
class ProxyResult:
    """One proxy run.

    Args:
        loss: Held-out loss at the end, nats per byte.
        checkpoints: ``(tokens_seen, held-out loss)`` at each evaluation, in order (the last is ``loss``).
        train_tokens: Tokens of the training stream (kept documents with their repeats, end-of-document tokens
            included): the pool the budget is drawn from.
        epochs: ``tokens_trained / train_tokens``: how often the budget repeats the kept set.
        params: Trainable parameters of the model.
        device: Where it ran.
        seconds: Wall time of training and evaluation.
    """

    loss: float
    checkpoints: tuple[tuple[int, float], ...]
    train_tokens: int
    epochs: float
    params: int
    device: str
    seconds: float


def heldout_mask(ids: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """The held-out slice: the ``round(fraction · n)`` documents with the smallest seeded hash of their id.

    The choice depends only on the ids and the seed, never on the order of the documents or their shards.

    Args:
        ids: Document ids.
        fraction: Share of the documents held out, in (0, 1).
        seed: Seed mixed into the hash.

    Returns:
        A boolean mask, True for held-out documents (at least one when there are two documents or more).
    """
    n = len(ids)
    count = int(math.floor(fraction * n + 0.5))
    if n >= 2:
        count = min(max(count, 1), n - 1)
    keys = np.array(
        [int.from_bytes(hashlib.blake2b(f"{seed}\x00{i}".encode(), digest_size=8).digest(), "little") for i in ids],
        dtype=np.uint64,
    )
    order = np.lexsort((np.arange(n), keys))
    mask = np.zeros(n, dtype=bool)
    mask[order[:count]] = True
    return mask


def encode(texts: Sequence[str]) -> np.ndarray:
    """Bytes of the texts, each followed by ``EOS``, as one int16 array (the vocabulary has 257 tokens)."""
    if not texts:
        return np.zeros(0, dtype=np.int16)
    parts = [t.encode("utf-8", errors="replace") for t in texts]
    stream = np.frombuffer(b"".join(p + b"\x00" for p in parts), dtype=np.uint8).astype(np.int16)
    ends = np.cumsum([len(p) + 1 for p in parts]) - 1
    stream[ends] = EOS
    return stream


def _windows(stream: np.ndarray, context: int) -> np.ndarray:
    """Non-overlapping windows of ``context + 1`` tokens (input and shifted target); a short stream is tiled."""
    if len(stream) == 0:
        msg = "no training tokens: the kept set is empty"
        raise ValueError(msg)
    if len(stream) < context + 1:
        stream = np.tile(stream, math.ceil((context + 1) / len(stream)) + 1)
    n = (len(stream) - 1) // context
    idx = np.arange(n)[:, None] * context + np.arange(context + 1)[None, :]
    return stream[idx]


def eval_windows(stream: np.ndarray, context: int, max_tokens: int) -> np.ndarray:
    """Held-out windows: at most ``max_tokens // context`` of them, spread evenly over the stream."""
    w = _windows(stream, context)
    keep = max(1, max_tokens // context)
    if len(w) > keep:
        w = w[np.linspace(0, len(w) - 1, keep).round().astype(np.int64)]
    return w


def build_model(cfg: ProxyConfig):
    """The proxy transformer (module doc), initialised from ``torch``'s current RNG state."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1 = nn.LayerNorm(cfg.d_model)
            self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
            self.proj = nn.Linear(cfg.d_model, cfg.d_model)
            self.ln2 = nn.LayerNorm(cfg.d_model)
            self.mlp = nn.Sequential(
                nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, cfg.heads, d // cfg.heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
            return x + self.mlp(self.ln2(x))

    class TinyLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(VOCAB, cfg.d_model)
            self.pos = nn.Embedding(cfg.context, cfg.d_model)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.layers))
            self.ln = nn.LayerNorm(cfg.d_model)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
            for block in self.blocks:
                x = block(x)
            return self.ln(x) @ self.tok.weight.T  # output layer tied to the token embedding

    return TinyLM()


def _evaluate(model, windows, device: str, batch_size: int) -> float:
    import torch
    from torch.nn import functional as F

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            w = torch.as_tensor(windows[i : i + batch_size]).long().to(device)
            logits = model(w[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, VOCAB).float(), w[:, 1:].reshape(-1), reduction="sum")
            total += float(loss)
            count += w[:, 1:].numel()
    model.train()
    return total / count


def train_proxy(train_stream: np.ndarray, heldout: np.ndarray, cfg: ProxyConfig) -> ProxyResult:
    """Train the proxy LM on ``train_stream`` for ``cfg.tokens`` tokens; evaluate on the ``heldout`` windows.

    Args:
        train_stream: Token ids of the kept documents (:func:`encode`, repeats included), in training order.
        heldout: Held-out windows ``[n, context + 1]`` (:func:`eval_windows`), the same for every point.
        cfg: The proxy settings.

    Returns:
        A :class:`ProxyResult`.
    """
    import torch

    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(train_stream, heldout, cfg)
    finally:
        torch.set_num_threads(threads)


def _train(train_stream: np.ndarray, heldout: np.ndarray, cfg: ProxyConfig) -> ProxyResult:
    import torch
    from torch.nn import functional as F

    start = time.perf_counter()
    device = torch_device(cfg.device, "proxy device")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("pos")]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not n.startswith("pos"))]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    warm = max(1, round(cfg.warmup * cfg.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    windows = torch.as_tensor(_windows(train_stream, cfg.context))
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(windows), generator=gen)
    cursor = 0
    evals = sorted({max(1, round(cfg.steps * j / cfg.checkpoints)) for j in range(1, cfg.checkpoints + 1)})
    checkpoints = []
    for step in range(1, cfg.steps + 1):
        take = []
        need = cfg.batch_size
        while need:  # windows in epoch order; a new seeded order for every epoch
            if cursor == len(order):
                order, cursor = torch.randperm(len(windows), generator=gen), 0
            part = order[cursor : cursor + need]
            take.append(part)
            cursor += len(part)
            need -= len(part)
        batch = windows[torch.cat(take)].long().to(device)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB).float(), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step in evals:
            seen = step * cfg.batch_size * cfg.context
            checkpoints.append((seen, _evaluate(model, heldout, device, max(cfg.batch_size, 64))))
    params = sum(p.numel() for p in model.parameters())
    return ProxyResult(
        loss=checkpoints[-1][1],
        checkpoints=tuple(checkpoints),
        train_tokens=int(len(train_stream)),
        epochs=cfg.tokens_trained / len(train_stream),
        params=int(params),
        device=device,
        seconds=time.perf_counter() - start,
    )
