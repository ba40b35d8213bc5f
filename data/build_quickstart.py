#!/usr/bin/env python3
"""Build the bundled winnow quickstart corpus from the nltk_data parquet files.

    python data/build_quickstart.py --src ../shared/data/nltk_data --out data/quickstart

Only permissively licensed corpora are read (public domain, CC BY 4.0, and the
ANC MASC licence, which allows commercial development); any other corpus is
refused. The output is deterministic: inputs are sorted by id, sampling uses
seeded ``random.Random`` instances (one per shard, so changing one shard does
not reshuffle the others), rows are written sorted by id, gzip is written with
mtime=0 and no file name, and zstd / parquet use fixed settings.

Documents are chosen, never truncated: only texts of at most MAX_CHARS
characters are eligible, so the corpus embeds quickly.

Shards (all in --out):
    speeches.jsonl       inaugural + state_union
    genesis.jsonl.gz     genesis (English KJV/WEB, fi/sv/de/fr/pt, LOLCat)
    masc.jsonl.zst       masc_tagged (all 20 MASC genres, incl. spam and WSJ)
    shakespeare.parquet  shakespeare
    reviews.parquet      movie_reviews + product_reviews

Every record has the fields id, text, source, domain, license (in that order).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import os
import random
import sys
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 0
MAX_CHARS = 6000
FIELDS = ("id", "text", "source", "domain", "license")

# corpus -> expected prefix of its `license` column. Anything not listed here
# is refused, so a non-permissive corpus can never slip into the quickstart.
ALLOWED = {
    "inaugural": "public domain",
    "state_union": "public domain",
    "genesis": "public domain",
    "shakespeare": "public domain",
    "movie_reviews": "CC BY 4.0",
    "product_reviews": "CC BY 4.0",
    "masc_tagged": "May be used for linguistic education, research, and development, including commercial development",
}

# Known near-duplicate pairs (from near_duplicate_pairs.tsv) that are kept on
# purpose, so the dedup stage has something to find. Both members of each pair
# land in the same shard and are <= MAX_CHARS.
FORCED = {
    "speeches": [
        # 4 identical C-SPAN navigation blocks (exact duplicates, noisy).
        ("nltk/state_union/1959-Eisenhower-web-boilerplate",
         "nltk/state_union/1962-Kennedy-web-boilerplate",
         "nltk/state_union/1963-Kennedy-web-boilerplate",
         "nltk/state_union/1967-Johnson-web-boilerplate"),
    ],
    "masc": [
        # Enron e-mail thread family (word-5-gram Jaccard 0.80-0.88).
        ("nltk/masc_tagged/written/54261", "nltk/masc_tagged/written/54262", "nltk/masc_tagged/written/54263"),
        # Two "work at home" spam mails from one sender template (0.62).
        ("nltk/masc_tagged/written/111375", "nltk/masc_tagged/written/114452"),
        # Two yearly versions of the same fundraising letter (0.57).
        ("nltk/masc_tagged/written/117CWL008", "nltk/masc_tagged/written/117CWL009"),
    ],
    "reviews": [
        ("nltk/movie_reviews/neg/cv274_26379", "nltk/movie_reviews/neg/cv302_26481"),  # exact (1.000)
        ("nltk/movie_reviews/pos/cv174_9659", "nltk/movie_reviews/pos/cv759_13522"),   # 0.965
        ("nltk/movie_reviews/neg/cv070_13249", "nltk/movie_reviews/neg/cv641_13412"),  # 0.920
        ("nltk/movie_reviews/neg/cv118_28837", "nltk/movie_reviews/neg/cv361_28738"),  # 0.914
        ("nltk/movie_reviews/pos/cv494_17389", "nltk/movie_reviews/pos/cv778_17330"),  # 0.621
    ],
}


# --------------------------------------------------------------------------- io

def load(src: str, corpus: str) -> list[dict]:
    if corpus not in ALLOWED:
        raise SystemExit(f"refusing corpus {corpus!r}: not in the permissive allow-list")
    cols = ["id", "text", "domain", "subdomain", "source", "quality_label", "lang", "dup_group", "license"]
    rows = pq.read_table(os.path.join(src, f"{corpus}.parquet"), columns=cols).to_pylist()
    for r in rows:
        if r["source"] != f"nltk_data:{corpus}" or not r["license"].startswith(ALLOWED[corpus]):
            raise SystemExit(f"unexpected source/license in {corpus}: {r['id']}: {r['source']} / {r['license']}")
    rows.sort(key=lambda r: r["id"])
    return rows


def short(rows: list[dict]) -> list[dict]:
    return [r for r in rows if len(r["text"]) <= MAX_CHARS]


def rng_for(shard: str) -> random.Random:
    # str seeds are hashed with SHA-512 by random.Random: stable across runs,
    # machines and PYTHONHASHSEED.
    return random.Random(f"winnow-quickstart:{SEED}:{shard}")


def take(rng: random.Random, pool: list[dict], k: int, exclude: set[str]) -> list[dict]:
    pool = [r for r in pool if r["id"] not in exclude]
    if k > len(pool):
        raise SystemExit(f"asked for {k} rows but only {len(pool)} eligible")
    return rng.sample(pool, k)


def forced(rows: list[dict], groups: list[tuple[str, ...]]) -> list[dict]:
    by_id = {r["id"]: r for r in rows}
    out = []
    for i in (i for g in groups for i in g):
        r = by_id.get(i)
        if r is None:
            raise SystemExit(f"forced id not found: {i}")
        if len(r["text"]) > MAX_CHARS:
            raise SystemExit(f"forced id longer than {MAX_CHARS} chars: {i}")
        out.append(r)
    return out


def record(r: dict) -> dict:
    return {k: r[k] for k in FIELDS}


def finish(rows: list[dict]) -> list[dict]:
    ids = [r["id"] for r in rows]
    if len(ids) != len(set(ids)):
        raise SystemExit("duplicate ids in shard")
    return [record(r) for r in sorted(rows, key=lambda r: r["id"])]


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def write_jsonl(path: str, rows: list[dict]) -> None:
    with open(path, "wb") as f:
        f.write(jsonl_bytes(rows))


def write_jsonl_gz(path: str, rows: list[dict]) -> None:
    with open(path, "wb") as raw:
        # filename="" and mtime=0 keep the gzip header free of run-specific data.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            f.write(jsonl_bytes(rows))


def write_jsonl_zst(path: str, rows: list[dict]) -> None:
    import zstandard

    data = zstandard.ZstdCompressor(level=19, write_checksum=True).compress(jsonl_bytes(rows))
    with open(path, "wb") as f:
        f.write(data)


SCHEMA = pa.schema([(k, pa.string(), False) for k in FIELDS])


def write_parquet(path: str, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    pq.write_table(table, path, compression="zstd", compression_level=9, row_group_size=len(rows) or 1)


# ---------------------------------------------------------------- shard recipes

def build_speeches(src: str) -> list[dict]:
    rng = rng_for("speeches")
    inaugural, sotu = load(src, "inaugural"), load(src, "state_union")
    keep = forced(sotu, FORCED["speeches"])
    seen = {r["id"] for r in keep}
    clean_sotu = [r for r in short(sotu) if r["dup_group"] is None]
    keep += take(rng, clean_sotu, 71, seen)           # 4 boilerplate + 71 = 75 SOTU
    keep += take(rng, short(inaugural), 45, set())    # 45 of 75 short inaugural parts
    return finish(keep)


def build_genesis(src: str) -> list[dict]:
    rng = rng_for("genesis")
    rows = short(load(src, "genesis"))
    by_sub = defaultdict(list)
    for r in rows:
        by_sub[r["subdomain"]].append(r)
    keep = []
    # English: 25 aligned KJV/WEB block pairs (block i of both covers roughly the
    # same verses: semantic near-duplicates with low n-gram overlap), then 24 more
    # blocks of each translation.
    kjv = {r["id"].rsplit("/", 1)[1]: r for r in by_sub["genesis_english-kjv"]}
    web = {r["id"].rsplit("/", 1)[1]: r for r in by_sub["genesis_english-web"]}
    common = sorted(set(kjv) & set(web))
    pairs = sorted(rng.sample(common, 25))
    keep += [kjv[b] for b in pairs] + [web[b] for b in pairs]
    seen = {r["id"] for r in keep}
    keep += take(rng, by_sub["genesis_english-kjv"], 24, seen)
    keep += take(rng, by_sub["genesis_english-web"], 24, seen)
    # LOLCat paraphrase (noisy) and non-English translations (lang != en). The
    # de/fr/pt files have long lines, so only 2-3 of their blocks are short
    # enough; take up to 4 per language.
    keep += take(rng, by_sub["genesis_lolcat"], 6, set())
    for sub in ("genesis_finnish", "genesis_swedish", "genesis_german", "genesis_french", "genesis_portuguese"):
        keep += take(rng, by_sub[sub], min(4, len(by_sub[sub])), set())
    return finish(keep)


MASC_PER_GENRE = 5
MASC_SPAM = 18
MASC_WSJ = 0  # WSJ articles in MASC are also the LDC treebank sample (non-commercial): left out


def build_masc(src: str) -> list[dict]:
    rng = rng_for("masc")
    rows = load(src, "masc_tagged")
    keep = forced(rows, FORCED["masc"])
    seen = {r["id"] for r in keep}
    pool = [r for r in short(rows) if r["id"] not in seen]
    # The Pirates of the Caribbean script is also in webtext (not allowed here),
    # so it brings no in-corpus duplicate; leave it out.
    pool = [r for r in pool if r["dup_group"] != "work:pirates_script"]
    wsj = [r for r in pool if (r["dup_group"] or "").startswith("wsj:")]
    rest = [r for r in pool if not (r["dup_group"] or "").startswith("wsj:")]
    # WSJ articles from the `written` section (their twins live in treebank,
    # which is not allowed, so there is no pair inside the quickstart).
    keep += take(rng, wsj, MASC_WSJ, set())
    by_sub = defaultdict(list)
    for r in rest:
        by_sub[r["subdomain"]].append(r)
    forced_per_sub = defaultdict(int)
    for r in keep:
        if r["id"] in seen:
            forced_per_sub[r["subdomain"]] += 1
    for sub in sorted(by_sub):
        want = MASC_SPAM if sub == "spam" else MASC_PER_GENRE
        want = max(0, want - forced_per_sub[sub])
        keep += take(rng, by_sub[sub], min(want, len(by_sub[sub])), set())
    return finish(keep)


SHAKESPEARE_PER_PLAY = 16


def build_shakespeare(src: str) -> list[dict]:
    rng = rng_for("shakespeare")
    by_play = defaultdict(list)
    for r in short(load(src, "shakespeare")):
        by_play[r["id"].split("/")[2]].append(r)
    keep = []
    for play in sorted(by_play):
        keep += take(rng, by_play[play], min(SHAKESPEARE_PER_PLAY, len(by_play[play])), set())
    return finish(keep)


def build_reviews(src: str) -> list[dict]:
    rng = rng_for("reviews")
    movies, products = load(src, "movie_reviews"), load(src, "product_reviews")
    keep = forced(movies, FORCED["reviews"])
    seen = {r["id"] for r in keep}
    for sub in ("movie_review_neg", "movie_review_pos"):
        have = sum(r["subdomain"] == sub for r in keep)
        pool = [r for r in short(movies) if r["subdomain"] == sub]
        keep += take(rng, pool, 35 - have, seen)      # 35 neg + 35 pos
    keep += take(rng, short(products), 50, set())
    return finish(keep)


SHARDS = [
    ("speeches.jsonl", build_speeches, write_jsonl),
    ("genesis.jsonl.gz", build_genesis, write_jsonl_gz),
    ("masc.jsonl.zst", build_masc, write_jsonl_zst),
    ("shakespeare.parquet", build_shakespeare, write_parquet),
    ("reviews.parquet", build_reviews, write_parquet),
]


def check_pairs(src: str) -> None:
    """Make sure the forced pairs really are listed in near_duplicate_pairs.tsv."""
    path = os.path.join(src, "near_duplicate_pairs.tsv")
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        listed = {frozenset((row["id_a"], row["id_b"])) for row in csv.DictReader(f, delimiter="\t")}
    for groups in FORCED.values():
        for g in groups:
            for a, b in itertools.combinations(g, 2):
                if frozenset((a, b)) not in listed:
                    raise SystemExit(f"forced pair not in near_duplicate_pairs.tsv: {a} {b}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", required=True, help="folder with the nltk_data *.parquet files")
    ap.add_argument("--out", required=True, help="output folder (e.g. data/quickstart)")
    args = ap.parse_args(argv)
    check_pairs(args.src)
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for name, build, write in SHARDS:
        rows = build(args.src)
        path = os.path.join(args.out, name)
        write(path, rows)
        total += len(rows)
        print(f"{name:22s} {len(rows):4d} rows  {os.path.getsize(path):9,d} bytes")
    print(f"{'total':22s} {total:4d} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
