"""The rater backend registry: the values of ``score.backend`` (besides ``none``).

A backend is a ``winnow.scorers.base.Rater`` subclass that registers itself in its own module::

    @RATERS.register("student", order=30, needs_embeddings=True, gpu=True, section="score.student")
    class StudentRater(Rater): ...

Metadata every backend declares:

* ``order``: its place in lists (the config's allowed values, messages), independent of import order;
* ``needs_embeddings``: it cannot rate without the documents' stored embeddings, whatever its settings (the
  answer for one ``score`` section is the class's ``uses_embeddings(score)``: the heuristic backend uses them
  unless ``score.domain`` is ``keywords``);
* ``gpu``: it runs a model that wants a GPU (the score stage asks for one unless ``embed.device`` is ``cpu``);
* ``section``: the config section the backend needs (``score.llm``), or None.

The class builds itself from the config with ``from_config(score, embed, embedder=None)``.
``winnow.scorers.backends`` imports the built-in backends, so importing ``RATERS`` from there gives all of them.
"""

from __future__ import annotations

from winnow.core.registry import Registry
from winnow.scorers.base import Rater

RATERS: Registry[type[Rater]] = Registry("rater backend", "score.backend", ordered=True)
