"""The frame every strategy decides on: one row per valid document, in the canonical order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

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


#: documents whose similarities the prune step keeps between its passes (4 B each: 200 MB)
SIMS_CACHE_DOCS = 50_000_000


class RunSource:
    """The stored scores of a run, shard by shard, in the canonical order (``twopass.Source``): cluster id and
    distance from ``assignments/<stem>``, the SemDeDup similarity from ``dedup/<bucket>``, never an id string.

    A shard's SemDeDup similarities are its own file of each bucket (``dedup/<bucket>/<stem>.parquet``, pos and
    dup_max_sim; ``shard_sims``, which a unit's decision reads with the nearest ids). The global step streams the
    shards several times (once per radix pass); it keeps each shard's similarities (4 bytes per document) between
    passes up to ``SIMS_CACHE_DOCS`` documents in all and reads the rest again on every pass, so its memory stays
    flat in the corpus at the price of more small reads beyond that.
    """

    def __init__(self, run: RunDir, shards: list[Shard], id_field: str, clusters: bool, dedup: bool, n_buckets: int,
                 seed: int, quality: bool = False):  # fmt: skip
        self.run, self.id_field, self.seed = run, id_field, seed
        self.shards = sorted(shards, key=lambda s: s.stem)
        self.rank = {s.stem: i for i, s in enumerate(self.shards)}
        self.clusters, self.dedup, self.quality, self.n_buckets = clusters, dedup, quality, n_buckets
        self._sims: dict[str, np.ndarray] = {}
        self._cached = 0

    def _rows_file(self, stem: str) -> str:
        return f"assignments/{stem}.parquet" if self.clusters else f"embeddings/{stem}.parquet"

    def _shard_sims(self, stem: str, n: int) -> np.ndarray:
        """``dup_max_sim`` of one shard, kept between the passes while the kept arrays hold at most
        ``SIMS_CACHE_DOCS`` documents (after that, read again on every pass)."""
        if stem in self._sims:
            return self._sims[stem]
        sims = self.shard_sims(stem, n, nn=False)[0]
        if self._cached + n <= SIMS_CACHE_DOCS:
            self._sims[stem] = sims
            self._cached += n
        return sims

    def shard_sims(self, stem: str, n: int, nn: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """One shard's ``dup_max_sim`` (NaN where null) and ``dup_nn_id`` (``nn``), from its file of every bucket;
        each of its ``n`` rows must be there exactly once."""
        cols = ["pos", "dup_max_sim", "dup_nn_id"] if nn else ["pos", "dup_max_sim"]
        parts = [read_dedup(self.run, b, stem, cols) for b in range(self.n_buckets)]
        t = pl.from_arrow(pa.concat_tables(parts)).sort("pos") if parts else None
        if t is None or t.height != n or not (t["pos"].to_numpy() == np.arange(n)).all():
            raise CurationError(
                f"dedup outputs cover {0 if t is None else t.height} rows of {stem} for {n} documents: rerun "
                "`winnow dedup` (or `winnow run`)"
            )
        sims = t["dup_max_sim"].fill_null(float("nan")).to_numpy().astype(np.float32)
        return sims, (t["dup_nn_id"].to_numpy() if nn else None)

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
        for s in self.shards:
            cols = ["cluster_id", "dist_to_centroid"] if self.clusters else [self.id_field]
            rows = pl.from_arrow(read_parquet(self.run, self._rows_file(s.stem), cols))
            sims = self._shard_sims(s.stem, rows.height) if self.dedup else None
            if sims is not None and len(sims) != rows.height:
                raise CurationError(f"{self._rows_file(s.stem)} changed while prune ran: rerun `winnow run`")
            yield self.scores(s.stem, rows, sims)

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
