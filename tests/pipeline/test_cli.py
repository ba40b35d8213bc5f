"""The ``winnow`` CLI end to end on a tiny corpus: outputs, rejects, stats, exit codes, dry runs, help, stage
subcommands, reruns, and a multi-worker run in a subprocess."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

import winnow
from winnow.core.cli_util import exit_on_error
from winnow.core.errors import ConfigError, CurationError, ShardError
from winnow.core.logging import setup_logging
from winnow.embedding.embed import BUNDLED_NAME
from winnow.mixers.planner import PlanError
from winnow.pipeline.cli.app import app
from winnow.pipeline.config import WinnowConfig, load_config
from winnow.pipeline.stages import STAGES, WriteStage

DIM = 384
STEMS = ["a", "b", "c"]


def tiny_overrides() -> list[str]:
    """``--set`` values for a corpus of a few documents (the cluster section exists once clustering is in)."""
    sets = ["embed.batch_size=8", "embed.device=cpu", "executor.torch_threads=1"]  # CPU: byte-identical reruns
    if "cluster" in WinnowConfig.model_fields:
        sets += ["cluster.k=2", "cluster.n_buckets=2", "cluster.device=cpu"]
    return sets


SETS = [arg for item in tiny_overrides() for arg in ("--set", item)]

# ---------------------------------------------------------------------------------------------------------------
# the corpus: every record with where it is (stem, 0-based row = line - 1), its id and the expected reject reason

GOOD_TEXT = {
    "a": [
        "The quick brown fox jumps over the lazy dog.",
        "Rivers carry sediment from the mountains to the sea.",
        "A good night's sleep improves memory and mood.",
        "The museum opens a new exhibition on ancient Egypt.",
        "Compilers translate source code into machine instructions.",
        "Fresh basil and tomatoes make a simple summer salad.",
    ],
    "b": [
        "The orchestra tuned their instruments before the concert.",
        "Volcanic soil is often very fertile.",
        "He forgot his umbrella and got soaked in the rain.",
        "Electric cars need fewer moving parts than petrol cars.",
        "The library extended its opening hours during exams.",
        "Penguins huddle together to keep warm in winter.",
    ],
    "c": [
        "Solar panels convert sunlight into electricity.",
        "The marathon route passes the old harbour.",
        "Bees communicate the location of flowers by dancing.",
        "The recipe calls for two cups of flour.",
        "Glaciers have retreated over the last century.",
        "The chess match ended in a draw after six hours.",
    ],
}


def build_corpus(root: Path, bad: bool = True) -> dict:
    """Write a.jsonl, b.jsonl.gz, c.parquet under ``root``; return the expected records and rows."""
    root.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []  # {stem, row, id, reason}
    inputs: dict[str, list[dict]] = {}  # stem -> valid input rows as dicts, in order

    # a.jsonl: 6 good lines, a malformed line, a line without text, a line with blank text
    lines: list[str] = []
    good = iter(GOOD_TEXT["a"])
    plan = ["g", "g", "g", "malformed", "g", "g", "missing", "g", "empty"] if bad else ["g"] * 6
    for i, kind in enumerate(plan):
        if kind == "g":
            rec = {"id": f"a{i}", "text": next(good), "lang": "en", "n": i}
            inputs.setdefault("a", []).append(rec)
            lines.append(json.dumps(rec))
            records.append({"stem": "a", "row": i, "id": rec["id"], "reason": None})
        elif kind == "malformed":
            lines.append('{"id": "a_bad", "text": "an unterminated string')
            records.append({"stem": "a", "row": i, "id": None, "reason": "malformed_json"})
        elif kind == "missing":
            lines.append(json.dumps({"id": "a_missing", "body": "no text key here", "lang": "en", "n": i}))
            records.append({"stem": "a", "row": i, "id": "a_missing", "reason": "missing_text"})
        else:
            lines.append(json.dumps({"id": "a_empty", "text": "   ", "lang": "en", "n": i}))
            records.append({"stem": "a", "row": i, "id": "a_empty", "reason": "empty_text"})
    (root / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # b.jsonl.gz: 6 good lines and one empty text
    lines = []
    good = iter(GOOD_TEXT["b"])
    plan = ["g", "g", "g", "empty", "g", "g", "g"] if bad else ["g"] * 6
    for i, kind in enumerate(plan):
        if kind == "g":
            rec = {"id": f"b{i}", "text": next(good), "source": "web"}
            inputs.setdefault("b", []).append(rec)
            lines.append(json.dumps(rec))
            records.append({"stem": "b", "row": i, "id": rec["id"], "reason": None})
        else:
            lines.append(json.dumps({"id": "b_empty", "text": "", "source": "web"}))
            records.append({"stem": "b", "row": i, "id": "b_empty", "reason": "empty_text"})
    with gzip.open(root / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    # c.parquet: 6 good rows, a null text and an empty text
    ids, texts, scores = [], [], []
    good = iter(GOOD_TEXT["c"])
    plan = ["g", "g", "g", "null", "g", "g", "empty", "g"] if bad else ["g"] * 6
    for i, kind in enumerate(plan):
        ids.append(f"c{i}")
        scores.append(i / 10)
        if kind == "g":
            texts.append(next(good))
            inputs.setdefault("c", []).append({"id": f"c{i}", "text": texts[-1], "score": scores[-1]})
            records.append({"stem": "c", "row": i, "id": f"c{i}", "reason": None})
        elif kind == "null":
            texts.append(None)
            records.append({"stem": "c", "row": i, "id": f"c{i}", "reason": "null_text"})
        else:
            texts.append("")
            records.append({"stem": "c", "row": i, "id": f"c{i}", "reason": "empty_text"})
    table = pa.table(
        {"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string()), "score": pa.array(scores)}
    )
    pq.write_table(table, root / "c.parquet")
    return {"records": records, "inputs": inputs}


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_args(corpus: Path, out: Path, *extra: str, command: str = "run") -> list[str]:
    return [command, "--input", str(corpus), "--output", str(out), "--no-progress", *SETS, *extra]


def final_files(out: Path, folders=("curated", "embeddings", "rejects")) -> dict[str, bytes]:
    """Bytes of every final (non-temporary) parquet file under ``folders``."""
    files = {}
    for folder in folders:
        for p in sorted((out / folder).glob("*.parquet")):
            files[f"{folder}/{p.name}"] = p.read_bytes()
    return files


def counts(stats: dict) -> dict:
    return {k: stats[k] for k in ("input", "kept", "dropped", "rejected", "rejected_by_reason", "shards")}


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    setup_logging(0)  # the CLI pointed loguru at CliRunner's stream


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    corpus = root / "corpus"
    expected = build_corpus(corpus)
    out = root / "out"
    result = invoke(*run_args(corpus, out))
    return SimpleNamespace(root=root, corpus=corpus, out=out, result=result, **expected)


# ---------------------------------------------------------------------------------------------------------------
# winnow run


def test_run_succeeds_and_writes_the_run_directory(main_run):
    assert main_run.result.exit_code == 0, main_run.result.output
    out = main_run.out
    assert (out / "config.resolved.yaml").is_file()
    assert (out / "stats.json").is_file()
    for stem in STEMS:
        for folder in ("embeddings", "curated", "rejects"):
            assert (out / folder / f"{stem}.parquet").is_file(), f"{folder}/{stem}.parquet"
        for stage in ("embed", "write"):
            assert (out / "completions" / stage / stem).is_file()
            assert json.loads((out / "stats" / stage / f"{stem}.json").read_text())["shards"] == 1
    leftovers = [p for p in out.rglob("*") if ".tmp" in p.name]
    assert not leftovers
    assert not any((out / "failures").rglob("*.json"))


def test_run_prints_a_summary(main_run):
    text = main_run.result.stderr
    assert "embed" in text and "write" in text
    assert "rejected by reason" in text and "malformed_json" in text


def test_resolved_config(main_run):
    data = yaml.safe_load((main_run.out / "config.resolved.yaml").read_text())
    assert data["winnow_version"] == winnow.__version__
    cfg = load_config(None, SETS[1::2], {"io.input": [str(main_run.corpus)], "io.output": str(main_run.out)})
    assert data["config_hash"] == cfg.fingerprint()
    assert data["embed"]["batch_size"] == 8
    assert data["io"]["input"] == [str(main_run.corpus)]
    assert data["io"]["output"] == str(main_run.out)


def test_curated_shards_keep_input_columns(main_run):
    config_hash = yaml.safe_load((main_run.out / "config.resolved.yaml").read_text())["config_hash"]
    for stem in STEMS:
        table = pq.read_table(main_run.out / "curated" / f"{stem}.parquet")
        rows = main_run.inputs[stem]
        input_columns = list(rows[0])
        # input columns first and unchanged, then the added ones (keep, drop_reason and any score columns)
        assert table.column_names[: len(input_columns)] == input_columns
        added = table.column_names[len(input_columns) :]
        assert {"keep", "drop_reason"} <= set(added)
        if list(STAGES) == ["embed", "write"]:
            assert added == ["keep", "drop_reason"]
        assert table.num_rows == len(rows) == 6
        for col in input_columns:
            assert table.column(col).to_pylist() == [r[col] for r in rows], f"{stem}.{col}"
        assert table.column("keep").to_pylist() == [True] * 6
        assert table.column("drop_reason").null_count == 6
        assert table.schema.field("keep").type == pa.bool_()
        assert table.schema.field("drop_reason").type == pa.string()
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        assert meta["winnow.version"] == winnow.__version__
        assert meta["winnow.config_hash"] == config_hash
        assert meta["winnow.model"] == BUNDLED_NAME


def test_curated_column_types(main_run):
    a = pq.read_schema(main_run.out / "curated" / "a.parquet")
    assert a.field("id").type == pa.string() and a.field("text").type == pa.string()
    assert a.field("n").type == pa.int64() and a.field("lang").type == pa.string()
    c = pq.read_schema(main_run.out / "curated" / "c.parquet")
    assert c.field("score").type == pa.float64()


def test_embeddings_match_curated_ids(main_run):
    for stem in STEMS:
        emb = pq.read_table(main_run.out / "embeddings" / f"{stem}.parquet")
        cur = pq.read_table(main_run.out / "curated" / f"{stem}.parquet")
        assert emb.column_names == ["id", "embedding"]
        assert emb.column("id").to_pylist() == cur.column("id").to_pylist()
        typ = emb.schema.field("embedding").type
        assert pa.types.is_fixed_size_list(typ) and typ.list_size == DIM and typ.value_type == pa.float32()
        vecs = np.stack(emb.column("embedding").to_numpy(zero_copy_only=False))
        assert vecs.shape == (6, DIM)
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
        meta = emb.schema.metadata
        assert meta[b"winnow.model"] == BUNDLED_NAME.encode() and b"winnow.config_hash" in meta


def test_rejects_hold_the_bad_rows_with_reasons(main_run):
    bad = [r for r in main_run.records if r["reason"]]
    for stem in STEMS:
        table = pq.read_table(main_run.out / "rejects" / f"{stem}.parquet")
        got = sorted(zip(table.column("row").to_pylist(), table.column("reason").to_pylist(), strict=True))
        want = sorted((r["row"], r["reason"]) for r in bad if r["stem"] == stem)
        assert got == want, stem
        shard_file = {"a": "a.jsonl", "b": "b.jsonl.gz", "c": "c.parquet"}[stem]
        assert all(f.endswith(shard_file) for f in table.column("file").to_pylist())
        if stem != "c":  # JSONL: 1-based line numbers and the raw line
            assert table.column("line").to_pylist() == [row + 1 for row in table.column("row").to_pylist()]
            assert all(raw for raw in table.column("raw").to_pylist())
        assert all(d for d in table.column("detail").to_pylist())
    a = pq.read_table(main_run.out / "rejects" / "a.parquet").to_pylist()
    assert {r["reason"]: r["id"] for r in a} == {
        "malformed_json": None,
        "missing_text": "a_missing",
        "empty_text": "a_empty",
    }
    assert any("unterminated" in r["raw"] for r in a)


def test_stats_add_up_with_exact_counts(main_run):
    stats = json.loads((main_run.out / "stats.json").read_text())
    assert stats["winnow_version"] == winnow.__version__
    assert stats["shards"] == 3
    # every stage with units under this config (no prefilter section: the pre-filter stages have none)
    assert set(stats["stages"]) == set(STAGES) - {"prefilter", "textdedup"}
    expected = {
        "input": 24,
        "kept": 18,
        "dropped": 0,
        "rejected": 6,
        "rejected_by_reason": {"empty_text": 3, "malformed_json": 1, "missing_text": 1, "null_text": 1},
        "shards": 3,
    }
    for name, s in stats["stages"].items():
        assert s["input"] == s["kept"] + s["dropped"] + s["rejected"], name
        assert sum(s["rejected_by_reason"].values()) == s["rejected"], name
    for name in ("embed", "write"):  # the stages that read the input shards
        assert counts(stats["stages"][name]) == expected, name


def test_every_input_record_appears_exactly_once(main_run):
    out = main_run.out
    by_id = {(r["stem"], r["id"]): (r["stem"], r["row"]) for r in main_run.records if r["id"]}
    seen: list[tuple[str, int]] = []
    for stem in STEMS:
        for id_ in pq.read_table(out / "curated" / f"{stem}.parquet").column("id").to_pylist():
            seen.append(by_id[(stem, id_)])
        for row in pq.read_table(out / "rejects" / f"{stem}.parquet").column("row").to_pylist():
            seen.append((stem, row))
    dupes = [k for k, v in Counter(seen).items() if v > 1]
    assert not dupes
    assert sorted(seen) == sorted((r["stem"], r["row"]) for r in main_run.records)


def test_rerun_with_same_config_skips_everything(main_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(main_run.out, out)
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*.parquet")}
    result = invoke(*run_args(main_run.corpus, out))
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*.parquet")} == before
    stats = json.loads((out / "stats.json").read_text())
    assert counts(stats["stages"]["write"])["input"] == 24


# ---------------------------------------------------------------------------------------------------------------
# exit codes


def test_fail_on_reject_exits_1(main_run, tmp_path):
    out = tmp_path / "out"
    result = invoke(*run_args(main_run.corpus, out, "--fail-on-reject", command="write"))
    assert result.exit_code == 1, result.output
    assert "6 input record(s) rejected" in result.output
    assert "--fail-on-reject" in result.output
    assert (out / "curated" / "a.parquet").is_file()  # the outputs are still written


def test_fail_on_reject_passes_on_a_clean_corpus(tmp_path):
    corpus = tmp_path / "clean"
    build_corpus(corpus, bad=False)
    result = invoke(*run_args(corpus, tmp_path / "out", "--fail-on-reject", command="write"))
    assert result.exit_code == 0, result.output


def test_failed_shard_exits_1_and_names_it(main_run, tmp_path, monkeypatch):
    original = WriteStage.process_shard

    def flaky(self, shard, stats):
        if shard.stem == "b":
            raise RuntimeError("disk on fire")
        return original(self, shard, stats)

    monkeypatch.setattr(WriteStage, "process_shard", flaky)
    out = tmp_path / "out"
    result = invoke(*run_args(main_run.corpus, out, command="write"))
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "failed" in text and "b: RuntimeError: disk on fire" in text
    assert (out / "curated" / "a.parquet").is_file() and (out / "curated" / "c.parquet").is_file()
    assert not (out / "curated" / "b.parquet").exists()
    assert not (out / "completions" / "write" / "b").exists()
    assert "disk on fire" in json.loads((out / "failures" / "write" / "b.json").read_text())["error"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--set", "io.bogus=1"], "io.bogus"),
        (["--set", "embed.batch_size=abc"], "embed.batch_size"),
        (["--set", "embed.device=tpu"], "embed.device"),
        (["--set", "embed.batch_size"], "key.sub=value"),
        (["--workers", "0"], "executor.workers"),
        (["--limit", "0"], "io.limit"),
    ],
)
def test_config_error_exits_2_and_creates_nothing(main_run, tmp_path, extra, needle):
    out = tmp_path / "out"
    result = invoke(*run_args(main_run.corpus, out, *extra))
    assert result.exit_code == 2, result.output
    assert "config error" in result.output
    assert needle in result.output
    assert not out.exists()


def test_missing_input_exits_2(tmp_path):
    out = tmp_path / "out"
    result = invoke("run", "--input", str(tmp_path / "nowhere"), "--output", str(out), "--no-progress")
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output
    assert not out.exists()


def test_error_messages_with_brackets_are_printed_verbatim(tmp_path):
    # "[bold]" / "[red]" would be read as rich markup (and dropped) if the message were not escaped
    missing = str(tmp_path / "shard[bold].jsonl")
    result = invoke("run", "--input", missing, "--output", str(tmp_path / "out"), "--no-progress")
    assert result.exit_code == 2, result.output
    assert "config error:" in result.output and missing in result.output
    result = invoke("config", "--set", "io.bogus[red]=1")
    assert result.exit_code == 2, result.output
    assert "config error:" in result.output and "io.bogus[red]" in result.output


@pytest.mark.parametrize(
    ("error", "code", "label"),
    [
        (ConfigError("bad key a[red]b[/red]"), 2, "oops"),
        (PlanError("no rows in [bold]x[/]"), 2, "oops"),
        (ShardError("s[1].parquet", "cannot read [italic]"), 1, "error"),
        (CurationError("failed: [b]"), 1, "error"),
    ],
)
def test_exit_on_error_maps_errors_to_exit_codes(error, code, label):
    console = Console(file=io.StringIO(), width=200)
    with pytest.raises(typer.Exit) as exc, exit_on_error(console, config_label="oops"):
        raise error
    assert exc.value.exit_code == code
    assert console.file.getvalue() == f"{label}: {error}\n"


def test_exit_on_error_passes_other_exceptions():
    console = Console(file=io.StringIO())
    with pytest.raises(KeyError), exit_on_error(console):
        raise KeyError("x")
    with exit_on_error(console):
        pass
    assert console.file.getvalue() == ""


def test_missing_output_exits_2(main_run):
    result = invoke("write", "--input", str(main_run.corpus), "--no-progress")
    assert result.exit_code == 2, result.output
    assert "--output" in result.output


def test_missing_config_file_exits_2(tmp_path):
    result = invoke("run", "-c", str(tmp_path / "nope.yaml"), "--output", str(tmp_path / "out"))
    assert result.exit_code == 2 and "not found" in result.output
    assert not (tmp_path / "out").exists()


def test_rerun_with_another_config_never_mixes_configs(main_run, tmp_path):
    """A rerun into a run directory made with another config refuses (exit 2, pointing at ``--overwrite``) and
    leaves it untouched; with ``--overwrite`` every output then carries the new config.

    (If winnow instead redoes exactly the stages a change affects, the rerun may succeed without
    ``--overwrite``; then too, no output may keep the old config.)"""
    out = tmp_path / "out"
    shutil.copytree(main_run.out, out)
    resolved = (out / "config.resolved.yaml").read_bytes()
    before = final_files(out)
    other = ["run", "--input", str(main_run.corpus), "--output", str(out), "--no-progress", *SETS]
    other += ["--set", "embed.batch_size=16"]

    result = invoke(*other)
    if result.exit_code != 0:
        assert result.exit_code == 2, result.output
        assert "--overwrite" in result.output
        assert (out / "config.resolved.yaml").read_bytes() == resolved
        assert final_files(out) == before
        result = invoke(*other, "--overwrite")
    assert result.exit_code == 0, result.output
    new_hash = yaml.safe_load((out / "config.resolved.yaml").read_text())["config_hash"]
    assert new_hash != yaml.safe_load(resolved)["config_hash"]
    for stem in STEMS:
        for folder in ("curated", "embeddings"):
            meta = pq.read_schema(out / folder / f"{stem}.parquet").metadata
            assert meta[b"winnow.config_hash"].decode() == new_hash, f"{folder}/{stem}"


# ---------------------------------------------------------------------------------------------------------------
# dry run, help, version


def test_dry_run_prints_shards_and_writes_nothing(main_run, tmp_path):
    out = tmp_path / "out"
    result = invoke(*run_args(main_run.corpus, out, "--dry-run"))
    assert result.exit_code == 0, result.output
    text = result.stdout.replace("\n", "")  # rich may fold long paths
    for name, stem in (("a.jsonl", "a"), ("b.jsonl.gz", "b"), ("c.parquet", "c")):
        assert f"{main_run.corpus / name} -> {stem}" in text
    assert "3 shard(s)" in text
    assert "config_hash" in text and "winnow_version" in text
    assert not out.exists()


@pytest.mark.parametrize(
    ("command", "needles"),
    [
        ([], ["run", "embed", "write", "config", "version"]),
        (["run"], ["--config", "--input", "--output", "--set", "--workers", "--overwrite", "--fail-on-reject"]),
        (["embed"], ["--config", "--input", "--output", "--set", "--dry-run", "--no-progress", "embeddings"]),
        (["write"], ["--config", "--input", "--output", "--set", "--limit", "--seed", "curated"]),
        (["config"], ["--config", "--set", "--schema"]),
        (["version"], ["version"]),
    ],
)
def test_help(command, needles):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    for needle in needles:
        assert needle in result.output, needle


def test_version():
    result = invoke("version")
    assert result.exit_code == 0 and result.stdout.strip() == winnow.__version__


def test_main_entry_point_exits_with_the_cli_code(capsys):
    with pytest.raises(SystemExit) as info:
        winnow.pipeline.cli.app.main(["version"])
    assert info.value.code in (0, None)
    assert winnow.__version__ in capsys.readouterr().out


def test_config_output_is_valid_yaml_for_long_values():
    long_output = "/data/" + "x" * 120 + "/run"
    result = invoke("config", "--set", f"io.output={long_output}", "--set", "run.name='[red]alert[/red]'")
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["io"]["output"] == long_output
    assert shown["run"]["name"] == "[red]alert[/red]"


def test_secrets_never_land_in_the_run_directory(main_run, tmp_path):
    out = tmp_path / "out"
    secret = "hunter2-do-not-leak"
    result = invoke(
        *run_args(main_run.corpus, out, "--set", f"io.storage_options.aws_secret_access_key={secret}", command="write")
    )
    assert result.exit_code == 0, result.output
    leaks = [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaks, leaks


# ---------------------------------------------------------------------------------------------------------------
# stage subcommands and workers


def test_embed_then_write_equals_run(main_run, tmp_path):
    out = tmp_path / "out"
    result = invoke(*run_args(main_run.corpus, out, command="embed"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "embeddings").glob("*.parquet")) == ["a.parquet", "b.parquet", "c.parquet"]
    assert not (out / "curated").exists()
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats["stages"]) == {"read", "embed"}  # `winnow embed` parses each shard once, then embeds

    result = invoke(*run_args(main_run.corpus, out, command="write"))
    assert result.exit_code == 0, result.output
    if list(STAGES) == ["embed", "write"]:  # `run` is exactly embed + write
        assert final_files(out) == final_files(main_run.out)
    else:  # `run` adds score columns: compare the rest
        assert final_files(out, ("embeddings", "rejects")) == final_files(main_run.out, ("embeddings", "rejects"))
        for stem in STEMS:
            ours = pq.read_table(out / "curated" / f"{stem}.parquet")
            theirs = pq.read_table(main_run.out / "curated" / f"{stem}.parquet")
            assert ours.select(ours.column_names).equals(theirs.select(ours.column_names))
    ours = yaml.safe_load((out / "config.resolved.yaml").read_text())
    theirs = yaml.safe_load((main_run.out / "config.resolved.yaml").read_text())
    assert ours["config_hash"] == theirs["config_hash"]
    stats = json.loads((out / "stats.json").read_text())
    main_stats = json.loads((main_run.out / "stats.json").read_text())
    assert set(stats["stages"]) == {"read", "embed", "write"}
    for stage in ("read", "embed", "write"):
        assert counts(stats["stages"][stage]) == counts(main_stats["stages"][stage])


def test_workers_2_in_a_subprocess_matches_in_process_run(main_run, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "winnow", "run", "--input", str(main_run.corpus), "--output", str(out)]
    cmd += ["--no-progress", *SETS, "--workers", "2", "-q"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours, theirs = final_files(out, ("curated", "rejects")), final_files(main_run.out, ("curated", "rejects"))
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        assert ours[name] == theirs[name], name
    for stem in STEMS:
        a = pq.read_table(out / "embeddings" / f"{stem}.parquet")
        b = pq.read_table(main_run.out / "embeddings" / f"{stem}.parquet")
        assert a.column("id").to_pylist() == b.column("id").to_pylist()
        va = np.stack(a.column("embedding").to_numpy(zero_copy_only=False))
        vb = np.stack(b.column("embedding").to_numpy(zero_copy_only=False))
        np.testing.assert_allclose(va, vb, atol=1e-5, rtol=0)
    stats = json.loads((out / "stats.json").read_text())
    assert counts(stats["stages"]["write"])["input"] == 24
