"""Benchmark: spherical k-means (FAISS / torch) and SemDeDup throughput on synthetic unit vectors.

    python bench/cluster.py --n 100000 --k 1000 --niter 20 --backend faiss --device cpu
    python bench/cluster.py --n 1000000 --k 10000 --niter 20 --backend torch --device cuda   # GPU target: <= 3 s
    python bench/cluster.py ... --assign-n 10000000                                         # assignment of 10M
    python bench/cluster.py --semdedup 20000                                                 # pairs/s of one cluster

Data: ``n`` points around ``k`` random centres on the sphere (d = 384, like MiniLM), so the fit does real work.
Reported: fit seconds (training set after FAISS's subsampling to ``k × max_points_per_centroid``), seconds per
iteration, assignment throughput of all ``n`` points, and for SemDeDup the pairs compared per second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit  # noqa: E402
from winnow.clustering.kmeans import SphericalKMeans, assign  # noqa: E402
from winnow.clustering.semdedup import max_sim_to_earlier  # noqa: E402


def blobs(n: int, k: int, d: int, seed: int = 0, spread: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = centers[rng.integers(0, k, n)] + spread / np.sqrt(d) * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--niter", type=int, default=20)
    ap.add_argument("--backend", default="faiss", choices=["faiss", "torch"])
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--max-points-per-centroid", type=int, default=256)
    ap.add_argument("--semdedup", type=int, default=0, help="also time SemDeDup on one cluster of this many members")
    ap.add_argument("--block", type=int, default=2048)
    ap.add_argument("--assign-n", type=int, default=0, help="also time assigning this many (n points reused)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="INFO")

    res: dict = vars(args).copy()
    if args.n:
        x = blobs(args.n, args.k, args.d)
        km = SphericalKMeans(
            args.k, niter=args.niter, seed=0, max_points_per_centroid=args.max_points_per_centroid,
            backend=args.backend, device=args.device,
        )  # fmt: skip
        if args.device == "cuda":
            import torch

            torch.cuda.synchronize()
        fit = km.fit(x)
        res.update(
            fit_s=fit.seconds,
            fit_iterations=len(fit.objective),
            s_per_iteration=fit.seconds / max(1, len(fit.objective)),
            n_train=fit.n_train,
            fit_device=fit.device,
        )
        print(f"fit: {fit.seconds:.2f}s for {len(fit.objective)} iterations on {fit.n_train} points ({fit.device})")
        t0 = time.perf_counter()
        assign(x, fit.centroids, backend=args.backend, device=args.device)
        res["assign_s"] = time.perf_counter() - t0
        res["assign_per_s"] = args.n / res["assign_s"]
        print(f"assign: {res['assign_s']:.2f}s ({res['assign_per_s']:,.0f} vectors/s)")
        if args.assign_n > args.n:  # many vectors without holding them all: the n points, again and again
            reps = -(-args.assign_n // args.n)
            t0 = time.perf_counter()
            for _ in range(reps):
                assign(x, fit.centroids, backend=args.backend, device=args.device)
            res["assign_many_n"], res["assign_many_s"] = reps * args.n, time.perf_counter() - t0
            print(f"assign {reps * args.n:,} vectors: {res['assign_many_s']:.2f}s")
    if args.semdedup:
        e = blobs(args.semdedup, 1, args.d, seed=1, spread=3.0)
        t0 = time.perf_counter()
        max_sim_to_earlier(e, block=args.block)
        secs = time.perf_counter() - t0
        pairs = args.semdedup * (args.semdedup - 1) / 2
        res.update(semdedup_s=secs, semdedup_pairs_per_s=pairs / secs)
        print(f"semdedup: {args.semdedup} members, {pairs:,.0f} pairs in {secs:.2f}s ({pairs / secs:,.0f} pairs/s)")
    emit(res, args.out)


if __name__ == "__main__":
    main()
