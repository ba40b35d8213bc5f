"""``quality`` and ``dataman_level`` (DataMan, DESIGN §3.6): a selection by *tokens* (``n_words``, at least 1 per
document).

The target becomes a token budget ``T = round(N · W / n)`` (W: the tokens of all n documents, so ``keep_fraction``
f keeps about f of the tokens). By default (``prune.stratify: []``) the selection is global: ``quality`` keeps the
best documents of the whole corpus up to T (the best f of the tokens). ``prune.stratify: [source, quality_domain]``
is DataMan's recipe: strata by source, then domain, each with a token quota proportional to its *eligible* tokens
(every document for ``quality``; the documents at the level for ``dataman_level``, which DataMan filters to first).
Each stratum keeps the prefix of its ranking of its eligible documents whose tokens come closest to its *goal* (a
tie takes fewer): its quota plus the carry, the previous stratum's goal minus the tokens it drew (so the rounding
never accumulates).

The rankings: ``quality``: top by ``quality_score`` or the sum of ``prune.quality_by``, ties broken by the seeded hash
``row_hash(stem, row, run.seed)``, then the canonical position. ``dataman_level``: the same machinery with a constant
score, i.e. the documents at the level in the order of ``row_hash(stem, row, run.seed, SAMPLE_SALT)`` (a second
hash, independent of ``quality``'s tie-break, so the sample is not correlated with which rows win ``quality``'s
ties), then the canonical position. A seeded hash order is a uniform random order of the documents, so its prefix is
a uniform sample without replacement, and a shard reproduces it from one cut per stratum.

Upsampling (``dataman_level`` only): a quota exceeds its stratum's level tokens E only when the level holds fewer
tokens than the budget (quotas are shares of the level's tokens), and only such a *short* stratum repeats documents,
in deterministic rounds: with its goal G, every document at the level is drawn ``r = ⌊G / E⌋`` times, and the
hash-order prefix whose tokens come closest to the rest ``G − r·E`` once more (``r + 1``; the draws go to the
``repeat`` column). Every document thus gets G / E draws in expectation (r, plus the chance of being in a uniform
prefix of ``(G − r·E) / E`` of the tokens), as many as when drawing uniformly with replacement up to G tokens, but
r or r + 1 of them instead of a binomial count: lower variance, the tokens within half a document of G, and
reproducible per shard (rounds and a cut). A stratum that is not short never repeats a document (a goal above
its level tokens, from the carry, keeps them all once). ``quality`` never repeats a document. ``upsampled_draws`` in
the summary counts the draws beyond one per kept document. ``dataman_level`` without a target keeps every document at
the level once. The summary (``prune.json``) names the selection that ran.

What changed for ``dataman_level`` (issue 15): its sample used to be a seeded ``rng.permutation`` of each stratum's
documents at the level (``default_rng([seed, 0x51, stratum])``) and its upsampling drew documents with replacement
until their tokens came closest to the rest of the goal. The new sample order (the salted hash) and upsampling rule
(rounds, above) change which documents are kept at a given seed (another, equally uniform subset) and the repeat
counts of short strata (r or r + 1 within a stratum, instead of random counts); a short stratum whose goal fell
below its level tokens (a negative carry) keeps the prefix alone, where draws with replacement used to make up a
prefix short of the goal. ``upsampled_draws`` is now the draws beyond one per kept document (it counted the draws
with replacement, which could land on documents outside the prefix). Quotas, goals, carries, token budgets, reasons
and the summary's fields are as before.

Both strategies have a two-pass form (``twopass``; the prune stage runs it), equal to the single-frame function row
for row, reasons, ``repeat`` and summary included. Pass 1 (``_census``) streams each shard's n_words, stratum and
(``dataman_level``) ``quality_overall`` columns: the token totals, the largest document (M tokens) and the sorted set
of stratum keys (strings; each shard codes its own rows against it) with their documents and tokens, all and
eligible. Pass 2 (``_windows``, a ``select.weighted_select``: the radix select with rows counted by tokens) finds, in
each stratum's ranking of its eligible rows, the rows at the running-token positions where its goal's crossing can
fall and collects the rows between them: ``quota ± M/2`` (every goal is within M/2 of its quota: ``_plan``), and for
a short stratum the same range modulo E (the rest ``G − r·E``; one or two intervals, the whole stratum when
``M + 1 ≥ E``). The strata are then resolved in order, each goal exact, so each cut is a lookup there. The plan holds
per stratum the rounds r and one cut (score key, seeded hash, canonical position: ``select.Cuts``); an eligible row
is drawn ``r`` times plus once if it is at or before its stratum's cut. Memory of the global step: one shard's
columns (two or four times, for the intervals' ends), the radix search's histograms and rows at the cut bins (as
``select``: about 4M counters, ``COLLECT_CAP`` = 1M rows), a few numbers per stratum, and the collected window rows,
40 bytes each, at most about ``min(stratum documents, M + 1)`` per stratum and never more than ``WINDOW_CAP`` (4M
rows, 160 MiB) in all; an interval beyond the cap gets a weighted search of its own when its goal falls in it (a
few more passes, no more memory). Nothing grows with the number of documents but those bounded sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from loguru import logger

from winnow.core.errors import CurationError
from winnow.pipeline.prune.base import Decision, PruneContext, row_hash, shard_row_hash
from winnow.pipeline.prune.registry import STRATEGIES
from winnow.pipeline.prune.select import Crossing, Cuts, predecessor, sort_keys, weighted_select
from winnow.pipeline.prune.twopass import Plan, PlanInput, ShardScores, TwoPass, reasons

#: the stratum key of a null value (``strata``: nulls are a stratum of their own)
NULL_KEY = "\x00null"
#: the salt of ``dataman_level``'s sample order: ``row_hash`` under it is independent of ``quality``'s tie-break
SAMPLE_SALT = "dataman_level"
#: the two-pass form collects at most this many rows of the strata's windows at once (40 bytes each)
WINDOW_CAP = 1 << 22
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def quality(ctx: PruneContext) -> Decision:  # registered at the end of the module, with its two-pass form
    """Keep the top of quality_score (or the sum of prune.quality_by) by token share per stratum (DataMan)."""
    return _select_by_tokens(ctx, _score(ctx.frame, ctx.cfg.prune), np.ones(ctx.n, dtype=bool))


def _score_columns(p) -> list[str]:
    return [f"quality_{c}" for c in p.quality_by] if p.quality_by else ["quality_score"]


def _score(frame: pl.DataFrame, p) -> np.ndarray:
    """``quality``'s ranking score per row: the sum of the ``quality_by`` criteria (null: 0), else ``quality_score``
    (null: -inf)."""
    if p.quality_by:
        cols = [frame[c].cast(pl.Float64).fill_null(0.0).to_numpy() for c in _score_columns(p)]
        return np.sum(cols, axis=0)
    return frame["quality_score"].cast(pl.Float64).fill_null(-np.inf).to_numpy()


def _tokens(frame: pl.DataFrame) -> np.ndarray:
    """Tokens per row: whitespace words (the mixer's and the report's count), at least one per document."""
    words = frame["n_words"].cast(pl.Float64).fill_null(1.0).to_numpy()
    return np.maximum(np.rint(words), 1).astype(np.int64)


def _at_level(frame: pl.DataFrame, p) -> np.ndarray:
    """``dataman_level``'s eligible rows: ``quality_overall == prune.dataman_level`` (null or NaN: never)."""
    level = frame["quality_overall"].cast(pl.Float64).fill_nan(None).fill_null(-1.0).to_numpy()
    return level == p.dataman_level


def _key_frame(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The stratum key columns as strings, nulls as a value of their own."""
    return frame.select([pl.col(c).cast(pl.String).fill_null(NULL_KEY) for c in columns])


def dataman_level(ctx: PruneContext) -> Decision:  # registered at the end of the module, with its two-pass form
    """Keep documents at one DataMan overall level, sampled to token-share quotas per stratum (upsampled if short)."""
    eligible = _at_level(ctx.frame, ctx.cfg.prune)
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
    keys = _key_frame(frame, columns)
    uniq = keys.unique().sort(columns)
    coded = keys.with_row_index("_row").join(uniq.with_row_index("_s"), on=columns, how="left").sort("_row")
    return coded["_s"].to_numpy().astype(np.int64)


def _token_target(target: int, total_tokens: int, n: int) -> int:
    return (2 * target * total_tokens + n) // (2 * n) if n else 0  # round(N · W / n), half up


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


def rounds(goal: int, eligible_tokens: int, short: bool) -> int:
    """``dataman_level``'s upsampling: the draws every eligible document of a short stratum gets, ``⌊goal / E⌋``
    (0 for a stratum that is not short, and for a goal at or below zero)."""
    return max(goal, 0) // eligible_tokens if short and eligible_tokens > 0 else 0


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


def _ranking(ctx: PruneContext, score: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The primary sort key and the seeded hash per row: ``quality``: -score and ``row_hash``; ``dataman_level``
    (``score`` None): a constant and the salted ``row_hash`` (its uniform sample order)."""
    stems, pos, seed = ctx.frame["stem"], ctx.frame["pos"], ctx.cfg.run.seed
    if score is not None:
        return -score, row_hash(stems, pos, seed)
    return np.zeros(ctx.n), row_hash(stems, pos, seed, SAMPLE_SALT)


def _draw(ctx, st: _Strata, score, eligible, tokens) -> tuple[np.ndarray, np.ndarray]:
    """Draws per document (``repeat``) and tokens drawn per stratum."""
    upsample = ctx.cfg.prune.strategy == "dataman_level"
    primary, tie = _ranking(ctx, score)
    repeat = np.zeros(ctx.n, dtype=np.int32)
    drawn = np.zeros(st.count, dtype=np.int64)
    carry = 0  # the tokens the strata before fell short of their goals (negative: over)
    for s_ in np.flatnonzero(st.has_eligible):
        members = st.members(s_)
        cand = members[eligible[members]]
        order = cand[np.lexsort((cand, tie[cand], primary[cand]))]  # by score, the seeded hash, canonical order
        goal = int(st.quotas[s_]) + carry
        e = int(st.eligible_tokens[s_])
        r = rounds(goal, e, upsample and st.quotas[s_] > e)  # a short stratum: r rounds of its documents
        cum = np.cumsum(tokens[order])
        k = _prefix_closest(cum, goal - r * e)
        repeat[order] = r
        repeat[order[:k]] += 1
        drawn[s_] = r * e + (int(cum[k - 1]) if k else 0)
        carry = goal - int(drawn[s_])
    return repeat, drawn


def _select_by_tokens(ctx: PruneContext, score: np.ndarray | None, eligible: np.ndarray) -> Decision:
    """Token-share quotas per stratum, the top (or the hash-order sample) of each stratum up to its goal."""
    p, n, frame = ctx.cfg.prune, ctx.n, ctx.frame
    tokens = _tokens(frame)
    total_tokens = int(tokens.sum())
    token_target = _token_target(ctx.target, total_tokens, n)
    st = _strata(frame, list(p.stratify), tokens, eligible, token_target)
    repeat, drawn = _draw(ctx, st, score, eligible, tokens)
    keep = repeat > 0
    reason = np.full(n, None, dtype=object)
    if score is not None:
        reason[~keep] = "quality_rank"
    else:
        reason[~keep & eligible] = "dataman_sample"
        reason[~keep & ~eligible] = "dataman_level"
    tokens_drawn = int((tokens * repeat).sum())
    shortfall = _check_drawn(p, st.has_eligible.any(), token_target, tokens_drawn, int(tokens.max(initial=0)))
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
        upsampled_draws=int(repeat.sum() - keep.sum()),
        draws=int(repeat.sum()),
        by_stratum=_by_stratum(frame, p.stratify, st, drawn, keep, repeat),
    )
    # the target is in tokens here: draws need not equal the document target N
    return ctx.finish(keep, reason, ctx.default_cluster_stats(), repeat=repeat, check_draws=False)


def _check_drawn(p, any_eligible: bool, token_target: int, tokens_drawn: int, biggest: int) -> int:
    """The shortfall (the budget, when no document is eligible; else 0); the drawn tokens within a document of it."""
    if not any_eligible:
        if token_target:
            logger.warning(f"prune: no document is eligible for {p.strategy}; {token_target} target tokens not drawn")
        return token_target
    if abs(tokens_drawn - token_target) > biggest:  # pragma: no cover - a bug, never bad input
        raise AssertionError(f"prune drew {tokens_drawn} tokens, target {token_target}")
    return 0


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


# -- the two-pass forms ----------------------------------------------------------------------------------------------


def _level_strategy(p) -> bool:
    return p.strategy == "dataman_level"


def _census_columns(p) -> list[str]:
    """The columns of the census: n_words, the strata, and ``dataman_level``'s ``quality_overall``."""
    return ["n_words", *p.stratify, *(["quality_overall"] if _level_strategy(p) else [])]


@dataclass
class _Census:
    """Pass 1: the strata (sorted keys; documents and tokens, all and eligible; the first row's key values) and the
    token totals."""

    columns: list[str]
    keys: list[tuple]  # per stratum, in code order: its key as strings (NULL_KEY for null)
    docs: np.ndarray
    tokens: np.ndarray
    eligible_docs: np.ndarray
    eligible_tokens: np.ndarray
    first: list[dict]  # per stratum: the key columns' values in its first row (canonical order)
    total: int  # W
    max_tokens: int  # M

    def table(self) -> pl.DataFrame:
        return _key_table(self.columns, self.keys)


def _key_table(columns: list[str], keys: list) -> pl.DataFrame | None:
    """The stratum codes: key columns (strings) and ``_s``, one row per stratum in code order."""
    if not columns:
        return None
    f = pl.DataFrame([list(k) for k in keys], schema=dict.fromkeys(columns, pl.String), orient="row")
    return f.with_row_index("_s")


def _shard_census(q: pl.DataFrame, cols: list[str], t: np.ndarray, e: np.ndarray) -> list[tuple[tuple, list]]:
    """One shard's strata: ``(key, [documents, tokens, eligible documents, eligible tokens, first row's values])``."""
    if not cols:
        return [((), [len(t), int(t.sum()), int(e.sum()), int(t[e].sum()), {}])] if len(t) else []
    named = q.select([pl.col(c).alias(f"_v{i}") for i, c in enumerate(cols)])
    nums = pl.DataFrame({"_t": t, "_e": e.astype(np.int64), "_et": np.where(e, t, 0)})
    g = pl.concat([_key_frame(q, cols), named, nums], how="horizontal")
    g = g.group_by(cols, maintain_order=True).agg(
        pl.len().alias("_n"), pl.col("_t", "_e", "_et").sum(), pl.col("^_v.*$").first()
    )
    return [
        (tuple(row[c] for c in cols),
         [row["_n"], row["_t"], row["_e"], row["_et"], {c: row[f"_v{i}"] for i, c in enumerate(cols)}])
        for row in g.iter_rows(named=True)
    ]  # fmt: skip


def _census(inp: PlanInput) -> _Census:
    p = inp.cfg.prune
    cols = list(p.stratify)
    acc: dict[tuple, list] = {}  # key -> [documents, tokens, eligible documents, eligible tokens, first row's values]
    total = biggest = 0
    for sh in inp.src:
        q = sh.quality_columns(_census_columns(p))
        t = _tokens(q)
        e = _at_level(q, p) if _level_strategy(p) else np.ones(sh.n, bool)
        total += int(t.sum())
        biggest = max(biggest, int(t.max(initial=0)))
        for key, v in _shard_census(q, cols, t, e):
            a = acc.setdefault(key, [0, 0, 0, 0, v[4]])
            a[:4] = [x + int(y) for x, y in zip(a[:4], v[:4], strict=True)]
    keys = [tuple(r) for r in pl.DataFrame([list(k) for k in acc], schema=dict.fromkeys(cols, pl.String),
                                           orient="row").sort(cols).rows()] if cols else list(acc)  # fmt: skip
    counts = np.array([acc[k][:4] for k in keys], np.int64).reshape(-1, 4)
    return _Census(cols, keys, *counts.T, [acc[k][4] for k in keys], total, biggest)


def _codes(sh: ShardScores, q: pl.DataFrame, cols: list[str], table: pl.DataFrame | None) -> np.ndarray:
    """One shard's stratum codes against the census's sorted keys."""
    if not cols:
        return np.zeros(sh.n, np.int64)
    coded = _key_frame(q, cols).join(table, on=cols, how="left", maintain_order="left")["_s"]
    if coded.null_count():
        raise CurationError(f"quality/{sh.stem}.parquet changed while prune ran (a new stratum): rerun `winnow run`")
    return coded.to_numpy().astype(np.int64)


def _shard_rows(sh: ShardScores, cfg, table: pl.DataFrame | None):
    """One shard's stratum codes, sort keys, tokens and eligible rows. Keys: ``quality``: -score, the seeded hash,
    canonical order (best first); ``dataman_level``: a constant, the salted hash, canonical order."""
    p = cfg.prune
    if _level_strategy(p):
        q = sh.quality_columns(_census_columns(p))
        hashed = shard_row_hash(sh.stem, sh.n, sh.seed, SAMPLE_SALT)
        keys = sort_keys(np.zeros(sh.n, np.uint64), hashed, sh.canon)
        eligible = _at_level(q, p)
    else:
        q = sh.quality_columns([*_score_columns(p), *_census_columns(p)])
        score = _score(q, p)
        keys = sh.keys(np.nan_to_num(score, nan=0.0), largest=True)
        keys[np.isnan(score), 0] = _ONES  # NaN ranks after -inf (as lexsort puts it), ties by the hash
        eligible = np.ones(sh.n, bool)
    return _codes(sh, q, list(p.stratify), table), keys, _tokens(q), eligible


def _eligible_rows(sh: ShardScores, cfg, table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_shard_rows`` of the eligible rows: codes, keys, tokens (the rankings hold only those)."""
    code, keys, t, e = _shard_rows(sh, cfg, table)
    return code[e], keys[e], t[e]


def _intervals(c: _Census, quotas: np.ndarray, short: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per stratum and slot, the running-token positions ``[lo, hi]`` (of its ranking of eligible rows) where the
    crossing of its goal can fall (``lo > hi``: none). A goal G lies within M/2 of the quota (``_plan``): the
    interval ``[quota − M/2, quota + M/2]`` within the stratum. A short stratum cuts at the rest ``G mod E``: that
    range modulo E, which may wrap around (two slots: ``[1, b]`` and ``[a, E − 1]``) or cover the whole stratum."""
    half = c.max_tokens // 2
    e = c.eligible_tokens
    lo = np.ones((len(quotas), 2), np.int64)
    hi = np.zeros((len(quotas), 2), np.int64)
    lo[:, 0] = np.maximum(1, quotas - half)
    hi[:, 0] = np.minimum(e, quotas + half)
    for s in np.flatnonzero(short):
        es, q = int(e[s]), int(quotas[s])
        a, b = (q - half) % es, (q + half) % es
        if 2 * half + 1 >= es:
            lo[s, 0], hi[s, 0] = 1, es - 1
        elif a <= b:
            lo[s, 0], hi[s, 0] = max(a, 1), b
        else:
            lo[s], hi[s] = (1, a), (b, es - 1)
    return lo, hi


@dataclass
class _Windows:
    """Pass 2: per stratum and slot its interval, the rows at both ends (``ends``: group ``2·(s·slots + slot)`` the
    first row, ``+ 1`` the last) and, where collected, the rows between them in key order (``rows``)."""

    lo: np.ndarray
    hi: np.ndarray
    slots: int
    ends: Crossing
    rows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]


def _windows(inp: PlanInput, lo: np.ndarray, hi: np.ndarray, table: pl.DataFrame | None) -> _Windows:
    """The rows at both ends of every interval (one ``weighted_select``), and the rows of as many intervals as
    ``WINDOW_CAP`` allows, sorted."""
    count = len(lo)
    slots = 2 if (hi[:, 1] >= lo[:, 1]).any() else 1
    lo, hi = lo[:, :slots], hi[:, :slots]
    goal = np.stack([lo, hi], axis=2)
    goal[hi < lo] = 0  # no interval: nothing to find

    def ends_of(sh: ShardScores):
        code, keys, t = _eligible_rows(sh, inp.cfg, table)
        g = 2 * slots * code
        return (
            np.concatenate([g + j for j in range(2 * slots)]),
            np.vstack([keys] * (2 * slots)),
            np.tile(t, 2 * slots),
        )

    ends = weighted_select(inp.stream(ends_of), 2 * slots * count, goal.ravel())
    take = np.zeros(slots * count, bool)
    room = WINDOW_CAP
    for j in np.flatnonzero(ends.found[0::2] & ends.found[1::2]):
        size = int(ends.rank[2 * j + 1] - ends.rank[2 * j]) + 1
        if size <= room:
            take[j], room = True, room - size
    take = take.reshape(count, slots)
    rows = _collect(inp, table, take, ends.key[0::2].reshape(count, slots, 3), ends.key[1::2].reshape(count, slots, 3))
    return _Windows(lo, hi, slots, ends, rows)


def _collect(inp: PlanInput, table, take: np.ndarray, first: np.ndarray, last: np.ndarray) -> dict:
    """The eligible rows of the taken intervals, from their first row's key to their last's, sorted by key."""
    slots = take.shape[1]
    parts: list[list] = [[] for _ in range(slots)]
    for sh in inp.src if take.any() else ():
        code, keys, t = _eligible_rows(sh, inp.cfg, table)
        for slot in np.flatnonzero(take.any(axis=0)):
            sel = Cuts(last[:, slot], ~take[:, slot]).keep(code, keys) & ~predecessor(first[:, slot]).keep(code, keys)
            parts[slot].append((code[sel], keys[sel], t[sel]))
    rows = {}
    for slot, got in enumerate(parts):
        if not got:
            continue
        code, keys, t = (np.concatenate(x) for x in zip(*got, strict=True))
        order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0], code))
        code, keys, t = code[order], keys[order], t[order]
        for s in np.flatnonzero(take[:, slot]):
            a, b = np.searchsorted(code, s), np.searchsorted(code, s, side="right")
            rows[(int(s), slot)] = (keys[a:b], t[a:b])
    return rows


def _crossing_at(inp: PlanInput, table, s: int, goal: int, win: _Windows) -> tuple[np.ndarray, int, int, int]:
    """Stratum ``s``'s first eligible row whose running tokens reach ``goal``: key, tokens and rows before it, its
    tokens."""
    for slot in range(win.slots):
        j = 2 * (s * win.slots + slot)
        if (s, slot) in win.rows and win.lo[s, slot] <= goal <= win.hi[s, slot]:
            keys, t = win.rows[(s, slot)]
            cum = int(win.ends.before[j]) + np.cumsum(t)
            i = int(np.searchsorted(cum, goal, side="left"))
            before = int(cum[i - 1]) if i else int(win.ends.before[j])
            return keys[i], before, int(win.ends.rank[j]) + i, int(t[i])

    def stratum(sh: ShardScores):  # not collected (above WINDOW_CAP): a search of its own, a few more passes
        code, keys, t = _eligible_rows(sh, inp.cfg, table)
        m = code == s
        return np.zeros(int(m.sum()), np.int64), keys[m], t[m]

    c: Crossing = weighted_select(inp.stream(stratum), 1, np.array([goal]))
    return c.key[0], int(c.before[0]), int(c.rank[0]), int(c.weight[0])


@dataclass
class _Resolved:
    """Per stratum: the rounds r, the cut (``bound``, ``none``), and the counts of the summary."""

    rounds: np.ndarray
    bound: np.ndarray
    none: np.ndarray
    kept: np.ndarray  # documents drawn at least once
    draws: np.ndarray
    drawn: np.ndarray  # tokens, with repeats
    unique: np.ndarray  # tokens of the kept documents

    @classmethod
    def empty(cls, count: int) -> _Resolved:
        z = np.zeros(count, np.int64)
        return cls(z.copy(), np.zeros((count, 3), np.uint64), np.ones(count, bool), z.copy(), z.copy(), z.copy(), z)


def _cut(inp: PlanInput, table, c: _Census, s: int, goal: int, win: _Windows, out: _Resolved) -> tuple[int, int]:
    """Stratum ``s``'s ranking prefix whose tokens come closest to ``goal`` (``_prefix_closest``): its cut goes to
    ``out``; returns its documents and tokens."""
    e = int(c.eligible_tokens[s])
    if goal <= 0:
        return 0, 0
    out.none[s] = False
    if goal >= e:  # the whole stratum comes closest
        out.bound[s] = _ONES
        return int(c.eligible_docs[s]), e
    key, before, rank, t = _crossing_at(inp, table, s, goal, win)
    take = goal - before > before + t - goal  # a tie takes fewer
    cut = Cuts(key[None], np.zeros(1, bool)) if take else predecessor(key)
    out.bound[s], out.none[s] = cut.bound[0], cut.none[0]
    return rank + int(take), before + (t if take else 0)


def _resolve(inp: PlanInput, table, c: _Census, quotas: np.ndarray, short: np.ndarray, win: _Windows) -> _Resolved:
    """The strata in order, each goal (quota + carry) exact: rounds (a short stratum) and the cut of the rest."""
    out = _Resolved.empty(len(quotas))
    carry = 0
    for s in np.flatnonzero(c.eligible_docs > 0):
        e, d, goal = int(c.eligible_tokens[s]), int(c.eligible_docs[s]), int(quotas[s]) + carry
        r = rounds(goal, e, bool(short[s]))
        k, got = _cut(inp, table, c, int(s), goal - r * e, win, out)
        out.rounds[s], out.kept[s], out.draws[s] = r, d if r else k, r * d + k
        out.drawn[s], out.unique[s] = r * e + got, e if r else got
        carry = goal - int(out.drawn[s])
    return out


def _plan(inp: PlanInput) -> Plan:
    """Pass 1 (``_census``): strata, tokens, quotas. Pass 2 (``_windows``): per stratum the rows whose running tokens
    lie where its goal's crossing can fall. Then the strata in order, each goal (quota + carry) exact: its rounds
    and its cut.

    The carry: after a stratum, ``goal - drawn`` is at most M/2 in size (M: the most tokens of one document): the
    prefix closest to a goal (or, in a short stratum, to the rest after its rounds, which lies in ``[0, E)``) inside
    the stratum misses it by at most half the crossing document; a goal at or below zero keeps nothing, and a goal
    above the level tokens of a stratum that is not short (quota <= E) keeps it all, neither of which makes the carry
    larger. So every goal is within M/2 of its quota."""
    p = inp.cfg.prune
    if inp.target is None:  # dataman_level without a target (quality requires one): every document at the level
        inp.summary.update(selection="every document at the level", strata=None, shortfall=0)
        return Plan(p.strategy, None, {}, {"every": True}, has_repeat=True)
    c = _census(inp)
    token_target = _token_target(inp.target, c.total, inp.totals.n)
    quotas = proportional_quotas(c.eligible_tokens, token_target)
    short = (quotas > c.eligible_tokens) & _level_strategy(p)
    table = c.table()
    win = _windows(inp, *_intervals(c, quotas, short), table)
    res = _resolve(inp, table, c, quotas, short, win)
    _summary(inp, c, quotas, token_target, res)
    data = {"columns": c.columns, "strata": [list(k) for k in c.keys], "rounds": res.rounds.tolist()}
    plan = Plan(p.strategy, inp.target, {p.strategy: Cuts(res.bound, res.none)}, data, has_repeat=True)
    plan.cluster_stats = inp.default_cluster_stats()
    return plan


def _summary(inp: PlanInput, c: _Census, quotas, token_target: int, res: _Resolved) -> None:
    """``_select_by_tokens``'s summary fields, from the per-stratum counts."""
    p = inp.cfg.prune
    tokens_drawn = int(res.drawn.sum())
    shortfall = _check_drawn(p, bool((c.eligible_docs > 0).any()), token_target, tokens_drawn, c.max_tokens)
    by_stratum = [
        {
            **c.first[s], "docs": int(c.docs[s]), "tokens": int(c.tokens[s]),
            "eligible_tokens": int(c.eligible_tokens[s]), "quota_tokens": int(quotas[s]),
            "drawn_tokens": int(res.drawn[s]), "kept": int(res.kept[s]), "draws": int(res.draws[s]),
        }
        for s in range(len(quotas))
    ]  # fmt: skip
    inp.summary.update(
        unit="tokens",
        selection=f"stratified by {', '.join(p.stratify)} (DataMan)" if p.stratify else "global",
        strata=len(quotas),
        strata_without_eligible=int((c.eligible_docs == 0).sum()),
        tokens_total=c.total,
        token_target=int(token_target),
        tokens_drawn=tokens_drawn,
        unique_tokens_kept=int(res.unique.sum()),
        shortfall=int(shortfall),
        upsampled_draws=int(res.draws.sum() - res.kept.sum()),
        draws=int(res.draws.sum()),
        by_stratum=by_stratum,
    )


def _apply(plan: Plan, cfg, sh: ShardScores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shard's keep, reason and repeat: an eligible row is drawn its stratum's rounds, plus once if it is at or
    before its stratum's cut."""
    reason = reasons(sh.n)
    if plan.data.get("every"):  # dataman_level without a target
        keep = _at_level(sh.quality_columns(["quality_overall"]), cfg.prune)
        reason[~keep] = "dataman_level"
        return keep, reason, keep.astype(np.int32)
    table = _key_table(plan.data["columns"], plan.data["strata"])
    code, keys, _, eligible = _shard_rows(sh, cfg, table)
    r = np.asarray(plan.data["rounds"], np.int32)
    repeat = np.where(eligible, r[code] + plan.cuts[plan.strategy].keep(code, keys), 0).astype(np.int32)
    keep = repeat > 0
    if _level_strategy(cfg.prune):
        reason[~keep & eligible] = "dataman_sample"
        reason[~eligible] = "dataman_level"
    else:
        reason[~keep] = "quality_rank"
    return keep, reason, repeat


_TWO_PASS = TwoPass(_plan, _apply, exact_target=False, repeats=True)
STRATEGIES.register("quality", order=50, needs=("quality",), target="required", two_pass=_TWO_PASS)(quality)
STRATEGIES.register("dataman_level", order=51, needs=("quality",), target="optional", two_pass=_TWO_PASS)(
    dataman_level
)
