"""The fit stage's memory (issue 15): ``cluster.fit_max_mib`` caps the k-means sample by lowering the points per
centroid (never below FAISS's 39), and the stage reads the chosen vectors into one float32 array, a row group at a
time, normalised in place in blocks, with the same centroids as reading, concatenating and copying them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.clustering.kmeans import MIN_POINTS_PER_CENTROID, SphericalKMeans, _normalize, points_per_centroid
from winnow.core.errors import ConfigError
from winnow.core.layout import arrow_to_vectors, vectors_to_arrow
from winnow.pipeline.config import load_config
from winnow.pipeline.runner import run_pipeline
from winnow.pipeline.stages import fit_hashes

#: 1024-dimensional vectors: k x dim x 4 bytes = 32 KiB per point per centroid, so whole MiB budgets bite
D, K = 1024, 8
SHARDS = {"s0": 130, "s1": 97, "s2": 150, "s3": 123, "s4": 100}  # 600 documents


def test_points_per_centroid_by_hand():
    # k = 4, dim = 8: a point per centroid costs 4 x 8 x 4 = 128 bytes
    assert points_per_centroid(4, 8, 256, None) == 256  # no cap
    assert points_per_centroid(4, 8, 256, 10**6) == 256  # 7812 fit: unchanged
    assert points_per_centroid(4, 8, 256, 4 * 256 * 8 * 4) == 256  # exactly the sample: unchanged
    assert points_per_centroid(4, 8, 256, 4 * 256 * 8 * 4 - 1) == 255
    assert points_per_centroid(4, 8, 256, 20_000) == 156  # 20000 // 128
    assert points_per_centroid(4, 8, 256, 2_000) == MIN_POINTS_PER_CENTROID == 39  # 15 fit: FAISS's minimum
    assert points_per_centroid(4, 8, 30, 2_000) == 30  # never more than max_points_per_centroid


def test_fit_max_mib_validation(tmp_path):
    def cfg(value: str):
        return load_config(None, [f"cluster.fit_max_mib={value}"], {"io.input": ["x"], "io.output": str(tmp_path)})

    assert cfg("null").cluster.fit_max_mib is None
    assert cfg("3").cluster.fit_max_mib == 3
    assert load_config(None, [], {"io.input": ["x"], "io.output": str(tmp_path)}).cluster.fit_max_mib == 1024
    for bad in ("0", "-5", "abc"):
        with pytest.raises(ConfigError, match=r"cluster\.fit_max_mib"):
            cfg(bad)


def old_normalize(x: np.ndarray) -> np.ndarray:
    """The normalisation before issue 15: every norm in one call (a temporary the size of ``x``), then a copy."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@pytest.mark.parametrize("shape", [(0, 4), (1, 384), (7, 3), (16_384, 16), (40_001, 24)])
def test_blocked_normalisation_has_the_same_bits(shape):
    rng = np.random.default_rng(shape[0])
    x = (rng.standard_normal(shape) * rng.uniform(0.01, 50.0, (shape[0], 1))).astype(np.float32)
    if shape[0] > 3:
        x[3] = 0.0  # a zero row stays zero (the 1e-12 floor)
    expected = old_normalize(x)
    assert _normalize(x).tobytes() == expected.tobytes()
    inplace = x.copy()
    assert _normalize(inplace, inplace=True) is inplace
    assert inplace.tobytes() == expected.tobytes()
    assert _normalize(x.astype(np.float64)).tobytes() == old_normalize(x.astype(np.float64)).tobytes()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A run with read and embed done (vectors from ``embed.source``, row groups of 64 rows)."""
    root = tmp_path_factory.mktemp("fitmem")
    corpus, source, out = root / "corpus", root / "vectors", root / "run"
    corpus.mkdir()
    source.mkdir()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, D)).astype(np.float32)
    for stem, n in SHARDS.items():
        ids = [f"{stem}-{i:03d}" for i in range(n)]
        vecs = centres[rng.integers(0, 12, n)] + rng.standard_normal((n, D)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        pq.write_table(pa.table({"id": ids, "text": [f"document {i}" for i in ids]}), corpus / f"{stem}.parquet")
        pq.write_table(pa.table({"id": ids, "embedding": vectors_to_arrow(vecs)}), source / f"{stem}.parquet")
    run_pipeline(config(corpus, source, out), ["read", "embed"], progress=False)
    ids, vecs = [], []
    for stem in SHARDS:
        t = pq.read_table(out / "embeddings" / f"{stem}.parquet")
        assert t.column("embedding").num_chunks > 1  # several row groups: the stage reads them one at a time
        ids += t.column("id").to_pylist()
        vecs.append(arrow_to_vectors(t.column("embedding")))
    return {"corpus": corpus, "source": source, "out": out, "ids": ids, "vecs": np.concatenate(vecs)}


def config(corpus: Path, source: Path, out: Path, *sets: str):
    base = [f"embed.source={source}", f"cluster.k={K}", "cluster.device=cpu", "cluster.niter=8",
            "io.row_group_size=64", "executor.workers=1"]  # fmt: skip
    return load_config(None, [*base, *sets], {"io.input": [str(corpus)], "io.output": str(out)})


def fit(run: dict, *sets: str) -> tuple[dict, list[str]]:
    """Run the fit stage under these settings: (kmeans.json, the warnings in its task's log)."""
    logs = run["out"] / "logs" / "fit"
    shutil.rmtree(logs, ignore_errors=True)
    run_pipeline(config(run["corpus"], run["source"], run["out"], *sets), ["fit"], progress=False)
    text = "".join(p.read_text() for p in logs.rglob("task_*.log"))
    return json.loads((run["out"] / "kmeans.json").read_text()), [ln for ln in text.splitlines() if "WARNING" in ln]


def reference(run: dict, cap: int, per_centroid: int, fraction: float = 1.0) -> np.ndarray:
    """The centroids as before issue 15: every vector read and concatenated, the sample's ``cap`` smallest hashes
    picked in corpus order, and k-means on a copy (``overwrite_input`` off: the old normalisation's copy)."""
    h = fit_hashes(run["ids"], 0)
    sample = np.nonzero(h / 2.0**64 < fraction)[0] if fraction < 1.0 else np.arange(len(h))
    chosen = np.sort(sample[np.argsort(h[sample])[:cap]])
    km = SphericalKMeans(K, niter=8, seed=0, max_points_per_centroid=per_centroid, device="cpu")
    return km.fit(run["vecs"][chosen]).centroids


@pytest.mark.parametrize(
    ("sets", "per_centroid", "n_train", "warned"),
    [
        (["cluster.fit_max_mib=null"], 256, 600, False),  # no cap: all 600 (k x 256 = 2048)
        ([], 256, 600, False),  # the default 1024 MiB: far above these 600 x 4 KiB
        (["cluster.fit_max_mib=2"], 64, 512, False),  # 2 MiB // 32 KiB = 64 points per centroid
        (["cluster.fit_max_mib=1"], 39, 312, True),  # 1 MiB // 32 KiB = 32 < 39: 39, 312 x 4 KiB = 1.22 MiB
        (["cluster.max_points_per_centroid=5", "cluster.fit_fraction=0.5"], 5, 40, False),  # cut while reading
    ],
)
def test_fit_under_a_memory_cap(run, sets, per_centroid, n_train, warned):
    info, warnings = fit(run, *sets)
    assert info["points_per_centroid"] == per_centroid
    assert info["n_train"] == info["n_sample"] == n_train
    fraction = 0.5 if "cluster.fit_fraction=0.5" in sets else 1.0
    expected = reference(run, K * per_centroid, per_centroid, fraction)
    assert np.load(run["out"] / "centroids.npy").tobytes() == expected.tobytes()
    stats = json.loads((run["out"] / "stats.json").read_text())["stages"]["fit"]["counters"]
    assert stats["fit_points_per_centroid"] == per_centroid and stats["fit_train_points"] == n_train
    over = [w for w in warnings if "cluster.fit_max_mib" in w]
    assert bool(over) == warned
    if warned:
        assert "1.2 MiB" in over[0] and "cluster.k" in over[0]


def test_torch_backend_trains_on_the_sample_itself():
    """n <= k x max_points_per_centroid: the torch backend uses the (normalised) input without a copy, and the
    centroids equal those of a fit on a copy."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    km = SphericalKMeans(4, niter=5, seed=0, max_points_per_centroid=100, backend="torch", device="cpu")
    copy = km.fit(x.copy()).centroids
    mine = x.copy()
    assert km.fit(mine, overwrite_input=True).centroids.tobytes() == copy.tobytes()
    assert mine.tobytes() == old_normalize(x).tobytes()  # normalised in place
