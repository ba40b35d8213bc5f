"""The quality-rater interface and the DataMan vocabulary (DESIGN §3.6).

A ``Rater`` turns a batch of texts (and, when available, their stored embeddings) into the quality columns of
the column contract: ``quality_<criterion>`` int8 1..5 for the 13 criteria, ``quality_overall`` int8 1..5,
``quality_score`` float32 (continuous, on the same 1..5 scale as the ratings, higher is better, whatever the
backend, so prune thresholds carry over between backends) and ``quality_domain`` (one of the 15 domain names).
A rating that could not be obtained (e.g. a malformed LLM answer) is null, never a guess.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from winnow.embedding.embed import Embedder
from winnow.embedding.section import EmbedSection

#: the 13 DataMan criteria, in prompt order (the 14th rating is the overall score)
CRITERIA: tuple[str, ...] = (
    "accuracy",
    "coherence",
    "language_consistency",
    "semantic_density",
    "knowledge_novelty",
    "topic_focus",
    "creativity",
    "professionalism",
    "style_consistency",
    "grammatical_diversity",
    "structural_standardization",
    "originality",
    "sensitivity",
)

#: DataMan domain letters and names
DOMAINS: dict[str, str] = {
    "A": "Medicine",
    "B": "Finance",
    "C": "Law",
    "D": "Education",
    "E": "Technology",
    "F": "Entertainment",
    "G": "Mathematics",
    "H": "Coding",
    "I": "Government",
    "J": "Culture",
    "K": "Transportation",
    "L": "Retail E-commerce",
    "M": "Telecommunication",
    "N": "Agriculture",
    "O": "Other",
}

CRITERION_COLUMNS: tuple[str, ...] = tuple(f"quality_{c}" for c in CRITERIA)

QUALITY_SCHEMA = pa.schema(
    [*(pa.field(c, pa.int8()) for c in CRITERION_COLUMNS)]
    + [
        pa.field("quality_overall", pa.int8()),
        pa.field("quality_score", pa.float32()),
        pa.field("quality_domain", pa.string()),
    ]
)


class Rater(ABC):
    """Rates documents on the DataMan criteria.

    Constructors are cheap; models, clients and word lists load in ``setup()`` so raters pickle to workers.
    """

    name: str = "rater"

    @classmethod
    def from_config(cls, score: Any, embed: EmbedSection, embedder: Embedder | None = None) -> Rater:
        """The rater the pipeline runs for these config sections (constructed cheaply; ``setup()`` loads models).

        Args:
            score: the ``score`` config section (``backend``, ``domain``, ``llm``, ``student``).
            embed: the ``embed`` config section.
            embedder: the run's embedder, for raters that embed (optional: they build their own from ``embed``).
        """
        raise NotImplementedError(f"{cls.__name__} cannot be built from the config")

    @classmethod
    def uses_embeddings(cls, score: Any) -> bool:
        """Whether the rater built for the ``score`` section reads the documents' stored embeddings (then the
        embed stage must have run)."""
        return False

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models or open clients (idempotent)."""

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Release what ``setup`` acquired."""

    @abstractmethod
    def rate(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> pa.Table:
        """Rate a batch.

        Args:
            texts: the documents.
            embeddings: their L2-normalised embeddings ``[len(texts), d]`` when the embed stage ran, else None.

        Returns:
            A table with ``QUALITY_SCHEMA`` and ``len(texts)`` rows, in input order; null where a rating is missing.
        """


def empty_quality_table(n: int) -> pa.Table:
    """A table of ``n`` rows with every quality column null (the shape of 'no rating')."""
    return pa.table([pa.nulls(n, f.type) for f in QUALITY_SCHEMA], schema=QUALITY_SCHEMA)
