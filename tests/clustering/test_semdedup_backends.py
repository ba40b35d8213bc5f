"""SemDeDup backends (issue 17): the torch backend returns the numpy backend's bits, on every fixture, block size
and screening dtype, because both report the canonical similarity (exact float32 products, one fixed float64
summation tree) and only screen with their BLAS. The spec is checked directly too: a brute-force search over every
pair with ``canonical_sim``, ties to the earliest-ranked member.

This file imports only numpy, pytest, torch and ``winnow.clustering.semdedup``, so its GPU tests run on a GPU
machine that lacks faiss, polars and hypothesis (``bench/device/run_gpu.sh``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import winnow.clustering.semdedup as sd
from winnow.clustering.semdedup import (
    canonical_sim,
    first_copies,
    is_duplicate,
    max_sim_to_earlier,
    rank_order,
    resolve_backend,
    screen_margin,
    semdedup_cluster,
)
from winnow.core.errors import ConfigError

torch = pytest.importorskip("torch")

BLOCKS = [1, 2, 7, 16, 53, 2048]
TORCH_CPU = [("torch", "float32"), ("torch", "bfloat16"), ("torch", "float16")]
EPS = [1e-6, 1e-4, 0.001, 0.005, 0.01, 0.05, 0.1, 0.3, 0.9]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def spec(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The definition, by brute force: for each row, the canonical similarity to every earlier row, the maximum
    rounded to float32, and the lowest index attaining it."""
    n = len(emb)
    best, arg = np.full(n, np.nan, np.float32), np.full(n, -1, np.int64)
    for j in range(1, n):
        v = canonical_sim(emb[:j], np.repeat(emb[j : j + 1], j, axis=0))
        arg[j] = int(np.flatnonzero(v == v.max())[0])
        best[j] = np.float32(v.max())
    return best, arg


def same_bits(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    assert a[0].dtype == b[0].dtype == np.float32 and a[1].dtype == b[1].dtype == np.int64
    np.testing.assert_array_equal(a[0].view(np.int32), b[0].view(np.int32))  # NaN included, bit for bit
    np.testing.assert_array_equal(a[1], b[1])


# -- fixtures ----------------------------------------------------------------------------------------------------


def random_rows(n: int = 53, d: int = 24, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, d)))


def exact_copies(seed: int = 1) -> np.ndarray:
    """61 rows drawn from 6 distinct vectors: every row after the first of its kind ties exactly."""
    rng = np.random.default_rng(seed)
    base = unit(rng.standard_normal((6, 8)))
    return base[rng.integers(0, 6, size=61)]


def crafted_ties() -> np.ndarray:
    """Rows whose similarities tie exactly although the vectors differ (mirror images about the last row)."""
    return np.array(
        [
            [0.6, 0.8, 0.0],
            [0.6, -0.8, 0.0],  # cos to row 0: 0.36 − 0.64
            [0.6, 0.0, 0.8],
            [0.6, 0.0, -0.8],
            [0.0, 0.6, 0.8],
            [0.0, -0.6, 0.8],
            [1.0, 0.0, 0.0],  # 0.6 to rows 0–3 (tie at 0), 0 to rows 4, 5
            [0.0, 0.0, 1.0],  # 0.8 to rows 2, 4, 5 (tie at 2); -0.8 to row 3
            [0.0, 1.0, 0.0],  # 0.8 to row 0, 0.6 to row 4: row 0
        ],
        np.float32,
    )


def near_duplicates(seed: int = 2, d: int = 64) -> np.ndarray:
    """A tight group (pairwise cosine within about 1e-6 of each other, so many rows have more than ``FLOOD``
    screening candidates per tile), exact copies of its members, and unrelated rows, shuffled."""
    rng = np.random.default_rng(seed)
    base = unit(rng.standard_normal((1, d)))
    group = unit(base + rng.standard_normal((160, d)) * 1e-4 / np.sqrt(d))
    rows = np.concatenate([group, group[rng.integers(0, 160, 40)], unit(rng.standard_normal((40, d)))])
    return rows[rng.permutation(len(rows))]


def planted(seed: int = 0, n_groups: int = 20, d: int = 64):
    """Base vectors with 0–3 copies each (exact or cosine > 0.99), shuffled; as in test_semdedup.py."""
    rng = np.random.default_rng(seed)
    base = unit(rng.standard_normal((n_groups, d)))
    rows = []
    for g in range(n_groups):
        rows.append(base[g])
        for c in range(int(rng.integers(0, 4))):
            v = base[g] if c == 0 and g % 3 == 0 else unit(base[g][None] + rng.standard_normal((1, d)) * 0.01)[0]
            rows.append(v)
    emb = np.asarray(rows, np.float32)[rng.permutation(len(rows))]
    centroid = emb.astype(np.float64).mean(0)
    dist = (1.0 - emb.astype(np.float64) @ (centroid / np.linalg.norm(centroid))).astype(np.float32)
    keys = rng.permutation(10 * len(emb))[: len(emb)]
    return emb, dist, keys


FIXTURES = {
    "random": random_rows,
    "random-d384": lambda: random_rows(40, 384, seed=5),
    "exact-copies": exact_copies,
    "crafted-ties": crafted_ties,
    "near-duplicates": near_duplicates,
    "planted": lambda: planted()[0],
    "not-unit-norm": lambda: random_rows(50, 32, seed=9) * np.linspace(0.2, 5, 50, dtype=np.float32)[:, None],
    "one-row": lambda: random_rows(1, 8),
    "two-equal-rows": lambda: np.repeat(random_rows(1, 8), 2, axis=0),
}


#: every fixture with every block size, but the 240-row one with tiles of 1 and 2 rows (thousands of tiles)
CASES = [(name, block) for name in FIXTURES for block in BLOCKS if block > 2 or name != "near-duplicates"]


@pytest.fixture(scope="module")
def specs():
    return {name: (make(), spec(make())) for name, make in FIXTURES.items()}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these are thousands of tiny products, where a second OpenMP thread only waits (and on a
    loaded machine waits long)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- the canonical similarity and the bound ------------------------------------------------------------------------


def test_canonical_sim_is_the_same_bits_on_numpy_and_torch_and_in_any_batch():
    x, y = random_rows(200, 384, seed=3), random_rows(200, 384, seed=4)
    a = canonical_sim(x, y)
    b = canonical_sim(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    assert a.dtype == np.float64 and a.shape == (200,)
    np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))
    for i in (0, 17, 199):  # a pair alone gives what it gives in a batch
        assert canonical_sim(x[i : i + 1], y[i : i + 1])[0] == a[i]
    # it is the dot product, to within a few float64 roundings of the exact (rational) value
    exact = [math.fsum(float(p) * float(q) for p, q in zip(x[i], y[i], strict=True)) for i in range(200)]
    np.testing.assert_allclose(a, exact, rtol=0, atol=1e-14)
    assert canonical_sim(np.zeros((3, 0), np.float32), np.zeros((3, 0), np.float32)).tolist() == [0.0] * 3


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_screening_error_stays_inside_the_margin(precision):
    """The screened products of every backend lie within a quarter of the margin (the bound itself) of the
    canonical similarities: the margin holds with its factor 2 of safety to spare."""
    x = random_rows(300, 384, seed=6)
    x[:20] = x[0]  # exact copies: similarity 1, the largest rounding
    canon = np.stack([canonical_sim(x, np.repeat(x[j : j + 1], 300, axis=0)) for j in range(300)])
    bound = screen_margin(precision, 384, 1.0, sd.INPUT_UNIT[precision] if precision != "float32" else 0.0) / 4
    dtype = getattr(torch, precision)
    screened = [(torch.from_numpy(x).to(dtype) @ torch.from_numpy(x).to(dtype).T).float().numpy()]
    if precision == "float32":
        screened.append(x @ x.T)
    for s in screened:
        err = np.abs(s.astype(np.float64) - canon).max()
        assert err <= bound
        assert err > 0  # the screening does round: the rescoring is what makes the backends agree
    assert screen_margin("float32", 384, 1.0) < 1e-3 and screen_margin("bfloat16", 384, 1.0, 2.0**-9) < 0.05
    assert screen_margin("float32", 384, 4.0) == pytest.approx(4 * screen_margin("float32", 384, 1.0))


def test_first_copies_marks_the_first_of_every_distinct_row():
    e = exact_copies()
    first = first_copies(e)
    seen = set()
    for i, row in enumerate(e):
        assert first[i] == (row.tobytes() not in seen)
        seen.add(row.tobytes())
    assert first_copies(np.zeros((0, 4), np.float32)).shape == (0,)
    assert first_copies(np.zeros((3, 0), np.float32)).tolist() == [True, False, False]


# -- the spec, and both backends against it ------------------------------------------------------------------------


@pytest.mark.parametrize("name,block", CASES)
def test_numpy_backend_is_the_spec(specs, name, block):
    emb, want = specs[name]
    same_bits(max_sim_to_earlier(emb, block=block), want)


@pytest.mark.parametrize("backend,dtype", TORCH_CPU)
@pytest.mark.parametrize("name,block", CASES)
def test_torch_backend_on_cpu_is_the_numpy_backend(specs, backend, dtype, name, block):
    emb, want = specs[name]
    got = max_sim_to_earlier(emb, block=block, backend=backend, device="cpu", dtype=dtype)
    same_bits(got, max_sim_to_earlier(emb, block=block))
    same_bits(got, want)


def test_the_tie_rule_on_crafted_ties():
    e = crafted_ties()
    six, eight = float(e[0, 0]), float(e[0, 1])  # 0.6 and 0.8 as float32 holds them
    for backend in ("numpy", "torch"):
        sim, arg = max_sim_to_earlier(e, block=2, backend=backend, device="cpu")
        # row 2 ties rows 0 and 1 (0.36), row 7 ties rows 2, 4 and 5 (0.8): the earliest wins
        assert arg.tolist() == [-1, 0, 0, 0, 2, 2, 0, 2, 0]
        assert sim[1] == np.float32(six * six - eight * eight) and sim[2] == np.float32(six * six)
        np.testing.assert_array_equal(sim[6:], np.float32([six, eight, eight]))
    # exact copies: every later copy points at the first one, whichever block splits them
    e = exact_copies()
    for block in (1, 5, 64):
        for backend in ("numpy", "torch"):
            _, arg = max_sim_to_earlier(e, block=block, backend=backend, device="cpu")
            first = {}
            for i, row in enumerate(e):
                key = row.tobytes()
                if key in first:
                    assert arg[i] == first[key]
                first.setdefault(key, i)


def test_no_rows_and_one_row():
    for backend in ("numpy", "torch"):
        sim, arg = max_sim_to_earlier(np.zeros((0, 4), np.float32), backend=backend, device="cpu")
        assert sim.shape == arg.shape == (0,) and sim.dtype == np.float32 and arg.dtype == np.int64
        sim, arg = max_sim_to_earlier(unit(np.ones((1, 4))), backend=backend, device="cpu")
        assert np.isnan(sim[0]) and arg.tolist() == [-1]
        sim, nn = semdedup_cluster(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), backend=backend)
        assert sim.shape == nn.shape == (0,)
        sim, nn = semdedup_cluster(unit(np.ones((1, 4))), np.array([0.3], np.float32), backend=backend, device="cpu")
        assert np.isnan(sim[0]) and nn.tolist() == [-1]


@pytest.mark.parametrize("flood", [0, 1, 3, 10**9])
def test_the_float64_rescreening_changes_nothing(monkeypatch, specs, flood):
    """``FLOOD`` only decides which rows are screened again in float64: every value of it gives the spec."""
    calls = []
    rescreen = sd._Search.rescreen

    def spy(self, *args):
        calls.append(len(args[3]))
        return rescreen(self, *args)

    monkeypatch.setattr(sd, "FLOOD", flood)
    monkeypatch.setattr(sd._Search, "rescreen", spy)
    for name in ("near-duplicates", "exact-copies", "random"):
        emb, want = specs[name]
        for backend, dtype in [("numpy", "float32"), *TORCH_CPU]:
            same_bits(max_sim_to_earlier(emb, block=16, backend=backend, device="cpu", dtype=dtype), want)
    assert (sum(calls) > 0) == (flood < 10**9)


def test_near_duplicates_take_the_float64_path_at_the_default_flood(monkeypatch, specs):
    calls = []
    rescreen = sd._Search.rescreen
    monkeypatch.setattr(sd._Search, "rescreen", lambda self, *a: calls.append(1) or rescreen(self, *a))
    emb, want = specs["near-duplicates"]
    same_bits(max_sim_to_earlier(emb, block=2048, backend="torch", device="cpu"), want)
    assert calls  # the group floods the float32 screening, the float64 one sorts it out


def test_a_torch_tensor_is_searched_where_it_lives():
    emb = random_rows(70, 16, seed=8)
    same_bits(max_sim_to_earlier(torch.from_numpy(emb), block=8, backend="torch"), max_sim_to_earlier(emb))
    sim, nn = semdedup_cluster(torch.from_numpy(emb), np.linspace(0, 1, 70), backend="torch", block=8)
    want = semdedup_cluster(emb, np.linspace(0, 1, 70), block=8)
    same_bits((sim, nn), want)


def test_16_bit_screening_restores_torch_flags():
    m = torch.backends.cuda.matmul
    before = m.allow_fp16_reduced_precision_reduction, m.allow_bf16_reduced_precision_reduction
    max_sim_to_earlier(random_rows(30, 8), backend="torch", device="cpu", dtype="bfloat16")
    assert (m.allow_fp16_reduced_precision_reduction, m.allow_bf16_reduced_precision_reduction) == before


def test_tf32_widens_the_float32_margin(monkeypatch):
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert sd._TorchOps("cpu", "float32").precision == "tf32"
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "medium")
    assert sd._TorchOps("cpu", "float32").precision == "bfloat16"
    monkeypatch.undo()
    assert sd._TorchOps("cpu", "float32").precision == "float32"
    assert screen_margin("tf32", 384, 1.0) > 10 * screen_margin("float32", 384, 1.0)


# -- whole clusters: decisions at every eps, the nearest ids -------------------------------------------------------


@pytest.mark.parametrize("rank", ["hard", "easy", "random"])
@pytest.mark.parametrize("block", [3, 16, 2048])
def test_semdedup_cluster_decisions_are_identical(rank, block):
    emb, dist, keys = planted(seed=3)
    want = semdedup_cluster(emb, dist, rank=rank, seed=4, cluster_id=2, keys=keys, block=block)
    for backend, dtype in TORCH_CPU:
        got = semdedup_cluster(
            emb, dist, rank=rank, seed=4, cluster_id=2, keys=keys, block=block, backend=backend, device="cpu",
            dtype=dtype,
        )  # fmt: skip
        same_bits(got, want)
        for eps in EPS:
            np.testing.assert_array_equal(is_duplicate(got[0], eps), is_duplicate(want[0], eps))
    # and the survivors are one per planted group (the decisions are SemDeDup's, not only equal)
    order = rank_order(dist, rank, seed=4, cluster_id=2, keys=keys)
    assert np.isnan(want[0][order[0]]) and want[1][order[0]] == -1
    assert (is_duplicate(want[0], 0.05)).sum() > 0


def test_random_clusters_of_many_sizes_agree():
    rng = np.random.default_rng(11)
    for n in (2, 3, 17, 100, 257):
        emb = unit(rng.standard_normal((n, 32)) + 3 * rng.standard_normal(32))  # one dense cluster
        dist = rng.random(n).astype(np.float32)
        want = semdedup_cluster(emb, dist, block=64)
        same_bits(semdedup_cluster(emb, dist, block=64, backend="torch", device="cpu"), want)
        same_bits(semdedup_cluster(emb, dist, block=64, backend="torch", device="cpu", dtype="bfloat16"), want)


# -- backend choice ------------------------------------------------------------------------------------------------


def test_resolve_backend(monkeypatch):
    assert resolve_backend("numpy", "cuda") == ("numpy", "cpu")
    assert resolve_backend("torch", "cpu") == ("torch", "cpu")
    assert resolve_backend("auto", "cpu") == ("numpy", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_backend("auto", "auto") == ("numpy", "cpu")
    assert resolve_backend("torch", "auto") == ("torch", "cpu")
    with pytest.raises(ConfigError, match="dedup.device=cuda"):
        resolve_backend("torch", "cuda")
    with pytest.raises(ConfigError, match="dedup.device=cuda"):
        resolve_backend("auto", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_backend("auto", "auto") == ("torch", "cuda")
    assert resolve_backend("torch", "auto") == ("torch", "cuda")
    with pytest.raises(ValueError, match="dedup.backend"):
        resolve_backend("jax", "auto")  # type: ignore[arg-type]


def test_bad_arguments_are_rejected():
    emb = random_rows(5, 4)
    with pytest.raises(ValueError, match="float32 only"):
        max_sim_to_earlier(emb, dtype="bfloat16")
    with pytest.raises(ValueError, match="dedup.dtype"):
        max_sim_to_earlier(emb, backend="torch", device="cpu", dtype="float64")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend"):
        max_sim_to_earlier(emb, backend="auto")
    with pytest.raises(ValueError, match="block"):
        max_sim_to_earlier(emb, block=0)
    with pytest.raises(ValueError, match="finite"):
        max_sim_to_earlier(np.where(np.arange(4) == 2, np.nan, emb).astype(np.float32))
    with pytest.raises(ValueError, match="float16 screening"):  # it would overflow
        max_sim_to_earlier(emb * 1000, backend="torch", device="cpu", dtype="float16")


# -- CUDA ------------------------------------------------------------------------------------------------------------


def cuda_or_skip() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_cuda_matches_numpy_within_tolerance(dtype):
    cuda_or_skip()
    rng = np.random.default_rng(12)
    emb = unit(rng.standard_normal((3000, 384)) + 2 * rng.standard_normal(384))
    emb[2500:] = emb[rng.integers(0, 2500, 500)]  # exact copies
    want = max_sim_to_earlier(emb, block=1024)
    got = max_sim_to_earlier(emb, block=1024, backend="torch", device="cuda", dtype=dtype)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got[1], want[1])
    for eps in (0.001, 0.05, 0.2):
        np.testing.assert_array_equal(is_duplicate(got[0], eps), is_duplicate(want[0], eps))


@pytest.mark.gpu
@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_cuda_returns_the_same_bits(specs, name, dtype):
    """The stronger claim: the canonical rescoring is the same IEEE operations on CUDA, so the bits agree too."""
    cuda_or_skip()
    emb, want = specs[name]
    for block in (2, 16, 2048) if len(emb) < 100 else (16, 2048):  # thousands of 2-row tiles: seconds of launches
        same_bits(max_sim_to_earlier(emb, block=block, backend="torch", device="cuda", dtype=dtype), want)
    got = max_sim_to_earlier(torch.from_numpy(emb).cuda(), block=16, backend="torch")  # a CUDA tensor stays there
    same_bits(got, want)
