"""A proxy language model: measure a pruning curve by training on each kept set (issues #7, #16; ``--proxy lm``).

For every point of a pruning curve a small causal transformer is trained from scratch on the kept documents for a
fixed number of training tokens and evaluated on fixed evaluation sets. Everything that could differ between points
except the kept set is held fixed:

* **One tokenizer for the whole report** (:mod:`winnow.pipeline.report.proxy_tokenizer`): by default a byte-level
  BPE (``vocab_size`` tokens) trained once on a seeded sample of the whole corpus and saved as
  ``<run>/report/tokenizer.json``; or a user's tokenizer.json; or bytes (vocabulary 257). A tokenizer built from
  each kept set would change the unit of the loss between points. ``proxy_loss`` is the mean cross-entropy in
  nats per token of that tokenizer; ``proxy_bpb`` the same in bits per UTF-8 byte of the evaluated text.
* **Evaluation sets**: the held-out slice of the corpus (:func:`heldout_mask`, ``heldout_fraction`` = 5%, chosen by
  a seeded hash of the id, so it does not depend on the order or the sharding, and excluded from every training
  set) and any user-named shards (``evals``, e.g. a clean reference set: a slice of the unfiltered corpus penalises
  every filter by construction). The first user-named set, else the held-out slice, is the *primary* set: its loss
  is ``proxy_loss`` and the checkpoints of the law fit. At most ``eval_tokens`` of each set are evaluated
  (windows spread evenly over it).
* **The budget** is ``tokens`` training tokens: ``ceil(tokens / (batch_size · context))`` steps of ``batch_size``
  windows of ``context`` tokens. A kept set smaller than the budget is repeated: the kept documents are
  concatenated once (seeded order, each document as often as its ``repeat``), cut into windows, and every epoch
  visits all windows in a fresh seeded order.
* **Optimisation**: AdamW (β = 0.9, 0.95), linear warm-up over ``warmup`` of the steps then a constant learning
  rate, so the loss at an intermediate checkpoint approximates a run trained to that many tokens (the law fit of
  the report uses these checkpoints). Model initialisation, data order and evaluation are seeded; on CPU a rerun
  gives the same losses. ``repeats`` runs per point (seeds ``seed, seed + 1, …``) give a mean and its standard error.

The model: token and position embeddings, ``layers`` pre-norm blocks (causal multi-head attention through
``torch.nn.functional.scaled_dot_product_attention``, a 4× GELU MLP), a final LayerNorm and an output layer tied
to the token embedding; weights drawn from N(0, 0.02), the residual projections from N(0, 0.02 / sqrt(2 · layers))
(GPT-2). It runs on CUDA when present (``device="auto"``, bf16 autocast), else on CPU with
``threads`` torch threads. Presets (:data:`PRESETS`): ``tiny`` (2 layers, d = 128, context 256, BPE 4,096: about
0.9M parameters, CPU in minutes per report) and ``small`` (6 layers, d = 512, context 512, BPE 8,192: about 23M
parameters, for one GPU).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from winnow.core.device import torch_device
from winnow.pipeline.report.proxy_tokenizer import BYTES_EOS, BYTES_VOCAB

__all__ = [
    "EOS",
    "PRESETS",
    "VOCAB",
    "ProxyConfig",
    "ProxyResult",
    "build_model",
    "encode",
    "eval_windows",
    "heldout_mask",
    "train_proxy",
]

#: Byte values 0..255 plus the end-of-document token (the ``bytes`` tokenizer).
VOCAB = BYTES_VOCAB
EOS = BYTES_EOS

#: Model, budget and tokenizer of each preset; any field can be overridden (``ProxyConfig.from_preset``).
PRESETS: dict[str, dict[str, Any]] = {
    # CPU, one thread: about 0.9M parameters (0.5M of them the tied 4,096 x 128 embedding)
    "tiny": {"tokens": 400_000, "layers": 2, "d_model": 128, "heads": 4, "context": 256, "batch_size": 16,
             "lr": 3e-3, "vocab_size": 4096},
    # one GPU, bf16: about 23M parameters (4.2M of them the tied 8,192 x 512 embedding)
    "small": {"tokens": 40_000_000, "layers": 6, "d_model": 512, "heads": 8, "context": 512, "batch_size": 64,
              "lr": 1e-3, "vocab_size": 8192, "eval_tokens": 262_144},
}  # fmt: skip


@dataclass(frozen=True)
class ProxyConfig:
    """Settings of the proxy LM and its training run (module doc); the defaults are the ``tiny`` preset.

    Args:
        tokens: Training tokens per point, ``> 0``.
        layers: Transformer blocks.
        d_model: Width.
        heads: Attention heads; must divide ``d_model``.
        context: Tokens per training window.
        batch_size: Windows per step.
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay of the matrices (default 0.1).
        warmup: Share of the steps with a linear warm-up (default 0.1).
        heldout_fraction: Share of the documents in the held-out slice (default 0.05).
        eval_tokens: At most this many tokens of each evaluation set are evaluated (default 32,768).
        checkpoints: Evaluations of the primary set's loss, evenly spaced over the run, the last at the end
            (default 4).
        seed: Seed of the held-out slice, the tokenizer's sample, the initialisation and the data order (default 0).
        repeats: Independent runs per point, with model and data-order seeds ``seed, seed + 1, …`` and the same
            evaluation sets; the report gives their mean, standard deviation and standard error (default 1; the
            CLI's default is 3).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda`` (default ``auto``).
        threads: torch CPU threads during a run, restored afterwards (default 1; ``None``: torch's own setting).
            Models this small gain little from more threads and lose badly when the cores are shared: on the 2-core
            development machine, with another process running, 2 threads took 16× longer than 1.
        tokenizer: ``bpe`` (trained on the run's text, default), ``bytes``, or the path of a tokenizer.json.
        vocab_size: Tokens of the trained BPE (the end-of-document token included).
        tokenizer_chars: The BPE is trained on documents of a seeded sample of the corpus up to this many
            characters (default 5,000,000).
        evals: Evaluation shards (paths or globs of jsonl/parquet with the run's text field), one set per entry,
            evaluated besides the held-out slice; the first is the primary set.
        preset: The preset the settings came from (for the report), or None.
    """

    tokens: int = 400_000
    layers: int = 2
    d_model: int = 128
    heads: int = 4
    context: int = 256
    batch_size: int = 16
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
    tokenizer: str = "bpe"
    vocab_size: int = 4096
    tokenizer_chars: int = 5_000_000
    evals: tuple[str, ...] = field(default_factory=tuple)
    preset: str | None = None

    def __post_init__(self) -> None:
        positive = (
            "tokens", "layers", "d_model", "heads", "context", "batch_size", "eval_tokens", "checkpoints", "repeats",
            "vocab_size", "tokenizer_chars",
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
        if not self.tokenizer:
            msg = "proxy tokenizer must be bpe, bytes or the path of a tokenizer.json"
            raise ValueError(msg)
        object.__setattr__(self, "evals", tuple(self.evals))

    @classmethod
    def from_preset(cls, preset: str = "tiny", **overrides: Any) -> ProxyConfig:
        """The settings of a :data:`PRESETS` entry with ``overrides`` (None values are ignored)."""
        if preset not in PRESETS:
            msg = f"proxy preset must be one of {', '.join(PRESETS)}, got {preset!r}"
            raise ValueError(msg)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            msg = f"unknown proxy settings: {', '.join(unknown)}"
            raise ValueError(msg)
        values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**values, preset=preset)

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
        d = asdict(self)
        d["evals"] = list(self.evals)
        return d


@dataclass(frozen=True)
class ProxyResult:
    """One proxy run.

    Args:
        loss: The primary evaluation set's loss at the end, nats per token.
        checkpoints: ``(tokens_seen, primary loss)`` at each evaluation, in order (the last is ``loss``).
        train_tokens: Tokens of the training stream (kept documents with their repeats, end-of-document tokens
            included): the pool the budget is drawn from.
        epochs: ``tokens_trained / train_tokens``: how often the budget repeats the kept set.
        params: Trainable parameters of the model.
        device: Where it ran.
        seconds: Wall time of training and evaluation.
        eval_losses: Every evaluation set's loss at the end (nats per token), by name, the primary first.
    """

    loss: float
    checkpoints: tuple[tuple[int, float], ...]
    train_tokens: int
    epochs: float
    params: int
    device: str
    seconds: float
    eval_losses: dict[str, float] = field(default_factory=dict)


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
    """Bytes of the texts, each followed by ``EOS``, as one int16 array (the ``bytes`` tokenizer)."""
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
    """Evaluation windows: at most ``max_tokens // context`` of them, spread evenly over the stream."""
    w = _windows(stream, context)
    keep = max(1, max_tokens // context)
    if len(w) > keep:
        w = w[np.linspace(0, len(w) - 1, keep).round().astype(np.int64)]
    return w


def build_model(cfg: ProxyConfig, vocab: int = VOCAB):
    """The proxy transformer (module doc) over ``vocab`` tokens, initialised from ``torch``'s current RNG state."""
    import torch  # torch only when a proxy trains: importing the report stays cheap
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
            self.tok = nn.Embedding(vocab, cfg.d_model)
            self.pos = nn.Embedding(cfg.context, cfg.d_model)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.layers))
            self.ln = nn.LayerNorm(cfg.d_model)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            for block in self.blocks:  # GPT-2: residual projections scaled by depth
                for proj in (block.proj, block.mlp[2]):
                    nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.layers))

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
            for block in self.blocks:
                x = block(x)
            return self.ln(x) @ self.tok.weight.T  # output layer tied to the token embedding

    return TinyLM()


def _autocast(device: str):
    """bf16 autocast on CUDA; nothing on CPU."""
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))


def _evaluate(model, windows, device: str, batch_size: int, vocab: int) -> float:
    import torch
    from torch.nn import functional as F

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), _autocast(device):
        for i in range(0, len(windows), batch_size):
            w = torch.as_tensor(windows[i : i + batch_size]).long().to(device)
            logits = model(w[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab).float(), w[:, 1:].reshape(-1), reduction="sum")
            total += float(loss)
            count += w[:, 1:].numel()
    model.train()
    return total / count


def train_proxy(
    train_stream: np.ndarray,
    heldout: np.ndarray | Mapping[str, np.ndarray],
    cfg: ProxyConfig,
    vocab: int = VOCAB,
) -> ProxyResult:
    """Train the proxy LM on ``train_stream`` for ``cfg.tokens`` tokens; evaluate on ``heldout``.

    Args:
        train_stream: Token ids of the kept documents (repeats included), in training order.
        heldout: Evaluation windows ``[n, context + 1]`` (:func:`eval_windows`), the same for every point: one
            array, or several sets by name, the first the primary one (evaluated at every checkpoint; the others at
            the end).
        cfg: The proxy settings.
        vocab: Vocabulary size of the token ids (default :data:`VOCAB`, bytes).

    Returns:
        A :class:`ProxyResult`.
    """
    import torch

    sets = dict(heldout) if isinstance(heldout, Mapping) else {"heldout": heldout}
    if not sets:
        msg = "no evaluation set"
        raise ValueError(msg)
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(train_stream, sets, cfg, vocab)
    finally:
        torch.set_num_threads(threads)


def _batches(n_windows: int, cfg: ProxyConfig):
    """Window indices of every step: epochs of a seeded order, a fresh order for every epoch."""
    import torch

    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(n_windows, generator=gen)
    cursor = 0
    for _ in range(cfg.steps):
        take = []
        need = cfg.batch_size
        while need:
            if cursor == len(order):
                order, cursor = torch.randperm(n_windows, generator=gen), 0
            part = order[cursor : cursor + need]
            take.append(part)
            cursor += len(part)
            need -= len(part)
        yield torch.cat(take)


def _train(train_stream: np.ndarray, sets: dict[str, np.ndarray], cfg: ProxyConfig, vocab: int) -> ProxyResult:
    import torch
    from torch.nn import functional as F

    start = time.perf_counter()
    device = torch_device(cfg.device, "proxy device")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, vocab).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("pos")]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not n.startswith("pos"))]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    warm = max(1, round(cfg.warmup * cfg.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    windows = torch.as_tensor(_windows(train_stream, cfg.context).astype(np.int64))
    evals = sorted({max(1, round(cfg.steps * j / cfg.checkpoints)) for j in range(1, cfg.checkpoints + 1)})
    primary, *others = sets
    eval_batch = max(cfg.batch_size, 64)
    checkpoints = []
    for step, idx in enumerate(_batches(len(windows), cfg), start=1):
        batch = windows[idx].to(device)
        with _autocast(device):
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step in evals:
            seen = step * cfg.batch_size * cfg.context
            checkpoints.append((seen, _evaluate(model, sets[primary], device, eval_batch, vocab)))
    losses = {primary: checkpoints[-1][1]}
    losses.update({name: _evaluate(model, sets[name], device, eval_batch, vocab) for name in others})
    params = sum(p.numel() for p in model.parameters())
    return ProxyResult(
        loss=checkpoints[-1][1],
        checkpoints=tuple(checkpoints),
        train_tokens=int(len(train_stream)),
        epochs=cfg.tokens_trained / len(train_stream),
        params=int(params),
        device=device,
        seconds=time.perf_counter() - start,
        eval_losses=losses,
    )
