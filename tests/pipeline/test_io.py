"""Tests of pipeline/io.py (shard listing, validated reading with rejects, atomic parquet writing) and of the
reject arithmetic of pipeline/stats.py.

Every test builds its own data under ``tmp_path`` (or a private ``memory://`` folder); nothing here needs the
network or an embedding model.
"""

from __future__ import annotations

import gzip
import random
import string
import tempfile
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from winnow.core.errors import ConfigError
from winnow.core.io import (
    MAX_RAW_CHARS,
    REJECT_SCHEMA,
    AtomicParquetWriter,
    ReadBatch,
    Shard,
    ShardReader,
    list_shards,
    split_suffix,
    write_rejects,
)
from winnow.core.stats import ShardStats
from winnow.pipeline.config import IOSection

# --------------------------------------------------------------------------------------------------------------
# helpers


def compress_for(name: str, data: bytes) -> bytes:
    """``data`` compressed as the file name's suffix says (``.gz``, ``.zst``/``.zstd``, else as is)."""
    if name.endswith(".gz"):
        return gzip.compress(data)
    if name.endswith((".zst", ".zstd")):
        return zstandard.ZstdCompressor().compress(data)
    return data


def line_bytes(item: dict | bytes | str) -> bytes:
    if isinstance(item, dict):
        return orjson.dumps(item)
    if isinstance(item, str):
        return item.encode("utf-8")
    return item


def write_jsonl(path: Path, items: list[dict | bytes | str], newline_at_end: bool = True) -> Path:
    """Write one line per item (dicts as JSON, bytes as they are), compressed according to the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"\n".join(line_bytes(i) for i in items) + (b"\n" if newline_at_end and items else b"")
    path.write_bytes(compress_for(path.name, data))
    return path


def shard_of(path: Path | str, storage_options: dict | None = None) -> Shard:
    shards = list_shards([str(path)], storage_options)
    assert len(shards) == 1
    return shards[0]


@dataclass
class Read:
    rows: list[dict[str, Any]]  # valid rows, in order, over all batches
    row_idx: list[int]  # ReadBatch.rows concatenated
    rejects: list[dict[str, Any]]
    batches: list[ReadBatch]
    shard: Shard

    @property
    def texts(self) -> list[str]:
        return [r["text"] for r in self.rows]

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.rows]

    @property
    def reasons(self) -> list[str]:
        return [r["reason"] for r in self.rejects]

    def accounted(self) -> int:
        """Records the read stands for: valid rows plus what every reject stands for."""
        return len(self.rows) + sum(r["n_rows"] for r in self.rejects)


def read(path_or_shard: Path | str | Shard, **io_kw: Any) -> Read:
    shard = path_or_shard if isinstance(path_or_shard, Shard) else shard_of(path_or_shard)
    io = IOSection(**io_kw)
    rows, idx, rejects, batches = [], [], [], []
    for batch in ShardReader(shard, io):
        assert isinstance(batch, ReadBatch)
        assert batch.table.num_rows == len(batch.rows)
        assert batch.table.column_names[:2] == [io.id_field, io.text_field]
        assert batch.table.schema.field(io.id_field).type == pa.string()
        if batch.table.num_rows:  # (an all-rejected parquet batch keeps the input's text type)
            assert batch.table.schema.field(io.text_field).type == pa.string()
        rows += batch.table.to_pylist()
        idx += [int(r) for r in batch.rows]
        rejects += batch.rejects
        batches.append(batch)
    for r in rejects:
        assert set(r) == set(REJECT_SCHEMA.names)
        assert r["file"] == shard.url
        assert r["n_rows"] >= 1
    # every reject table must be writable with the reject schema
    pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)
    return Read(rows, idx, rejects, batches, shard)


# --------------------------------------------------------------------------------------------------------------
# 1. round trips


# Passthrough columns of every kind. "meta" and "mixed" hold nested or mixed-type values (kept as JSON text),
# "late" appears only from row 4 on, ids are strings, ints, absent and null.
RECORDS: list[dict[str, Any]] = [
    {"id": "doc-0", "text": "The first document.", "source": "web", "n": 1, "score": 0.5, "flag": True,
     "meta": {"lang": "en", "tags": ["a", "b"]}, "mixed": 1},
    {"id": 17, "text": "Ünïcödé ✓ 中文 🙂", "source": "books", "n": 2, "score": 2, "flag": False, "meta": None,
     "mixed": "one"},
    {"text": "line one\nline two\ttabbed", "source": None, "n": None, "score": -1.25, "flag": None,
     "meta": [1, {"x": None}], "mixed": None},
    {"id": "doc-3", "text": "  padded text  ", "source": "web", "n": -7, "score": None, "flag": True, "meta": {},
     "mixed": [1]},
    {"id": None, "text": 'quote " and backslash \\', "source": "code", "n": 3, "score": 0.001, "flag": False,
     "meta": "plain string", "mixed": True, "late": "first seen here"},
    {"id": "doc-5", "text": "last", "late": "again", "n": 9007199254740993},
]  # fmt: skip


def expected_rows(stem: str) -> list[dict[str, Any]]:
    """RECORDS as the reader must return them (worked out by hand)."""
    cols = ["id", "text", "source", "n", "score", "flag", "meta", "mixed", "late"]
    values = [
        ["doc-0", "The first document.", "web", 1, 0.5, True, '{"lang":"en","tags":["a","b"]}', "1", None],
        ["17", "Ünïcödé ✓ 中文 🙂", "books", 2, 2.0, False, None, '"one"', None],
        [f"{stem}:2", "line one\nline two\ttabbed", None, None, -1.25, None, '[1,{"x":null}]', None, None],
        ["doc-3", "  padded text  ", "web", -7, None, True, "{}", "[1]", None],
        [f"{stem}:4", 'quote " and backslash \\', "code", 3, 0.001, False, '"plain string"', "true",
         "first seen here"],
        ["doc-5", "last", None, 9007199254740993, None, None, None, None, "again"],
    ]  # fmt: skip
    return [dict(zip(cols, v, strict=True)) for v in values]


EXPECTED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("n", pa.int64()),
        ("score", pa.float64()),
        ("flag", pa.bool_()),
        ("meta", pa.string()),
        ("mixed", pa.string()),
        ("late", pa.string()),
    ]
)

JSONL_SUFFIXES = [".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd", ".ndjson", ".ndjson.gz", ".ndjson.zst"]


@pytest.mark.parametrize("suffix", JSONL_SUFFIXES)
@pytest.mark.parametrize("batch_size", [1, 3, 4, 1024])
def test_jsonl_round_trip(tmp_path: Path, suffix: str, batch_size: int) -> None:
    path = write_jsonl(tmp_path / f"corpus{suffix}", RECORDS)
    result = read(path, read_batch_size=batch_size)
    assert result.shard.stem == "corpus"
    assert result.rejects == []
    assert result.rows == expected_rows("corpus")
    assert result.row_idx == [0, 1, 2, 3, 4, 5]
    # every batch has the same schema (keys seen only later are null columns earlier), bounded size
    for batch in result.batches:
        assert batch.table.schema == EXPECTED_SCHEMA
        assert batch.table.num_rows <= batch_size
    assert [b.table.num_rows for b in result.batches] == [min(batch_size, 6 - s) for s in range(0, 6, batch_size)]


def test_jsonl_mixed_types_across_batches_become_json_text_in_every_batch(tmp_path: Path) -> None:
    # "v" is an int in the first batch and a string in the last: the whole column is JSON text everywhere
    items = [{"text": "a", "v": 1}, {"text": "b", "v": 2}, {"text": "c"}, {"text": "d", "v": "x"}]
    result = read(write_jsonl(tmp_path / "m.jsonl", items), read_batch_size=2)
    assert [r["v"] for r in result.rows] == ["1", "2", None, '"x"']
    assert {b.table.schema.field("v").type for b in result.batches} == {pa.string()}
    # int and float mix -> float64; all-null key -> string
    items = [{"text": "a", "x": 1, "z": None}, {"text": "b", "x": 2.5, "z": None}]
    result = read(write_jsonl(tmp_path / "f.jsonl", items))
    assert result.batches[0].table.schema.field("x").type == pa.float64()
    assert result.batches[0].table.schema.field("z").type == pa.string()
    assert [r["x"] for r in result.rows] == [1.0, 2.5]
    assert [r["z"] for r in result.rows] == [None, None]


def test_jsonl_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"text": "a"}\r\n{"text": "b\\r\\n"}\r\n{"text": "c"}')
    result = read(path)
    assert result.texts == ["a", "b\r\n", "c"]
    assert result.ids == ["crlf:0", "crlf:1", "crlf:2"]
    assert result.rejects == []


def test_jsonl_custom_text_and_id_fields(tmp_path: Path) -> None:
    items = [
        {"doc_id": 5, "content": "first", "text": "not the text"},
        {"content": "second", "id": "ignored"},
    ]
    result = read(write_jsonl(tmp_path / "c.jsonl", items), text_field="content", id_field="doc_id")
    assert result.batches[0].table.column_names == ["doc_id", "content", "text", "id"]
    assert result.rows == [
        {"doc_id": "5", "content": "first", "text": "not the text", "id": None},
        {"doc_id": "c:1", "content": "second", "text": None, "id": "ignored"},
    ]
    # a record with only the default text key is missing the configured one
    result = read(write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}]), text_field="content")
    assert result.reasons == ["missing_text"]


def test_zstd_multiple_frames_are_all_read(tmp_path: Path) -> None:
    lines = [orjson.dumps({"text": f"doc {i}"}) + b"\n" for i in range(6)]
    c = zstandard.ZstdCompressor()
    path = tmp_path / "frames.jsonl.zst"
    path.write_bytes(c.compress(b"".join(lines[:2])) + c.compress(b"".join(lines[2:5])) + c.compress(lines[5]))
    result = read(path, read_batch_size=4)
    assert result.texts == [f"doc {i}" for i in range(6)]
    assert result.rejects == []


def test_gzip_multiple_members_are_all_read(tmp_path: Path) -> None:
    path = tmp_path / "members.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "a"}\n') + gzip.compress(b'{"text": "b"}\n{"text": "c"}\n'))
    assert read(path).texts == ["a", "b", "c"]


PARQUET_INPUT = pa.table(
    {
        "text": pa.array(["alpha", "béta ✓", "gamma\nline", "delta", "eps"], pa.string()),
        "n": pa.array([1, None, 3, 4, 5], pa.int32()),
        "score": pa.array([0.5, 1.5, None, -2.0, 0.0], pa.float64()),
        "flag": pa.array([True, False, None, True, False], pa.bool_()),
        "tags": pa.array([["a"], [], None, ["b", "c"], ["d"]], pa.list_(pa.string())),
        "meta": pa.array([{"k": 1}, {"k": None}, None, {"k": 4}, {"k": 5}], pa.struct([("k", pa.int64())])),
        "id": pa.array([10, None, 30, -40, 50], pa.int64()),
    }
)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 1024])
def test_parquet_round_trip_keeps_types_and_reorders_id_text_first(tmp_path: Path, batch_size: int) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(PARQUET_INPUT, path, row_group_size=2)
    result = read(path, read_batch_size=batch_size)
    assert result.rejects == []
    assert result.row_idx == [0, 1, 2, 3, 4]
    assert result.rows == [
        {"id": "10", "text": "alpha", "n": 1, "score": 0.5, "flag": True, "tags": ["a"], "meta": {"k": 1}},
        {"id": "p:1", "text": "béta ✓", "n": None, "score": 1.5, "flag": False, "tags": [], "meta": {"k": None}},
        {"id": "30", "text": "gamma\nline", "n": 3, "score": None, "flag": None, "tags": None, "meta": None},
        {"id": "-40", "text": "delta", "n": 4, "score": -2.0, "flag": True, "tags": ["b", "c"], "meta": {"k": 4}},
        {"id": "50", "text": "eps", "n": 5, "score": 0.0, "flag": False, "tags": ["d"], "meta": {"k": 5}},
    ]
    expected_schema = pa.schema(
        [("id", pa.string()), ("text", pa.string())]
        + [PARQUET_INPUT.schema.field(c) for c in ["n", "score", "flag", "tags", "meta"]]
    )
    for batch in result.batches:
        assert batch.table.schema.remove_metadata() == expected_schema
        assert batch.table.num_rows <= batch_size


def test_parquet_large_string_text_is_read_as_string(tmp_path: Path) -> None:
    path = tmp_path / "large.parquet"
    pq.write_table(pa.table({"text": pa.array(["x", "", "y"], pa.large_string())}), path)
    result = read(path)
    assert result.texts == ["x", "y"]
    assert result.row_idx == [0, 2]
    assert [(r["reason"], r["row"]) for r in result.rejects] == [("empty_text", 1)]


TEXT_LAYOUTS = {
    "string": lambda a: a,
    "large_string": lambda a: a.cast(pa.large_string()),
    "string_view": lambda a: a.cast(pa.string_view()),
    "dictionary": lambda a: a.dictionary_encode(),  # (parquet files keep only dictionaries of string)
}


@pytest.mark.parametrize("layout", sorted(TEXT_LAYOUTS))
def test_parquet_text_in_any_string_layout_is_read_as_string(tmp_path: Path, layout: str) -> None:
    """large_string, string_view and dictionary-encoded (pandas/polars Categorical) texts are decoded, not rejected."""
    path = tmp_path / "t.parquet"
    text = TEXT_LAYOUTS[layout](pa.array(["tw", None, "", "three", "tw"]))
    pq.write_table(pa.table({"id": pa.array(["a", "b", "c", "d", "e"]), "text": text}), path, row_group_size=3)
    assert pq.read_schema(path).field("text").type == text.type  # (the layout survives the file)
    result = read(path, read_batch_size=2)
    assert result.rows == [{"id": "a", "text": "tw"}, {"id": "d", "text": "three"}, {"id": "e", "text": "tw"}]
    assert result.row_idx == [0, 3, 4]
    assert [(r["reason"], r["row"], r["id"]) for r in result.rejects] == [
        ("null_text", 1, "b"), ("empty_text", 2, "c"),
    ]  # fmt: skip


def test_parquet_categorical_columns_from_polars_and_pandas(tmp_path: Path) -> None:
    import polars as pl

    frame = pl.DataFrame({"id": ["a", None, "a"], "text": ["one", "two", "one"], "src": ["x", "y", "x"]})
    frame = frame.with_columns(pl.col("id", "text").cast(pl.Categorical))
    frame.write_parquet(tmp_path / "pl.parquet")
    result = read(tmp_path / "pl.parquet")
    assert result.rows == [
        {"id": "a", "text": "one", "src": "x"}, {"id": "pl:1", "text": "two", "src": "y"},
        {"id": "a", "text": "one", "src": "x"},
    ]  # fmt: skip
    pd = pytest.importorskip("pandas")
    # an all-None id column is written with Arrow type null
    pd.DataFrame({"id": [None] * 3, "text": pd.Categorical(["one", "two", "one"])}).to_parquet(tmp_path / "pd.parquet")
    assert pa.types.is_null(pq.read_schema(tmp_path / "pd.parquet").field("id").type)
    result = read(tmp_path / "pd.parquet", read_batch_size=2)
    assert result.ids == ["pd:0", "pd:1", "pd:2"] and result.texts == ["one", "two", "one"]
    assert result.rejects == []


def test_all_formats_give_the_same_rows(tmp_path: Path) -> None:
    items = [{"id": f"d{i}", "text": f"text number {i}", "k": i} for i in range(7)]
    results = [read(write_jsonl(tmp_path / f"s{suffix}", items), read_batch_size=3) for suffix in JSONL_SUFFIXES]
    pq.write_table(pa.Table.from_pylist(items), tmp_path / "s.parquet")
    results.append(read(tmp_path / "s.parquet", read_batch_size=3))
    for result in results:
        assert result.rows == [{"id": f"d{i}", "text": f"text number {i}", "k": i} for i in range(7)]
        assert result.row_idx == list(range(7))
        assert [b.table.num_rows for b in result.batches] == [3, 3, 1]


# --------------------------------------------------------------------------------------------------------------
# 2. list_shards


def touch_jsonl(path: Path) -> Path:
    return write_jsonl(path, [{"text": path.name}])


def test_split_suffix() -> None:
    assert split_suffix("x.jsonl") == ("x", "jsonl", None)
    assert split_suffix("x.jsonl.gz") == ("x", "jsonl", "gzip")
    assert split_suffix("a.b.jsonl.zst") == ("a.b", "jsonl", "zstd")
    assert split_suffix("x.jsonl.zstd") == ("x", "jsonl", "zstd")
    assert split_suffix("x.ndjson") == ("x", "jsonl", None)
    assert split_suffix("x.ndjson.gz") == ("x", "jsonl", "gzip")
    assert split_suffix("x.parquet") == ("x", "parquet", None)
    assert split_suffix("X.JSONL.GZ") == ("X", "jsonl", "gzip")
    for name in ["x.json", "x.gz", "x.csv", "x.parquet.gz", "x.txt", "jsonl", "x.jsonl.bz2"]:
        assert split_suffix(name) is None, name


def test_list_shards_glob_is_sorted_and_skips_unsupported(tmp_path: Path) -> None:
    for name in ["c.jsonl", "a.jsonl.gz", "b.parquet", "notes.txt", "d.json"]:
        touch_jsonl(tmp_path / name)
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "b.parquet")
    shards = list_shards([str(tmp_path / "*")])
    assert shards == [
        Shard(url=str(tmp_path / "a.jsonl.gz"), stem="a", format="jsonl", compression="gzip"),
        Shard(url=str(tmp_path / "b.parquet"), stem="b", format="parquet", compression=None),
        Shard(url=str(tmp_path / "c.jsonl"), stem="c", format="jsonl", compression=None),
    ]
    assert [s.stem for s in list_shards([str(tmp_path / "*.jsonl*")])] == ["a", "c"]


def test_list_shards_directory_is_recursive_with_relative_stems(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for rel in ["z.jsonl", "sub/y.jsonl.zst", "sub/deeper/x.ndjson", "sub/README.md", "a/w.jsonl.gz"]:
        touch_jsonl(root / rel)
    shards = list_shards([str(root)])
    assert [(s.url, s.stem, s.format, s.compression) for s in shards] == [
        (str(root / "a/w.jsonl.gz"), "a__w", "jsonl", "gzip"),
        (str(root / "sub/deeper/x.ndjson"), "sub__deeper__x", "jsonl", None),
        (str(root / "sub/y.jsonl.zst"), "sub__y", "jsonl", "zstd"),
        (str(root / "z.jsonl"), "z", "jsonl", None),
    ]
    # the same with a trailing slash and with a recursive glob
    assert list_shards([str(root) + "/"]) == shards
    assert list_shards([str(root / "**")]) == shards


def test_list_shards_explicit_files_sorted_deduplicated(tmp_path: Path) -> None:
    b, a = touch_jsonl(tmp_path / "b.jsonl"), touch_jsonl(tmp_path / "a.jsonl")
    shards = list_shards([str(b), str(a), str(b), str(tmp_path / "*.jsonl")])
    assert [(s.url, s.stem) for s in shards] == [(str(a), "a"), (str(b), "b")]
    # a single file's stem is its name without the suffix
    assert shard_of(tmp_path / "a.jsonl").stem == "a"


def test_list_shards_relative_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch_jsonl(tmp_path / "rel" / "r.jsonl")
    monkeypatch.chdir(tmp_path)
    shards = list_shards(["rel/r.jsonl"])
    assert [(s.url, s.stem) for s in shards] == [(str(tmp_path / "rel" / "r.jsonl"), "r")]
    assert read(shards[0]).texts == ["r.jsonl"]


def test_list_shards_same_name_in_two_folders_gets_folder_in_stem(tmp_path: Path) -> None:
    a = touch_jsonl(tmp_path / "root" / "a" / "x.jsonl")
    b = write_jsonl(tmp_path / "root" / "b" / "x.jsonl.gz", [{"text": "bx"}])
    shards = list_shards([str(b), str(a)])
    assert [(s.url, s.stem) for s in shards] == [(str(a), "a__x"), (str(b), "b__x")]
    assert read(shards[1]).ids == ["b__x:0"]


def test_list_shards_stem_collision_is_a_config_error(tmp_path: Path) -> None:
    touch_jsonl(tmp_path / "x.jsonl")
    write_jsonl(tmp_path / "x.jsonl.gz", [{"text": "y"}])
    with pytest.raises(ConfigError, match="both write outputs named 'x'"):
        list_shards([str(tmp_path)])


def test_list_shards_errors(tmp_path: Path) -> None:
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(ConfigError, match="unsupported file type") as e:
        list_shards([str(txt)])
    assert str(txt) in str(e.value)
    with pytest.raises(ConfigError, match="matches no shard"):
        list_shards([str(tmp_path / "*.jsonl")])
    with pytest.raises(ConfigError, match="matches no shard"):
        list_shards([str(tmp_path / "*.txt")])  # matches a file, but not a shard
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.csv").write_text("a,b")
    with pytest.raises(ConfigError, match="holds no shard"):
        list_shards([str(tmp_path / "empty")])
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(ConfigError, match="does not exist") as e:
        list_shards([str(missing)])
    assert str(missing) in str(e.value)
    with pytest.raises(ConfigError, match="no input"):
        list_shards([])
    # one bad pattern among good ones still fails
    touch_jsonl(tmp_path / "ok.jsonl")
    with pytest.raises(ConfigError, match="does not exist"):
        list_shards([str(tmp_path / "ok.jsonl"), str(missing)])


def test_list_shards_existing_file_with_glob_characters_in_name(tmp_path: Path) -> None:
    path = touch_jsonl(tmp_path / "part[1].jsonl")
    assert [s.url for s in list_shards([str(path)])] == [str(path)]


@pytest.fixture
def memfs():
    """A private folder in fsspec's process-wide memory filesystem, removed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"/winnow-test-{uuid.uuid4().hex}"
    fs.makedirs(root, exist_ok=True)
    try:
        yield fs, root
    finally:
        if fs.exists(root):
            fs.rm(root, recursive=True)
        assert not [k for k in fs.store if k.startswith(root)]


def test_list_shards_and_read_memory_urls(memfs) -> None:
    fs, root = memfs
    with fs.open(f"{root}/d/a.jsonl", "wb") as f:
        f.write(b'{"text": "from a"}\n{"text": ""}\n')
    with fs.open(f"{root}/d/sub/b.jsonl.gz", "wb") as f:
        f.write(gzip.compress(b'{"id": 1, "text": "from b"}\n'))
    with fs.open(f"{root}/d/sub/c.parquet", "wb") as f:
        pq.write_table(pa.table({"text": ["from c"]}), f)
    with fs.open(f"{root}/d/sub/ignored.txt", "wb") as f:
        f.write(b"x")
    url = f"memory://{root}/d"
    shards = list_shards([url])
    assert [(s.url, s.stem, s.format, s.compression) for s in shards] == [
        (f"memory://{root}/d/a.jsonl", "a", "jsonl", None),
        (f"memory://{root}/d/sub/b.jsonl.gz", "sub__b", "jsonl", "gzip"),
        (f"memory://{root}/d/sub/c.parquet", "sub__c", "parquet", None),
    ]
    assert list_shards([f"memory://{root}/d/**"]) == shards
    assert list_shards([f"memory://{root}/d/*.jsonl"]) == shards[:1]
    assert list_shards([f"memory://{root}/d/sub/b.jsonl.gz"])[0].url == shards[1].url

    a, b, c = (read(s) for s in shards)
    assert (a.ids, a.texts) == (["a:0"], ["from a"])
    assert [(r["reason"], r["line"], r["row"], r["file"]) for r in a.rejects] == [
        ("empty_text", 2, 1, f"memory://{root}/d/a.jsonl")
    ]
    assert (b.ids, b.texts) == (["1"], ["from b"])
    assert (c.ids, c.texts) == (["sub__c:0"], ["from c"])

    with pytest.raises(ConfigError, match="does not exist"):
        list_shards([f"memory://{root}/nothing.jsonl"])
    with pytest.raises(ConfigError, match="matches no shard"):
        list_shards([f"memory://{root}/d/*.parquet"])


# --------------------------------------------------------------------------------------------------------------
# 3. ids


def test_derived_ids_are_stem_and_row_and_stable(tmp_path: Path) -> None:
    items = [{"text": "a"}, {"id": None, "text": "b"}, {"id": "given", "text": "c"}, {"id": 0, "text": "d"},
             {"id": -12, "text": "e"}, {"id": "", "text": "f"}, {"text": "g"}]  # fmt: skip
    path = write_jsonl(tmp_path / "sub" / "part-1.jsonl.gz", items)
    first, second = read(path, read_batch_size=2), read(path, read_batch_size=5)
    expected = ["part-1:0", "part-1:1", "given", "0", "-12", "", "part-1:6"]
    assert first.ids == expected
    assert second.ids == expected
    # stems carry the folder below the common root, so derived ids are unique across shards
    other = write_jsonl(tmp_path / "other" / "part-1.jsonl", [{"text": "z"}])
    shards = list_shards([str(path), str(other)])
    assert [read(s).ids[0] for s in shards] == ["other__part-1:0", "sub__part-1:0"]


def test_parquet_ids_int_null_and_string(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"id": pa.array([7, None, 9], pa.int64()), "text": ["a", "b", "c"]}), tmp_path / "i.parquet"
    )
    pq.write_table(pa.table({"id": pa.array(["x", None, ""]), "text": ["a", "b", "c"]}), tmp_path / "s.parquet")
    pq.write_table(pa.table({"text": ["a", "b", "c"]}), tmp_path / "n.parquet")
    pq.write_table(pa.table({"id": pa.array([1, 2, 3], pa.uint8()), "text": ["a", "b", "c"]}), tmp_path / "u.parquet")
    for _ in range(2):  # stable across reads
        assert read(tmp_path / "i.parquet", read_batch_size=2).ids == ["7", "i:1", "9"]
        assert read(tmp_path / "s.parquet").ids == ["x", "s:1", ""]
        assert read(tmp_path / "n.parquet", read_batch_size=1).ids == ["n:0", "n:1", "n:2"]
        assert read(tmp_path / "u.parquet").ids == ["1", "2", "3"]


def test_parquet_null_typed_id_column_gets_derived_ids(tmp_path: Path) -> None:
    path = tmp_path / "nul.parquet"
    pq.write_table(pa.table({"id": pa.nulls(5), "text": ["a", "", "c", "d", "e"], "k": list(range(5))}), path)
    result = read(path, read_batch_size=2)
    assert result.ids == ["nul:0", "nul:2", "nul:3", "nul:4"]
    assert result.row_idx == [0, 2, 3, 4]
    assert [(r["reason"], r["row"], r["id"]) for r in result.rejects] == [("empty_text", 1, "nul:1")]
    assert all(b.table.schema.field("id").type == pa.string() for b in result.batches)


def test_parquet_dictionary_and_view_ids_are_read_as_strings(tmp_path: Path) -> None:
    ids = pa.array(["x", None, "z"])
    for name, col in [("d", ids.dictionary_encode()), ("v", ids.cast(pa.string_view()))]:
        pq.write_table(pa.table({"id": col, "text": ["a", "b", "c"]}), tmp_path / f"{name}.parquet")
        assert read(tmp_path / f"{name}.parquet").ids == ["x", f"{name}:1", "z"]


def test_parquet_id_column_of_wrong_type_rejects_every_row(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"id": pa.array([1.5, None], pa.float64()), "text": ["a", "b"]}), path)
    result = read(path)
    assert result.rows == []
    assert [(r["reason"], r["row"], r["line"], r["id"]) for r in result.rejects] == [
        ("invalid_id", 0, None, "f:0"),
        ("invalid_id", 1, None, "f:1"),
    ]
    assert "double" in result.rejects[0]["detail"]
    assert result.accounted() == 2


# --------------------------------------------------------------------------------------------------------------
# 4. bad input: every record lands either in the table or in the rejects


GOOD_BEFORE = {"id": "g0", "text": "before"}
GOOD_AFTER = {"text": "after"}  # both shorter than max_chars=10 below

# (bad line, reason, reject id or None); the bad line is line 2 / row 1 of stem "bad", max_chars=10
BAD_JSONL_CASES = {
    "malformed_json": (b'{"text": "unterminated', "malformed_json", None),
    "trailing_garbage": (b'{"text": "a"} x', "malformed_json", None),
    "single_quotes": (b"{'text': 'a'}", "malformed_json", None),
    "nan": (b'{"text": "a", "v": NaN}', "malformed_json", None),
    "lone_surrogate": (b'{"text": "a\\ud800"}', "malformed_json", None),
    "utf8_bom": (b'\xef\xbb\xbf{"text": "a"}', "malformed_json", None),
    "non_utf8": (b'{"text": "caf\xe9"}', "invalid_utf8", None),
    "non_utf8_garbage": (b"\xff\xfe\x00garbage", "invalid_utf8", None),
    "array": (b'[{"text": "a"}]', "not_an_object", None),
    "number": (b"42", "not_an_object", None),
    "string": (b'"just text"', "not_an_object", None),
    "json_null": (b"null", "not_an_object", None),
    "missing_text": (b'{"title": "no text here"}', "missing_text", "bad:1"),
    "missing_text_with_id": (b'{"id": 5, "body": "x"}', "missing_text", "5"),
    "null_text": (b'{"text": null}', "null_text", "bad:1"),
    "int_text": (b'{"id": "i", "text": 12}', "non_string_text", "i"),
    "list_text": (b'{"text": ["a", "b"]}', "non_string_text", "bad:1"),
    "dict_text": (b'{"text": {"a": "b"}}', "non_string_text", "bad:1"),
    "bool_text": (b'{"text": true}', "non_string_text", "bad:1"),
    "empty_text": (b'{"text": ""}', "empty_text", "bad:1"),
    "whitespace_text": (b'{"text": " \\t\\n\\r  "}', "empty_text", "bad:1"),
    "unicode_space_text": ('{"text": "\u3000\u00a0\u2003"}'.encode(), "empty_text", "bad:1"),
    "too_long": (b'{"text": "12345678901"}', "text_too_long", "bad:1"),
    "too_long_multibyte": ('{"text": "ééééééééééé"}'.encode(), "text_too_long", "bad:1"),
    "dict_id": (b'{"id": {"a": 1}, "text": "ok"}', "invalid_id", None),
    "list_id": (b'{"id": [1], "text": "ok"}', "invalid_id", None),
    "bool_id": (b'{"id": true, "text": "ok"}', "invalid_id", None),
    "float_id": (b'{"id": 1.5, "text": "ok"}', "invalid_id", None),
}


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
@pytest.mark.parametrize("case", sorted(BAD_JSONL_CASES))
def test_bad_jsonl_line_is_rejected_and_the_rest_read(tmp_path: Path, case: str, suffix: str) -> None:
    bad, reason, reject_id = BAD_JSONL_CASES[case]
    path = write_jsonl(tmp_path / f"bad{suffix}", [GOOD_BEFORE, bad, GOOD_AFTER])
    result = read(path, max_chars=10)
    assert result.rows == [{"id": "g0", "text": "before"}, {"id": "bad:2", "text": "after"}]
    assert result.row_idx == [0, 2]
    assert len(result.rejects) == 1
    r = result.rejects[0]
    assert r["reason"] == reason
    assert (r["file"], r["line"], r["row"], r["n_rows"], r["id"]) == (str(path), 2, 1, 1, reject_id)
    assert r["detail"]
    assert r["raw_bytes"] == len(bad) + 1  # the line as read, newline included
    if reason == "invalid_utf8":
        assert r["raw"].rstrip("\n") == bad.decode("utf-8", errors="backslashreplace")
    else:
        assert r["raw"].rstrip("\n") == bad.decode("utf-8")
    assert result.accounted() == 3


def test_text_length_limit_counts_characters_not_bytes(tmp_path: Path) -> None:
    items = [{"text": "é" * 10}, {"text": "x" * 10}, {"text": "x" * 11}, {"text": "🙂" * 10}]
    result = read(write_jsonl(tmp_path / "len.jsonl", items), max_chars=10)
    assert result.texts == ["é" * 10, "x" * 10, "🙂" * 10]
    assert [(r["reason"], r["line"]) for r in result.rejects] == [("text_too_long", 3)]
    assert result.rejects[0]["detail"].startswith("11 characters")
    pq.write_table(pa.Table.from_pylist(items), tmp_path / "len.parquet")
    result = read(tmp_path / "len.parquet", max_chars=10)
    assert result.texts == ["é" * 10, "x" * 10, "🙂" * 10]
    assert [(r["reason"], r["row"], r["line"]) for r in result.rejects] == [("text_too_long", 2, None)]


def test_many_bad_lines_keep_their_line_numbers(tmp_path: Path) -> None:
    lines = [GOOD_BEFORE]
    for case in sorted(BAD_JSONL_CASES):
        lines += [BAD_JSONL_CASES[case][0], {"text": f"ok {len(lines)}"}]
    path = write_jsonl(tmp_path / "bad.jsonl.gz", lines)
    result = read(path, max_chars=10, read_batch_size=4)
    cases = sorted(BAD_JSONL_CASES)
    assert result.texts == ["before"] + [f"ok {2 * i + 1}" for i in range(len(cases))]
    assert result.row_idx == [0] + [2 + 2 * i for i in range(len(cases))]
    assert [(r["line"], r["row"], r["reason"]) for r in result.rejects] == [
        (2 + 2 * i, 1 + 2 * i, BAD_JSONL_CASES[c][1]) for i, c in enumerate(cases)
    ]
    assert result.accounted() == len(lines)


def test_blank_lines_are_skipped_not_rejected(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b'\n{"text": "a"}\n   \n\r\n\t\n{"text": "b"}\n\n')
    result = read(path, read_batch_size=1)
    assert result.texts == ["a", "b"]
    assert result.rejects == []
    assert result.accounted() == 2
    # JSONL rows are line-based (row == line - 1), so ids stay stable when blank lines are present
    assert result.row_idx == [1, 5]
    assert result.ids == ["blank:1", "blank:5"]
    # a file of blank lines only, and an empty file, yield nothing at all
    (tmp_path / "only_blank.jsonl").write_bytes(b"\n \n\t\n")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    for name in ["only_blank.jsonl", "empty.jsonl"]:
        result = read(tmp_path / name)
        assert (result.rows, result.rejects) == ([], [])


def test_long_bad_line_raw_is_capped_but_size_is_kept(tmp_path: Path) -> None:
    bad = b'{"text": "' + b"x" * (MAX_RAW_CHARS + 1000)  # malformed: never closed
    path = write_jsonl(tmp_path / "long.jsonl", [bad, {"text": "ok"}])
    result = read(path)
    assert result.texts == ["ok"]
    (r,) = result.rejects
    assert r["reason"] == "malformed_json"
    assert len(r["raw"]) == MAX_RAW_CHARS
    assert r["raw"] == bad[:MAX_RAW_CHARS].decode()
    assert r["raw_bytes"] == len(bad) + 1


def truncated_gzip_case(tmp_path: Path) -> tuple[Path, int]:
    """A .jsonl.gz cut in the middle and the number of complete lines its readable prefix holds."""
    rnd = random.Random(1)
    lines = [orjson.dumps({"text": "".join(rnd.choices(string.ascii_letters + " ", k=150))}) for _ in range(400)]
    data = gzip.compress(b"\n".join(lines) + b"\n")
    cut = data[: len(data) // 2]
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(cut)
    prefix = zlib.decompressobj(wbits=31).decompress(cut)
    n_complete = prefix.count(b"\n")
    assert 0 < n_complete < 400
    return path, n_complete


def test_truncated_gzip_reads_rows_before_the_cut_then_one_read_error(tmp_path: Path) -> None:
    path, n_complete = truncated_gzip_case(tmp_path)
    result = read(path, read_batch_size=64)
    assert len(result.rows) == n_complete
    assert result.row_idx == list(range(n_complete))
    (r,) = result.rejects
    assert r["reason"] == "read_error"
    assert (r["line"], r["row"], r["n_rows"], r["file"]) == (n_complete + 1, n_complete, 1, str(path))
    assert "EOFError" in r["detail"]
    assert f"line {n_complete + 1}" in r["detail"]
    # the records the reader can know of (complete lines + the one it failed on) are all accounted for
    assert result.accounted() == n_complete + 1


def test_not_gzip_data_in_a_gz_shard_is_one_read_error(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl.gz"
    path.write_bytes(b'{"text": "a"}\n{"text": "b"}\n')
    result = read(path)
    assert result.rows == []
    assert [(r["reason"], r["line"], r["row"], r["n_rows"]) for r in result.rejects] == [("read_error", 1, 0, 1)]


def test_not_zstd_data_in_a_zst_shard_is_one_read_error(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl.zst"
    path.write_bytes(b'{"text": "a"}\n{"text": "b"}\n')
    result = read(path)
    assert result.rows == []
    assert [(r["reason"], r["line"], r["row"]) for r in result.rejects] == [("read_error", 1, 0)]


def zstd_blocks_case(tmp_path: Path, n_lines: int) -> tuple[Path, bytes, int]:
    rnd = random.Random(2)
    lines = [orjson.dumps({"text": "".join(rnd.choices(string.ascii_lowercase + " ", k=200))}) for _ in range(n_lines)]
    data = zstandard.ZstdCompressor().compress(b"\n".join(lines) + b"\n")
    cut = data[: len(data) // 2]
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(cut)
    return path, cut, n_lines


@pytest.mark.parametrize("n_lines", [40, 2000], ids=["one-block", "many-blocks"])
def test_truncated_zstd_is_reported_like_truncated_gzip(tmp_path: Path, n_lines: int) -> None:
    path, _, _ = zstd_blocks_case(tmp_path, n_lines)
    result = read(path)
    assert result.rejects, "truncated zstd shard read without any reject"
    assert result.rejects[-1]["reason"] == "read_error"
    assert result.row_idx == list(range(len(result.rows)))


def test_missing_shard_is_one_unreadable_shard(tmp_path: Path) -> None:
    for fmt in ["jsonl", "parquet"]:
        shard = Shard(url=str(tmp_path / f"gone.{fmt}"), stem="gone", format=fmt)  # type: ignore[arg-type]
        result = read(shard)
        assert result.rows == []
        (r,) = result.rejects
        assert (r["reason"], r["line"], r["row"], r["n_rows"], r["file"]) == (
            "unreadable_shard", None, None, 1, shard.url,
        )  # fmt: skip
        assert "FileNotFoundError" in r["detail"]


@pytest.mark.parametrize("kind", ["garbage", "truncated_footer", "empty_file"])
def test_corrupt_parquet_is_one_unreadable_shard(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "corrupt.parquet"
    if kind == "garbage":
        path.write_bytes(b"PAR1 this is not a parquet file at all" * 10)
    elif kind == "truncated_footer":
        pq.write_table(pa.table({"text": ["a", "b", "c"]}), path)
        path.write_bytes(path.read_bytes()[:-20])
    else:
        path.write_bytes(b"")
    result = read(path)
    assert result.rows == []
    (r,) = result.rejects
    assert (r["reason"], r["line"], r["row"], r["n_rows"], r["raw"]) == ("unreadable_shard", None, None, 1, None)
    assert r["detail"]
    assert result.accounted() == 1


def test_corrupt_parquet_row_group_rejects_the_rest_as_one_run(tmp_path: Path) -> None:
    path = tmp_path / "rg.parquet"
    table = pa.table({"text": [f"document {i} " + "x" * 50 for i in range(30)], "n": list(range(30))})
    pq.write_table(table, path, row_group_size=10, compression="none", use_dictionary=False)
    col = pq.ParquetFile(path).metadata.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    start = col.data_page_offset + 40  # keep the page header, overwrite the values
    data[start : col.data_page_offset + col.total_compressed_size - 10] = b"\xff" * (col.total_compressed_size - 50)
    path.write_bytes(bytes(data))
    result = read(path, read_batch_size=10)
    assert result.texts == [f"document {i} " + "x" * 50 for i in range(10)]
    (r,) = result.rejects
    assert (r["reason"], r["row"], r["n_rows"], r["line"]) == ("read_error", 10, 20, None)
    assert "rows 10..29" in r["detail"]
    assert result.accounted() == 30


def test_parquet_short_read_without_error_rejects_the_missing_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that ends early without raising (a page that decodes to no values) must not lose rows quietly."""
    path = tmp_path / "short.parquet"
    pq.write_table(pa.table({"text": [f"doc {i}" for i in range(10)]}), path, row_group_size=4)
    iter_batches = pq.ParquetFile.iter_batches

    def first_row_group_only(self, *args, **kwargs):
        for batch, _ in zip(iter_batches(self, *args, **kwargs), range(2), strict=False):
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", first_row_group_only)
    result = read(path, read_batch_size=2)
    assert result.texts == ["doc 0", "doc 1", "doc 2", "doc 3"]
    (r,) = result.rejects
    assert (r["reason"], r["row"], r["n_rows"], r["line"], r["file"]) == ("read_error", 4, 6, None, str(path))
    assert "rows 4..9" in r["detail"] and "4 of 10" in r["detail"]
    assert result.accounted() == 10
    result = read(path, read_batch_size=2, limit=4)  # nothing is missing below the limit
    assert result.texts == ["doc 0", "doc 1", "doc 2", "doc 3"] and result.rejects == []


def invalid_utf8(values: list[bytes | None]) -> pa.Array:
    """A string array holding ``values`` as they are (Arrow only checks UTF-8 when asked to)."""
    return pa.array(values, pa.binary()).view(pa.string())


def test_parquet_invalid_utf8_rows_are_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "u.parquet"
    texts = [b"ok 0", b"bad \xff 1", b"ok 2", b"ok 3", b"caf\xe9 4", b"\xc3", None, b"ok 7", b"ok 8"]
    ids = [b"i0", b"i1", b"i2", b"i\xfe3", None, b"i5", b"i6", b"i7", b"i8"]
    meta = [[b"m"], [b"m"], [b"m"], [b"m"], [b"m"], [b"m"], [b"m"], [b"\x80"], [b"m"]]
    meta = pa.ListArray.from_arrays(pa.array(np.arange(10, dtype=np.int32)), invalid_utf8([m[0] for m in meta]))
    table = pa.table({"id": invalid_utf8(ids), "text": invalid_utf8(texts), "meta": meta, "k": list(range(9))})
    pq.write_table(table, path, row_group_size=4)
    result = read(path, read_batch_size=3)
    for batch in result.batches:
        batch.table.validate(full=True)  # what is kept is valid Arrow data
    assert result.rows == [
        {"id": "i0", "text": "ok 0", "meta": ["m"], "k": 0},
        {"id": "i2", "text": "ok 2", "meta": ["m"], "k": 2},
        {"id": "i8", "text": "ok 8", "meta": ["m"], "k": 8},
    ]
    assert result.row_idx == [0, 2, 8]
    assert [(r["reason"], r["row"], r["line"], r["id"]) for r in result.rejects] == [
        ("invalid_utf8", 1, None, "i1"),
        ("invalid_utf8", 3, None, "u:3"),  # the id itself is invalid: the derived id stands in
        ("invalid_utf8", 4, None, "u:4"),
        ("invalid_utf8", 5, None, "i5"),
        ("null_text", 6, None, "i6"),
        ("invalid_utf8", 7, None, "i7"),  # in a passthrough column, as a JSONL line with a bad byte anywhere
    ]
    details = [r["detail"] for r in result.rejects]
    assert details[0] == "column 'text', byte 4: invalid start byte"
    assert details[1].startswith("column 'id', byte 1:") and details[2].startswith("column 'text', byte 3:")
    assert details[3] == "column 'text', byte 0: unexpected end of data"
    assert details[5].startswith("column 'meta':")
    assert result.accounted() == 9


def test_parquet_view_passthrough_columns_are_read_as_string_and_binary(tmp_path: Path) -> None:
    """(pyarrow has no filter kernel for view types: a batch with a reject could not drop its row)"""
    path = tmp_path / "v.parquet"
    table = pa.table({
        "text": ["a", "", "c", "d"],
        "sv": pa.array([b"s0", b"s1", b"s\xff", b"s3"], pa.binary_view()).view(pa.string_view()),
        "bv": pa.array([b"b0", b"b1", b"b2", b"\xff"], pa.binary_view()),
        "cat": pa.array(["x", "y", "x", None]).dictionary_encode(),
    })  # fmt: skip
    pq.write_table(table, path)
    result = read(path)
    assert result.rows == [
        {"id": "v:0", "text": "a", "sv": "s0", "bv": b"b0", "cat": "x"},
        {"id": "v:3", "text": "d", "sv": "s3", "bv": b"\xff", "cat": None},
    ]
    assert [(r["reason"], r["row"]) for r in result.rejects] == [("empty_text", 1), ("invalid_utf8", 2)]
    assert result.rejects[1]["detail"] == "column 'sv', byte 1: invalid start byte"
    (batch,) = result.batches
    batch.table.validate(full=True)
    assert [str(batch.table.schema.field(c).type) for c in ["sv", "bv", "cat"]] == [
        "string", "binary", "dictionary<values=string, indices=int32, ordered=0>",
    ]  # fmt: skip


@pytest.mark.parametrize("layout", ["large_string", "string_view", "dictionary"])
def test_parquet_invalid_utf8_in_other_text_layouts(tmp_path: Path, layout: str) -> None:
    text = invalid_utf8([b"one", b"t\xffo", b"three"])
    if layout == "large_string":
        text = text.cast(pa.large_string())
    elif layout == "string_view":
        text = pa.array([b"one", b"t\xffo", b"three"], pa.binary_view()).view(pa.string_view())
    else:
        text = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 1], pa.int32()), text)
    path = tmp_path / "l.parquet"
    pq.write_table(pa.table({"text": text}), path)
    result = read(path)
    assert result.texts == ["one", "three"]
    assert [(r["reason"], r["row"]) for r in result.rejects] == [("invalid_utf8", 1)] + (
        [("invalid_utf8", 3)] if layout == "dictionary" else []
    )


@pytest.mark.parametrize("batch_size", [2, 100])
def test_parquet_without_text_column_rejects_every_row(tmp_path: Path, batch_size: int) -> None:
    path = tmp_path / "notext.parquet"
    pq.write_table(pa.table({"body": ["a", "b", "c", "d", "e"], "id": [1, 2, 3, 4, 5]}), path)
    result = read(path, read_batch_size=batch_size)
    assert result.rows == []
    assert [(r["reason"], r["row"], r["line"], r["n_rows"]) for r in result.rejects] == [
        ("missing_text", i, None, 1) for i in range(5)
    ]
    assert "'text'" in result.rejects[0]["detail"] and "body" in result.rejects[0]["detail"]
    assert max(len(b.rejects) for b in result.batches) <= batch_size
    assert result.accounted() == 5


@pytest.mark.parametrize(
    "column",
    [pa.array([1, 2, 3], pa.int64()), pa.array([b"a", b"b", b"c"], pa.binary()), pa.array([["a"], ["b"], []])],
    ids=["int", "binary", "list"],
)
def test_parquet_non_string_text_column_rejects_every_row(tmp_path: Path, column: pa.Array) -> None:
    path = tmp_path / "nonstr.parquet"
    pq.write_table(pa.table({"id": ["x", None, "z"], "text": column}), path)
    result = read(path, read_batch_size=2)
    assert result.rows == []
    assert [(r["reason"], r["row"], r["id"]) for r in result.rejects] == [
        ("non_string_text", 0, "x"), ("non_string_text", 1, "nonstr:1"), ("non_string_text", 2, "z"),
    ]  # fmt: skip
    assert str(pq.read_schema(path).field("text").type) in result.rejects[0]["detail"]
    assert result.accounted() == 3


def test_parquet_null_empty_and_too_long_texts(tmp_path: Path) -> None:
    texts = ["ok one", None, "", " \t\n", "x" * 11, "ok two", "\u3000", "x" * 10]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": pa.array(texts, pa.string()), "k": list(range(8))}), path)
    result = read(path, max_chars=10, read_batch_size=3)
    assert result.rows == [
        {"id": "t:0", "text": "ok one", "k": 0},
        {"id": "t:5", "text": "ok two", "k": 5},
        {"id": "t:7", "text": "x" * 10, "k": 7},
    ]
    assert result.row_idx == [0, 5, 7]
    assert [(r["reason"], r["row"], r["line"], r["id"], r["raw"]) for r in result.rejects] == [
        ("null_text", 1, None, "t:1", None),
        ("empty_text", 2, None, "t:2", None),
        ("empty_text", 3, None, "t:3", None),
        ("text_too_long", 4, None, "t:4", None),
        ("empty_text", 6, None, "t:6", None),
    ]
    assert result.accounted() == 8


def test_reader_rejects_feed_balanced_stats(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [GOOD_BEFORE, b"{", {"text": ""}, b"", {"text": None}, GOOD_AFTER])
    stats = ShardStats()
    for batch in ShardReader(shard_of(path), IOSection(read_batch_size=2)):
        stats.add_rejects(batch.rejects)
        stats.input += batch.table.num_rows
        stats.kept += batch.table.num_rows
    assert (stats.input, stats.kept, stats.rejected) == (5, 2, 3)
    assert stats.rejected_by_reason == {"malformed_json": 1, "empty_text": 1, "null_text": 1}
    stats.check("s")


# --------------------------------------------------------------------------------------------------------------
# ShardStats arithmetic


def test_shard_stats_add_rejects_counts_n_rows() -> None:
    s = ShardStats()
    s.add_rejects(
        [
            {"reason": "malformed_json", "n_rows": 1},
            {"reason": "read_error", "n_rows": 20},
            {"reason": "malformed_json"},  # no n_rows: one record
            {"reason": "empty_text", "n_rows": None},  # null n_rows: one record
        ]
    )
    assert (s.input, s.rejected, s.kept, s.dropped) == (23, 23, 0, 0)
    assert s.rejected_by_reason == {"malformed_json": 2, "read_error": 20, "empty_text": 1}
    s.check("after rejects")
    s.add_rejects([])
    assert (s.input, s.rejected) == (23, 23)


def test_shard_stats_check() -> None:
    ShardStats().check("empty")
    ShardStats(input=10, kept=6, dropped=3, rejected=1).check("balanced")
    with pytest.raises(AssertionError, match=r"shard-x: input=10 != kept=6 \+ dropped=3 \+ rejected=0"):
        ShardStats(input=10, kept=6, dropped=3).check("shard-x")
    with pytest.raises(AssertionError):
        ShardStats(input=1, kept=2).check("more out than in")


def test_shard_stats_add() -> None:
    a = ShardStats(input=10, kept=7, dropped=2, rejected=1, rejected_by_reason={"empty_text": 1}, seconds=1.5,
                   shards=1, counters={"tokens": 100.0, "ids_derived": 3})  # fmt: skip
    b = ShardStats(input=5, kept=1, dropped=0, rejected=4, rejected_by_reason={"empty_text": 1, "read_error": 3},
                   seconds=0.25, shards=1, counters={"tokens": 20.5, "blank_lines": 2})  # fmt: skip
    c = a + b
    assert (c.input, c.kept, c.dropped, c.rejected, c.shards) == (15, 8, 2, 5, 2)
    assert c.seconds == pytest.approx(1.75)
    assert c.rejected_by_reason == {"empty_text": 2, "read_error": 3}
    assert c.counters == {"tokens": 120.5, "ids_derived": 3, "blank_lines": 2}
    c.check("sum")
    # operands unchanged, zero is neutral, sum() works from a ShardStats start
    assert a.input == 10 and a.rejected_by_reason == {"empty_text": 1} and a.counters["tokens"] == 100.0
    assert ShardStats() + a == a
    assert sum([a, b], ShardStats()) == c
    assert ShardStats.from_json(c.to_json()) == c


# --------------------------------------------------------------------------------------------------------------
# 5. io.limit


def test_limit_reads_at_most_n_records(tmp_path: Path) -> None:
    items = [{"text": f"t{i}"} for i in range(10)]
    jsonl = write_jsonl(tmp_path / "l.jsonl.gz", items)
    pq.write_table(pa.Table.from_pylist(items), tmp_path / "l.parquet", row_group_size=4)
    for path in [jsonl, tmp_path / "l.parquet"]:
        for batch_size in [1, 2, 100]:
            result = read(path, limit=3, read_batch_size=batch_size)
            assert result.texts == ["t0", "t1", "t2"], (path, batch_size)
            assert result.row_idx == [0, 1, 2]
        assert len(read(path, limit=100).rows) == 10
        assert read(path, limit=1).texts == ["t0"]
        assert read(path, limit=5, read_batch_size=4).texts == ["t0", "t1", "t2", "t3", "t4"]


def test_limit_counts_rejected_records_too(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "l.jsonl", [{"text": "a"}, b"{", {"text": ""}, {"text": "b"}, {"text": "c"}])
    result = read(path, limit=3)
    assert result.texts == ["a"]
    assert [(r["reason"], r["line"]) for r in result.rejects] == [("malformed_json", 2), ("empty_text", 3)]
    assert result.accounted() == 3
    pq.write_table(pa.table({"text": ["a", None, "", "b", "c"]}), tmp_path / "l.parquet")
    result = read(tmp_path / "l.parquet", limit=3, read_batch_size=2)
    assert result.texts == ["a"]
    assert result.accounted() == 3
    pq.write_table(pa.table({"body": ["a", "b", "c", "d"]}), tmp_path / "nt.parquet")
    assert read(tmp_path / "nt.parquet", limit=3).accounted() == 3


def test_limit_does_not_count_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "lb.jsonl"
    path.write_bytes(b'\n\n{"text": "a"}\n\n{"text": "b"}\n{"text": "c"}\n')
    assert read(path, limit=2).texts == ["a", "b"]


# --------------------------------------------------------------------------------------------------------------
# 6. AtomicParquetWriter


def tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_writer_file_appears_only_after_close(tmp_path: Path) -> None:
    final = tmp_path / "out" / "x.parquet"  # parent created by the writer
    w = AtomicParquetWriter(str(final), metadata={"winnow_version": "0.1.0", "config_hash": "abc"})
    w.write(pa.table({"id": ["a", "b"], "v": [1, 2]}))
    w.write(pa.table({"v": [3], "id": ["c"]}))  # columns in another order are selected by name
    w.write(pa.table({"id": pa.array([], pa.string()), "v": pa.array([], pa.int64())}))
    assert not final.exists()
    assert len(tmp_files(final.parent)) == 1
    assert w.rows == 3
    w.close()
    assert final.exists()
    assert tmp_files(final.parent) == []
    table = pq.read_table(final)
    assert table.to_pydict() == {"id": ["a", "b", "c"], "v": [1, 2, 3]}
    assert table.schema.metadata == {b"winnow_version": b"0.1.0", b"config_hash": b"abc"}
    pf = pq.ParquetFile(final)
    assert pf.schema_arrow.metadata[b"config_hash"] == b"abc"
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"


def test_writer_casts_to_the_given_schema_and_splits_row_groups(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("score", pa.float32())])
    final = tmp_path / "y.parquet"
    with AtomicParquetWriter(str(final), schema=schema, row_group_size=2, compression="snappy") as w:
        w.write(pa.table({"score": pa.array([1, 2, 3, 4, 5], pa.int64()), "id": list("abcde"), "extra": [0] * 5}))
    pf = pq.ParquetFile(final)
    assert pf.schema_arrow.remove_metadata() == schema
    assert pf.metadata.num_row_groups == 3
    assert pf.metadata.row_group(0).column(0).compression == "SNAPPY"
    assert pf.read().column("score").to_pylist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_writer_compression_none(tmp_path: Path) -> None:
    final = tmp_path / "n.parquet"
    with AtomicParquetWriter(str(final), compression="none") as w:
        w.write(pa.table({"a": [1]}))
    assert pq.ParquetFile(final).metadata.row_group(0).column(0).compression == "UNCOMPRESSED"


@pytest.mark.parametrize("write_first", [False, True])
def test_writer_exception_leaves_no_file(tmp_path: Path, write_first: bool) -> None:
    final = tmp_path / "z.parquet"
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicParquetWriter(str(final)) as w:
            if write_first:
                w.write(pa.table({"a": [1, 2]}))
                assert len(tmp_files(tmp_path)) == 1
            raise RuntimeError("boom")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_writer_does_not_clobber_existing_file_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "keep.parquet"
    pq.write_table(pa.table({"a": [42]}), final)
    with pytest.raises(ValueError):
        with AtomicParquetWriter(str(final)) as w:
            w.write(pa.table({"a": [1]}))
            raise ValueError("fail")
    assert pq.read_table(final).to_pydict() == {"a": [42]}
    assert tmp_files(tmp_path) == []
    # and a successful rewrite replaces it
    with AtomicParquetWriter(str(final)) as w:
        w.write(pa.table({"a": [7]}))
    assert pq.read_table(final).to_pydict() == {"a": [7]}


def test_writer_empty_with_schema_writes_empty_file(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("n", pa.int64())])
    final = tmp_path / "empty.parquet"
    with AtomicParquetWriter(str(final), schema=schema, metadata={"k": "v"}):
        pass
    table = pq.read_table(final)
    assert table.num_rows == 0
    assert table.schema.remove_metadata() == schema
    assert table.schema.metadata == {b"k": b"v"}
    assert tmp_files(tmp_path) == []


def test_writer_empty_without_schema_raises_and_writes_nothing(tmp_path: Path) -> None:
    final = tmp_path / "none.parquet"
    w = AtomicParquetWriter(str(final))
    with pytest.raises(ValueError, match="nothing written and no schema"):
        w.close()
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_writer_to_memory_url(memfs) -> None:
    fs, root = memfs
    url = f"memory://{root}/out/w.parquet"
    with AtomicParquetWriter(url, metadata={"m": "1"}) as w:
        w.write(pa.table({"text": ["a", "b"]}))
        assert not fs.exists(f"{root}/out/w.parquet")
    assert fs.exists(f"{root}/out/w.parquet")
    assert [p for p in fs.find(root) if ".tmp-" in p] == []
    with fs.open(f"{root}/out/w.parquet", "rb") as f:
        table = pq.read_table(f)
    assert table.column("text").to_pylist() == ["a", "b"]
    assert table.schema.metadata == {b"m": b"1"}


# --------------------------------------------------------------------------------------------------------------
# 7. write_rejects


def test_write_rejects_round_trip_and_stale_removal(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in" / "r.jsonl", [b"{", {"text": "ok"}, b"\xff", {"text": ""}])
    rejects = read(path).rejects
    assert len(rejects) == 3
    url = str(tmp_path / "run" / "rejects" / "r.parquet")
    write_rejects(url, rejects, {"winnow_version": "0.1.0"})
    table = pq.read_table(url)
    assert table.schema.remove_metadata() == REJECT_SCHEMA
    assert table.schema.metadata == {b"winnow_version": b"0.1.0"}
    assert table.to_pylist() == rejects
    assert table.column("reason").to_pylist() == ["malformed_json", "invalid_utf8", "empty_text"]
    assert table.column("line").to_pylist() == [1, 3, 4]
    # a later run with no rejects removes the stale file, and removing twice is fine
    write_rejects(url, [], {})
    assert not Path(url).exists()
    write_rejects(url, [], {})
    assert not Path(url).exists()
    assert tmp_files(Path(url).parent) == []


# --------------------------------------------------------------------------------------------------------------
# bugs found while writing these tests


def test_jsonl_unsigned_64bit_integer_does_not_crash_reader(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "big.jsonl", [b'{"text": "a", "n": 18446744073709551615}', {"text": "b", "n": 1}])
    result = read(path)
    assert result.texts == ["a", "b"]
    assert result.accounted() == 2


def test_jsonl_integers_beyond_64_bits_stay_exact(tmp_path: Path) -> None:
    """orjson reads integers beyond 64 bits as floats: an id of -2**63 - 1 once became a float and the row was
    rejected as an invalid id (found by the fuzz test). Such lines are parsed exactly instead."""
    big = -(2**63) - 1
    path = write_jsonl(tmp_path / "huge.jsonl", [f'{{"text": "a", "id": {big}}}'.encode(), {"text": "b", "id": 7}])
    result = read(path)
    assert result.ids == [str(big), "7"] and result.accounted() == 2
    # a genuine large float is still a float (and an invalid id, as before)
    path = write_jsonl(tmp_path / "float.jsonl", [b'{"text": "a", "id": 1e19}'])
    assert read(path).ids == []


def test_jsonl_rejects_are_batched_too(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "allbad.jsonl", [b"{"] * 10 + [{"text": "ok"}])
    result = read(path, read_batch_size=3)
    assert result.accounted() == 11
    assert max(len(b.rejects) + b.table.num_rows for b in result.batches) <= 3


# --------------------------------------------------------------------------------------------------------------
# 8. property: the reader never raises and never loses a record

valid_text = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != "")
valid_line = st.tuples(
    st.just("valid"),
    valid_text,
    st.one_of(st.none(), st.integers(-(2**62), 2**62), st.text(max_size=8)),
)
garbage_line = st.tuples(st.just("bytes"), st.binary(max_size=40).filter(lambda b: b"\n" not in b), st.none())
bad_text_line = st.tuples(
    st.just("bad"),
    st.one_of(
        st.sampled_from(
            [
                '{"text": ""}',
                '{"text": "   "}',
                '{"text": null}',
                '{"text": 3}',
                '{"text": [1]}',
                '{"x": "no text"}',
                '{"id": {}, "text": "a"}',
                "[]",
                "1",
                '{"text": "a"',
            ]
        ),
        st.integers(51, 80).map(lambda n: orjson.dumps({"text": "y" * n}).decode()),
    ),
    st.none(),
)


def is_blank(line: bytes) -> bool:
    return line.rstrip(b"\r\n").strip() == b""


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(st.one_of(valid_line, garbage_line, bad_text_line), max_size=25),
    suffix=st.sampled_from([".jsonl", ".jsonl.gz", ".jsonl.zst"]),
    batch_size=st.integers(1, 6),
)
def test_property_reader_never_raises_and_accounts_for_every_line(lines, suffix, batch_size) -> None:
    encoded: list[bytes] = []
    expected_valid: dict[int, tuple[str, str]] = {}  # row -> (id, text)
    for row, (kind, value, id_) in enumerate(lines):
        if kind == "valid":
            rec: dict[str, Any] = {"text": value}
            if id_ is not None:
                rec["id"] = id_
            encoded.append(orjson.dumps(rec))
            expected_valid[row] = (str(id_) if id_ is not None else f"p:{row}", value)
        elif kind == "bad":
            encoded.append(value.encode())
        else:
            encoded.append(value)
    non_blank = sum(not is_blank(b) for b in encoded)
    with tempfile.TemporaryDirectory() as d:
        path = write_jsonl(Path(d) / f"p{suffix}", encoded)
        result = read(path, max_chars=50, read_batch_size=batch_size)
    assert result.accounted() == non_blank
    assert all(r["reason"] not in ("read_error", "unreadable_shard") for r in result.rejects)
    got = dict(zip(result.row_idx, zip(result.ids, result.texts, strict=True), strict=True))
    # every valid record comes back with its id and exact text, at its row
    for row, expected in expected_valid.items():
        assert got[row] == expected
    # anything else read as valid was a random byte line that happens to be a valid record
    for row in set(got) - set(expected_valid):
        assert lines[row][0] == "bytes"
        assert orjson.loads(encoded[row])["text"] == got[row][1]
    # rejects point at their own line, in order
    assert all(r["row"] == r["line"] - 1 for r in result.rejects)
    assert [r["line"] for r in result.rejects] == sorted(r["line"] for r in result.rejects)
    assert not set(got) & {r["row"] for r in result.rejects}
    assert np.all(np.diff(result.row_idx) > 0)
