"""Benchmark: SemDeDup pairs/s, the numpy backend against the torch backend, on the same synthetic clusters.

Two workloads, each run by every backend in one process (rounds alternate between the backends, so a shared
machine's load hits all of them alike; the JSON line of a backend holds each round and their median):
- ``one``: one cluster of ``--one`` members (the O(n²) worst case of a big cluster);
- ``many``: ``--many`` vectors in ``--clusters`` equal clusters (the usual bucket of the dedup stage).

Vectors are d = 384 (MiniLM) around a random centre per cluster (cosine to each other about 0.5), and
``--dup-fraction`` of each cluster is replaced by copies of other members, half exact and half near (cosine
≈ 1 − 1e-6), as SemDeDup meets them. Every backend's result is compared bit for bit with numpy's
(``identical``). Pairs are the ``n (n − 1) / 2`` comparisons of each cluster.

    python bench/semdedup.py                       # CPU: one cluster of 20k; 200k vectors in 200 clusters
    python bench/semdedup.py --device cuda         # + torch on CUDA: one of 50k; 1M in 1,000 clusters

It imports only numpy, torch and ``winnow.clustering.semdedup`` (and the standard-library ``bench.common``), so
it runs on the bare GPU machine of ``bench/device/run_gpu.sh``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit  # noqa: E402
from winnow.clustering.semdedup import semdedup_cluster  # noqa: E402


def clusters(n: int, k: int, d: int, dup_fraction: float, seed: int = 0, dup_groups: int = 0) -> list[np.ndarray]:
    """``k`` clusters of ``n // k`` unit vectors (float32), with planted exact and near copies (of any member, or
    with ``dup_groups``, of that many members per cluster: big groups of copies)."""
    rng = np.random.default_rng(seed)
    size = n // k
    out = []
    for _ in range(k):
        centre = rng.standard_normal(d).astype(np.float32)
        x = centre / np.linalg.norm(centre) + rng.standard_normal((size, d), dtype=np.float32) / np.sqrt(d)
        n_dup = int(size * dup_fraction)
        if n_dup and size > 1:
            src = rng.integers(0, dup_groups or size - n_dup, n_dup)
            x[size - n_dup :] = x[src]  # exact copies ...
            near = size - n_dup + np.arange(n_dup // 2)  # ... half of them nudged: near copies
            x[near] += rng.standard_normal((len(near), d), dtype=np.float32) * (1e-3 / np.sqrt(d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out.append(x[rng.permutation(size)])
    return out


def run_once(groups: list[np.ndarray], backend: str, device: str, dtype: str, block: int):
    """``(seconds, [(sims, nn) per cluster])``; ``dist`` is the distance to the cluster's mean, as assign gives."""
    results, secs = [], 0.0
    for cid, x in enumerate(groups):
        c = x.mean(0)
        dist = 1.0 - x @ (c / np.linalg.norm(c))
        t0 = time.perf_counter()  # the result comes back as numpy: the device's work is finished when timed
        results.append(semdedup_cluster(x, dist, cluster_id=cid, block=block, backend=backend, device=device,
                                         dtype=dtype))  # fmt: skip
        secs += time.perf_counter() - t0
    return secs, results


def identical(a: list[tuple[np.ndarray, np.ndarray]], b: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    return all(
        np.array_equal(x[0].view(np.int32), y[0].view(np.int32)) and np.array_equal(x[1], y[1])
        for x, y in zip(a, b, strict=True)
    )


def variants(device: str, dtypes: list[str], backends: list[str]) -> list[tuple[str, str, str]]:
    """``(backend, device, dtype)`` to time: numpy on the CPU; torch on ``device`` in each dtype (float32 only on
    the CPU, where 16-bit products are not faster)."""
    out = [("numpy", "cpu", "float32")] if "numpy" in backends else []
    if "torch" in backends:
        out += [("torch", device, dt) for dt in (dtypes if device != "cpu" else ["float32"])]
    return out


def bench_case(name: str, groups: list[np.ndarray], todo: list[tuple[str, str, str]], args) -> None:
    pairs = float(sum(len(g) * (len(g) - 1) / 2 for g in groups))
    for backend, device, dtype in todo:  # warm-up (thread pools, CUDA context, kernels) on a small cluster
        run_once([groups[0][:512]], backend, device, dtype, args.block)
    rounds: dict[tuple[str, str, str], list[float]] = {v: [] for v in todo}
    ref, same = None, {v: True for v in todo}
    for _ in range(args.rounds):
        for v in todo:
            secs, res = run_once(groups, *v, args.block)
            rounds[v].append(secs)
            ref = res if ref is None and v[0] == "numpy" else ref
            same[v] = same[v] and (ref is None or identical(res, ref))
    for (backend, device, dtype), secs in rounds.items():
        med = statistics.median(secs)
        res: dict[str, Any] = {
            "bench": "semdedup", "case": name, "n": sum(len(g) for g in groups), "clusters": len(groups),
            "d": args.d, "dup_fraction": args.dup_fraction, "dup_groups": args.dup_groups, "block": args.block,
            "backend": backend, "device": device, "dtype": dtype, "pairs": pairs, "seconds": med, "rounds_s": secs,
            "pairs_per_s": pairs / med, "identical_to_numpy": same[(backend, device, dtype)] if ref else None,
            **machine(device),
        }  # fmt: skip
        same_ = res["identical_to_numpy"]
        print(f"{name}: {backend}/{device}/{dtype}: {pairs:,.0f} pairs in {med:.2f}s ({pairs / med:,.0f} pairs/s), "
              f"identical to numpy: {same_}", flush=True)  # fmt: skip
        emit(res, args.out)


def machine(device: str) -> dict[str, Any]:
    import torch

    info = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version()}  # fmt: skip
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="the torch backend's device")
    ap.add_argument("--one", type=int, default=None, help="members of the one big cluster (cpu 20k, cuda 50k)")
    ap.add_argument("--many", type=int, default=None, help="vectors of the many-clusters case (cpu 200k, cuda 1M)")
    ap.add_argument("--clusters", type=int, default=None, help="clusters of the many case (cpu 200, cuda 1,000)")
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--dup-fraction", type=float, default=0.1, help="share of each cluster replaced by copies")
    ap.add_argument("--dup-groups", type=int, default=0, help="copies of only this many members per cluster")
    ap.add_argument("--block", type=int, default=2048)
    ap.add_argument("--dtypes", default="float32,bfloat16", help="torch screening dtypes on CUDA")
    ap.add_argument("--backends", default="numpy,torch")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    gpu = args.device == "cuda"
    one = args.one if args.one is not None else (50_000 if gpu else 20_000)
    many = args.many if args.many is not None else (1_000_000 if gpu else 200_000)
    k = args.clusters if args.clusters is not None else (1_000 if gpu else 200)
    todo = variants(args.device, args.dtypes.split(","), args.backends.split(","))
    dups = {"dup_fraction": args.dup_fraction, "dup_groups": args.dup_groups}
    if one:
        bench_case("one", clusters(one, 1, args.d, seed=1, **dups), todo, args)
    if many:
        bench_case("many", clusters(many, k, args.d, seed=2, **dups), todo, args)


if __name__ == "__main__":
    main()
