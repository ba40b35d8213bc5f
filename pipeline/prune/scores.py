"""The frame every strategy decides on: one row per valid document, in the canonical order."""

from __future__ import annotations

import polars as pl

from winnow.core.errors import CurationError
from winnow.core.io import Shard
from winnow.core.layout import bucket_name, read_parquet
from winnow.core.rundir import RunDir


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
        stems = [s.stem for s in shards]
        parts = [pl.from_arrow(read_parquet(run, f"dedup/{bucket_name(b)}.parquet")) for b in range(n_buckets)]
        d = pl.concat(parts).filter(pl.col("stem").is_in(stems)) if parts else None
        if d is None or d.height != frame.height or d.select(["stem", "pos"]).is_duplicated().any():
            raise CurationError(
                f"dedup outputs cover {0 if d is None else d.height} rows for {frame.height} documents: "
                "rerun `winnow dedup` (or `winnow run`)"
            )
        frame = frame.join(d, on=["stem", "pos"], how="left", maintain_order="left")
    # canonical order: shards by name (already sorted), rows in order
    return frame.sort(["stem", "pos"], maintain_order=True)
