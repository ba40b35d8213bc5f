"""Fuzzing the shard readers (DESIGN §5: every input row is accounted for, bad data never crashes a run).

``test_io.py`` fuzzes single JSONL lines. Here whole files: random bytes under every supported suffix, valid
gzip/zstd/parquet files cut short or with flipped bytes, lines of random JSON values of the wrong types, parquet
columns of the wrong types, and lines of several megabytes. The reader must never raise, and every record must be
a valid row or a reject; where the file is only cut short, the rows read are exactly the lines before the cut.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from winnow.core.io import MAX_RAW_CHARS, REJECT_SCHEMA, ReadBatch, ShardReader, list_shards
from winnow.pipeline.config import IOSection

#: WINNOW_FUZZ_EXAMPLES=5000 fuzzes harder (CI runs the default)
FUZZ = settings(
    max_examples=int(os.environ.get("WINNOW_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SUFFIXES = [".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet"]
STREAM_ERRORS = ("read_error", "unreadable_shard")


class InvalidRows(Exception):
    """The reader returned a row that is not valid Arrow data (invalid UTF-8 in a string column)."""


def read_bytes(data: bytes, suffix: str, **io_kw: Any) -> tuple[list[dict], list[int], list[dict]]:
    """(valid rows, their 0-based record indices, rejects) of a shard holding ``data``; checks batch invariants."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"f{suffix}"
        path.write_bytes(data)
        (shard,) = list_shards([str(path)])
        io = IOSection(**io_kw)
        rows, idx, rejects = [], [], []
        for batch in ShardReader(shard, io):
            assert isinstance(batch, ReadBatch)
            assert batch.table.num_rows == len(batch.rows)
            assert batch.table.column_names[:2] == [io.id_field, io.text_field]
            assert len(batch.rejects) + batch.table.num_rows <= max(io.read_batch_size, 1) or suffix == ".parquet"
            try:
                batch.table.validate(full=True)
            except pa.ArrowInvalid as e:  # see test_parquet_invalid_utf8_text_is_rejected
                raise InvalidRows(str(e)) from e
            rows += batch.table.to_pylist()
            idx += [int(r) for r in batch.rows]
            rejects += batch.rejects
    pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)  # writable as rejects
    for r in rejects:
        assert r["n_rows"] >= 1 and r["reason"] and r["file"] == shard.url
        assert r["raw"] is None or len(r["raw"]) <= MAX_RAW_CHARS
    for row in rows:
        assert isinstance(row[io.id_field], str) and isinstance(row[io.text_field], str)
        assert row[io.text_field].strip() and len(row[io.text_field]) <= io.max_chars
    assert idx == sorted(set(idx)), "record indices must be distinct and in order"
    return rows, idx, rejects


def jsonl_lines(data: bytes) -> list[bytes]:
    """The lines ``readline`` yields (split after each ``\\n``; a last line without one counts)."""
    lines = data.split(b"\n")
    return lines[:-1] if lines[-1] == b"" else lines


def is_blank(line: bytes) -> bool:
    return line.rstrip(b"\r\n").strip() == b""


def compress(suffix: str, data: bytes) -> bytes:
    if suffix.endswith(".gz"):
        return gzip.compress(data, mtime=0)
    if suffix.endswith(".zst"):
        return zstandard.ZstdCompressor().compress(data)
    return data


def check_prefix_read(lines: list[bytes], rows: list[dict], idx: list[int], rejects: list[dict], complete: bool):
    """The reader returned the lines before some point, each exactly once; a stream error ends the read."""
    errors = [r for r in rejects if r["reason"] in STREAM_ERRORS]
    assert len(errors) <= 1 and (not errors or errors[0] is rejects[-1]), rejects[-3:]
    if complete:
        assert not errors
        stop = len(lines)
    elif errors:
        stop = errors[0]["line"] - 1  # lines before the failing one were read
        assert 0 <= stop <= len(lines)
    else:  # a cut that left a shorter but whole stream (e.g. an empty file)
        stop = max([i + 1 for i in idx] + [r["line"] for r in rejects] + [0])
    line_rejects = [r for r in rejects if r["reason"] not in STREAM_ERRORS]
    seen = sorted(idx + [r["line"] - 1 for r in line_rejects])
    assert seen == [i for i in range(stop) if not is_blank(lines[i])]
    for i, row in zip(idx, rows, strict=True):
        assert orjson.loads(lines[i])["text"] == row["text"]


# -- random whole files ----------------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=3000), suffix=st.sampled_from(SUFFIXES), batch=st.integers(1, 7))
def test_random_bytes_never_crash_a_reader(data: bytes, suffix: str, batch: int) -> None:
    rows, idx, rejects = read_bytes(data, suffix, read_batch_size=batch)
    if suffix == ".jsonl":  # no stream errors possible: every non-blank line is a row or a reject
        assert not [r for r in rejects if r["reason"] in STREAM_ERRORS]
        lines = jsonl_lines(data)
        assert len(rows) + len(rejects) == sum(not is_blank(x) for x in lines)
    elif suffix == ".parquet":  # random bytes are no parquet file: one reject for the file
        assert rows == [] and [r["reason"] for r in rejects] in ([], ["unreadable_shard"])
        assert rejects or data == b""
    else:  # not gzip / zstd: at most a stream error (none for an empty file)
        assert rows == []
        assert [r["reason"] for r in rejects] == ([] if data == b"" else ["read_error"])


json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
record = st.fixed_dictionaries(
    {},
    optional={
        "id": json_value,
        "text": st.one_of(json_value, st.text(min_size=1, max_size=40)),
        "source": json_value,
        "n": json_value,
    },
)
line = st.one_of(record, json_value, st.binary(max_size=30).filter(lambda b: b"\n" not in b))


def encode(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    return json.dumps(item, ensure_ascii=False).encode()  # (orjson refuses integers beyond 64 bits)


def expect_valid(item: Any, max_chars: int) -> bool:
    if not isinstance(item, dict):
        return False
    text, id_ = item.get("text"), item.get("id")
    ok_id = id_ is None or (isinstance(id_, (str, int)) and not isinstance(id_, bool))
    return ok_id and isinstance(text, str) and bool(text.strip()) and len(text) <= max_chars


@FUZZ
@given(
    items=st.lists(line, max_size=20),
    suffix=st.sampled_from([".jsonl", ".jsonl.gz", ".jsonl.zst"]),
    batch=st.integers(1, 8),
    newline_at_end=st.booleans(),
)
def test_lines_of_wrong_json_types_are_rows_or_rejects(items, suffix, batch, newline_at_end) -> None:
    encoded = [encode(i) for i in items]
    data = b"\n".join(encoded) + (b"\n" if newline_at_end and encoded else b"")
    rows, idx, rejects = read_bytes(compress(suffix, data), suffix, read_batch_size=batch, max_chars=30)
    assert not [r for r in rejects if r["reason"] in STREAM_ERRORS]
    lines = jsonl_lines(data)
    check_prefix_read(lines, rows, idx, rejects, complete=True)
    for i, item in enumerate(items):
        if not isinstance(item, bytes):
            assert (i in idx) == expect_valid(item, 30), (item, rejects)
    for i, row in zip(idx, rows, strict=True):
        item = items[i] if not isinstance(items[i], bytes) else orjson.loads(items[i])
        want = item.get("id")
        assert row["id"] == (f"f:{i}" if want is None else str(want))


good_lines = st.lists(
    st.one_of(
        st.builds(lambda t, i: {"id": i, "text": t}, st.text(min_size=1, max_size=30), st.integers(0, 10**6)),
        st.sampled_from([b"", b"   ", b"{bad json", b'{"text": 5}', b"[1, 2]"]),
    ),
    min_size=1,
    max_size=25,
)


@FUZZ
@given(
    items=good_lines, suffix=st.sampled_from([".jsonl.gz", ".jsonl.zst"]), cut=st.floats(0, 1), batch=st.integers(1, 6)
)
def test_truncated_gzip_and_zstd_read_the_lines_before_the_cut(items, suffix, cut, batch) -> None:
    data = b"\n".join(encode(i) for i in items) + b"\n"
    packed = compress(suffix, data)
    n = min(int(cut * len(packed)), len(packed) - 1)
    rows, idx, rejects = read_bytes(packed[:n], suffix, read_batch_size=batch)
    if n > 0:  # a cut stream always ends in one read error (an empty file is an empty shard)
        assert rejects and rejects[-1]["reason"] == "read_error", rejects[-2:]
    check_prefix_read(jsonl_lines(data), rows, idx, rejects, complete=False)


@FUZZ
@given(
    items=good_lines,
    suffix=st.sampled_from([".jsonl.gz", ".jsonl.zst"]),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=4),
    tail=st.binary(max_size=20),
)
def test_corrupt_gzip_and_zstd_never_crash(items, suffix, flips, tail) -> None:
    packed = bytearray(compress(suffix, b"\n".join(encode(i) for i in items) + b"\n"))
    for where, xor in flips:
        packed[min(int(where * len(packed)), len(packed) - 1)] ^= xor
    rows, idx, rejects = read_bytes(bytes(packed) + tail, suffix, read_batch_size=4)
    errors = [r for r in rejects if r["reason"] in STREAM_ERRORS]
    assert len(errors) <= 1 and (not errors or errors[0] is rejects[-1])
    lines_seen = sorted(idx + [r["line"] - 1 for r in rejects if r["reason"] not in STREAM_ERRORS])
    assert lines_seen == sorted(set(lines_seen))
    if errors and lines_seen:
        assert errors[0]["line"] - 1 > lines_seen[-1]


def parquet_bytes(table: pa.Table, row_group_size: int) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size, compression="zstd")
    return sink.getvalue().to_pybytes()


texts = st.lists(st.one_of(st.none(), st.text(max_size=20)), min_size=1, max_size=40)


@FUZZ
@given(values=texts, rg=st.integers(1, 16), cut=st.floats(0, 1), flips=st.lists(st.floats(0, 1), max_size=3))
def test_cut_or_corrupt_parquet_never_crashes_and_accounts_for_the_rows(values, rg, cut, flips) -> None:
    table = pa.table({"id": [f"r{i}" for i in range(len(values))], "text": values})
    data = bytearray(parquet_bytes(table, rg))
    for where in flips:
        data[min(int(where * len(data)), len(data) - 1)] ^= 0x5A
    data = bytes(data[: max(1, int(cut * len(data)))] if cut < 0.5 else data)
    rows, idx, rejects = read_bytes(data, ".parquet", read_batch_size=5, max_chars=1000)
    try:
        expected = pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows
    except Exception:  # noqa: BLE001
        expected = -1
    if expected < 0:  # no readable footer, or one with a negative row count: the whole file is one reject
        assert rows == [] and [r["reason"] for r in rejects] == ["unreadable_shard"]
        return
    # every row the footer promises is a row or a reject, however the pages are damaged
    assert len(rows) + sum(r["n_rows"] for r in rejects) == expected
    if not flips:
        assert [r["text"] for r in rows] == [v for v in values if v is not None and v.strip()]


def test_parquet_short_read_without_error_is_accounted_for() -> None:
    table = pa.table({"id": ["r0", "r1", "r2"], "text": [None, None, ""]})
    base = parquet_bytes(table, 3)
    short = []
    for pos in range(len(base)):  # every single-byte corruption whose footer still reads
        data = bytearray(base)
        data[pos] ^= 0x5A
        try:
            expected = pq.ParquetFile(pa.BufferReader(bytes(data))).metadata.num_rows
        except Exception:  # noqa: BLE001
            continue
        rows, _, rejects = read_bytes(bytes(data), ".parquet", read_batch_size=5)
        if len(rows) + sum(r["n_rows"] for r in rejects) != expected:
            short.append(pos)
    assert short == []


def test_parquet_invalid_utf8_text_is_rejected() -> None:
    text = pa.array([b"good text", b"bad \xff\xfe text", b"fine"], pa.binary()).view(pa.string())
    rows, _, rejects = read_bytes(parquet_bytes(pa.table({"id": ["a", "b", "c"], "text": text}), 2), ".parquet")
    assert [r["id"] for r in rows] == ["a", "c"] and [r["reason"] for r in rejects] == ["invalid_utf8"]


# -- columns of the wrong types ----------------------------------------------------------------------------------

WRONG_COLUMNS = {
    "int": pa.array([1, 2, 3]),
    "float": pa.array([1.5, None, 3.0]),
    "bool": pa.array([True, False, None]),
    "binary": pa.array([b"a", b"b", None]),
    "list": pa.array([["a"], [], None]),
    "struct": pa.array([{"x": "a"}, {"x": None}, None]),
    "null": pa.nulls(3),
    "timestamp": pa.array([0, 1, 2], pa.timestamp("s")),
}


@pytest.mark.parametrize("kind", sorted(WRONG_COLUMNS))
@pytest.mark.parametrize("column", ["id", "text"])
def test_parquet_columns_of_the_wrong_type_reject_their_rows(tmp_path: Path, kind: str, column: str) -> None:
    cols = {"id": pa.array(["a", "b", "c"]), "text": pa.array(["one", "two", "three"])}
    cols[column] = WRONG_COLUMNS[kind]
    rows, idx, rejects = read_bytes(parquet_bytes(pa.table(cols), 2), ".parquet")
    assert len(rows) + sum(r["n_rows"] for r in rejects) == 3
    if column == "text":
        assert rows == [] and {r["reason"] for r in rejects} == {"non_string_text"}
    elif kind == "int":  # integer ids become strings
        assert [r["id"] for r in rows] == ["1", "2", "3"]
    elif kind == "null":  # no id at all: derived ids, as for a null id of any other type
        assert [r["id"] for r in rows] == ["f:0", "f:1", "f:2"] and rejects == []
    else:
        assert rows == [] and {r["reason"] for r in rejects} == {"invalid_id"}


def test_parquet_all_null_id_column_derives_ids() -> None:
    table = pa.table({"id": pa.nulls(3), "text": ["one", "two", "three"]})
    rows, _, rejects = read_bytes(parquet_bytes(table, 2), ".parquet")
    assert [r["id"] for r in rows] == ["f:0", "f:1", "f:2"], [r["reason"] for r in rejects]


@pytest.mark.parametrize("typ", ["dictionary", "string_view"])
def test_parquet_dictionary_or_view_text_is_read(typ: str) -> None:
    text = pa.array(["one", "two", "one"])
    text = text.dictionary_encode() if typ == "dictionary" else text.cast(pa.string_view())
    rows, _, rejects = read_bytes(parquet_bytes(pa.table({"id": ["a", "b", "c"], "text": text}), 2), ".parquet")
    assert [r["text"] for r in rows] == ["one", "two", "one"], [r["reason"] for r in rejects]


# -- huge lines -------------------------------------------------------------------------------------------------

HUGE = 6_000_000  # characters: far beyond any buffer


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_huge_lines(suffix: str) -> None:
    big_text = "word " * (HUGE // 5)
    items = [
        orjson.dumps({"id": "small", "text": "a small document"}),
        orjson.dumps({"id": "big", "text": big_text}),  # > max_chars: rejected, raw capped
        b"x" * HUGE,  # garbage
        orjson.dumps({"id": "deep", "text": "ok", "meta": [[[[["a"] * 1000]]]]}),
        orjson.dumps({"id": "tail", "text": "the last document"}),
    ]
    data = b"\n".join(items)  # no final newline
    rows, idx, rejects = read_bytes(compress(suffix, data), suffix, read_batch_size=2)
    assert [r["id"] for r in rows] == ["small", "deep", "tail"] and idx == [0, 3, 4]
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "text_too_long"), (3, "malformed_json")]
    assert all(len(r["raw"]) == MAX_RAW_CHARS for r in rejects)
    assert [r["raw_bytes"] for r in rejects] == [len(items[1]) + 1, len(items[2]) + 1]  # with the newline
    # the same huge document is a row when the limit allows it
    rows, idx, rejects = read_bytes(compress(suffix, items[1]), suffix, max_chars=HUGE + 10)
    assert rows[0]["text"] == big_text and rejects == []


def test_huge_parquet_cell() -> None:
    big = "z" * HUGE
    data = parquet_bytes(pa.table({"id": ["a", "b", "c"], "text": ["x", big, "y"]}), 2)
    rows, idx, rejects = read_bytes(data, ".parquet")
    assert [r["id"] for r in rows] == ["a", "c"] and [r["reason"] for r in rejects] == ["text_too_long"]
    rows, _, rejects = read_bytes(data, ".parquet", max_chars=HUGE)
    assert [len(r["text"]) for r in rows] == [1, HUGE, 1] and rejects == []
