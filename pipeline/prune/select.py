"""Exact top-N selection over data that never sits in memory at once: a streamed, grouped radix select.

Every document has a sort key of three unsigned 64-bit words, compared lexicographically: the score (mapped to an
order-preserving integer, inverted when the largest are kept), the seeded hash of (stem, row) (``base.row_hash``)
and the canonical position (the shard's rank among the sorted stems, then the row). The key is unique per document,
so "the N smallest keys of a group" is one exact set, whatever the shard sizes or the order shards are read in.

``select`` finds, for every group (a cluster, or one group for the whole corpus), the key of its N-th document
(the *cut*) in a few passes over a stream of ``(group, keys)`` chunks: each pass fixes one more digit of every open
group's cut by a histogram of that digit over the rows that still match the digits fixed so far; once the rows left
at the cut's bin are few (``collect_cap`` in all), one last pass collects them and sorts them. Memory: the
histogram (groups × 2^digit counters, at most about 4M) and the collected rows, never the corpus. A document is then
kept when its key is at most its group's cut, which a unit decides alone from its own rows and the small ``Cuts``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

WORDS = 3
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
#: a chunk of the stream: group per row (int64, ``0 .. n_groups-1``) and keys (uint64, shape (rows, 3))
Chunk = tuple[np.ndarray, np.ndarray]
Stream = Callable[[], Iterable[Chunk]]


def score_word(score: np.ndarray, largest: bool) -> np.ndarray:
    """An order-preserving uint64 per float (the IEEE bits, sign-folded); inverted for ``largest``.

    ``-0.0`` counts as ``0.0`` (as float comparison does). NaN must be replaced by the caller."""
    x = np.asarray(score, np.float64) + 0.0  # -0.0 -> 0.0
    bits = x.view(np.uint64)
    neg = (bits >> np.uint64(63)).astype(bool)
    word = np.where(neg, ~bits, bits | np.uint64(1 << 63))
    return ~word if largest else word


def sort_keys(*words: np.ndarray) -> np.ndarray:
    """Stack three uint64 words per row into keys (rows, 3)."""
    return np.stack([np.asarray(w, np.uint64) for w in words], axis=1)


@dataclass
class Cuts:
    """Per group, the last kept key (``bound``, inclusive); a group with ``none`` keeps nothing."""

    bound: np.ndarray  # (groups, 3) uint64
    none: np.ndarray  # (groups,) bool

    def keep(self, groups: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Whether each row's key is at most its group's cut (lexicographic over the three words)."""
        b = self.bound[groups]
        le = keys[:, 2] <= b[:, 2]
        for w in (1, 0):
            le = (keys[:, w] < b[:, w]) | ((keys[:, w] == b[:, w]) & le)
        return le & ~self.none[groups]

    def to_json(self) -> dict:
        return {"bound": [[int(v) for v in row] for row in self.bound], "none": self.none.astype(int).tolist()}

    @classmethod
    def from_json(cls, d: dict) -> Cuts:
        bound = np.array(d["bound"], dtype=np.uint64).reshape(-1, WORDS)
        return cls(bound, np.array(d["none"], dtype=bool))


def _digit_bits(n_groups: int) -> int:
    """Bits per digit: 16 for few groups, fewer so that groups × 2^bits stays about 4M counters."""
    room = 22 - math.ceil(math.log2(max(n_groups, 1)))
    return 16 if room >= 16 else 8 if room >= 8 else 4


def _matches(keys: np.ndarray, prefix: np.ndarray, bits: int) -> np.ndarray:
    """Rows whose first ``bits`` key bits equal ``prefix``'s (prefix: one row of words per key row)."""
    ok = np.ones(len(keys), dtype=bool)
    full, part = divmod(bits, 64)
    for w in range(full):
        ok &= keys[:, w] == prefix[:, w]
    if part:
        s = np.uint64(64 - part)
        ok &= (keys[:, full] >> s) == (prefix[:, full] >> s)
    return ok


class _Search:
    """The state of ``select``: per group the digits fixed so far, the rows still needed below them, open or not."""

    def __init__(self, n_groups: int, need: np.ndarray, collect_cap: int):
        self.g = n_groups
        self.need = np.asarray(need, np.int64).copy()
        self.d = _digit_bits(n_groups)
        self.level = 0  # digits fixed
        self.prefix = np.zeros((n_groups, WORDS), np.uint64)
        self.bound = np.zeros((n_groups, WORDS), np.uint64)
        self.none = self.need <= 0
        self.open = ~self.none
        self.cap = collect_cap

    def digit(self, keys: np.ndarray, level: int) -> np.ndarray:
        w, off = divmod(level * self.d, 64)
        return ((keys[:, w] >> np.uint64(64 - self.d - off)) & np.uint64((1 << self.d) - 1)).astype(np.int64)

    def candidates(self, groups: np.ndarray, keys: np.ndarray, level: int) -> np.ndarray:
        """Rows of open groups whose first ``level`` digits are their group's prefix."""
        sel = self.open[groups]
        if level and sel.any():
            idx = np.flatnonzero(sel)
            sel[idx] = _matches(keys[idx], self.prefix[groups[idx]], level * self.d)
        return sel

    def histogram(self, stream: Stream) -> np.ndarray:
        nb = 1 << self.d
        counts = np.zeros(self.g * nb, np.int64)
        for groups, keys in stream():
            sel = self.candidates(groups, keys, self.level)
            if sel.any():
                code = groups[sel] * nb + self.digit(keys[sel], self.level)
                counts += np.bincount(code, minlength=self.g * nb)
        return counts.reshape(self.g, nb)

    def descend(self, counts: np.ndarray) -> int:
        """Fix the next digit of every open group from its histogram; return the rows left at the cut bins."""
        w, off = divmod(self.level * self.d, 64)
        shift = np.uint64(64 - self.d - off)
        left = 0
        for g in np.flatnonzero(self.open):
            cum = np.cumsum(counts[g])
            if cum[-1] <= self.need[g]:  # every candidate is kept (only at level 0: need above the group's size)
                self.bound[g] = _ONES
                self.open[g] = False
                continue
            b = int(np.searchsorted(cum, self.need[g], side="left"))
            self.need[g] -= int(cum[b - 1]) if b else 0
            self.prefix[g, w] |= np.uint64(b) << shift
            if counts[g, b] == self.need[g]:  # the cut falls at the end of the bin: keep the whole bin
                self.bound[g] = self.prefix[g]
                self.bound[g, w] |= (np.uint64(1) << shift) - np.uint64(1) if shift else np.uint64(0)
                self.bound[g, w + 1 :] = _ONES
                self.open[g] = False
            else:
                left += int(counts[g, b])
        self.level += 1
        return left

    def collect(self, stream: Stream) -> None:
        """Gather the rows at the open groups' cut bins, sort them and take each group's ``need``-th."""
        gs, ks = [], []
        for groups, keys in stream():
            sel = self.candidates(groups, keys, self.level)
            gs.append(groups[sel])
            ks.append(keys[sel])
        g = np.concatenate(gs) if gs else np.zeros(0, np.int64)
        k = np.concatenate(ks) if ks else np.zeros((0, WORDS), np.uint64)
        order = np.lexsort((k[:, 2], k[:, 1], k[:, 0], g))
        g, k = g[order], k[order]
        starts = np.searchsorted(g, np.arange(self.g))
        for grp in np.flatnonzero(self.open):
            self.bound[grp] = k[starts[grp] + self.need[grp] - 1]
            self.open[grp] = False

    def run(self, stream: Stream) -> Cuts:
        levels = WORDS * 64 // self.d
        while self.open.any():
            left = self.descend(self.histogram(stream))
            if self.open.any() and (left <= self.cap or self.level == levels):
                self.collect(stream)
        return Cuts(self.bound, self.none)


#: collect the rows left at the cut bins once they are at most this many (24 bytes of key each)
COLLECT_CAP = 1 << 20


def select(stream: Stream, n_groups: int, need: np.ndarray, collect_cap: int | None = None) -> Cuts:
    """The cut of every group: its ``need[g]`` smallest keys are the kept ones (all of them if it has fewer).

    Args:
        stream: called once per pass; yields ``(groups, keys)`` chunks of the candidate rows (the same rows, in any
            order, every time).
        n_groups: the number of groups.
        need: rows to keep per group.
        collect_cap: collect and sort the rows left at the cut bins once they are at most this many (default
            ``COLLECT_CAP``).
    """
    return _Search(n_groups, need, COLLECT_CAP if collect_cap is None else collect_cap).run(stream)


def predecessor(keys: np.ndarray) -> Cuts:
    """Cuts just below each key (keys (groups, 3)): a row is kept when its key is *less than* its group's key.
    Keys are integers of three words, so the bound is the key minus one; a key of zero keeps nothing."""
    k = np.asarray(keys, np.uint64).reshape(-1, WORDS)
    bound = k.copy()
    borrow = np.ones(len(k), dtype=bool)
    for w in range(WORDS - 1, -1, -1):
        zero = bound[:, w] == 0
        bound[borrow, w] -= np.uint64(1)  # wraps to all ones where zero: the borrow goes on to the next word
        borrow &= zero
    return Cuts(bound, borrow)


@dataclass
class Crossing:
    """Per group, the first row in key order whose running weight reaches the goal (``weighted_select``)."""

    key: np.ndarray  # (groups, 3) uint64: that row's key
    before: np.ndarray  # (groups,) int64: the weight of the group's rows before it
    rank: np.ndarray  # (groups,) int64: the group's rows before it
    weight: np.ndarray  # (groups,) int64: its own weight
    found: np.ndarray  # (groups,) bool: False where the goal is above the group's weight (or below 1)


class _Weighted(_Search):
    """``select``'s digit-by-digit search with each row counted by its weight (a positive integer)."""

    def __init__(self, n_groups: int, goal: np.ndarray, collect_cap: int):
        super().__init__(n_groups, goal, collect_cap)
        self.before = np.zeros(n_groups, np.int64)
        self.rank = np.zeros(n_groups, np.int64)
        self.weight = np.zeros(n_groups, np.int64)
        self.found = self.open.copy()

    def histogram(self, stream: Stream) -> tuple[np.ndarray, np.ndarray]:
        nb = 1 << self.d
        counts = np.zeros(self.g * nb, np.int64)
        weights = np.zeros(self.g * nb, np.int64)
        for groups, keys, w in stream():
            sel = self.candidates(groups, keys, self.level)
            if sel.any():
                code = groups[sel] * nb + self.digit(keys[sel], self.level)
                counts += np.bincount(code, minlength=self.g * nb)
                # float64 sums of one chunk's integer weights: exact below 2^53
                weights += np.rint(np.bincount(code, weights=w[sel], minlength=self.g * nb)).astype(np.int64)
        return counts.reshape(self.g, nb), weights.reshape(self.g, nb)

    def descend(self, hist: tuple[np.ndarray, np.ndarray]) -> int:
        """Fix the next digit: the bin where the running weight reaches the goal; return the rows left in them."""
        counts, weights = hist
        w, off = divmod(self.level * self.d, 64)
        shift = np.uint64(64 - self.d - off)
        left = 0
        for g in np.flatnonzero(self.open):
            cum = np.cumsum(weights[g])
            if cum[-1] < self.need[g]:  # the goal is above the group's weight (only at level 0)
                self.open[g] = self.found[g] = False
                continue
            b = int(np.searchsorted(cum, self.need[g], side="left"))
            if b:
                self.need[g] -= int(cum[b - 1])
                self.before[g] += int(cum[b - 1])
                self.rank[g] += int(counts[g, :b].sum())
            self.prefix[g, w] |= np.uint64(b) << shift
            left += int(counts[g, b])
        self.level += 1
        return left

    def collect(self, stream: Stream) -> None:
        """Gather the rows at the open groups' bins, sort them and walk each group's running weight to its goal."""
        gs, ks, ws = [], [], []
        for groups, keys, wt in stream():
            sel = self.candidates(groups, keys, self.level)
            gs.append(groups[sel])
            ks.append(keys[sel])
            ws.append(np.asarray(wt, np.int64)[sel])
        g = np.concatenate(gs) if gs else np.zeros(0, np.int64)
        k = np.concatenate(ks) if ks else np.zeros((0, WORDS), np.uint64)
        wt = np.concatenate(ws) if ws else np.zeros(0, np.int64)
        order = np.lexsort((k[:, 2], k[:, 1], k[:, 0], g))
        g, k, wt = g[order], k[order], wt[order]
        starts = np.searchsorted(g, np.arange(self.g))
        ends = np.searchsorted(g, np.arange(self.g), side="right")
        for grp in np.flatnonzero(self.open):
            cum = np.cumsum(wt[starts[grp] : ends[grp]])
            i = int(np.searchsorted(cum, self.need[grp], side="left"))
            self.key[grp] = k[starts[grp] + i]
            self.before[grp] += int(cum[i - 1]) if i else 0
            self.rank[grp] += i
            self.weight[grp] = wt[starts[grp] + i]
            self.open[grp] = False

    def run(self, stream: Stream) -> Crossing:  # type: ignore[override]
        self.key = np.zeros((self.g, WORDS), np.uint64)
        levels = WORDS * 64 // self.d
        while self.open.any():
            left = self.descend(self.histogram(stream))
            if self.open.any() and (left <= self.cap or self.level == levels):
                self.collect(stream)
        return Crossing(self.key, self.before, self.rank, self.weight, self.found)


def weighted_select(stream: Stream, n_groups: int, goal: np.ndarray, collect_cap: int | None = None) -> Crossing:
    """Per group, the first row (in key order) at which the running total of the rows' weights reaches ``goal[g]``:
    its key, the weight and the number of the group's rows before it, and its own weight. ``select`` with each row
    counted by its weight, in the same passes and memory (the histograms count rows and sum weights).

    Args:
        stream: called once per pass; yields ``(groups, keys, weights)`` chunks (weights: positive integers).
        n_groups: the number of groups.
        goal: the running weight to reach per group; a goal below 1 or above the group's weight is not ``found``.
        collect_cap: as in ``select``.
    """
    return _Weighted(n_groups, goal, COLLECT_CAP if collect_cap is None else collect_cap).run(stream)
