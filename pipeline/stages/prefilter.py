"""The pre-filter stages: language ID and rule filters per shard, then exact and MinHash dedup across shards.

``prefilter`` (per shard) reads the shard's valid rows once and writes ``filters/<stem>.parquet``, row-aligned with
them: ``lang``, ``lang_score``, ``drop_reason`` (``lang`` or a rule filter's name; null for a survivor),
``filter_detail`` (datatrove's reason) and ``text_hash`` (the exact-dedup key of a survivor). With MinHash on, it
also runs datatrove's signature step over the survivors: ``minhash/bucket_XXX/<stem>.minhash.sig``.

``textdedup`` (one global unit) groups the survivors of every shard by ``text_hash`` and by datatrove's MinHash
bucket and cluster steps, merges the two into duplicate groups and keeps the first copy of each group in the run's
canonical order (shards by name, rows in order). It writes ``textdedup/<stem>.parquet``: one row per group member
with ``pos`` (valid-row index), ``drop_reason`` (null for the survivor; ``exact_duplicate`` when the member's
normalised text equals an earlier member's, else ``minhash_duplicate``), ``dup_of`` and ``dup_group`` (both the
survivor's id). It holds the group members only: the exact keys are grouped in passes over ``hash % passes`` of at
most 20M survivors each (every pass reads each shard's hash column), and datatrove's cluster step keeps its
union-find over the MinHash duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from winnow.core.errors import CurationError
from winnow.core.io import Shard
from winnow.core.layout import read_parquet
from winnow.core.stats import ShardStats
from winnow.pipeline.stages.base import RejectSink, ShardStage, Stage, provenance, register_stage
from winnow.pipeline.stages.survivors import FILTERS, TEXTDEDUP, dedup_on
from winnow.scorers.lang import LanguageIdentifier, lang_drop
from winnow.scorers.rules import RuleFilters
from winnow.scorers.textdedup import (
    SIG_SUFFIX,
    bucket_dir,
    minhash_clusters,
    remove_signatures,
    text_hashes,
    write_signatures,
)

MINHASH = "minhash"

FILTER_SCHEMA_FIELDS = [
    ("lang", pa.string()),
    ("lang_score", pa.float32()),
    ("drop_reason", pa.string()),
    ("filter_detail", pa.string()),
    ("text_hash", pa.uint64()),
]
#: a duplicate group's members as the exact and MinHash steps find them: (shard index, valid-row position, key)
_MEMBERS = {"shard": pl.Int32, "pos": pl.Int64, "key": pl.UInt64}
#: survivors whose (shard, pos, hash) one exact-dedup pass holds (24 bytes each: ~0.5 GB); more take more passes
_EXACT_PASS_ROWS = 20_000_000
TEXTDEDUP_SCHEMA = pa.schema(
    [("pos", pa.int64()), ("drop_reason", pa.string()), ("dup_of", pa.string()), ("dup_group", pa.string())]
)


@register_stage(order=60)
class PrefilterStage(ShardStage):
    """Language ID and rule filters on every valid document of a shard (``filters/<stem>.parquet``), and the
    survivors' MinHash signatures (``minhash/``). Runs only when the config has a ``prefilter`` section."""

    name = "prefilter"
    needs = ("read",)
    writes = (f"{FILTERS}/<stem>.parquet", f"{MINHASH}/<bucket>/<stem>{SIG_SUFFIX}", "rejects/<stem>.parquet")
    optional_writes = ("rejects/<stem>.parquet", f"{MINHASH}/<bucket>/<stem>{SIG_SUFFIX}")
    config_keys = ["io", "prefilter"]
    after_prefilter = False

    def units(self) -> list[str]:
        return [] if self.cfg.prefilter is None else super().units()

    def setup(self) -> None:
        p = self.cfg.prefilter
        assert p is not None
        self.lid = LanguageIdentifier(p.lang) if p.lang.enabled else None
        self.rules = RuleFilters(p.rules) if p.rules.enabled else None
        for part in (self.lid, self.rules):
            if part is not None:
                part.setup()

    def outputs(self, unit: str) -> list[str]:
        out = super().outputs(unit)
        p = self.cfg.prefilter
        if p is not None and p.minhash.enabled:
            out += [f"{MINHASH}/{bucket_dir(b)}/{unit}{SIG_SUFFIX}" for b in range(p.minhash.bands)]
        return out

    def process_shard(self, shard: Shard, stats: ShardStats) -> None:
        p = self.cfg.prefilter
        assert p is not None
        schema = pa.schema([(self.cfg.io.id_field, pa.string()), *FILTER_SCHEMA_FIELDS])
        with (
            self.writer(f"{FILTERS}/{shard.stem}.parquet", schema) as out,
            RejectSink(self.run_dir, shard, provenance(self.cfg, "read")) as rej,
        ):
            survivors = self._filter(shard, stats, rej, out, schema)
            if p.minhash.enabled:
                folder = self.run_dir.local_path(MINHASH)
                write_signatures(survivors, folder, shard.stem, p.minhash)
            else:
                for _ in survivors:
                    pass

    def _filter(self, shard: Shard, stats: ShardStats, rej: RejectSink, out: Any, schema: pa.Schema) -> Iterator[str]:
        """Filter the shard batch by batch, writing ``filters/`` rows; yields each survivor's text (the MinHash
        signature step consumes them as they come)."""
        p = self.cfg.prefilter
        assert p is not None
        text_f, id_f = self.cfg.io.text_field, self.cfg.io.id_field
        for batch in self.read(shard, stats, rej):
            n = batch.table.num_rows
            texts = batch.table.column(text_f).to_pylist()
            reason: list[str | None] = [None] * n
            detail: list[str | None] = [None] * n
            langs: list[str | None] = [None] * n
            scores = np.full(n, np.nan, dtype=np.float32)
            if self.lid is not None:
                langs, scores = self.lid.predict(texts)
                for i in np.flatnonzero(lang_drop(langs, scores, p.lang)):
                    reason[i], detail[i] = "lang", f"{langs[i]}:{float(scores[i]):.2f}"
            if self.rules is not None:
                todo = [i for i in range(n) if reason[i] is None]
                for i, verdict in zip(todo, self.rules.check([texts[i] for i in todo]), strict=True):
                    if verdict is not None:
                        reason[i], detail[i] = verdict
            alive = [i for i in range(n) if reason[i] is None]
            hashes: list[int | None] = [None] * n
            if p.exact.enabled and alive:
                for i, h in zip(alive, text_hashes(texts[i] for i in alive).tolist(), strict=True):
                    hashes[i] = h
            out.write(
                pa.table(
                    [
                        batch.table.column(id_f),
                        pa.array(langs, pa.string()),
                        pa.array(scores, pa.float32(), mask=np.isnan(scores)),
                        pa.array(reason, pa.string()),
                        pa.array(detail, pa.string()),
                        pa.array(hashes, pa.uint64()),
                    ],
                    schema=schema,
                )
            )
            stats.kept += len(alive)
            stats.dropped += n - len(alive)
            for r in reason:
                if r is not None:
                    stats.count(f"dropped_{r}")
            for i in alive:
                yield texts[i]


@register_stage(order=70)
class TextDedupStage(Stage):
    """Exact and MinHash dedup over the pre-filters' survivors of every shard (``textdedup/<stem>.parquet``)."""

    name = "textdedup"
    needs = ("prefilter",)
    writes = (f"{TEXTDEDUP}/<stem>.parquet",)
    config_keys = ["io", "prefilter"]
    uses_shard_list = True
    after_prefilter = False

    def units(self) -> list[str]:
        return ["all"] if dedup_on(self.cfg) else []

    def process_unit(self, unit: str, stats: ShardStats) -> None:
        self.require("prefilter")
        p = self.cfg.prefilter
        assert p is not None
        stems = [s.stem for s in self.shards]
        alive = [self._alive(stem) for stem in stems]  # survivors' valid-row positions, per shard
        members = []  # (shard, pos, key kind) of every document in some group
        if p.exact.enabled:
            members.append(self._exact_members(stems, alive))
        if p.minhash.enabled:
            folder = self.run_dir.local_path(MINHASH)
            remove_signatures(folder, set(stems), p.minhash.bands)
            members.append(self._minhash_members(folder, stems, alive))
        frame, edges = self._member_graph(stems, members)
        groups = _groups(frame, edges, exact=p.exact.enabled)
        self._write(stems, sum(len(a) for a in alive), groups, stats)

    def _alive(self, stem: str) -> np.ndarray:
        t = read_parquet(self.run_dir, f"{FILTERS}/{stem}.parquet", ["drop_reason"])
        return np.flatnonzero(pc.is_null(t.column(0)).to_numpy(zero_copy_only=False))

    def _hashes(self, stem: str, pos: np.ndarray) -> np.ndarray:
        """The exact-dedup keys of the rows ``pos`` of ``filters/<stem>`` (taken first: a null elsewhere in the
        column would turn numpy's copy of the 64-bit hashes into floats)."""
        col = read_parquet(self.run_dir, f"{FILTERS}/{stem}.parquet", ["text_hash"]).column(0)
        return col.take(pa.array(pos, pa.int64())).to_numpy(zero_copy_only=False).astype(np.uint64)

    def _exact_members(self, stems: list[str], alive: list[np.ndarray]) -> pl.DataFrame:
        """(shard, pos, key) of every survivor whose normalised text occurs more than once (key: the hash).

        The keys are grouped in passes over ``hash % passes``, each holding at most ``_EXACT_PASS_ROWS`` survivors'
        (shard, pos, hash): memory is bounded whatever the corpus; each pass reads every shard's hash column."""
        total = sum(len(a) for a in alive)
        passes = max(1, -(-total // _EXACT_PASS_ROWS))
        found = [pl.DataFrame(schema=_MEMBERS)]
        for k in range(passes):
            parts = [pl.DataFrame(schema=_MEMBERS)]
            for i, stem in enumerate(stems):
                h = self._hashes(stem, alive[i])
                sel = (h % np.uint64(passes)) == np.uint64(k)
                parts.append(
                    pl.DataFrame({"shard": np.full(int(sel.sum()), i, np.int32), "pos": alive[i][sel].astype(np.int64),
                                  "key": h[sel]})  # fmt: skip
                )
            frame = pl.concat(parts)
            found.append(frame.filter(pl.col("key").is_duplicated()))
        return pl.concat(found).with_columns(pl.lit("exact").alias("kind"))

    def _minhash_members(self, folder: str, stems: list[str], alive: list[np.ndarray]) -> pl.DataFrame:
        """(shard, pos, key) from datatrove's MinHash clusters (key: the cluster id); a document index is the
        survivor's rank in its shard (the signature step saw survivors only)."""
        assert self.cfg.prefilter is not None
        clusters = minhash_clusters(folder, self.cfg.prefilter.minhash, stems)
        parts = [pl.DataFrame(schema=_MEMBERS)]
        for i, stem in enumerate(stems):
            pairs = clusters.get(stem)
            if pairs is None or not len(pairs):
                continue
            if int(pairs[:, 0].max()) >= len(alive[i]):
                raise CurationError(f"{MINHASH}/ signatures of {stem} do not match {FILTERS}/{stem}.parquet: rerun")
            pos = alive[i][pairs[:, 0].astype(np.int64)]
            parts.append(pl.DataFrame({"shard": np.full(len(pos), i, np.int32), "pos": pos.astype(np.int64),
                                       "key": pairs[:, 1].astype(np.uint64)}))  # fmt: skip
        return pl.concat(parts).with_columns(pl.lit("minhash").alias("kind"))

    def _member_graph(self, stems: list[str], members: list[pl.DataFrame]) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
        """The members as nodes (node, shard, pos, hash) and, per kind, their (node, key) memberships."""
        every = pl.concat(members) if members else pl.DataFrame(schema={**_MEMBERS, "kind": pl.String})
        nodes = every.select(["shard", "pos"]).unique().sort(["shard", "pos"])
        exact = self.cfg.prefilter is not None and self.cfg.prefilter.exact.enabled
        hashes = []
        for i, stem in enumerate(stems):  # the exact key of every member (to tell exact copies in mixed groups)
            pos = nodes.filter(pl.col("shard") == i)["pos"].to_numpy()
            hashes.append(self._hashes(stem, pos) if exact else np.zeros(len(pos), np.uint64))
        nodes = nodes.with_columns(pl.Series("hash", np.concatenate(hashes) if hashes else [], pl.UInt64))
        nodes = nodes.with_row_index("node")
        keyed = every.join(nodes.select(["node", "shard", "pos"]), on=["shard", "pos"], how="left")
        edges = [
            keyed.filter(pl.col("kind") == kind).select(["node", pl.col("key").reinterpret(signed=True).alias("key")])
            for kind in ("exact", "minhash")
        ]
        return nodes, edges

    def _write(self, stems: list[str], survivors: int, groups: pl.DataFrame, stats: ShardStats) -> None:
        ids = self._ids(stems, groups)
        groups = groups.join(ids, on=["shard", "pos"], how="left")
        first = groups.filter(pl.col("survivor")).select(["group", pl.col("id").alias("dup_group")])
        groups = groups.join(first, on="group", how="left")
        stats.input += survivors
        for i, stem in enumerate(stems):
            part = groups.filter(pl.col("shard") == i).sort("pos")
            reason = part["reason"].to_list()
            table = pa.table(
                {
                    "pos": pa.array(part["pos"].to_numpy(), pa.int64()),
                    "drop_reason": pa.array(reason, pa.string()),
                    "dup_of": pa.array(
                        [g if r else None for g, r in zip(part["dup_group"], reason, strict=True)], pa.string()
                    ),  # fmt: skip
                    "dup_group": pa.array(part["dup_group"].to_list(), pa.string()),
                },
                schema=TEXTDEDUP_SCHEMA,
            )
            with self.writer(f"{TEXTDEDUP}/{stem}.parquet", TEXTDEDUP_SCHEMA) as w:
                w.write(table)
            for r in reason:
                if r is not None:
                    stats.dropped += 1
                    stats.count(f"dropped_{r}")
        stats.kept += survivors - stats.dropped

    def _ids(self, stems: list[str], groups: pl.DataFrame) -> pl.DataFrame:
        """The id of every group member (read from ``filters/``, one shard at a time)."""
        id_f = self.cfg.io.id_field
        parts = []
        for i, stem in enumerate(stems):
            pos = groups.filter(pl.col("shard") == i)["pos"].to_numpy()
            if len(pos) == 0:
                continue
            col = read_parquet(self.run_dir, f"{FILTERS}/{stem}.parquet", [id_f]).column(0)
            parts.append(
                pl.DataFrame({"shard": np.full(len(pos), i, np.int32), "pos": pos, "id": col.take(pos).to_pylist()})
            )
        if not parts:
            return pl.DataFrame(schema={"shard": pl.Int32, "pos": pl.Int64, "id": pl.String})
        return pl.concat(parts)


def _groups(frame: pl.DataFrame, edge_sets: list[pl.DataFrame], exact: bool) -> pl.DataFrame:
    """Duplicate groups from (node, key) memberships (nodes sharing a key, in any of the sets, are one group).

    Returns one row per member: shard, pos, group, survivor (the first member in (shard, pos) order) and reason
    (null for the survivor; ``exact_duplicate`` when ``exact`` and an earlier member has the same text hash, else
    ``minhash_duplicate``)."""
    sets = [e for e in edge_sets if e.height]
    if not sets:
        return pl.DataFrame(
            schema={"shard": pl.Int32, "pos": pl.Int64, "group": pl.Int64, "survivor": pl.Boolean, "reason": pl.String}
        )
    # a bipartite graph: node ↔ (set, key); its connected components are the duplicate groups
    n = frame.height
    src, dst, offset = [], [], n
    for e in sets:
        keys = e["key"].rank("dense").cast(pl.Int64).to_numpy() - 1
        src.append(e["node"].cast(pl.Int64).to_numpy())
        dst.append(keys + offset)
        offset += int(keys.max()) + 1
    a, b = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(offset, offset))
    _, label = connected_components(graph, directed=False)
    members = np.unique(a)
    labels = pl.DataFrame({"node": members.astype(np.uint32), "group": label[members].astype(np.int64)})
    g = frame.join(labels, on="node", how="inner").sort(["group", "shard", "pos"])
    g = g.with_columns(
        (pl.int_range(pl.len()).over("group") == 0).alias("survivor"),
        pl.col("hash").is_first_distinct().over("group").alias("_new_text"),
    )
    reason = (
        pl.when(pl.col("survivor"))
        .then(pl.lit(None, pl.String))
        .when(pl.lit(exact) & ~pl.col("_new_text"))
        .then(pl.lit("exact_duplicate"))
        .otherwise(pl.lit("minhash_duplicate"))
    )
    return g.with_columns(reason.alias("reason")).select(["shard", "pos", "group", "survivor", "reason"])
