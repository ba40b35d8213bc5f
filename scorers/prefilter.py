"""The pre-filters' config: what every pretraining team removes before anything model-based.

``prefilter`` in the run config turns the block on (absent: off). Each part can be switched off on its own:

* ``lang``: language identification with a model installed from a package (``lang``, ``lang_score`` columns;
  documents outside ``keep`` or below ``min_score`` are dropped: ``drop_reason = lang``);
* ``rules``: datatrove's Gopher repetition, Gopher quality, C4 and FineWeb quality filters (``drop_reason`` = the
  filter, ``filter_detail`` = datatrove's reason);
* ``exact``: exact duplicates of normalised text (``exact_duplicate``);
* ``minhash``: MinHash-LSH near-duplicates on datatrove's MinHash steps (``minhash_duplicate``).

Order: language first (the rule filters' word lists and thresholds are English), then the rules on the documents
left, then exact and MinHash dedup over the survivors of both. Filtered documents keep their row in ``curated/``
with ``keep = false``; they are not embedded, clustered or scored.
"""

from __future__ import annotations

from pydantic import Field

from winnow.core.section import Section
from winnow.scorers.lang import LangSection
from winnow.scorers.rules import RULE_NAMES, RulesSection
from winnow.scorers.textdedup import ExactDedupSection, MinhashSection

#: every ``drop_reason`` a pre-filter can give, in the order they apply
PREFILTER_REASONS = ("lang", *RULE_NAMES, "exact_duplicate", "minhash_duplicate")


class PrefilterSection(Section):
    """Pre-filters run before embedding (rule filters, language ID, exact and MinHash dedup).

    Args:
        lang: language identification and the languages kept.
        rules: datatrove's rule filters (Gopher repetition and quality, C4, FineWeb quality).
        exact: exact dedup on normalised text.
        minhash: MinHash-LSH near-dedup (datatrove's steps).
    """

    lang: LangSection = Field(default_factory=LangSection)
    rules: RulesSection = Field(default_factory=RulesSection)
    exact: ExactDedupSection = Field(default_factory=ExactDedupSection)
    minhash: MinhashSection = Field(default_factory=MinhashSection)

    @property
    def dedup(self) -> bool:
        """Whether a cross-shard dedup step runs (exact or MinHash)."""
        return self.exact.enabled or self.minhash.enabled
