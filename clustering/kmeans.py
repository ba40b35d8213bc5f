"""Spherical k-means: FAISS (the reference; GPU FAISS when available, faiss-cpu otherwise) or torch.

Inputs are L2-normalised float32 vectors; centroids are unit-norm, so the nearest centroid is the one with the
largest inner product and ``dist_to_centroid = 1 − cos``. FAISS subsamples its training set to
``k × max_points_per_centroid`` points; both backends do so with the same rule and report it
(``KMeansResult.n_train``). The objective recorded per iteration is FAISS's for spherical k-means: the sum over
training points of the inner product with their centroid (higher is better).

The torch backend exists for GPU machines where GPU FAISS cannot be installed (CUDA 13 only, say); it follows
the same algorithm (random init from the sample, Lloyd iterations, empty clusters re-seeded by splitting the
largest) and is checked against FAISS on seeded data by the adjusted Rand index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from loguru import logger

from winnow.core.device import torch_device
from winnow.core.errors import ConfigError


@dataclass
class KMeansResult:
    """A fitted spherical k-means.

    Attributes:
        centroids: ``[k, d]`` float32, unit-norm.
        objective: the objective after each iteration (sum of inner products to the assigned centroid).
        n_input: vectors given to ``fit``.
        n_train: vectors actually used (FAISS subsamples to ``k × max_points_per_centroid``).
        backend, device: what ran.
        seconds: wall time of the fit.
    """

    centroids: np.ndarray
    objective: list[float] = field(default_factory=list)
    n_input: int = 0
    n_train: int = 0
    backend: str = "faiss"
    device: str = "cpu"
    seconds: float = 0.0


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("cluster.backend=faiss needs faiss: pip install faiss-cpu (or the gpu extra)") from e
    return faiss


def faiss_gpu_available() -> bool:
    try:
        faiss = _faiss()
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except ImportError:
        return False


#: FAISS warns below this many training points per centroid (``min_points_per_centroid``)
MIN_POINTS_PER_CENTROID = 39
#: rows normalised at once: ``np.linalg.norm`` squares its whole input in a temporary, so a block at a time
_NORM_BLOCK = 16_384


def points_per_centroid(k: int, dim: int, max_points_per_centroid: int, max_bytes: int | None) -> int:
    """Training points per centroid so that the sample, ``k × p × dim`` float32, stays within ``max_bytes``:
    ``max_points_per_centroid`` when it fits (or ``max_bytes`` is ``None``), else ``max_bytes // (k·dim·4)`` but
    never below ``MIN_POINTS_PER_CENTROID`` (then the sample is larger than ``max_bytes``) nor above
    ``max_points_per_centroid``."""
    if max_bytes is None:
        return max_points_per_centroid
    fits = max_bytes // (k * dim * 4)
    return min(max_points_per_centroid, max(MIN_POINTS_PER_CENTROID, fits))


def _normalize(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Rows scaled to unit length; ``inplace`` reuses ``x``'s memory when it is C-contiguous float32.

    A block of rows at a time, so the only temporary is one block (each row's norm is the same as in one call).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = x if inplace else np.empty_like(x)
    for a in range(0, x.shape[0], _NORM_BLOCK):
        block = x[a : a + _NORM_BLOCK]
        norms = np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        np.divide(block, norms, out=out[a : a + _NORM_BLOCK])
    return out


class SphericalKMeans:
    """Spherical k-means with a FAISS or torch backend.

    Args:
        k: number of clusters.
        niter: Lloyd iterations.
        seed: random seed (initialisation and subsampling).
        max_points_per_centroid: the training set is subsampled to ``k ×`` this many points (FAISS's rule).
        backend: ``faiss`` (reference) or ``torch``.
        device: ``auto`` (GPU when the backend can use one), ``cpu`` or ``cuda``.
        nredo: independent initialisations; the fit with the best final objective is kept.
    """

    def __init__(
        self,
        k: int,
        niter: int = 20,
        seed: int = 0,
        max_points_per_centroid: int = 256,
        backend: Literal["faiss", "torch"] = "faiss",
        device: Literal["auto", "cpu", "cuda"] = "auto",
        nredo: int = 1,
    ):
        self.k = k
        self.nredo = nredo
        self.niter = niter
        self.seed = seed
        self.max_points_per_centroid = max_points_per_centroid
        self.backend = backend
        self.device = device

    # -- fit -------------------------------------------------------------------------------------------------------

    def fit(self, x: np.ndarray, overwrite_input: bool = False) -> KMeansResult:
        """Fit on ``x`` ``[n, d]`` (normalised here if not already). Raises ConfigError if ``n < k``.

        ``overwrite_input=True`` normalises ``x`` in place (when it is C-contiguous float32) instead of copying it:
        for callers that own a large sample and need it no more.
        """
        x = _normalize(x, inplace=overwrite_input)
        n = x.shape[0]
        if n < self.k:
            raise ConfigError(
                f"cluster.k={self.k} is larger than the {n} training vectors; lower cluster.k or raise "
                "cluster.fit_fraction"
            )
        cap = self.k * self.max_points_per_centroid
        if n > cap:
            logger.info(
                f"k-means: training set subsampled from {n} to {cap} points (k={self.k} x "
                f"max_points_per_centroid={self.max_points_per_centroid})"
            )
        t0 = time.perf_counter()
        if self.backend == "faiss":
            result = self._fit_faiss(x)
        elif self.backend == "torch":
            result = self._fit_torch(x)
        else:
            raise ConfigError(f"cluster.backend={self.backend!r}; allowed: faiss, torch")
        result.seconds = time.perf_counter() - t0
        result.n_input = n
        result.n_train = min(n, cap)
        for i, obj in enumerate(result.objective):
            logger.debug(f"k-means iteration {i}: objective {obj:.4f}")
        return result

    def _fit_faiss(self, x: np.ndarray) -> KMeansResult:
        faiss = _faiss()
        use_gpu = self.device == "cuda" or (self.device == "auto" and faiss_gpu_available())
        if self.device == "cuda" and not faiss_gpu_available():
            raise ConfigError(
                "cluster.device=cuda with cluster.backend=faiss needs GPU FAISS (the gpu extra); "
                "use cluster.backend=torch on this machine"
            )
        km = faiss.Kmeans(
            x.shape[1],
            self.k,
            niter=self.niter,
            seed=self.seed,
            nredo=self.nredo,
            spherical=True,
            max_points_per_centroid=self.max_points_per_centroid,
            gpu=bool(use_gpu),
            verbose=False,
        )
        km.train(x)
        objective = [float(s["obj"]) for s in km.iteration_stats]
        centroids = _normalize(np.asarray(km.centroids, dtype=np.float32))
        return KMeansResult(centroids, objective, backend="faiss", device="cuda" if use_gpu else "cpu")

    def _fit_torch(self, x: np.ndarray) -> KMeansResult:
        best: KMeansResult | None = None
        for redo in range(self.nredo):
            result = self._fit_torch_once(x, [self.seed, redo] if redo else self.seed)
            if best is None or result.objective[-1] > best.objective[-1]:
                best = result
        assert best is not None
        return best

    def _fit_torch_once(self, x: np.ndarray, seed: Any) -> KMeansResult:
        import torch

        device = torch_device(self.device, "cluster.device")
        rng = np.random.default_rng(seed)
        n = x.shape[0]
        cap = self.k * self.max_points_per_centroid
        sample = np.sort(rng.choice(n, cap, replace=False)) if n > cap else None
        xt = torch.from_numpy(x if sample is None else x[sample]).to(device)  # the whole sample: no copy on a CPU
        init = rng.choice(xt.shape[0], self.k, replace=False)
        c = xt[torch.from_numpy(init).to(device)].clone()
        objective: list[float] = []
        for _ in range(self.niter):
            labels, sims = _torch_assign(xt, c)
            objective.append(float(sims.double().sum()))
            sums = torch.zeros_like(c).index_add_(0, labels, xt)
            counts = torch.bincount(labels, minlength=self.k)
            empty = torch.nonzero(counts == 0).flatten().tolist()
            for j in empty:  # split the largest cluster: a point of it, slightly perturbed
                big = int(torch.argmax(counts))
                members = torch.nonzero(labels == big).flatten()
                pick = members[int(rng.integers(len(members)))]
                noise = torch.from_numpy(rng.standard_normal(x.shape[1]).astype(np.float32)).to(device) * 1e-3
                sums[j] = xt[pick] + noise
                counts[j] = 1
                counts[big] -= 1
            c = torch.nn.functional.normalize(sums, dim=1)
        return KMeansResult(c.cpu().numpy().astype(np.float32), objective, backend="torch", device=device)

    # -- assign ----------------------------------------------------------------------------------------------------

    def assign(self, x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid by inner product: ``(cluster_id int32, dist_to_centroid float32 = 1 − cos)``."""
        return assign(x, centroids, backend=self.backend, device=self.device)


def _torch_assign(x, c, chunk: int = 65_536):
    import torch

    labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    sims = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    for s in range(0, x.shape[0], chunk):
        best = (x[s : s + chunk] @ c.T).max(dim=1)
        sims[s : s + chunk], labels[s : s + chunk] = best.values, best.indices
    return labels, sims


def assign(
    x: np.ndarray, centroids: np.ndarray, backend: str = "faiss", device: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row of ``x``: ``(cluster_id int32, dist_to_centroid float32)``."""
    x = _normalize(x)
    if x.shape[0] == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    if backend == "faiss" and not (device == "cuda"):
        faiss = _faiss()
        index = faiss.IndexFlatIP(centroids.shape[1])
        index.add(np.ascontiguousarray(centroids, dtype=np.float32))
        sims, labels = index.search(x, 1)
        sims, labels = sims[:, 0], labels[:, 0]
    else:
        import torch

        dev = torch_device(device, "cluster.device")
        lab, sim = _torch_assign(torch.from_numpy(x).to(dev), torch.from_numpy(centroids).to(dev))
        labels, sims = lab.cpu().numpy(), sim.cpu().numpy()
    dist = np.clip(1.0 - sims.astype(np.float32), 0.0, 2.0)
    return labels.astype(np.int32), dist.astype(np.float32)
