"""Every built-in rater backend, registered: import ``RATERS`` from here (not from ``winnow.scorers.registry``)
to see them all.

The config's allowed ``score.backend`` values are ``("none", *RATERS.names())``; the score stage builds its rater
with ``RATERS[name].obj.from_config(score, embed, embedder)``. A new backend is one module that registers its
class (see ``winnow.scorers.registry``), one import line here and its test.
"""

from __future__ import annotations

from winnow.scorers.heuristic import HeuristicRater
from winnow.scorers.llm import LLMRater
from winnow.scorers.registry import RATERS
from winnow.scorers.student import StudentRater

__all__ = ["RATERS", "HeuristicRater", "LLMRater", "StudentRater"]
