"""Config loading: defaults, YAML + ``--set`` + CLI precedence, error messages naming the key, frozen models,
the fingerprint, secret redaction, and the configs shipped in ``configs/``."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from winnow.core.errors import ConfigError
from winnow.pipeline.cli.app import app
from winnow.pipeline.config import EmbedSection, ExecutorSection, IOSection, RunSection, WinnowConfig, load_config

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def config_error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    return str(info.value)


# -- defaults and precedence --------------------------------------------------------------------------------------


def test_defaults_load():
    cfg = load_config(None)
    assert isinstance(cfg, WinnowConfig)
    assert cfg == WinnowConfig()
    assert cfg.io.input == [] and cfg.io.output is None
    assert cfg.io.text_field == "text" and cfg.io.id_field == "id"
    assert cfg.embed.model == "bundled" and cfg.embed.batch_size is None and cfg.embed.prefetch == 2
    assert cfg.executor.kind == "local" and cfg.executor.workers == 1
    assert load_config(None, [], {}) == cfg


def test_empty_yaml_file_gives_defaults(tmp_path):
    assert load_config(write_yaml(tmp_path / "empty.yaml", "")) == WinnowConfig()
    assert load_config(write_yaml(tmp_path / "comments.yaml", "# nothing here\n")) == WinnowConfig()


def test_precedence_yaml_then_set_then_cli(tmp_path):
    path = write_yaml(
        tmp_path / "c.yaml",
        {
            "io": {"output": "from_yaml", "text_field": "body", "limit": 3},
            "embed": {"batch_size": 32, "device": "cpu"},
            "executor": {"workers": 2},
        },
    )
    cfg = load_config(path)
    assert (cfg.io.output, cfg.io.text_field, cfg.embed.batch_size) == ("from_yaml", "body", 32)
    assert cfg.executor.workers == 2

    cfg = load_config(path, ["embed.batch_size=128", "io.output=from_set", "executor.workers=3", "io.limit=4"])
    assert cfg.embed.batch_size == 128 and cfg.io.output == "from_set" and cfg.executor.workers == 3
    assert cfg.io.limit == 4
    assert cfg.io.text_field == "body" and cfg.embed.device == "cpu"  # untouched YAML values survive

    cfg = load_config(
        path,
        ["embed.batch_size=128", "io.output=from_set", "executor.workers=3"],
        {"io.output": "from_cli", "executor.workers": None, "io.limit": 5, "io.input": ["a.jsonl", "b.parquet"]},
    )
    assert cfg.io.output == "from_cli"  # CLI beats --set beats YAML
    assert cfg.executor.workers == 3  # a None CLI value is ignored
    assert cfg.io.limit == 5
    assert cfg.io.input == ["a.jsonl", "b.parquet"]
    assert cfg.embed.batch_size == 128


def test_later_set_wins():
    assert load_config(None, ["embed.batch_size=8", "embed.batch_size=16"]).embed.batch_size == 16


def test_set_values_are_read_as_yaml():
    cfg = load_config(
        None,
        [
            "embed.batch_size=128",
            "embed.max_seq_length=null",
            "io.input=[a.jsonl, 'b/*.parquet']",
            "embed.pre_truncate_chars=~",
            "io.storage_options={anon: true}",
        ],
    )
    assert cfg.embed.batch_size == 128 and type(cfg.embed.batch_size) is int
    assert cfg.embed.max_seq_length is None and cfg.embed.pre_truncate_chars is None
    assert cfg.io.input == ["a.jsonl", "b/*.parquet"]
    assert cfg.io.storage_options == {"anon": True}


def test_single_input_string_becomes_a_list(tmp_path):
    assert load_config(None, ["io.input=data/x.jsonl"]).io.input == ["data/x.jsonl"]
    path = write_yaml(tmp_path / "c.yaml", {"io": {"input": "data/*.parquet"}})
    assert load_config(path).io.input == ["data/*.parquet"]


def test_cli_config_command_shows_the_precedence(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"embed": {"batch_size": 32}, "io": {"text_field": "body"}})
    result = CliRunner().invoke(app, ["config", "-c", str(path), "--set", "embed.batch_size=128"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["embed"]["batch_size"] == 128 and shown["io"]["text_field"] == "body"
    assert load_config(None, None, _flatten(shown)) == load_config(path, ["embed.batch_size=128"])


def test_cli_config_schema():
    result = CliRunner().invoke(app, ["config", "--schema"])
    assert result.exit_code == 0, result.output
    assert "batch_size" in result.stdout and "text_field" in result.stdout


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "storage_options":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# -- errors name the key ------------------------------------------------------------------------------------------


def test_unknown_key_names_key_and_allowed_keys():
    msg = config_error(None, ["io.txt_field=body"])
    assert "io.txt_field" in msg
    assert "unknown key" in msg
    for allowed in ("text_field", "id_field", "read_batch_size", "storage_options"):
        assert allowed in msg


def test_unknown_key_in_yaml_names_file_and_key(tmp_path):
    path = write_yaml(tmp_path / "typo.yaml", {"embed": {"batchsize": 8}})
    msg = config_error(path)
    assert str(path) in msg and "embed.batchsize" in msg and "batch_size" in msg


def test_unknown_section_lists_sections():
    msg = config_error(None, ["bogus.x=1"])
    assert "bogus" in msg and "unknown key" in msg
    for section in ("run", "io", "embed", "executor"):
        assert section in msg


def test_wrong_type_names_key_and_value():
    msg = config_error(None, ["embed.batch_size=abc"])
    assert "embed.batch_size" in msg and "integer" in msg and "abc" in msg


@pytest.mark.parametrize(
    ("override", "key", "bound"),
    [
        ("embed.batch_size=0", "embed.batch_size", "greater than or equal to 1"),
        ("io.read_batch_size=-1", "io.read_batch_size", "greater than or equal to 1"),
        ("embed.prefetch=65", "embed.prefetch", "less than or equal to 64"),
        ("executor.workers=0", "executor.workers", "greater than or equal to 1"),
        ("run.seed=-3", "run.seed", "greater than or equal to 0"),
        ("embed.pre_truncate_chars=10", "embed.pre_truncate_chars", "greater than or equal to 64"),
    ],
)
def test_out_of_range_names_key_and_bound(override, key, bound):
    msg = config_error(None, [override])
    assert key in msg and bound in msg


def test_bad_literal_names_allowed_values():
    msg = config_error(None, ["embed.device=tpu"])
    assert "embed.device" in msg and "tpu" in msg
    for allowed in ("auto", "cpu", "cuda"):
        assert allowed in msg
    msg = config_error(None, ["io.compression=lz5"])
    assert "io.compression" in msg and "zstd" in msg and "snappy" in msg


def test_every_error_is_reported_at_once():
    msg = config_error(None, ["embed.batch_size=0", "embed.device=tpu", "io.txt_field=x"])
    assert "embed.batch_size" in msg and "embed.device" in msg and "io.txt_field" in msg


@pytest.mark.parametrize("item", ["embed.batch_size", "embed.batch_size:128", ""])
def test_override_without_equals_sign(item):
    msg = config_error(None, [item])
    assert "key.sub=value" in msg
    assert repr(item) in msg


@pytest.mark.parametrize("item", ["=3", "embed..batch_size=3", ".x=1"])
def test_override_with_empty_key(item):
    assert "empty key" in config_error(None, [item])


def test_override_with_invalid_yaml_value():
    msg = config_error(None, ["io.input=[a, b"])
    assert "io.input" in msg and "YAML" in msg


def test_override_below_a_scalar_is_an_error():
    msg = config_error(None, ["io.output=x", "io.output.sub=1"])
    assert "io.output" in msg and "not a section" in msg


def test_yaml_top_level_must_be_a_mapping(tmp_path):
    path = write_yaml(tmp_path / "list.yaml", "- a\n- b\n")
    msg = config_error(path)
    assert str(path) in msg and "mapping" in msg and "list" in msg


def test_invalid_yaml_file(tmp_path):
    path = write_yaml(tmp_path / "broken.yaml", "embed: {batch_size: 8\n")
    msg = config_error(path)
    assert str(path) in msg and "YAML" in msg


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    msg = config_error(missing)
    assert "not found" in msg and str(missing) in msg


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        load_config(None, ["embed.batch_size=0"])


def test_section_with_only_comments_is_empty(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", "run:\n  seed: 1\nembed:\n  # batch_size: 8\n")
    cfg = load_config(path)
    assert cfg.run.seed == 1 and cfg.embed == EmbedSection()


# -- frozen -------------------------------------------------------------------------------------------------------


def test_config_is_frozen():
    cfg = load_config(None)
    with pytest.raises(ValidationError):
        cfg.embed.batch_size = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.io = IOSection()  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.executor.workers = 8  # type: ignore[misc]
    assert cfg.embed.batch_size is None and cfg.executor.workers == 1


@pytest.mark.parametrize("section", [RunSection, IOSection, EmbedSection, ExecutorSection, WinnowConfig])
def test_every_section_forbids_extra_keys(section):
    with pytest.raises(ValidationError):
        section.model_validate({"definitely_not_a_key": 1})


# -- fingerprint --------------------------------------------------------------------------------------------------


def test_fingerprint_is_stable():
    a = load_config(None, ["embed.batch_size=8"]).fingerprint()
    b = load_config(None, ["embed.batch_size=8"]).fingerprint()
    assert a == b
    assert len(a) == 16 and int(a, 16) >= 0


@pytest.mark.parametrize(
    "override",
    [
        "embed.model=/some/local/model",
        "io.text_field=body",
        "io.id_field=doc_id",
        "embed.store_dtype=float16",
        "io.limit=10",
        "io.max_chars=100",
        "run.seed=1",
    ],
)
def test_fingerprint_changes_with_outputs(override):
    assert load_config(None, [override]).fingerprint() != load_config(None).fingerprint()


@pytest.mark.parametrize(
    "override",
    [
        "executor.workers=4",
        "executor.torch_threads=1",
        "executor.start_method=spawn",
        "run.name=another",
        "io.output=/elsewhere",
        "io.storage_options={key: abc}",
    ],
)
def test_fingerprint_ignores_executor_name_output_credentials(override):
    assert load_config(None, [override]).fingerprint() == load_config(None).fingerprint()


# -- redaction ----------------------------------------------------------------------------------------------------


def test_resolved_yaml_redacts_secret_looking_keys():
    opts = (
        "io.storage_options={key: AKIAEXAMPLE, secret: s3cr3t-value, anon: false, "
        "client_kwargs: {endpoint_url: 'http://minio:9000', aws_session_token: tok-value}, "
        "password: pw-value, credentials: {private: cred-value}}"
    )
    cfg = load_config(None, [opts])
    text = cfg.to_yaml()
    for secret in ("AKIAEXAMPLE", "s3cr3t-value", "tok-value", "pw-value", "cred-value"):
        assert secret not in text
    data = yaml.safe_load(text)
    so = data["io"]["storage_options"]
    assert so["key"] == so["secret"] == so["password"] == so["credentials"] == "<redacted>"
    assert so["client_kwargs"]["aws_session_token"] == "<redacted>"
    assert so["client_kwargs"]["endpoint_url"] == "http://minio:9000"  # not secret: kept
    assert so["anon"] is False
    # redaction is for the output only; the config itself keeps the values
    assert cfg.io.storage_options["secret"] == "s3cr3t-value"


def test_resolved_yaml_extra_header_and_round_trip():
    cfg = load_config(None, ["embed.batch_size=8", "io.input=[x.jsonl]", "io.output=out"])
    text = cfg.to_yaml(extra={"winnow_version": "9.9.9", "config_hash": cfg.fingerprint()})
    data = yaml.safe_load(text)
    assert data["winnow_version"] == "9.9.9" and data["config_hash"] == cfg.fingerprint()
    del data["winnow_version"], data["config_hash"]
    assert WinnowConfig.model_validate(data) == cfg


def test_resolved_yaml_redacts_auth_headers_and_connection_strings():
    cfg = load_config(
        None,
        [
            "io.storage_options={client_kwargs: {headers: {Authorization: 'Bearer bearer-value'}}, "
            "connection_string: 'DefaultEndpointsProtocol=https;AccountKey=account-key-value'}"
        ],
    )
    text = cfg.to_yaml()
    assert "bearer-value" not in text
    assert "account-key-value" not in text


# -- shipped configs ----------------------------------------------------------------------------------------------


def test_configs_are_shipped():
    assert {p.name for p in SHIPPED_CONFIGS} >= {"default.yaml", "quickstart.yaml"}


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    cfg = load_config(path)
    assert isinstance(cfg, WinnowConfig)
    assert cfg.to_yaml()


def test_default_yaml_holds_the_defaults():
    data = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))
    for section in ("run", "io", "embed", "executor"):
        assert set(data[section]) == set(WinnowConfig.model_fields[section].annotation.model_fields), section
    assert load_config(REPO / "configs" / "default.yaml") == WinnowConfig()


def test_default_yaml_lists_every_section():
    data = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))
    assert set(data) == set(WinnowConfig.model_fields)
    for name, field in WinnowConfig.model_fields.items():
        if data[name] is None:  # an optional section, off by default (prefilter)
            assert type(None) in typing.get_args(field.annotation), name
            assert field.default is None, name
            continue
        assert set(data[name]) == set(field.annotation.model_fields), name


def _fields(model, prefix=""):
    """Every (dotted key, FieldInfo) of ``model``, nested sections included."""
    for name, info in model.model_fields.items():
        yield prefix + name, info
        for t in typing.get_args(info.annotation) or (info.annotation,):
            if isinstance(t, type) and issubclass(t, BaseModel):
                yield from _fields(t, prefix + name + ".")


def test_every_config_field_has_a_description():
    missing = [key for key, info in _fields(WinnowConfig) if not (info.description or "").strip()]
    assert missing == []
    assert len(list(_fields(WinnowConfig))) > 100


def test_schema_documents_every_key_of_default_yaml():
    """``winnow config --schema`` and configs/default.yaml describe the same keys, each with its help text."""
    schema = WinnowConfig.model_json_schema()
    data = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))

    def resolve(node):
        if "$ref" in node:
            return schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        for alt in node.get("anyOf", []):
            if "$ref" in alt:
                return resolve(alt)
        return node

    def walk(node, values, prefix):
        props = resolve(node).get("properties", {})
        for key, value in values.items():
            assert key in props, f"{prefix}{key} is in default.yaml but not in the schema"
            assert props[key].get("description"), f"{prefix}{key} has no description in the schema"
            if isinstance(value, dict) and value and "properties" in resolve(props[key]):
                walk(props[key], value, f"{prefix}{key}.")

    walk(schema, data, "")
    assert set(data) == set(schema["properties"])


def test_docstring_args_parse_continuation_lines():
    from winnow.core.section import docstring_args

    doc = """Title.

    Args:
        a: first line
            continues here.
        b: one line.

    Returns:
        nothing: not an arg.
    """
    assert docstring_args(doc) == {"a": "first line continues here.", "b": "one line."}
