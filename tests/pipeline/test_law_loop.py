"""Measure -> fit -> plan: the Goyal law fitted per quality bucket from proxy checkpoints, read by the mixer as
``mix.law.fitted``, and the report's ``predicted_error`` from each kept set's bucket composition."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from winnow.core.errors import ConfigError
from winnow.mixers.fit import fit_goyal, read_fitted_law
from winnow.mixers.laws import goyal_error, goyal_union_error
from winnow.pipeline.cli.mix import mix_command
from winnow.pipeline.config import load_config
from winnow.pipeline.report.law import (
    LAW_POINT,
    bucket_law,
    bucket_tokens,
    fitted_bucket_law,
    law_fit_table,
    law_points,
    predicted_error,
    predicted_errors,
    quality_buckets,
)

# hand-chosen parameters: shared a, d; b and tau per quartile bucket (q4 best)
A, D = 0.5, 1.5
TRUE = {"q4": (-0.40, 2.0), "q3": (-0.25, 4.0), "q2": (-0.15, 8.0), "q1": (-0.08, 3.0)}


def synthetic_runs(noise: float = 0.003, seed: int = 0) -> dict[str, list]:
    """Checkpoints from the law: per bucket a large pool (no repetition) and a small one (up to 16 epochs)."""
    rng = np.random.default_rng(seed)
    runs: dict[str, list] = {"samples": [], "pool_size": [], "error": [], "pool": []}
    for name, (b, tau) in TRUE.items():
        for pool in (4e6, 2.5e5):
            for n in np.geomspace(4e5, 4e6, 6):
                y = float(goyal_error(n, pool, A, b, tau, D)) * (1 + noise * rng.standard_normal())
                runs["samples"].append(float(n))
                runs["pool_size"].append(pool)
                runs["error"].append(y)
                runs["pool"].append(name)
    return runs


def test_fit_recovers_known_bucket_parameters():
    fit = fit_goyal(synthetic_runs(), holdout=1)
    p = fit.params
    assert p.a == pytest.approx(A, rel=0.25) and p.d == pytest.approx(D, rel=0.05)
    got = {q.name: q for q in p.pools}
    for name, (b, tau) in TRUE.items():
        assert got[name].b == pytest.approx(b, rel=0.12), name
        assert got[name].tau == pytest.approx(tau, rel=0.35), name
    assert [q.name for q in sorted(p.pools, key=lambda q: q.b)] == ["q4", "q3", "q2", "q1"]
    assert fit.heldout_rel_error < 0.01


# =============================================================================================================
# The report side: buckets, composition, predicted_error
# =============================================================================================================
def corpus(n: int = 400, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "id": [f"d{i}" for i in range(n)],
        "quality_score": rng.uniform(0, 1, n),
        "n_words": rng.integers(50, 150, n),
    })  # fmt: skip


def test_buckets_follow_the_mixers_quantile_rule():
    f = corpus()
    cfg = load_config(None, [])
    bk = quality_buckets(f, cfg)
    assert bk.labels == ("q4", "q3", "q2", "q1") and bk.ranks == {"q4": 1, "q3": 2, "q2": 3, "q1": 4}
    edges = np.quantile(f["quality_score"].to_numpy(), [0.25, 0.5, 0.75])
    assert bk.definition.edges == pytest.approx(edges.tolist())
    expected = 1 + (f["quality_score"].to_numpy()[:, None] > edges[None, :]).sum(axis=1)  # q<i>
    assert [bk.labels[c] for c in bk.codes] == [f"q{i}" for i in expected]
    one = quality_buckets(f, load_config(None, ["mix.pools.quality=none"]))
    assert one.labels == ("all",) and (one.codes == 0).all()
    assert quality_buckets(f, cfg, has_quality=False).labels == ("all",)


def _fit_file(tmp_path: Path, pools: dict[str, tuple[float, float]], a: float = A, d: float = D) -> Path:
    path = tmp_path / "law_fit.json"
    body = {"law": "goyal", "params": {"a": a, "d": d, "pools": [{"name": k, "b": b, "tau": t}
                                                                   for k, (b, t) in pools.items()]}}  # fmt: skip
    path.write_text(json.dumps(body))
    return path


def test_predicted_error_depends_on_the_bucket_composition(tmp_path):
    f = corpus()
    cfg = load_config(None, [f"mix.law.fitted={_fit_file(tmp_path, TRUE)}"])
    bk = quality_buckets(f, cfg)
    law = bucket_law(cfg, bk)
    assert {p.quality_bucket: (p.b, p.tau) for p in law.buckets} == TRUE
    words = f["n_words"].to_numpy()
    codes = bk.codes
    best = np.isin(codes, [bk.labels.index("q4"), bk.labels.index("q3")])  # the better half
    worst = np.isin(codes, [bk.labels.index("q1"), bk.labels.index("q2")])
    budget = 4 * int(words.sum())  # repeats either half about 8 times
    e_best = predicted_error(bucket_tokens(best, bk, words), budget, law)
    e_worst = predicted_error(bucket_tokens(worst, bk, words), budget, law)
    assert e_best < e_worst
    # by hand: the union of the kept parts, b weighted by their unique tokens
    comp = bucket_tokens(best, bk, words)
    assert comp["q1"] == comp["q2"] == 0 and comp["q4"] == float(words[codes == bk.labels.index("q4")].sum())
    sizes = [comp["q4"], comp["q3"]]
    by_hand = goyal_union_error(budget, sizes, A, [TRUE["q4"][0], TRUE["q3"][0]], [TRUE["q4"][1], TRUE["q3"][1]],
                                D, "pools", b_mean="samples")  # fmt: skip
    assert e_best == pytest.approx(float(by_hand))
    # one bucket is the one-pool law
    only = codes == bk.labels.index("q4")
    e_one = predicted_error(bucket_tokens(only, bk, words), budget, law)
    assert e_one == pytest.approx(float(goyal_error(budget, words[only].sum(), A, *TRUE["q4"], D)))
    assert math.isnan(predicted_error(bucket_tokens(np.zeros(len(words), bool), bk, words), budget, law))


def test_same_composition_same_error_different_documents():
    f = pl.DataFrame({"id": [f"d{i}" for i in range(8)], "quality_score": [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9],
                      "n_words": [10, 10, 10, 10, 20, 20, 20, 20]})  # fmt: skip
    cfg = load_config(None, ["mix.pools.n_buckets=2"])
    bk = quality_buckets(f, cfg)
    law = bucket_law(cfg, bk)  # the defaults: q2 better than q1
    a = np.array([1, 1, 0, 0, 1, 0, 0, 0], bool)  # 20 words of q1, 20 of q2
    b = np.array([0, 0, 1, 1, 0, 0, 0, 1], bool)  # other documents, the same words per bucket
    c = np.array([0, 0, 0, 0, 1, 1, 0, 0], bool)  # 40 words of q2 only: the same quantity
    assert bucket_tokens(a, bk, f["n_words"].to_numpy()) == bucket_tokens(b, bk, f["n_words"].to_numpy())
    errs = [predicted_error(bucket_tokens(k, bk, f["n_words"].to_numpy()), 1000, law) for k in (a, b, c)]
    assert errs[0] == errs[1] and errs[2] != errs[0]
    curves = pl.DataFrame({"unique_tokens_q2": [20.0, 40.0], "unique_tokens_q1": [20.0, 0.0],
                           "unique_tokens_kept": [40.0, 40.0]})  # fmt: skip
    assert predicted_errors(curves, law, 1000).to_list() == pytest.approx([errs[0], errs[2]])


# =============================================================================================================
# The fit from proxy checkpoints, written as the report writes it, read by `winnow mix`
# =============================================================================================================
def proxy_checkpoints(f: pl.DataFrame, bk, params: dict[str, tuple[float, float]], tokens_per_word: float = 1.25):
    """Law points of ``f`` and checkpoints generated by the law in proxy tokens (what proxy_curves returns)."""
    points, pool_words = law_points(f, bk, proxy_tokens=60_000, heldout_fraction=0.05, seed=0)
    rows = []
    for p in points:
        words = pool_words[(p.strategy, p.fraction)]
        b, tau = params[p.strategy[len(LAW_POINT) :]]
        for k in range(1, 7):
            seen = 10_000 * k
            n_words = seen / tokens_per_word
            rows.append({"strategy": p.strategy, "keep_fraction": p.fraction, "tokens_seen": seen,
                         "pool_tokens": round(words * tokens_per_word),
                         "loss": float(goyal_error(n_words, words, 200.0, b, tau, 1.0))})  # fmt: skip
    return pl.DataFrame(rows), points, pool_words


def test_law_points_cover_each_bucket_twice_outside_the_heldout_slice():
    f = corpus()
    bk = quality_buckets(f, load_config(None, []))
    points, pool_words = law_points(f, bk, proxy_tokens=60_000, heldout_fraction=0.05, seed=0)
    assert [p.strategy for p in points] == ["law:q4", "law:q4", "law:q3", "law:q3", "law:q2", "law:q2", "law:q1",
                                            "law:q1"]  # fmt: skip
    words = f["n_words"].to_numpy()
    for p in points:
        label = p.strategy[len(LAW_POINT) :]
        assert not (p.keep & ~bk.mask(label)).any()  # only its bucket
        assert pool_words[(p.strategy, p.fraction)] == words[p.keep].sum()
    whole, small = points[0], points[1]
    assert whole.fraction == 1.0 and small.fraction < 0.6 and not (small.keep & ~whole.keep).any()
    assert whole.keep.sum() < bk.mask("q4").sum()  # the held-out slice is left out
    again, _ = law_points(f, bk, proxy_tokens=60_000, heldout_fraction=0.05, seed=0)
    assert all((x.keep == y.keep).all() for x, y in zip(points, again, strict=True))


def make_curated_run(root: Path, f: pl.DataFrame) -> Path:
    run = root / "run"
    (run / "curated").mkdir(parents=True)
    texts = [" ".join(f"w{i}_{j}" for j in range(n)) for i, n in enumerate(f["n_words"].to_list())]
    table = {
        "id": f["id"].to_list(),
        "text": texts,
        "source": ["web"] * f.height,
        "quality_score": pa.array(f["quality_score"].to_numpy(), pa.float64()),
        "keep": [True] * f.height,
    }
    pq.write_table(pa.table(table), run / "curated" / "s0.parquet")  # fmt: skip
    (run / "config.resolved.yaml").write_text("winnow_version: 0.1.0\nconfig_hash: 0123456789abcdef\n")
    return run


def mix(*args: str):
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("mix")(mix_command)
    app.callback()(lambda: None)
    return CliRunner().invoke(app, ["mix", *args], env={"COLUMNS": "240"})


def _plan_with(tmp_path: Path, run: Path, fit_json: dict, name: str) -> dict:
    path = tmp_path / name
    path.write_text(json.dumps(fit_json, indent=2))  # as build_report writes report/law_fit.json
    result = mix("--run", str(run), "--budget-tokens", "1.2e5", "--set", f"mix.law.fitted={path}", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_report_fit_loads_in_winnow_mix_and_drives_the_plan(tmp_path):
    f = corpus()
    cfg = load_config(None, [])
    bk = quality_buckets(f, cfg)
    steep = {"q4": (-0.6, 4.0), "q3": (-0.2, 4.0), "q2": (-0.12, 4.0), "q1": (-0.06, 4.0)}
    flat = dict.fromkeys(steep, (-0.2, 4.0))
    fits = {}
    for name, truth in (("steep", steep), ("flat", flat)):
        ckpts, _, pool_words = proxy_checkpoints(f, bk, truth)
        table, fit_json, why = law_fit_table(ckpts, pool_words, bk, {"proxy": {"preset": "test"}})
        assert why is None and fit_json["format"] == "winnow.law_fit/1"
        assert fit_json["buckets"]["kind"] == "quantiles" and fit_json["buckets"]["labels"] == ["q1", "q2", "q3", "q4"]
        got = {p["name"]: p["b"] for p in fit_json["params"]["pools"]}
        assert set(got) == set(truth)
        if name == "steep":  # recovered in the mixer's unit (words), whatever the proxy's tokens per word
            assert fit_json["params"]["a"] == pytest.approx(200.0, rel=0.05)
            assert got == pytest.approx({k: v[0] for k, v in truth.items()}, rel=0.05)
        obs = table.filter(pl.col("kind") == "observed")
        assert obs.height == ckpts.height and obs["heldout"].sum() == 4  # one per bucket
        fits[name] = fit_json
    run = make_curated_run(tmp_path, f)
    plans = {name: _plan_with(tmp_path, run, fj, f"{name}.json") for name, fj in fits.items()}
    for name, plan in plans.items():
        law = plan["law"]
        assert law["a"]["source"].startswith("fitted: ") and law["a"]["value"] == fits[name]["params"]["a"]
        by_bucket = {b["quality_bucket"]: b["b"] for b in law["buckets"]}
        assert by_bucket == {p["name"]: p["b"] for p in fits[name]["params"]["pools"]}
        assert not any("defaults fitted by Goyal" in w for w in plan["warnings"])
    # a best bucket with a much larger |b| is worth repeating: the steep law keeps fewer buckets, gives q4 more
    weight = {n: sum(p["tokens"] for p in plan["pools"] if p["quality_bucket"] == "q4") for n, plan in plans.items()}
    assert plans["steep"]["choice"]["m"] < plans["flat"]["choice"]["m"]
    assert weight["steep"] > weight["flat"]
    # the report's own predicted_error takes the fresh fit, as the mixer does
    law = fitted_bucket_law(fits["steep"], bk, cfg, "report/law_fit.json")
    assert {p.quality_bucket: p.b for p in law.buckets} == {
        p["name"]: p["b"] for p in fits["steep"]["params"]["pools"]
    }


# =============================================================================================================
# A bad fitted file: the file and the key are named
# =============================================================================================================
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"law": "goyal", "params": {"a": 1.0, "d": 0.1, "pools": [{"name": "q4", "b": -0.1}]}},
         "missing key params.pools[0].tau"),
        ({"law": "goyal", "params": {"d": 0.1, "pools": [{"name": "q4", "b": -0.1, "tau": 2}]}},
         "missing key params.a"),
        ({"a": 1.0, "d": 0.1}, "missing key pools"),
        ({"a": 1.0, "d": 0.1, "pools": [{"b": -0.1, "tau": 2}]}, "missing key pools[0].name"),
        ({"a": 1.0, "d": 0.1, "pools": [{"name": "q4", "b": 0.1, "tau": 2}]}, "pools[0].b must be < 0"),
        ({"law": "muennighoff", "params": {}}, "law is 'muennighoff'"),
        ({"a": 1.0, "d": 0.1, "pools": [{"name": "random", "b": -0.1, "tau": 2}]},
         "'random' are not quality buckets of mix.pools (q1, q2, q3, q4)"),
    ],
)  # fmt: skip
def test_bad_fitted_file_names_the_file_and_the_key(tmp_path, body, needle):
    path = tmp_path / "bad_fit.json"
    path.write_text(json.dumps(body))
    with pytest.raises(ConfigError) as e:
        read_fitted_law(str(path), ["q1", "q2", "q3", "q4"])
    assert str(path) in str(e.value) and needle in str(e.value) and "mix.law.fitted" in str(e.value)


def test_report_refuses_a_fit_of_other_pools(tmp_path):
    path = _fit_file(tmp_path, {"random": (-0.1, 2.0), "quality": (-0.2, 2.0)})  # the old per-strategy fit
    cfg = load_config(None, [f"mix.law.fitted={path}"])
    with pytest.raises(ConfigError, match=r"law_fit.json: params.pools name\(s\) 'random', 'quality' are not quality"):
        bucket_law(cfg, quality_buckets(corpus(), cfg))
    with pytest.raises(ConfigError, match="no such file"):
        read_fitted_law(str(tmp_path / "missing.json"))
