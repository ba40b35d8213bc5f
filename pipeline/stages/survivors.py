"""Which valid rows of a shard survived the pre-filters, read from ``filters/`` and ``textdedup/``.

The ``prefilter`` stage writes ``filters/<stem>.parquet`` (one row per valid row of the shard: lang, lang_score,
drop_reason, filter_detail, text_hash); the ``textdedup`` stage writes ``textdedup/<stem>.parquet`` (one row per
member of a duplicate group: pos, drop_reason, dup_of, dup_group). A row survives when neither dropped it. The
stages after them (embed, score, assign, dedup, prune) see survivors only; ``write`` puts every row back.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow.core.errors import CurationError
from winnow.core.layout import read_parquet
from winnow.core.rundir import RunDir
from winnow.pipeline.config import WinnowConfig

FILTERS = "filters"
TEXTDEDUP = "textdedup"
#: the columns a pre-filter adds to ``curated/`` (``drop_reason`` and ``dup_of`` are shared with prune's)
PREFILTER_COLUMNS = ("lang", "lang_score", "filter_detail", "dup_group")


def dedup_on(cfg: WinnowConfig) -> bool:
    return cfg.prefilter is not None and cfg.prefilter.dedup


def survivor_mask(run: RunDir, cfg: WinnowConfig, stem: str) -> np.ndarray | None:
    """``True`` per valid row of shard ``stem`` that every pre-filter kept; ``None`` when no pre-filter is on."""
    if cfg.prefilter is None:
        return None
    reasons = read_parquet(run, f"{FILTERS}/{stem}.parquet", ["drop_reason"]).column(0)
    mask = pc.is_null(reasons).to_numpy(zero_copy_only=False).copy()
    if dedup_on(cfg):
        dropped = dedup_dropped(run, stem)
        if len(dropped) and dropped.max() >= len(mask):
            raise CurationError(f"{TEXTDEDUP}/{stem}.parquet does not match {FILTERS}/{stem}.parquet: rerun")
        mask[dropped] = False
    return mask


def dedup_dropped(run: RunDir, stem: str) -> np.ndarray:
    """Valid-row positions of shard ``stem`` that the text dedup dropped, ascending."""
    t = read_parquet(run, f"{TEXTDEDUP}/{stem}.parquet", ["pos", "drop_reason"])
    keep = pc.is_valid(t.column("drop_reason"))
    return np.sort(t.column("pos").filter(keep).to_numpy(zero_copy_only=False).astype(np.int64))


def dedup_digest(run: RunDir, stem: str) -> str:
    """A short hash of which rows of ``stem`` the text dedup dropped: part of the markers of the stages after it, so
    a shard whose survivors changed (a copy of one of its documents appeared in an earlier shard) is redone, and one
    whose survivors did not is not."""
    if not run.exists(f"{TEXTDEDUP}/{stem}.parquet"):
        return "none"
    return hashlib.sha256(dedup_dropped(run, stem).tobytes()).hexdigest()[:12]


def prefilter_table(run: RunDir, cfg: WinnowConfig, stem: str) -> pa.Table:
    """Per valid row of ``stem``: lang, lang_score, drop_reason, filter_detail, dup_of, dup_group (nulls where a
    pre-filter did not apply)."""
    t = read_parquet(run, f"{FILTERS}/{stem}.parquet", ["lang", "lang_score", "drop_reason", "filter_detail"])
    n = t.num_rows
    reason = t.column("drop_reason").to_pylist()
    dup_of: list[str | None] = [None] * n
    group: list[str | None] = [None] * n
    if dedup_on(cfg):
        d = read_parquet(run, f"{TEXTDEDUP}/{stem}.parquet", ["pos", "drop_reason", "dup_of", "dup_group"])
        for pos, r, of, g in zip(*(d.column(c).to_pylist() for c in ("pos", "drop_reason", "dup_of", "dup_group")),
                                 strict=True):  # fmt: skip
            if pos >= n:
                raise CurationError(f"{TEXTDEDUP}/{stem}.parquet does not match {FILTERS}/{stem}.parquet: rerun")
            group[pos] = g
            if r is not None:
                reason[pos], dup_of[pos] = r, of
    return pa.table(
        {
            "lang": t.column("lang"),
            "lang_score": t.column("lang_score"),
            "drop_reason": pa.array(reason, pa.string()),
            "filter_detail": t.column("filter_detail"),
            "dup_of": pa.array(dup_of, pa.string()),
            "dup_group": pa.array(group, pa.string()),
        }
    )
