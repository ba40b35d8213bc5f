"""The proxy LM's tokenizer: bytes, a BPE trained once per report on the run's own text, or a user's tokenizer.json.

One tokenizer serves every point of a report, so ``proxy_loss`` has the same unit (nats per token of that
tokenizer) at every keep fraction and strategy. The BPE (HF ``tokenizers``: byte-level pre-tokenizer, so every
string encodes and nothing maps to an unknown token) is trained on a seeded sample of the *whole* corpus (every
document, held-out slice included, at most ``sample_chars`` characters), never on a kept set, and is written to
``<run>/report/tokenizer.json``. Bits per byte (``bits_per_byte``) convert a per-token loss to a unit that does not
depend on the tokenizer: ``loss · tokens / (bytes · ln 2)`` over a text's tokens and UTF-8 bytes, each document's
end-of-document token counted as one byte (for bytes, tokens = bytes and the two units differ by ln 2 only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from winnow.core.errors import ConfigError

__all__ = ["BYTES_EOS", "BYTES_VOCAB", "EOS_TOKEN", "ProxyTokenizer", "bits_per_byte", "text_bytes"]

#: Byte values 0..255 plus the end-of-document token.
BYTES_VOCAB = 257
BYTES_EOS = 256
#: The end-of-document token of a trained BPE (id 0); a user tokenizer's is the first of ``_EOS_CANDIDATES`` it has.
EOS_TOKEN = "<|endoftext|>"
_EOS_CANDIDATES = (EOS_TOKEN, "</s>", "<eos>", "<|eos|>", "[SEP]", "<|end_of_text|>")


def text_bytes(texts: Sequence[str]) -> int:
    """UTF-8 bytes of the texts plus one per text (its end-of-document token)."""
    return sum(len(t.encode("utf-8", errors="replace")) + 1 for t in texts)


def bits_per_byte(nats_per_token: float, tokens: int, n_bytes: int) -> float:
    """A per-token loss in nats as bits per byte of the text those tokens encode."""
    if n_bytes <= 0:
        return math.nan
    return nats_per_token * tokens / (n_bytes * math.log(2))


@dataclass
class ProxyTokenizer:
    """A tokenizer for the proxy LM.

    Args:
        kind: ``bytes``, ``bpe`` (trained here) or ``file`` (a user's tokenizer.json).
        vocab_size: Token ids are ``0 .. vocab_size - 1`` (the end-of-document token included).
        eos: The end-of-document token id.
        tokenizer: The HF tokenizer (None for bytes).
        source: Where it came from (a path for ``file``), for the report.
    """

    kind: str
    vocab_size: int
    eos: int
    tokenizer: Any = None
    source: str = ""

    @classmethod
    def bytes(cls) -> ProxyTokenizer:
        """UTF-8 bytes: vocabulary 257 (256 byte values and an end-of-document token)."""
        return cls("bytes", BYTES_VOCAB, BYTES_EOS, None, "bytes")

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int, sample_chars: int, seed: int) -> ProxyTokenizer:
        """A byte-level BPE of at most ``vocab_size`` tokens, trained on a seeded sample of ``texts``.

        Documents are taken in a seeded order until ``sample_chars`` characters are reached (every document when
        the corpus is smaller). A small corpus can end with fewer tokens than ``vocab_size`` (no pair left to merge).
        """
        if vocab_size < BYTES_VOCAB + 1:
            msg = f"proxy vocab_size must be >= {BYTES_VOCAB + 1} for a BPE, got {vocab_size}"
            raise ConfigError(msg)
        order = np.random.default_rng([seed, 0x544F4B]).permutation(len(texts))
        sample, chars = [], 0
        for i in order:
            if chars >= sample_chars:
                break
            sample.append(texts[i])
            chars += len(texts[i])
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=2,
            special_tokens=[EOS_TOKEN],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(sample, trainer, length=len(sample))
        return cls("bpe", tok.get_vocab_size(), tok.token_to_id(EOS_TOKEN), tok, f"bpe trained on {chars:,} chars")

    @classmethod
    def from_file(cls, path: str) -> ProxyTokenizer:
        """A user's tokenizer.json; its end-of-document token is the first of ``</s>``, ``<|endoftext|>``, … it
        knows, else one new id after its vocabulary."""
        if not Path(path).is_file():
            msg = f"--proxy-tokenizer {path!r}: no such file (give bpe, bytes or a tokenizer.json)"
            raise ConfigError(msg)
        try:
            tok = Tokenizer.from_file(path)
        except Exception as e:  # noqa: BLE001 - tokenizers raises its own Exception subclass
            msg = f"--proxy-tokenizer {path!r}: not a HF tokenizers file ({e})"
            raise ConfigError(msg) from None
        vocab = tok.get_vocab_size(with_added_tokens=True)
        eos = next((tok.token_to_id(t) for t in _EOS_CANDIDATES if tok.token_to_id(t) is not None), None)
        if eos is None:
            eos, vocab = vocab, vocab + 1
        return cls("file", vocab, int(eos), tok, path)

    @classmethod
    def load(cls, spec: str, texts: Sequence[str], vocab_size: int, sample_chars: int, seed: int) -> ProxyTokenizer:
        """``spec`` ``bytes``, ``bpe`` (trained on ``texts``) or the path of a tokenizer.json."""
        if spec == "bytes":
            return cls.bytes()
        if spec == "bpe":
            return cls.train(texts, vocab_size, sample_chars, seed)
        return cls.from_file(spec)

    def encode_docs(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's token ids followed by the end-of-document token (int32 arrays)."""
        if self.tokenizer is None:
            return [
                np.append(np.frombuffer(t.encode("utf-8", errors="replace"), dtype=np.uint8), BYTES_EOS).astype(
                    np.int32
                )
                for t in texts
            ]
        encs = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [np.array([*e.ids, self.eos], dtype=np.int32) for e in encs]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One stream of every text's tokens, each followed by the end-of-document token."""
        docs = self.encode_docs(texts)
        return np.concatenate(docs) if docs else np.zeros(0, dtype=np.int32)

    def to_json(self) -> str | None:
        """The tokenizer as tokenizer.json text (None for bytes)."""
        return None if self.tokenizer is None else self.tokenizer.to_str()

    def describe(self) -> str:
        """One line for the report."""
        if self.kind == "bytes":
            return "bytes (vocabulary 257)"
        return f"{self.source}, vocabulary {self.vocab_size:,}"
