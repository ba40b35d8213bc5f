"""Domain classifier: nearest domain description in embedding space, keyword fallback."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import zstandard

from winnow.scorers.base import DOMAINS, QUALITY_SCHEMA
from winnow.scorers.domain_examples import DOMAIN_EXAMPLES
from winnow.scorers.domains import (
    _EXTRA_KEYWORDS,
    DOMAIN_DESCRIPTIONS,
    DOMAIN_NAMES,
    DomainClassifier,
    domain_similarities,
    embed_prototypes,
    keyword_domains,
    labelled_texts,
    looks_like_code,
    prototype_texts,
)
from winnow.scorers.heuristic import HeuristicRater

QUICKSTART = Path(__file__).resolve().parents[2] / "data" / "quickstart"

CLEAR = {
    "Medicine": (
        "Package leaflet: information for the patient. Read all of this leaflet carefully before you start taking "
        "this medicine. Take one 500 mg tablet twice a day with food. Possible side effects include nausea, "
        "headache and dizziness. If your symptoms get worse, talk to your doctor or pharmacist. Do not take more "
        "than the recommended dose and keep the tablets out of the reach of children."
    ),
    "Law": (
        "12.3 Indemnification. The Contractor shall indemnify and hold harmless the Client from and against any "
        "and all claims, damages, liabilities and legal costs arising out of any breach of this Agreement by the "
        "Contractor. This Agreement shall be governed by the laws of the State of New York, and the parties "
        "submit to the exclusive jurisdiction of its courts for any dispute or lawsuit under this contract."
    ),
    "Coding": (
        'import numpy as np\n\n\ndef moving_average(values, window=3):\n    """Return the moving average of a '
        'list."""\n    if window <= 0:\n        raise ValueError(\'window must be positive\')\n    kernel = '
        "np.ones(window) / window\n    return np.convolve(values, kernel, mode='valid')\n\n\nclass Counter:\n    "
        "def __init__(self):\n        self.count = 0\n\n    def increment(self):\n        self.count += 1\n"
        "        return self.count\n"
    ),
    "Agriculture": (
        "Wheat farmers across the region are expecting a bumper harvest this season after good autumn rains. "
        "Growers say soil moisture is the best in a decade, and many have planted more canola and barley. "
        "Cattle and sheep producers are also enjoying strong prices at the saleyards, although the cost of "
        "fertiliser and diesel continues to squeeze farm incomes in rural communities."
    ),
}


@pytest.fixture(scope="module")
def embedder():
    from winnow.embedding.embed import Embedder
    from winnow.pipeline.config import EmbedSection

    emb = Embedder(EmbedSection(device="cpu"))
    emb.setup()
    return emb


def test_descriptions_cover_every_domain():
    assert tuple(DOMAIN_DESCRIPTIONS) == DOMAIN_NAMES == tuple(DOMAINS.values())
    for desc, keywords in DOMAIN_DESCRIPTIONS.values():
        assert desc.endswith(".") and 1 <= desc.count(".") <= 3
        assert len(keywords) >= 5


def test_fallback_keywords_are_listed_once_per_domain():
    # the fallback counts a domain's DOMAIN_DESCRIPTIONS keywords and its _EXTRA_KEYWORDS together
    assert set(_EXTRA_KEYWORDS) == set(DOMAIN_NAMES)
    for name in DOMAIN_NAMES:
        words = [kw.lower() for kw in DOMAIN_DESCRIPTIONS[name][1] + _EXTRA_KEYWORDS[name]]
        assert len(words) == len(set(words)), name


def test_clear_texts_by_embedding(embedder):
    texts = list(CLEAR.values())
    clf = DomainClassifier(embedder)
    got = clf.classify(texts, embedder.encode(texts))
    assert got == list(CLEAR)


def test_rater_uses_embeddings_and_caches_prototypes(embedder):
    texts = list(CLEAR.values())
    rater = HeuristicRater(embedder=embedder)
    rater.setup()
    table = rater.rate(texts, embedder.encode(texts))
    assert table.schema == QUALITY_SCHEMA
    assert table.column("quality_domain").to_pylist() == list(CLEAR)
    other = DomainClassifier(embedder)
    other.setup()
    assert other.prototypes is rater.classifier.prototypes  # embedded once per process and model


def test_prototypes_are_not_reused_under_another_thread_count(monkeypatch):
    """The process's prototype cache is keyed by the torch thread count too: a matrix product sums in another order
    with another count, and a run (or a test before it) that embedded the prototypes with 1 thread once handed
    them to a 2-thread run in the same process, whose domains then differed from a fresh process's."""
    import torch

    from winnow.embedding.embed import Embedder
    from winnow.pipeline.config import EmbedSection
    from winnow.scorers import domains

    monkeypatch.setattr(domains, "_PROTOTYPE_CACHE", {})
    before = torch.get_num_threads()
    try:
        got = {}
        for threads in (1, 2, 1):
            emb = Embedder(EmbedSection(device="cpu"), torch_threads=threads)
            clf = DomainClassifier(emb)
            clf.setup()
            fresh = domains.embed_prototypes(emb)  # computed now, under this thread count
            np.testing.assert_array_equal(clf.prototypes, fresh)
            got.setdefault(threads, clf.prototypes)
            assert clf.prototypes is got[threads]  # still cached per thread count
        assert len(domains._PROTOTYPE_CACHE) == 2
    finally:
        torch.set_num_threads(before)


def test_keyword_fallback():
    assert keyword_domains(list(CLEAR.values())) == list(CLEAR)
    assert keyword_domains(["hello there, see you tomorrow", ""]) == ["Other", "Other"]


def test_rater_without_embeddings_falls_back_to_keywords():
    rater = HeuristicRater(domain="keywords")
    table = rater.rate(list(CLEAR.values()))
    assert table.column("quality_domain").to_pylist() == list(CLEAR)
    assert rater.embedder is None  # no model loaded


def test_embedding_errors(embedder):
    clf = DomainClassifier(embedder)
    with pytest.raises(ValueError, match="same model"):
        clf.classify(["a", "b"], np.zeros((2, 7), dtype=np.float32))
    with pytest.raises(ValueError, match="2 texts but 1 embeddings"):
        clf.classify(["a", "b"], np.zeros((1, 384), dtype=np.float32))
    assert clf.classify([], np.zeros((0, 384), dtype=np.float32)) == []
    with pytest.raises(ValueError, match="needs the documents' embeddings"):
        HeuristicRater(embedder=embedder, domain="embedding").rate(["some text"])


def test_low_similarity_is_other(embedder):
    clf = DomainClassifier(embedder, min_similarity=2.0)  # nothing reaches a cosine of 2
    texts = list(CLEAR.values())
    expected = ["Coding" if d == "Coding" else "Other" for d in CLEAR]  # code is recognised by its form
    assert clf.classify(texts, embedder.encode(texts)) == expected


CODE = [
    "function fetchUsers(url) {\n  return fetch(url)\n    .then(res => res.json())\n    .then(data => "
    "data.users.map(u => u.name));\n}\nconst names = await fetchUsers('/api/users');\nconsole.log(names);",
    "#include <stdio.h>\nint main(void) {\n    int total = 0;\n    for (int i = 0; i < 10; i++) {\n        "
    'total += i;\n    }\n    printf("%d\\n", total);\n    return 0;\n}',
    "SELECT customer_id, SUM(amount) AS total FROM orders WHERE created_at > '2024-01-01' GROUP BY customer_id "
    "ORDER BY total DESC;",
]


def test_code_by_form(embedder):
    assert all(looks_like_code(t) for t in CODE + [CLEAR["Coding"]])
    assert not any(looks_like_code(t) for d, t in CLEAR.items() if d != "Coding")
    prose = (
        "The function of the committee is to return a report to the board (see section 3) within a month; its "
        "members are appointed by the minister and public comments are invited."
    )
    assert not looks_like_code(prose)
    assert DomainClassifier(embedder).classify(CODE, embedder.encode(CODE)) == ["Coding"] * len(CODE)
    assert keyword_domains(CODE) == ["Coding"] * len(CODE)


def test_examples_cover_every_domain():
    assert tuple(DOMAIN_EXAMPLES) == DOMAIN_NAMES
    every = [t for texts in DOMAIN_EXAMPLES.values() for t in texts]
    assert len(every) == len(set(every))  # no text stands for two domains
    assert all(len(texts) >= 6 for texts in DOMAIN_EXAMPLES.values())
    texts, labels = labelled_texts()
    descs, keywords = prototype_texts()
    assert texts[:15] == descs and texts[15:30] == keywords and texts[30:] == every
    assert labels.tolist() == [*range(15), *range(15), *(i for i, t in enumerate(DOMAIN_EXAMPLES.values()) for _ in t)]


class _OneHotEmbedder:
    """Text → fixed vector in d = 3: a description e0, a keyword list e1, example j of its domain (cos t_j, 0, sin t_j)
    with t_j = 0.1 (j + 1), so example j's cosine with e0 is cos t_j, falling with j."""

    def encode(self, texts):
        descs, keywords = prototype_texts()
        pos = {t: j for ex in DOMAIN_EXAMPLES.values() for j, t in enumerate(ex)}
        rows = []
        for t in texts:
            if t in descs:
                rows.append([1.0, 0, 0])
            elif t in keywords:
                rows.append([0, 1.0, 0])
            else:
                a = 0.1 * (pos[t] + 1)
                rows.append([np.cos(a), 0, np.sin(a)])
        return np.array(rows, dtype=np.float32) * 3.0  # not normalised: embed_prototypes normalises


def test_similarity_is_mean_of_top3_of_a_domains_texts():
    vecs = embed_prototypes(_OneHotEmbedder())
    _, labels = labelled_texts()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-6)
    docs = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], dtype=np.float32)
    sims = domain_similarities(docs @ vecs.T, labels)
    assert sims.shape == (3, 15)
    # e0: the description (1), then examples 0 and 1 (cos 0.1, cos 0.2); e1: the keyword list (1), then zeros
    np.testing.assert_allclose(sims[0], (1 + np.cos(0.1) + np.cos(0.2)) / 3, rtol=1e-6)
    np.testing.assert_allclose(sims[1], 1 / 3, rtol=1e-6)
    # e2: the three examples with the largest angle, j = m-1, m-2, m-3, per domain's m examples
    for i, name in enumerate(DOMAIN_NAMES):
        m = len(DOMAIN_EXAMPLES[name])
        np.testing.assert_allclose(sims[2, i], np.mean([np.sin(0.1 * j) for j in (m, m - 1, m - 2)]), rtol=1e-5)


def _quickstart_groups(per_group: int = 6) -> dict[str, tuple[tuple[str, ...], list[str]]]:
    """Documents of the bundled quickstart corpus whose DataMan domain is clear, the first ``per_group`` of each."""
    with gzip.open(QUICKSTART / "genesis.jsonl.gz", "rt") as f:
        genesis = [json.loads(line) for line in f]
    with open(QUICKSTART / "speeches.jsonl") as f:
        speeches = [json.loads(line) for line in f]
    with zstandard.ZstdDecompressor().stream_reader(open(QUICKSTART / "masc.jsonl.zst", "rb")) as raw:
        masc = [json.loads(line) for line in io.TextIOWrapper(raw, encoding="utf-8")]
    reviews = pl.read_parquet(QUICKSTART / "reviews.parquet").to_dicts()
    scenes = pl.read_parquet(QUICKSTART / "shakespeare.parquet").to_dicts()

    def pick(rows, key):
        return [r["text"] for r in rows if key in r["id"]][:per_group]

    return {
        "government": (("Government",), pick(speeches, "/inaugural/")),
        "religion": (("Culture",), pick(genesis, "/english-kjv/") + pick(genesis, "/english-web/")),
        "film reviews": (("Entertainment",), pick(reviews, "/movie_reviews/")),
        "product reviews": (("Retail E-commerce",), pick(reviews, "/product_reviews/")),
        "fiction": (("Entertainment", "Culture"), pick(scenes, "/shakespeare/")),
        "legal": (("Law",), pick(masc, "court-transcript")),
    }


#: the issue's target on nltk_data (bench/domains.py); on these 38 documents the classifier with one prototype per
#: domain (description and keywords only) reached 71%, the shipped one 97%
MIN_MACRO = 0.85


def test_clear_domains_of_the_quickstart_corpus(embedder):
    groups = _quickstart_groups()
    assert [len(t) for _, t in groups.values()] == [6, 12, 6, 6, 6, 2]  # the quickstart has 2 court transcripts
    clf = DomainClassifier(embedder)
    acc = {}
    for name, (accepted, texts) in groups.items():
        got = clf.classify(texts, embedder.encode(texts))
        acc[name] = np.mean([d in accepted for d in got])
    assert np.mean(list(acc.values())) >= MIN_MACRO, acc
