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

``quality`` has a two-pass form (``twopass``; the prune stage runs it), equal to the single-frame function row for
row, reasons and summary included. Pass 1 (``_census``) streams each shard's n_words and stratum columns: the token
totals, the largest document (M tokens) and the sorted set of stratum keys (strings; each shard codes its own rows
against it). Pass 2 (``_windows``, a ``select.weighted_select``: the radix select with rows counted by tokens) finds
in each stratum the rows at the running-token positions ``quota ± M/2`` and collects the rows between them. The
strata are then resolved in order, each goal (quota + the carry of the strata before) exact: it can only fall in
that window (``_plan``'s docstring), so the cut is a lookup there. The plan holds one cut per stratum (score key,
seeded hash, canonical position: ``select.Cuts``) and each shard keeps its rows at or before their stratum's cut.
Memory of the global step: one shard's columns (twice, for the two ends), the radix search's histograms and rows
at the cut bins (as ``select``: about 4M counters, ``COLLECT_CAP`` = 1M rows), a few numbers per stratum, and the
collected window rows, 40 bytes each, at most ``min(stratum documents, M + 1)`` per stratum and never more
than ``WINDOW_CAP`` (4M rows, 160 MiB) in all; a stratum beyond the cap gets a weighted search of its own (a few more
passes, no more memory). Nothing grows with the number of documents but those bounded sets.

``dataman_level`` stays single-frame (``twopass._single_frame_plan``: a frame of its numeric and quality columns in
the global step): its sample per stratum is a seeded ``rng.permutation`` of the stratum's documents at the level, and
its upsampling draws with replacement from them, neither of which a shard can reproduce from a cut alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from loguru import logger

from winnow.core.errors import CurationError
from winnow.pipeline.prune.base import Decision, PruneContext, row_hash
from winnow.pipeline.prune.registry import STRATEGIES
from winnow.pipeline.prune.select import Crossing, Cuts, predecessor, weighted_select
from winnow.pipeline.prune.twopass import Plan, PlanInput, ShardScores, TwoPass, reasons

#: the stratum key of a null value (``strata``: nulls are a stratum of their own)
NULL_KEY = "\x00null"
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


def _key_frame(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The stratum key columns as strings, nulls as a value of their own."""
    return frame.select([pl.col(c).cast(pl.String).fill_null(NULL_KEY) for c in columns])


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
    tokens = _tokens(frame)
    total_tokens = int(tokens.sum())
    token_target = _token_target(ctx.target, total_tokens, n)
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


# -- the two-pass form of ``quality`` ---------------------------------------------------------------------------------


@dataclass
class _Census:
    """Pass 1: the strata (sorted keys, documents, tokens, the first row's key values) and the token totals."""

    columns: list[str]
    keys: list[tuple]  # per stratum, in code order: its key as strings (NULL_KEY for null)
    docs: np.ndarray
    tokens: np.ndarray
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


def _census(inp: PlanInput) -> _Census:
    cols = list(inp.cfg.prune.stratify)
    acc: dict[tuple, list] = {}  # key -> [documents, tokens, first row's values]
    total = biggest = 0
    for sh in inp.src:
        q = sh.quality_columns(["n_words", *cols])
        t = _tokens(q)
        total += int(t.sum())
        biggest = max(biggest, int(t.max(initial=0)))
        if not cols:
            if sh.n:
                a = acc.setdefault((), [0, 0, {}])
                a[0], a[1] = a[0] + sh.n, a[1] + int(t.sum())
            continue
        named = q.select([pl.col(c).alias(f"_v{i}") for i, c in enumerate(cols)])
        g = pl.concat([_key_frame(q, cols), named, pl.DataFrame({"_t": t})], how="horizontal")
        g = g.group_by(cols, maintain_order=True).agg(
            pl.len().alias("_n"), pl.col("_t").sum(), pl.col("^_v.*$").first()
        )
        for row in g.iter_rows(named=True):
            key = tuple(row[c] for c in cols)
            a = acc.setdefault(key, [0, 0, {c: row[f"_v{i}"] for i, c in enumerate(cols)}])
            a[0], a[1] = a[0] + int(row["_n"]), a[1] + int(row["_t"])
    keys = [tuple(r) for r in pl.DataFrame([list(k) for k in acc], schema=dict.fromkeys(cols, pl.String),
                                           orient="row").sort(cols).rows()] if cols else list(acc)  # fmt: skip
    docs = np.array([acc[k][0] for k in keys], np.int64)
    tokens = np.array([acc[k][1] for k in keys], np.int64)
    return _Census(cols, keys, docs, tokens, [acc[k][2] for k in keys], total, biggest)


def _shard_rows(sh: ShardScores, cfg, table: pl.DataFrame | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shard's stratum codes, sort keys (best first: -score, the seeded hash, canonical order) and tokens."""
    p = cfg.prune
    cols = list(p.stratify)
    q = sh.quality_columns([*_score_columns(p), "n_words", *cols])
    score = _score(q, p)
    keys = sh.keys(np.nan_to_num(score, nan=0.0), largest=True)
    keys[np.isnan(score), 0] = _ONES  # NaN ranks after -inf (as lexsort puts it), ties by the hash
    if not cols:
        return np.zeros(sh.n, np.int64), keys, _tokens(q)
    coded = _key_frame(q, cols).join(table, on=cols, how="left", maintain_order="left")["_s"]
    if coded.null_count():
        raise CurationError(f"quality/{sh.stem}.parquet changed while prune ran (a new stratum): rerun `winnow run`")
    return coded.to_numpy().astype(np.int64), keys, _tokens(q)


def _windows(inp: PlanInput, c: _Census, quotas: np.ndarray, table: pl.DataFrame):
    """Each stratum's window of token positions [quota - M/2, quota + M/2] (its goal can only fall there: see
    ``_plan``), the rows at both ends (one ``weighted_select``), and the window rows of as many strata as
    ``WINDOW_CAP`` allows, sorted: ``{stratum: (keys, tokens)}``."""
    half = c.max_tokens // 2
    lo = np.maximum(1, quotas - half)
    hi = np.minimum(c.tokens, quotas + half)
    ends_goal = np.stack([lo, hi], axis=1)  # stratum s: groups 2s (its window's first row) and 2s + 1 (its last)
    ends_goal[hi < lo] = 0  # no window (M = 1): the goal is the quota, 0 (keep nothing) or the stratum (keep all)

    def both_ends(sh: ShardScores):
        code, keys, t = _shard_rows(sh, inp.cfg, table)
        return np.r_[2 * code, 2 * code + 1], np.vstack([keys, keys]), np.r_[t, t]

    ends = weighted_select(inp.stream(both_ends), 2 * len(quotas), ends_goal.ravel())
    take = np.zeros(len(quotas), bool)
    room = WINDOW_CAP
    for s in np.flatnonzero(ends.found[0::2] & ends.found[1::2]):
        size = int(ends.rank[2 * s + 1] - ends.rank[2 * s]) + 1
        if size <= room:
            take[s], room = True, room - size
    upper = Cuts(ends.key[1::2], ~take)
    below = predecessor(ends.key[0::2])
    parts = []
    for sh in inp.src if take.any() else ():
        code, keys, t = _shard_rows(sh, inp.cfg, table)
        sel = upper.keep(code, keys) & ~below.keep(code, keys)
        parts.append((code[sel], keys[sel], t[sel]))
    rows = {}
    if parts:
        code, keys, t = (np.concatenate(x) for x in zip(*parts, strict=True))
        order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0], code))
        code, keys, t = code[order], keys[order], t[order]
        for s in np.flatnonzero(take):
            a, b = np.searchsorted(code, s), np.searchsorted(code, s, side="right")
            rows[int(s)] = (keys[a:b], t[a:b])
    return lo, hi, ends, rows


def _crossing_at(inp: PlanInput, table, s: int, goal: int, win) -> tuple[np.ndarray, int, int, int]:
    """Stratum ``s``'s first row whose running tokens reach ``goal``: key, tokens and rows before it, its tokens."""
    lo, hi, ends, rows = win
    if s in rows and lo[s] <= goal <= hi[s]:
        keys, t = rows[s]
        cum = int(ends.before[2 * s]) + np.cumsum(t)
        i = int(np.searchsorted(cum, goal, side="left"))
        before = int(cum[i - 1]) if i else int(ends.before[2 * s])
        return keys[i], before, int(ends.rank[2 * s]) + i, int(t[i])

    def stratum(sh: ShardScores):  # not collected (above WINDOW_CAP): a search of its own, a few more passes
        code, keys, t = _shard_rows(sh, inp.cfg, table)
        m = code == s
        return np.zeros(int(m.sum()), np.int64), keys[m], t[m]

    c: Crossing = weighted_select(inp.stream(stratum), 1, np.array([goal]))
    return c.key[0], int(c.before[0]), int(c.rank[0]), int(c.weight[0])


def _plan(inp: PlanInput) -> Plan:
    """Pass 1 (``_census``): strata, tokens, quotas. Pass 2 (``_windows``): per stratum the rows whose running tokens
    lie within M/2 of its quota. Then the strata in order, each goal (quota + carry) exact: its cut.

    The carry: after a stratum, ``goal - drawn`` is at most M/2 in size (M: the most tokens of one document): the
    prefix closest to a goal inside the stratum misses it by at most half the crossing document; a goal at or below
    zero keeps nothing and a goal above the stratum keeps it all, and since every quota is at least 0 and at most the
    stratum's tokens (T <= W) neither makes the carry larger. So every goal is within M/2 of its quota."""
    cfg, n = inp.cfg, inp.totals.n
    c = _census(inp)
    token_target = _token_target(inp.target, c.total, n)
    quotas = proportional_quotas(c.tokens, token_target)
    table = c.table()
    win = _windows(inp, c, quotas, table)
    count = len(quotas)
    bound, none = np.zeros((count, 3), np.uint64), np.zeros(count, bool)
    kept, drawn = np.zeros(count, np.int64), np.zeros(count, np.int64)
    carry = 0
    for s in range(count):
        goal = int(quotas[s]) + carry
        if goal <= 0:
            none[s] = True
        elif goal >= c.tokens[s]:  # the whole stratum comes closest
            bound[s], kept[s], drawn[s] = _ONES, c.docs[s], c.tokens[s]
        else:
            key, before, rank, t = _crossing_at(inp, table, s, goal, win)
            take = goal - before > before + t - goal  # _prefix_closest: a tie takes fewer
            kept[s], drawn[s] = rank + take, before + (t if take else 0)
            cut = Cuts(key[None], np.zeros(1, bool)) if take else predecessor(key)
            bound[s], none[s] = cut.bound[0], cut.none[0]
        carry = goal - int(drawn[s])
    _summary(inp, c, quotas, token_target, kept, drawn)
    data = {"columns": c.columns, "strata": [list(k) for k in c.keys]}
    plan = Plan(cfg.prune.strategy, inp.target, {"quality": Cuts(bound, none)}, data, has_repeat=True)
    plan.cluster_stats = inp.default_cluster_stats()
    return plan


def _summary(inp: PlanInput, c: _Census, quotas, token_target: int, kept, drawn) -> None:
    """``_select_by_tokens``'s summary fields, from the per-stratum counts."""
    p, n = inp.cfg.prune, inp.totals.n
    tokens_drawn = int(drawn.sum())
    if n and abs(tokens_drawn - token_target) > c.max_tokens:  # pragma: no cover - a bug, never bad input
        raise AssertionError(f"prune drew {tokens_drawn} tokens, target {token_target}")
    by_stratum = [
        {
            **c.first[s], "docs": int(c.docs[s]), "tokens": int(c.tokens[s]), "eligible_tokens": int(c.tokens[s]),
            "quota_tokens": int(quotas[s]), "drawn_tokens": int(drawn[s]), "kept": int(kept[s]), "draws": int(kept[s]),
        }
        for s in range(len(quotas))
    ]  # fmt: skip
    inp.summary.update(
        unit="tokens",
        selection=f"stratified by {', '.join(p.stratify)} (DataMan)" if p.stratify else "global",
        strata=len(quotas),
        strata_without_eligible=0,
        tokens_total=c.total,
        token_target=int(token_target),
        tokens_drawn=tokens_drawn,
        unique_tokens_kept=tokens_drawn,
        shortfall=0,
        upsampled_draws=0,
        draws=int(kept.sum()),
        by_stratum=by_stratum,
    )


def _apply(plan: Plan, cfg, sh: ShardScores):
    table = _key_table(plan.data["columns"], plan.data["strata"])
    code, keys, _ = _shard_rows(sh, cfg, table)
    keep = plan.cuts["quality"].keep(code, keys)
    reason = reasons(sh.n)
    reason[~keep] = "quality_rank"
    return keep, reason


STRATEGIES.register(
    "quality", order=50, needs=("quality",), target="required", two_pass=TwoPass(_plan, _apply, exact_target=False)
)(quality)
