"""Scaling laws of winnow.mixers.laws against hand computations, limits and properties (DESIGN §3.7, §3.8)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from winnow.mixers.laws import (
    ALPHA,
    MUENNIGHOFF_2023,
    R_STAR_D,
    R_STAR_N,
    A,
    B,
    E,
    GoyalParams,
    PoolParams,
    best_top_m,
    chinchilla_optimal_params,
    effective_data,
    effective_params,
    goyal_error,
    goyal_union_error,
    muennighoff_loss,
    union_exponents,
    unique_params,
    utility_exponents,
)


# =============================================================================================================
# Goyal et al. 2024 — one pool
# =============================================================================================================
def test_goyal_one_epoch_by_hand():
    # a = 0.2, n = 5e6 ≤ E = 1e7: K = 0, s_0 = 0.2 · 5e6 / 1e5 = 10, y = 10^-0.1 + 0.05
    expected = 10**-0.1 + 0.05
    assert goyal_error(5e6, 1e7, a=0.2, b=-0.1, tau=3.0, d=0.05) == pytest.approx(expected, rel=1e-12)


def test_goyal_partial_third_epoch_by_hand():
    # E = 1e6, n = 2.5e6 → K = 2; a = 0.4, b = -0.2, τ = 2, d = 0.1
    # b_0 = -0.2, b_1 = -0.2 · 0.5^(1/2), b_2 = -0.2 · 0.5^(2/2) = -0.1
    # s_0 = 0.4 · 1e6 / 1e5 = 4                       → y_0 = 4^-0.2 + 0.1
    # k=1: s_1 = 0.4·min(2e6, 2.5e6)/1e5 = 8, s'_1 = 0.4·1e6/1e5 = 4   → ratio 2
    # k=2: s_2 = 0.4·min(3e6, 2.5e6)/1e5 = 10, s'_2 = 0.4·2e6/1e5 = 8  → ratio 1.25
    b1 = -0.2 * 0.5**0.5
    b2 = -0.1
    expected = (4**-0.2 + 0.1) * 2**b1 * 1.25**b2
    assert goyal_error(2.5e6, 1e6, a=0.4, b=-0.2, tau=2.0, d=0.1) == pytest.approx(expected, rel=1e-12)


def test_goyal_exact_multiple_of_pool_size_has_unit_last_factor():
    # n = 3E → K = 3; k=1: 2E/E, k=2: 3E/2E, k=3: s_3 = min(4E, 3E) = 3E = s'_3 → ratio 1
    a, b, tau, d, pool = 0.15, -0.3, 1.5, 0.02, 2e6
    s0 = 3.0  # 0.15 · 2e6 / 1e5
    b1 = -0.3 * 0.5 ** (1 / 1.5)
    b2 = -0.3 * 0.5 ** (2 / 1.5)
    expected = (s0**-0.3 + 0.02) * 2.0**b1 * 1.5**b2
    y = goyal_error(3 * pool, pool, a, b, tau, d)
    assert y == pytest.approx(expected, rel=1e-12)
    # and the law is continuous across the epoch boundary
    eps = 1e-6 * pool
    below, above = goyal_error([3 * pool - eps, 3 * pool + eps], pool, a, b, tau, d)
    assert below == pytest.approx(y, rel=1e-6)
    assert above == pytest.approx(y, rel=1e-6)


def test_goyal_unique_data_equals_no_repetition_law():
    a, b, d, pool = 0.025, -0.16, 0.1, 1.28e7
    n = np.array([1e5, 1e6, 5e6, 1.28e7])  # n ≤ E: one epoch of unique data
    for tau in (0.5, 3.0, 100.0):
        assert np.allclose(goyal_error(n, pool, a, b, tau, d), (a * n / 1e5) ** b + d, rtol=1e-12)


def test_goyal_is_vectorised_over_budgets():
    n = np.array([1e6, 3.3e6, 1e7, 2e7, 2.05e7, 9e7])
    vector = goyal_error(n, 1e7, 0.02, -0.2, 2.0, 0.05)
    assert vector.shape == n.shape
    assert np.allclose(vector, [float(goyal_error(x, 1e7, 0.02, -0.2, 2.0, 0.05)) for x in n], rtol=1e-12)
    assert np.all(np.diff(vector) < 0)  # more samples, lower error


def test_utility_exponent_halves_every_tau_repetitions():
    assert np.allclose(utility_exponents(-0.4, 3.0, [0, 3, 6, 9]), [-0.4, -0.2, -0.1, -0.05])
    # the same, read off the full law: the local slope d log y / d log n over epoch k is b_k
    pool, b, tau = 1e6, -0.4, 2.0

    def slope(k: int) -> float:
        y0, y1 = goyal_error([k * pool, (k + 1) * pool], pool, 0.05, b, tau, 0.1)
        return math.log(y1 / y0) / math.log((k + 1) / k)

    assert slope(1) == pytest.approx(b * 0.5 ** (1 / tau), rel=1e-9)
    for k in (1, 2, 3, 5):
        assert slope(k + 2) / slope(k) == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"b": 0.0}, "b"),
        ({"b": 0.1}, "b"),
        ({"tau": 0.0}, "tau"),
        ({"tau": -1.0}, "tau"),
        ({"a": 0.0}, "a"),
        ({"d": -0.1}, "d"),
        ({"pool_size": 0.0}, "pool_size"),
        ({"n": 0.0}, "samples"),
    ],
)
def test_goyal_rejects_bad_parameters(kwargs, name):
    args = {"n": 1e6, "pool_size": 1e6, "a": 0.02, "b": -0.1, "tau": 2.0, "d": 0.1} | kwargs
    with pytest.raises(ValueError, match=name):
        goyal_error(**args)


def test_pool_params_validate():
    with pytest.raises(ValueError, match="b must be"):
        PoolParams(b=0.2, tau=1.0)
    with pytest.raises(ValueError, match="tau must be"):
        PoolParams(b=-0.2, tau=0.0)
    law = GoyalParams(a=0.02, d=0.1, pools=(PoolParams(-0.2, 2.0, "hq"),))
    assert law.to_dict() == {"a": 0.02, "d": 0.1, "pools": [{"b": -0.2, "tau": 2.0, "name": "hq"}]}


# =============================================================================================================
# Goyal et al. 2024 — unions of pools and the best top m
# =============================================================================================================
def test_union_by_hand_with_both_tau_scalings():
    # pools: E = (1e6, 3e6) → union E = 4e6; b = (-0.3, -0.1); τ = (1, 4); a = 0.05, d = 0.2; n = 6e6 → K = 1
    # s_0 = 0.05 · 4e6 / 1e5 = 2; b_0 = mean(-0.3, -0.1) = -0.2; k=1: s_1/s'_1 = 6e6 / 4e6 = 1.5
    y0 = 2**-0.2 + 0.2
    # tau_scaling="pools": two pools combined → τ' = (2, 8)
    b1_pools = (-0.3 * 0.5 ** (1 / 2) + -0.1 * 0.5 ** (1 / 8)) / 2
    # tau_scaling="none": τ as given
    b1_none = (-0.3 * 0.5 ** (1 / 1) + -0.1 * 0.5 ** (1 / 4)) / 2
    args = (6e6, [1e6, 3e6], 0.05, [-0.3, -0.1], [1.0, 4.0], 0.2)
    assert goyal_union_error(*args, tau_scaling="pools") == pytest.approx(y0 * 1.5**b1_pools, rel=1e-12)
    assert goyal_union_error(*args, tau_scaling="none") == pytest.approx(y0 * 1.5**b1_none, rel=1e-12)
    # b_mean="samples" weights the exponents by pool size (1/4, 3/4)
    b0_w = (-0.3 * 1 + -0.1 * 3) / 4
    b1_w = (-0.3 * 0.5 ** (1 / 2) * 1 + -0.1 * 0.5 ** (1 / 8) * 3) / 4
    assert goyal_union_error(*args, b_mean="samples") == pytest.approx((2**b0_w + 0.2) * 1.5**b1_w, rel=1e-12)


def test_tau_scaling_pools_equals_none_with_tau_times_pool_count():
    sizes, bs, taus = [2e6, 2e6, 2e6], [-0.3, -0.2, -0.1], np.array([1.0, 2.5, 4.0])
    n = np.geomspace(1e6, 1e9, 12)
    pools = goyal_union_error(n, sizes, 0.03, bs, taus, 0.1, tau_scaling="pools")
    none_scaled = goyal_union_error(n, sizes, 0.03, bs, taus * 3, 0.1, tau_scaling="none")
    none = goyal_union_error(n, sizes, 0.03, bs, taus, 0.1, tau_scaling="none")
    assert np.allclose(pools, none_scaled, rtol=1e-12)
    repeated = n > 6e6  # beyond one epoch of the union the two options differ; slower decay → lower error
    assert np.allclose(pools[~repeated], none[~repeated], rtol=1e-12)
    assert np.all(pools[repeated] < none[repeated])


def test_union_of_one_pool_is_the_pool_whatever_the_tau_scaling():
    n = np.geomspace(1e5, 1e9, 9)
    single = goyal_error(n, 3e6, 0.02, -0.25, 2.0, 0.05)
    for scaling in ("pools", "none"):
        assert np.allclose(goyal_union_error(n, [3e6], 0.02, [-0.25], [2.0], 0.05, scaling), single, rtol=1e-12)
    assert np.allclose(union_exponents([-0.25], [2.0], [0, 1, 2]), utility_exponents(-0.25, 2.0, [0, 1, 2]))


def test_best_top_m_by_hand_sorts_pools_by_b():
    # input order: pool 0 (b=-0.1, E=3e6, τ=4), pool 1 (b=-0.3, E=1e6, τ=1); a = 0.3, d = 0.2, n = 2e6
    # top 1 = pool 1: E = 1e6 → K = 2; s_0 = 0.3·1e6/1e5 = 3; b_1 = -0.3·0.5^(1/1) = -0.15 (τ scaled by 1)
    #   k=1: 2e6/1e6 = 2; k=2: s_2 = min(3e6, 2e6) = 2e6 = s'_2 → 1
    top1 = (3**-0.3 + 0.2) * 2**-0.15
    # top 2 = union: E = 4e6 → K = 0; s_0 = 0.3·2e6/1e5 = 6; b_0 = mean(-0.3, -0.1) = -0.2
    top2 = 6**-0.2 + 0.2
    result = best_top_m(2e6, [3e6, 1e6], 0.3, [-0.1, -0.3], [4.0, 1.0], 0.2)
    assert list(result.order) == [1, 0]
    assert np.allclose(result.errors, [top1, top2], rtol=1e-12)
    assert result.best_m == (1 if top1 < top2 else 2) == 1


def test_best_top_m_single_pool_size_is_broadcast():
    one = best_top_m(5e7, 1e7, 0.02, [-0.2, -0.1, -0.15], [2.0, 3.0, 4.0], 0.1)
    many = best_top_m(5e7, [1e7, 1e7, 1e7], 0.02, [-0.2, -0.1, -0.15], [2.0, 3.0, 4.0], 0.1)
    assert np.array_equal(one.errors, many.errors)
    assert list(one.order) == [0, 2, 1]


def test_best_top_m_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="one b, tau and pool size per pool"):
        best_top_m(1e6, [1e6, 1e6], 0.02, [-0.2, -0.1], [2.0], 0.1)


@pytest.mark.parametrize("tau_scaling", ["pools", "none"])
def test_smaller_budget_never_prefers_a_larger_union(tau_scaling):
    # Property over a grid of random laws in the paper's regime s_0 = a·min(E, n)/1e5 > 1 (see the module doc)
    rng = np.random.default_rng(1234)
    for _ in range(60):
        m = int(rng.integers(2, 6))
        a = 10 ** rng.uniform(-3, -0.5)
        smallest = 1.2e5 / a  # every pool and budget keeps s_0 ≥ 1.2
        sizes = smallest * rng.uniform(1, 20, m)
        bs, taus, d = -rng.uniform(0.01, 0.8, m), rng.uniform(0.3, 30, m), rng.uniform(0, 0.5)
        budgets = np.geomspace(smallest, 3e3 * sizes.max(), 16)
        best = [best_top_m(n, sizes, a, bs, taus, d, tau_scaling).best_m for n in budgets]
        assert all(x <= y for x, y in zip(best, best[1:], strict=False)), (sizes, bs, taus, a, d, best)
    # and the trade-off is real: with few samples the best pool alone wins, with many the union does
    small = best_top_m(1.28e7, 1.28e7, 0.025, [-0.16, -0.125, -0.1, -0.085], [6.7, 8.5, 5.3, 2.3], 0.1, tau_scaling)
    large = best_top_m(5e9, 1.28e7, 0.025, [-0.16, -0.125, -0.1, -0.085], [6.7, 8.5, 5.3, 2.3], 0.1, tau_scaling)
    assert small.best_m == 1 and large.best_m > 1


def test_below_the_regime_better_pools_predict_higher_error():
    # documented caveat: with s_0 = a·n/1e5 < 1, s_0^b grows as b becomes more negative
    a, n = 0.001, 5e6  # s_0 = 0.05
    assert goyal_error(n, 1e7, a, -0.3, 2.0, 0.1) > goyal_error(n, 1e7, a, -0.1, 2.0, 0.1)


# =============================================================================================================
# Muennighoff et al. 2023
# =============================================================================================================
def test_constants_are_the_papers():
    assert math.log(A) == pytest.approx(6.255414)
    assert math.log(B) == pytest.approx(7.3049974)
    assert math.log(E) == pytest.approx(0.6254804)
    assert ALPHA == 0.3526596
    assert (R_STAR_D, R_STAR_N) == (15.387756, 5.309743)


def test_effective_data_by_hand():
    # U = 1e9, D = 3e9 → R = 2; D' = U + U·R*·(1 − e^(−R/R*))
    expected = 1e9 + 1e9 * 15.387756 * (1 - math.exp(-2 / 15.387756))
    assert effective_data(1e9, 3e9) == pytest.approx(expected, rel=1e-12)
    assert effective_data(1e9, 3e9, r_star=4.0) == pytest.approx(1e9 + 1e9 * 4 * (1 - math.exp(-2 / 4)), rel=1e-12)


def test_effective_data_without_repetition_is_the_data():
    assert effective_data(1e9, 1e9) == pytest.approx(1e9, rel=1e-12)
    assert effective_data(1e9, 4e8) == pytest.approx(4e8, rel=1e-12)  # D < U: no repetition, D' = D
    assert np.allclose(effective_data(1e9, [1e3, 1e6, 5e8]), [1e3, 1e6, 5e8], rtol=1e-12)


def test_effective_data_tends_to_one_plus_r_star_times_unique():
    U = 2e9
    values = effective_data(U, U * np.array([2, 10, 100, 1e3, 1e5]))
    assert np.all(np.diff(values[:4]) > 0)  # then flat to float precision
    assert np.all(values <= (1 + R_STAR_D) * U)
    assert values[-1] == pytest.approx((1 + 15.387756) * U, rel=1e-9)


def test_four_epochs_are_worth_93_and_sixteen_66_percent_of_fresh_data():
    U = 1e9
    four = effective_data(U, 4 * U) / (4 * U)
    sixteen = effective_data(U, 16 * U) / (16 * U)
    assert four == pytest.approx(0.93, abs=0.01)  # 0.9314
    assert sixteen == pytest.approx(0.66, abs=0.01)  # 0.6614
    # by hand: (1 + 15.387756·(1 − e^(−3/15.387756))) / 4 and (1 + 15.387756·(1 − e^(−15/15.387756))) / 16
    assert four == pytest.approx((1 + 15.387756 * (1 - math.exp(-3 / 15.387756))) / 4, rel=1e-12)
    assert sixteen == pytest.approx((1 + 15.387756 * (1 - math.exp(-15 / 15.387756))) / 16, rel=1e-12)


def test_effective_params_by_hand():
    # U_N = 1e8, N = 5e8 → R_N = 4; N' = U_N + U_N·R*_N·(1 − e^(−R_N/R*_N))
    expected = 1e8 + 1e8 * 5.309743 * (1 - math.exp(-4 / 5.309743))
    assert effective_params(1e8, 5e8) == pytest.approx(expected, rel=1e-12)
    assert effective_params(1e8, 1e8) == pytest.approx(1e8, rel=1e-12)
    assert effective_params(1e8, 1e12) == pytest.approx((1 + 5.309743) * 1e8, rel=1e-9)


def test_unique_params_is_chinchilla_optimal_size_of_the_unique_data():
    # α = β: G = (A/B)^(1/(2α)); N_opt(D) = G·(G·D)^(β/α) = G²·D = e^((6.255414 − 7.3049974)/0.3526596)·D ≈ 0.051·D
    ratio = math.exp((6.255414 - 7.3049974) / 0.3526596)
    assert ratio == pytest.approx(0.051, abs=5e-4)
    assert chinchilla_optimal_params(1e10) == pytest.approx(ratio * 1e10, rel=1e-9)
    assert unique_params(1e10, 1e8) == pytest.approx(1e8)  # N below N_opt(U): all parameters count
    assert unique_params(1e10, 1e10) == pytest.approx(ratio * 1e10, rel=1e-9)


def test_muennighoff_loss_by_hand():
    # N = 1e8, D = 2e9, U = 1e9
    a, b, e, alpha = math.exp(6.255414), math.exp(7.3049974), math.exp(0.6254804), 0.3526596
    u_n = math.exp((6.255414 - 7.3049974) / 0.3526596) * 1e9  # ≈ 5.1e7 < N = 1e8
    r_n = 1e8 / u_n - 1
    n_eff = u_n + u_n * 5.309743 * (1 - math.exp(-r_n / 5.309743))
    d_eff = 1e9 + 1e9 * 15.387756 * (1 - math.exp(-1 / 15.387756))  # R_D = 2e9/1e9 − 1 = 1
    expected = e + a / n_eff**alpha + b / d_eff**alpha
    assert muennighoff_loss(1e8, 2e9, 1e9) == pytest.approx(expected, rel=1e-12)


def test_muennighoff_loss_reduces_to_chinchilla_form_without_repetition():
    # D = U and N ≤ U_N: N' = N, D' = D
    N, D = 1e7, 1e9
    expected = math.exp(0.6254804) + math.exp(6.255414) / N**0.3526596 + math.exp(7.3049974) / D**0.3526596
    assert muennighoff_loss(N, D, D) == pytest.approx(expected, rel=1e-12)


def test_muennighoff_loss_matches_the_datablations_readme():
    # huggingface/datablations README, "Parametric Fit": the two models of Figure 1 (right)
    assert muennighoff_loss(6.34e9, 242e9, 25e9) == pytest.approx(2.2256440889984477, rel=1e-12)
    assert muennighoff_loss(8.67e9, 178e9, 25e9) == pytest.approx(2.2269634075087867, rel=1e-12)


def test_muennighoff_loss_broadcasts_and_more_unique_data_helps():
    losses = muennighoff_loss(1e9, 1e11, np.array([1e9, 1e10, 1e11]), MUENNIGHOFF_2023)
    assert losses.shape == (3,)
    assert np.all(np.diff(losses) < 0)
