"""The training data loader: a resumable PyTorch ``IterableDataset`` that follows a mixture plan (DESIGN §3.9-3.10).

:class:`MixtureDataset` reads ``<run>/mixture_plan.json`` (as a :class:`~winnow.mixers.plan.MixturePlan`: a plan
with a missing, unknown or malformed key is refused, the key named) and the curated shards it names, and yields
documents (or packed token sequences) in the proportions, repeat counts and phases of the plan.

**The global order** is a pure function of ``(plan, seed, epoch)``, computed the same way in every process:

* *Index.* Every kept row (``keep == True``, ``repeat > 0``) is put in its pool by the plan's ``pool_definition``
  (the planner's rule, :mod:`winnow.mixers.pools`), with its token count by the plan's ``token_count`` rule (the
  same :class:`~winnow.mixers.pools.TokenCounter` as the planner's). The per-pool document counts and token sums
  must equal the plan's, so a plan made from other shards is refused. A pool's *items* are its documents, each
  ``repeat`` times. The index holds a few ints per document, never text.
* *Pool streams.* A pool is read as an endless stream of passes over its items. Pass ``k`` orders the items by a
  permutation of all row groups (drawn from ``(seed, epoch, k)``, shared by every pool, so pools progressing at
  the same rate read the same row groups at the same time), shuffled within blocks of ``shuffle_block`` row
  groups (drawn from ``(seed, epoch, k, pool)``). A fractional last pass is the prefix of its permutation: a
  deterministic random subset.
* *Interleaving in token space.* In a phase with ``T`` tokens, pool ``p`` has the target ``T_p`` (the plan's
  ``phase_tokens``). Item ``n`` of pool ``p``, whose tokens span ``[c, c + len)`` of the pool's tokens in the
  phase, gets the virtual time ``u = (c + len / 2) / T_p``; the phase is every pool's items merged by ``u``
  (ties: plan order of the pools). Each pool is then at the same fraction of its target at every point, which
  is smooth weighted round-robin in token space. The phase ends at the first item that would start at or after
  its ``end_token`` (the plan's boundary), and the pools' streams go on where they stopped in the next phase.
  Realised tokens per pool and phase match ``phase_tokens`` to within about one document.
* Sample ``i`` of the epoch is the ``i``-th item of that merge. ``num_samples`` is the epoch's length.

Because every pool's virtual times increase along its stream, the merge is evaluated window by window with
``searchsorted`` and a stable sort; a process can start at any sample without materialising the samples before
it, and memory is the index plus a window, not the budget.

**Sharding.** With ``R`` ranks (``torch.distributed``, or the ``rank``/``world_size`` arguments), ``W`` DataLoader
workers (``get_worker_info()``) and a per-rank ``batch_size`` ``B``, the samples from the resume point ``o`` on
are cut into steps of ``B·R``: step ``t`` holds ``[o + t·B·R, o + (t+1)·B·R)``, rank ``r`` takes the ``B`` samples
``r·B .. r·B + B - 1`` of each step and worker ``t mod W`` of that rank produces them. A DataLoader (plain or
``StatefulDataLoader``) with the same ``batch_size`` collects batches from its workers in turn, so step ``t``
is batch ``t`` on every rank and the concatenation over ranks is the global order whatever ``R`` and ``W`` are.
With ``B = 1`` this is sample ``i`` going to rank/worker slot ``i mod (R·W)``.

**State** (JSON): ``{epoch, seed, samples_seen, mixture_fingerprint, token_offset, layout}``. ``samples_seen`` is
global: the samples before it are consumed on every rank (ranks advance in lockstep), so any rank's dict
restores every rank, on any number of ranks and workers (elastic). ``layout`` (origin, ranks, workers, batch
size) lets ``StatefulDataLoader`` restore each worker exactly with the same layout; a different layout starts
its steps at ``samples_seen``. :meth:`MixtureDataset.load_state_dict` also accepts a whole ``StatefulDataLoader``
state (it takes the furthest worker). ``set_epoch(e)`` starts epoch ``e`` from its beginning unless ``e`` is the
epoch being resumed; a state at the end of an epoch resumes at the start of the next one.

**Packing.** With a ``tokenizer`` and ``seq_len``, each rank/worker tokenises its documents (plus an EOS id) and
yields ``{"input_ids": LongTensor[seq_len]}`` cut from the concatenation; the tokens of a last incomplete
sequence are dropped. The document order is the global one; which documents share a sequence depends on the
layout. ``samples_seen`` then points at the first document not wholly emitted and ``token_offset`` at its next
token, so a resume with the same layout is exact; with another layout the partly emitted documents of each
worker start again from their first token.

**Reading.** Texts are read by row group (``id`` and text columns only), for the samples of one window at a time,
through an LRU cache of decoded row groups bounded by ``cache_bytes``: memory does not grow with the corpus.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pydantic import ValidationError
from torch.utils.data import IterableDataset

import winnow
from winnow.core.rundir import RunDir
from winnow.mixers.plan import PLAN_FILE, PLAN_FORMAT, MixturePlan, Shard, describe_validation_error
from winnow.mixers.planner import PlanError
from winnow.mixers.pools import PoolRule, TokenCounter, pool_rule

__all__ = ["LOADER_STATE_KEYS", "MixtureDataset", "MixturePlanError", "merge_loader_state", "plan_fingerprint"]

#: Keys of :meth:`MixtureDataset.state_dict`.
LOADER_STATE_KEYS = ("epoch", "seed", "samples_seen", "mixture_fingerprint", "token_offset", "layout")
#: Samples sorted at a time when walking the global order (at least this many, more with many ranks/workers).
_WINDOW = 8192
#: Passes of a pool stream kept in memory (the enumeration needs at most two at a time).
_PASS_CACHE = 2
#: Open parquet files kept per process.
_OPEN_FILES = 64


class MixturePlanError(PlanError):
    """The plan cannot drive the loader: wrong format or winnow version, a missing or changed shard, a pool with no
    rows. The message names what differs; re-running ``winnow mix`` on the run makes a matching plan."""


# =============================================================================================================
# The plan and the index of its documents
# =============================================================================================================
def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def _open_parquet(fs, path: str) -> pq.ParquetFile:
    """A parquet file: natively for local paths (several times faster than through a Python file object),
    through fsspec otherwise; column chunks are read in coalesced requests (``pre_buffer``)."""
    if _is_local(fs):
        return pq.ParquetFile(path, pre_buffer=True)
    return pq.ParquetFile(fs.open(path, "rb"), pre_buffer=True)


def plan_fingerprint(plan: Mapping[str, Any] | MixturePlan) -> str:
    """A short hash of the plan's canonical JSON: states saved under one plan are refused under another."""
    data = plan.to_dict() if isinstance(plan, MixturePlan) else plan
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _read_plan_file(rd: RunDir, url: str) -> tuple[str, RunDir, str]:
    """``(text, run directory, plan URL)`` of a plan path or of the run directory holding one."""
    if rd.fs.isdir(rd.path):
        if not rd.exists(PLAN_FILE):
            msg = f"no {PLAN_FILE} in {url}: run `winnow mix` on this run first"
            raise MixturePlanError(msg)
        return rd.read_text(PLAN_FILE), rd, rd.url_of(PLAN_FILE)
    if not rd.fs.exists(rd.path):
        msg = f"mixture plan not found: {url}"
        raise MixturePlanError(msg)
    with rd.fs.open(rd.path, "r", encoding="utf-8") as f:
        text = f.read()
    return text, RunDir(url.rsplit("/", 1)[0] if "/" in url else ".", rd.storage_options), url


def _load_plan(
    plan: str | os.PathLike | Mapping[str, Any] | MixturePlan, run_dir: str | None, storage_options: dict | None
) -> tuple[dict[str, Any], RunDir, str]:
    """``(plan dict, RunDir, where)`` from a plan path, a run directory, a dict or a model (with ``run_dir``)."""
    if isinstance(plan, (Mapping, MixturePlan)):
        if run_dir is None:
            msg = "MixtureDataset(plan=<dict>) needs run_dir=: the plan's shard paths are relative to the run"
            raise MixturePlanError(msg)
        data = plan.to_dict() if isinstance(plan, MixturePlan) else dict(plan)
        return data, RunDir(str(run_dir), storage_options), "the plan given"
    url = str(plan).rstrip("/")
    text, rd, plan_url = _read_plan_file(RunDir(url, storage_options), url)
    if run_dir is not None:
        rd = RunDir(str(run_dir), storage_options)
    try:
        data = json.loads(text)
    except ValueError as e:
        msg = f"{plan_url}: not a JSON mixture plan ({e})"
        raise MixturePlanError(msg) from None
    if not isinstance(data, dict):
        msg = f"{plan_url}: not a JSON mixture plan (a {type(data).__name__}, not an object)"
        raise MixturePlanError(msg)
    return data, rd, plan_url


def _check_plan(data: dict[str, Any], where: str, check_version: bool) -> MixturePlan:
    """The plan as a :class:`MixturePlan`: its format, its winnow version (with ``check_version``), its keys and
    values, unique pool names and contiguous phases from token 0."""
    if data.get("format") != PLAN_FORMAT:
        msg = f"{where}: format {data.get('format')!r} is not a mixture plan this loader reads ({PLAN_FORMAT!r})"
        raise MixturePlanError(msg)
    version = data.get("winnow_version")
    if check_version and version is not None and version != winnow.__version__:
        msg = (
            f"{where} was made by winnow {version}, this is winnow {winnow.__version__}: the pool "
            "rule or the token count may differ; re-run `winnow mix` on the run (or pass check_version=False)"
        )
        raise MixturePlanError(msg)
    try:
        plan = MixturePlan.model_validate(data)
    except ValidationError as e:
        msg = f"{where}: {describe_validation_error(e)}; re-run `winnow mix`"
        raise MixturePlanError(msg) from None
    names = [p.pool for p in plan.pools]
    if len(set(names)) != len(names):
        msg = f"{where}: pool names are not unique"
        raise MixturePlanError(msg)
    if not plan.phases or plan.phases[0].start_token != 0:
        msg = f"{where}: the phases must start at token 0"
        raise MixturePlanError(msg)
    for a, b in zip(plan.phases, plan.phases[1:], strict=False):
        if a.end_token != b.start_token:
            msg = f"{where}: phase {b.name!r} does not start where {a.name!r} ends"
            raise MixturePlanError(msg)
    return plan


@dataclass
class _Index:
    """Kept documents of the plan's shards, in shard then row order, and each chosen pool's items.

    A few bytes per document, in numpy arrays: its tokens, one bit per row of a row group (kept or not), and its
    pools' items; a document's row group comes from the row groups' first documents, its row from the bits.
    """

    shard_paths: list[str]  # filesystem paths (fsspec)
    rg_shard: np.ndarray  # per global row group: its shard
    rg_group: np.ndarray  # per global row group: its number within the shard
    rg_bytes: np.ndarray  # per global row group: uncompressed size of its id and text column chunks
    rg_start: np.ndarray  # per global row group: its first document (int64; one more entry: the number of documents)
    rg_rows: np.ndarray  # per global row group: its rows (int32)
    rg_mask: np.ndarray  # per global row group: the byte where its kept-row bits start in ``kept_bits`` (int64)
    kept_bits: np.ndarray  # the kept rows of every row group, ``np.packbits`` per row group (uint8)
    doc_tokens: np.ndarray  # per document: tokens by the plan's rule (the narrowest unsigned/int type they fit)
    items: dict[int, np.ndarray]  # pool (plan index) -> documents, each `repeat` times, in document order (int32)

    def doc_rg(self, docs: np.ndarray) -> np.ndarray:
        """The global row group of each of ``docs`` (int32)."""
        out = np.empty(len(docs), dtype=np.int32)
        for a in range(0, len(docs), _CHUNK):  # searchsorted returns int64: chunks bound the temporary
            out[a : a + _CHUNK] = np.searchsorted(self.rg_start, docs[a : a + _CHUNK], side="right") - 1
        return out

    def kept_rows(self, rg: int) -> np.ndarray:
        """Rows of row group ``rg`` that are documents, in order."""
        start, n = int(self.rg_mask[rg]), int(self.rg_rows[rg])
        bits = np.unpackbits(self.kept_bits[start : start + (n + 7) // 8], count=n)
        return np.flatnonzero(bits)


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


#: Documents per step when a per-document array is computed in pieces (bounds int64 temporaries).
_CHUNK = 1 << 20
_INT32_MAX = np.iinfo(np.int32).max


class _Growing:
    """An integer array appended to in place, in the narrowest type of ``ladder`` that holds its values so far
    (widened when a value does not fit), its capacity doubling when full: no list of pieces, no concatenation."""

    def __init__(self, ladder: tuple[type, ...], capacity: int = 0):
        self.ladder = ladder
        self.data = np.empty(max(int(capacity), 1024), dtype=ladder[0])
        self.n = 0

    def _widen(self, values: np.ndarray) -> None:
        lo, hi = int(values.min()), int(values.max())
        for dtype in self.ladder:
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                break
        if np.dtype(dtype).itemsize > self.data.dtype.itemsize:
            self.data = self.data.astype(dtype)

    def extend(self, values: np.ndarray) -> None:
        if not len(values):
            return
        self._widen(values)
        end = self.n + len(values)
        if end > len(self.data):
            grown = np.empty(max(end, 2 * len(self.data)), dtype=self.data.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : end] = values
        self.n = end

    def array(self) -> np.ndarray:
        return self.data[: self.n] if self.n == len(self.data) else self.data[: self.n].copy()


#: Integer types a per-document array may take, narrowest first: counts (>= 0) and pool numbers (-1: no pool).
_COUNTS = (np.uint8, np.uint16, np.int32, np.int64)
_POOLS = (np.int8, np.int16, np.int32)


@dataclass
class _IndexBuilder:
    """Reads the plan's shards row group by row group and collects the index's arrays.

    Per document it keeps its tokens, its pool and its repeat count in arrays sized by the plan's kept rows, each in
    the narrowest integer type that holds its values (uint8/uint16 tokens and repeats, int8 pools: 4 bytes per
    document for short documents); per row group, the bits of its kept rows. The pools' documents, unique tokens and
    pass tokens are summed as the row groups are read.

    Args:
        plan: The plan.
        rd: The run directory its shard paths are relative to.
        where: The plan's name in messages.
        id_field: The id column.
    """

    plan: MixturePlan
    rd: RunDir
    where: str
    id_field: str

    def __post_init__(self) -> None:
        self.rule: PoolRule = pool_rule(self.plan.pool_definition)
        self.counter = TokenCounter(self.plan.token_count)
        self.pool_of = {p.pool: i for i, p in enumerate(self.plan.pools)}
        self.shard_paths: list[str] = []
        self.rg_shard: list[int] = []
        self.rg_group: list[int] = []
        self.rg_bytes: list[int] = []
        self.rg_start: list[int] = [0]
        self.rg_rows: list[int] = []
        self.rg_mask: list[int] = []
        self.kept_bits: list[np.ndarray] = []
        self.mask_bytes = 0
        expected = sum(s.kept_rows for s in self.plan.shards)  # the capacity: allocated pages only cost once used
        self.doc_tokens = _Growing(_COUNTS, expected)
        self.doc_pool = _Growing(_POOLS, expected)
        self.doc_rep = _Growing(_COUNTS, expected)
        n_pools = len(self.plan.pools)
        self.n_docs = np.zeros(n_pools, dtype=np.int64)
        self.unique = np.zeros(n_pools, dtype=np.int64)
        self.passes = np.zeros(n_pools, dtype=np.int64)
        self.unknown: dict[str, list[int]] = {}  # pool name -> [documents, tokens] of kept rows in no pool of the plan

    def shard(self, s: int, shard: Shard) -> None:
        """Index shard ``s``: check its columns and row counts against the plan, then read its row groups."""
        where, rel, text_col = self.where, shard.path, self.plan.pool_definition.text_column
        path = self.rd._p(rel)
        if not self.rd.fs.exists(path):
            msg = (
                f"{where}: shard {rel} is missing from {self.rd.url} (the plan was made from other shards, or the "
                "shard was removed): re-run `winnow mix` on this run"
            )
            raise MixturePlanError(msg)
        self.shard_paths.append(path)
        with _open_parquet(self.rd.fs, path) as pf:
            names = pf.schema_arrow.names
            absent = [c for c in dict.fromkeys([*self.rule.columns, text_col, self.id_field]) if c not in names]
            if absent:
                have = ", ".join(names)
                msg = f"{where}: shard {rel} has no column {', '.join(map(repr, absent))} (columns: {have})"
                raise MixturePlanError(msg)
            if pf.metadata.num_rows != shard.rows:
                msg = (
                    f"{where}: shard {rel} has {pf.metadata.num_rows} rows, the plan counted {shard.rows}: the "
                    "curated shards changed since the plan was made; re-run `winnow mix`"
                )
                raise MixturePlanError(msg)
            kept_rows = sum(self.row_group(s, pf, g, rel, names) for g in range(pf.num_row_groups))
        if kept_rows != shard.kept_rows:
            msg = (
                f"{where}: shard {rel} has {kept_rows} kept rows, the plan counted {shard.kept_rows}: the "
                "curated shards changed since the plan was made; re-run `winnow mix`"
            )
            raise MixturePlanError(msg)

    def _select(self, pf: pq.ParquetFile, g: int, rel: str, names: list[str]) -> pl.DataFrame:
        """Row group ``g``'s rows: kept, repeat, pool and text (the pool rule's columns only)."""
        rule, text_col = self.rule, self.plan.pool_definition.text_column
        rep_col = rule.repeat_column(names)
        cols = list(dict.fromkeys([*rule.columns, text_col] + ([rep_col] if rep_col else [])))
        frame = pl.from_arrow(pf.read_row_group(g, columns=cols))
        assert isinstance(frame, pl.DataFrame)
        sel = frame.select(
            rule.kept(names).alias("kept"),
            rule.repeat(names).alias("rep"),
            rule.pool.alias("pool"),
            pl.col(text_col).cast(pl.String).alias("text"),
        )
        if rep_col and int(sel.select((pl.col("rep") < 0).sum()).item()):
            msg = f"{self.where}: shard {rel} has rows with a negative {rep_col!r}"
            raise MixturePlanError(msg)
        return sel

    def row_group(self, s: int, pf: pq.ParquetFile, g: int, rel: str, names: list[str]) -> int:
        """Index the kept rows of row group ``g`` of shard ``s``: pool, tokens, repeat; return how many."""
        sel = self._select(pf, g, rel, names)
        kept_mask = sel["kept"].to_numpy()
        sel = sel.filter(pl.col("kept"))
        tokens = self.counter.counts(sel["text"])
        pid = sel["pool"].replace_strict(self.pool_of, default=-1, return_dtype=pl.Int32).to_numpy()
        rep = sel["rep"].to_numpy()
        self._count_pools(sel["pool"], pid, tokens, rep)
        self.rg_shard.append(s)
        self.rg_group.append(g)
        text_col = self.plan.pool_definition.text_column
        meta = pf.metadata.row_group(g)
        self.rg_bytes.append(
            sum(
                meta.column(c).total_uncompressed_size
                for c in range(meta.num_columns)
                if meta.column(c).path_in_schema in (text_col, self.id_field)
            )
        )
        bits = np.packbits(kept_mask)
        self.rg_mask.append(self.mask_bytes)
        self.rg_rows.append(len(kept_mask))
        self.kept_bits.append(bits)
        self.mask_bytes += len(bits)
        self.rg_start.append(self.rg_start[-1] + sel.height)
        self.doc_tokens.extend(tokens)
        self.doc_pool.extend(pid)
        self.doc_rep.extend(rep)
        return sel.height

    def _count_pools(self, pools: pl.Series, pid: np.ndarray, tokens: np.ndarray, rep: np.ndarray) -> None:
        """Add a row group's kept rows to the pools' documents, unique and pass tokens (exact integers)."""
        known = pid >= 0
        k, t, n = pid[known], tokens[known], len(self.n_docs)
        self.n_docs += np.bincount(k, minlength=n)
        # float64 sums of one row group's integers are exact (below 2^53); the totals add up in int64
        self.unique += np.bincount(k, weights=t, minlength=n).astype(np.int64)
        self.passes += np.bincount(k, weights=t * rep[known], minlength=n).astype(np.int64)
        if not known.all():
            lost = pl.DataFrame({"pool": pools, "tokens": tokens}).filter(pl.Series(~known))
            for name, docs, toks in lost.group_by("pool").agg(pl.len(), pl.col("tokens").sum()).iter_rows():
                acc = self.unknown.setdefault(name, [0, 0])
                acc[0], acc[1] = acc[0] + docs, acc[1] + toks

    def check(self) -> None:
        """Refuse the shards unless every pool has the plan's documents, unique tokens and pass tokens."""
        pools, where, url = self.plan.pools, self.where, self.rd.url
        n_docs, unique, passes = self.n_docs, self.unique, self.passes
        for i, p in enumerate(pools):
            if p.tokens > 0 and n_docs[i] == 0:
                msg = (
                    f"{where}: pool {p.pool!r} has no rows in the curated shards of {url}, but the plan gives it "
                    f"{p.tokens:,} tokens (it counted {p.documents} documents): re-run `winnow mix`"
                )
                raise MixturePlanError(msg)
        stale = [
            f"{p.pool}: plan {p.documents} documents / {p.unique_tokens} tokens / {p.pass_tokens} pass tokens, "
            f"shards {int(n_docs[i])} / {int(unique[i])} / {int(passes[i])}"
            for i, p in enumerate(pools)
            if (p.documents, p.unique_tokens, p.pass_tokens) != (int(n_docs[i]), int(unique[i]), int(passes[i]))
        ]
        stale += [
            f"{name}: {n} kept document(s) with {t} tokens in no pool of the plan"
            for name, (n, t) in sorted(self.unknown.items())
            if t > 0  # the planner leaves out pools without tokens
        ]
        if stale:
            msg = (
                f"{where} does not match the curated shards of {url} (they changed since the plan was made, or it "
                f"was made with another pool rule): {'; '.join(stale[:5])}"
                + (" ..." if len(stale) > 5 else "")
                + "; re-run `winnow mix`"
            )
            raise MixturePlanError(msg)

    def items(self) -> dict[int, np.ndarray]:
        """Each chosen pool's documents, each ``repeat`` times, in document order."""
        dpool, drep = self.doc_pool.array(), self.doc_rep.array()
        self.doc_pool = self.doc_rep = _Growing(_POOLS)  # freed once the items are made
        dtype = np.int32 if len(dpool) <= _INT32_MAX else np.int64
        items = {}
        for i, p in enumerate(self.plan.pools):
            if p.tokens > 0:
                docs = np.flatnonzero(dpool == i).astype(dtype)
                items[i] = np.repeat(docs, drep[docs])
        return items

    def index(self) -> _Index:
        """The :class:`_Index` of the shards read, checked against the plan."""
        self.check()
        items = self.items()
        tokens = self.doc_tokens.array()
        return _Index(
            shard_paths=self.shard_paths,
            rg_shard=np.asarray(self.rg_shard, dtype=np.int32),
            rg_group=np.asarray(self.rg_group, dtype=np.int32),
            rg_bytes=np.asarray(self.rg_bytes, dtype=np.int64),
            rg_start=np.asarray(self.rg_start, dtype=np.int64),
            rg_rows=np.asarray(self.rg_rows, dtype=np.int32),
            rg_mask=np.asarray(self.rg_mask, dtype=np.int64),
            kept_bits=_concat(self.kept_bits, np.uint8),
            doc_tokens=tokens,
            items=items,
        )


def _build_index(plan: MixturePlan, rd: RunDir, where: str, id_field: str) -> _Index:
    """Read the plan's shards row group by row group (pool columns and text only) and check them against the plan."""
    builder = _IndexBuilder(plan, rd, where, id_field)
    for s, shard in enumerate(plan.shards):
        builder.shard(s, shard)
    return builder.index()


# =============================================================================================================
# The global order: pool streams merged by virtual time, phase by phase
# =============================================================================================================
def _m_star(u: float, d: int) -> int:
    """The smallest integer ``m >= 0`` with ``m / d >= u`` in float64 (the comparison the sort makes)."""
    m = max(0, math.ceil(u * d))
    while m > 0 and (m - 1) / d >= u:
        m -= 1
    while m / d < u:
        m += 1
    return m


class _Stream:
    """One pool's items as an endless stream of seeded passes, with the pool's cumulative tokens along it."""

    def __init__(self, pool: int, items: np.ndarray, index: _Index, sched: _Schedule):
        self.pool = pool
        self.items = items
        self.size = len(items)
        self.tokens = index.doc_tokens[items]
        self.rgs = index.doc_rg(items)
        self.pass_tokens = int(self.tokens.sum())
        self._sched = sched
        self._passes: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    def passes(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pass ``k``: (documents in order, cumulative tokens with a leading 0, ``cum[j] + cum[j+1]``)."""
        hit = self._passes.get(k)
        if hit is not None:
            self._passes.move_to_end(k)
            return hit
        s = self._sched
        block = s.rg_rank(k)[self.rgs] // s.shuffle_block
        noise = np.random.default_rng([s.seed, s.epoch, k, 1 + self.pool]).random(self.size)
        order = np.lexsort((noise, block))
        cum = np.zeros(self.size + 1, dtype=np.int64)
        np.cumsum(self.tokens[order], out=cum[1:])
        entry = (self.items[order], cum, cum[:-1] + cum[1:])
        self._passes[k] = entry
        while len(self._passes) > _PASS_CACHE:
            self._passes.popitem(last=False)
        return entry

    def cum(self, n: int) -> int:
        """Tokens of the first ``n`` items of the stream."""
        k, j = divmod(n, self.size)
        return k * self.pass_tokens + (int(self.passes(k)[1][j]) if j else 0)

    def first_at(self, x: int, a: int) -> int:
        """The first position ``n >= a`` whose ``cum(n) + cum(n + 1)`` is at least ``x``."""
        p2 = 2 * self.pass_tokens
        k = max(a // self.size, x // p2)
        j = int(np.searchsorted(self.passes(k)[2], x - k * p2, side="left"))
        return max(a, k * self.size + j)

    def take(self, n0: int, n1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items ``[n0, n1)``: documents, ``cum(n) + cum(n + 1)`` and tokens."""
        docs, mids, toks = [], [], []
        for k in range(n0 // self.size, (n1 - 1) // self.size + 1):
            j0, j1 = max(n0 - k * self.size, 0), min(n1 - k * self.size, self.size)
            d, cum, s = self.passes(k)
            docs.append(d[j0:j1])
            mids.append(s[j0:j1] + 2 * k * self.pass_tokens)
            toks.append(cum[j0 + 1 : j1 + 1] - cum[j0:j1])
        return np.concatenate(docs), np.concatenate(mids), np.concatenate(toks)


@dataclass
class _Phase:
    name: str
    tokens: int  # T: end_token - start_token
    pools: list[int]  # plan indices of the pools with tokens in the phase
    targets: list[int]  # T_p
    starts: list[int]  # stream position of each pool at the phase start
    start_cum2: list[int]  # 2 * cum(start)
    ends: list[int]  # stream position after the phase (set by the cut)
    first: int = 0  # global index of the phase's first sample
    count: int = 0  # samples in the phase
    u_end: float = 1.0  # a virtual time by which every sample of the phase has come


class _Schedule:
    """The global sample order of one (plan, seed, epoch)."""

    def __init__(self, plan: MixturePlan, index: _Index, seed: int, epoch: int, shuffle_block: int):
        self.seed, self.epoch, self.shuffle_block = seed, epoch, shuffle_block
        self.n_rg = len(index.rg_shard)
        self._ranks: OrderedDict[int, np.ndarray] = OrderedDict()
        self.streams = {p: _Stream(p, items, index, self) for p, items in index.items.items()}
        pos = {p: 0 for p in self.streams}
        self.phases: list[_Phase] = []
        first = 0
        for ph in plan.phases:
            name = ph.name
            members = [p for p in self.streams if plan.pools[p].phase_tokens.get(name, 0) > 0]
            phase = _Phase(
                name=name,
                tokens=ph.end_token - ph.start_token,
                pools=members,
                targets=[plan.pools[p].phase_tokens[name] for p in members],
                starts=[pos[p] for p in members],
                start_cum2=[2 * self.streams[p].cum(pos[p]) for p in members],
                ends=[pos[p] for p in members],
                first=first,
            )
            if phase.tokens > 0 and members:
                self._cut(phase)
            for p, e in zip(members, phase.ends, strict=True):
                pos[p] = e
            first += phase.count
            self.phases.append(phase)
        self.num_samples = first

    def rg_rank(self, k: int) -> np.ndarray:
        """Rank of every row group in the row-group permutation of pass ``k`` (shared by all pools)."""
        hit = self._ranks.get(k)
        if hit is None:
            perm = np.random.default_rng([self.seed, self.epoch, k]).permutation(self.n_rg)
            hit = np.empty(self.n_rg, dtype=np.int64)
            hit[perm] = np.arange(self.n_rg)
            self._ranks[k] = hit
            while len(self._ranks) > 2 * _PASS_CACHE:
                self._ranks.popitem(last=False)
        return hit

    # -- positions as functions of the virtual time -------------------------------------------------------------
    def _at(self, ph: _Phase, u: float) -> list[int]:
        """Stream position of every pool of ``ph`` after its items with virtual time ``< u`` (at most its end)."""
        out = []
        for i, p in enumerate(ph.pools):
            d = 2 * ph.targets[i]
            n = self.streams[p].first_at(_m_star(u, d) + ph.start_cum2[i], ph.starts[i])
            out.append(min(n, ph.ends[i]))
        return out

    def _tokens(self, ph: _Phase, pos: list[int]) -> int:
        return sum(
            self.streams[p].cum(n) - self.streams[p].cum(a) for p, n, a in zip(ph.pools, pos, ph.starts, strict=True)
        )

    def _window(self, ph: _Phase, lo: list[int], hi: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items between two positions of every pool, merged by virtual time: documents, pools, tokens."""
        docs, pools, keys, toks = [], [], [], []
        for i, p in enumerate(ph.pools):
            if hi[i] <= lo[i]:
                continue
            d, mids, t = self.streams[p].take(lo[i], hi[i])
            docs.append(d)
            pools.append(np.full(len(d), p, dtype=np.int32))
            keys.append((mids - ph.start_cum2[i]).astype(np.float64) / float(2 * ph.targets[i]))
            toks.append(t)
        if not docs:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.astype(np.int32), empty
        order = np.argsort(np.concatenate(keys), kind="stable")
        return np.concatenate(docs)[order], np.concatenate(pools)[order], np.concatenate(toks)[order]

    def _cut(self, ph: _Phase) -> None:
        """Find the phase's last sample: the last one starting before the phase's end token."""
        ph.ends = [1 << 62] * len(ph.pools)  # not capped while looking for the cut

        def tokens(u: float) -> int:
            return self._tokens(ph, self._at(ph, u))

        lo, hi = 0.0, 1.0
        while tokens(hi) < ph.tokens:
            lo, hi = hi, hi * 2
        tok_lo = tokens(lo)
        while True:
            n_lo, n_hi = self._at(ph, lo), self._at(ph, hi)
            mid = (lo + hi) / 2
            if sum(n_hi) - sum(n_lo) <= 4096 or not lo < mid < hi:
                break
            t = tokens(mid)
            if t < ph.tokens:
                lo, tok_lo = mid, t
            else:
                hi = mid
        docs, pools, toks = self._window(ph, n_lo, n_hi)
        starts = tok_lo + np.concatenate([[0], np.cumsum(toks)[:-1]]) if len(toks) else np.zeros(0, np.int64)
        j = int(np.searchsorted(starts, ph.tokens, side="left"))
        taken = np.bincount(pools[:j], minlength=max(ph.pools) + 1)
        ph.ends = [n + int(taken[p]) for p, n in zip(ph.pools, n_lo, strict=True)]
        ph.count = sum(e - a for e, a in zip(ph.ends, ph.starts, strict=True))
        ph.u_end = hi

    # -- walking the order ----------------------------------------------------------------------------------------
    def chunks(self, start: int, window: int) -> Iterator[tuple[int, np.ndarray, np.ndarray, int]]:
        """``(global index of the first, documents, pools, phase)`` for the samples from ``start`` to the end."""
        for f, ph in enumerate(self.phases):
            if ph.count == 0 or start >= ph.first + ph.count:
                continue
            q = max(0, start - ph.first)
            lo, hi = 0.0, ph.u_end
            while q > 0:  # bracket q between two virtual times
                n_lo, n_hi = sum(self._at(ph, lo)) - sum(ph.starts), sum(self._at(ph, hi)) - sum(ph.starts)
                mid = (lo + hi) / 2
                if n_hi - n_lo <= window or not lo < mid < hi:
                    break
                if sum(self._at(ph, mid)) - sum(ph.starts) <= q:
                    lo = mid
                else:
                    hi = mid
            u = lo if q > 0 else 0.0
            cur = self._at(ph, u)
            pos = ph.first + sum(cur) - sum(ph.starts)
            step = ph.u_end * window / ph.count
            while pos < ph.first + ph.count:
                nxt = self._at(ph, u + step)
                got = sum(nxt) - sum(cur)
                if got == 0:  # nothing there: move on, with a longer step
                    u, step = u + step, step * 2
                    continue
                if got > 4 * window and u < u + step / 2 < u + step:  # too many at once: a shorter step
                    step /= 2
                    continue
                docs, pools, _ = self._window(ph, cur, nxt)
                if pos < start:
                    docs, pools = docs[start - pos :], pools[start - pos :]
                    pos = start
                if len(docs):
                    yield pos, docs, pools, f
                pos += len(docs)
                cur, u = nxt, u + step
                if got < window / 2:
                    step *= 2


# =============================================================================================================
# Reading texts by row group
# =============================================================================================================
class _Reader:
    """Gathers the id and text of documents from their row groups through an LRU cache bounded in bytes."""

    def __init__(self, fs, index: _Index, columns: list[str], cache_bytes: int):
        self.fs, self.index, self.columns, self.cache_bytes = fs, index, columns, cache_bytes
        self.pid = os.getpid()
        self._files: OrderedDict[int, pq.ParquetFile] = OrderedDict()
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()
        self._kept: dict[int, np.ndarray] = {}  # rows of the documents of each cached row group
        self._bytes = 0
        self.row_groups_read = 0
        self.bytes_read = 0

    def _file(self, shard: int) -> pq.ParquetFile:
        pf = self._files.get(shard)
        if pf is None:
            pf = _open_parquet(self.fs, self.index.shard_paths[shard])
            self._files[shard] = pf
            while len(self._files) > _OPEN_FILES:
                self._files.popitem(last=False)[1].close()
        else:
            self._files.move_to_end(shard)
        return pf

    def table(self, rg: int) -> tuple[pa.Table, np.ndarray]:
        """Row group ``rg``'s columns and the rows of its documents."""
        t = self._cache.get(rg)
        if t is not None:
            self._cache.move_to_end(rg)
            return t, self._kept[rg]
        pf = self._file(int(self.index.rg_shard[rg]))
        t = pf.read_row_group(int(self.index.rg_group[rg]), columns=self.columns)
        self.row_groups_read += 1
        self.bytes_read += t.nbytes
        self._cache[rg] = t
        self._kept[rg] = self.index.kept_rows(rg)
        self._bytes += t.nbytes
        while self._bytes > self.cache_bytes and len(self._cache) > 1:
            old, dropped = self._cache.popitem(last=False)
            self._bytes -= dropped.nbytes
            del self._kept[old]
        return t, self._kept[rg]

    def gather(self, docs: np.ndarray) -> list[list[Any]]:
        """One list per column with the values of ``docs``, in their order."""
        rgs = self.index.doc_rg(docs)
        order = np.argsort(rgs, kind="stable")
        srg = rgs[order]
        cuts = np.flatnonzero(np.diff(srg)) + 1
        pieces: list[list[pa.Array]] = [[] for _ in self.columns]
        for a, b in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(srg)]]), strict=True):
            rg = int(srg[a])
            t, kept = self.table(rg)
            take = pa.array(kept[docs[order[a:b]] - self.index.rg_start[rg]])
            for c, name in enumerate(self.columns):
                pieces[c].extend(t.column(name).take(take).chunks)
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        inv_arr = pa.array(inv)
        return [pa.chunked_array(p, type=p[0].type).take(inv_arr).to_pylist() for p in pieces]

    def close(self) -> None:
        for pf in self._files.values():
            pf.close()
        self._files.clear()
        self._cache.clear()
        self._kept.clear()
        self._bytes = 0


# =============================================================================================================
# The dataset
# =============================================================================================================
def _tokenize(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of texts from a callable, a ``tokenizers.Tokenizer`` or a transformers tokenizer (no specials)."""
    if hasattr(tokenizer, "encode_batch") and not callable(tokenizer):  # tokenizers.Tokenizer
        return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    if hasattr(tokenizer, "convert_tokens_to_ids") and callable(tokenizer):  # transformers
        return list(tokenizer(texts, add_special_tokens=False)["input_ids"])
    out = []
    for t in texts:
        ids = tokenizer(t)
        if isinstance(ids, Mapping):
            ids = ids["input_ids"]
        out.append(list(ids))
    return out


def merge_loader_state(state: Mapping[str, Any], packed: bool = False) -> dict[str, Any]:
    """One dataset state from a ``StatefulDataLoader`` state (or a dataset state, returned as it is).

    The furthest worker's ``samples_seen`` is the global position (batches come from the workers in turn); with
    packing the nearest one is taken, so no document is lost. The result has no ``layout``: a loader built from it
    starts its steps there, which is what a changed number of ranks or workers needs.

    Args:
        state: ``StatefulDataLoader.state_dict()``, or ``MixtureDataset.state_dict()``.
        packed: The dataset packs token sequences (take the nearest worker, not the furthest).

    Raises:
        ValueError: No dataset state in ``state``.
    """
    if "mixture_fingerprint" in state:
        return dict(state)
    found: list[Mapping[str, Any]] = []
    if isinstance(state.get("dataset_state"), Mapping):  # single-process StatefulDataLoader
        found.append(state["dataset_state"])
    workers = (state.get("_snapshot") or {}).get("_worker_snapshots") or {}
    for w in workers.values():
        if isinstance(w, Mapping) and isinstance(w.get("dataset_state"), Mapping):
            found.append(w["dataset_state"])
    if not found:
        raise ValueError("no MixtureDataset state in this dict (neither a dataset nor a StatefulDataLoader state)")
    top = max(int(s["epoch"]) for s in found)
    latest = [s for s in found if int(s["epoch"]) == top]
    pick = min if packed else max
    best = dict(pick(latest, key=lambda s: int(s["samples_seen"])))
    best["layout"] = None
    best["token_offset"] = 0
    return best


def _dist_initialised() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class MixtureDataset(IterableDataset):
    """Documents (or packed token sequences) of a run's curated shards in the proportions of its mixture plan.

    Yields ``{"index", "id", "text", "pool", "phase"}`` per document (``index``: position in the epoch's global
    order), or ``{"input_ids": LongTensor[seq_len]}`` with a ``tokenizer`` and ``seq_len``. See the module
    docstring for the order, the sharding and the state.

    Args:
        plan: ``mixture_plan.json`` (path or fsspec URL), the run directory holding it, or the plan as a dict or a
            :class:`~winnow.mixers.plan.MixturePlan` (then ``run_dir`` is needed). It is read as a
            :class:`~winnow.mixers.plan.MixturePlan` (the :attr:`plan` attribute).
        seed: Seed of the order (default ``None``: the plan's ``seed``).
        tokenizer: A callable ``str -> list[int]`` (or returning ``{"input_ids": ...}``), a transformers tokenizer
            or a ``tokenizers.Tokenizer``; with ``seq_len``, packed sequences are yielded (default ``None``).
        seq_len: Tokens per packed sequence (default ``None``; needs ``tokenizer``).
        eos_token_id: Appended to every document when packing (default ``None``: the tokenizer's
            ``eos_token_id`` if it has one, else nothing).
        batch_size: Per-rank batch size of the DataLoader (default 1). Set it when ``num_workers > 0`` so that each
            batch comes whole from one worker and batches are in the global order; ignored when packing.
        rank: This process's rank (default ``None``: ``torch.distributed`` if initialised, else 0).
        world_size: Number of ranks (default ``None``: ``torch.distributed`` if initialised, else 1).
        run_dir: The run directory the plan's shard paths are relative to (default: the plan's directory).
        storage_options: fsspec options of a remote run directory (default ``None``).
        id_field: The id column of the curated shards (default ``None``: the plan's ``pool_definition.id_column``,
            or ``id`` for a plan that does not record one).
        shuffle_block: Row groups whose documents are shuffled together within a pass (default 1). More mixes
            documents of more row groups in each stretch of the order, and needs a larger ``cache_bytes``.
        cache_bytes: Bound on the decoded row groups (id and text columns) kept per process (default ``None``: 64
            MiB or four of the largest row groups, whichever is larger). The order reads a few row groups at a time
            (more with ``shuffle_block`` > 1, or pools progressing at different rates); a cache smaller than that
            re-reads row groups, a much larger one only costs memory.
        check_version: Refuse a plan made by another winnow version (default ``True``).

    Raises:
        MixturePlanError: The plan is not a mixture plan (the message names a missing, unknown or bad key), comes
            from another winnow version, names a missing or changed shard, or has a pool without rows.
    """

    def __init__(
        self,
        plan: str | os.PathLike | Mapping[str, Any] | MixturePlan,
        *,
        seed: int | None = None,
        tokenizer: Callable[[str], Sequence[int]] | Any | None = None,
        seq_len: int | None = None,
        eos_token_id: int | None = None,
        batch_size: int = 1,
        rank: int | None = None,
        world_size: int | None = None,
        run_dir: str | None = None,
        storage_options: dict[str, Any] | None = None,
        id_field: str | None = None,
        shuffle_block: int = 1,
        cache_bytes: int | None = None,
        check_version: bool = True,
    ):
        super().__init__()
        if (tokenizer is None) != (seq_len is None):
            raise ValueError("packing needs both tokenizer= and seq_len=; give both or neither")
        if seq_len is not None and seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if batch_size < 1 or shuffle_block < 1 or (cache_bytes is not None and cache_bytes < 0):
            raise ValueError("batch_size and shuffle_block must be >= 1, cache_bytes >= 0")
        if rank is not None and world_size is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        if rank is not None and world_size is None and not _dist_initialised():
            # world_size would default to 1 and rank 1 of 1 would silently read nothing
            raise ValueError(f"rank={rank} needs world_size= too (torch.distributed is not initialised)")
        data, rd, where = _load_plan(plan, run_dir, storage_options)
        self.plan = _check_plan(data, where, check_version)
        self.run_dir = rd.url
        self.seed = int(self.plan.seed if seed is None else seed)
        self.fingerprint = plan_fingerprint(data)  # of the plan as read: a state saved under it stays valid
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        if eos_token_id is None and tokenizer is not None:
            eos_token_id = getattr(tokenizer, "eos_token_id", None)
        self.eos_token_id = eos_token_id
        self.batch_size = 1 if seq_len is not None else int(batch_size)
        self._rank, self._world_size = rank, world_size
        self.shuffle_block = int(shuffle_block)
        definition = self.plan.pool_definition
        self.id_field = id_field or definition.id_column or "id"
        self.text_field = definition.text_column
        self.pool_names = [p.pool for p in self.plan.pools]
        self.phase_names = [p.name for p in self.plan.phases]
        self._fs = rd.fs
        self._index = _build_index(self.plan, rd, where, self.id_field)
        if cache_bytes is None:
            largest = int(self._index.rg_bytes.max()) if len(self._index.rg_bytes) else 0
            cache_bytes = max(64 << 20, 4 * largest)
        self.cache_bytes = int(cache_bytes)
        self._schedules: OrderedDict[int, _Schedule] = OrderedDict()
        self._reader: _Reader | None = None
        self._resume: dict[str, Any] = {"epoch": 0, "samples_seen": 0, "layout": None, "token_offset": 0}
        self._live: dict[str, Any] | None = None

    # -- pickling for DataLoader workers: no open files -----------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None
        return state

    # -- the order ----------------------------------------------------------------------------------------------------
    def schedule(self, epoch: int | None = None) -> _Schedule:
        """The global order of ``epoch`` (default: the epoch iteration would start in)."""
        epoch = self._resume["epoch"] if epoch is None else int(epoch)
        s = self._schedules.get(epoch)
        if s is None:
            s = _Schedule(self.plan, self._index, self.seed, epoch, self.shuffle_block)
            self._schedules[epoch] = s
            while len(self._schedules) > 2:
                self._schedules.popitem(last=False)
        return s

    @property
    def num_samples(self) -> int:
        """Documents in the epoch being (or about to be) iterated, over all ranks."""
        return self.schedule().num_samples

    def global_order(self, epoch: int | None = None, start: int = 0) -> Iterator[tuple[int, int, str, str]]:
        """``(index, document, pool, phase)`` of every sample of ``epoch`` from ``start`` on, without reading text.

        ``document`` is the position of the row among the kept rows of the plan's shards (shard, then row order).
        """
        s = self.schedule(epoch)
        for first, docs, pools, f in s.chunks(start, _WINDOW):
            for j in range(len(docs)):
                yield first + j, int(docs[j]), self.pool_names[pools[j]], self.phase_names[f]

    def document_tokens(self, docs: np.ndarray | Sequence[int]) -> np.ndarray:
        """Tokens of documents (positions as in :meth:`global_order`) by the plan's ``token_count`` rule."""
        return self._index.doc_tokens[np.asarray(docs, dtype=np.int64)].astype(np.int64)

    # -- where this process is ---------------------------------------------------------------------------------------
    def _layout(self) -> tuple[int, int, int, int]:
        """``(rank, world_size, worker, num_workers)`` of this process."""
        rank, world = self._rank, self._world_size
        if rank is None or world is None:
            r, w = 0, 1
            if _dist_initialised():
                r, w = torch.distributed.get_rank(), torch.distributed.get_world_size()
            rank = r if rank is None else rank
            world = w if world is None else world
            if not 0 <= rank < world:
                raise ValueError(f"rank {rank} is not in [0, {world}) (world_size of torch.distributed)")
        info = torch.utils.data.get_worker_info()
        worker, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank, world, worker, nw

    # -- state --------------------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Iterate ``epoch`` next: from its start, unless it is the epoch a loaded state is resuming."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if int(epoch) != self._resume["epoch"]:
            self._resume = {"epoch": int(epoch), "samples_seen": 0, "layout": None, "token_offset": 0}
        self._live = None

    def state_dict(self) -> dict[str, Any]:
        """``{epoch, seed, samples_seen, mixture_fingerprint, token_offset, layout}`` (JSON-ready)."""
        src = self._live if self._live is not None else self._resume
        return {
            "epoch": int(src["epoch"]),
            "seed": self.seed,
            "samples_seen": int(src["samples_seen"]),
            "mixture_fingerprint": self.fingerprint,
            "token_offset": int(src.get("token_offset", 0)),
            "layout": dict(src["layout"]) if src.get("layout") else None,
        }

    def state_for(self, samples_seen: int, epoch: int | None = None) -> dict[str, Any]:
        """A state at a global position counted by the trainer (``start + steps · batch_size · world_size``), for
        a plain DataLoader with workers, whose dataset in the main process does not see the workers' progress."""
        return {
            "epoch": int(self._resume["epoch"] if epoch is None else epoch),
            "seed": self.seed,
            "samples_seen": int(samples_seen),
            "mixture_fingerprint": self.fingerprint,
            "token_offset": 0,
            "layout": None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict` (any rank's), or from a whole ``StatefulDataLoader`` state dict.

        Raises:
            ValueError: The state comes from another plan or seed, or is malformed.
        """
        state = merge_loader_state(state, packed=self.seq_len is not None)
        missing = [k for k in ("epoch", "seed", "samples_seen", "mixture_fingerprint") if k not in state]
        if missing:
            raise ValueError(f"not a MixtureDataset state: no {', '.join(missing)}")
        if state["mixture_fingerprint"] != self.fingerprint:
            msg = (
                f"the state was saved under another mixture plan (fingerprint {state['mixture_fingerprint']}, this "
                f"plan's is {self.fingerprint}): resuming would not continue the same order"
            )
            raise ValueError(msg)
        if int(state["seed"]) != self.seed:
            raise ValueError(f"the state was saved with seed {state['seed']}, this dataset has seed {self.seed}")
        epoch, seen = int(state["epoch"]), int(state["samples_seen"])
        if epoch < 0 or seen < 0:
            raise ValueError(f"epoch and samples_seen must be >= 0, got {epoch} and {seen}")
        self._resume = {
            "epoch": epoch,
            "samples_seen": seen,
            "layout": dict(state["layout"]) if state.get("layout") else None,
            "token_offset": int(state.get("token_offset") or 0),
        }
        self._live = None

    # -- iteration -------------------------------------------------------------------------------------------------
    def _start(self) -> tuple[_Schedule, int, int, dict[str, Any], int, tuple[int, int, int, int]]:
        rank, world, worker, nw = where = self._layout()
        res = dict(self._resume)
        sched = self.schedule(res["epoch"])
        if res["samples_seen"] >= sched.num_samples > 0:  # the epoch is complete: the next one
            res = {"epoch": res["epoch"] + 1, "samples_seen": 0, "layout": None, "token_offset": 0}
            sched = self.schedule(res["epoch"])
        layout = {"origin": res["samples_seen"], "world_size": world, "num_workers": nw, "batch_size": self.batch_size}
        old = res.get("layout")
        offset = 0
        if old and all(old.get(k) == layout[k] for k in ("world_size", "num_workers", "batch_size")):
            layout["origin"] = int(old["origin"])
            offset = res.get("token_offset", 0)
        self._live = {"epoch": res["epoch"], "samples_seen": res["samples_seen"], "layout": layout,
                      "token_offset": offset}  # fmt: skip
        return sched, res["samples_seen"], layout["origin"], layout, offset, where

    def _mine(self, sched: _Schedule, start: int, origin: int, where) -> Iterator[tuple[np.ndarray, ...]]:
        """Chunks of this rank/worker's samples: (global indices, documents, pools, phase, position after each)."""
        rank, world, worker, nw = where
        b = self.batch_size
        step = b * world
        n = sched.num_samples
        for first, docs, pools, f in sched.chunks(start, max(_WINDOW, 512 * world * nw)):
            idx = np.arange(first, first + len(docs), dtype=np.int64)
            j = idx - origin
            t, k = np.divmod(j, step)
            mine = (k // b == rank) & (t % nw == worker)
            if not mine.any():
                continue
            idx, t, k = idx[mine], t[mine], k[mine]
            after = np.where(k % b == b - 1, origin + (t + 1) * step, idx + 1)
            yield idx, docs[mine], pools[mine], f, np.minimum(after, n)

    def _reader_here(self) -> _Reader:
        if self._reader is None or self._reader.pid != os.getpid():
            self._reader = _Reader(self._fs, self._index, [self.id_field, self.text_field], self.cache_bytes)
        return self._reader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        sched, start, origin, _, offset, where = self._start()
        if self.seq_len is None:
            return self._iter_docs(sched, start, origin, where)
        return self._iter_packed(sched, start, origin, offset, where)

    def _iter_docs(self, sched: _Schedule, start: int, origin: int, where) -> Iterator[dict[str, Any]]:
        reader = self._reader_here()
        live = self._live
        names, phases = self.pool_names, self.phase_names
        for idx, docs, pools, f, after in self._mine(sched, start, origin, where):
            ids, texts = reader.gather(docs)
            phase = phases[f]
            idx_l, pools_l, after_l = idx.tolist(), pools.tolist(), after.tolist()
            for j in range(len(idx_l)):
                live["samples_seen"] = after_l[j]
                yield {"index": idx_l[j], "id": ids[j], "text": texts[j], "pool": names[pools_l[j]], "phase": phase}

    def _iter_packed(self, sched: _Schedule, start: int, origin: int, offset: int, where) -> Iterator[dict[str, Any]]:
        reader = self._reader_here()
        live = self._live
        seq_len, eos = int(self.seq_len), self.eos_token_id
        pending: deque[list[Any]] = deque()  # [global index, token ids, emitted]
        buffered = 0
        first = True
        for idx, docs, _, _, _ in self._mine(sched, start, origin, where):
            _, texts = reader.gather(docs)
            encoded = _tokenize(self.tokenizer, texts)
            for i, ids in zip(idx.tolist(), encoded, strict=True):
                ids = np.asarray(ids, dtype=np.int64)
                if eos is not None:
                    ids = np.append(ids, np.int64(eos))
                skip = offset if first and i == start else 0
                first = False
                pending.append([i, ids, min(skip, len(ids))])
                buffered += len(ids) - pending[-1][2]
                while buffered >= seq_len:
                    out = np.empty(seq_len, dtype=np.int64)
                    filled = 0
                    while filled < seq_len:
                        head = pending[0]
                        take = min(seq_len - filled, len(head[1]) - head[2])
                        out[filled : filled + take] = head[1][head[2] : head[2] + take]
                        head[2] += take
                        filled += take
                        if head[2] == len(head[1]):
                            pending.popleft()
                    buffered -= seq_len
                    if pending:
                        live["samples_seen"], live["token_offset"] = pending[0][0], pending[0][2]
                    else:
                        live["samples_seen"], live["token_offset"] = i + 1, 0
                    yield {"input_ids": torch.from_numpy(out)}
        live["samples_seen"], live["token_offset"] = sched.num_samples, 0

    @property
    def reader_stats(self) -> dict[str, int]:
        """Row groups and bytes decoded by this process's reader (for benchmarks)."""
        r = self._reader
        return {"row_groups_read": r.row_groups_read, "bytes_read": r.bytes_read} if r else {}
