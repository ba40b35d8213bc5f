"""The proxy LM's tokenizer, presets and trainer (issue #16): BPE trained once and deterministically, a user's
tokenizer.json, bytes, bits per byte by hand, parameter counts by formula, seeded training with several
evaluation sets."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from winnow.core.errors import ConfigError
from winnow.pipeline.report.proxy_lm import PRESETS, ProxyConfig, build_model, eval_windows, train_proxy
from winnow.pipeline.report.proxy_tokenizer import EOS_TOKEN, ProxyTokenizer, bits_per_byte, text_bytes

TEXTS = [
    f"The {a} farmer sold {n} baskets of {b} apples at the market on {d}."
    for a in ("old", "young", "tired", "cheerful")
    for b in ("red", "green", "sour")
    for n in ("two", "seven", "forty")
    for d in ("Monday", "Friday")
]


def test_bpe_is_deterministic_round_trips_and_ends_documents():
    a = ProxyTokenizer.train(TEXTS, vocab_size=300, sample_chars=10**6, seed=0)
    b = ProxyTokenizer.train(TEXTS, vocab_size=300, sample_chars=10**6, seed=0)
    assert a.to_json() == b.to_json()
    assert a.kind == "bpe" and a.eos == 0 and a.vocab_size == 300  # 256 bytes + eos + 43 merges
    docs = a.encode_docs(TEXTS[:3])
    assert [d[-1] for d in docs] == [a.eos] * 3 and all((d[:-1] != a.eos).all() for d in docs)
    assert [a.tokenizer.decode(d[:-1].tolist()) for d in docs] == TEXTS[:3]
    assert (np.concatenate(docs) == a.encode(TEXTS[:3])).all()
    assert sum(len(d) for d in docs) < text_bytes(TEXTS[:3])  # merges make fewer tokens than bytes
    with pytest.raises(ConfigError, match="vocab_size"):
        ProxyTokenizer.train(TEXTS, vocab_size=200, sample_chars=10**6, seed=0)


def test_bpe_sample_is_seeded_and_bounded():
    # a sample of one document (the first of the seeded order reaches sample_chars): fewer merges are possible
    small = ProxyTokenizer.train(TEXTS, vocab_size=1000, sample_chars=1, seed=0)
    full = ProxyTokenizer.train(TEXTS, vocab_size=1000, sample_chars=10**6, seed=0)
    assert small.vocab_size < full.vocab_size <= 1000
    chars = int(small.source.split(" on ")[1].split(" chars")[0].replace(",", ""))
    assert chars in {len(t) for t in TEXTS}  # exactly one document
    assert full.source == f"bpe trained on {sum(len(t) for t in TEXTS):,} chars"  # every document


def test_bytes_and_bits_per_byte_by_hand():
    tok = ProxyTokenizer.bytes()
    assert tok.encode(["ab", "é"]).tolist() == [97, 98, 256, 0xC3, 0xA9, 256]
    assert tok.vocab_size == 257 and tok.to_json() is None
    assert text_bytes(["ab", "é"]) == 6
    assert bits_per_byte(math.log(2), tokens=6, n_bytes=6) == pytest.approx(1.0)
    assert bits_per_byte(2.0, tokens=3, n_bytes=6) == pytest.approx(2.0 * 3 / (6 * math.log(2)))
    assert math.isnan(bits_per_byte(1.0, 0, 0))


def test_a_user_tokenizer_file(tmp_path):
    trained = ProxyTokenizer.train(TEXTS, vocab_size=300, sample_chars=10**6, seed=0)
    path = tmp_path / "tokenizer.json"
    path.write_text(trained.to_json())
    user = ProxyTokenizer.load(str(path), [], 0, 0, 0)
    assert user.kind == "file" and user.eos == 0 and user.source == str(path)
    assert (user.encode(TEXTS) == trained.encode(TEXTS)).all() and user.vocab_size == trained.vocab_size
    # a tokenizer without an end-of-document token gets one new id after its vocabulary
    wl = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    wl.train_from_iterator(TEXTS, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    wl.save(str(tmp_path / "words.json"))
    words = ProxyTokenizer.from_file(str(tmp_path / "words.json"))
    assert words.eos == wl.get_vocab_size() and words.vocab_size == wl.get_vocab_size() + 1
    assert words.encode(["The old farmer"]).tolist() == [*(wl.token_to_id(w) for w in ("The", "old", "farmer")),
                                                         words.eos]  # fmt: skip
    with pytest.raises(ConfigError, match="no such file"):
        ProxyTokenizer.load(str(tmp_path / "missing.json"), [], 0, 0, 0)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a HF tokenizers file"):
        ProxyTokenizer.from_file(str(tmp_path / "bad.json"))
    assert EOS_TOKEN == "<|endoftext|>"


def _params(vocab: int, d: int, layers: int, context: int) -> int:
    """Tied embedding, positions, per block 12d² + 13d (qkv, proj, 4x MLP, two LayerNorms), the final LayerNorm."""
    return vocab * d + context * d + layers * (12 * d * d + 13 * d) + 2 * d


def test_presets_and_their_sizes():
    tiny = ProxyConfig.from_preset("tiny")
    assert (tiny.layers, tiny.d_model, tiny.context, tiny.vocab_size, tiny.tokenizer) == (2, 128, 256, 4096, "bpe")
    assert tiny.preset == "tiny" and ProxyConfig().tokens == tiny.tokens  # the defaults are the tiny preset
    small = ProxyConfig.from_preset("small", layers=None, repeats=3)  # None: the preset's value
    assert small.layers == 6 and small.repeats == 3 and small.d_model == 512
    model = build_model(small, small.vocab_size)
    assert sum(p.numel() for p in model.parameters()) == _params(8192, 512, 6, 512) == 23_371_776
    model = build_model(tiny, tiny.vocab_size)
    assert sum(p.numel() for p in model.parameters()) == _params(4096, 128, 2, 256)
    assert ProxyConfig.from_preset("tiny", d_model=64).d_model == 64
    with pytest.raises(ValueError, match="preset"):
        ProxyConfig.from_preset("huge")
    with pytest.raises(ValueError, match="unknown proxy settings: width"):
        ProxyConfig.from_preset("tiny", width=3)
    assert set(PRESETS) == {"tiny", "small"}


CFG = ProxyConfig(tokens=2048, layers=1, d_model=16, heads=2, context=16, batch_size=8, eval_tokens=256,
                  checkpoints=2, seed=5, threads=1, device="cpu")  # fmt: skip


def test_training_is_seeded_on_cpu_with_several_evaluation_sets():
    tok = ProxyTokenizer.train(TEXTS, vocab_size=300, sample_chars=10**6, seed=0)
    train = tok.encode(TEXTS[:50])
    sets = {n: eval_windows(tok.encode(t), 16, 256) for n, t in (("clean", TEXTS[50:]), ("heldout", TEXTS[:5]))}
    a = train_proxy(train, sets, CFG, tok.vocab_size)
    b = train_proxy(train, sets, CFG, tok.vocab_size)
    assert a.eval_losses == b.eval_losses and a.checkpoints == b.checkpoints  # same losses twice
    assert list(a.eval_losses) == ["clean", "heldout"] and a.loss == a.eval_losses["clean"] == a.checkpoints[-1][1]
    assert all(0 < v < math.log(tok.vocab_size) for v in a.eval_losses.values())  # learned something
    c = train_proxy(train, sets, replace(CFG, seed=6), tok.vocab_size)
    assert c.loss != a.loss
    assert [t for t, _ in a.checkpoints] == [CFG.tokens_trained // 2, CFG.tokens_trained]
