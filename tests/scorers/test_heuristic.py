"""Heuristic DataMan rater: each proxy on hand-made texts, the output contract, determinism."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from winnow.scorers.base import CRITERIA, CRITERION_COLUMNS, QUALITY_SCHEMA
from winnow.scorers.heuristic import (
    CALIBRATION,
    FEATURE_NAMES,
    OVERALL_WEIGHTS,
    RULES,
    HeuristicRater,
    criterion_scores,
    features_matrix,
    text_features,
)

PROSE = (
    "The river town grew slowly during the nineteenth century. Its first settlers were farmers who cleared the "
    "land along the banks and traded grain with merchants downstream. When the railway arrived in 1872, the town "
    "changed quickly: warehouses, a bank and two hotels were built within a decade, and the population doubled.\n\n"
    "Historians still debate why the boom ended. Some point to the floods of 1889, which destroyed much of the "
    "lower town, while others argue that the new highway simply moved trade elsewhere. Whatever the cause, the "
    "town today is a quiet place, although its old brick buildings attract visitors every summer."
)

BULLETS = (
    "- cheap flights\n- best deals\n- hotels\n- car hire\n- more offers\n- top 10 lists\n- weather\n"
    "- maps\n- login\n- deals of the day\n- reviews\n- photos\n- tips\n- cruises"
)

BOILERPLATE = (
    "We use cookies to improve your experience. By continuing to browse you accept our cookie policy. "
    "Click here to subscribe to our newsletter. Sign up now and log in to read more.\n"
    "Home page | Contact us | Privacy policy | Terms of use\n"
    "Copyright 2024 Example Media. All rights reserved. Follow us on social media. Click here to share this page."
)

MIXED_SCRIPTS = (
    "The meeting starts at nine. Встреча начинается в девять часов утра. 会议在上午九点开始，请准时到达。"
    "Please bring the documents. Пожалуйста, принесите документы с собой. 请带上所有的文件和资料。"
)

SENSITIVE = (
    "What the fuck is this shit, he shouted. That bitch and that asshole can go to hell, the bastard said, "
    "and then he kept swearing: fuck them, fuck this, what a fucking mess of shit."
)

CHAT = (
    "user1: lol\nuser2: hey whats up\nuser1: nm u?\nuser3: JOIN\nuser2: omg lol\nuser4: PART\nuser1: brb\n"
    "user2: k\nuser3: wanna chat?? lol\nuser1: idk\nuser2: haha ya\nuser4: JOIN\nuser1: lmao"
)


def rate(texts, **kw):
    return HeuristicRater(domain="keywords", **kw).rate(texts)


def col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def crit(text: str) -> dict[str, float]:
    scores = criterion_scores(features_matrix([text]))
    return {c: float(v[0]) for c, v in scores.items()}


def test_configuration_is_consistent():
    assert set(RULES) == set(CRITERIA) == set(OVERALL_WEIGHTS)
    for _, weights in RULES.values():
        assert set(weights) <= set(CALIBRATION)
    for name, (xs, ys) in CALIBRATION.items():
        assert name in FEATURE_NAMES
        assert len(xs) == len(ys) >= 2 and list(xs) == sorted(xs)
        assert all(1 <= y <= 5 for y in ys)


def test_gopher_repetition_features():
    f = dict(zip(FEATURE_NAMES, text_features("alpha beta gamma\nalpha beta gamma\ndelta epsilon"), strict=True))
    assert f["dup_line_frac"] == pytest.approx(1 / 3)
    assert f["dup_line_char_frac"] == pytest.approx(
        len("alpha beta gamma") / len("alpha beta gamma\n" * 2 + "delta epsilon")
    )
    once = dict(zip(FEATURE_NAMES, text_features(PROSE), strict=True))
    twice = dict(zip(FEATURE_NAMES, text_features(PROSE + "\n\n" + PROSE), strict=True))
    assert once["dup5_char_frac"] == 0 and once["dup_para_frac"] == 0
    assert twice["dup5_char_frac"] == pytest.approx(0.5, abs=0.01)  # the second copy repeats the first
    assert twice["dup_para_frac"] == pytest.approx(0.5)


def test_repetition_lowers_originality():
    repeated = "\n\n".join([PROSE] * 5)
    once, five = crit(PROSE), crit(repeated)
    assert once["originality"] >= 4.5
    assert five["originality"] <= 1.5
    assert five["originality"] < once["originality"]


def test_mixed_scripts_lower_language_consistency():
    assert crit(PROSE)["language_consistency"] >= 4.5
    assert crit(MIXED_SCRIPTS)["language_consistency"] <= 2.5
    german = (
        "Der Fluss war im Sommer ruhig, und die Kinder spielten jeden Tag am Ufer. Sie bauten kleine Boote aus "
        "Holz und ließen sie mit der Strömung treiben. Am Abend kamen die Eltern, um sie nach Hause zu holen, "
        "aber die Kinder wollten nie gehen, denn das Wasser war warm und die Sonne schien noch lange."
    )
    assert crit(german)["language_consistency"] >= 4.5  # one language, just not English
    mixed_lang = german[:150] + " " + PROSE[:300] + " " + german[150:]
    assert crit(mixed_lang)["language_consistency"] < crit(german)["language_consistency"]


def test_fragment_list_lowers_structural_standardization():
    prose, bullets = crit(PROSE), crit(BULLETS)
    assert prose["structural_standardization"] >= 4.5
    assert bullets["structural_standardization"] <= 2.0
    assert crit(CHAT)["structural_standardization"] < prose["structural_standardization"]


def test_boilerplate_lowers_semantic_density():
    assert crit(PROSE)["semantic_density"] >= 4.5
    assert crit(BOILERPLATE)["semantic_density"] <= 2.0


def test_word_list_lowers_sensitivity():
    assert crit(PROSE)["sensitivity"] == 5.0
    assert crit(SENSITIVE)["sensitivity"] <= 1.5
    war = PROSE + " The army was said to kill and murder civilians during the war."
    assert crit(war)["sensitivity"] >= 3.5  # violence terms in passing are a mild concern at most


def test_accuracy_and_coherence_proxies():
    prose, chat = crit(PROSE), crit(CHAT)
    assert chat["accuracy"] < prose["accuracy"] - 1.5  # chat spellings, lower-case sentence starts
    assert chat["coherence"] < prose["coherence"] - 1.5  # fragments, few function words
    garbled = "Th3 qu1ck br0wn f0x jumpz ov3r teh l@zy d0g!!! wh@t r u d01ng 2nite??? " * 3
    assert crit(garbled)["accuracy"] <= 2.0
    mojibake = PROSE.replace("e", "Ã©")
    assert crit(mojibake)["accuracy"] < prose["accuracy"] - 1.5


def test_overall_orders_clean_above_noisy():
    table = rate([PROSE, CHAT, BULLETS, BOILERPLATE, SENSITIVE])
    score = col(table, "quality_score")
    assert score[0] == score.max()
    assert score[0] >= 4.2 and score[1:].max() < 3.6  # quality_score is on the 1..5 scale
    assert col(table, "quality_overall")[0] == 5


def test_schema_range_and_types():
    texts = [PROSE, BULLETS, BOILERPLATE, MIXED_SCRIPTS, SENSITIVE, CHAT, "", "word", "   \n\n  "]
    table = rate(texts)
    assert table.schema == QUALITY_SCHEMA
    assert table.num_rows == len(texts)
    for name in (*CRITERION_COLUMNS, "quality_overall"):
        values = col(table, name)
        assert table.column(name).null_count == 0
        assert values.dtype == np.int8 and values.min() >= 1 and values.max() <= 5
    score = col(table, "quality_score")
    assert score.dtype == np.float32 and np.all((score >= 1) & (score <= 5))
    # an empty document is worthless, not unknown
    assert all(col(table, c)[6] == 1 for c in CRITERION_COLUMNS) and score[6] == 1
    assert set(table.column("quality_domain").to_pylist()) <= {
        "Medicine", "Finance", "Law", "Education", "Technology", "Entertainment", "Mathematics", "Coding",
        "Government", "Culture", "Transportation", "Retail E-commerce", "Telecommunication", "Agriculture", "Other",
    }  # fmt: skip


def test_deterministic_and_batch_independent():
    texts = [PROSE, BULLETS, CHAT, SENSITIVE]
    a, b = rate(texts), rate(texts)
    assert a.equals(b)
    single = pa.concat_tables([rate([t]) for t in texts])
    assert single.equals(a)  # a document's rating does not depend on its batch
    rev = rate(texts[::-1])
    assert rev.take(list(range(len(texts)))[::-1]).equals(a)


def test_empty_batch():
    table = rate([])
    assert table.schema == QUALITY_SCHEMA and table.num_rows == 0
    table = HeuristicRater(domain="keywords").rate([], np.zeros((0, 384), dtype=np.float32))
    assert table.num_rows == 0


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="domain="):
        HeuristicRater(domain="magic")
    with pytest.raises(ValueError, match="2 texts but 3 embeddings"):
        HeuristicRater(domain="keywords").rate(["a", "b"], np.zeros((3, 384), dtype=np.float32))


def test_rater_pickles_before_setup():
    import pickle

    rater = HeuristicRater(domain="keywords")
    clone = pickle.loads(pickle.dumps(rater))
    assert clone.rate([PROSE]).equals(rater.rate([PROSE]))
