"""``quality`` and ``dataman_level`` (DataMan, DESIGN §3.6): a selection by *tokens* (``n_words``, at least 1 per
document).

The target becomes a token budget ``T = round(N · W / n)`` (W: the tokens of all n documents, so ``keep_fraction``
f keeps about f of the tokens). By default (``prune.stratify: []``) the selection is global: ``quality`` keeps the
best documents of the whole corpus up to T (the best f of the tokens). ``prune.stratify: [source, quality_domain]``
is DataMan's recipe: strata by source, then domain, each with a token quota proportional to its *eligible* tokens
(every document for ``quality``; the documents at the level for ``dataman_level``, which DataMan filters to first).
Each stratum keeps the prefix of its ranking (``quality``: top by ``quality_score`` or the sum of
``prune.quality_by``, ties broken by a seeded hash of (stem, row); ``dataman_level``: a seeded shuffle of the
documents at the level) whose tokens come closest to its quota plus the rounding left over by the strata before it.
A quota exceeds its stratum's eligible tokens only when the level holds fewer tokens than the budget; only then does
``dataman_level`` upsample with replacement, the draws per document going to the ``repeat`` column. ``quality``
never repeats a document. ``dataman_level`` without a target keeps every document at the level once. The summary
(``prune.json``) names the selection that ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from loguru import logger

from winnow.pipeline.prune.base import Decision, PruneContext, row_hash
from winnow.pipeline.prune.registry import STRATEGIES


@STRATEGIES.register("quality", order=50, needs=("quality",), target="required")
def quality(ctx: PruneContext) -> Decision:
    """Keep the top of quality_score (or the sum of prune.quality_by) by token share per stratum (DataMan)."""
    p = ctx.cfg.prune
    if p.quality_by:
        cols = [ctx.frame[f"quality_{c}"].cast(pl.Float64).fill_null(0.0).to_numpy() for c in p.quality_by]
        score = np.sum(cols, axis=0)
    else:
        score = ctx.frame["quality_score"].cast(pl.Float64).fill_null(-np.inf).to_numpy()
    return _select_by_tokens(ctx, score, np.ones(ctx.n, dtype=bool))


@STRATEGIES.register("dataman_level", order=51, needs=("quality",), target="optional")
def dataman_level(ctx: PruneContext) -> Decision:
    """Keep documents at one DataMan overall level, sampled to token-share quotas per stratum (upsampled if short)."""
    level = ctx.frame["quality_overall"].to_numpy(allow_copy=True)
    eligible = np.nan_to_num(level.astype(np.float64), nan=-1) == ctx.cfg.prune.dataman_level
    if ctx.target is None:  # every document at the level, once
        keep = eligible.copy()
        repeat = keep.astype(np.int32)
        reason = np.where(keep, None, "dataman_level").astype(object)
        ctx.summary.update(selection="every document at the level", strata=None, shortfall=0)
        return ctx.finish(keep, reason, None, repeat=repeat)
    return _select_by_tokens(ctx, None, eligible)


def strata(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """A stratum code per row from ``columns`` (nulls are a stratum of their own), in sorted key order."""
    if not columns:
        return np.zeros(frame.height, np.int64)
    keys = frame.select([pl.col(c).cast(pl.String).fill_null("\x00null") for c in columns])
    uniq = keys.unique().sort(columns)
    coded = keys.with_row_index("_row").join(uniq.with_row_index("_s"), on=columns, how="left").sort("_row")
    return coded["_s"].to_numpy().astype(np.int64)


def proportional_quotas(weights: np.ndarray, target: int) -> np.ndarray:
    """Integers summing to ``target``, proportional to ``weights`` (largest remainder; ties: lower index)."""
    w = np.asarray(weights, np.float64)
    if target == 0 or w.sum() <= 0:
        return np.zeros(len(w), np.int64)
    ideal = target * w / w.sum()
    base = np.floor(ideal).astype(np.int64)
    rest = target - int(base.sum())
    order = np.lexsort((np.arange(len(w)), -(ideal - base)))
    base[order[:rest]] += 1
    return base


def _prefix_closest(cum: np.ndarray, goal: int) -> int:
    """How many leading items (0..len) bring the running total ``cum`` closest to ``goal``; a tie takes fewer."""
    i = int(np.searchsorted(cum, goal, side="left"))  # i + 1 items are the first to reach the goal
    if i >= len(cum):
        return len(cum)
    below = int(cum[i - 1]) if i > 0 else 0
    return i if goal - below <= int(cum[i]) - goal else i + 1


def _draw_with_replacement(rng: np.random.Generator, tokens: np.ndarray, goal: int) -> np.ndarray:
    """Positions into ``tokens`` drawn uniformly with replacement until their tokens come closest to ``goal``."""
    picks, total, mean = [], 0, float(tokens.mean())
    while True:
        size = int(math.ceil(max(goal - total, 0) / mean * 1.25)) + 16
        batch = rng.integers(0, len(tokens), size)
        cum = total + np.cumsum(tokens[batch])
        k = _prefix_closest(cum, goal)
        picks.append(batch[:k])
        if k < size:
            return np.concatenate(picks)
        total = int(cum[-1])


@dataclass
class _Strata:
    """The documents cut by ``prune.stratify``, with token totals and quotas per stratum."""

    code: np.ndarray  # stratum per row
    count: int
    tokens: np.ndarray  # tokens per stratum
    eligible_tokens: np.ndarray
    has_eligible: np.ndarray
    quotas: np.ndarray
    by_code: np.ndarray  # rows grouped by stratum, canonical order inside
    bounds: np.ndarray

    def members(self, s: int) -> np.ndarray:
        return self.by_code[self.bounds[s] : self.bounds[s + 1]]


def _strata(frame: pl.DataFrame, columns: list[str], tokens: np.ndarray, eligible: np.ndarray, token_target: int):
    n = frame.height
    code = strata(frame, columns)
    n_strata = int(code.max()) + 1 if n else 0
    stratum_tokens = np.bincount(code, weights=tokens, minlength=n_strata).astype(np.int64)
    eligible_tokens = np.bincount(code[eligible], weights=tokens[eligible], minlength=n_strata).astype(np.int64)
    # token quotas proportional to each stratum's eligible tokens (DataMan filters to the level first, then shares
    # the budget): a stratum without an eligible document gets none, and a quota exceeds its stratum's eligible
    # tokens only when the eligible tokens of all strata fall short of the budget
    has_eligible = np.bincount(code[eligible], minlength=n_strata) > 0
    quotas = proportional_quotas(eligible_tokens, token_target)
    by_code = np.argsort(code, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(code, minlength=n_strata))])
    return _Strata(code, n_strata, stratum_tokens, eligible_tokens, has_eligible, quotas, by_code, bounds)


def _draw(ctx, st: _Strata, score, eligible, tokens) -> tuple[np.ndarray, np.ndarray, int]:
    """Draws per document (``repeat``), tokens drawn per stratum and the number of upsampled draws."""
    upsample = ctx.cfg.prune.strategy == "dataman_level"
    tie = row_hash(ctx.frame["stem"], ctx.frame["pos"], ctx.cfg.run.seed) if score is not None else None
    repeat = np.zeros(ctx.n, dtype=np.int32)
    drawn = np.zeros(st.count, dtype=np.int64)
    carry = upsampled = 0  # carry: tokens the strata before fell short of their quotas (negative: over)
    for s_ in np.flatnonzero(st.has_eligible):
        members = st.members(s_)
        cand = members[eligible[members]]
        rng = np.random.default_rng([ctx.cfg.run.seed, 0x51, int(s_)])
        if score is not None:  # top by score, ties by the seeded (stem, row) hash, then canonical order
            order = cand[np.lexsort((cand, tie[cand], -score[cand]))]
        else:  # uniform sample of the level
            order = cand[rng.permutation(len(cand))]
        goal = int(st.quotas[s_]) + carry
        cum = np.cumsum(tokens[order])
        k = _prefix_closest(cum, goal)
        repeat[order[:k]] = 1
        got = int(cum[k - 1]) if k else 0
        if upsample and st.quotas[s_] > st.eligible_tokens[s_] and goal > got:
            # short stratum (its documents at the level hold fewer tokens than its quota): upsample with replacement
            extra = order[_draw_with_replacement(rng, tokens[order], goal - got)]
            np.add.at(repeat, extra, 1)
            got += int(tokens[extra].sum())
            upsampled += len(extra)
        drawn[s_] = got
        carry = goal - got
    return repeat, drawn, upsampled


def _select_by_tokens(ctx: PruneContext, score: np.ndarray | None, eligible: np.ndarray) -> Decision:
    """Token-share quotas per stratum, the top (or a uniform sample) of each stratum up to its quota."""
    p, n, frame = ctx.cfg.prune, ctx.n, ctx.frame
    # tokens: whitespace words (the mixer's and the report's count), at least one per document
    words = frame["n_words"].cast(pl.Float64).fill_null(1.0).to_numpy()
    tokens = np.maximum(np.rint(words), 1).astype(np.int64)
    total_tokens = int(tokens.sum())
    token_target = (2 * ctx.target * total_tokens + n) // (2 * n) if n else 0  # round(N · W / n), half up
    st = _strata(frame, list(p.stratify), tokens, eligible, token_target)
    repeat, drawn, upsampled = _draw(ctx, st, score, eligible, tokens)
    keep = repeat > 0
    reason = np.full(n, None, dtype=object)
    if score is not None:
        reason[~keep] = "quality_rank"
    else:
        reason[~keep & eligible] = "dataman_sample"
        reason[~keep & ~eligible] = "dataman_level"
    tokens_drawn = int((tokens * repeat).sum())
    shortfall = token_target if not st.has_eligible.any() else 0
    if shortfall:
        logger.warning(f"prune: no document is eligible for {p.strategy}; {shortfall} target tokens not drawn")
    elif n and abs(tokens_drawn - token_target) > int(tokens.max()):  # pragma: no cover - a bug, never bad input
        raise AssertionError(f"prune drew {tokens_drawn} tokens, target {token_target}")
    ctx.summary.update(
        unit="tokens",
        selection=f"stratified by {', '.join(p.stratify)} (DataMan)" if p.stratify else "global",
        strata=int(st.count),
        strata_without_eligible=int((~st.has_eligible).sum()),
        tokens_total=total_tokens,
        token_target=int(token_target),
        tokens_drawn=tokens_drawn,
        unique_tokens_kept=int(tokens[keep].sum()),
        shortfall=int(shortfall),
        upsampled_draws=int(upsampled),
        draws=int(repeat.sum()),
        by_stratum=_by_stratum(frame, p.stratify, st, drawn, keep, repeat),
    )
    # the target is in tokens here: draws need not equal the document target N
    return ctx.finish(keep, reason, ctx.default_cluster_stats(), repeat=repeat, check_draws=False)


def _by_stratum(frame, stratify, st: _Strata, drawn, keep, repeat) -> list[dict]:
    first = np.unique(st.code, return_index=True)[1] if frame.height else np.zeros(0, np.int64)
    keys = frame[first.tolist()].select(list(stratify)).to_dicts() if stratify else [{}] * len(first)
    return [
        {
            **keys[s_],
            "docs": int(st.bounds[s_ + 1] - st.bounds[s_]),
            "tokens": int(st.tokens[s_]),
            "eligible_tokens": int(st.eligible_tokens[s_]),
            "quota_tokens": int(st.quotas[s_]),
            "drawn_tokens": int(drawn[s_]),
            "kept": int(keep[st.members(s_)].sum()),
            "draws": int(repeat[st.members(s_)].sum()),
        }
        for s_ in range(st.count)
    ]
