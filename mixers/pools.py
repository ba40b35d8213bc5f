"""The pool rule and the token count, shared by the planner and the loader (DESIGN §3.7, §3.9).

The planner writes a :class:`~winnow.mixers.plan.PoolDefinition` and a token-count rule into the plan; the loader
must put every curated row in the same pool and give it the same tokens, or the plan's proportions are not what
it trains on. Both therefore build their expressions here, from the plan's own sections:

* a row is *kept* when its keep column is true (null = false) and its repeat count is > 0; the repeat count is
  the repeat column cast to an integer (null = 1), or 1 when the shard has no repeat column
  (:func:`repeat_expr`, :func:`kept_expr`);
* its *quality bucket* is ``q<i>`` with ``i = 1 + #edges strictly below its score`` (quantiles; a null or NaN
  score is ``q1``), ``overall_<level>`` (DataMan levels; a null level is ``overall_1``), or the one label
  (:func:`quality_rule`); its *domain* is the domain column's value (null = the definition's ``null`` label) or
  the one label; its *pool* is ``<bucket>/<domain>`` (:class:`PoolRule`);
* its *tokens* are the regex ``\\S+`` matches of its text (null text = 0), or a local tokenizer's token count
  without special tokens (:class:`TokenCounter`, :func:`token_counter`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from winnow.core.errors import ConfigError
from winnow.mixers.config import TokenCountSection
from winnow.mixers.plan import (
    DatamanLevels,
    DomainColumn,
    OneBucket,
    PoolDefinition,
    QuantileBuckets,
    TokenizerCount,
    WhitespaceCount,
)

__all__ = [
    "ALL",
    "DATAMAN_LEVELS",
    "KEEP",
    "NULL_DOMAIN",
    "QUALITY_OVERALL",
    "QUALITY_SCORE",
    "REPEAT",
    "WHITESPACE_RULE",
    "PoolRule",
    "TokenCounter",
    "kept_expr",
    "pool_rule",
    "quality_rule",
    "repeat_expr",
    "token_count_rule",
    "token_counter",
]

ALL = "all"
NULL_DOMAIN = "unknown"
KEEP, REPEAT = "keep", "repeat"
QUALITY_SCORE, QUALITY_OVERALL = "quality_score", "quality_overall"
#: DataMan's overall levels are 1..5 (5 highest).
DATAMAN_LEVELS = 5
WHITESPACE_PATTERN = r"\S+"
WHITESPACE_RULE = r"number of regex \S+ matches in the text (whitespace-separated words); null text = 0"
#: Texts per tokenizer call when the plan does not say (the counts do not depend on it).
DEFAULT_BATCH_SIZE = 1024


# =============================================================================================================
# Which rows are kept, how often, and in which pool
# =============================================================================================================
def repeat_expr(repeat_column: str | None) -> pl.Expr:
    """A row's repeat count: ``repeat_column`` as Int64 with null = 1, or 1 when ``repeat_column`` is None."""
    if repeat_column is None:
        return pl.lit(1, dtype=pl.Int64)
    return pl.col(repeat_column).cast(pl.Int64).fill_null(1)


def kept_expr(keep_column: str, repeat_column: str | None) -> pl.Expr:
    """A row is kept when ``keep_column`` is true (null = false) and its repeat count is > 0."""
    return pl.col(keep_column).fill_null(False) & (repeat_expr(repeat_column) > 0)


def quality_rule(quality: QuantileBuckets | DatamanLevels | OneBucket) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """``(bucket label, rank, score is null)`` expressions of a row under a quality definition (rank 1 = best)."""
    if isinstance(quality, QuantileBuckets):
        score = pl.col(quality.column).cast(pl.Float64).fill_nan(None)
        edges = quality.edges
        idx = pl.sum_horizontal([(score > e).cast(pl.Int64) for e in edges]) + 1 if edges else pl.lit(1, pl.Int64)
        return pl.concat_str(pl.lit("q"), idx.cast(pl.String)), quality.n_buckets + 1 - idx, score.is_null()
    if isinstance(quality, DatamanLevels):
        level = pl.col(quality.column).cast(pl.Int64)
        bucket = pl.concat_str(pl.lit("overall_"), level.fill_null(1).cast(pl.String))
        return bucket, DATAMAN_LEVELS + 1 - level.fill_null(1), level.is_null()
    return pl.lit(quality.label), pl.lit(1, pl.Int64), pl.lit(False)


@dataclass(frozen=True)
class PoolRule:
    """Polars expressions of a pool definition over a curated shard's rows.

    Args:
        definition: The plan's ``pool_definition``.
        bucket: A row's quality bucket label.
        rank: Its bucket's rank (Int64, 1 = best).
        quality_null: Whether its quality score (or level) is null: it went to the lowest bucket.
        domain: Its domain.
    """

    definition: PoolDefinition
    bucket: pl.Expr
    rank: pl.Expr
    quality_null: pl.Expr
    domain: pl.Expr

    @property
    def pool(self) -> pl.Expr:
        """A row's pool name, ``<bucket>/<domain>``."""
        return pl.concat_str(self.bucket, pl.lit("/"), self.domain)

    @property
    def columns(self) -> list[str]:
        """The columns the rule reads besides the repeat column: keep, quality, domain (in that order)."""
        d = self.definition
        out = [d.keep_column]
        if not isinstance(d.quality, OneBucket):
            out.append(d.quality.column)
        if isinstance(d.domain, DomainColumn):
            out.append(d.domain.column)
        return out

    def repeat_column(self, names: list[str] | tuple[str, ...]) -> str | None:
        """The definition's repeat column if a shard with these column ``names`` has it."""
        rep = self.definition.repeat_column
        return rep if rep is not None and rep in names else None

    def repeat(self, names: list[str] | tuple[str, ...]) -> pl.Expr:
        """A row's repeat count in a shard with these column ``names`` (:func:`repeat_expr`)."""
        return repeat_expr(self.repeat_column(names))

    def kept(self, names: list[str] | tuple[str, ...]) -> pl.Expr:
        """Whether a row of a shard with these column ``names`` is kept (:func:`kept_expr`)."""
        return kept_expr(self.definition.keep_column, self.repeat_column(names))


def pool_rule(definition: PoolDefinition) -> PoolRule:
    """The :class:`PoolRule` of a plan's ``pool_definition``."""
    bucket, rank, quality_null = quality_rule(definition.quality)
    dom = definition.domain
    if isinstance(dom, DomainColumn):
        domain = pl.col(dom.column).cast(pl.String).fill_null(dom.null)
    else:
        domain = pl.lit(dom.label)
    return PoolRule(definition, bucket, rank, quality_null, domain)


# =============================================================================================================
# Tokens
# =============================================================================================================
def token_count_rule(section: TokenCountSection) -> WhitespaceCount | TokenizerCount:
    """The plan's ``token_count`` for the ``mix.token_count`` config: how the loader must count tokens."""
    if section.method == "tokenizer":
        return TokenizerCount(method="tokenizer", tokenizer=str(section.tokenizer), special_tokens=False)
    return WhitespaceCount(method="whitespace", rule=WHITESPACE_RULE)


def token_counter(path: str) -> Callable[[list[str]], list[int]]:
    """Token counts of texts with a local tokenizer (``tokenizer.json`` via ``tokenizers``, else transformers).

    The planner counts a pool's tokens with it (``mix.token_count.method: tokenizer``), and the loader recounts
    them with it to follow the plan.

    Args:
        path: A ``tokenizer.json`` file, or a local directory holding one (or a transformers tokenizer).

    Returns:
        A function from a batch of texts to their token counts (no special tokens, no truncation).

    Raises:
        ConfigError: ``path`` does not exist or holds no loadable tokenizer.
    """
    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not p.exists():
        msg = f"mix.token_count.tokenizer: no such file or directory: {path}"
        raise ConfigError(msg)
    if file.is_file() and file.suffix == ".json":
        try:  # imported here: only a tokenizer count needs it, and it is not a declared dependency
            from tokenizers import Tokenizer
        except ImportError as e:  # pragma: no cover - tokenizers comes with sentence-transformers
            msg = "counting tokens with a tokenizer needs the tokenizers package: pip install tokenizers"
            raise ImportError(msg) from e
        tok = Tokenizer.from_file(str(file))
        tok.no_truncation()
        tok.no_padding()
        return lambda texts: [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]
    try:  # imported here: transformers is heavy (seconds to import) and only this fallback needs it
        from transformers import AutoTokenizer
    except ImportError as e:  # pragma: no cover
        msg = f"{path} has no tokenizer.json; loading it needs transformers: pip install transformers"
        raise ImportError(msg) from e
    try:
        hf = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError) as e:
        msg = f"mix.token_count.tokenizer: cannot load a tokenizer from {path}: {e}"
        raise ConfigError(msg) from None
    return lambda texts: [len(ids) for ids in hf(texts, add_special_tokens=False)["input_ids"]]


class TokenCounter:
    """Tokens of texts by a plan's ``token_count`` rule: whitespace words, or a local tokenizer's token ids.

    Args:
        rule: The plan's ``token_count``.
        batch_size: Texts per tokenizer call (the counts do not depend on it).
    """

    def __init__(self, rule: WhitespaceCount | TokenizerCount, batch_size: int = DEFAULT_BATCH_SIZE):
        self.rule = rule
        self.batch_size = int(batch_size)
        self._count = token_counter(rule.tokenizer) if isinstance(rule, TokenizerCount) else None

    def counts(self, texts: pl.Series) -> np.ndarray:
        """Tokens of each text (a String series; null = no text), as int64."""
        if self._count is None:
            return texts.str.count_matches(WHITESPACE_PATTERN).fill_null(0).to_numpy().astype(np.int64)
        values = texts.fill_null("").to_list()
        out: list[int] = []
        for i in range(0, len(values), self.batch_size):
            out.extend(self._count(values[i : i + self.batch_size]))
        return np.asarray(out, dtype=np.int64)


def quantile_buckets(edges: list[float], n: int) -> QuantileBuckets:
    """The ``quantiles`` pool definition for these ``n − 1`` edges of ``quality_score`` (q1 lowest)."""
    return QuantileBuckets(
        kind="quantiles", column=QUALITY_SCORE, n_buckets=n, edges=edges,
        labels=[f"q{i}" for i in range(1, n + 1)],
        rule="q<i> with i = 1 + the number of edges strictly below the score (q1 lowest); a null or NaN score is q1",
    )  # fmt: skip


def dataman_buckets() -> DatamanLevels:
    """The ``dataman_levels`` pool definition: one bucket per ``quality_overall`` level."""
    return DatamanLevels(
        kind="dataman_levels", column=QUALITY_OVERALL,
        labels=[f"overall_{i}" for i in range(1, DATAMAN_LEVELS + 1)],
        rule="overall_<level> (overall_5 highest); a null level is overall_1",
    )  # fmt: skip
