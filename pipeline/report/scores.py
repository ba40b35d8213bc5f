"""Loading a run for its report: the resolved config, the shards, every stored score, word counts and domains."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from loguru import logger

from winnow.core.errors import ConfigError, CurationError
from winnow.core.io import Shard, ShardReader, list_shards
from winnow.core.layout import dedup_file, read_parquet
from winnow.core.rundir import RunDir
from winnow.pipeline.config import (
    WinnowConfig,
    load_run_config,
)
from winnow.pipeline.report.decisions import read_stored_scores
from winnow.scorers.prefilter import PREFILTER_REASONS

__all__ = ["RunScores", "load_run", "run_config"]


@dataclass
class RunScores:
    """Every stored score of a run, one row per valid document in canonical order (shards by name, rows in order).

    Args:
        run: The run directory.
        cfg: The run's resolved config (``config.resolved.yaml``) with the report's ``--set`` overrides.
        frame: ``stem, pos, id`` + ``cluster_id, dist_to_centroid`` (clusters) + ``dup_max_sim, dup_nn_id`` (dedup)
            + the quality columns (quality) + ``n_words`` and ``domain`` (always) + ``text`` (when asked for).
        centroids: ``centroids.npy``, or None without clusters.
        clusters: Whether assignments were found.
        dedup: Whether SemDeDup similarities were found.
        quality: Whether quality ratings were found.
        domain_column: The column ``domain`` was taken from (``quality_domain``, ``source``, another, or ``none``).
        notes: Things the reader of the report should know (fallbacks taken).
    """

    run: RunDir
    cfg: WinnowConfig
    frame: pl.DataFrame
    centroids: np.ndarray | None
    clusters: bool
    dedup: bool
    quality: bool
    domain_column: str
    notes: list[str] = field(default_factory=list)


def run_config(rd: RunDir, sets: Sequence[str] | None, inputs: Sequence[str] | None) -> WinnowConfig:
    """The run's ``config.resolved.yaml`` with ``--set`` overrides and ``--input`` applied, validated."""
    cfg = load_run_config(rd, list(sets or []))
    if inputs:
        cfg = cfg.model_copy(update={"io": cfg.io.model_copy(update={"input": list(inputs)})})
    return cfg


def _shards(cfg: WinnowConfig, rd: RunDir, notes: list[str], inputs: Sequence[str] | None = None) -> list[Shard]:
    """The run's shards: those of its manifest (``manifest.json``, the inputs of its latest invocation), each read
    from ``--input`` instead where a shard of that name is found there. A run made before manifests falls back to
    its inputs when they still resolve (they may have changed since), else to the shards under ``embeddings/``."""
    manifest = rd.manifest()
    if manifest is not None:
        shards = manifest.to_shards()
        if inputs:  # the inputs moved: read them where they are now (as they are: no fingerprint)
            moved = {s.stem: s for s in list_shards(list(inputs), cfg.io.storage_options)}
            shards = [moved.get(s.stem, s) for s in shards]
        return shards
    msg = (
        f"{rd.url} has no manifest.json (a run made before winnow recorded its inputs): its shards are taken from "
        "its inputs as they are now, which may differ from what the run processed; rerun `winnow run` to record them"
    )
    logger.warning(msg)
    notes.append(msg)
    return _shards_without_manifest(cfg, rd, notes)


def _shards_without_manifest(cfg: WinnowConfig, rd: RunDir, notes: list[str]) -> list[Shard]:
    try:
        return list_shards(cfg.io.input, cfg.io.storage_options)
    except (ConfigError, OSError, ValueError) as e:
        stems = [n[: -len(".parquet")] for n in rd.listdir("embeddings") if n.endswith(".parquet")]
        if not stems:
            msg = f"{rd.url}: no embeddings/ and the inputs do not resolve ({e}); run `winnow run` first"
            raise CurationError(msg) from None
        notes.append(
            f"the run's inputs ({', '.join(cfg.io.input)}) do not resolve from here; the {len(stems)} shard(s) under "
            "embeddings/ were used (pass --input to name the inputs)"
        )
        return [Shard(url=rd.url_of("embeddings", f"{s}.parquet"), stem=s, format="parquet") for s in stems]


def _read_columns(rd: RunDir, cfg: WinnowConfig, shards: list[Shard], columns: list[str]) -> pl.DataFrame | None:
    """``columns`` (plus the id) of every valid row, from ``curated/`` or, without it, from the input shards."""
    id_f = cfg.io.id_field
    frames = []
    for shard in shards:
        rel = f"curated/{shard.stem}.parquet"
        if rd.exists(rel):
            try:
                with rd.fs.open(rd._p(rel), "rb") as f:
                    names = pq.read_schema(f).names
            except (pa.ArrowInvalid, OSError) as e:
                raise CurationError(f"{rd.url_of(rel)}: unreadable ({e}); rerun `winnow run` to rewrite it") from e
            want = [id_f, *[c for c in columns if c in names and c != id_f]]
            prefiltered = "drop_reason" in names and cfg.prefilter is not None
            t = read_parquet(rd, rel, columns=want + (["drop_reason"] if prefiltered else []))
            if prefiltered:  # the stored scores cover the pre-filters' survivors only
                gone = pc.is_in(t.column("drop_reason"), value_set=pa.array(PREFILTER_REASONS))
                t = t.filter(pc.invert(pc.fill_null(gone, False))).select(want)
        elif cfg.prefilter is not None:
            return None  # the input rows cannot be matched to the survivors without curated/
        else:
            try:
                tables = [b.table for b in ShardReader(shard, cfg.io)]
            except Exception:  # noqa: BLE001 - a missing or unreadable input: the caller decides
                return None
            if not tables:
                continue
            t = pa.concat_tables(tables, promote_options="default")
            t = t.select([c for c in [id_f, *columns] if c in t.column_names])
        f = pl.from_arrow(t)
        assert isinstance(f, pl.DataFrame)
        frames.append(f.rename({id_f: "_id"}).with_columns(pl.lit(shard.stem).alias("_stem")))
    if not frames:
        return None
    return pl.concat(frames, how="diagonal_relaxed")


def _stored_outputs(rd: RunDir, cfg: WinnowConfig, stems: list[str]) -> tuple[bool, bool, bool]:
    """Whether the run has clusters, SemDeDup similarities and quality ratings for every shard."""
    clusters = rd.exists("centroids.npy") and all(rd.exists(f"assignments/{s}.parquet") for s in stems)
    dedup = clusters and all(rd.exists(dedup_file(b, s)) for b in range(cfg.cluster.n_buckets) for s in stems)
    quality = all(rd.exists(f"quality/{s}.parquet") for s in stems)
    if not clusters and not all(rd.exists(f"embeddings/{s}.parquet") for s in stems):
        msg = f"{rd.url}: neither assignments/ nor embeddings/ cover the {len(stems)} shard(s): run `winnow run` first"
        raise CurationError(msg)
    return clusters, dedup, quality


def _with_read_columns(
    rd: RunDir, cfg: WinnowConfig, shards: list[Shard], frame: pl.DataFrame, want: list[str]
) -> pl.DataFrame:
    """``frame`` with the columns of ``want`` it lacks, read row for row from the curated (or input) shards."""
    extra = _read_columns(rd, cfg, shards, want) if want else None
    if extra is not None:
        if extra.height != frame.height or not extra["_id"].cast(pl.String).equals(
            frame["id"].cast(pl.String), check_names=False
        ):
            msg = f"{rd.url}: curated/ does not match the stored scores row for row: rerun `winnow run`"
            raise CurationError(msg)
        for c in want:
            if c in extra.columns and c not in frame.columns:
                frame = frame.with_columns(extra[c].alias("text" if c == cfg.io.text_field else c))
    return frame


def _with_n_words(rd: RunDir, frame: pl.DataFrame, texts: bool) -> pl.DataFrame:
    """``frame`` with ``n_words`` counted from the texts where ``quality/`` did not store it."""
    if texts and "text" not in frame.columns:
        msg = f"{rd.url}: no curated/ shards and the inputs cannot be read: the proxy LM needs the texts"
        raise CurationError(msg)
    if "n_words" not in frame.columns:
        if "text" not in frame.columns:
            msg = f"{rd.url}: no word counts (quality/) and no texts (curated/ or the inputs) to count them from"
            raise CurationError(msg)
        frame = frame.with_columns(
            pl.col("text").fill_null("").str.count_matches(r"\S+").cast(pl.Int64).alias("n_words")
        )
    return frame


def _with_domain(frame: pl.DataFrame, domain: str, domain_col: str, notes: list[str]) -> tuple[pl.DataFrame, str]:
    """``frame`` with its ``domain`` column (from ``domain_col``, or ``all``) and the column it was taken from."""
    if domain_col == "none":
        frame = frame.with_columns(pl.lit("all").alias("domain"))
    elif domain_col in frame.columns:
        frame = frame.with_columns(pl.col(domain_col).cast(pl.String).fill_null("unknown").alias("domain"))
    elif domain == "auto":
        notes.append(f"no {domain_col} column: domain entropy and shares use one domain, 'all'")
        domain_col = "none"
        frame = frame.with_columns(pl.lit("all").alias("domain"))
    else:
        msg = f"--domain {domain}: no such column in the curated shards"
        raise ConfigError(msg)
    return frame, domain_col


def load_run(
    run_dir: str,
    *,
    sets: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    domain: str = "auto",
    texts: bool = False,
) -> RunScores:
    """Read a run's stored scores (:func:`winnow.pipeline.prune.load_scores`), its centroids, word counts and domains.

    Args:
        run_dir: The run directory.
        sets: ``key=value`` overrides applied to the run's resolved config (e.g. ``dedup.eps=0.1``,
            ``mix.budget_tokens=1e6``).
        inputs: Replace ``io.input`` (where the input shards are now), used to list the shards.
        storage_options: fsspec options of a remote run directory.
        domain: ``auto`` (``quality_domain``, else ``source``), or the name of a column of the curated shards.
        texts: Also read every document's text (the proxy LM needs it).

    Returns:
        A :class:`RunScores`.

    Raises:
        ConfigError: Not a run directory, a bad override, an unknown domain column.
        CurationError: The stored outputs are missing or do not match each other.
    """
    rd = RunDir(run_dir, storage_options)
    cfg = run_config(rd, sets, inputs)
    notes: list[str] = []
    shards = _shards(cfg, rd, notes, inputs)
    clusters, dedup, quality = _stored_outputs(rd, cfg, [s.stem for s in shards])
    frame = read_stored_scores(rd, cfg, shards, clusters, dedup, quality)
    centroids = np.load(io.BytesIO(rd.read_bytes("centroids.npy"))) if clusters else None
    for what, have in (("clusters", clusters), ("SemDeDup similarities", dedup), ("quality scores", quality)):
        if not have:
            notes.append(f"the run has no {what}: the strategies and metrics that need them are left out")

    want = [cfg.io.text_field] if (texts or "n_words" not in frame.columns) else []
    domain_col = "quality_domain" if (domain == "auto" and quality) else domain
    if domain == "auto" and not quality:
        domain_col = cfg.io.source_field
    if domain_col not in frame.columns and domain_col != "none":
        want.append(domain_col)
    frame = _with_read_columns(rd, cfg, shards, frame, want)
    frame = _with_n_words(rd, frame, texts)
    frame, domain_col = _with_domain(frame, domain, domain_col, notes)
    return RunScores(rd, cfg, frame, centroids, clusters, dedup, quality, domain_col, notes)
