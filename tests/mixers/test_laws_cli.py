"""``winnow laws``: JSON outputs equal the library's values; usage errors exit 2 and name the option."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from winnow.mixers.fit import fit_goyal, fit_muennighoff, read_runs
from winnow.mixers.laws import best_top_m, effective_data, effective_params, muennighoff_loss, unique_params
from winnow.pipeline.cli.laws import laws_app

runner = CliRunner()

GOYAL_ARGS = [
    "goyal",
    "--a",
    "0.025",
    "--d",
    "0.1",
    "--b",
    "-0.125,-0.16,-0.085,-0.1",
    "--tau",
    "8.5,6.7,2.3,5.3",
    "--pool-size",
    "12.8e6",
    "--samples",
    "3.2e7,1.28e8,6.4e8,5e9",
]


def run(args: list[str]):
    return runner.invoke(laws_app, args)


def test_goyal_json_equals_library():
    result = run([*GOYAL_ARGS, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [r["samples"] for r in payload["results"]] == [32_000_000, 128_000_000, 640_000_000, 5_000_000_000]
    assert payload["pool_order"] == [2, 1, 4, 3]  # 1-based input positions, most negative b first
    for row in payload["results"]:
        expected = best_top_m(row["samples"], 12.8e6, 0.025, [-0.125, -0.16, -0.085, -0.1], [8.5, 6.7, 2.3, 5.3], 0.1)
        assert row["errors_by_top_m"] == pytest.approx(expected.errors.tolist(), rel=1e-12)
        assert row["best_top_m"] == expected.best_m
    assert [r["best_top_m"] for r in payload["results"]] == [1, 2, 2, 3]


def test_goyal_pool_size_list_and_tau_scaling_none():
    args = [*GOYAL_ARGS[:-4], "--pool-size", "1e7,2e7,5e6,1e7", "--samples", "2e8", "--tau-scaling", "none", "--json"]
    result = run(args)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["results"][0]
    sizes, bs, taus = [1e7, 2e7, 5e6, 1e7], [-0.125, -0.16, -0.085, -0.1], [8.5, 6.7, 2.3, 5.3]
    expected = best_top_m(2e8, sizes, 0.025, bs, taus, 0.1, tau_scaling="none")
    assert row["errors_by_top_m"] == pytest.approx(expected.errors.tolist(), rel=1e-12)
    pools = best_top_m(2e8, sizes, 0.025, bs, taus, 0.1, tau_scaling="pools")
    assert not np.allclose(pools.errors[1:], expected.errors[1:])  # the option changes the unions


def test_goyal_table():
    result = run(GOYAL_ARGS)
    assert result.exit_code == 0, result.output
    for text in ("best m", "top 4", "32,000,000", "pools by b, best first: #2 (b=-0.16"):
        assert text in result.stdout


def test_goyal_warns_outside_the_regime():
    result = run(_replace(GOYAL_ARGS, "--samples", "2e6,5e8"))  # a·N/1e5 = 0.5 for N = 2e6
    assert result.exit_code == 0
    assert "warning" in result.stderr and "N = 2e+06" in result.stderr and "5e+08" not in result.stderr
    assert "warning" not in run(GOYAL_ARGS).stderr


def test_muennighoff_json_equals_library():
    result = run(["muennighoff", "--params", "6.34e9", "--tokens", "242e9", "--unique-tokens", "25e9", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["loss"] == pytest.approx(float(muennighoff_loss(6.34e9, 242e9, 25e9)), rel=1e-12)
    assert payload["loss"] == pytest.approx(2.2256440889984477, rel=1e-12)
    assert payload["effective_tokens"] == pytest.approx(float(effective_data(25e9, 242e9)), rel=1e-12)
    u_n = float(unique_params(25e9, 6.34e9))
    assert payload["effective_params"] == pytest.approx(float(effective_params(u_n, 6.34e9)), rel=1e-12)


def test_muennighoff_table():
    result = run(["muennighoff", "--params", "1e9", "--tokens", "4e10", "--unique-tokens", "1e10"])
    assert result.exit_code == 0, result.output
    assert "loss L" in result.stdout and "effective tokens D'" in result.stdout


@pytest.fixture
def goyal_csv(tmp_path):
    from winnow.mixers.laws import goyal_error

    rng = np.random.default_rng(0)
    lines = ["pool,samples,pool_size,error"]
    for name, b, tau in (("hq", -0.16, 6.7), ("lq", -0.09, 2.3)):
        for size in (2e6, 8e6):
            for n in np.geomspace(1e6, 6.4e7, 7):
                y = float(goyal_error(n, size, 0.025, b, tau, 0.1)) * np.exp(rng.normal(0, 0.01))
                lines.append(f"{name},{n:.6g},{size:g},{y:.8f}")
    path = tmp_path / "goyal_runs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_goyal_json_equals_library(goyal_csv):
    result = run(["fit", "--law", "goyal", "--runs", str(goyal_csv), "--holdout", "2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    expected = fit_goyal(read_runs(str(goyal_csv)), holdout=2)
    assert payload["params"] == expected.params.to_dict()
    assert payload["heldout_rel_error"] == pytest.approx(expected.heldout_rel_error, rel=1e-12)
    assert payload["residuals"] == pytest.approx(list(expected.residuals), abs=1e-15)
    assert payload["success"] is True and len(payload["heldout_index"]) == 4
    assert set(payload["start"]) == {"a", "d", "pools"}


def test_fit_table(goyal_csv):
    result = run(["fit", "--law", "goyal", "--runs", str(goyal_csv)])
    assert result.exit_code == 0, result.output
    for text in ("b [hq]", "tau [lq]", "held-out runs: 2", "mean relative error"):
        assert text in result.stdout


def test_fit_muennighoff_json(tmp_path):
    lines = ["params,tokens,unique_tokens,loss"]
    rng = np.random.default_rng(3)
    for N in (1e7, 1e8, 1e9):
        for U in (1e8, 1e9):
            for epochs in (1, 4, 16):
                loss = float(muennighoff_loss(N, U * epochs, U)) * np.exp(rng.normal(0, 0.002))
                lines.append(f"{N:g},{U * epochs:g},{U:g},{loss:.10f}")
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    result = run(["fit", "--law", "muennighoff", "--runs", str(path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["params"] == fit_muennighoff(read_runs(str(path))).params.to_dict()
    assert set(payload["params"]) == {"A", "B", "E", "alpha", "beta", "r_star_d", "r_star_n"}


def _replace(args: list[str], option: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(option) + 1] = value
    return out


@pytest.mark.parametrize(
    ("args", "option", "text"),
    [
        (_replace(GOYAL_ARGS, "--b", "-0.1,x,-0.2,-0.3"), "--b", "expected a number"),
        (_replace(GOYAL_ARGS, "--b", "-0.1,0.2,-0.2,-0.3"), "--b", "must be < 0"),
        (_replace(GOYAL_ARGS, "--b", "-0.1,0,-0.2,-0.3"), "--b", "must be < 0"),
        (_replace(GOYAL_ARGS, "--b", "-0.1,,-0.2"), "--b", "separated by commas"),
        (_replace(GOYAL_ARGS, "--tau", "1,2,0,3"), "--tau", "must be > 0"),
        (_replace(GOYAL_ARGS, "--tau", "1,2,3"), "--tau", "--b has 4"),
        (_replace(GOYAL_ARGS, "--pool-size", "1e6,2e6"), "--pool-size", "--b has 4"),
        (_replace(GOYAL_ARGS, "--samples", "1e6,-5"), "--samples", "must be > 0"),
        (_replace(GOYAL_ARGS, "--a", "nan"), "--a", "finite"),
        (_replace(GOYAL_ARGS, "--a", "0"), "--a", "must be > 0"),
        (_replace(GOYAL_ARGS, "--d", "-1"), "--d", "must be >= 0"),
        ([*GOYAL_ARGS, "--tau-scaling", "double"], "--tau-scaling", "'pools' or 'none'"),
        (["muennighoff", "--params", "1e9", "--tokens", "abc", "--unique-tokens", "1e9"], "--tokens", "number"),
        (["muennighoff", "--params", "0", "--tokens", "1e9", "--unique-tokens", "1e9"], "--params", "> 0"),
        (["fit", "--law", "chinchilla", "--runs", "x.csv"], "--law", "'goyal' or 'muennighoff'"),
        (["fit", "--law", "goyal", "--runs", "/nonexistent/runs.csv"], "--runs", "no such file"),
    ],
)
def test_usage_errors_exit_2_and_name_the_option(args, option, text):
    result = run(args)
    assert result.exit_code == 2, result.output
    assert option in result.stderr
    assert text in result.stderr


def test_fit_missing_columns_exit_2(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("samples,error\n1e6,0.5\n")
    result = run(["fit", "--law", "goyal", "--runs", str(path)])
    assert result.exit_code == 2
    assert "--runs" in result.stderr and "missing column(s) pool_size" in result.stderr


def test_missing_required_option_is_a_usage_error():
    result = run(["muennighoff", "--params", "1e9"])
    assert result.exit_code == 2
    assert "--tokens" in result.output
