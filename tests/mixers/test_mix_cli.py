"""``winnow mix``: the JSON equals the planner's plan, --explain lists every candidate, usage errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from winnow.mixers.config import MixSection
from winnow.mixers.planner import PLAN_FILE, build_plan
from winnow.pipeline.cli.mix import load_mix_config, mix_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("mix")(mix_command)


@app.callback()
def _group() -> None:
    """Test app: `mix` as a subcommand, as on the winnow app."""


runner = CliRunner()
ENV = {"COLUMNS": "240"}
SMALL = ["--budget-tokens", "6e4", "--set", "mix.law.a=200"]  # s_0 > 1 for these small pools


def make_run(root: Path, with_quality: bool = True, keep: float = 0.85) -> Path:
    """``root/run/curated/s{0,1,2}.parquet`` with text, source, keep (+ quality columns, + repeat in s1)."""
    rng = np.random.default_rng(0)
    run = root / "run"
    (run / "curated").mkdir(parents=True)
    for s in range(3):
        n = 80
        texts = [" ".join(f"s{s}d{i}w{j}" for j in range(int(k))) for i, k in enumerate(rng.integers(5, 60, n))]
        score = rng.uniform(0, 1, n).astype(np.float32)
        cols = {"id": [f"s{s}:{i}" for i in range(n)], "text": texts}
        cols["source"] = [("web", "code", "books")[i] for i in rng.integers(0, 3, n)]
        if with_quality:
            cols["quality_score"] = pa.array(score, pa.float32())
            cols["quality_overall"] = pa.array(np.clip(1 + np.floor(score * 5), 1, 5).astype(np.int8), pa.int8())
            cols["quality_domain"] = [("Technology", "Coding", "Culture")[i] for i in rng.integers(0, 3, n)]
        cols["keep"] = rng.uniform(size=n) < keep
        if s == 1:
            cols["repeat"] = pa.array(rng.integers(1, 3, n), pa.int32())
        pq.write_table(pa.table(cols), run / "curated" / f"s{s}.parquet")
    (run / "config.resolved.yaml").write_text("winnow_version: 0.1.0\nconfig_hash: 0123456789abcdef\n")
    return run


def mix(*args: str):
    return runner.invoke(app, ["mix", *args], env=ENV)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path)


def test_json_equals_the_planner_and_the_file(run_dir):
    result = mix("--run", str(run_dir), *SMALL, "--set", "mix.upsample.domains=[code]", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    expected = build_plan(
        str(run_dir), MixSection(budget_tokens=60_000, law={"a": 200.0}, upsample={"domains": ["code"]})
    )
    assert plan == expected
    assert (run_dir / PLAN_FILE).read_text(encoding="utf-8") == result.stdout
    assert plan["budget"]["tokens"] == 60_000 and plan["config_hash"] == "0123456789abcdef"
    assert sum(p["tokens"] for p in plan["pools"]) == 60_000
    assert plan["phases"][1]["start_token"] == 48_000
    assert plan["pool_definition"]["id_column"] == "id"


def test_plan_records_the_configured_id_column(run_dir):
    result = mix("--run", str(run_dir), *SMALL, "--set", "io.id_field=doc_id", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pool_definition"]["id_column"] == "doc_id"


def test_explain_lists_every_candidate(run_dir):
    result = mix("--run", str(run_dir), *SMALL, "--explain")
    assert result.exit_code == 0, result.output
    plan = json.loads((run_dir / PLAN_FILE).read_text())
    assert len(plan["candidates"]) == 4
    for c in plan["candidates"]:
        line = f"top {c['m']} ({', '.join(c['quality_buckets'])}): {c['note']}"
        assert line in result.stdout
        assert f"{c['predicted_error']:.6g}" in result.stdout
    chosen = plan["choice"]
    assert (
        f"chosen: top {chosen['m']} (the law's best: top {chosen['law_best_m']}); {chosen['reason']}" in result.stdout
    )
    assert "law parameters" in result.stdout and "config (mix.law.a)" in result.stdout
    assert "plan written to" in result.stdout


def test_summary_without_quality_columns_falls_back_to_one_bucket(tmp_path):
    run = make_run(tmp_path, with_quality=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"io:\n  output: {run}\n")  # --run defaults to io.output
    result = mix("-c", str(cfg), "--budget-tokens", "5e4")
    assert result.exit_code == 0, result.output
    assert "top 1 of 1 quality bucket(s): all" in result.stdout
    assert "no quality_score column" in result.stderr
    plan = json.loads((run / PLAN_FILE).read_text())
    assert plan["pool_definition"]["quality"]["kind"] == "none"
    assert {p["domain"] for p in plan["pools"]} == {"web", "code", "books"}


def test_fraction_outside_range_warns_on_stderr(run_dir):
    result = mix(
        "--run", str(run_dir), *SMALL, "--set", "mix.upsample.domains=code", "--set", "mix.upsample.fraction=0.4"
    )
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "mix.upsample.fraction = 0.4 is outside 0.1-0.2" in result.stderr
    assert json.loads((run_dir / PLAN_FILE).read_text())["phases"][1]["start_token"] == 36_000


def test_flops_and_model_params(run_dir):
    result = mix("--run", str(run_dir), "--flops", "6e9", "--model-params", "1e4", "--set", "mix.law.a=200", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["budget"] == {
        "tokens": 100_000, "source": "mix.flops / (6 · mix.model_params)", "flops": 6e9, "model_params": 1e4,
    }  # fmt: skip
    assert all(c["muennighoff_loss"] is not None for c in plan["candidates"])


def test_config_mix_section_and_precedence(tmp_path, run_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mix:\n  flops: 1e20\n  model_params: 1e9\n  max_repeats: 8\n  law: {a: 200}\n")
    _, section = load_mix_config(str(cfg), ["mix.max_repeats=4"], budget_tokens=5e4)
    assert (section.budget_tokens, section.flops, section.max_repeats, section.law.a) == (50_000, None, 4.0, 200.0)
    result = mix("-c", str(cfg), "--run", str(run_dir), "--budget-tokens", "5e4", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["budget"]["tokens"] == 50_000 and plan["max_repeats"] == 8.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget-tokens", "0"], "mix.budget_tokens"),
        (["--budget-tokens", "-5"], "mix.budget_tokens"),
        ([], "no budget"),
        (["--budget-tokens", "1e5", "--flops", "1e20"], "exclusive"),
        (["--budget-tokens", "1e5", "--set", "mix.nope=1"], "mix.nope: unknown key"),
        (["--budget-tokens", "1e5", "--set", "mix.upsample.fraction=2"], "mix.upsample.fraction"),
        (["--budget-tokens", "1e9"], "cannot be met within mix.max_repeats = 16"),
    ],
)
def test_usage_errors_exit_2(run_dir, args, message):
    result = mix("--run", str(run_dir), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stdout == ""


def test_missing_run_no_shards_no_kept_rows_exit_2(tmp_path):
    result = mix("--run", str(tmp_path / "nope"), "--budget-tokens", "1e5")
    assert result.exit_code == 2 and "run directory not found" in result.stderr
    (tmp_path / "empty").mkdir()
    result = mix("--run", str(tmp_path / "empty"), "--budget-tokens", "1e5")
    assert result.exit_code == 2 and "no curated shards" in result.stderr
    run = make_run(tmp_path, keep=0.0)
    result = mix("--run", str(run), "--budget-tokens", "1e5")
    assert result.exit_code == 2 and "no kept rows" in result.stderr
    assert not (run / PLAN_FILE).exists()
    result = mix("--budget-tokens", "1e5")
    assert result.exit_code == 2 and "--run" in result.stderr


def test_unreadable_shard_exits_1(run_dir):
    (run_dir / "curated" / "s1.parquet").write_bytes(b"not parquet")
    result = mix("--run", str(run_dir), *SMALL)
    assert result.exit_code == 1 and "curated/s1.parquet" in result.stderr


def test_mix_reads_the_runs_own_config_and_only_the_manifests_shards(tmp_path):
    """A run made with ``io.text_field=body`` plans without ``-c`` (the run's config.resolved.yaml is the base), and
    a shard removed from the inputs (its curated file still there) is not planned over: the manifest is the list."""
    from winnow.core.io import Shard
    from winnow.core.manifest import MANIFEST, Manifest

    run = make_run(tmp_path)
    for s in range(3):
        t = pq.read_table(run / "curated" / f"s{s}.parquet")
        pq.write_table(t.rename_columns(["body" if c == "text" else c for c in t.column_names]),
                       run / "curated" / f"s{s}.parquet")  # fmt: skip
    (run / "config.resolved.yaml").write_text(
        "winnow_version: 0.1.0\nconfig_hash: 0123456789abcdef\nio:\n  text_field: body\n"
    )
    shards = [Shard(url=f"/data/s{s}.jsonl", stem=f"s{s}", format="jsonl", fingerprint="1-x") for s in (0, 1)]
    manifest = Manifest.from_shards(shards, config_hash="0123456789abcdef", winnow_version="0.1.0")
    (run / MANIFEST).write_text(manifest.to_json())
    result = mix("--run", str(run), *SMALL, "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [s["path"] for s in plan["shards"]] == ["curated/s0.parquet", "curated/s1.parquet"]
    assert plan["pool_definition"]["text_column"] == "body"
    # with -c (here: the defaults) the run's config is not used: the default text column is missing
    cfg = tmp_path / "plain.yaml"
    cfg.write_text("run:\n  seed: 0\n")
    result = mix("-c", str(cfg), "--run", str(run), *SMALL)
    assert result.exit_code == 2 and "text" in result.output
