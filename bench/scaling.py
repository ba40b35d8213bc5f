"""Scaling table (issue 9, target 5): docs/s and peak memory of every stage of ``winnow run`` at 10k, 100k and 1M
documents (DESIGN §4: the whole pipeline's cost grows linearly with the documents; the peak memory of the per-shard
stages does not grow with the corpus).

For each size N in ``--sizes`` it writes a synthetic parquet corpus of N documents in shards of ``--shard-docs``
(``id``, ``text``, ``source``; shard i is the same at every size), then runs each stage in its own process with the
local executor and one worker (``bench/memory.py``'s ``run_stage``: peak RSS from ``wait4``'s ``ru_maxrss``, exact,
plus the resident set after each unit) and records the process's wall time, docs/s (N / wall time, and N / the
time inside the stage's units, which leaves out interpreter start, imports and model loading) and peak RSS.

The corpus: words of the bundled MiniLM's WordPiece vocabulary (whole alphabetic words, in vocabulary order, which
is roughly frequency order), drawn 60% from a Zipf distribution over the vocabulary and 40% from one of
``--topics`` topic vocabularies per document, so that the embeddings have cluster structure; sentences and
paragraphs; lengths log-normal (``--mean-words`` words on average, 10 to 3,000); ``--dup-fraction`` of the documents
are near-duplicates (3% of words changed) of an earlier document of their shard, so SemDeDup has work to do.

The model: the real all-MiniLM-L6-v2 embeds about 30-70 docs/s on 2 CPU cores, so embedding 1M documents alone
would take 4-9 hours. By default (``--model tiny``) the script builds, offline, a tiny sentence-transformers model
with MiniLM's tokenizer: a 1-layer BERT with hidden size 64 whose word embeddings are MiniLM's projected onto 64
random orthonormal directions, mean pooling, and a linear map back to 384 dimensions, centred on the mean output for
2,000 synthetic documents (untrained mean-pooled vectors all point one way). Tokenisation is the real one and
the vectors have MiniLM's dimension (384), so the stages after embed (fit, assign, dedup, prune) do the same work
and move the same bytes as with MiniLM; only the transformer forward is cheaper. ``--model bundled`` uses the real
MiniLM (with ``--device auto`` on a GPU machine); ``--model DIR`` any local sentence-transformers directory.

Settings that grow with N (printed and recorded): ``cluster.k`` = N / ``--docs-per-cluster`` (10 to ``--max-k``);
``cluster.n_buckets`` = N / ``--bucket-docs`` (2 to k), so a dedup unit holds about ``--bucket-docs`` documents;
``cluster.fit_fraction`` = 1.25 × k × ``max_points_per_centroid`` / N (at most 1), so the k-means sample is just
above what FAISS trains on anyway (k × 256) and fit reads, but does not keep, every embedding. ``--threads``
(``executor.torch_threads``) defaults to 1: on this shared 2-core machine two torch threads made embed about 6×
slower; on a GPU machine pass the core count.

The model and the corpora are built in child processes: a child's ``ru_maxrss`` starts at its parent's peak RSS
(the kernel keeps the high-water mark across fork and exec), so this process stays small (its own peak is recorded
as ``bench_process_max_rss_mib``; every stage's peak is at least that).

Bring your own embeddings (``--embeddings synthetic``): no model at all. Next to each corpus the script writes one
parquet file of vectors per shard (``id``, ``embedding``: 384 float32, the layout of winnow's own ``embeddings/``)
and runs with ``embed.source`` pointing at them, so embed only copies, checks and normalises them, and 1M or 10M
documents cost minutes. The vectors: one of ``--topics`` random unit centres per document plus noise (members of a
topic have cosine about 0.5), and ``--dup-fraction`` of them near-copies of an earlier document of their shard at a
cosine spread evenly over about 0.89-1 (so SemDeDup's threshold at 0.95 has pairs on both sides of it).
``--stages`` runs only some stages (e.g. ``embed,fit,assign,dedup``); ``--summary`` writes
``{size: {stage: {docs_per_s, peak_rss_mib}}}``.

Usage:
    python bench/scaling.py --sizes 10000                               # a quick check
    python bench/scaling.py --embeddings synthetic --sizes 1000000 --stages embed,fit,assign,dedup \
        --mean-words 12 --workdir /tmp/scaling-byo --json bench/out/scaling-byo.json --summary bench/out/summary.json
    python bench/scaling.py --workdir /tmp/scaling --json bench/out/scaling.json --markdown
    python bench/scaling.py --model bundled --device auto --threads 16    # on a GPU machine
    python bench/scaling.py --render bench/out/scaling.json             # the tables again from the JSON
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memory import PER_SHARD, STAGES, overrides, run_stage  # noqa: E402

SOURCES = ["web", "news", "books", "forum"]
SOURCE_P = [0.55, 0.2, 0.15, 0.1]


# ------------------------------------------------------------------------------------------------------- corpus


def corpus_words() -> np.ndarray:
    """Whole alphabetic words of the bundled MiniLM vocabulary, in vocabulary (roughly frequency) order."""
    from winnow.embedding.embed import resolve_model_path

    vocab = json.loads((resolve_model_path("bundled") / "tokenizer.json").read_text())["model"]["vocab"]
    words = sorted((i, w) for w, i in vocab.items() if w.isascii() and w.isalpha() and (len(w) > 1 or w == "a"))
    return np.array([w for _, w in words], dtype=object)


def _zipf_cdf(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return np.cumsum(w) / w.sum()


class TextGenerator:
    """Synthetic documents with topics, sentences, paragraphs, varied lengths and near-duplicates (vectorised)."""

    def __init__(self, topics: int, mean_words: float, dup_fraction: float, seed: int = 0):
        self.words = corpus_words()
        self.mean_words, self.dup_fraction, self.seed = mean_words, dup_fraction, seed
        v = len(self.words)
        rng = np.random.default_rng([seed, 1])
        topic_words = 200
        self.topic_table = np.stack([rng.choice(np.arange(300, v), topic_words, replace=False) for _ in range(topics)])
        self.global_cdf = _zipf_cdf(v, 1.1)
        self.topic_cdf = _zipf_cdf(topic_words, 0.8)

    def texts(self, n: int, shard: int) -> list[str]:
        rng = np.random.default_rng([self.seed, 2, shard])
        sigma = 0.8  # log-normal: mean = exp(mu + sigma^2 / 2)
        lens = np.clip(rng.lognormal(np.log(self.mean_words) - sigma**2 / 2, sigma, n).astype(np.int64), 10, 3000)
        dup = np.flatnonzero(rng.random(n) < self.dup_fraction)
        dup = dup[dup > 0]
        src = (rng.random(len(dup)) * dup).astype(np.int64)  # an earlier document of the shard
        lens[dup] = lens[src]
        total = int(lens.sum())
        starts = np.r_[0, np.cumsum(lens)[:-1]]
        doc_of = np.repeat(np.arange(n), lens)
        topic = rng.integers(0, len(self.topic_table), n)
        background = np.minimum(np.searchsorted(self.global_cdf, rng.random(total)), len(self.words) - 1)
        topical = self.topic_table[topic[doc_of], np.searchsorted(self.topic_cdf, rng.random(total))]
        idx = np.where(rng.random(total) < 0.4, topical, background)
        end = rng.random(total) < 1 / 14  # sentence ends; one in six also ends a paragraph
        end[starts + lens - 1] = True
        sep = np.full(total, " ", dtype=object)
        sep[end] = np.where(rng.random(int(end.sum())) < 1 / 6, ".\n\n", ". ")
        for d, s in zip(dup, src, strict=True):  # near-duplicates: a copy with 3% of the words changed
            a, b, ln = starts[d], starts[s], lens[d]
            idx[a : a + ln], sep[a : a + ln] = idx[b : b + ln], sep[b : b + ln]
            change = a + np.flatnonzero(rng.random(ln) < 0.03)
            idx[change] = rng.integers(0, len(self.words), len(change))
        words = self.words[idx]
        first = np.zeros(total, dtype=bool)
        first[starts] = True
        first[1:] |= end[:-1]
        words[first] = [w.capitalize() for w in words[first]]
        tokens = words + sep
        return ["".join(tokens[a : a + ln]).rstrip() for a, ln in zip(starts, lens, strict=True)]


def write_vectors(folder: Path, n: int, shard_docs: int, topics: int, dup_fraction: float, seed: int, dim: int = 384):
    """Bring-your-own embeddings for the corpus of ``n`` documents: ``<folder>/shardNNNNN.parquet`` with the ids of
    ``write_corpus`` and an ``embedding`` column (see the module docstring); shard i is the same at every size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    centres = np.random.default_rng([seed, 5]).standard_normal((topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for s, lo in enumerate(range(0, n, shard_docs)):
        m = min(shard_docs, n - lo)
        rng = np.random.default_rng([seed, 6, s])
        noise = rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim)
        vecs = centres[rng.integers(0, topics, m)] + noise  # cosine about 0.5 within a topic
        dup = np.flatnonzero(rng.random(m) < dup_fraction)
        dup = dup[dup > 0]
        src = (rng.random(len(dup)) * dup).astype(np.int64)
        scale = rng.uniform(0.0, 0.5, len(dup)).astype(np.float32) * np.linalg.norm(vecs[src], axis=1)
        vecs[dup] = vecs[src] + scale[:, None] * noise[dup] / np.linalg.norm(noise[dup], axis=1, keepdims=True)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        flat = pa.array(vecs.ravel(), pa.float32())
        table = pa.table(
            {
                "id": [f"doc-{i:09d}" for i in range(lo, lo + m)],
                "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
            }
        )
        pq.write_table(table, folder / f"shard{s:05d}.parquet")
    return {"vectors": str(folder), "vector_bytes": sum(f.stat().st_size for f in folder.iterdir())}


def write_corpus(folder: Path, n: int, shard_docs: int, gen: TextGenerator) -> dict:
    """``ceil(n / shard_docs)`` parquet shards; shard i holds documents ``i * shard_docs ...`` at every size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    chars = 0
    for s, lo in enumerate(range(0, n, shard_docs)):
        m = min(shard_docs, n - lo)
        texts = gen.texts(m, s)
        chars += sum(map(len, texts))
        rng = np.random.default_rng([gen.seed, 3, s])
        table = pa.table(
            {
                "id": [f"doc-{i:09d}" for i in range(lo, lo + m)],
                "text": texts,
                "source": np.array(SOURCES, dtype=object)[rng.choice(len(SOURCES), m, p=SOURCE_P)].tolist(),
            }
        )
        pq.write_table(table, folder / f"shard{s:05d}.parquet")
    size = sum(f.stat().st_size for f in folder.iterdir())
    return {"shards": math.ceil(n / shard_docs), "mean_chars": chars / n, "bytes": size}


# ------------------------------------------------------------------------------------------------------- model


def build_tiny_model(
    dest: Path, hidden: int = 64, layers: int = 1, seed: int = 0, sample: list[str] | None = None
) -> Path:
    """A tiny sentence-transformers model with MiniLM's tokenizer and output dimension (see the module docstring).

    Built offline from the bundled MiniLM; reused when ``dest`` already holds one built with the same settings.
    With ``sample`` texts, the output is centred on their mean vector (the bias of the last layer): mean-pooled
    untrained embeddings all point near one common direction (cosine ~0.9 between unrelated texts), which would make
    most documents "duplicates"; centred, unrelated texts are near-orthogonal and the planted near-duplicates stand
    out, as with a trained model.
    """
    centre = hashlib.sha256("\0".join(sample or []).encode()).hexdigest()[:16]
    spec = {"hidden": hidden, "layers": layers, "seed": seed, "centred_on": centre, "version": 2}
    marker = dest / "winnow-tiny.json"
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return dest
    import torch
    from safetensors.numpy import load_file
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from winnow.embedding.embed import resolve_model_path

    src = resolve_model_path("bundled")
    base = BertConfig.from_pretrained(str(src))
    config = BertConfig.from_pretrained(
        str(src), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 32),
        intermediate_size=4 * hidden,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = BertModel(config).eval()
    weights = load_file(str(src / "model.safetensors"))
    word = next(v for k, v in weights.items() if k.endswith("word_embeddings.weight"))  # [vocab, 384]
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((base.hidden_size, hidden)))[0].astype(np.float32)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.copy_(torch.from_numpy(word.astype(np.float32) @ q))
    shutil.rmtree(dest, ignore_errors=True)
    hf = dest.with_name(dest.name + ".hf")
    shutil.rmtree(hf, ignore_errors=True)
    model.save_pretrained(str(hf))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(hf))
    max_len = json.loads((src / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
    modules = [
        Transformer(str(hf), max_seq_length=max_len),
        Pooling(hidden, pooling_mode="mean"),
        Dense(hidden, base.hidden_size, bias=True, activation_function=torch.nn.Identity(),
              init_weight=torch.from_numpy(q), init_bias=torch.zeros(base.hidden_size)),  # back to 384-d
    ]  # fmt: skip
    st = SentenceTransformer(modules=modules, device="cpu")
    if sample:
        mean = st.encode(sample, batch_size=64, convert_to_numpy=True, normalize_embeddings=False).mean(axis=0)
        with torch.no_grad():
            modules[2].linear.bias.copy_(torch.from_numpy(-mean.astype(np.float32)))
    st.save(str(dest))
    shutil.rmtree(hf, ignore_errors=True)
    marker.write_text(json.dumps(spec))
    return dest


# ------------------------------------------------------------------------------------------------------- settings


def settings(n: int, args: argparse.Namespace, model: str) -> dict:
    """The ``--set`` values for a corpus of ``n`` documents (k, buckets and the fit sample grow with n)."""
    k = int(min(args.max_k, max(10, n // args.docs_per_cluster)))
    n_buckets = int(min(k, max(2, round(n / args.bucket_docs))))
    fit_fraction = min(1.0, round(1.25 * k * args.max_points_per_centroid / n, 4))
    ns = argparse.Namespace(
        k=k, n_buckets=n_buckets, batch_size=args.batch_size, threads=args.threads, device=args.device
    )
    sets = overrides(ns) + [
        f"embed.model={model}", f"cluster.fit_fraction={fit_fraction}",
        f"cluster.max_points_per_centroid={args.max_points_per_centroid}",
    ]  # fmt: skip
    return {"k": k, "n_buckets": n_buckets, "fit_fraction": fit_fraction, "sets": sets}


def stage_stats(out: Path, stage: str) -> dict:
    """The stage's own books: seconds summed over its units, unit count and counters (``stats/<stage>/``)."""
    seconds, units, counters = 0.0, 0, {}
    for f in sorted((out / "stats" / stage).glob("*.json")):
        d = json.loads(f.read_text())
        seconds += d.get("seconds", 0.0)
        units += 1
        for key, value in d.get("counters", {}).items():
            counters[key] = counters.get(key, 0) + value
    return {"unit_seconds": seconds, "units": units, "counters": counters}


def summary(info: dict) -> dict:
    """``{size: {stage: {docs_per_s, peak_rss_mib}}}`` (docs/s over the stage process's wall time)."""
    return {
        str(size["n"]): {
            stage: {"docs_per_s": round(size["n"] / r["seconds"], 1), "peak_rss_mib": round(r["peak_rss_mib"], 1)}
            for stage, r in size["stages"].items()
        }
        for size in info["sizes"]
    }


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    info = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


# ------------------------------------------------------------------------------------------------------- tables


def kind(stage: str) -> str:
    return "per shard" if stage in PER_SHARD else ("per bucket" if stage == "dedup" else "global")


def markdown(info: dict) -> str:
    def fmt(x: float) -> str:
        return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"

    lines = [
        "| docs | stage | kind | wall s | docs/s (wall) | in-units s | docs/s (in units) | peak RSS (MiB) | "
        "RSS after unit 1 / last (MiB) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size in info["sizes"]:
        n = size["n"]
        for r in size["stages"].values():
            t = r["rss_after_units_mib"]
            trace = f"{t[0]:.0f} / {t[-1]:.0f}" if t else "-"
            lines.append(
                f"| {n:,} | {r['stage']} | {kind(r['stage'])} | {fmt(r['seconds'])} | {fmt(n / r['seconds'])} | "
                f"{fmt(r['unit_seconds'])} | {fmt(n / r['unit_seconds']) if r['unit_seconds'] else '-'} | "
                f"{r['peak_rss_mib']:.0f} | {trace} |"
            )
        done = size["stages"].values()
        if len(done) == len(STAGES):
            wall = sum(r["seconds"] for r in done)
            lines.append(
                f"| {n:,} | **all** | | **{fmt(wall)}** | **{fmt(n / wall)}** | | | "
                f"**{max(r['peak_rss_mib'] for r in done):.0f}** | |"
            )
    head = ["| docs | shards | k | buckets | fit sample |", "|---:|---:|---:|---:|---:|"]
    for size in info["sizes"]:
        head.append(
            f"| {size['n']:,} | {size['corpus']['shards']} | {size['k']} | {size['n_buckets']} | "
            f"{size['fit_fraction']:g} |"
        )
    compact = ["| docs | " + " | ".join(STAGES) + " |", "|---:|" + "---:|" * len(STAGES)]
    for size in info["sizes"]:
        cells = []
        for stage in STAGES:
            r = size["stages"].get(stage)
            cells.append(f"{fmt(size['n'] / r['seconds'])} /s, {r['peak_rss_mib']:.0f} MiB" if r else "-")
        compact.append(f"| {size['n']:,} | " + " | ".join(cells) + " |")
    return "\n".join(head) + "\n\n" + "\n".join(compact) + "\n\n" + "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- main


def _prepare(args: argparse.Namespace) -> dict:
    """The heavy preparation, run in a child process: the tiny model, or the corpus of one size."""
    work = Path(args.workdir)
    if args._prepare == "machine":
        return machine()
    if args._prepare == "model":
        gen = TextGenerator(args.topics, args.mean_words, args.dup_fraction, args.seed)
        sample = gen.texts(2000, 10**9)  # a shard number no corpus uses
        model = build_tiny_model(work / "model-tiny", args.tiny_hidden, args.tiny_layers, args.seed, sample)
        return {"model": str(model)}
    n = int(args._prepare)
    corpus = work / f"corpus-{n}"
    shutil.rmtree(corpus, ignore_errors=True)
    t0 = time.perf_counter()
    gen = TextGenerator(args.topics, args.mean_words, args.dup_fraction, args.seed)
    c = write_corpus(corpus, n, args.shard_docs, gen)
    if args.embeddings == "synthetic":
        vectors = work / f"vectors-{n}"
        shutil.rmtree(vectors, ignore_errors=True)
        c.update(write_vectors(vectors, n, args.shard_docs, args.topics, args.dup_fraction, args.seed))
    c["seconds"] = time.perf_counter() - t0
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="corpus sizes in documents, comma-separated")
    ap.add_argument("--shard-docs", type=int, default=10_000, help="documents per shard (the same at every size)")
    ap.add_argument("--model", default="tiny", help="tiny (built here, the default), bundled (MiniLM) or a model dir")
    ap.add_argument(
        "--embeddings", default="model", choices=["model", "synthetic"],
        help="model: embed the texts; synthetic: bring your own (synthetic) vectors with embed.source, no model",
    )  # fmt: skip
    ap.add_argument("--stages", default=",".join(STAGES), help="the stages to run, comma-separated, in order")
    ap.add_argument("--summary", help="write {size: {stage: {docs_per_s, peak_rss_mib}}} here")
    ap.add_argument("--set", action="append", default=[], help="more --set overrides for every stage (repeatable)")
    ap.add_argument("--tiny-hidden", type=int, default=64)
    ap.add_argument("--tiny-layers", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "auto", "cuda"], help="embed.device, cluster.device")
    ap.add_argument("--batch-size", type=int, default=64, help="embed.batch_size")
    ap.add_argument(
        "--threads", type=int, default=1,
        help="executor.torch_threads (default 1: on a shared 2-core machine, 2 threads made embed 6x slower)",
    )  # fmt: skip
    ap.add_argument("--docs-per-cluster", type=int, default=1000, help="k = docs / this")
    ap.add_argument("--max-k", type=int, default=10_000)
    ap.add_argument("--bucket-docs", type=int, default=50_000, help="n_buckets = docs / this")
    ap.add_argument("--max-points-per-centroid", type=int, default=256)
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--mean-words", type=float, default=110.0)
    ap.add_argument("--dup-fraction", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="keep corpora, runs, model and stage logs here (default: a temporary folder)")
    ap.add_argument("--json", help="write the results here (rewritten after every stage)")
    ap.add_argument("--markdown", action="store_true", help="print markdown tables (else the JSON)")
    ap.add_argument("--render", metavar="JSON", help="only print the markdown tables of an earlier --json file")
    ap.add_argument("--_prepare", help=argparse.SUPPRESS)  # "model" or a size: done in a child process
    ap.add_argument("--_result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())))
        return
    if args._prepare:
        Path(args._result).write_text(json.dumps(_prepare(args)))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="winnow-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "stages.log"
    info: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "model": args.model,
        "shard_docs": args.shard_docs,
        "corpus": {"topics": args.topics, "mean_words": args.mean_words, "dup_fraction": args.dup_fraction},
        "sizes": [],
    }

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def save() -> None:
        info["summary"] = summary(info)
        for path, data in ((args.json, info), (args.summary, info["summary"])):
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(json.dumps(data, indent=2))

    def prepare(what: str) -> dict:
        # in a child: a child's ru_maxrss starts at this process's peak (the kernel keeps the high-water mark
        # across fork and exec), so this process must never hold a model or a corpus shard
        res = work / "prepare.json"
        cmd = [sys.executable, __file__, *sys.argv[1:], "--workdir", str(work), "--_prepare", what]
        cmd += ["--_result", str(res)]
        with open(log, "ab") as sink:
            subprocess.run(cmd, check=True, stdout=sink, stderr=sink)
        return json.loads(res.read_text())

    try:
        info["machine"] = prepare("machine")  # imports torch: not in this process
        if args.embeddings == "synthetic":
            model = "bundled"  # never loaded: embed.source brings the vectors
            info["model"] = "none: synthetic vectors brought with embed.source"
        elif args.model == "tiny":
            model = prepare("model")["model"]
            info["model"] = f"tiny: BERT, {args.tiny_layers} layer(s), hidden {args.tiny_hidden}, MiniLM tokenizer"
        else:
            model = args.model
        say(f"model {info['model']}; stage logs in {log}")
        for n in sizes:
            out = work / f"run-{n}"
            shutil.rmtree(out, ignore_errors=True)
            corpus = work / f"corpus-{n}"
            c = prepare(str(n))
            s = settings(n, args, model)
            if args.embeddings == "synthetic":
                s["sets"].append(f"embed.source={c['vectors']}")
            s["sets"] += args.set
            size = {"n": n, "corpus": c, **s, "stages": {}}
            info["sizes"].append(size)
            say(
                f"{n:,} docs: {c['shards']} shards, {c['mean_chars']:.0f} chars/doc, {c['bytes'] / 2**20:.0f} MiB, "
                f"written in {c['seconds']:.0f}s; k={s['k']}, n_buckets={s['n_buckets']}, "
                f"fit_fraction={s['fit_fraction']}; --set {' '.join(s['sets'])}"
            )
            for stage in args.stages.split(","):
                info["bench_process_max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                load0 = os.getloadavg()[0]
                r = run_stage(stage, corpus, out, s["sets"], log=log)
                r.update(stage_stats(out, stage))
                r["loadavg_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
                size["stages"][stage] = r
                floor = info["bench_process_max_rss_mib"]
                if floor > 0.8 * r["peak_rss_mib"]:
                    say(f"warning: this process's peak RSS ({floor:.0f} MiB) is a floor of every stage's ru_maxrss")
                save()
                say(
                    f"{n:,} {stage}: {r['seconds']:.1f}s wall ({n / r['seconds']:,.0f} docs/s), "
                    f"{r['unit_seconds']:.1f}s in units, peak RSS {r['peak_rss_mib']:.0f} MiB, "
                    f"load {r['loadavg_1min'][0]:.1f}->{r['loadavg_1min'][1]:.1f}"
                )
            size["disk_mib"] = round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20)
            save()
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(markdown(info) if args.markdown else json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
