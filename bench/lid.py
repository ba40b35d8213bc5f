"""Benchmark: offline language identification backends side by side (accuracy, scores, docs/s).

Data: the nltk_data parquet files. Non-English text is the Genesis translations (fi, sv, de, fr, pt); English is
every other corpus (news, fiction, speech, chat, reviews, bug titles, ...) plus the KJV and WEB Genesis, sampled
with equal shares per source, so that English includes noisy text. LOLCat Genesis is left out (its "English" is
deliberately not). Documents are cut at whitespace into chunks of 100 to 300 words (length drawn per chunk,
seeded); ``--per-lang`` chunks per language are drawn. The Swedish and Portuguese Genesis are mis-encoded in
nltk_data (cp437 bytes and UTF-8 read as Latin-1) and the German holds HTML entities; they are repaired unless
``--no-repair``.

Backends: ``fasttext`` and ``langid`` through winnow's ``LanguageIdentifier`` (so the numbers include its text
preparation), and ``lingua`` (lingua-language-detector, all 75 languages, high-accuracy mode; bench only, skipped
when not installed). For every ``--max-chars`` value: accuracy per language, macro accuracy, docs/s (median of
``--rounds`` rounds after a warm-up pass, backends interleaved), the smallest share over the languages of documents
kept at ``min_score`` 0.65; at the largest value, the share kept at several thresholds (right language and score at
least the threshold).

    python bench/lid.py --per-lang 150 --max-chars 50,100,200,500,1000,2000 --out bench/out/lid.jsonl

``--write-fixture tests/fixtures/multilingual.jsonl`` instead writes the test fixture (public-domain sources only:
Genesis in six languages, inaugural and State of the Union addresses, Shakespeare) and exits.
"""

from __future__ import annotations

import argparse
import glob
import html
import json
import platform
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from winnow.scorers.lang import UNDETERMINED, LangSection, LanguageIdentifier, prepare  # noqa: E402

LANGS = ("en", "de", "fr", "fi", "sv", "pt")
THRESHOLDS = (0.3, 0.5, 0.65, 0.8, 0.9)
#: nltk_data Genesis files stored with the wrong encoding: the codec the bytes really are in
MISENCODED = {"genesis_swedish": "cp437", "genesis_portuguese": "utf-8"}


def repair(text: str, subdomain: str) -> str:
    """Undo the nltk_data encoding damage: the text was decoded as Latin-1 from bytes in ``MISENCODED``'s codec."""
    codec = MISENCODED.get(subdomain)
    if codec:
        try:
            text = text.encode("latin-1").decode(codec)
            if codec == "cp437":
                text = text.replace("\u255c", '"')  # byte 0xBD, the Swedish file's quotation mark (cp437 has none)
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return html.unescape(text) if subdomain.startswith("genesis_") else text


def chunks(text: str, rng: np.random.Generator, lo: int, hi: int) -> list[str]:
    """``text`` cut into pieces of ``lo`` to ``hi`` words (each length drawn), whitespace inside kept; a last piece
    under ``lo`` words is dropped unless it is the only one."""
    words = text.split()
    out, i = [], 0
    while i < len(words):
        n = int(rng.integers(lo, hi + 1))
        piece = words[i : i + n]
        if len(piece) >= lo or not out:
            out.append(" ".join(piece))
        i += n
    return out


def load(pattern: str, per_lang: int, lo: int, hi: int, seed: int, fix: bool) -> tuple[list[str], list[str]]:
    files = sorted(glob.glob(pattern))
    if not files:
        sys.exit(f"no parquet file matches {pattern!r}")
    t = pa.concat_tables([pq.read_table(f, columns=["id", "text", "lang", "source", "subdomain"]) for f in files])
    rng = np.random.default_rng(seed)
    pools: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    cols = (t[c].to_pylist() for c in ("text", "lang", "source", "subdomain"))
    for text, lang, source, sub in zip(*cols, strict=True):
        if sub == "genesis_lolcat" or lang not in LANGS:
            continue
        text = repair(text, sub) if fix else text
        group = sub if source == "nltk_data:genesis" else source
        pools[lang][group].extend(chunks(text, rng, lo, hi))
    texts, labels = [], []
    for lang in LANGS:
        groups = pools[lang]
        take = _stratified(rng, {g: len(v) for g, v in sorted(groups.items())}, per_lang)
        for g, k in take.items():
            for j in sorted(rng.choice(len(groups[g]), size=k, replace=False)):
                texts.append(groups[g][j])
                labels.append(lang)
    return texts, labels


def _stratified(rng: np.random.Generator, sizes: dict[str, int], n: int) -> dict[str, int]:
    """Equal shares per group (a group smaller than its share gives all it has; the rest goes to the others)."""
    take = dict.fromkeys(sizes, 0)
    left = min(n, sum(sizes.values()))
    while left:
        open_ = [g for g in sizes if take[g] < sizes[g]]
        share = max(1, left // len(open_))
        for g in open_:
            k = min(share, sizes[g] - take[g], left)
            take[g] += k
            left -= k
            if not left:
                break
    return take


#: the fixture's documents: (file, subdomain or None, language, how many)
FIXTURE = (
    ("genesis", "genesis_english-kjv", "en", 3),
    ("genesis", "genesis_english-web", "en", 2),
    ("inaugural", None, "en", 3),
    ("state_union", None, "en", 2),
    ("shakespeare", None, "en", 2),
    ("genesis", "genesis_german", "de", 10),
    ("genesis", "genesis_french", "fr", 10),
    ("genesis", "genesis_finnish", "fi", 10),
    ("genesis", "genesis_swedish", "sv", 10),
    ("genesis", "genesis_portuguese", "pt", 10),
)


def write_fixture(folder: str, path: str, seed: int) -> None:
    """Documents spread evenly over each source, each cut after 60 to 140 words (whitespace, newlines included,
    kept as in the source), as JSON lines ``{"id", "text", "lang"}``."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, sub, lang, n in FIXTURE:
        t = pq.read_table(f"{folder}/{name}.parquet", columns=["id", "text", "subdomain", "license"]).to_pylist()
        docs = sorted((r for r in t if sub is None or r["subdomain"] == sub), key=lambda r: r["id"])
        assert all("public domain" in r["license"] for r in docs), name
        for r in (docs[int(i)] for i in np.linspace(0, len(docs) - 1, n)):
            text = repair(r["text"], r["subdomain"]).strip()
            ends = [m.end() for m in re.finditer(r"\S+", text)]
            cut = text[: ends[min(len(ends), int(rng.integers(60, 141))) - 1]]
            rows.append({"id": r["id"], "text": cut, "lang": lang})
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{path}: {len(rows)} documents")


class Lingua:
    """lingua-language-detector with the same contract as ``LanguageIdentifier.predict`` (bench only)."""

    detector = None  # one detector for every max_chars: lingua loads its language models on first use

    def __init__(self, max_chars: int):
        import lingua  # bench only: not a winnow dependency

        self.max_chars = max_chars
        if Lingua.detector is None:
            Lingua.detector = lingua.LanguageDetectorBuilder.from_all_languages().build()

    def predict(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        codes, scores = [], np.zeros(len(texts), np.float32)
        for i, text in enumerate(texts):
            cut = prepare(text, self.max_chars)
            best = self.detector.compute_language_confidence_values(cut)[0] if cut else None
            if best is None or best.value <= 0:
                codes.append(UNDETERMINED)
                continue
            codes.append(best.language.iso_code_639_1.name.lower())
            scores[i] = best.value
        return codes, scores


def make(backend: str, max_chars: int):
    if backend == "lingua":
        return Lingua(max_chars)
    ident = LanguageIdentifier(LangSection(backend=backend, max_chars=max_chars, keep=[]))
    ident.setup()
    return ident


def quality(model, texts: list[str], labels: list[str]) -> dict:
    """Accuracy per language and the share kept at each threshold (right language, score at least t)."""
    codes, scores = model.predict(texts)
    y, p = np.array(labels), np.array(codes)
    right = y == p
    per = {lang: float(right[y == lang].mean()) for lang in LANGS if (y == lang).any()}
    wrong: dict[str, int] = defaultdict(int)
    for a, b in zip(y[~right], p[~right], strict=True):
        wrong[f"{a}->{b}"] += 1
    return {
        "accuracy": per,
        "macro": float(np.mean(list(per.values()))),
        "kept_at": {str(t): float((right & (scores >= np.float32(t))).mean()) for t in THRESHOLDS},
        "kept_at_by_lang": {
            lang: {str(t): float((right & (scores >= np.float32(t)))[y == lang].mean()) for t in THRESHOLDS}
            for lang in per
        },
        "score_p5_right": float(np.percentile(scores[right], 5)) if right.any() else None,
        "errors": dict(sorted(wrong.items(), key=lambda kv: -kv[1])[:8]),
    }


def timed(model, texts: list[str]) -> float:
    t0 = time.perf_counter()
    model.predict(texts)
    return len(texts) / (time.perf_counter() - t0)


def table(res: dict) -> str:
    head = "| backend | max_chars | " + " | ".join(LANGS) + " | macro | min kept@0.65 | docs/s |"
    rows = [head, "|---|---:|" + "---:|" * 9]
    for key, r in res["runs"].items():
        b, m = key.split("@")
        acc = " | ".join(f"{r['accuracy'].get(lang, float('nan')):.3f}" for lang in LANGS)
        kept = min(v["0.65"] for v in r["kept_at_by_lang"].values())
        rows.append(f"| {b} | {m} | {acc} | {r['macro']:.3f} | {kept:.3f} | {r['docs_per_s']:,.0f} |")
    top = max(int(k.split("@")[1]) for k in res["runs"])
    rows += ["", f"Share kept (right language and score ≥ t), max_chars={top}:", ""]
    rows.append("| backend | " + " | ".join(f"t={t}" for t in THRESHOLDS) + " | p5 score (right) | errors |")
    rows.append("|---|" + "---:|" * (len(THRESHOLDS) + 1) + "---|")
    for key, r in res["runs"].items():
        if int(key.split("@")[1]) == top:
            kept = " | ".join(f"{r['kept_at'][str(t)]:.3f}" for t in THRESHOLDS)
            errs = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "–"
            rows.append(f"| {key.split('@')[0]} | {kept} | {r['score_p5_right']:.3f} | {errs} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default="../shared/data/nltk_data/*.parquet", help="parquet glob (nltk_data schema)")
    ap.add_argument("--per-lang", type=int, default=150, help="chunks per language")
    ap.add_argument("--words", default="100,300", help="chunk length range in words")
    ap.add_argument("--max-chars", default="100,200,500,1000,2000", help="comma-separated lang.max_chars values")
    ap.add_argument("--backends", default="fasttext,langid,lingua")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds (median reported), backends interleaved")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-repair", action="store_true", help="keep the Swedish/Portuguese mis-encoding")
    ap.add_argument("--json", action="store_true", help="print the result as JSON instead of markdown tables")
    ap.add_argument("--out", default=None, help="append the JSON result as one line to this file")
    ap.add_argument("--write-fixture", default=None, metavar="PATH", help="write the test fixture and exit")
    args = ap.parse_args()
    if args.write_fixture:
        write_fixture(str(Path(args.input).parent), args.write_fixture, args.seed)
        return

    lo, hi = (int(x) for x in args.words.split(","))
    texts, labels = load(args.input, args.per_lang, lo, hi, args.seed, not args.no_repair)
    backends = args.backends.split(",")
    if "lingua" in backends:
        try:
            import lingua  # noqa: F401  (bench only)
        except ImportError:
            print("lingua-language-detector is not installed: skipping lingua", file=sys.stderr)
            backends.remove("lingua")
    res = {
        "bench": "lid",
        "machine": platform.processor() or platform.machine(),
        "docs": len(texts),
        "per_lang": {lang: labels.count(lang) for lang in LANGS},
        "mean_chars": float(np.mean([len(t) for t in texts])),
        "repaired": not args.no_repair,
        "runs": {},
    }
    models = {f"{b}@{m}": make(b, int(m)) for b in backends for m in args.max_chars.split(",")}
    for key, model in models.items():  # the first pass also warms up (lingua loads its models lazily)
        res["runs"][key] = quality(model, texts, labels)
    speeds: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        for key, model in models.items():
            speeds[key].append(timed(model, texts))
    for key, r in res["runs"].items():
        r["docs_per_s"] = float(np.median(speeds[key]))
        r["docs_per_s_rounds"] = [round(x, 1) for x in speeds[key]]
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['docs']} chunks ({res['per_lang']}), mean {res['mean_chars']:.0f} characters\n")
        print(table(res))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
