"""Benchmark: the embed stage against the bare model forward, the tokenizer and stock sentence-transformers.

All on the same documents, in one run:
- ``stage``: winnow's ``EmbedStage`` on one parquet shard, parquet in → ``embeddings/`` on disk (model load excluded);
- ``bare_forward``: the model forward alone on pre-tokenised, length-sorted batches already on the device;
- ``tokenizer_1proc`` / ``tokenizer_Nproc``: winnow's tokenisation (with pre-truncation) in one process, and
  split over N processes (the CPU tokenisation ceiling);
- ``stock_encode``: ``SentenceTransformer.encode`` with its defaults (on a subset with ``--stock-n``).
The headline ratio is ``stage / min(bare_forward, tokenizer_Nproc)``.

    python bench/embed.py --input '../shared/data/nltk_data/*.parquet' --n 512
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_config  # noqa: E402
from pipeline.embed import Embedder, resolve_model_path  # noqa: E402
from pipeline.io import Shard  # noqa: E402
from pipeline.stages import EmbedStage  # noqa: E402


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


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def bench_bare_forward(emb: Embedder, texts: list[str]) -> float:
    import torch

    order = np.argsort([-len(t) for t in texts], kind="stable")
    bs = emb.cfg.batch_size
    batches = [emb.tokenize([texts[i] for i in order[s : s + bs]]) for s in range(0, len(texts), bs)]
    batches = [{k: v.to(emb.device) for k, v in b.items()} for b in batches]
    with torch.inference_mode():
        emb.model(batches[0])  # warm-up
        _sync(emb.device)
        t0 = time.perf_counter()
        for b in batches:
            emb.model(b)["sentence_embedding"]
        _sync(emb.device)
    return len(texts) / (time.perf_counter() - t0)


_TOK: Embedder | None = None


def _tok_init(cfg_dict: dict) -> None:
    global _TOK
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    cfg = load_config(None, None, {f"embed.{k}": v for k, v in cfg_dict.items()} | {"embed.device": "cpu"})
    _TOK = Embedder(cfg.embed, torch_threads=1)
    _TOK.setup()


def _tok_chunk(texts: list[str]) -> int:
    bs = _TOK.cfg.batch_size  # type: ignore[union-attr]
    for s in range(0, len(texts), bs):
        _TOK.tokenize(texts[s : s + bs])  # type: ignore[union-attr]
    return len(texts)


def bench_tokenizer(emb: Embedder, texts: list[str], procs: int) -> float:
    if procs <= 1:
        bs = emb.cfg.batch_size
        t0 = time.perf_counter()
        for s in range(0, len(texts), bs):
            emb.tokenize(texts[s : s + bs])
        return len(texts) / (time.perf_counter() - t0)
    ctx = mp.get_context("spawn")
    chunk = max(1, len(texts) // (procs * 8))
    parts = [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
    cfg = emb.cfg.model_dump()
    with ctx.Pool(procs, initializer=_tok_init, initargs=(cfg,)) as pool:
        pool.map(_tok_chunk, [parts[0][:8]] * procs)  # warm-up: every worker loads its tokenizer
        t0 = time.perf_counter()
        done = sum(pool.map(_tok_chunk, parts))
        return done / (time.perf_counter() - t0)


def bench_stage(cfg, texts: list[str], workdir: Path) -> tuple[float, float]:
    shard_path = workdir / "bench.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}), shard_path)
    shard = Shard(url=str(shard_path), stem="bench", format="parquet")
    stage = EmbedStage(cfg, str(workdir / "run"), [shard], overwrite=True)
    t0 = time.perf_counter()
    stage.setup()
    load_s = time.perf_counter() - t0
    # warm-up on a few documents so lazy CUDA/kernel initialisation is not timed
    stage.embedder.encode(texts[: min(64, len(texts))])
    _sync(stage.embedder.device)
    t0 = time.perf_counter()
    stage._run_shard(shard)
    _sync(stage.embedder.device)
    secs = time.perf_counter() - t0
    if not (workdir / "run" / "completions" / "embed" / "bench").exists():
        sys.exit("the embed stage failed: see " + str(workdir / "run" / "failures"))
    return len(texts) / secs, load_s


def bench_stock(emb: Embedder, texts: list[str]) -> float:
    emb.model.encode(texts[:32])
    _sync(emb.device)
    t0 = time.perf_counter()
    emb.model.encode(texts)
    _sync(emb.device)
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default="../shared/data/nltk_data/*.parquet", help="parquet glob with a text column")
    ap.add_argument("--n", type=int, default=512, help="documents (the corpus is repeated if smaller)")
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 64 on CPU, 512 on CUDA")
    ap.add_argument("--read-batch-size", type=int, default=None, help="default: 1024 on CPU, 16384 on CUDA")
    ap.add_argument("--tokenizer-procs", type=int, default=os.cpu_count())
    ap.add_argument("--stock-n", type=int, default=None, help="documents for stock encode (default: --n)")
    ap.add_argument("--skip", default="", help="comma list of phases to skip: stage,bare,tok1,tokN,stock")
    ap.add_argument("--out", default=None, help="append the JSON result to this file")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    import torch

    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    bs = args.batch_size or (512 if cuda else 64)
    rbs = args.read_batch_size or (16384 if cuda else 1024)
    cfg = load_config(
        None,
        None,
        {
            "embed.model": args.model,
            "embed.device": args.device,
            "embed.dtype": args.dtype,
            "embed.batch_size": bs,
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
        "batch_size": bs,
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
    if "stage" not in skip:
        with tempfile.TemporaryDirectory() as d:
            res["stage"], res["model_load_s"] = bench_stage(cfg, texts, Path(d))
        log("stage")
    if "stock" not in skip:
        res["stock_encode"] = bench_stock(emb, texts[: args.stock_n or len(texts)])
        log("stock_encode")
    ceilings = [res[k] for k in ("bare_forward", "tokenizer_Nproc") if k in res]
    if "stage" in res and ceilings:
        res["ceiling"] = min(ceilings)
        res["stage_over_ceiling"] = res["stage"] / res["ceiling"]
        res["stage_over_bare"] = res["stage"] / res["bare_forward"] if "bare_forward" in res else None
        if "stock_encode" in res:
            res["stage_over_stock"] = res["stage"] / res["stock_encode"]
    print(json.dumps(res, indent=2), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
