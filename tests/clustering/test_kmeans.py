"""Spherical k-means (DESIGN §3.2): both backends recover seeded blobs on the unit sphere, the objective behaves,
FAISS and torch agree, the subsampling rule is FAISS's, and ``assign`` returns ``1 − cos`` as int32 / float32.

The blobs: 6 mutually orthogonal centres in 32-d, 500 points each, Gaussian noise of σ = 0.15 per coordinate, then
normalised (a point's cosine to its own centre is about 0.76, to any other about 0 ± 0.1: well separated, the
Bayes-optimal labelling is perfect). Both backends initialise from k random training points with a single start
(FAISS's ``nredo=1``, no k-means++), so on such data a seed can end in the local optimum where two initial
centroids fell in one blob and two other blobs share a centroid (ARI ≈ 0.77; about a third of the seeds for each
backend). ``SEED`` is a seed for which every fit below reaches the global optimum; the objective and
monotonicity tests use several seeds, since they hold in local optima too.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from winnow.clustering.kmeans import KMeansResult, SphericalKMeans, assign
from winnow.core.errors import ConfigError

K, D, N, SIGMA = 6, 32, 3000, 0.15
SEED = 6  # k-means seed: every fit of the recovery tests reaches the global optimum (see the module docstring)
BACKENDS = ["faiss", "torch"]


def make_blobs(seed: int = 0, k: int = K, d: int = D, n: int = N, sigma: float = SIGMA):
    """``(x [n, d] float32 unit-norm, labels [n], centres [k, d])`` with orthonormal centres."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    centres = q[:k]
    labels = np.repeat(np.arange(k), n // k)
    x = centres[labels] + sigma * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels, centres


@pytest.fixture(scope="module")
def blobs():
    return make_blobs()


def fit(x: np.ndarray, backend: str, k: int = K, seed: int = SEED, **kwargs) -> KMeansResult:
    return SphericalKMeans(k, niter=20, seed=seed, backend=backend, device="cpu", **kwargs).fit(x)


def labels_of(x: np.ndarray, result: KMeansResult, backend: str) -> np.ndarray:
    return assign(x, result.centroids, backend=backend, device="cpu")[0]


@pytest.fixture(scope="module")
def fits(blobs):
    x, _, _ = blobs
    return {b: fit(x, b) for b in BACKENDS}


def test_blobs_are_well_separated(blobs):
    x, y, centres = blobs
    cos = x @ centres.T
    assert (np.argmax(cos, axis=1) == y).all()  # the true centres label every point correctly
    own = cos[np.arange(len(y)), y]
    cos[np.arange(len(y)), y] = -np.inf
    assert (own - cos.max(axis=1)).min() > 0.1  # every point: a margin between its own and any other centre


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovers_blobs(blobs, fits, backend):
    x, y, centres = blobs
    r = fits[backend]
    assert r.backend == backend and r.device == "cpu"
    assert r.centroids.shape == (K, D) and r.centroids.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(r.centroids, axis=1), 1.0, atol=1e-5)
    labels = labels_of(x, r, backend)
    assert adjusted_rand_score(y, labels) >= 0.95
    # each fitted centroid is close to one true centre, and every true centre is found
    match = np.argmax(r.centroids @ centres.T, axis=1)
    assert sorted(match.tolist()) == list(range(K))
    assert (np.max(r.centroids @ centres.T, axis=1) > 0.98).all()
    assert r.n_input == N and r.n_train == K * 256  # FAISS's default max_points_per_centroid subsamples 3000
    assert r.seconds > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2, SEED])
def test_objective_non_decreasing(blobs, backend, seed):
    x, _, _ = blobs
    r = fit(x, backend, seed=seed)
    obj = np.asarray(r.objective, np.float64)
    assert 1 <= len(obj) <= 20  # FAISS may stop early once the objective stops moving
    assert np.isfinite(obj).all()
    assert (obj > 0).all() and (obj <= r.n_train + 1e-3).all()  # a sum of n_train cosines
    slack = 1e-3 * np.abs(obj[:-1])
    assert (np.diff(obj) >= -slack).all(), obj


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_more_clusters_give_a_higher_objective(blobs, backend, seed):
    x, _, _ = blobs
    finals = []
    for k in (2, 3, 6, 12):
        r = fit(x, backend, k=k, seed=seed, max_points_per_centroid=10_000)  # every k trains on all 3000 points
        assert r.n_train == N
        finals.append(r.objective[-1])
    assert np.all(np.diff(finals) > 0), finals


def test_faiss_and_torch_agree(blobs, fits):
    x, _, _ = blobs
    a = labels_of(x, fits["faiss"], "faiss")
    b = labels_of(x, fits["torch"], "torch")
    assert adjusted_rand_score(a, b) >= 0.95
    # the same centroids up to a permutation
    sims = fits["faiss"].centroids @ fits["torch"].centroids.T
    assert sorted(np.argmax(sims, axis=1).tolist()) == list(range(K))
    assert (sims.max(axis=1) > 0.99).all()  # (each backend draws its own 1536-point training sample)
    # and (nearly) the same final objective on the same-sized training sample
    assert abs(fits["faiss"].objective[-1] - fits["torch"].objective[-1]) / fits["faiss"].objective[-1] < 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_on_a_sample_then_assign_all_matches_fitting_on_all(blobs, fits, backend):
    x, y, _ = blobs
    sample = np.random.default_rng(1).random(len(x)) < 0.2
    r = fit(x[sample], backend)
    assert r.n_input == int(sample.sum()) == r.n_train  # below the cap: no further subsampling
    labels_sample = labels_of(x, r, backend)
    labels_all = labels_of(x, fits[backend], backend)
    assert adjusted_rand_score(labels_all, labels_sample) >= 0.95
    assert adjusted_rand_score(y, labels_sample) >= 0.95


@pytest.mark.parametrize("backend", BACKENDS)
def test_assign_types_and_numpy_reference(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 16)).astype(np.float32) * 3.0  # not normalised: assign normalises
    c = rng.standard_normal((7, 16))
    c = (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)
    x[5:10] = 2.0 * c[:5]  # on a centroid: distance 0
    labels, dist = assign(x, c, backend=backend, device="cpu")
    assert labels.dtype == np.int32 and dist.dtype == np.float32
    assert labels.shape == dist.shape == (500,)
    assert ((dist >= 0) & (dist <= 2)).all()
    xn = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    cos = xn @ c.astype(np.float64).T
    np.testing.assert_array_equal(labels, np.argmax(cos, axis=1))
    np.testing.assert_allclose(dist, 1.0 - cos.max(axis=1), atol=1e-5)
    np.testing.assert_allclose(dist[5:10], 0.0, atol=1e-5)
    # antipodal to the only centroid: distance 2
    l1, d1 = assign(-c[:1] * 5.0, c[:1], backend=backend, device="cpu")
    assert l1.tolist() == [0]
    np.testing.assert_allclose(d1, 2.0, atol=1e-6)
    # the method goes through the same function
    km = SphericalKMeans(7, backend=backend, device="cpu")
    l2, d2 = km.assign(x, c)
    np.testing.assert_array_equal(l2, labels)
    np.testing.assert_array_equal(d2, dist)


@pytest.mark.parametrize("backend", BACKENDS)
def test_assign_empty_input(backend):
    labels, dist = assign(np.zeros((0, 4), np.float32), np.eye(4, dtype=np.float32), backend=backend, device="cpu")
    assert labels.shape == dist.shape == (0,)
    assert labels.dtype == np.int32 and dist.dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_fewer_points_than_clusters_is_a_config_error(backend):
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    with pytest.raises(ConfigError, match="cluster.k=6"):
        SphericalKMeans(6, backend=backend, device="cpu").fit(x)
    # n == k is allowed
    r = SphericalKMeans(5, niter=3, backend=backend, device="cpu").fit(x)
    assert r.centroids.shape == (5, 8) and r.n_train == 5


def test_unknown_backend_is_a_config_error():
    x = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    with pytest.raises(ConfigError, match="cluster.backend"):
        SphericalKMeans(2, backend="sklearn", device="cpu").fit(x)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "n, k, mppc",
    [(400, 4, 10), (40, 4, 10), (39, 4, 10), (41, 4, 10), (12, 3, 2), (3000, 6, 256), (300, 6, 256)],
)
def test_subsampling_rule(backend, n, k, mppc):
    # tight blobs: every training point has cosine > 0.95 to its centroid, so the objective (a sum over the
    # training points actually used) tells how many were used
    x, _, _ = make_blobs(seed=5, k=k, d=16, n=n - n % k, sigma=0.01)
    if n % k:
        x = np.concatenate([x, x[: n % k]])
    r = SphericalKMeans(k, niter=5, seed=0, max_points_per_centroid=mppc, backend=backend, device="cpu").fit(x)
    n_train = min(n, k * mppc)
    assert r.n_input == n
    assert r.n_train == n_train
    assert r.objective[-1] <= n_train + 1e-3
    assert r.objective[-1] >= 0.5 * n_train  # well above what half the points could give


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic_on_cpu(blobs, backend):
    x, _, _ = blobs
    a = fit(x, backend, seed=3)
    b = fit(x, backend, seed=3)
    assert a.centroids.tobytes() == b.centroids.tobytes()
    assert a.objective == b.objective
    c = fit(x, backend, seed=4)
    assert c.centroids.tobytes() != a.centroids.tobytes()


@pytest.mark.gpu
def test_torch_backend_on_cuda(blobs):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x, y, _ = blobs
    r = SphericalKMeans(K, niter=20, seed=SEED, backend="torch", device="cuda").fit(x)
    assert r.backend == "torch" and r.device == "cuda"
    assert r.centroids.dtype == np.float32 and r.centroids.shape == (K, D)
    assert r.n_train == K * 256
    labels, dist = assign(x, r.centroids, backend="torch", device="cuda")
    assert labels.dtype == np.int32 and dist.dtype == np.float32
    assert ((dist >= 0) & (dist <= 2)).all()
    assert adjusted_rand_score(y, labels) >= 0.95
    cpu_labels = labels_of(x, fit(x, "torch"), "torch")  # not the faiss fit: GPU machines may lack faiss
    assert adjusted_rand_score(cpu_labels, labels) >= 0.95
    obj = np.asarray(r.objective)
    assert (np.diff(obj) >= -1e-3 * np.abs(obj[:-1])).all()
    # the CUDA assignment agrees with the CPU one on the same centroids
    l_cpu, d_cpu = assign(x, r.centroids, backend="torch", device="cpu")
    assert (l_cpu == labels).mean() > 0.999
    np.testing.assert_allclose(d_cpu, dist, atol=1e-4)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_nredo_keeps_the_best_of_several_initialisations(blobs, backend):
    x, truth, _ = blobs
    # over several seeds, one init alone sometimes merges two blobs; the best of 8 never does worse than one
    for seed in range(4):
        one = fit(x, backend, seed=seed)
        best = fit(x, backend, seed=seed, nredo=8)
        assert best.objective[-1] >= one.objective[-1] - 1e-3 * abs(one.objective[-1])
    assert adjusted_rand_score(truth, labels_of(x, fit(x, backend, seed=0, nredo=8), backend)) >= 0.95


def test_fit_can_normalise_its_input_in_place(blobs):
    x, _, _ = blobs
    scaled = np.ascontiguousarray(x * 3.0, dtype=np.float32)
    kept = scaled.copy()
    a = fit(scaled, "faiss")
    assert np.array_equal(scaled, kept), "the default leaves the caller's array alone"
    b = SphericalKMeans(K, niter=20, seed=SEED, backend="faiss", device="cpu").fit(scaled, overwrite_input=True)
    np.testing.assert_allclose(np.linalg.norm(scaled, axis=1), 1.0, atol=1e-6)  # normalised where it was
    assert a.centroids.tobytes() == b.centroids.tobytes()
