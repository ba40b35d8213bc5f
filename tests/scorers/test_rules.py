"""The rule filters (scorers/rules.py): the fused implementation against datatrove's own filters (the oracle),
decision by decision on a varied generated corpus; one document built to trip each rule; disabled filters; the
config section's validation."""

from __future__ import annotations

import inspect
import random

import pytest
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from pydantic import ValidationError

from winnow.core.errors import ConfigError
from winnow.scorers.rules import RULE_NAMES, RuleFilters, RulesSection

# -- building blocks ------------------------------------------------------------------------------------------------

SUBJECTS = [
    "The old harbour master",
    "A young engineer from the valley",
    "Our neighbours across the river",
    "The committee of local farmers",
    "Every student in the third year",
    "The small museum near the station",
    "A careful reader of history",
    "The village baker",
    "Two travelling musicians",
    "The regional council",
    "A retired schoolteacher",
    "The night nurse on the ward",
]
VERBS = [
    "argued that",
    "wrote in a letter that",
    "explained to the visitors that",
    "reminded everyone that",
    "noticed with some surprise that",
    "was convinced that",
    "told the newspaper that",
    "repeated once more that",
]
CLAUSES = [
    "the bridge would have to be rebuilt before the winter storms arrived",
    "nobody had checked the accounts since the spring of that year",
    "the new road had changed the life of the town more than anyone expected",
    "the oldest maps showed a second well behind the church",
    "the orchard produced twice as many apples after the wet summer",
    "a quiet evening with a good book was worth more than a trip to the city",
    "the price of bread had risen with the cost of flour and fuel",
    "the children learned to swim in the lake below the mill",
    "the library would stay open late on Thursdays during the exams",
    "the ferry to the island ran only when the weather was calm",
    "several letters from the war had been found in the attic",
    "the choir needed more voices for the concert at Easter",
]


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(CLAUSES)}."


def good_lines(k: int, seed: int = 0) -> list[str]:
    """``k`` distinct natural sentences, one per line."""
    rng, out = random.Random(seed), []
    while len(out) < k:
        s = sentence(rng)
        if s not in out:
            out.append(s)
    return out


GOOD = "\n".join(good_lines(8))

BOILERPLATE = [
    "Home | About | Contact",
    "Privacy Policy and Terms of Use apply to this website.",
    "This site uses cookies to improve your experience.",
    "Please enable JavaScript to view the comments.",
    "Click here to subscribe",
    "Copyright 2021 All rights reserved",
    "Share this:",
    "Read more...",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "function f() { return 1; }",
    "- first item on the list",
    "• second item",
    "#hashtag #another #tags",
    "12 34 56 78 90 11 22",
    "See the reference above.[1]",
    "It was cited often.[citation needed]",
    "The end...",
    "Wait for it…",
    "Tervetuloa kotiin, sanoi vanha mies hiljaa.",
    "Det var en gång en liten stuga vid sjön.",
    'He said: "it is done"',
    "Is that all?",
    "Yes!",
    "",
    "   ",
    "\t",
    "x" * 1200 + " end.",
]


def varied_corpus(n: int = 70, seed: int = 7) -> list[str]:
    """Documents mixing sentences, boilerplate, repeated lines/paragraphs/phrases, short lines, odd separators."""
    rng = random.Random(seed)
    docs = ["", "   \n  ", "Short.", GOOD, GOOD.replace("\n", "\r\n"), GOOD.replace("\n", " ")]
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 14)):
            r = rng.random()
            if r < 0.55:
                parts.append(" ".join(sentence(rng) for _ in range(rng.randint(1, 3))))
            elif r < 0.8:
                parts.append(rng.choice(BOILERPLATE))
            elif r < 0.9 and parts:
                parts.append(rng.choice(parts))  # a repeated line or paragraph
            else:
                parts.append(" ".join(rng.choice(CLAUSES).split()[: rng.randint(1, 6)]))  # a short fragment
        sep = rng.choice(["\n", "\n", "\n\n", " ", "\n\n\n"])
        docs.append(sep.join(parts))
    return docs


def check(texts: list[str], implementation: str = "fused", **kw) -> list:
    return RuleFilters(RulesSection(implementation=implementation, **kw)).check(texts)


CORPUS = varied_corpus()


# -- fused == datatrove ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("only", [None, *RULE_NAMES])
def test_fused_matches_datatrove_on_a_varied_corpus(only):
    flags = {} if only is None else {r: r == only for r in RULE_NAMES}
    fused = check(CORPUS, "fused", **flags)
    oracle = check(CORPUS, "datatrove", **flags)
    mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(fused, oracle, strict=True)) if a != b]
    assert mismatches == []
    # the corpus exercises both outcomes of every filter
    assert any(v is None for v in oracle) and any(v is not None for v in oracle)
    if only is not None:
        assert {v[0] for v in oracle if v is not None} == {only}


def test_the_corpus_hits_many_reasons():
    reasons = set()
    for only in RULE_NAMES:
        reasons |= {v for v in check(CORPUS, **{r: r == only for r in RULE_NAMES}) if v is not None}
    assert len(reasons) >= 10, reasons


# -- one document per rule ------------------------------------------------------------------------------------------


COMMON = (
    "the of and to that with have be in on for at by from into over under about after before while when where "
    "people town river house garden winter summer morning evening letter story school market bridge window road "
    "farmer teacher doctor child mother father friend neighbour visitor stranger captain writer singer builder "
    "walked carried opened closed painted built found lost remembered noticed answered followed promised "
    "quietly slowly early late often never always nearly almost suddenly carefully gladly "
    "green heavy bright narrow ancient small large warm cold empty crowded distant familiar gentle "
    "bread apples coffee paper stones boats lamps chairs books horses fields clouds"
).split()
LONG = (
    "internationalization considerations notwithstanding responsibilities understandably "
    "characteristically telecommunications environmentalists extraordinarily misunderstandings "
    "counterproductive institutionalized"
).split()
NO_STOP = [w for w in COMMON if w not in {"the", "of", "and", "to", "that", "with", "have", "be"}]


def distinct_lines(k: int, seed: int = 1, vocab: list[str] = COMMON, words: int = 12) -> list[str]:
    """``k`` lines of ``words`` random words each, capitalised and ending in a full stop: no shared 5-grams."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(vocab) for _ in range(words)).capitalize() + "." for _ in range(k)]


PHRASE = "in the middle of the cold and windy night"
TRIPS = {
    # every line distinct, but a 9-word phrase shared by all of them: duplicated 5-grams
    ("gopher_repetition", "duplicated_5_n_grams"): "\n".join(f"{s[:-1]} {PHRASE}." for s in distinct_lines(8)),
    ("gopher_repetition", "dup_line_frac"): "\n".join(distinct_lines(6) + ["Yes it is so."] * 5),
    ("gopher_repetition", "dup_para_frac"): "\n\n".join(distinct_lines(4) + ["\n".join(distinct_lines(2, 5))] * 4),
    ("gopher_quality", "gopher_short_doc"): "\n".join(distinct_lines(5, words=8)),
    ("gopher_quality", "gopher_enough_stop_words"): "\n".join(distinct_lines(8, vocab=NO_STOP)),
    ("gopher_quality", "gopher_below_alpha_threshold"): GOOD + "\n" + " ".join(str(i) for i in range(400)) + ".",
    ("gopher_quality", "gopher_too_many_hashes"): GOOD + "\n" + " ".join(f"#tag{i}" for i in range(40)) + ".",
    # three of eight lines end in an ellipsis; C4 still keeps five sentences
    ("gopher_quality", "gopher_too_many_end_ellipsis"): "\n".join(
        [s[:-1] + "..." for s in distinct_lines(3, 4)] + distinct_lines(5)
    ),
    ("gopher_quality", "gopher_too_many_bullets"): "\n".join("- " + s for s in distinct_lines(8)),
    ("gopher_quality", "gopher_above_avg_threshold"): "\n".join(distinct_lines(8, vocab=LONG + ["the", "of"])),
    ("c4", "too_few_sentences"): "\n".join(distinct_lines(4, words=16)),
    ("c4", "lorem_ipsum"): GOOD + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.",
    ("c4", "curly_bracket"): GOOD + "\nThe function returns {x} to the caller.",
    # five long lines end with a full stop, the other 40 do not: 5/45 < 0.12
    ("fineweb_quality", "line_punct_ratio"): "\n".join(distinct_lines(5) + [s[:-1] for s in distinct_lines(40, 2)]),
    ("fineweb_quality", "short_line_ratio"): "\n".join(distinct_lines(6) + distinct_lines(20, 9, words=2)),
    ("fineweb_quality", "char_dup_ratio"): "\n".join(distinct_lines(10) + [distinct_lines(10)[3]]),
    ("fineweb_quality", "list_ratio"): "\n\n\n\n".join(distinct_lines(8, words=8)),
}
#: the trips that fail only their own rule: with it disabled the document passes
EXACT = {
    ("gopher_repetition", "duplicated_5_n_grams"),
    ("gopher_quality", "gopher_short_doc"),
    ("gopher_quality", "gopher_enough_stop_words"),
    ("gopher_quality", "gopher_too_many_end_ellipsis"),
    ("c4", "too_few_sentences"),
    ("c4", "lorem_ipsum"),
    ("c4", "curly_bracket"),
    ("fineweb_quality", "line_punct_ratio"),
    ("fineweb_quality", "short_line_ratio"),
    ("fineweb_quality", "char_dup_ratio"),
    ("fineweb_quality", "list_ratio"),
}


def test_a_good_document_passes_everything():
    assert check([GOOD]) == [None]
    assert check([GOOD], "datatrove") == [None]


@pytest.mark.parametrize("expected", list(TRIPS), ids=lambda e: f"{e[0]}:{e[1]}")
def test_each_rule_trips_on_its_document(expected):
    text = TRIPS[expected]
    assert check([text], "datatrove") == [expected]
    assert check([text]) == [expected]
    if expected in EXACT:
        off = {expected[0]: False}
        assert check([text], **off) == [None]
        assert check([text], "datatrove", **off) == [None]


def test_exposed_thresholds_reach_both_implementations():
    long_doc = {"gopher_max_doc_words": 60}
    assert check([GOOD], **long_doc) == [("gopher_quality", "gopher_long_doc")]
    assert check([GOOD], "datatrove", **long_doc) == [("gopher_quality", "gopher_long_doc")]
    # eight kept lines: C4 passes with 8 sentences required and fails with 9
    for impl in ("fused", "datatrove"):
        assert check([GOOD], impl, c4_min_num_sentences=8) == [None]
        assert check([GOOD], impl, c4_min_num_sentences=9) == [("c4", "too_few_sentences")]
        assert check([TRIPS[("c4", "too_few_sentences")]], impl, c4_min_num_sentences=4) == [None]


def test_c4_counts_sentences_not_lines():
    # four lines, the last holding two sentences: five sentences in all
    text = "\n".join(distinct_lines(3) + [distinct_lines(5, 3)[0] + " " + distinct_lines(5, 3)[1]])
    assert check([text], "datatrove") == [None]
    assert check([text]) == [None]


def test_c4_line_rules_drop_lines_not_the_document():
    # five sentences, but one line mentions javascript and one a cookie policy: three lines remain
    lines = distinct_lines(3) + [
        "Please enable JavaScript in your browser to read the comments below.",
        "By staying here you accept the use of cookies on the site.",
    ]
    assert check(["\n".join(lines)], "datatrove") == [("c4", "too_few_sentences")]
    assert check(["\n".join(lines)]) == [("c4", "too_few_sentences")]


def test_duplicated_n_grams_compare_the_words_glued_together():
    # datatrove keys a duplicated n-gram by "".join(words): six different cuts of one string repeat 6-grams
    # although no word tuple repeats
    cuts = [
        "sunri seo vert hehi ll s a ndthesea.",
        "s un riseov erthehi lls a n dthesea.",
        "sunrise o verthehi ll sand t hese a.",
        "sunri seo verth ehi llsan dth e sea.",
        "s un ris eoverth ehil lsand th esea.",
        "s u nriseov e rthehi lls andthe sea.",
    ]
    text = "\n".join(distinct_lines(3) + cuts)
    words = text.replace(".", " .").split()
    grams = [tuple(words[i : i + 5]) for i in range(len(words) - 4)]
    assert len(set(grams)) == len(grams)
    only = {"gopher_quality": False, "c4": False, "fineweb_quality": False}
    assert check([text], "datatrove", **only) == [("gopher_repetition", "duplicated_6_n_grams")]
    assert check([text], **only) == [("gopher_repetition", "duplicated_6_n_grams")]


def test_the_text_is_never_modified():
    texts = [TRIPS[("c4", "too_few_sentences")], GOOD + "\nno terminal punctuation here"]
    copy = list(texts)
    RuleFilters(RulesSection(implementation="datatrove")).check(texts)
    RuleFilters(RulesSection()).check(texts)
    assert texts == copy


def test_fused_is_deterministic_and_batch_independent():
    f = RuleFilters(RulesSection())
    whole = f.check(CORPUS)
    assert f.check(CORPUS) == whole
    assert [v for i in range(0, len(CORPUS), 7) for v in f.check(CORPUS[i : i + 7])] == whole


# -- disabled filters -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("off", RULE_NAMES)
def test_a_disabled_filter_never_fires(off):
    fused = check(CORPUS, **{off: False})
    assert all(v is None or v[0] != off for v in fused)
    assert fused == check(CORPUS, "datatrove", **{off: False})
    # a document that fails only the disabled filter passes
    for expected in EXACT:
        if expected[0] == off:
            assert check([TRIPS[expected]], **{off: False}) == [None]


@pytest.mark.parametrize("impl", ["fused", "datatrove"])
def test_all_off_or_not_enabled_passes_everything(impl):
    bad = list(TRIPS.values()) + ["", "   "]
    assert check(bad, impl, enabled=False) == [None] * len(bad)
    assert check(bad, impl, **{r: False for r in RULE_NAMES}) == [None] * len(bad)
    assert RulesSection(enabled=False).active() == ()
    assert RulesSection(c4=False).active() == ("gopher_repetition", "gopher_quality", "fineweb_quality")


def test_empty_texts_fail_the_first_filter():
    assert check(["", "  \n "]) == [("gopher_repetition", "empty"), ("gopher_quality", "gopher_short_doc")]
    assert check(["", "  \n "], "datatrove") == check(["", "  \n "])
    assert check([]) == []


# -- the section ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"implementation": "spacy"},
        {"gopher_dup_line_frac": 1.5},
        {"gopher_dup_para_frac": -0.1},
        {"gopher_min_doc_words": 0},
        {"gopher_min_stop_words": 9},
        {"c4_min_num_sentences": -1},
        {"fineweb_new_line_ratio": 0},
        {"fineweb_short_line_thr": 2},
        {"gopher_min_doc_words": True},
        {"c4_typo": True},
    ],
)
def test_section_rejects_bad_values(kw):
    with pytest.raises(ValidationError):
        RulesSection(**kw)


def test_section_rejects_a_word_range_upside_down():
    with pytest.raises((ValidationError, ConfigError), match="gopher_max_doc_words"):
        RulesSection(gopher_min_doc_words=100, gopher_max_doc_words=99)


def test_section_defaults_are_datatrove_defaults_and_documented():
    s = RulesSection()
    assert (s.enabled, s.implementation) == (True, "fused")
    assert s.active() == RULE_NAMES
    ours = {
        GopherRepetitionFilter: {"dup_line_frac": s.gopher_dup_line_frac, "dup_para_frac": s.gopher_dup_para_frac},
        GopherQualityFilter: {
            "min_doc_words": s.gopher_min_doc_words,
            "max_doc_words": s.gopher_max_doc_words,
            "min_stop_words": s.gopher_min_stop_words,
        },
        C4QualityFilter: {"min_num_sentences": s.c4_min_num_sentences, "min_words_per_line": s.c4_min_words_per_line},
        FineWebQualityFilter: {
            "line_punct_thr": s.fineweb_line_punct_thr,
            "short_line_thr": s.fineweb_short_line_thr,
            "char_duplicates_ratio": s.fineweb_char_dup_ratio,
            "new_line_ratio": s.fineweb_new_line_ratio,
        },
    }
    for cls, values in ours.items():
        params = inspect.signature(cls.__init__).parameters
        assert values == {k: params[k].default for k in values}, cls.__name__
    assert all(f.description for f in RulesSection.model_fields.values())
