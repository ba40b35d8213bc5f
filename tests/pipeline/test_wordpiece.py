"""TorchWordPiece against the HF tokenizer it reproduces: identical token ids on the bundled corpus, on Unicode edge
cases and on random strings; [UNK] rules, truncation, padding, fallbacks; and the Embedder wired to it."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from winnow.core.errors import ConfigError
from winnow.embedding.embed import Embedder, cut_text
from winnow.embedding.wordpiece import TorchWordPiece, UnsupportedTokenizer, build_tables
from winnow.pipeline.config import EmbedSection, load_config

MAX_LEN = 256
QUICKSTART = Path(__file__).resolve().parents[2] / "data" / "quickstart"


@pytest.fixture(scope="module")
def hf():
    emb = Embedder(EmbedSection(device="cpu", dtype="float32", batch_size=8), torch_threads=1)
    emb.setup()
    return emb.model.tokenizer


@pytest.fixture(scope="module")
def tables(hf):
    return build_tables(hf)


@pytest.fixture
def wp(hf, tables):
    return TorchWordPiece(hf, "cpu", tables)


def hf_ids(hf, texts, max_len=MAX_LEN):
    return [hf(t, truncation=True, max_length=max_len)["input_ids"] for t in texts]


def our_ids(wp, texts, max_len=MAX_LEN):
    feats = wp(texts, max_len)
    ids, mask = feats["input_ids"].numpy(), feats["attention_mask"].numpy().astype(bool)
    return [row[m].tolist() for row, m in zip(ids, mask, strict=True)]


def assert_same(hf, wp, texts, max_len=MAX_LEN):
    ours, theirs = our_ids(wp, texts, max_len), hf_ids(hf, texts, max_len)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a == b, (
            f"text {i} {texts[i][:60]!r}: {hf.convert_ids_to_tokens(a[:12])} vs {hf.convert_ids_to_tokens(b[:12])}"
        )


def quickstart_texts() -> list[str]:
    """The bundled sample corpus (jsonl, jsonl.gz, jsonl.zst, parquet), read as the pipeline reads it."""
    from winnow.core.io import ShardReader, list_shards
    from winnow.pipeline.config import IOSection

    texts: list[str] = []
    for shard in list_shards([str(QUICKSTART)]):
        for batch in ShardReader(shard, IOSection()):
            texts += batch.table.column("text").to_pylist()
    return texts


EDGE = [
    "Café naïve résumé Zürich STRASSE straße İstanbul ǅungla ﬁne",  # accents, ligatures, İ -> i + dot
    "速い茶色の狐がのろまな犬を飛び越える。한국어 텍스트 中文混合English",  # CJK padding, Hangul
    "null\x00byte, zero\u200bwidth, bom\ufeff, soft\u00adhyphen, bell\x07, del\x7f",  # control/format chars
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em\u3000ideographic\u2028line",  # whitespace kinds
    "",
    "   \t\n ",
    "x" * 101 + " short " + "y" * 100,  # > max_input_chars_per_word -> [UNK]; exactly 100 -> pieces
    "emoji 😀👍🏽 and ☃ and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and \U0010fffd private",  # uncovered words -> [UNK]
    "unbelievably counterintuitive antidisestablishmentarianism pneumonoultramicroscopic",  # many ## pieces
    "ﬀ ﬃ Ⅻ ½ ² ㎏ Å K Ǆ ΐ ẞ",  # compatibility characters (BertNormalizer does not NFKC them)
    "Ελληνικά Русский العربية עברית हिन्दी ไทย ქართული",
    "punct!!!...,,,;;;:::???---'''\"\"\"(((])){{}}<<>>@@##$$%%^^&&**__++==||\\\\//~~``",
    "don't it's U.S.A. e-mail 3.14 1,000 50% $20 x^2 #hashtag @user a+b=c",
    "a",
    "[unused1] [unused99] brackets around vocabulary entries are plain text",
]


def test_identical_ids_on_the_bundled_corpus(hf, wp):
    """Every quickstart document, cut as the embed stage cuts it, and whole."""
    texts = quickstart_texts()
    assert len(texts) > 500
    cut = [cut_text(t, 2000) for t in texts]
    for start in range(0, len(cut), 128):
        assert_same(hf, wp, cut[start : start + 128])
    assert_same(hf, wp, texts[:64])  # whole documents, some far longer than 256 tokens
    assert wp.fallbacks == 0


def test_identical_ids_on_unicode_edge_cases(hf, wp):
    assert_same(hf, wp, EDGE)
    assert_same(hf, wp, EDGE, max_len=8)  # truncation inside words' pieces
    assert_same(hf, wp, EDGE, max_len=2)  # nothing but [CLS] [SEP]


def test_identical_ids_on_random_strings(hf, wp):
    rng = random.Random(0)
    pools = [
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ",
        " .,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`",
        "àáâãäåçèéêëìíîïñòóôõöùúûüýÿßœæøÅÉÎÕÜ",
        "的一是不了人我在有他这中大来上国个到说们",
        "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "\t\n\r\u00a0\u2003\u200b\u200d\ufeff\x00\x1b\u0301\u0308\u20ac\u2122",
        "😀🎉🚀👍🏽❤️🇫🇷",
    ]
    texts = []
    for _ in range(300):
        n = rng.randint(0, 120)
        texts.append("".join(rng.choice(rng.choice(pools)) for _ in range(n)))
    for start in range(0, len(texts), 100):
        assert_same(hf, wp, texts[start : start + 100])
        assert_same(hf, wp, texts[start : start + 100], max_len=16)


def test_batch_shape_padding_and_mask(hf, wp):
    feats = wp(["one two three", "", "a much longer text with many more words in it"], MAX_LEN)
    ref = hf(["one two three", "", "a much longer text with many more words in it"], padding=True, truncation=True,
             max_length=MAX_LEN, return_tensors="pt")  # fmt: skip
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert feats[key].tolist() == ref[key].tolist(), key
    assert our_ids(wp, [""]) == [[hf.cls_token_id, hf.sep_token_id]]
    texts = ["one two three", "", "a much longer text with many more words in it", "x " * 40]
    for multiple in (8, 16):
        ours = wp(texts, MAX_LEN, pad_to_multiple_of=multiple)
        ref = hf(texts, padding=True, truncation=True, max_length=MAX_LEN, pad_to_multiple_of=multiple,
                 return_tensors="pt")  # fmt: skip
        assert ours["input_ids"].shape[1] % multiple == 0
        for key in ("input_ids", "attention_mask"):
            assert ours[key].tolist() == ref[key].tolist(), (multiple, key)


def test_unknown_words_and_long_words_become_one_unk(hf, wp):
    ids = our_ids(wp, ["x" * 101, "x" * 100, "😀"])
    assert ids[0] == [hf.cls_token_id, hf.unk_token_id, hf.sep_token_id]
    assert hf.unk_token_id not in ids[1] and len(ids[1]) > 3
    assert ids[2] == [hf.cls_token_id, hf.unk_token_id, hf.sep_token_id]


def test_special_tokens_written_in_text_go_to_hf(hf, wp):
    texts = ["plain text", "text with [SEP] inside and [MASK] too", "more plain text", "lower [cls] and [pad]"]
    assert_same(hf, wp, texts)
    assert wp.fallbacks == 2  # the lowercase ones too, whatever HF makes of them
    lone = ["fine", "\ud800 lone surrogate"]  # not UTF-32 encodable: the whole batch goes to HF, which refuses it
    with pytest.raises(TypeError):
        hf(lone)
    with pytest.raises(TypeError):
        wp(lone, MAX_LEN)


def test_tables_refuse_a_non_wordpiece_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "[UNK]": 2}, merges=[], unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(UnsupportedTokenizer, match="BertNormalizer"):
        build_tables(PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]"))


def test_embedder_with_the_torch_tokenizer_gives_the_same_vectors(hf):
    texts = quickstart_texts()[:40] + EDGE
    base = Embedder(EmbedSection(device="cpu", dtype="float32", batch_size=8), torch_threads=1)
    ours = Embedder(EmbedSection(device="cpu", dtype="float32", batch_size=8, tokenizer="torch"), torch_threads=1)
    ours.setup()
    assert ours._wordpiece is not None and ours._pool is None
    np.testing.assert_array_equal(ours.encode(texts), base.encode(texts))


def test_fingerprint_ignores_the_tokenizer_choice():
    a = load_config(None, None, {"embed.tokenizer": "torch"}).fingerprint(["embed"])
    assert a == load_config(None, None, {}).fingerprint(["embed"])


def test_torch_tokenizer_on_a_non_wordpiece_model_is_a_config_error(monkeypatch):
    monkeypatch.setattr("winnow.embedding.embed._is_wordpiece", lambda tok: False)

    def refuse(tok):
        raise UnsupportedTokenizer("needs BertNormalizer + BertPreTokenizer + WordPiece, got ByteLevel")

    monkeypatch.setattr("winnow.embedding.embed.build_tables", refuse)
    monkeypatch.setattr("winnow.embedding.embed._TABLES", {})
    emb = Embedder(EmbedSection(device="cpu", dtype="float32", tokenizer="torch"), torch_threads=1)
    with pytest.raises(ConfigError, match="embed.tokenizer=torch"):
        emb.setup()


@pytest.mark.gpu
def test_identical_ids_and_vectors_on_cuda(hf, tables):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    wp = TorchWordPiece(hf, "cuda", tables)
    texts = [cut_text(t, 2000) for t in quickstart_texts()] + EDGE
    feats = wp(texts, MAX_LEN)
    assert feats["input_ids"].device.type == "cuda"
    ref = hf(texts, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
    assert torch.equal(feats["input_ids"].cpu(), ref["input_ids"])
    assert torch.equal(feats["attention_mask"].cpu(), ref["attention_mask"])
    # the embed path: the tokenizer's own stream, then the model's
    a = Embedder(EmbedSection(device="cuda", batch_size=16, tokenizer="torch"))
    b = Embedder(EmbedSection(device="cuda", batch_size=16, tokenize_workers=0))
    np.testing.assert_array_equal(a.encode(texts), b.encode(texts))
