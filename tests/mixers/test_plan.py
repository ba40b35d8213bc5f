"""The typed mixture plan and the shared pool rule: the model reads back exactly what the planner writes, refuses
other keys by name, and the pool rule and token count of the plan give the planner's pools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from winnow.mixers.config import MixSection
from winnow.mixers.plan import (
    PLAN_FILE,
    DatamanLevels,
    DomainColumn,
    MixturePlan,
    OneBucket,
    OneDomain,
    PoolDefinition,
    QuantileBuckets,
    UpsamplePhase,
    WhitespaceCount,
    describe_validation_error,
)
from winnow.mixers.planner import build_mixture_plan, build_plan, plan_json, pool_stats, write_plan
from winnow.mixers.pools import TokenCounter, kept_expr, pool_rule, repeat_expr

SOURCES = ("web", "code", "books")
SMALL = {"law": {"a": 200.0}, "budget_tokens": 5_000}


def make_run(root: Path, rows: int = 60) -> Path:
    """``root/run/curated/s<i>.parquet``: two shards with scores, levels and sources; shard 1 has ``repeat``."""
    rng = np.random.default_rng(1)
    run = root / "run"
    (run / "curated").mkdir(parents=True)
    for s in range(2):
        lengths = rng.integers(0, 25, rows)
        columns = {
            "id": [f"s{s}:{i}" for i in range(rows)],
            "text": [" ".join(f"w{j}" for j in range(n)) if i % 17 else None for i, n in enumerate(lengths)],
            "source": [SOURCES[i] if i < 3 else None for i in rng.integers(0, 4, rows)],
            "quality_score": pa.array(rng.uniform(0, 1, rows).astype(np.float32)),
            "quality_overall": pa.array(rng.integers(1, 6, rows).tolist(), pa.int64()),
            "keep": pa.array(rng.uniform(size=rows) < 0.9),
        }
        if s == 1:
            columns["repeat"] = pa.array(rng.integers(0, 4, rows).tolist(), pa.int32())
        pq.write_table(pa.table(columns), run / "curated" / f"s{s}.parquet", row_group_size=16)
    (run / "config.resolved.yaml").write_text("config_hash: 0123456789abcdef\n")
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("plan"))


SETTINGS = [
    {"upsample": {"domains": ["code"]}, "seed": 3, **SMALL},
    {"pools": {"quality": "dataman_levels"}, **SMALL},
    {"pools": {"quality": "none", "domain": "none"}, **SMALL},
    {"pools": {"n_buckets": 1}, "model_params": 1e6, **SMALL},
]


# =============================================================================================================
# The model is the planner's JSON
# =============================================================================================================
@pytest.mark.parametrize("settings", SETTINGS)
def test_model_round_trips_the_planner_json_byte_for_byte(run, settings):
    mix = MixSection.model_validate(settings)
    plan = build_mixture_plan(str(run), mix)
    text = plan_json(build_plan(str(run), mix))
    assert plan.to_json() == text  # the model writes what the dict API writes
    again = MixturePlan.model_validate_json(text)
    assert again == plan and again.to_json() == text
    assert MixturePlan.model_validate(json.loads(text)).to_dict() == json.loads(text)
    assert list(plan.to_dict()) == list(MixturePlan.model_fields)  # keys in the written order


def test_sections_are_typed_by_their_kind(run):
    mix = MixSection.model_validate(SETTINGS[0])
    plan = build_mixture_plan(str(run), mix)
    assert isinstance(plan.pool_definition.quality, QuantileBuckets)
    assert isinstance(plan.pool_definition.domain, DomainColumn) and plan.pool_definition.domain.null == "unknown"
    assert isinstance(plan.token_count, WhitespaceCount)
    assert [type(p).__name__ for p in plan.phases] == ["BasePhase", "UpsamplePhase"]
    assert isinstance(plan.phases[1], UpsamplePhase) and plan.phases[1].domains == ["code"]
    flat = build_mixture_plan(str(run), MixSection.model_validate(SETTINGS[2]))
    assert isinstance(flat.pool_definition.quality, OneBucket) and isinstance(flat.pool_definition.domain, OneDomain)
    assert [type(p).__name__ for p in flat.phases] == ["BasePhase"]


def test_write_plan_takes_the_model_or_its_dict(run, tmp_path):
    mix = MixSection.model_validate(SETTINGS[0])
    plan = build_mixture_plan(str(run), mix)
    write_plan(str(run), plan)
    first = (run / PLAN_FILE).read_bytes()
    write_plan(str(run), plan.to_dict())
    assert (run / PLAN_FILE).read_bytes() == first == plan.to_json().encode()
    with pytest.raises(ValidationError, match="surprise"):
        plan_json({**plan.to_dict(), "surprise": 1})  # only a well-formed plan is written


# =============================================================================================================
# Refused plans name the key
# =============================================================================================================
def _problems(data: dict) -> str:
    with pytest.raises(ValidationError) as e:
        MixturePlan.model_validate(data)
    return describe_validation_error(e.value)


def test_missing_unknown_and_bad_keys_are_named(run):
    good = build_mixture_plan(str(run), MixSection.model_validate(SETTINGS[0])).to_dict()
    data = json.loads(json.dumps(good))
    del data["budget"]
    del data["pools"][1]["phase_tokens"]
    assert _problems(data) == "the plan lacks budget, pools[1].phase_tokens"
    data = json.loads(json.dumps(good))
    data["extra"] = 1
    data["pool_definition"]["quality"]["bins"] = 3
    data["phases"][1]["shift"] = 0
    assert _problems(data) == "the plan has unknown key(s) pool_definition.quality.bins, phases[1].shift, extra"
    data = json.loads(json.dumps(good))
    data["token_count"]["method"] = "bpe"
    data["seed"] = "seven"
    problems = _problems(data)
    assert problems.startswith("bad value(s): ") and "seed (" in problems and "token_count (" in problems
    data = json.loads(json.dumps(good))
    data["pool_definition"]["domain"] = {"column": None, "null": "unknown"}  # the one-domain form has a label
    assert _problems(data) == "the plan lacks pool_definition.domain.label; the plan has unknown key(s) " + (
        "pool_definition.domain.null"
    )


# =============================================================================================================
# One pool rule, one token count
# =============================================================================================================
def _rows(run: Path) -> pl.DataFrame:
    frames = []
    for f in sorted((run / "curated").glob("*.parquet")):
        frame = pl.read_parquet(f)
        if "repeat" not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.Int32).alias("repeat"))
        frames.append(frame)
    return pl.concat(frames, how="diagonal")


@pytest.mark.parametrize("settings", SETTINGS[:3])
def test_pool_rule_of_the_plan_gives_the_planner_pools(run, settings):
    """The loader's view (the plan's definition and token count over the rows) equals the planner's pool table."""
    mix = MixSection.model_validate(settings)
    stats = pool_stats(str(run), mix)
    rule = pool_rule(stats.definition)
    rows = _rows(run).filter(rule.kept(["repeat"]))
    tokens = TokenCounter(stats.token_count).counts(rows["text"].cast(pl.String))
    got = (
        rows.select(
            rule.bucket.alias("quality_bucket"),
            rule.rank.cast(pl.Int64).alias("quality_rank"),
            rule.domain.alias("domain"),
            rule.repeat(["repeat"]).alias("rep"),
        )
        .with_columns(pl.Series("tokens", tokens))
        .group_by("quality_bucket", "quality_rank", "domain")
        .agg(
            pl.len().cast(pl.Int64).alias("documents"),
            pl.col("tokens").sum().alias("unique_tokens"),
            (pl.col("tokens") * pl.col("rep")).sum().alias("pass_tokens"),
        )
        .sort("quality_rank", "domain")
    )
    assert got.to_dicts() == stats.pools.to_dicts()


def test_rule_details():
    frame = pl.DataFrame(
        {
            "keep": [True, None, True, True, False],
            "repeat": pl.Series([None, 1, 0, 2, 3], dtype=pl.Int32),
            "score": [0.1, 0.5, float("nan"), None, 0.9],
            "level": [None, 5, 3, 1, 2],
            "src": ["a", None, "b", None, "c"],
            "text": ["x  y\tz", None, "", "one", "two words"],
        }
    )
    assert frame.select(kept_expr("keep", "repeat")).to_series().to_list() == [True, False, False, True, False]
    assert frame.select(kept_expr("keep", None)).to_series().to_list() == [True, False, True, True, False]
    assert frame.select(repeat_expr("repeat")).to_series().to_list() == [1, 1, 0, 2, 3]
    quantiles = QuantileBuckets(kind="quantiles", column="score", n_buckets=3, edges=[0.2, 0.5], labels=[], rule="")
    levels = DatamanLevels(kind="dataman_levels", column="level", labels=[], rule="")
    domain = DomainColumn(column="src", null="unknown")
    for quality, buckets, ranks, nulls in (
        (quantiles, ["q1", "q2", "q1", "q1", "q3"], [3, 2, 3, 3, 1], [False, False, True, True, False]),
        (levels, ["overall_1", "overall_5", "overall_3", "overall_1", "overall_2"], [5, 1, 3, 5, 4], None),
    ):
        definition = PoolDefinition(
            keep_column="keep", repeat_column="repeat", text_column="text", quality=quality, domain=domain
        )
        rule = pool_rule(definition)
        out = frame.select(rule.pool.alias("pool"), rule.rank.alias("rank"), rule.quality_null.alias("null")).to_dict(
            as_series=False
        )
        domains = ["a", "unknown", "b", "unknown", "c"]
        assert out["pool"] == [f"{b}/{d}" for b, d in zip(buckets, domains, strict=True)]
        assert out["rank"] == ranks
        assert out["null"] == (nulls or [True, False, False, False, False])
        assert rule.columns == ["keep", quality.column, "src"]
    counts = TokenCounter(WhitespaceCount(method="whitespace", rule="")).counts(frame["text"])
    assert counts.dtype == np.int64 and counts.tolist() == [3, 0, 0, 1, 2]
