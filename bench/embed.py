"""Benchmark: the embed stage against the bare model forward, the tokenizer and stock sentence-transformers.

All on the same documents, in one run:
- ``stage``: winnow's ``EmbedStage`` on one parquet shard, parquet in → ``embeddings/`` on disk (model load excluded);
- ``bare_forward``: the model forward alone on pre-tokenised, length-sorted batches already on the device;
- ``tokenizer_1proc`` / ``tokenizer_Nproc``: winnow's tokenisation (with pre-truncation) in one process, and in
  the stage's ``TokenizerPool`` of N processes (the CPU tokenisation ceiling);
- ``stock_encode``: a freshly loaded ``SentenceTransformer`` in fp32 with ``encode``'s defaults (batch 32), on the
  first ``--stock-n`` documents; ``cos_min``/``cos_mean`` compare the stage's vectors with it on those documents.
The headline ratios are ``stage / min(bare_forward, tokenizer_Nproc)`` and ``stage / stock_encode``.

    python bench/embed.py --input '../shared/data/nltk_data/*.parquet' --n 512
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, sync  # noqa: E402
from winnow.core.io import Shard  # noqa: E402
from winnow.embedding.embed import Embedder, TokenizerPool, resolve_model_path  # noqa: E402
from winnow.pipeline.config import load_config  # noqa: E402
from winnow.pipeline.stages import EmbedStage  # noqa: E402


def load_texts(pattern: str, n: int, seed: int) -> list[str]:
    files = sorted(glob.glob(pattern))
    if not files:
        sys.exit(f"no parquet file matches {pattern!r}")
    texts: list[str] = []
    for f in files:
        texts += [t for t in pq.read_table(f, columns=["text"]).column("text").to_pylist() if t and t.strip()]
    rng = np.random.default_rng(seed)
    rng.shuffle(texts)
    if len(texts) < n:  # repeat the corpus to reach n documents
        texts = (texts * (n // len(texts) + 1))[:n]
    return texts[:n]


def bench_bare_forward(emb: Embedder, texts: list[str]) -> float:
    import torch

    order = np.argsort([-len(t) for t in texts], kind="stable")
    bs = emb.batch_size
    batches = [emb.tokenize([texts[i] for i in order[s : s + bs]]) for s in range(0, len(texts), bs)]
    # numpy from the HF tokenizer, device tensors (plus a ready-event) from TorchWordPiece
    batches = [{k: torch.as_tensor(v).to(emb.device) for k, v in b.items() if not k.startswith("_")} for b in batches]
    sync(emb.device)
    with torch.inference_mode():
        emb.model(batches[0])  # warm-up
        sync(emb.device)
        t0 = time.perf_counter()
        for b in batches:
            emb.model(b)["sentence_embedding"]
        sync(emb.device)
    return len(texts) / (time.perf_counter() - t0)


def bench_tokenizer(emb: Embedder, texts: list[str], procs: int) -> float:
    if procs <= 1:
        bs = emb.batch_size
        t0 = time.perf_counter()
        for s in range(0, len(texts), bs):
            emb.tokenize(texts[s : s + bs])
        return len(texts) / (time.perf_counter() - t0)
    # the stage's own TokenizerPool: spawned processes, batches out as texts and back as numpy arrays, in order
    cut = emb.cfg.pre_truncate_chars if emb._can_cut else None
    pool = TokenizerPool(emb.model.tokenizer, emb.max_seq_length, cut, procs, emb.cfg.prefetch)
    try:
        bs = emb.batch_size
        order = np.arange(len(texts))
        batches = [order[s : s + bs] for s in range(0, len(texts), bs)]
        for _ in pool.map_ordered(batches[:procs], texts):  # warm-up: every worker has loaded its tokenizer
            pass
        t0 = time.perf_counter()
        done = sum(len(idx) for idx, _ in pool.map_ordered(batches, texts))
        return done / (time.perf_counter() - t0)
    finally:
        pool.close()


def bench_stage(cfg, texts: list[str], workdir: Path) -> tuple[float, float, np.ndarray]:
    shard_path = workdir / "bench.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}), shard_path)
    shard = Shard(url=str(shard_path), stem="bench", format="parquet")
    stage = EmbedStage(cfg, str(workdir / "run"), [shard], overwrite=True)
    t0 = time.perf_counter()
    stage.setup()
    load_s = time.perf_counter() - t0
    # warm-up on a few documents so lazy CUDA/kernel initialisation is not timed
    stage.embedder.encode(texts[: min(64, len(texts))])
    sync(stage.embedder.device)
    t0 = time.perf_counter()
    stage._run_unit(shard.stem, stage.fingerprint)
    sync(stage.embedder.device)
    secs = time.perf_counter() - t0
    if not (workdir / "run" / "completions" / "embed" / "bench").exists():
        sys.exit("the embed stage failed: see " + str(workdir / "run" / "failures"))
    col = pq.read_table(workdir / "run" / "embeddings" / "bench.parquet", columns=["embedding"]).column(0)
    vecs = np.asarray(col.combine_chunks().flatten(), dtype=np.float32).reshape(len(texts), -1)
    return len(texts) / secs, load_s, vecs


def load_stock(path: str, device: str) -> Any:
    """Stock sentence-transformers as a user gets it: fp32 on the device."""
    import torch
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device, local_files_only=True).to(torch.float32)


def bench_stock(model: Any, device: str, texts: list[str]) -> tuple[float, np.ndarray]:
    """``encode`` with its defaults (batch 32)."""
    model.encode(texts[:32])
    sync(device)
    t0 = time.perf_counter()
    vecs = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    sync(device)
    return len(texts) / (time.perf_counter() - t0), vecs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default="../shared/data/nltk_data/*.parquet", help="parquet glob with a text column")
    ap.add_argument("--n", type=int, default=512, help="documents (the corpus is repeated if smaller)")
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--tokenizer", default="hf", choices=["hf", "torch"], help="embed.tokenizer")
    ap.add_argument(
        "--batch-size", type=int, default=None, help="default: embed.batch_size's (16 on CPU, 512 on CUDA)"
    )
    ap.add_argument("--read-batch-size", type=int, default=None, help="default: 1024 on CPU, 16384 on GPU")
    ap.add_argument("--tokenizer-procs", type=int, default=os.cpu_count())
    ap.add_argument("--stock-n", type=int, default=None, help="documents for stock encode (default: --n)")
    ap.add_argument("--skip", default="", help="comma list of phases to skip: stage,bare,tok1,tokN,stock")
    ap.add_argument("--rounds", type=int, default=1, help="alternate stage and stock this many times (median)")
    ap.add_argument("--out", default=None, help="append the JSON result to this file")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    import torch

    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    rbs = args.read_batch_size or (16384 if cuda else 1024)
    cfg = load_config(
        None,
        None,
        {
            "embed.model": args.model,
            "embed.device": args.device,
            "embed.dtype": args.dtype,
            "embed.tokenizer": args.tokenizer,
            "embed.batch_size": args.batch_size,
            "io.read_batch_size": rbs,
        },
    )
    texts = load_texts(args.input, args.n, seed=0)
    emb = Embedder(cfg.embed, torch_threads=None)
    emb.setup()
    res: dict = {
        "n_docs": len(texts),
        "mean_chars": float(np.mean([len(t) for t in texts])),
        "device": emb.device,
        "gpu": torch.cuda.get_device_name(0) if emb.device == "cuda" else None,
        "cpu_count": os.cpu_count(),
        "dtype": emb.dtype,
        "tokenizer": args.tokenizer,
        "batch_size": emb.batch_size,
        "model": str(resolve_model_path(args.model)),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    log = lambda k: print(f"{k}: {res[k]:,.1f} docs/s" if isinstance(res[k], float) else f"{k}: {res[k]}", flush=True)  # noqa: E731
    for k in list(res):
        log(k)
    if "bare" not in skip:
        res["bare_forward"] = bench_bare_forward(emb, texts)
        log("bare_forward")
    if "tok1" not in skip:
        res["tokenizer_1proc"] = bench_tokenizer(emb, texts, 1)
        log("tokenizer_1proc")
    if "tokN" not in skip and args.tokenizer_procs > 1:
        res["tokenizer_procs"] = args.tokenizer_procs
        res["tokenizer_Nproc"] = bench_tokenizer(emb, texts, args.tokenizer_procs)
        log("tokenizer_Nproc")
    # stage and stock alternate, round after round: on a shared machine the per-round ratio is the robust number
    stock = None if "stock" in skip else load_stock(res["model"], emb.device)
    stock_texts = texts[: args.stock_n or len(texts)]
    rounds: list[dict[str, float]] = []
    for r in range(args.rounds):
        one: dict[str, float] = {}
        if "stage" not in skip:
            with tempfile.TemporaryDirectory() as d:
                one["stage"], res["model_load_s"], stage_vecs = bench_stage(cfg, texts, Path(d))
        if stock is not None:
            one["stock_encode"], stock_vecs = bench_stock(stock, emb.device, stock_texts)
        if "stage" in one and "stock_encode" in one:
            one["stage_over_stock"] = one["stage"] / one["stock_encode"]
            cos = np.sum(stage_vecs[: len(stock_texts)] * stock_vecs, axis=1)
            res["cos_min"], res["cos_mean"] = float(cos.min()), float(cos.mean())
        rounds.append(one)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:,.2f}" for k, v in one.items()), flush=True)
    for k in rounds[0] if rounds else []:
        res[k] = float(np.median([one[k] for one in rounds]))
        if k != "stage_over_stock":
            log(k)
    if args.rounds > 1:
        res["rounds"] = rounds
    if "cos_min" in res:
        print(f"cosine to stock fp32: min {res['cos_min']:.5f} mean {res['cos_mean']:.5f}", flush=True)
    ceilings = [res[k] for k in ("bare_forward", "tokenizer_Nproc") if k in res]
    if "stage" in res and ceilings:
        res["ceiling"] = min(ceilings)
        res["stage_over_ceiling"] = res["stage"] / res["ceiling"]
        res["stage_over_bare"] = res["stage"] / res["bare_forward"] if "bare_forward" in res else None
    emit(res, args.out)


if __name__ == "__main__":
    main()
