"""Rule-based pre-filters: datatrove's Gopher repetition, Gopher quality, C4 quality and FineWeb quality filters
(issue #18), run as one check per document.

``RuleFilters.check(texts)`` gives, per document, ``None`` when it passes every enabled filter, else
``(rule, detail)`` for the first failing filter in the FineWeb recipe's order (``RULE_NAMES``): ``rule`` names the
filter and ``detail`` is datatrove's own reason (``"gopher_short_doc"``, ``"dup_line_frac"``,
``"too_few_sentences"``, ``"line_punct_ratio"``...).

Two implementations give the same decisions:

- ``datatrove``: datatrove's own filter classes, ``filter(doc)`` on a ``datatrove.data.Document``. It is the
  reference (and the test oracle). Each filter re-tokenises the text with spaCy, and the C4 filter runs spaCy's
  sentencizer on every kept line.
- ``fused`` (default): one analysis per document shared by the four filters. The text is tokenised into words
  once, with the same tokenizer datatrove uses for English (``spacy.blank("en")``'s tokenizer, taken from
  datatrove's ``load_word_tokenizer``, so the word lists are identical). Tokenising is about half of the fused
  time; a regex split tokenises ~10x faster but gives other word lists (spaCy splits ``don't`` into ``do n't``,
  keeps ``U.S.``, splits ``e-mail`` into three), and the fused chain clears the issue's 3x target without it,
  so winnow keeps the exact tokenizer. The words become integer ids; the Gopher n-gram statistics, word lengths,
  symbol/alpha/stop-word flags are computed with numpy on those ids (flags once per distinct word). Line and
  paragraph duplicate fractions use the closed form ``chars of all elements - chars of the distinct ones``.
  The C4 filter's per-line sentence count is only needed when fewer than ``c4_min_num_sentences`` lines are kept
  (each kept line holds at least one sentence), and then datatrove's own ``split_into_sentences`` counts them.
  The duplicated 5- to 10-gram keys are datatrove's ``"".join`` of the words (so ``"ab"+"c"`` equals
  ``"a"+"bc"``), hashed from prefix sums (64-bit polynomial hash) rather than built as strings.

Every filter sees the ORIGINAL text. datatrove's ``C4QualityFilter`` rewrites ``doc.text`` of a kept document
(it drops the lines that fail its line rules), so in a datatrove pipeline the FineWeb filter after it sees the
shortened text. winnow never modifies input text: it takes only the C4 filter's keep/drop decision, and both
implementations here give each filter a fresh document holding the original text. Decisions can therefore
differ from a datatrove pipeline that chains the filters on one ``Document``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, ELLIPSIS, END_PUNCTUATION, POLICY_SUBSTRINGS
from datatrove.pipeline.filters.gopher_quality_filter import STOP_WORDS
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION, split_into_sentences
from datatrove.utils.typeshelper import Languages
from datatrove.utils.word_tokenizers import load_word_tokenizer
from pydantic import Field, model_validator

from winnow.core.errors import ConfigError
from winnow.core.section import Section

#: the filters, in the order they run (the FineWeb recipe's)
RULE_NAMES = ("gopher_repetition", "gopher_quality", "c4", "fineweb_quality")

#: datatrove's fixed Gopher n-gram thresholds (not exposed): (n, max char fraction)
TOP_N_GRAMS = ((2, 0.2), (3, 0.18), (4, 0.16))
DUP_N_GRAMS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
#: datatrove's fixed Gopher duplicate paragraph / line character fractions (not exposed)
DUP_PARA_CHAR_FRAC = DUP_LINE_CHAR_FRAC = 0.2
#: datatrove's fixed Gopher quality thresholds (not exposed)
MIN_AVG_WORD_LENGTH, MAX_AVG_WORD_LENGTH = 3, 10
MAX_SYMBOL_WORD_RATIO, MAX_BULLET_LINES_RATIO, MAX_ELLIPSIS_LINES_RATIO = 0.1, 0.9, 0.3
MIN_ALPHA_WORDS_RATIO = 0.8
#: datatrove's fixed C4 / FineWeb constants (not exposed)
C4_MAX_WORD_LENGTH = 1000
FINEWEB_SHORT_LINE_LENGTH = 30

_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile("\n+")
_STOP_CHARS = tuple(TERMINAL_PUNCTUATION)
#: odd base of the glued n-gram hash and its inverse modulo 2**64
_BASE = np.uint64(0x100000001B3)
_BASE_INV = np.uint64(pow(int(_BASE), -1, 2**64))

Verdict = tuple[str, str] | None


class RulesSection(Section):
    """Rule-based pre-filters (datatrove's Gopher, C4 and FineWeb heuristics). Thresholds default to datatrove's.

    Args:
        enabled: run the rule filters at all; ``false`` keeps every document.
        implementation: ``fused`` (winnow's: one tokenisation per document shared by all filters, the same
            decisions) or ``datatrove`` (datatrove's own filter classes, one after another; the reference).
        gopher_repetition: run the Gopher repetition filter (duplicate lines, paragraphs and n-grams).
        gopher_quality: run the Gopher quality filter (word count and length, symbols, bullets, stop words).
        c4: run the C4 quality filter (terminal punctuation, sentences, lorem ipsum, curly brackets). Only its
            keep/drop decision is used: the text is never rewritten.
        fineweb_quality: run the FineWeb quality filter (line punctuation, short lines, duplicate line chars,
            newlines per word).
        gopher_dup_line_frac: most duplicate lines, as a fraction of the lines (0 disables the rule).
        gopher_dup_para_frac: most duplicate paragraphs, as a fraction of the paragraphs (0 disables the rule).
        gopher_min_doc_words: fewest words (not counting pure punctuation) a document may have.
        gopher_max_doc_words: most words a document may have.
        gopher_min_stop_words: fewest distinct stop words (the, be, to, of, and, that, have, with) it must hold.
        c4_min_num_sentences: fewest sentences in the lines that pass C4's line rules.
        c4_min_words_per_line: a line with fewer words is left out by C4's line rules.
        fineweb_line_punct_thr: fewest lines ending in terminal punctuation, as a fraction of non-empty lines.
        fineweb_short_line_thr: most lines of at most 30 characters, as a fraction of non-empty lines.
        fineweb_char_dup_ratio: most characters in duplicate lines, as a fraction of all non-newline characters.
        fineweb_new_line_ratio: most newlines per word.
    """

    enabled: bool = True
    implementation: Literal["fused", "datatrove"] = "fused"
    gopher_repetition: bool = True
    gopher_quality: bool = True
    c4: bool = True
    fineweb_quality: bool = True
    gopher_dup_line_frac: float = Field(0.3, ge=0.0, le=1.0)
    gopher_dup_para_frac: float = Field(0.3, ge=0.0, le=1.0)
    gopher_min_doc_words: int = Field(50, ge=1)
    gopher_max_doc_words: int = Field(100_000, ge=1)
    gopher_min_stop_words: int = Field(2, ge=0, le=len(STOP_WORDS))
    c4_min_num_sentences: int = Field(5, ge=0)
    c4_min_words_per_line: int = Field(3, ge=0)
    fineweb_line_punct_thr: float = Field(0.12, ge=0.0, le=1.0)
    fineweb_short_line_thr: float = Field(0.67, ge=0.0, le=1.0)
    fineweb_char_dup_ratio: float = Field(0.01, ge=0.0, le=1.0)
    fineweb_new_line_ratio: float = Field(0.3, gt=0.0)

    @model_validator(mode="after")
    def _word_range(self) -> RulesSection:
        if self.gopher_max_doc_words < self.gopher_min_doc_words:
            raise ConfigError(
                f"rules.gopher_max_doc_words ({self.gopher_max_doc_words}) is below rules.gopher_min_doc_words "
                f"({self.gopher_min_doc_words})"
            )
        return self

    def active(self) -> tuple[str, ...]:
        """The enabled filters, in run order (none when ``enabled`` is false)."""
        if not self.enabled:
            return ()
        return tuple(name for name in RULE_NAMES if getattr(self, name))


def datatrove_filters(section: RulesSection) -> dict[str, Callable[[Document], bool | tuple[bool, str]]]:
    """datatrove's filter objects configured like ``section``, by rule name (all four, enabled or not)."""
    return {
        "gopher_repetition": GopherRepetitionFilter(
            dup_line_frac=section.gopher_dup_line_frac,
            dup_para_frac=section.gopher_dup_para_frac,
            top_n_grams=TOP_N_GRAMS,
            dup_n_grams=DUP_N_GRAMS,
        ).filter,
        "gopher_quality": GopherQualityFilter(
            min_doc_words=section.gopher_min_doc_words,
            max_doc_words=section.gopher_max_doc_words,
            min_stop_words=section.gopher_min_stop_words,
        ).filter,
        "c4": C4QualityFilter(
            min_num_sentences=section.c4_min_num_sentences,
            min_words_per_line=section.c4_min_words_per_line,
        ).filter,
        "fineweb_quality": FineWebQualityFilter(
            line_punct_thr=section.fineweb_line_punct_thr,
            short_line_thr=section.fineweb_short_line_thr,
            char_duplicates_ratio=section.fineweb_char_dup_ratio,
            new_line_ratio=section.fineweb_new_line_ratio,
        ).filter,
    }


def _dup_counts(items: list[str]) -> tuple[int, int]:
    """``(duplicate elements, their characters)``: every occurrence after an element's first counts."""
    distinct = set(items)
    return len(items) - len(distinct), sum(map(len, items)) - sum(map(len, distinct))


class _Words:
    """One document's words (datatrove's English word split) as integer ids, with per-distinct-word facts.

    ``orth`` holds spaCy's string hash per token; each distinct token is stripped as datatrove's ``strip_strings``
    does (whitespace tokens dropped), so ``vocab[ids]`` is exactly datatrove's word list."""

    __slots__ = ("ids", "vocab", "vocab_len", "counts", "n", "_prefix", "_glued")

    def __init__(self, orth: np.ndarray, strings):
        hashes, inverse = np.unique(orth, return_inverse=True)
        index: dict[str, int] = {}
        remap = np.fromiter(
            (index.setdefault(w, len(index)) if w else -1 for w in (strings[int(h)].strip() for h in hashes)),
            np.int64,
            len(hashes),
        )
        ids = remap[inverse.reshape(-1)]
        self.ids = ids[ids >= 0] if len(index) < len(hashes) else ids
        self.vocab = list(index)
        self.vocab_len = np.fromiter(map(len, self.vocab), np.int64, len(self.vocab))
        self.counts = np.bincount(self.ids, minlength=len(self.vocab))
        self.n = len(self.ids)
        self._prefix: np.ndarray | None = None
        self._glued: tuple[np.ndarray, np.ndarray] | None = None

    def offsets(self) -> np.ndarray:
        """Where each word starts in the words glued together, and the total length at the end."""
        if self._prefix is None:
            self._prefix = np.concatenate(([0], np.cumsum(self.vocab_len[self.ids])))
        return self._prefix

    def window_chars(self, n: int) -> np.ndarray:
        """Characters of the words of every n-word window (without separators)."""
        offsets = self.offsets()
        return offsets[n:] - offsets[:-n]

    def glued_ids(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, first)``: per n-word window an id of ``"".join`` of its words (datatrove's duplicated n-gram
        key: ``"ab"+"c"`` and ``"a"+"bc"`` are one), and per id its first window. The key is a polynomial hash
        of the glued characters modulo 2**64 (odd base, so windows hash from prefix sums) mixed with the length;
        distinct strings share a key with probability ~2**-64."""
        if self._glued is None:
            glued = "".join([self.vocab[i] for i in self.ids.tolist()])
            codes = np.frombuffer(glued.encode("utf-32-le"), np.uint32).astype(np.uint64)
            m = len(codes)
            power = np.cumprod(np.full(m + 1, _BASE, np.uint64))  # power[k] = B**(k+1) mod 2**64
            power = np.concatenate(([np.uint64(1)], power[:-1]))
            inverse = np.cumprod(np.full(m + 1, _BASE_INV, np.uint64))
            inverse = np.concatenate(([np.uint64(1)], inverse[:-1]))
            # weighted[j] = c_j * B**(m-1-j): prefix sums then give every window's hash times a power of B
            weighted = np.concatenate(([np.uint64(0)], np.cumsum(codes * power[m - 1 :: -1][:m], dtype=np.uint64)))
            self._glued = (weighted, inverse)
        weighted, inverse = self._glued
        offsets = self.offsets()
        start, end = offsets[:-n], offsets[n:]
        m = len(weighted) - 1
        with np.errstate(over="ignore"):
            key = (weighted[end] - weighted[start]) * inverse[m - end]
            key ^= (end - start).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        _, first, ids = np.unique(key, return_index=True, return_inverse=True)
        return ids.reshape(-1), first

    def ngram_ids(self, max_n: int) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(n, ids, first, count)`` for n = 2..max_n while there are n words: per window its n-gram's id
        (ids compare word tuples exactly), per id its first window and its number of windows."""
        current, width = self.ids, max(len(self.vocab), 1)
        for n in range(2, min(max_n, self.n) + 1):
            # (n-1)-gram id < windows and word id < width: the products stay exact in int64 below ~3e9 words
            pairs = current[:-1] * width + self.ids[n - 1 :]
            _, first, inverse, count = np.unique(pairs, return_index=True, return_inverse=True, return_counts=True)
            current = inverse.reshape(-1).astype(np.int64, copy=False)
            yield n, current, first, count


def _all_duplicate_chars(ids: np.ndarray, first: np.ndarray, chars: np.ndarray, n: int) -> int:
    """datatrove's ``find_all_duplicate`` on n-gram ids: walk the windows, a window whose n-gram was seen at a
    visited window adds its characters and skips ``n`` windows, any other is remembered and steps one."""
    repeat = first[ids] < np.arange(len(ids))
    if not repeat.any():
        return 0
    start = int(np.argmax(repeat))  # every window before the first repeat is visited and new
    seen = set(ids[:start].tolist())
    id_list, char_list = ids.tolist(), chars.tolist()
    total, idx, stop = 0, start, len(id_list)
    while idx < stop:
        g = id_list[idx]
        if g in seen:
            total += char_list[idx]
            idx += n
        else:
            seen.add(g)
            idx += 1
    return total


class RuleFilters:
    """The rule filters of a ``RulesSection``. The constructor is cheap; ``setup()`` loads the tokenizer (fused)
    or builds datatrove's filters; ``check(texts)`` returns one verdict per text (see the module docstring)."""

    def __init__(self, section: RulesSection):
        self.section = section
        self.active = section.active()
        self._filters: dict[str, Callable[[Document], bool | tuple[bool, str]]] | None = None
        self._tokenizer = None
        self._nlp = None
        self._orth = 0
        self._stop_words = frozenset(STOP_WORDS)

    def setup(self) -> None:
        """Load what the implementation needs (the spaCy tokenizer or datatrove's filters); idempotent."""
        if not self.active:
            return
        if self.section.implementation == "datatrove":
            if self._filters is None:
                self._filters = datatrove_filters(self.section)
        elif self._nlp is None:
            self._nlp = load_word_tokenizer(Languages.english).tokenizer  # spacy.blank("en") + sentencizer
            self._tokenizer = self._nlp.tokenizer
            from spacy.attrs import ORTH  # spaCy is slow to import; only the fused implementation needs it

            self._orth = ORTH

    def check(self, texts: list[str]) -> list[Verdict]:
        """``None`` per text that passes every enabled filter, else ``(rule, detail)`` of the first that fails."""
        if not self.active:
            return [None] * len(texts)
        self.setup()
        if self.section.implementation == "datatrove":
            return [self._check_datatrove(t) for t in texts]
        with self._nlp.memory_zone():  # spaCy's lexeme cache lives for one batch, then is freed
            return [self._check_fused(t) for t in texts]

    # -- datatrove --------------------------------------------------------------------------------------------------

    def _check_datatrove(self, text: str) -> Verdict:
        for name in self.active:
            res = self._filters[name](Document(text=text, id=""))  # a fresh document: C4 rewrites doc.text
            if res is True:
                continue
            keep, detail = res if isinstance(res, tuple) else (res, "")
            if not keep:
                return name, detail
        return None

    # -- fused ------------------------------------------------------------------------------------------------------

    def _check_fused(self, text: str) -> Verdict:
        cache: list[_Words] = []

        def words() -> _Words:  # tokenised on first use, at most once per document
            if not cache:
                cache.append(self._words(text))
            return cache[0]

        for name in self.active:
            detail = self._c4(text) if name == "c4" else getattr(self, "_" + name)(text, words)
            if detail is not None:
                return name, detail
        return None

    def _words(self, text: str) -> _Words:
        """datatrove's ``split_into_words`` for English (spaCy's tokens, stripped, whitespace tokens dropped), as
        ids: the token strings are read once per distinct token, not once per token."""
        try:
            doc = self._tokenizer(text)
        except Exception:
            if "IS_ALPHA" not in text:  # datatrove's workaround for the one string that breaks spaCy
                raise
            doc = self._tokenizer(text.replace("IS_ALPHA", ""))
        return _Words(doc.to_array(self._orth), doc.vocab.strings)

    def _gopher_repetition(self, text: str, get_words: Callable[[], _Words]) -> str | None:
        s = self.section
        if not text:
            return "empty"
        n_chars = len(text)
        paragraphs = _PARAGRAPHS.split(text.strip())
        dups, dup_chars = _dup_counts(paragraphs)
        if s.gopher_dup_para_frac and dups / len(paragraphs) > s.gopher_dup_para_frac:
            return "dup_para_frac"
        if dup_chars / n_chars > DUP_PARA_CHAR_FRAC:
            return "dup_para_char_frac"
        lines = _LINES.split(text)
        dups, dup_chars = _dup_counts(lines)
        if s.gopher_dup_line_frac and dups / len(lines) > s.gopher_dup_line_frac:
            return "dup_line_frac"
        if dup_chars / n_chars > DUP_LINE_CHAR_FRAC:
            return "dup_line_char_frac"
        words = get_words()
        for n, _, first, count in words.ngram_ids(max(n for n, _ in TOP_N_GRAMS)):
            # Counter.most_common(1): the highest count, ties to the n-gram seen first
            best = count.max()
            g = np.flatnonzero(count == best)
            start = first[g[np.argmin(first[g])]]
            length = int(words.window_chars(n)[start]) + n - 1  # " ".join of the n words
            if length * int(best) / n_chars > dict(TOP_N_GRAMS)[n]:
                return f"top_{n}_gram"
        for n, frac in DUP_N_GRAMS:
            if words.n < n:
                continue
            ids, first = words.glued_ids(n)
            if _all_duplicate_chars(ids, first, words.window_chars(n), n) / n_chars > frac:
                return f"duplicated_{n}_n_grams"
        return None

    def _gopher_quality(self, text: str, get_words: Callable[[], _Words]) -> str | None:
        s, words = self.section, get_words()
        vocab, counts = words.vocab, words.counts
        non_symbol = np.fromiter((not PUNCTUATION_SET.issuperset(w) for w in vocab), bool, len(vocab))
        n_ns = int(counts[non_symbol].sum())
        if n_ns < s.gopher_min_doc_words:
            return "gopher_short_doc"
        if n_ns > s.gopher_max_doc_words:
            return "gopher_long_doc"
        avg = float((counts * words.vocab_len)[non_symbol].sum()) / n_ns
        if avg < MIN_AVG_WORD_LENGTH:
            return "gopher_below_avg_threshold"
        if avg > MAX_AVG_WORD_LENGTH:
            return "gopher_above_avg_threshold"
        n_words = words.n
        if text.count("#") / n_words > MAX_SYMBOL_WORD_RATIO:
            return "gopher_too_many_hashes"
        if (text.count("...") + text.count("…")) / n_words > MAX_SYMBOL_WORD_RATIO:
            return "gopher_too_many_ellipsis"
        lines = text.splitlines()
        bullets = sum(s_.lstrip().startswith(("•", "-")) for s_ in lines)
        if bullets / len(lines) > MAX_BULLET_LINES_RATIO:
            return "gopher_too_many_bullets"
        ellipsis = sum(s_.rstrip().endswith(("...", "…")) for s_ in lines)
        if ellipsis / len(lines) > MAX_ELLIPSIS_LINES_RATIO:
            return "gopher_too_many_end_ellipsis"
        alpha = np.fromiter((any(map(str.isalpha, w)) for w in vocab), bool, len(vocab))
        if int(counts[alpha].sum()) / n_words < MIN_ALPHA_WORDS_RATIO:
            return "gopher_below_alpha_threshold"
        if s.gopher_min_stop_words and len(self._stop_words.intersection(vocab)) < s.gopher_min_stop_words:
            return "gopher_enough_stop_words"
        return None

    def _c4(self, text: str) -> str | None:
        """C4's line rules without rewriting the text; sentences are counted only when the kept lines alone
        do not reach the minimum."""
        min_words = self.section.c4_min_words_per_line
        kept = []
        for line in text.splitlines():
            line = line.strip()
            words = line.split()
            if len(line) > C4_MAX_WORD_LENGTH and any(len(w) > C4_MAX_WORD_LENGTH for w in words):
                continue
            line = CITATION_REGEX.sub("", line)
            if not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS):
                continue
            if len(words) < min_words:
                continue
            lower = line.lower()
            if "lorem ipsum" in lower:
                return "lorem_ipsum"
            if "javascript" in lower:
                continue
            if "{" in line:
                return "curly_bracket"
            if any(p in lower for p in POLICY_SUBSTRINGS):
                continue
            kept.append(line)
        need = self.section.c4_min_num_sentences
        if len(kept) >= need:  # every kept line holds at least one sentence
            return None
        if sum(len(split_into_sentences(line, Languages.english)) for line in kept) < need:
            return "too_few_sentences"
        return None

    def _fineweb_quality(self, text: str, get_words: Callable[[], _Words]) -> str | None:
        s = self.section
        lines = [line for line in text.split("\n") if line.strip() != ""]
        if not lines:
            return "empty"
        n = len(lines)
        if sum(line.endswith(_STOP_CHARS) for line in lines) / n < s.fineweb_line_punct_thr:
            return "line_punct_ratio"
        if sum(len(line) <= FINEWEB_SHORT_LINE_LENGTH for line in lines) / n > s.fineweb_short_line_thr:
            return "short_line_ratio"
        if _dup_counts(lines)[1] / len(text.replace("\n", "")) > s.fineweb_char_dup_ratio:
            return "char_dup_ratio"
        if text.count("\n") / get_words().n > s.fineweb_new_line_ratio:
            return "list_ratio"
        return None
