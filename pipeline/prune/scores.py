"""The frame every strategy decides on: one row per valid document, in the canonical order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from winnow.core.errors import CurationError
from winnow.core.io import Shard
from winnow.core.layout import dedup_file, read_parquet
from winnow.core.rundir import RunDir
from winnow.pipeline.prune.twopass import ShardScores, scores_of


def read_dedup(run: RunDir, bucket: int, stem: str, columns: list[str] | None = None) -> pa.Table:
    """One shard's rows of one bucket's dedup output; a missing file (an older run's layout, or a dedup unit that
    did not finish) is a ``CurationError`` that names it and says to rerun."""
    return read_parquet(run, dedup_file(bucket, stem), columns)


def load_scores(
    run: RunDir,
    shards: list[Shard],
    id_field: str,
    clusters: bool,
    dedup: bool,
    n_buckets: int = 0,
    quality: bool = False,
) -> pl.DataFrame:
    """One frame over every valid document: stem, pos, id (+ cluster_id, dist_to_centroid, dup_max_sim, dup_nn_id).

    Only the ``n_buckets`` dedup files of the current config are read (an earlier config may have left others).
    """
    frames = []
    for shard in shards:
        if clusters:
            t = read_parquet(run, f"assignments/{shard.stem}.parquet")
        else:
            t = read_parquet(run, f"embeddings/{shard.stem}.parquet", columns=[id_field])
        f = pl.from_arrow(t).rename({id_field: "id"})
        f = f.with_columns(pl.lit(shard.stem).alias("stem"), pl.int_range(0, f.height, dtype=pl.Int64).alias("pos"))
        if quality:
            q = pl.from_arrow(read_parquet(run, f"quality/{shard.stem}.parquet")).rename({id_field: "_qid"})
            if q.height != f.height or not q["_qid"].equals(f["id"], check_names=False):
                raise CurationError(f"quality/{shard.stem}.parquet does not match the shard: rerun `winnow score`")
            f = pl.concat([f, q.drop("_qid")], how="horizontal")
        frames.append(f)
    frame = pl.concat(frames, how="vertical") if frames else pl.DataFrame({"stem": [], "pos": [], "id": []})
    if dedup:
        parts = [pl.from_arrow(read_dedup(run, b, s.stem)) for s in shards for b in range(n_buckets)]
        d = pl.concat(parts) if parts else None
        if d is None or d.height != frame.height or d.select(["stem", "pos"]).is_duplicated().any():
            raise CurationError(
                f"dedup outputs cover {0 if d is None else d.height} rows for {frame.height} documents: "
                "rerun `winnow dedup` (or `winnow run`)"
            )
        frame = frame.join(d, on=["stem", "pos"], how="left", maintain_order="left")
    # canonical order: shards by name (already sorted), rows in order
    return frame.sort(["stem", "pos"], maintain_order=True)


class RunSource:
    """The stored scores of a run, shard by shard, in the canonical order (``twopass.Source``): cluster id and
    distance from ``assignments/<stem>``, the SemDeDup similarity from ``dedup/<bucket>``, never an id string.

    The global step reads every dedup file once (pos, dup_max_sim) into one float32 array per shard (4 bytes per
    document; its passes stream the shards several times, and the files are one per bucket and shard). A unit's
    decision (``shard_sims``) reads only its own shard's file of each bucket (``dedup/<bucket>/<stem>.parquet``).
    """

    def __init__(self, run: RunDir, shards: list[Shard], id_field: str, clusters: bool, dedup: bool, n_buckets: int,
                 seed: int, quality: bool = False):  # fmt: skip
        self.run, self.id_field, self.seed = run, id_field, seed
        self.shards = sorted(shards, key=lambda s: s.stem)
        self.rank = {s.stem: i for i, s in enumerate(self.shards)}
        self.clusters, self.dedup, self.quality, self.n_buckets = clusters, dedup, quality, n_buckets
        self._sims: dict[str, np.ndarray] | None = None

    def _rows_file(self, stem: str) -> str:
        return f"assignments/{stem}.parquet" if self.clusters else f"embeddings/{stem}.parquet"

    def _all_sims(self) -> dict[str, np.ndarray]:
        """Every shard's ``dup_max_sim`` (NaN where null), from one read of each current dedup file."""
        if self._sims is None:
            sims, seen = {}, {}
            for s in self.shards:
                with self.run.fs.open(self.run._p(self._rows_file(s.stem)), "rb") as f:
                    n = pq.ParquetFile(f).metadata.num_rows
                sims[s.stem], seen[s.stem] = np.full(n, np.nan, np.float32), np.zeros(n, np.int8)
            extra = 0
            for stem in sims:
                for b in range(self.n_buckets):
                    t = read_dedup(self.run, b, stem, ["pos", "dup_max_sim"])
                    pos = t.column("pos").to_numpy()
                    if len(pos) and (pos.min() < 0 or pos.max() >= len(sims[stem])):
                        extra += len(pos)
                        continue
                    sims[stem][pos] = t.column("dup_max_sim").to_numpy(zero_copy_only=False)
                    np.add.at(seen[stem], pos, 1)
            missing = sum(int((v != 1).sum()) for v in seen.values()) + extra
            if missing:
                total = sum(len(v) for v in seen.values())
                raise CurationError(
                    f"dedup outputs do not cover the {total} documents one row each ({missing} rows missing, "
                    "repeated or out of range): rerun `winnow dedup` (or `winnow run`)"
                )
            self._sims = sims
        return self._sims

    def shard_sims(self, stem: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """One shard's ``dup_max_sim`` (NaN where null) and ``dup_nn_id``, from its file of every bucket."""
        parts = [read_dedup(self.run, b, stem, ["pos", "dup_max_sim", "dup_nn_id"]) for b in range(self.n_buckets)]
        t = pl.from_arrow(pa.concat_tables(parts)).sort("pos") if parts else None
        if t is None or t.height != n or not (t["pos"].to_numpy() == np.arange(n)).all():
            raise CurationError(
                f"dedup outputs cover {0 if t is None else t.height} rows of {stem} for {n} documents: rerun "
                "`winnow dedup` (or `winnow run`)"
            )
        return t["dup_max_sim"].fill_null(float("nan")).to_numpy().astype(np.float32), t["dup_nn_id"].to_numpy()

    def rows(self, stem: str) -> pl.DataFrame:
        """The id and (with clusters) cluster_id, dist_to_centroid of one shard."""
        return (
            pl.from_arrow(read_parquet(self.run, self._rows_file(stem)))
            if self.clusters
            else pl.from_arrow(read_parquet(self.run, self._rows_file(stem), [self.id_field]))
        )

    def scores(self, stem: str, rows: pl.DataFrame, sims: np.ndarray | None) -> ShardScores:
        sh = scores_of(rows, stem, self.rank[stem], self.seed, self.clusters, False)
        sh.sims = sims
        if self.quality:  # read on demand, only the columns a strategy asks for
            sh.load_quality = lambda columns: self.quality_columns(stem, sh.n, columns)
        return sh

    def quality_columns(self, stem: str, n: int, columns: list[str]) -> pl.DataFrame:
        """``columns`` of ``quality/<stem>.parquet`` (never the id), checked against the shard's row count."""
        rel = f"quality/{stem}.parquet"
        q = pl.from_arrow(read_parquet(self.run, rel, columns))  # a missing file or column: a CurationError
        if q.height != n:
            raise CurationError(f"{rel} holds {q.height} rows, the shard {n}: rerun `winnow score`")
        return q

    def __iter__(self) -> Iterator[ShardScores]:
        sims = self._all_sims() if self.dedup else {}
        for s in self.shards:
            cols = ["cluster_id", "dist_to_centroid"] if self.clusters else [self.id_field]
            rows = pl.from_arrow(read_parquet(self.run, self._rows_file(s.stem), cols))
            if self.dedup and len(sims[s.stem]) != rows.height:
                raise CurationError(f"{self._rows_file(s.stem)} changed while prune ran: rerun `winnow run`")
            yield self.scores(s.stem, rows, sims.get(s.stem))

    def frame(self) -> pl.DataFrame:
        """stem, pos, the numeric scores and the quality columns (no ids) of every shard, in the canonical order."""
        frames = []
        for sh in self:
            f = pl.DataFrame({"stem": [sh.stem] * sh.n, "pos": np.arange(sh.n, dtype=np.int64)})
            if sh.labels is not None:
                f = f.with_columns(pl.Series("cluster_id", sh.labels), pl.Series("dist_to_centroid", sh.dist))
            if sh.sims is not None:
                f = f.with_columns(pl.Series("dup_max_sim", sh.sims).fill_nan(None))
            if self.quality:
                q = pl.from_arrow(read_parquet(self.run, f"quality/{sh.stem}.parquet")).drop(self.id_field)
                if q.height != f.height:
                    raise CurationError(f"quality/{sh.stem}.parquet does not match the shard: rerun `winnow score`")
                f = pl.concat([f, q], how="horizontal")
            frames.append(f)
        return pl.concat(frames, how="vertical") if frames else pl.DataFrame({"stem": [], "pos": []})
