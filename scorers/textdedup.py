"""Exact and MinHash near-duplicate detection on datatrove's own steps (the pre-filters' dedup).

* **Exact**: a document's key is the 64-bit xxhash of its normalised text — datatrove's ``simplify_text`` with its
  default ``TextNormConfig`` (lower case, punctuation and whitespace folded, digits to ``0``, diacritics removed),
  the normalisation datatrove's own exact and MinHash dedup use. Documents with the same key form a group.
* **MinHash-LSH**: datatrove's ``MinhashDedupSignature`` (word ``n_grams`` of the normalised text, spaCy's English
  word tokenizer, ``bands × rows`` 64-bit MinHashes), ``MinhashDedupBuckets`` (a candidate pair shares every hash of
  one band) and ``MinhashDedupCluster`` (union-find over the pairs). A pair of documents with 5-gram Jaccard
  similarity ``s`` becomes a candidate with probability ``1 − (1 − s^rows)^bands``; the threshold that formula puts
  at its steepest point is about ``(1/bands)^(1/rows)`` (0.72 for datatrove's and FineWeb's 14 × 8).

winnow decides which copy of a group survives itself (datatrove keeps the root of its union-find, which depends on
the order pairs arrive in): **the first copy in the run's canonical order** — shards in the manifest's order, rows in
file order. Every other member is dropped with ``dup_of`` = the survivor's id.

The signature step runs per input shard (one unit), writing ``<folder>/bucket_XXX/<stem>.minhash.sig``; the bucket
and cluster steps run once over every shard's signatures.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupSignature,
)
from datatrove.utils.hashing import HashConfig, create_hash_func
from datatrove.utils.text import simplify_text
from pydantic import model_validator

from winnow.core.errors import ConfigError
from winnow.core.section import Section

_HASH = create_hash_func(HashConfig(precision=64, hash_fc="xxhash"))
#: a signature file's suffix (datatrove's)
SIG_SUFFIX = ".minhash.sig"


class ExactDedupSection(Section):
    """Exact dedup on normalised text.

    Args:
        enabled: drop every copy of a normalised text but the first (``drop_reason = exact_duplicate``).
    """

    enabled: bool = True


class MinhashSection(Section):
    """MinHash-LSH near-dedup on datatrove's MinHash steps.

    Args:
        enabled: drop near-duplicates (``drop_reason = minhash_duplicate``).
        n_grams: words per shingle (datatrove's and FineWeb's 5).
        bands: LSH bands (datatrove's ``num_buckets``); more bands catch lower similarities.
        rows: hashes per band (datatrove's ``hashes_per_bucket``); more rows make a band stricter. The candidate
            probability of a pair with Jaccard ``s`` is ``1 - (1 - s**rows)**bands``; ``threshold`` gives its
            steepest point, ``(1/bands)**(1/rows)`` (0.72 at 14 × 8).
        seed: seed of the hash permutations (the same for every shard of a run).
    """

    enabled: bool = True
    n_grams: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1

    @model_validator(mode="after")
    def _check(self) -> MinhashSection:
        for key in ("n_grams", "bands", "rows"):
            value = getattr(self, key)
            if value < 1:
                raise ConfigError(f"prefilter.minhash.{key} must be >= 1, got {value}")
        if self.bands > 999:
            raise ConfigError(f"prefilter.minhash.bands must be <= 999 (datatrove's bucket folders), got {self.bands}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"prefilter.minhash.seed must be in [0, 2**32), got {self.seed}")
        return self

    @property
    def threshold(self) -> float:
        """The Jaccard similarity where the candidate probability rises fastest: ``(1/bands)**(1/rows)``."""
        return float((1.0 / self.bands) ** (1.0 / self.rows))

    def candidate_probability(self, jaccard: float) -> float:
        """Probability that two documents with this 5-gram Jaccard similarity share a band."""
        return float(1.0 - (1.0 - jaccard**self.rows) ** self.bands)

    def datatrove(self) -> MinhashConfig:
        return MinhashConfig(
            n_grams=self.n_grams,
            num_buckets=self.bands,
            hashes_per_bucket=self.rows,
            seed=self.seed,
            hash_config=HashConfig(precision=64, hash_fc="xxhash"),
        )


def text_hashes(texts: Iterable[str]) -> np.ndarray:
    """The exact-dedup key of each text: xxhash64 of datatrove's ``simplify_text``, uint64."""
    return np.fromiter((_HASH(simplify_text(t)) for t in texts), dtype=np.uint64)


def bucket_dir(bucket: int) -> str:
    return f"bucket_{bucket:03d}"


def write_signatures(texts: list[str], folder: str, stem: str, section: MinhashSection) -> None:
    """datatrove's signature step over ``texts`` (document index = position in ``texts``), its files renamed to
    ``<folder>/bucket_XXX/<stem>.minhash.sig``. Local folders only (the run directory's local path)."""
    out = Path(folder)
    with tempfile.TemporaryDirectory(prefix=f".{stem}-", dir=_mkdir(out)) as tmp:
        step = MinhashDedupSignature(output_folder=tmp, config=section.datatrove())
        docs = (Document(text=t, id=str(i)) for i, t in enumerate(texts))
        _drain(step.run(docs, rank=0, world_size=1))
        for b in range(section.bands):
            target = _mkdir(out / bucket_dir(b)) / f"{stem}{SIG_SUFFIX}"
            Path(tmp, bucket_dir(b), f"{0:05d}{SIG_SUFFIX}").replace(target)


def _drain(result: Iterable | None) -> None:
    """Run a datatrove step to its end (some steps' ``run`` are generators, some plain functions)."""
    for _ in result or ():
        pass


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def minhash_clusters(folder: str, section: MinhashSection, stems: list[str]) -> dict[str, np.ndarray]:
    """Run datatrove's bucket and cluster steps over the signatures of ``stems`` in ``folder``.

    datatrove names signature files by task rank (its file id is ``int(name)``), so the per-shard files are linked
    (hard links; a copy where the file system has none) into a staging folder as ``bucket_XXX/<i>.minhash.sig``,
    ``i`` = the stem's position in ``stems``.

    Returns, per stem with at least one near-duplicate, an ``[m, 2]`` uint32 array of (document index, cluster id);
    cluster ids are shared across stems.
    """
    root = Path(folder)
    missing = [s for s in stems if not (root / bucket_dir(0) / f"{s}{SIG_SUFFIX}").exists()]
    if missing:
        raise RuntimeError(f"MinHash signatures missing for {len(missing)} shard(s), e.g. {missing[0]}")
    cfg = section.datatrove()
    with tempfile.TemporaryDirectory(prefix=".minhash-", dir=folder) as tmp:
        staged, dups, clusters = Path(tmp, "sigs"), Path(tmp, "dups"), Path(tmp, "clusters")
        for b in range(section.bands):
            _mkdir(staged / bucket_dir(b))
            for i, stem in enumerate(stems):
                _link(root / bucket_dir(b) / f"{stem}{SIG_SUFFIX}", staged / bucket_dir(b) / f"{i:05d}{SIG_SUFFIX}")
        for b in range(section.bands):
            step = MinhashDedupBuckets(input_folder=str(staged), output_folder=str(dups), config=cfg)
            _drain(step.run(None, rank=b, world_size=section.bands))
        step = MinhashDedupCluster(
            input_folder=str(dups), output_folder=str(clusters), config=cfg, save_cluster_id=True
        )
        _drain(step.run(None, 0, world_size=1))
        out: dict[str, np.ndarray] = {}
        for file_id, stem in enumerate(stems):
            path = clusters / f"{file_id:06d}.clusters"
            if path.exists():
                raw = path.read_bytes()
                out[stem] = np.frombuffer(raw, dtype="<u4").reshape(-1, 2).astype(np.uint32)
        return out


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def remove_signatures(folder: str, stems: set[str], bands: int) -> list[str]:
    """Remove signature files of stems not in ``stems`` and bucket folders beyond ``bands``; returns what went."""
    removed = []
    root = Path(folder)
    if not root.exists():
        return removed
    for sub in sorted(root.iterdir()):
        if not sub.is_dir() or not sub.name.startswith("bucket_"):
            continue
        if int(sub.name.removeprefix("bucket_")) >= bands:
            shutil.rmtree(sub)
            removed.append(sub.name)
            continue
        for f in sorted(sub.iterdir()):
            if f.name.endswith(SIG_SUFFIX) and f.name.removesuffix(SIG_SUFFIX) not in stems:
                f.unlink()
                removed.append(f"{sub.name}/{f.name}")
    return removed
