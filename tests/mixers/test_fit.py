"""Fits of winnow.mixers.fit recover planted laws from synthetic noisy proxy runs and check extrapolation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from winnow.mixers.fit import FitResult, fit_goyal, fit_muennighoff, read_runs
from winnow.mixers.laws import MUENNIGHOFF_2023, GoyalParams, MuennighoffParams, goyal_error, muennighoff_loss

PLANTED_GOYAL = {"a": 0.025, "d": 0.1, "pools": {"hq": (-0.16, 6.7), "lq": (-0.09, 2.3)}}


def goyal_runs(seed: int = 0, noise: float = 0.01) -> dict[str, list]:
    """Two pools, two proxy pool sizes each, budgets from 1/8 epoch to 32 epochs, 1% multiplicative noise."""
    rng = np.random.default_rng(seed)
    runs: dict[str, list] = {"pool": [], "samples": [], "pool_size": [], "error": []}
    for name, (b, tau) in PLANTED_GOYAL["pools"].items():
        for size in (2e6, 8e6):
            for n in np.geomspace(1e6, 6.4e7, 7):
                y = float(goyal_error(n, size, PLANTED_GOYAL["a"], b, tau, PLANTED_GOYAL["d"]))
                runs["pool"].append(name)
                runs["samples"].append(float(n))
                runs["pool_size"].append(size)
                runs["error"].append(y * math.exp(rng.normal(0, noise)))
    return runs


def muennighoff_runs(seed: int = 0, noise: float = 0.003) -> dict[str, list]:
    """Models 1e7..1e9, unique data 1e8..1e10, half an epoch to 64 epochs, 0.3% multiplicative noise."""
    rng = np.random.default_rng(seed)
    runs: dict[str, list] = {"params": [], "tokens": [], "unique_tokens": [], "loss": []}
    for N in np.geomspace(1e7, 1e9, 4):
        for U in (1e8, 1e9, 1e10):
            for epochs in (0.5, 1, 4, 16, 64):
                runs["params"].append(float(N))
                runs["tokens"].append(U * epochs)
                runs["unique_tokens"].append(U)
                runs["loss"].append(float(muennighoff_loss(N, U * epochs, U)) * math.exp(rng.normal(0, noise)))
    return runs


# =============================================================================================================
# Goyal
# =============================================================================================================
def test_fit_goyal_recovers_planted_parameters():
    runs = goyal_runs()
    result = fit_goyal(runs, holdout=1)
    assert isinstance(result, FitResult) and isinstance(result.params, GoyalParams)
    assert result.success and result.law == "goyal"
    p = result.params
    assert p.a == pytest.approx(0.025, rel=0.15)
    assert p.d == pytest.approx(0.1, abs=0.01)
    assert [q.name for q in p.pools] == ["hq", "lq"]
    for pool, (b, tau) in zip(p.pools, PLANTED_GOYAL["pools"].values(), strict=True):
        assert pool.b == pytest.approx(b, rel=0.1)
        assert pool.tau == pytest.approx(tau, rel=0.3)
    # residuals are log-space and at the noise level; the held-out largest runs are predicted within a few %
    assert len(result.residuals) == len(runs["error"]) - 2  # one held out per pool
    assert np.std(result.residuals) < 0.02
    assert 0 < result.heldout_rel_error < 0.03
    assert result.train_rel_error < 0.02
    assert isinstance(result.start, GoyalParams)
    assert result.n_starts == 5


def test_fit_goyal_holds_out_the_largest_runs_of_each_pool():
    runs = goyal_runs()
    result = fit_goyal(runs, holdout=2)
    samples, pools = np.array(runs["samples"]), np.array(runs["pool"])
    held = list(result.heldout_index)
    assert len(held) == 4 and len(result.heldout_residuals) == 4
    for name in ("hq", "lq"):
        mine = [i for i in held if pools[i] == name]
        assert len(mine) == 2
        assert samples[mine].min() >= samples[pools == name].max() - 1e-6  # the largest budgets
    # the reported held-out error is recomputable from the parameters
    p = result.params
    pred = [float(goyal_error(samples[i], runs["pool_size"][i], p.a, *_pool_bt(p, pools[i]), p.d)) for i in held]
    obs = np.array(runs["error"])[held]
    assert result.heldout_rel_error == pytest.approx(float(np.mean(np.abs(np.array(pred) - obs) / obs)), rel=1e-9)
    assert np.allclose(result.heldout_residuals, np.log(pred) - np.log(obs), atol=1e-12)


def _pool_bt(params: GoyalParams, name: str) -> tuple[float, float]:
    pool = next(p for p in params.pools if p.name == name)
    return pool.b, pool.tau


def test_fit_goyal_single_pool_without_pool_column_and_no_holdout():
    runs = goyal_runs()
    keep = [i for i, p in enumerate(runs["pool"]) if p == "hq"]
    single = {k: [v[i] for i in keep] for k, v in runs.items() if k != "pool"}
    result = fit_goyal(single, holdout=0)
    assert [p.name for p in result.params.pools] == ["pool"]
    assert result.params.pools[0].b == pytest.approx(-0.16, rel=0.15)
    assert math.isnan(result.heldout_rel_error) and result.heldout_residuals == ()
    assert result.to_dict()["heldout_rel_error"] is None


def test_fit_goyal_is_robust_to_an_outlier():
    runs = goyal_runs()
    runs["error"][3] *= 1.5  # one broken run
    result = fit_goyal(runs, holdout=1)
    assert result.params.pools[0].b == pytest.approx(-0.16, rel=0.1)
    assert result.params.d == pytest.approx(0.1, abs=0.015)
    assert max(abs(r) for r in result.residuals) > 0.3  # the outlier keeps its residual, the rest fit


def test_fit_goyal_errors_name_the_problem():
    runs = goyal_runs()
    with pytest.raises(ValueError, match=r"missing column\(s\) error; available: pool, samples, pool_size"):
        fit_goyal({k: v for k, v in runs.items() if k != "error"})
    bad = {k: list(v) for k, v in runs.items()}
    bad["samples"][4] = "lots"
    with pytest.raises(ValueError, match=r"column 'samples', row 5 .*not a number: 'lots'"):
        fit_goyal(bad)
    bad = {k: list(v) for k, v in runs.items()}
    bad["error"][0] = -1.0
    with pytest.raises(ValueError, match=r"column 'error', row 1"):
        fit_goyal(bad)
    few = {k: v[:4] for k, v in runs.items()}
    with pytest.raises(ValueError, match="need at least 4"):
        fit_goyal(few, holdout=1)


# =============================================================================================================
# Muennighoff
# =============================================================================================================
def test_fit_muennighoff_recovers_planted_parameters():
    runs = muennighoff_runs()
    result = fit_muennighoff(runs, holdout=3)
    assert result.success and isinstance(result.params, MuennighoffParams)
    p, true = result.params, MUENNIGHOFF_2023
    assert p.alpha == pytest.approx(true.alpha, abs=0.02)
    assert p.beta == p.alpha  # tied by default
    assert p.E == pytest.approx(true.E, rel=0.02)
    assert p.r_star_d == pytest.approx(true.r_star_d, rel=0.2)
    assert p.r_star_n == pytest.approx(true.r_star_n, rel=0.2)
    tokens = np.array(runs["tokens"])
    assert tokens[list(result.heldout_index)].min() >= np.sort(tokens)[-3]  # the three largest by tokens
    assert 0 < result.heldout_rel_error < 0.01
    assert np.std(result.residuals) < 0.005


def test_fit_muennighoff_with_the_base_law_fixed_fits_the_decay_constants():
    runs = muennighoff_runs(seed=1)
    base = MUENNIGHOFF_2023
    fixed = {"A": base.A, "B": base.B, "E": base.E, "alpha": base.alpha}
    result = fit_muennighoff(runs, holdout=1, fixed=fixed)
    p = result.params
    assert (p.A, p.B, p.E, p.alpha, p.beta) == (base.A, base.B, base.E, base.alpha, base.alpha)
    assert p.r_star_d == pytest.approx(base.r_star_d, rel=0.15)
    assert p.r_star_n == pytest.approx(base.r_star_n, rel=0.15)
    assert result.start.A == base.A


def test_fit_muennighoff_accepts_a_pyarrow_table():
    pa = pytest.importorskip("pyarrow")
    runs = muennighoff_runs()
    from_dict = fit_muennighoff(runs, holdout=1, fixed={"A": MUENNIGHOFF_2023.A, "B": MUENNIGHOFF_2023.B})
    from_table = fit_muennighoff(pa.table(runs), holdout=1, fixed={"A": MUENNIGHOFF_2023.A, "B": MUENNIGHOFF_2023.B})
    assert from_table.params == from_dict.params


def test_fit_muennighoff_errors():
    runs = muennighoff_runs()
    with pytest.raises(ValueError, match=r"missing column\(s\) unique_tokens, loss"):
        fit_muennighoff({"params": runs["params"], "tokens": runs["tokens"]})
    with pytest.raises(ValueError, match="unknown fixed parameter"):
        fit_muennighoff(runs, fixed={"gamma": 1.0})


# =============================================================================================================
# CSV
# =============================================================================================================
def test_read_runs_round_trip_and_bad_rows(tmp_path):
    runs = goyal_runs()
    path = tmp_path / "runs.csv"
    lines = ["pool,samples,pool_size,error"] + [
        f"{p},{n:.17g},{e:g},{y:.17g}"
        for p, n, e, y in zip(runs["pool"], runs["samples"], runs["pool_size"], runs["error"], strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    table = read_runs(str(path))
    assert list(table) == ["pool", "samples", "pool_size", "error"]
    assert fit_goyal(table).params == fit_goyal(runs).params
    bad = tmp_path / "bad.csv"
    bad.write_text("pool,samples,pool_size,error\nhq,1e6,2e6,0.5\nhq,2e6\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 3: 2 cells, the header has 4"):
        read_runs(str(bad))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty file"):
        read_runs(str(empty))
