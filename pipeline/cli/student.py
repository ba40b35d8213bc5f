"""``winnow train-student``: train the ``student`` rater on a ratings file and a run's stored embeddings.

Mounted on the main app as ``app.command("train-student")(train_student_command)``.

Inputs:

* ``--ratings``: one or more parquet or JSONL files (paths or globs; ``.jsonl``, ``.json``, ``.ndjson``, with
  ``.gz``/``.zst`` compression by suffix) holding an id column (the run's ``io.id_field``, or ``id``), the 14
  rating columns ``quality_<criterion>`` + ``quality_overall`` (1..5, null when missing) and ``quality_domain``.
  That is exactly what ``winnow score`` writes to ``<run>/quality/<shard>.parquet``, whichever the backend. Rows
  with no rating at all are skipped and counted; an id rated twice keeps its last rating (counted).
* ``--run``: the run directory whose ``embeddings/<stem>.parquet`` (id, embedding) and ``curated/<stem>.parquet``
  (id, text: written by ``winnow run`` / ``winnow write``) hold the rated documents, joined by id. Rated ids with
  no embedding or no text are skipped and counted. The id and text columns are the run's
  (``config.resolved.yaml``) unless ``--id-field``/``--text-field`` say otherwise.

Outputs: the model directory ``--out`` (see :mod:`winnow.scorers.student`), ``report.json`` in it, and the held-out
report on stdout (a table, or ``--json``). Exit codes: 0 success, 1 unreadable or bad data (a rating outside
1..5, an unknown domain, too few rows), 2 a usage error (a missing file, run directory, or curated shards).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import typer
import yaml
from fsspec.core import url_to_fs
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from winnow.core.cli_util import exit_on_error
from winnow.core.errors import ConfigError, CurationError
from winnow.core.layout import arrow_to_vectors
from winnow.core.rundir import RunDir
from winnow.scorers.base import CRITERIA
from winnow.scorers.student import RATING_COLUMNS, train_student

__all__ = ["load_ratings", "load_run_documents", "print_report", "train_student_command"]

RatingsOpt = Annotated[
    list[str],
    typer.Option(
        "--ratings",
        help="Ratings: parquet or JSONL files (path or glob; repeatable) with id, quality_<criterion>, "
        "quality_overall and quality_domain, e.g. 'runs/sample/quality/*.parquet'.",
    ),
]
RunOpt = Annotated[
    str, typer.Option("--run", help="Run directory holding embeddings/ and curated/ for the rated ids.")
]
OutOpt = Annotated[str, typer.Option("--out", help="Directory to write the model and report.json to.")]
HoldoutOpt = Annotated[float, typer.Option("--holdout", help="Share of rated documents held out for the report.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the split, the initialisation and the batch order.")]
EpochsOpt = Annotated[int, typer.Option("--epochs", help="At most this many epochs (early stopping picks the best).")]
FeaturesOpt = Annotated[
    bool,
    typer.Option(
        "--text-features/--no-text-features",
        help="Add the heuristic text features to the embedding (slower to rate: ~2 ms per document).",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")]
IdFieldOpt = Annotated[
    str | None, typer.Option("--id-field", help="Id column of the run's files (default: the run's io.id_field).")
]
TextFieldOpt = Annotated[
    str | None, typer.Option("--text-field", help="Text column of curated/ (default: the run's io.text_field).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")]

_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


# --------------------------------------------------------------------------------------------------- reading


def _expand(pattern: str) -> list[str]:
    fs, path = url_to_fs(pattern)
    if any(ch in path for ch in "*?["):
        found = sorted(fs.glob(path))
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        if protocol not in ("file", "local"):
            found = [f"{protocol}://{p}" for p in found]
        return found
    if not fs.exists(path):
        raise ConfigError(f"--ratings: {pattern} does not exist")
    return [pattern]


def _read_ratings_file(url: str) -> pa.Table:
    name = url.lower()
    for ext in (".gz", ".zst", ".zstd", ".bz2", ".xz"):
        name = name.removesuffix(ext)
    if name.endswith(".parquet"):
        with fsspec.open(url, "rb") as f:
            return pq.read_table(f)
    if name.endswith(_JSON_SUFFIXES):
        rows: list[dict[str, Any]] = []
        with fsspec.open(url, "rt", compression="infer", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError as e:
                    raise CurationError(f"{url}:{lineno}: not a JSON object ({e})") from None
                if not isinstance(rec, dict):
                    raise CurationError(f"{url}:{lineno}: not a JSON object")
                rows.append(rec)
        cols: dict[str, list[Any]] = {}
        for i, rec in enumerate(rows):
            for k, v in rec.items():
                cols.setdefault(k, [None] * i).append(v)
            for values in cols.values():
                if len(values) == i:
                    values.append(None)
        try:
            return pa.table({k: pa.array(v) for k, v in cols.items()}) if rows else pa.table({})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise CurationError(f"{url}: a column mixes types ({e})") from None
    raise ConfigError(f"--ratings: {url} is neither parquet nor JSONL (.parquet, .jsonl, .json, .ndjson)")


def _normalise_ratings(table: pa.Table, id_field: str, url: str) -> pa.Table:
    id_col = id_field if id_field in table.column_names else "id"
    missing = [c for c in (id_col, *RATING_COLUMNS, "quality_domain") if c not in table.column_names]
    if table.num_rows and missing:
        raise CurationError(f"{url}: missing column(s) {', '.join(missing)}")
    if not table.num_rows:
        return pa.table(
            {"id": pa.array([], pa.string()), **{c: pa.array([], pa.float64()) for c in RATING_COLUMNS},
             "quality_domain": pa.array([], pa.string())}
        )  # fmt: skip
    out: dict[str, pa.Array | pa.ChunkedArray] = {"id": pc.cast(table.column(id_col), pa.string())}
    for c in RATING_COLUMNS:
        col = table.column(c)
        try:
            out[c] = pc.cast(col, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise CurationError(f"{url}: column {c} is not numeric ({col.type})") from None
    out["quality_domain"] = pc.cast(table.column("quality_domain"), pa.string())
    return pa.table(out)


def load_ratings(patterns: list[str], id_field: str = "id") -> tuple[pa.Table, dict[str, int]]:
    """The ratings of every file (``id`` string, 14 float64 rating columns, ``quality_domain``), one row per id
    (the last one read wins), and counts (``ratings_files``, ``ratings_rows_read``, ``duplicate_ids``).

    Raises:
        ConfigError: no file matches a pattern, or a file of another format.
        CurationError: a file lacks a column or holds non-numeric ratings.
    """
    files: list[str] = []
    for pattern in patterns:
        found = _expand(pattern)
        if not found:
            raise ConfigError(f"--ratings: no file matches {pattern}")
        files += [f for f in found if f not in files]
    tables = [_normalise_ratings(_read_ratings_file(f), id_field, f) for f in files]
    table = pa.concat_tables(tables)
    n_read = table.num_rows
    ids = table.column("id").to_pylist()
    last = {k: i for i, k in enumerate(ids)}
    if len(last) != len(ids) or any(k is None for k in last):
        keep = sorted(i for k, i in last.items() if k is not None)
        table = table.take(pa.array(keep, pa.int64()))
    counts = {
        "ratings_files": len(files),
        "ratings_rows_read": n_read,
        "duplicate_ids": n_read - table.num_rows,
    }
    return table, counts


def _run_fields(run: RunDir) -> tuple[str, str]:
    id_field, text_field = "id", "text"
    if run.exists("config.resolved.yaml"):
        try:
            io = (yaml.safe_load(run.read_text("config.resolved.yaml")) or {}).get("io") or {}
        except yaml.YAMLError:
            io = {}
        id_field, text_field = io.get("id_field", id_field), io.get("text_field", text_field)
    return id_field, text_field


def _run_files(run: RunDir) -> tuple[list[str], list[str]]:
    """The embeddings and curated files of the run's shards: those of its manifest (a shard removed from the inputs
    is never read), or, for a run made before manifests, the folders' listings."""
    emb, cur = run.shard_files("embeddings"), run.shard_files("curated")
    return [n for n in emb if run.exists("embeddings", n)], [n for n in cur if run.exists("curated", n)]


def load_run_documents(
    run: RunDir, ids: list[str], id_field: str, text_field: str
) -> tuple[np.ndarray, list[str | None], np.ndarray, str | None]:
    """The embeddings and texts of ``ids`` from a run's ``embeddings/`` and ``curated/`` files.

    Returns:
        ``(embeddings [len(ids), d] float32 (zeros where absent), texts (None where absent), found: bool mask
        of the ids with both, the embedding model label of the files' ``winnow.model`` metadata)``.

    Raises:
        ConfigError: the run has no embeddings or no curated shards.
        CurationError: the embeddings files disagree on the dimension or the model.
    """
    wanted = pa.array(ids, pa.string())
    pos = {k: i for i, k in enumerate(ids)}
    emb_files, cur_files = _run_files(run)
    if not emb_files:
        raise ConfigError(f"--run: {run.url} has no embeddings/*.parquet (run `winnow run` or `winnow embed`)")
    if not cur_files:
        raise ConfigError(
            f"--run: {run.url} has no curated/*.parquet to take the texts from (run `winnow run` or `winnow write`)"
        )
    vectors: np.ndarray | None = None
    has_emb = np.zeros(len(ids), bool)
    models: set[str] = set()
    for name in emb_files:
        with run.fs.open(run._p("embeddings", name), "rb") as f:
            pf = pq.ParquetFile(f)
            meta = pf.schema_arrow.metadata or {}
            if b"winnow.model" in meta:
                models.add(meta[b"winnow.model"].decode())
            if id_field not in pf.schema_arrow.names:
                raise ConfigError(f"embeddings/{name} has no id column {id_field!r} (see --id-field)")
            table = pf.read(columns=[id_field, "embedding"])
        mask = pc.is_in(pc.cast(table.column(id_field), pa.string()), value_set=wanted)
        table = table.filter(mask)
        if not table.num_rows:
            continue
        vecs = arrow_to_vectors(table.column("embedding"))
        if vectors is None:
            vectors = np.zeros((len(ids), vecs.shape[1]), np.float32)
        elif vecs.shape[1] != vectors.shape[1]:
            raise CurationError(f"embeddings/{name}: dimension {vecs.shape[1]}, others {vectors.shape[1]}")
        rows = [pos[k] for k in pc.cast(table.column(id_field), pa.string()).to_pylist()]
        vectors[rows] = vecs
        has_emb[rows] = True
    if len(models) > 1:
        raise CurationError(f"the run's embeddings come from several models: {sorted(models)}")
    texts: list[str | None] = [None] * len(ids)
    for name in cur_files:
        with run.fs.open(run._p("curated", name), "rb") as f:
            pf = pq.ParquetFile(f)
            missing = [c for c in (id_field, text_field) if c not in pf.schema_arrow.names]
            if missing:
                raise ConfigError(f"curated/{name} has no column(s) {missing} (see --id-field / --text-field)")
            table = pf.read(columns=[id_field, text_field])
        table = table.filter(pc.is_in(pc.cast(table.column(id_field), pa.string()), value_set=wanted))
        for k, t in zip(
            pc.cast(table.column(id_field), pa.string()).to_pylist(), table.column(text_field).to_pylist(), strict=True
        ):
            texts[pos[k]] = t
    if vectors is None:
        vectors = np.zeros((len(ids), 0), np.float32)
    found = has_emb & np.array([t is not None for t in texts], bool)
    return vectors, texts, found, (next(iter(models)) if models else None)


# --------------------------------------------------------------------------------------------------- report


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_report(out: Console, report: dict[str, Any], out_dir: str) -> None:
    """The held-out report as a table, then the counts."""
    held = report["holdout"]
    if held is None:
        out.print("no held-out split (--holdout 0): nothing to report on unseen documents", highlight=False)
    else:
        table = Table(
            title=escape(
                f"student: held-out {report['n_holdout']:,} documents (trained on {report['n_train']:,}, "
                f"epoch picked on {report['n_val']:,})"
            ),
            title_justify="left",
            caption="MAE of the integer ratings written (baseline: always the training median); Spearman of the "
            "continuous predictions",
            caption_justify="left",
        )
        for col in ("rating", "n", "MAE", "baseline MAE", "Spearman"):
            table.add_column(col, justify="left" if col == "rating" else "right")
        for key in (*CRITERIA, "overall"):
            r = held["ratings"][key]
            table.add_row(key, f"{r['n']:,}", _fmt(r["mae"]), _fmt(r["baseline_mae"]), _fmt(r["spearman"]))
        table.add_section()
        table.add_row(
            "mean of the 13 criteria",
            "",
            _fmt(held["criteria_mae"]),
            "",
            _fmt(held["criteria_spearman"]),
            style="bold",
        )
        out.print(table)
        out.print(
            escape(
                f"domain accuracy {_fmt(held['domain_accuracy'])} on {held['n_domain']:,} held-out documents "
                f"(always '{report['domain_majority_class']}': {_fmt(held['domain_majority_baseline'])})"
            ),
            highlight=False,
        )
    tr = report["train"]
    out.print(
        escape(
            f"on the training rows: criteria MAE {_fmt(tr['criteria_mae'])}, "
            f"Spearman {_fmt(tr['criteria_spearman'])}, domain accuracy {_fmt(tr['domain_accuracy'])}"
        ),
        highlight=False,
    )
    skipped = {k: v for k, v in report.items() if k.startswith("skipped_") and v}
    if skipped or report.get("duplicate_ids"):
        parts = [f"{k.removeprefix('skipped_')}={v:,}" for k, v in skipped.items()]
        if report.get("duplicate_ids"):
            parts.append(f"duplicate ids (last kept)={report['duplicate_ids']:,}")
        out.print(escape("skipped rows: " + ", ".join(parts)), highlight=False)
    out.print(escape(f"model and report.json written to {out_dir}"), highlight=False)


# --------------------------------------------------------------------------------------------------- command


def train_student_command(
    ratings: RatingsOpt,
    run: RunOpt,
    out: OutOpt,
    holdout: HoldoutOpt = 0.2,
    seed: SeedOpt = 0,
    epochs: EpochsOpt = 200,
    text_features: FeaturesOpt = True,
    device: DeviceOpt = "cpu",
    id_field: IdFieldOpt = None,
    text_field: TextFieldOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Train the student rater on ratings (e.g. the llm backend's on a sample) and a run's stored embeddings.

    Joins the ratings by id to <run>/embeddings/ and the texts in <run>/curated/, holds out --holdout of them
    (by a hash of the seed and the id), trains a small multi-head model over the embeddings and cheap text
    features, and reports per-criterion MAE and Spearman and the domain accuracy on the held-out documents. Then
    rate a corpus with --set score.backend=student --set score.student.model_dir=OUT.

    Example: winnow train-student --ratings 'runs/sample/quality/*.parquet' --run runs/sample --out models/student
    """
    stdout = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    with exit_on_error(err):
        if device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"--device must be cpu, cuda or auto, got {device!r}")
        run_dir = RunDir(run)
        if not run_dir.fs.isdir(run_dir.path):
            raise ConfigError(f"--run: {run} is not a directory")
        run_id, run_text = _run_fields(run_dir)
        id_f, text_f = id_field or run_id, text_field or run_text
        table, counts = load_ratings(ratings, id_f)
        ids = table.column("id").to_pylist()
        vectors, texts, found, embed_model = load_run_documents(run_dir, ids, id_f, text_f)
        skipped = int((~found).sum())
        if skipped:
            keep = np.flatnonzero(found)
            table = table.take(pa.array(keep, pa.int64()))
            vectors = vectors[keep]
            texts = [texts[i] for i in keep]
        if table.num_rows == 0:
            raise CurationError(f"none of the {len(ids):,} rated ids has an embedding and a text in {run}")
        extra = {
            **counts,
            "skipped_not_in_run": skipped,
            "ratings": [str(r) for r in ratings],
            "run": str(run),
        }
        report = train_student(
            table, vectors, texts, out, seed=seed, holdout=holdout, epochs=epochs,
            use_text_features=text_features, embed_model=embed_model, device=device, extra=extra,
        )  # fmt: skip
    if json_:
        typer.echo(json.dumps(report, indent=2))
        return
    print_report(stdout, report, str(Path(out)))
