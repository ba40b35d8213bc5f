"""Bad-config corners: each fails before any work with a ConfigError naming the key or the file, never a traceback."""

from __future__ import annotations

import os

import pytest

from winnow.core.errors import ConfigError
from winnow.core.io import list_shards
from winnow.pipeline.config import MAX_CONFIG_BYTES, load_config


def test_a_config_file_that_is_not_utf8_names_the_file_and_the_byte_offset(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("run:\n  name: caf\u00e9\n".encode("latin-1"))  # é is 0xe9 at byte offset 16
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "not UTF-8" in message and "byte offset 16" in message and "0xe9" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    "text, line",
    [
        ("run:\n  name: x\ncluster: &c\n  k: 3\n", 3),  # an anchor alone
        ("a: &a [1, 2]\nb: [*a, *a]\n", 1),  # the "billion laughs" shape (its first anchor)
    ],
)
def test_yaml_anchors_and_aliases_are_refused_with_the_file_and_line(tmp_path, text, line):
    path = tmp_path / "alias.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and f"line {line}:" in message and "anchors and aliases" in message


def test_a_billion_laughs_config_fails_fast_without_expanding(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert path.stat().st_size < 1000
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_config(path)


def test_a_config_file_over_the_size_bound_is_refused(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "too large" in str(info.value) and str(MAX_CONFIG_BYTES) in str(info.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("cluster.k=true", "cluster.k"),
        ("run.seed=false", "run.seed"),
        ("embed.batch_size=true", "embed.batch_size"),  # int | None
        ("executor.slurm.max_concurrent=true", "executor.slurm.max_concurrent"),
        ("prune.keep_count=true", "prune.keep_count"),
        ("mix.seed=true", "mix.seed"),
    ],
)
def test_a_boolean_is_not_read_as_an_integer(override, key):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert f"  {key}: " in str(info.value) and "expected an integer, got a boolean" in str(info.value)


def test_bool_fields_still_take_booleans_and_int_fields_ints():
    cfg = load_config(overrides=["cluster.k=3", "executor.slurm.srun=false"])
    assert cfg.cluster.k == 3 and cfg.executor.slurm.srun is False


@pytest.mark.parametrize("key", ["run.seed", "cluster.seed"])
def test_a_seed_of_2_31_or_more_is_refused_because_faiss_takes_32_bit_seeds(key):
    assert load_config(overrides=[f"{key}={2**31 - 1}"])  # the largest allowed
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"{key}={2**31}"])
    assert f"  {key}: " in str(info.value) and "below 2**31" in str(info.value) and "FAISS" in str(info.value)


@pytest.mark.parametrize("patterns", [[""], ["  "], ["data/*.jsonl", ""]])
def test_an_empty_input_pattern_is_refused(patterns):
    with pytest.raises(ConfigError) as info:
        load_config(cli_values={"io.input": patterns})
    assert "  io.input: " in str(info.value) and "empty" in str(info.value)
    with pytest.raises(ConfigError, match="input pattern is empty"):
        list_shards(patterns)


def _corpus(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.jsonl").write_text('{"id": "1", "text": "hello"}\n', encoding="utf-8")
    return folder


@pytest.mark.parametrize("pattern", ["{d}", "{d}/**/*.jsonl"])
def test_an_output_inside_an_input_folder_is_refused_naming_both(tmp_path, pattern):
    from winnow.pipeline.runner import STAGES, run_pipeline  # the runner pulls in datatrove, torch and FAISS

    data = _corpus(tmp_path / "data")
    out = data / "run"
    cfg = load_config(cli_values={"io.input": [pattern.format(d=data)], "io.output": str(out)})
    with pytest.raises(ConfigError) as info:
        run_pipeline(cfg, list(STAGES))
    message = str(info.value)
    assert f"the output {str(out)!r} is inside the input {pattern.format(d=data)!r}" in message
    assert "own outputs as input" in message
    assert not out.exists()


def test_an_input_glob_matching_files_under_the_output_is_refused(tmp_path):
    from winnow.pipeline.runner import STAGES, run_pipeline  # the runner pulls in datatrove, torch and FAISS

    out = tmp_path / "run"
    _corpus(out / "curated")
    cfg = load_config(cli_values={"io.input": [str(out / "curated" / "*.jsonl")], "io.output": str(out)})
    with pytest.raises(ConfigError) as info:
        run_pipeline(cfg, list(STAGES))
    assert f"lies inside the output {str(out)!r}" in str(info.value)
    assert str(out / "curated" / "a.jsonl") in str(info.value)


def test_an_output_beside_the_inputs_is_allowed(tmp_path):
    from winnow.pipeline.runner import _check_output_outside_inputs

    data = _corpus(tmp_path / "data")
    cfg = load_config(cli_values={"io.input": [str(data)], "io.output": str(tmp_path / "data-run")})
    _check_output_outside_inputs(cfg, list_shards(cfg.io.input))  # "data-run" is not inside "data"


def _dry_run(*args: str):
    from typer.testing import CliRunner

    from winnow.pipeline.cli.app import app

    return CliRunner().invoke(app, ["run", "--dry-run", "--no-progress", *args])


def test_a_dry_run_never_prints_the_password_of_an_input_url(tmp_path):
    result = _dry_run("--input", "https://u:pw@127.0.0.1:1/x.jsonl", "--output", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output  # a config error (the filesystem is missing or unreachable)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert "pw" not in result.output
    assert "https://<redacted>@127.0.0.1:1/x.jsonl" in result.output


def test_a_dry_run_redacts_credentials_in_the_resolved_config(tmp_path):
    data = _corpus(tmp_path / "data")
    result = _dry_run("--input", str(data), "--output", "s3://key:secret@bucket/run")
    assert result.exit_code == 0, result.output
    assert "secret" not in result.output and "key:" not in result.output
    assert "output: s3://<redacted>@bucket/run" in result.output


def test_to_yaml_redacts_userinfo_in_every_url():
    cfg = load_config(
        overrides=[
            "score.backend=llm",
            "score.llm.endpoint=http://bob:hunter2@127.0.0.1:8000/v1",
            "score.llm.model_name=m",
        ],
        cli_values={"io.input": ["https://u:pw@h/x.jsonl", "data/*.jsonl"], "io.output": "s3://k:s@b/run"},
    )
    text = cfg.to_yaml()
    assert "hunter2" not in text and "pw@" not in text and "k:s@" not in text
    assert "http://<redacted>@127.0.0.1:8000/v1" in text and "https://<redacted>@h/x.jsonl" in text
    assert "data/*.jsonl" in text
    assert cfg.io.input[0] == "https://u:pw@h/x.jsonl"  # only the rendering is redacted, not the value used


def test_error_messages_never_show_url_credentials():
    from winnow.core.errors import ShardError

    assert (
        str(ShardError("s3://key:secret@bucket/x.jsonl", "cannot read"))
        == "s3://<redacted>@bucket/x.jsonl: cannot read"
    )
    assert "secret" not in str(ConfigError("input 'https://a:secret@h/x' does not exist"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_output_folder_gives_a_clear_error_naming_it(tmp_path):
    from winnow.pipeline.runner import STAGES, run_pipeline  # the runner pulls in datatrove, torch and FAISS

    data = _corpus(tmp_path / "data")
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        cfg = load_config(cli_values={"io.input": [str(data)], "io.output": str(parent / "run")})
        with pytest.raises(ConfigError) as info:
            run_pipeline(cfg, list(STAGES))
    finally:
        parent.chmod(0o700)
    assert f"cannot write the run directory {parent / 'run'}" in str(info.value)
    assert "Permission denied" in str(info.value)


def test_an_output_under_a_file_gives_a_clear_error_naming_it(tmp_path):
    from winnow.pipeline.runner import STAGES, run_pipeline  # the runner pulls in datatrove, torch and FAISS

    data = _corpus(tmp_path / "data")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    cfg = load_config(cli_values={"io.input": [str(data)], "io.output": str(blocker / "run")})
    with pytest.raises(ConfigError) as info:
        run_pipeline(cfg, list(STAGES))
    assert f"cannot write the run directory {blocker / 'run'}" in str(info.value)
    assert "choose an output folder winnow can write to" in str(info.value)


def test_a_permission_error_creating_the_run_directory_is_a_config_error(tmp_path, monkeypatch):
    """The read-only case as root too (root ignores permissions): ``makedirs`` is made to fail as it would."""
    from winnow.core import lock
    from winnow.pipeline.runner import STAGES, run_pipeline  # the runner pulls in datatrove, torch and FAISS

    data = _corpus(tmp_path / "data")
    out = tmp_path / "read-only" / "run"
    real = os.makedirs

    def denied(path, *args, **kwargs):
        if str(path).startswith(str(out)):
            raise PermissionError(13, "Permission denied", str(out))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(lock.os, "makedirs", denied)
    cfg = load_config(cli_values={"io.input": [str(data)], "io.output": str(out)})
    with pytest.raises(ConfigError) as info:
        run_pipeline(cfg, list(STAGES))
    assert str(info.value) == (
        f"cannot write the run directory {out}: Permission denied ({out}); choose an output folder winnow can write to"
    )


def test_log_messages_never_show_url_credentials():
    from loguru import logger

    from winnow.core.logging import apply_logging

    apply_logging()
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(str(m)), level="WARNING", format="{message}")
    try:
        logger.warning("cannot read {}", "s3://key:secret@bucket/x.jsonl")
    finally:
        logger.remove(sink)
    assert seen == ["cannot read s3://<redacted>@bucket/x.jsonl\n"]
