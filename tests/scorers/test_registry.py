"""The rater backend registry: every built-in backend is registered with the metadata it declares, in a fixed
order; ``from_config`` builds the class the pipeline used to build by hand, with the same arguments and without
loading anything; ``uses_embeddings`` agrees with the rule the score stage used to spell out."""

from __future__ import annotations

import itertools
import pickle
from types import SimpleNamespace

import pytest

from winnow.core.errors import ConfigError
from winnow.embedding.embed import model_label
from winnow.embedding.section import EmbedSection
from winnow.scorers.backends import RATERS
from winnow.scorers.base import Rater
from winnow.scorers.heuristic import HeuristicRater
from winnow.scorers.llm import LLMRater, LLMSection
from winnow.scorers.student import StudentRater, StudentSection

#: what each built-in backend declares (besides ``order``)
EXPECTED = {
    "heuristic": {"cls": HeuristicRater, "needs_embeddings": False, "gpu": False, "section": None},
    "llm": {"cls": LLMRater, "needs_embeddings": False, "gpu": True, "section": "score.llm"},
    "student": {"cls": StudentRater, "needs_embeddings": True, "gpu": True, "section": "score.student"},
}
DOMAIN_MODES = ("auto", "embedding", "keywords")


def score_section(backend: str = "heuristic", domain: str = "auto", llm=None, student=None) -> SimpleNamespace:
    """A stand-in for the pipeline's ``score`` section (the scorers never import winnow.pipeline)."""
    return SimpleNamespace(backend=backend, domain=domain, llm=llm, student=student)


LLM = LLMSection(endpoint="http://127.0.0.1:9/v1", model_name="m")
STUDENT = StudentSection(model_dir="/nonexistent/student")


def full_score(backend: str, domain: str = "auto") -> SimpleNamespace:
    return score_section(backend, domain, llm=LLM, student=STUDENT)


def test_every_builtin_backend_is_registered_in_order():
    assert RATERS.names() == ("heuristic", "llm", "student")
    assert RATERS.kind == "rater backend" and RATERS.key == "score.backend"
    orders = [RATERS[n].meta["order"] for n in RATERS.names()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_declared_metadata(name):
    entry = RATERS[name]
    want = EXPECTED[name]
    assert entry.obj is want["cls"]
    assert issubclass(entry.obj, Rater) and entry.obj.name == name
    assert set(entry.meta) == {"order", "needs_embeddings", "gpu", "section"}
    for key in ("needs_embeddings", "gpu", "section"):
        assert entry.meta[key] == want[key], key
    # every backend builds itself; none relies on the base class's refusal
    assert "from_config" in vars(entry.obj)


def test_where_reads_the_metadata():
    assert RATERS.where(gpu=True) == ("llm", "student")
    assert RATERS.where(gpu=False) == ("heuristic",)
    assert RATERS.where(needs_embeddings=True) == ("student",)
    assert RATERS.where(section="score.llm") == ("llm",)


def test_unknown_backend_names_the_allowed_ones():
    with pytest.raises(ConfigError) as e:
        RATERS["nope"]
    msg = str(e.value)
    assert "score.backend" in msg and "'nope'" in msg
    assert all(n in msg for n in ("heuristic", "llm", "student"))


@pytest.mark.parametrize("domain", DOMAIN_MODES)
def test_from_config_heuristic(domain):
    embed = EmbedSection(model="bundled", device="cpu")
    embedder = object()  # passed through untouched (the run's Embedder)
    r = RATERS["heuristic"].obj.from_config(full_score("heuristic", domain), embed, embedder)
    assert type(r) is HeuristicRater
    assert r.embed is embed and r.embedder is embedder and r.domain == domain
    assert r.classifier is None  # nothing loaded before setup()
    r2 = RATERS["heuristic"].obj.from_config(full_score("heuristic", domain), embed)
    assert r2.embedder is None and r2.embed is embed


def test_from_config_llm():
    r = RATERS["llm"].obj.from_config(full_score("llm"), EmbedSection(), embedder=object())
    assert type(r) is LLMRater
    assert r.cfg == LLM and r.model is None and r.tokenizer is None  # nothing loaded before setup()
    assert pickle.loads(pickle.dumps(r)).cfg == LLM


@pytest.mark.parametrize("model", ["bundled", "/some/where/../models/minilm"])
def test_from_config_student(model):
    embed = EmbedSection(model=model)
    r = RATERS["student"].obj.from_config(full_score("student"), embed)
    assert type(r) is StudentRater
    assert r.cfg == STUDENT and r.embed_model == model_label(model)
    assert r.model is None  # the model directory is read in setup(), not here


@pytest.mark.parametrize("name", [n for n in EXPECTED if EXPECTED[n]["section"]])
def test_from_config_without_its_section_is_a_config_error(name):
    section = EXPECTED[name]["section"]
    score = full_score(name)
    setattr(score, section.split(".", 1)[1], None)
    with pytest.raises(ConfigError, match=section):
        RATERS[name].obj.from_config(score, EmbedSection())


def _old_rule(score) -> bool:
    """The rule ``ScoreStage.setup`` spelled out before the registry."""
    return score.backend == "student" or (score.backend == "heuristic" and score.domain != "keywords")


@pytest.mark.parametrize(("name", "domain"), list(itertools.product(EXPECTED, DOMAIN_MODES)))
def test_uses_embeddings_matches_the_stage_rule(name, domain):
    score = full_score(name, domain)
    cls = RATERS[name].obj
    assert cls.uses_embeddings(score) is _old_rule(score)
    if RATERS[name].meta["needs_embeddings"]:
        assert cls.uses_embeddings(score)


def test_base_rater_defaults():
    class Bare(Rater):
        def rate(self, texts, embeddings=None):
            raise AssertionError

    assert Bare.uses_embeddings(full_score("heuristic")) is False
    with pytest.raises(NotImplementedError):
        Bare.from_config(full_score("heuristic"), EmbedSection())
