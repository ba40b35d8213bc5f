"""Shard I/O: list input shards, read them in bounded record batches with validation, write parquet atomically.

Supported inputs: ``.jsonl`` / ``.ndjson`` (optionally ``.gz`` or ``.zst``) and ``.parquet``, from local paths,
globs, directories and fsspec URLs. Reading never loses a row: every record of a shard ends up either in a
``ReadBatch.table`` (valid) or in ``ReadBatch.rejects`` (with file, line/row, reason), and a shard that cannot
be read at all becomes one reject. Memory is bounded by ``io.read_batch_size``, never by the shard size.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io as pyio
import json
import os
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import fsspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from winnow.core.config import IOSection
from winnow.core.errors import ConfigError, ShardError
from winnow.core.redact import redact_url

# suffix -> (format, compression); longest suffixes first so ".jsonl.gz" wins over ".gz"
_SUFFIXES: list[tuple[str, tuple[str, str | None]]] = [
    (".jsonl.gz", ("jsonl", "gzip")),
    (".jsonl.zst", ("jsonl", "zstd")),
    (".jsonl.zstd", ("jsonl", "zstd")),
    (".ndjson.gz", ("jsonl", "gzip")),
    (".ndjson.zst", ("jsonl", "zstd")),
    (".jsonl", ("jsonl", None)),
    (".ndjson", ("jsonl", None)),
    (".parquet", ("parquet", None)),
]
SUPPORTED_SUFFIXES = tuple(s for s, _ in _SUFFIXES)

#: rejects keep at most this much of a raw line; file and line number point at the whole original.
MAX_RAW_CHARS = 65_536

REJECT_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("line", pa.int64()),  # 1-based line number (JSONL); null for parquet
        ("row", pa.int64()),  # 0-based row (parquet) or line - 1 (JSONL); null when the shard could not be opened
        ("n_rows", pa.int64()),  # records this entry stands for (>1 for an unreadable run of parquet rows)
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("id", pa.string()),
        ("raw", pa.string()),  # the raw line (JSONL, first MAX_RAW_CHARS characters), else null
        ("raw_bytes", pa.int64()),
    ]
)


def split_suffix(name: str) -> tuple[str, str, str | None] | None:
    """``("x", "jsonl", "gzip")`` for ``x.jsonl.gz``; ``None`` for an unsupported name."""
    lower = name.lower()
    for suffix, (fmt, comp) in _SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)], fmt, comp
    return None


@dataclass(frozen=True)
class Shard:
    """One input file.

    Attributes:
        url: the path as fsspec understands it, protocol included for remote files.
        stem: the output name: the path relative to the inputs' common folder, suffix removed, ``/`` → ``__``.
        format: ``jsonl`` or ``parquet``.
        compression: ``gzip``, ``zstd`` or ``None``.
        fingerprint: what the file was when the run started (:func:`shard_fingerprint`); ``""`` when not taken.
            Completion markers hold it, so a grown or replaced shard is redone.
    """

    url: str
    stem: str
    format: Literal["jsonl", "parquet"]
    compression: str | None = None
    fingerprint: str = ""


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def _fs_of(pattern: str, storage_options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec's filesystem and path of ``pattern``; a missing filesystem package is a config error."""
    try:
        return url_to_fs(pattern, **storage_options)
    except ImportError as e:  # e.g. https:// without aiohttp, s3:// without s3fs
        raise ConfigError(f"input {redact_url(pattern)!r}: {e}") from None


def list_shards(patterns: list[str], storage_options: dict[str, Any] | None = None) -> list[Shard]:
    """Expand paths, globs, directories and URLs into a sorted, de-duplicated list of shards.

    Raises:
        ConfigError: no pattern given, a pattern matches nothing, or an explicit file has an unsupported suffix.
    """
    if not patterns:
        raise ConfigError("no input given: pass --input PATH/GLOB or set io.input in the config")
    if any(not p.strip() for p in patterns):
        raise ConfigError("an input pattern is empty: give a path, glob, directory or URL (not the current directory)")
    storage_options = storage_options or {}
    found: dict[str, str] = {}  # url -> path without protocol
    for pattern in patterns:
        fs, path = _fs_of(pattern, storage_options)
        if _has_magic(path) and not fs.isfile(path):
            matches = [m for m in fs.glob(path) if split_suffix(m.rsplit("/", 1)[-1]) and fs.isfile(m)]
            if not matches:
                raise ConfigError(f"input {pattern!r} matches no shard (supported: {', '.join(SUPPORTED_SUFFIXES)})")
        elif fs.isdir(path):
            matches = sorted(m for m in fs.find(path) if split_suffix(m.rsplit("/", 1)[-1]))
            if not matches:
                raise ConfigError(f"input directory {pattern!r} holds no shard ({', '.join(SUPPORTED_SUFFIXES)})")
        elif fs.isfile(path):
            if not split_suffix(path.rsplit("/", 1)[-1]):
                raise ConfigError(
                    f"input {pattern!r}: unsupported file type (supported: {', '.join(SUPPORTED_SUFFIXES)})"
                )
            matches = [path]
        else:
            raise ConfigError(f"input {pattern!r} does not exist")
        for m in matches:
            found[fs.unstrip_protocol(m) if _is_remote(fs) else m] = m
    urls = sorted(found)
    paths = [found[u] for u in urls]
    common = os.path.commonpath([p.rsplit("/", 1)[0] or "/" for p in paths]) if paths else ""
    shards, stems = [], {}
    for url, path in zip(urls, paths, strict=True):
        rel = path[len(common) :].lstrip("/") if common and path.startswith(common) else path.rsplit("/", 1)[-1]
        base, fmt, comp = split_suffix(rel)  # type: ignore[misc]
        stem = base.replace("/", "__")
        if stem in stems:
            raise ConfigError(f"inputs {stems[stem]!r} and {url!r} would both write outputs named {stem!r}")
        stems[stem] = url
        shards.append(Shard(url=url, stem=stem, format=fmt, compression=comp))  # type: ignore[arg-type]
    return shards


def _is_remote(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol not in ("file", "local")


# --------------------------------------------------------------------------------------------------------------
# input fingerprints
#
# A fingerprint says "this is still the file the run processed" without reading it whole:
#   * the size, always (appended rows change it);
#   * where the filesystem names the content (an object store's ETag / MD5 / version id / generation), that name:
#     it changes whenever the bytes do, so nothing is read;
#   * otherwise (local disks, NFS, plain HTTP) the modification time plus a BLAKE2b hash of the first and the last
#     64 KiB: a file replaced by one of the same size within the same mtime tick is still caught unless it differs
#     only in the middle of a file larger than 128 KiB (files up to 128 KiB are hashed whole).
# A file that was only touched (new mtime, same bytes) is redone: safe, if wasteful. Taking one costs a stat (and
# two ranged reads where there is no content name); ``fingerprint_shards`` takes them in parallel.

#: ``fs.info`` keys that name an object's content (S3, GCS, Azure, HTTP servers that send them); all present are used
_CONTENT_KEYS = (
    "VersionId", "version_id", "generation", "md5Hash", "md5", "ETag", "etag", "content_md5", "Content-MD5", "Digest",
    "crc32c",
)  # fmt: skip
#: ``fs.info`` keys of a modification time, the first one present is used
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "Last-Modified", "updated", "modified", "created")
#: bytes hashed at each end of a file that has no content name
FINGERPRINT_SAMPLE = 64 * 1024


def shard_fingerprint(shard: Shard | str, storage_options: dict[str, Any] | None = None) -> str:
    """A short string that changes when the shard's bytes change (see the notes above): ``<size>-<16 hex>``.

    A file that cannot be stat-ed or read gets a fingerprint saying so (the reader then rejects it as
    ``unreadable_shard``), never an error.
    """
    url = shard.url if isinstance(shard, Shard) else shard
    fs, path = url_to_fs(url, **(storage_options or {}))
    h = hashlib.blake2b(digest_size=8)
    try:
        fs.invalidate_cache(path)  # object stores cache listings: ask the store, not the glob made at start-up
        info = fs.info(path)
    except (OSError, ValueError) as e:
        h.update(f"missing:{type(e).__name__}".encode())
        return f"missing-{h.hexdigest()}"
    size = int(info.get("size") or 0)
    named = [(k, str(info[k])) for k in _CONTENT_KEYS if info.get(k)]
    if named:
        h.update(repr(named).encode())
    else:
        mtime = next((info[k] for k in _MTIME_KEYS if info.get(k) is not None), None)
        h.update(f"mtime={mtime}".encode())
        h.update(_head_and_tail(fs, path, size))
    return f"{size}-{h.hexdigest()}"


def _head_and_tail(fs: fsspec.AbstractFileSystem, path: str, size: int) -> bytes:
    """BLAKE2b of the first and last ``FINGERPRINT_SAMPLE`` bytes (two ranged reads; the whole of a small file)."""
    h = hashlib.blake2b(digest_size=16)
    try:
        h.update(fs.cat_file(path, start=0, end=min(size, FINGERPRINT_SAMPLE)))
        if size > FINGERPRINT_SAMPLE:
            h.update(fs.cat_file(path, start=max(FINGERPRINT_SAMPLE, size - FINGERPRINT_SAMPLE), end=size))
    except (OSError, ValueError) as e:  # unreadable: the reader will say so; the fingerprint just notes it
        h.update(f"unreadable:{type(e).__name__}".encode())
    return h.digest()


def fingerprint_shards(shards: list[Shard], storage_options: dict[str, Any] | None = None) -> list[Shard]:
    """``shards`` with their ``fingerprint`` taken now (stat calls and ranged reads in parallel threads)."""
    if not shards:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(shards))) as pool:
        fps = list(pool.map(lambda s: shard_fingerprint(s, storage_options), shards))
    return [dataclasses.replace(s, fingerprint=fp) for s, fp in zip(shards, fps, strict=True)]


# --------------------------------------------------------------------------------------------------------------
# reading


@dataclass
class ReadBatch:
    """Valid rows of one record batch plus the rejects met while reading it.

    ``table`` has the id column (string, derived where absent), the text column (string) and every other
    input column; ``rows`` are the 0-based record indices of its rows in the shard.
    """

    table: pa.Table
    rows: np.ndarray
    rejects: list[dict[str, Any]] = field(default_factory=list)


def reject(
    shard: Shard,
    reason: str,
    detail: str = "",
    *,
    line: int | None = None,
    row: int | None = None,
    n_rows: int = 1,
    id: str | None = None,
    raw: bytes | str | None = None,
) -> dict[str, Any]:
    """One reject record (a row of ``REJECT_SCHEMA``)."""
    raw_bytes = None
    if isinstance(raw, bytes):
        raw_bytes = len(raw)
        raw = raw[: MAX_RAW_CHARS * 4].decode("utf-8", errors="backslashreplace")
    elif isinstance(raw, str):
        raw_bytes = len(raw.encode("utf-8", errors="surrogatepass"))
    if raw is not None and len(raw) > MAX_RAW_CHARS:
        raw = raw[:MAX_RAW_CHARS]
    return {
        "file": shard.url,
        "line": line,
        "row": row,
        "n_rows": n_rows,
        "reason": reason,
        "detail": detail,
        "id": id,
        "raw": raw,
        "raw_bytes": raw_bytes,
    }


def check_text(value: Any, max_chars: int) -> tuple[str, str] | None:
    """``None`` if ``value`` is a usable document text, else ``(reason, detail)``."""
    if value is None:
        return "null_text", "text is null"
    if not isinstance(value, str):
        return "non_string_text", f"text is a {type(value).__name__}, not a string"
    if not value.strip():
        return "empty_text", "text is empty or whitespace only"
    if len(value) > max_chars:
        return "text_too_long", f"{len(value)} characters > io.max_chars={max_chars}"
    return None


def derived_id(shard: Shard, row: int) -> str:
    """The id given to a row that has none: stable across runs, unique across shards."""
    return f"{shard.stem}:{row}"


#: the float magnitude where orjson's integer overflow begins (it reads larger integers as floats)
_BIG_FLOAT = float(2**63)


def _loads(body: bytes) -> Any:
    """One JSON value. orjson reads an integer beyond 64 bits as a float (so a large integer id would silently
    become a float); a top-level float of that magnitude sends the line to the standard library, which keeps the
    integer exact. Rare lines pay the slow path; every other line is parsed once by orjson."""
    obj = orjson.loads(body)
    if isinstance(obj, dict) and any(isinstance(v, float) and abs(v) >= _BIG_FLOAT for v in obj.values()):
        return json.loads(body)
    return obj


class ShardReader:
    """Reads one shard in validated record batches.

    Args:
        shard: the shard.
        io: the ``io`` config section (fields, batch size, limits, storage options).
    """

    def __init__(self, shard: Shard, io: IOSection):
        self.shard = shard
        self.io = io

    def __iter__(self) -> Iterator[ReadBatch]:
        if self.shard.format == "parquet":
            yield from self._read_parquet()
        else:
            yield from self._read_jsonl()
        self._check_unchanged()

    def _check_unchanged(self) -> None:
        """Raise if the shard carries a fingerprint and the file no longer has it (it grew or was replaced while
        it was being read: what was read may mix old and new rows)."""
        shard = self.shard
        if shard.fingerprint and shard_fingerprint(shard, self.io.storage_options) != shard.fingerprint:
            raise ShardError(
                shard.url, "the file changed while this run was reading it; rerun to process its current content"
            )

    # -- JSONL -------------------------------------------------------------------------------------------------

    def _open_jsonl(self) -> pyio.BufferedIOBase:
        """A binary, line-readable stream of the decompressed shard."""
        raw = fsspec.open(self.shard.url, mode="rb", **self.io.storage_options).open()
        if self.shard.compression == "gzip":
            return gzip.GzipFile(fileobj=raw, mode="rb")
        if self.shard.compression == "zstd":
            return pyio.BufferedReader(_ZstdFrames(raw), buffer_size=1 << 20)
        return raw

    def _iter_lines(self) -> Iterator[tuple[int, bytes | None, Exception | None]]:
        """(line number, raw line, error): a read error ends the stream with ``(n, None, exc)``."""
        line_no = 0
        try:
            f = self._open_jsonl()
        except Exception as e:  # noqa: BLE001 - any failure to open is reported as a reject
            yield 0, None, e
            return
        with f:
            limit, records = self.io.limit, 0
            while True:
                try:
                    raw = f.readline()
                except Exception as e:  # noqa: BLE001 - truncated gzip/zstd, I/O errors
                    yield line_no + 1, None, e
                    return
                if not raw:
                    return
                line_no += 1
                yield line_no, raw, None
                if raw.strip():
                    records += 1
                    if limit is not None and records >= limit:
                        return

    def _parse_line(self, line_no: int, raw: bytes) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(record, None) for a valid line, (None, reject) for a bad one, (None, None) for a blank line."""
        shard, row = self.shard, line_no - 1
        body = raw.rstrip(b"\r\n")
        if not body.strip():
            return None, None
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, reject(shard, "invalid_utf8", f"byte {e.start}: {e.reason}", line=line_no, row=row, raw=raw)
        try:
            obj = _loads(body)
        except ValueError as e:  # orjson.JSONDecodeError and json.JSONDecodeError are ValueErrors
            return None, reject(shard, "malformed_json", str(e), line=line_no, row=row, raw=raw)
        if not isinstance(obj, dict):
            return None, reject(
                shard, "not_an_object", f"line is a JSON {type(obj).__name__}", line=line_no, row=row, raw=raw
            )
        text_field, id_field = self.io.text_field, self.io.id_field
        id_value = obj.get(id_field)
        if id_value is None:
            obj[id_field] = derived_id(shard, row)
        elif isinstance(id_value, (str, int)) and not isinstance(id_value, bool):
            obj[id_field] = str(id_value)
        else:
            return None, reject(
                shard, "invalid_id", f"{id_field!r} is a {type(id_value).__name__}", line=line_no, row=row, raw=raw
            )
        if text_field not in obj:
            keys = ", ".join(sorted(obj)[:20])
            return None, reject(
                shard, "missing_text", f"no key {text_field!r}; keys: {keys}", line=line_no, row=row,
                id=obj[id_field], raw=raw,
            )  # fmt: skip
        problem = check_text(obj[text_field], self.io.max_chars)
        if problem:
            return None, reject(shard, problem[0], problem[1], line=line_no, row=row, id=obj[id_field], raw=raw)
        return obj, None

    def jsonl_schema(self) -> tuple[pa.Schema, set[str]]:
        """First pass over a JSONL shard: the union of keys of its valid records and a type for each.

        A key whose values are all strings / integers / numbers / booleans gets that Arrow type; a key with
        nested or mixed values is kept as JSON text (the set returned names those keys). Key order is the
        order of first appearance, with the id and text fields first.
        """
        kinds: dict[str, set[str]] = {}
        for line_no, raw, err in self._iter_lines():
            if err is not None or raw is None:
                break
            obj, _ = self._parse_line(line_no, raw)
            if obj is None:
                continue
            for k, v in obj.items():
                kinds.setdefault(k, set()).add(_json_kind(v))
        id_f, text_f = self.io.id_field, self.io.text_field
        names = [id_f, text_f] + [k for k in kinds if k not in (id_f, text_f)]
        fields, as_json = [], set()
        for name in names:
            seen = kinds.get(name, {"str"}) - {"null"}
            if name in (id_f, text_f):
                typ = pa.string()
            elif not seen or seen == {"str"}:
                typ = pa.string()
            elif seen == {"int"}:
                typ = pa.int64()
            elif seen <= {"int", "float"}:
                typ = pa.float64()
            elif seen == {"bool"}:
                typ = pa.bool_()
            else:
                typ = pa.string()
                as_json.add(name)
            fields.append(pa.field(name, typ))
        return pa.schema(fields), as_json

    def _read_jsonl(self) -> Iterator[ReadBatch]:
        schema, as_json = self.jsonl_schema()
        batch_size = self.io.read_batch_size
        records: list[dict[str, Any]] = []
        rows: list[int] = []
        rejects: list[dict[str, Any]] = []

        def flush() -> ReadBatch:
            for rec in records:
                for name in as_json:
                    if rec.get(name) is not None:
                        rec[name] = orjson.dumps(rec[name]).decode()
            table = pa.Table.from_pylist(records, schema=schema)
            out = ReadBatch(table, np.asarray(rows, dtype=np.int64), list(rejects))
            records.clear(), rows.clear(), rejects.clear()
            return out

        for line_no, raw, err in self._iter_lines():
            if err is not None:
                reason = "unreadable_shard" if line_no == 0 else "read_error"
                detail = f"{type(err).__name__}: {err}"
                if line_no:
                    detail = f"reading stopped at line {line_no}: {detail}"
                rejects.append(
                    reject(self.shard, reason, detail, line=line_no or None, row=None if not line_no else line_no - 1)
                )
                break
            obj, rej = self._parse_line(line_no, raw)  # type: ignore[arg-type]
            if rej is not None:
                rejects.append(rej)
            elif obj is not None:
                records.append(obj)
                rows.append(line_no - 1)
            if len(records) + len(rejects) >= batch_size:
                yield flush()
        if records or rejects:
            yield flush()

    # -- parquet -----------------------------------------------------------------------------------------------

    def _read_parquet(self) -> Iterator[ReadBatch]:
        shard, io = self.shard, self.io
        try:
            f = fsspec.open(shard.url, mode="rb", **io.storage_options).open()
            pf = pq.ParquetFile(f)
            if pf.metadata.num_rows < 0:
                raise ValueError(f"corrupt footer: it gives the file {pf.metadata.num_rows} rows")
        except Exception as e:  # noqa: BLE001
            yield ReadBatch(_empty_table(io), np.zeros(0, np.int64), [
                reject(shard, "unreadable_shard", f"{type(e).__name__}: {e}")
            ])  # fmt: skip
            return
        with f:
            total = pf.metadata.num_rows
            if io.limit is not None:
                total = min(total, io.limit)
            names = pf.schema_arrow.names
            if io.text_field not in names:
                detail = f"column {io.text_field!r} not in shard; columns: {', '.join(names[:30])}"
                for start in range(0, total, io.read_batch_size):
                    stop = min(total, start + io.read_batch_size)
                    rejs = [reject(shard, "missing_text", detail, row=r) for r in range(start, stop)]
                    yield ReadBatch(_empty_table(io), np.zeros(0, np.int64), rejs)
                return
            start = 0
            try:
                for rb in pf.iter_batches(batch_size=io.read_batch_size):
                    if start >= total:
                        break
                    if start + rb.num_rows > total:
                        rb = rb.slice(0, total - start)
                    yield self._validate_parquet_batch(pa.Table.from_batches([rb]), start)
                    start += rb.num_rows
            except Exception as e:  # noqa: BLE001 - a corrupt row group: the rest of the shard is one reject
                error = f"unreadable: {type(e).__name__}: {e}"
            else:
                # a corrupt page can also end the stream early without an error (a column chunk that decodes to
                # no values): the rows the footer promises but the reader never gave are lost, not absent
                error = f"missing: the parquet reader stopped after {start} of {total} rows without an error"
            if start < total:
                yield ReadBatch(_empty_table(io), np.zeros(0, np.int64), [
                    reject(shard, "read_error", f"rows {start}..{total - 1} {error}", row=start, n_rows=total - start)
                ])  # fmt: skip

    def _validate_parquet_batch(self, table: pa.Table, start: int) -> ReadBatch:
        shard, io = self.shard, self.io
        n = table.num_rows
        rows = np.arange(start, start + n, dtype=np.int64)
        reasons = np.full(n, None, dtype=object)
        details = np.full(n, None, dtype=object)
        # text and ids as plain strings (dictionaries, as pandas/polars write Categoricals, are decoded), and no
        # view columns anywhere (pyarrow has no filter kernel for them)
        for i, fld in enumerate(table.schema):
            if fld.name in (io.text_field, io.id_field) and _is_text_type(fld.type):
                table = table.set_column(i, fld.name, _to_string(table.column(i)))
            elif _is_string_view(fld.type) or _is_binary_view(fld.type):
                typ = pa.string() if _is_string_view(fld.type) else pa.binary()
                table = table.set_column(i, fld.name, table.column(i).cast(typ))
        # parquet readers do not check UTF-8: a row with an invalid string anywhere is rejected, as in JSONL
        bad_utf8 = _invalid_utf8_rows(table)
        for found in bad_utf8.values():
            for i, detail in found.items():
                if reasons[i] is None:
                    reasons[i], details[i] = "invalid_utf8", detail
        for name in (io.text_field, io.id_field):  # null the bad values, so that the checks below can read them
            if name in bad_utf8 and table.schema.field(name).type == pa.string():
                table = table.set_column(
                    table.column_names.index(name), name, _blank(table.column(name), bad_utf8[name])
                )
        # ids: cast to string, derive the missing ones
        if io.id_field in table.column_names:
            id_type = table.schema.field(io.id_field).type
            if id_type == pa.string() or pa.types.is_integer(id_type):
                ids = pc.cast(table.column(io.id_field), pa.string()).to_pylist()
            elif pa.types.is_null(id_type):  # an all-missing id column: every row gets a derived id
                ids = [None] * n
            else:
                ids = [None] * n
                sel = reasons == None  # noqa: E711 - elementwise on an object array
                reasons[sel] = "invalid_id"
                details[sel] = f"{io.id_field!r} column is of type {id_type}, not string or integer"
            ids = [v if v is not None else derived_id(shard, int(r)) for v, r in zip(ids, rows, strict=True)]
            table = table.drop_columns([io.id_field])
        else:
            ids = [derived_id(shard, int(r)) for r in rows]
        text = table.column(io.text_field)
        if text.type == pa.string():
            is_null = text.is_null().to_numpy(zero_copy_only=False)
            filled = pc.fill_null(text, "")
            empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(filled)), 0).to_numpy(zero_copy_only=False)
            lengths = pc.utf8_length(filled).to_numpy(zero_copy_only=False)
            too_long = lengths > io.max_chars
            for mask, reason, detail in (
                (too_long, "text_too_long", "characters > io.max_chars=" + str(io.max_chars)),
                (empty & ~is_null, "empty_text", "text is empty or whitespace only"),
                (is_null, "null_text", "text is null"),
            ):
                sel = mask & (reasons == None)  # noqa: E711 - elementwise on an object array
                reasons[sel], details[sel] = reason, detail
        else:
            sel = reasons == None  # noqa: E711
            reasons[sel] = "non_string_text"
            details[sel] = f"text column is of type {text.type}"
        bad = reasons != None  # noqa: E711
        rejects = [reject(shard, reasons[i], details[i], row=int(rows[i]), id=ids[i]) for i in np.flatnonzero(bad)]
        good = ~bad
        table = table.filter(pa.array(good)) if bad.any() else table
        id_col = pa.array([ids[i] for i in np.flatnonzero(good)], type=pa.string())
        # id first, then text, then the other columns in input order
        others = [c for c in table.column_names if c != io.text_field]
        table = pa.table(
            [id_col, table.column(io.text_field), *[table.column(c) for c in others]],
            names=[io.id_field, io.text_field, *others],
        )
        return ReadBatch(table, rows[good], rejects)


# (pyarrow < 16 has no view types)
_is_string_view = getattr(pa.types, "is_string_view", lambda t: False)
_is_binary_view = getattr(pa.types, "is_binary_view", lambda t: False)


def _is_text_type(typ: pa.DataType) -> bool:
    """A string column in any Arrow layout: string, large_string, string_view, or a dictionary of one."""
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    return pa.types.is_string(typ) or pa.types.is_large_string(typ) or _is_string_view(typ)


def _to_string(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """``col`` (of a ``_is_text_type`` type) as plain ``string``; dictionaries are decoded chunk by chunk."""
    if pa.types.is_dictionary(col.type):
        chunks = [pc.take(c.dictionary.cast(pa.string()), c.indices) for c in col.chunks]
        return pa.chunked_array(chunks, pa.string())
    return col if col.type == pa.string() else pc.cast(col, pa.string())


def _blank(col: pa.ChunkedArray, rows: Iterable[int]) -> pa.ChunkedArray:
    """``col`` with the values at ``rows`` set to null."""
    keep = np.ones(len(col), dtype=bool)
    keep[list(rows)] = False
    return pc.if_else(pa.array(keep), col, pa.scalar(None, col.type))


def _invalid_utf8_rows(table: pa.Table) -> dict[str, dict[int, str]]:
    """``{column: {row: detail}}`` for the values of ``table`` that are not valid UTF-8 (``{}`` for a clean batch).

    One full validation of the batch (vectorised) on the common path; only a batch that fails it is searched
    row by row, and only in the columns that fail.
    """
    try:
        table.validate(full=True)
        return {}
    except pa.ArrowInvalid:
        pass
    bad: dict[str, dict[int, str]] = {}
    for name in table.column_names:
        col = table.column(name)
        try:
            col.validate(full=True)
            continue
        except pa.ArrowInvalid as e:
            error = f"column {name!r}: {e}"
        # (a column invalid as a whole rather than in some rows cannot be kept at all)
        bad[name] = _invalid_rows(col.combine_chunks(), name) or dict.fromkeys(range(len(col)), error)
    return bad


def _invalid_rows(arr: pa.Array, name: str) -> dict[int, str]:
    """``{row: detail}`` for the values of ``arr`` that fail validation, found one by one (slow path)."""
    typ = arr.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):  # (view columns are cast to string by now)
        binary = pa.large_binary() if pa.types.is_large_string(typ) else pa.binary()
        bad = {}
        for i, value in enumerate(arr.view(binary).to_pylist()):
            if value is None:
                continue
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as e:
                bad[i] = f"column {name!r}, byte {e.start}: {e.reason}"
        return bad
    bad = {}
    for i in range(len(arr)):
        try:
            arr.take(pa.array([i])).validate(full=True)  # (a slice would validate every child value)
        except pa.ArrowInvalid as e:
            bad[i] = f"column {name!r}: {e}"
        except pa.ArrowNotImplementedError:
            return {}
    return bad


class _ZstdFrames(pyio.RawIOBase):
    """A raw stream over concatenated zstd frames that raises ``EOFError`` when the last frame is cut short.

    (zstandard's ``stream_reader`` ends quietly at a truncated frame, which would lose rows without a trace.)
    """

    def __init__(self, raw: Any):
        import zstandard

        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._in_frame = False
        self._pending = b""
        self._buf = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf and not self._eof:
            chunk, self._pending = (self._pending or self._raw.read(1 << 20)), b""
            if not chunk:
                if self._in_frame:
                    raise EOFError("zstd stream is truncated: the last frame does not end")
                self._eof = True
                break
            self._in_frame = True
            self._buf = self._obj.decompress(chunk)
            if self._obj.eof:  # frame finished: the rest (if any) starts a new frame
                self._pending = self._obj.unused_data
                self._obj = self._dctx.decompressobj()
                self._in_frame = False
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int" if _INT64_MIN <= v <= _INT64_MAX else "bigint"  # beyond int64: kept as JSON text
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    return "nested"


def _empty_table(io: IOSection) -> pa.Table:
    return pa.table({io.id_field: pa.array([], pa.string()), io.text_field: pa.array([], pa.string())})


# --------------------------------------------------------------------------------------------------------------
# writing


def join_path(base: str, *parts: str) -> str:
    """Join a local path or URL with ``/``."""
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


class AtomicParquetWriter:
    """Writes one parquet file under a temporary name and renames it into place on ``close()``.

    A crash leaves only a ``.tmp-*`` file, never a partial file under the final name. The schema is fixed by
    the first table written unless given; provenance goes into the schema metadata.

    Args:
        url: the final path or URL.
        schema: the schema, or ``None`` to take the first table's.
        metadata: key/value pairs stored in the parquet schema metadata.
        compression: parquet codec (``zstd`` by default).
        row_group_size: rows per row group.
        storage_options: fsspec options.
    """

    def __init__(
        self,
        url: str,
        schema: pa.Schema | None = None,
        metadata: dict[str, str] | None = None,
        compression: str = "zstd",
        row_group_size: int = 16_384,
        storage_options: dict[str, Any] | None = None,
    ):
        self.url = url
        self.fs, self.path = url_to_fs(url, **(storage_options or {}))
        parent = self.path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        self.tmp_path = f"{self.path}.tmp-{uuid.uuid4().hex[:8]}"
        self.metadata_str = dict(metadata or {})
        self.metadata = {k.encode(): v.encode() for k, v in self.metadata_str.items()}
        self.compression = None if compression == "none" else compression
        self.row_group_size = row_group_size
        self.schema = schema.with_metadata(self.metadata) if schema is not None else None
        self._file = None
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def _open(self, schema: pa.Schema) -> None:
        self.schema = schema.with_metadata(self.metadata)
        self._file = self.fs.open(self.tmp_path, "wb")
        self._writer = pq.ParquetWriter(self._file, self.schema, compression=self.compression)

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._open(self.schema or table.schema)
        if table.num_rows:
            table = table.select(self.schema.names).cast(self.schema)
            self._writer.write_table(table, row_group_size=self.row_group_size)  # type: ignore[union-attr]
            self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is None:
            if self.schema is None:
                raise ValueError(f"{self.url}: nothing written and no schema given")
            self._open(self.schema)
        self._writer.close()  # type: ignore[union-attr]
        self._file.close()  # type: ignore[union-attr]
        self.fs.mv(self.tmp_path, self.path)
        self._writer = None

    def abort(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
                self._file.close()  # type: ignore[union-attr]
        finally:
            if self.fs.exists(self.tmp_path):
                self.fs.rm(self.tmp_path)

    def __enter__(self) -> AtomicParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_rejects(url: str, rejects: list[dict[str, Any]], metadata: dict[str, str], storage_options=None) -> None:
    """Write ``rejects/<stem>.parquet`` (or remove a stale one when there are none)."""
    fs, path = url_to_fs(url, **(storage_options or {}))
    if not rejects:
        if fs.exists(path):
            fs.rm(path)
        return
    with AtomicParquetWriter(url, REJECT_SCHEMA, metadata, storage_options=storage_options) as w:
        w.write(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA))


def is_bert_whitespace(ch: str) -> bool:
    """Whitespace as the BERT basic tokenizer splits on it (space, tab, newline, CR, Unicode Zs)."""
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


class VectorWriter(AtomicParquetWriter):
    """An ``AtomicParquetWriter`` for a file with an ``embedding`` column: its values are written without a
    dictionary, and float32 ones in ``BYTE_STREAM_SPLIT`` encoding. Vectors hardly repeat a value, so a dictionary
    only costs: in row groups of a few hundred rows every value fits in the dictionary page, and a bucket file was
    1.6x the size of plain values; split bytes let zstd compress the exponents (bench/RESULTS.md, issue 15).
    Used for ``embeddings/`` and ``buckets/``."""

    def _open(self, schema: pa.Schema) -> None:
        self.schema = schema.with_metadata(self.metadata)
        self._file = self.fs.open(self.tmp_path, "wb")
        vector = schema.field("embedding").type
        split = {"embedding.list.element": "BYTE_STREAM_SPLIT"} if vector.value_type == pa.float32() else None
        others = [f.name for f in schema if f.name != "embedding"]
        self._writer = pq.ParquetWriter(
            self._file, self.schema, compression=self.compression, use_dictionary=others, column_encoding=split
        )
