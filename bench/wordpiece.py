"""Benchmark: TorchWordPiece (pipeline/wordpiece.py) against the HF fast tokenizer, with a check of every id.

On the same documents, cut at ``--cut`` characters as the embed stage cuts them:
- ``hf_1proc``: the HF fast tokenizer, one batched call per ``--batch`` documents, numpy out;
- ``hf_pool``: the embed stage's TokenizerPool with ``--procs`` processes (the CPU ceiling);
- ``torch``: TorchWordPiece on ``--device`` (``cuda`` on a GPU machine), ids left on the device;
- ``identical``: the share of documents whose ids equal HF's (must be 1.0).

    python bench/wordpiece.py --input '../shared/data/nltk_data/*.parquet' --n 2000 --device cpu
    python bench/wordpiece.py --input .device/data/bench.parquet --model .device/minilm-fp16 --n 100000 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, sync  # noqa: E402
from bench.embed import bench_tokenizer, load_texts  # noqa: E402
from winnow.embedding.embed import Embedder, cut_text  # noqa: E402
from winnow.embedding.wordpiece import TorchWordPiece, build_tables  # noqa: E402
from winnow.pipeline.config import EmbedSection  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default="../shared/data/nltk_data/*.parquet")
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--cut", type=int, default=2000, help="characters kept (embed.pre_truncate_chars)")
    ap.add_argument("--batch", type=int, default=4096, help="documents per tokenizer call")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--procs", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch

    emb = Embedder(EmbedSection(model=args.model, device="cpu", dtype="float32"), torch_threads=1)
    emb.setup()
    tok = emb.model.tokenizer
    texts = [cut_text(t, args.cut) for t in load_texts(args.input, args.n, seed=0)]
    batches = [texts[s : s + args.batch] for s in range(0, len(texts), args.batch)]
    res: dict = {
        "n_docs": len(texts),
        "mean_chars": float(np.mean([len(t) for t in texts])),
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "batch": args.batch,
    }
    print(json.dumps(res), flush=True)

    t0 = time.perf_counter()
    ref = [tok(b, padding=True, truncation=True, max_length=args.max_len, return_tensors="np") for b in batches]
    res["hf_1proc"] = len(texts) / (time.perf_counter() - t0)
    print(f"hf_1proc: {res['hf_1proc']:,.0f} docs/s", flush=True)

    if args.procs > 1:  # the embed stage's TokenizerPool, timed as bench/embed.py times it
        res["hf_pool"], res["procs"] = bench_tokenizer(emb, texts, args.procs), args.procs
        print(f"hf_pool ({args.procs} processes): {res['hf_pool']:,.0f} docs/s", flush=True)

    t0 = time.perf_counter()
    tables = build_tables(tok)
    res["tables_s"] = time.perf_counter() - t0
    wp = TorchWordPiece(tok, args.device, tables)
    wp(batches[0][:64], args.max_len)  # warm-up (CUDA context, kernels)
    sync(args.device)
    t0 = time.perf_counter()
    ours = [wp(b, args.max_len) for b in batches]
    sync(args.device)
    res["torch"] = len(texts) / (time.perf_counter() - t0)
    print(f"torch on {args.device}: {res['torch']:,.0f} docs/s (tables built in {res['tables_s']:.1f}s)", flush=True)

    same = 0
    for o, r in zip(ours, ref, strict=True):
        a = o["input_ids"].cpu().numpy()
        if a.shape == r["input_ids"].shape:
            same += int((a == r["input_ids"]).all(axis=1).sum())
        else:  # different widths: compare document by document
            m = o["attention_mask"].cpu().numpy().astype(bool)
            rm = r["attention_mask"].astype(bool)
            same += sum(a[i][m[i]].tolist() == r["input_ids"][i][rm[i]].tolist() for i in range(len(a)))
    res["identical"] = same / len(texts)
    res["fallbacks"] = wp.fallbacks
    print(f"identical ids: {same} of {len(texts)} documents; {wp.fallbacks} went to HF", flush=True)
    emit(res, args.out)


if __name__ == "__main__":
    main()
