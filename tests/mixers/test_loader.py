"""The training data loader: the plan's proportions, repeats and phases; sharding; exact and elastic resumption."""

from __future__ import annotations

import itertools
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from winnow.mixers.config import MixSection
from winnow.mixers.loader import MixtureDataset, MixturePlanError, merge_loader_state
from winnow.mixers.plan import MixturePlan
from winnow.mixers.planner import PLAN_FILE, build_plan, pool_stats, write_plan

SOURCES = ("web", "code", "books")
pytestmark = [
    pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning"),
    pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning"),
]


# =============================================================================================================
# A synthetic run and its plan
# =============================================================================================================
def make_run(root: Path, shards: int = 4, rows: int = 150, row_group: int = 32, seed: int = 0) -> Path:
    """``root/run/curated/s<i>.parquet``: short texts, sources, quality scores, 85% kept; shard 1 has ``repeat``
    (0 to 3, some null)."""
    rng = np.random.default_rng(seed)
    run = root / "run"
    (run / "curated").mkdir(parents=True)
    for s in range(shards):
        lengths = rng.integers(3, 30, rows)
        columns = {
            "id": [f"s{s}:{i}" for i in range(rows)],
            "text": [" ".join(f"s{s}r{i}w{j}" for j in range(n)) for i, n in enumerate(lengths)],
            "source": [SOURCES[i] for i in rng.integers(0, len(SOURCES), rows)],
            "quality_score": pa.array(rng.uniform(0, 1, rows).astype(np.float32)),
            "keep": pa.array(rng.uniform(size=rows) < 0.85),
        }
        if s == 1:
            rep = rng.integers(0, 4, rows).tolist()
            rep[5] = None
            columns["repeat"] = pa.array(rep, pa.int32())
        pq.write_table(pa.table(columns), run / "curated" / f"s{s}.parquet", row_group_size=row_group)
    (run / "config.resolved.yaml").write_text("winnow_version: 0.1.0\nconfig_hash: abc123def4567890\n")
    return run


def plan_run(run: Path, epochs: float = 2.6, seed: int = 7) -> dict:
    """A real plan (``build_plan``): 2 quality buckets × 3 sources, ``epochs`` passes, the last 20% upsampling code."""
    settings = {
        "pools": {"quality": "quantiles", "n_buckets": 2, "domain": "source"},
        "upsample": {"domains": ["code"], "fraction": 0.2, "factor": 2.0},
        "law": {"a": 1.0, "buckets": {"q1": {"b": -0.1, "tau": 5.0}, "q2": {"b": -0.1, "tau": 5.0}}},
    }
    passes = int(pool_stats(str(run), MixSection.model_validate(settings)).pools["pass_tokens"].sum())
    mix = MixSection.model_validate({**settings, "budget_tokens": int(passes * epochs)})
    plan = build_plan(str(run), mix, seed=seed)
    write_plan(str(run), plan)
    return plan


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("loader"))
    plan = plan_run(run)
    assert all(p["chosen"] for p in plan["pools"]) and len(plan["pools"]) == 6
    return run


@pytest.fixture(scope="module")
def reference(run) -> list[tuple]:
    """The uninterrupted pass: (index, id, pool, phase) of every sample, one process."""
    return [key(r) for r in MixtureDataset(run)]


@pytest.fixture
def fresh_run(run, tmp_path) -> Path:
    """A copy of the run that a test may break."""
    return Path(shutil.copytree(run, tmp_path / "run"))


def key(row: dict) -> tuple:
    return (row["index"], row["id"], row["pool"], row["phase"])


def keys_of_batch(batch: dict) -> list[tuple]:
    return list(zip(batch["index"].tolist(), batch["id"], batch["pool"], batch["phase"], strict=True))


def curated_rows(run: Path) -> pl.DataFrame:
    frames = []
    for f in sorted((run / "curated").glob("*.parquet")):
        df = pl.read_parquet(f)
        if "repeat" not in df.columns:
            df = df.with_columns(pl.lit(1, pl.Int32).alias("repeat"))
        frames.append(df.with_columns(pl.col("repeat").fill_null(1).cast(pl.Int64)))
    return pl.concat(frames, how="diagonal_relaxed")


def run_ranks(run: Path, world: int, batch: int, steps: int | None = None, state: dict | None = None):
    """Ranks in lockstep (explicit rank/world_size, no torch.distributed): the samples of each step, rank by rank,
    and rank 0's state after ``steps`` steps (all steps when None)."""
    datasets = [MixtureDataset(run, rank=r, world_size=world, batch_size=batch) for r in range(world)]
    if state is not None:
        for d in datasets:
            d.load_state_dict(state)
    iters = [iter(d) for d in datasets]
    out: list[tuple] = []
    for _ in itertools.count() if steps is None else range(steps):
        got = [[key(x) for x in itertools.islice(it, batch)] for it in iters]
        if not any(got):
            break
        out += [k for g in got for k in g]
    return out, datasets[0].state_dict()


# =============================================================================================================
# The order follows the plan
# =============================================================================================================
def test_global_order_is_the_plan(run, reference):
    plan = json.loads((run / PLAN_FILE).read_text())
    ds = MixtureDataset(run)
    order = list(ds.global_order())
    assert [o[0] for o in order] == list(range(ds.num_samples)) == [r[0] for r in reference]
    assert [(o[2], o[3]) for o in order] == [(r[2], r[3]) for r in reference]
    tokens = ds.document_tokens([o[1] for o in order])
    starts = np.cumsum(tokens) - tokens
    budget = plan["budget"]["tokens"]
    assert starts[-1] < budget <= starts[-1] + tokens[-1]  # the last sample is the one that reaches the budget

    # the phase switches at the planned token boundary
    boundary = plan["phases"][1]["start_token"]
    phases = [o[3] for o in order]
    k = phases.index("upsample")
    assert set(phases[:k]) == {"base"} and set(phases[k:]) == {"upsample"}
    assert starts[k - 1] < boundary <= starts[k]

    # realised tokens per pool and phase match phase_tokens to within a few documents
    realised = Counter()
    for (_, _, pool, phase), t in zip(order, tokens, strict=True):
        realised[pool, phase] += int(t)
    longest = int(tokens.max())
    for p in plan["pools"]:
        for phase, planned in p["phase_tokens"].items():
            assert abs(realised[p["pool"], phase] - planned) <= 2 * longest + 0.01 * planned, (p["pool"], phase)
    up = {p["pool"]: p["phase_weights"]["upsample"] / p["phase_weights"]["base"] for p in plan["pools"]}
    assert all(v > 1.5 for k, v in up.items() if k.endswith("/code"))  # the upsampled domain doubles its share


def test_repeats_and_fractional_epochs(run, reference):
    plan = json.loads((run / PLAN_FILE).read_text())
    rows = curated_rows(run)
    kept = rows.filter(pl.col("keep") & (pl.col("repeat") > 0))
    repeat = dict(zip(kept["id"], kept["repeat"], strict=True))
    seen = Counter(r[1] for r in reference)
    assert set(seen) <= set(repeat)  # never a dropped row, never a row with repeat 0
    dropped = rows.filter(~pl.col("keep") | (pl.col("repeat") == 0))["id"].to_list()
    assert dropped and not set(dropped) & set(seen)

    by_pool = defaultdict(list)
    for r in reference:
        by_pool[r[2]].append(r[1])
    members = defaultdict(set)
    for r in reference:
        members[r[2]].add(r[1])
    fractional = False
    for p in plan["pools"]:
        items = by_pool[p["pool"]]
        size = sum(repeat[i] for i in members[p["pool"]])
        assert len(members[p["pool"]]) == p["documents"]  # every document of the pool comes
        passes = len(items) // size
        counts = Counter(items)
        for doc in members[p["pool"]]:  # a document's copies: `repeat` per whole pass, some in the partial one
            assert repeat[doc] * passes <= counts[doc] <= repeat[doc] * (passes + 1)
        fractional |= len({counts[d] // repeat[d] for d in members[p["pool"]]}) > 1
        assert len(items) / size == pytest.approx(p["epochs"], rel=0.05)
    assert fractional  # the last, partial pass takes a subset


def test_rows_are_read_correctly_and_pooled_by_the_plan_rule(run, reference):
    plan = json.loads((run / PLAN_FILE).read_text())
    rows = curated_rows(run)
    text = dict(zip(rows["id"], rows["text"], strict=True))
    edges = plan["pool_definition"]["quality"]["edges"]
    expected = {
        i: f"q{1 + sum(float(s) > e for e in edges)}/{src}"
        for i, s, src in zip(rows["id"], rows["quality_score"], rows["source"], strict=True)
    }
    for row in itertools.islice(MixtureDataset(run), 0, None, 7):
        assert row["text"] == text[row["id"]]
        assert row["pool"] == expected[row["id"]]


def test_id_column_comes_from_the_plan(fresh_run, reference):
    plan = json.loads((fresh_run / PLAN_FILE).read_text())
    assert plan["pool_definition"]["id_column"] == "id"
    # a plan made before pool_definition recorded id_column: the loader's id_field, default "id"
    del plan["pool_definition"]["id_column"]
    edit_plan(fresh_run, pool_definition=plan["pool_definition"])
    assert [key(r) for r in MixtureDataset(fresh_run)] == reference
    # ids in another column: the plan names it and the loader reads it without id_field=
    for f in (fresh_run / "curated").glob("*.parquet"):
        table = pq.read_table(f)
        names = ["doc_id" if c == "id" else c for c in table.column_names]
        pq.write_table(table.rename_columns(names), f, row_group_size=32)
    with pytest.raises(MixturePlanError, match="has no column 'id'"):
        MixtureDataset(fresh_run)
    assert [key(r) for r in MixtureDataset(fresh_run, id_field="doc_id")] == reference
    edit_plan(fresh_run, pool_definition={**plan["pool_definition"], "id_column": "doc_id"})
    ds = MixtureDataset(fresh_run)
    assert ds.id_field == "doc_id" and [key(r) for r in ds] == reference


def test_same_order_for_same_seed_and_epoch_else_different(run, reference):
    again = [key(r) for r in MixtureDataset(run)]
    assert again == reference
    other = MixtureDataset(run)
    other.set_epoch(1)
    epoch1 = [key(r) for r in other]
    assert [r[1] for r in epoch1] != [r[1] for r in reference]
    assert Counter(r[2] for r in epoch1).keys() == Counter(r[2] for r in reference).keys()
    reseeded = [key(r) for r in MixtureDataset(run, seed=123)]
    assert [r[1] for r in reseeded] != [r[1] for r in reference]


# =============================================================================================================
# Sharding over ranks and workers
# =============================================================================================================
@pytest.mark.parametrize(("world", "workers", "batch"), [(2, 2, 3), (3, 1, 1), (1, 3, 4)])
def test_ranks_and_workers_disjoint_complete_and_in_global_order(run, reference, world, workers, batch):
    per_rank = []
    for r in range(world):
        ds = MixtureDataset(run, rank=r, world_size=world, batch_size=batch)
        per_rank.append([keys_of_batch(b) for b in DataLoader(ds, batch_size=batch, num_workers=workers)])
    flat = [k for batches in per_rank for b in batches for k in b]
    assert len(flat) == len(set(flat)) == len(reference)  # disjoint and complete
    # step t of every rank, rank by rank, is the global order whatever the ranks and workers
    steps = max(len(b) for b in per_rank)
    merged = [k for t in range(steps) for batches in per_rank if t < len(batches) for k in batches[t]]
    assert merged == reference


# =============================================================================================================
# Resumption
# =============================================================================================================
@pytest.mark.parametrize("stop", [1, 4, 13])
def test_mid_epoch_resume_plain_dataloader(run, reference, stop):
    ds = MixtureDataset(run, batch_size=8)
    got = []
    for i, batch in enumerate(DataLoader(ds, batch_size=8)):
        got += keys_of_batch(batch)
        if i + 1 == stop:
            break
    state = json.loads(json.dumps(ds.state_dict()))  # the state is JSON
    assert state["samples_seen"] == 8 * stop and set(state) >= {"epoch", "seed", "mixture_fingerprint"}
    resumed = MixtureDataset(run, batch_size=8)
    resumed.load_state_dict(state)
    for batch in DataLoader(resumed, batch_size=8):
        got += keys_of_batch(batch)
    assert got == reference


@pytest.mark.parametrize(("workers", "stop"), [(0, 3), (2, 1), (2, 6), (3, 5)])
def test_mid_epoch_resume_stateful_dataloader(run, reference, workers, stop):
    sdl = pytest.importorskip("torchdata.stateful_dataloader")
    loader = sdl.StatefulDataLoader(MixtureDataset(run, batch_size=4), batch_size=4, num_workers=workers)
    got = []
    for i, batch in enumerate(loader):
        got += keys_of_batch(batch)
        if i + 1 == stop:
            break
    state = loader.state_dict()
    del loader
    loader = sdl.StatefulDataLoader(MixtureDataset(run, batch_size=4), batch_size=4, num_workers=workers)
    loader.load_state_dict(state)
    for batch in loader:
        got += keys_of_batch(batch)
    assert got == reference


@pytest.mark.parametrize(("new_world", "new_batch"), [(2, 4), (2, 3), (1, 1), (3, 5)])
def test_elastic_resume_on_another_world_size(run, reference, new_world, new_batch):
    before, state = run_ranks(run, world=4, batch=2, steps=5)  # save on 4 ranks
    assert state["samples_seen"] == 5 * 4 * 2
    after, _ = run_ranks(run, world=new_world, batch=new_batch, state=state)  # every rank loads rank 0's state
    assert before + after == reference


def test_elastic_resume_from_a_stateful_dataloader_with_workers(run, reference):
    sdl = pytest.importorskip("torchdata.stateful_dataloader")
    loaders = [
        sdl.StatefulDataLoader(MixtureDataset(run, rank=r, world_size=2, batch_size=3), batch_size=3, num_workers=2)
        for r in range(2)
    ]
    iters = [iter(x) for x in loaders]
    got = []
    for _ in range(7):
        for it in iters:
            got += keys_of_batch(next(it))
    state = loaders[0].state_dict()  # rank 0's loader state, workers included
    del iters, loaders
    ds = MixtureDataset(run, batch_size=2)
    ds.load_state_dict(state)  # the furthest worker's position; no layout: steps start there
    assert ds.state_dict()["samples_seen"] == 7 * 2 * 3
    for batch in DataLoader(ds, batch_size=2, num_workers=3):
        got += keys_of_batch(batch)
    assert got == reference


def test_end_of_epoch_state_resumes_at_the_next_epoch(run, reference):
    ds = MixtureDataset(run)
    rows = list(ds)
    state = ds.state_dict()
    assert state["samples_seen"] == len(rows) and state["epoch"] == 0
    nxt = MixtureDataset(run)
    nxt.load_state_dict(state)
    first = next(iter(nxt))
    epoch1 = MixtureDataset(run)
    epoch1.set_epoch(1)
    assert key(first) == key(next(iter(epoch1)))
    assert nxt.state_dict()["epoch"] == 1
    resumed = MixtureDataset(run)
    resumed.load_state_dict({**state, "samples_seen": 10})
    resumed.set_epoch(0)  # the epoch being resumed: keeps the position
    assert key(next(iter(resumed))) == reference[10]
    resumed.set_epoch(2)  # another epoch: from its start
    assert next(iter(resumed))["index"] == 0


def test_plain_dataloader_with_workers_resumes_from_a_counted_position(run, reference):
    ds = MixtureDataset(run, batch_size=5)
    got = []
    for i, batch in enumerate(DataLoader(ds, batch_size=5, num_workers=2)):
        got += keys_of_batch(batch)
        if i + 1 == 3:
            break
    resumed = MixtureDataset(run, batch_size=5)
    resumed.load_state_dict(ds.state_for(ds.state_dict()["samples_seen"] + 3 * 5))
    for batch in DataLoader(resumed, batch_size=5, num_workers=2):
        got += keys_of_batch(batch)
    assert got == reference


def test_state_from_another_plan_or_seed_is_refused(run, tmp_path):
    ds = MixtureDataset(run)
    state = ds.state_dict()
    with pytest.raises(ValueError, match="another mixture plan"):
        ds.load_state_dict({**state, "mixture_fingerprint": "0" * 16})
    with pytest.raises(ValueError, match="seed"):
        MixtureDataset(run, seed=99).load_state_dict(state)
    with pytest.raises(ValueError, match="no MixtureDataset state"):
        merge_loader_state({"_snapshot": {}})


# =============================================================================================================
# Packing
# =============================================================================================================
def words(text: str) -> list[int]:
    return [len(w) for w in text.split()]


def test_packed_sequences_are_the_document_stream_and_resume_exactly(run, reference):
    texts = dict(zip(*[curated_rows(run)[c] for c in ("id", "text")], strict=True))
    stream = [t for r in reference for t in [*words(texts[r[1]]), 0]]
    ds = MixtureDataset(run, tokenizer=words, seq_len=16, eos_token_id=0)
    seqs = [x["input_ids"] for x in ds]
    assert all(s.dtype == torch.int64 and s.shape == (16,) for s in seqs)
    assert torch.cat(seqs).tolist() == stream[: len(seqs) * 16]
    assert len(stream) - len(seqs) * 16 < 16

    part = MixtureDataset(run, tokenizer=lambda t: {"input_ids": words(t)}, seq_len=16, eos_token_id=0)
    got = [x["input_ids"] for x in itertools.islice(iter(part), 37)]
    state = part.state_dict()
    assert state["token_offset"] > 0 or state["samples_seen"] > 0
    resumed = MixtureDataset(run, tokenizer=words, seq_len=16, eos_token_id=0)
    resumed.load_state_dict(state)
    got += [x["input_ids"] for x in resumed]
    assert torch.cat(got).tolist() == torch.cat(seqs).tolist()


def test_packing_with_a_tokenizers_tokenizer_and_a_plan_dict(run, reference):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    texts = dict(zip(*[curated_rows(run)[c] for c in ("id", "text")], strict=True))
    vocab = {
        "[UNK]": 0,
        "[EOS]": 1,
        **{w: i + 2 for i, w in enumerate(sorted({w for t in texts.values() for w in t.split()}))},
    }
    tok = tokenizers.Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    plan = json.loads((run / PLAN_FILE).read_text())
    ds = MixtureDataset(plan, run_dir=str(run), tokenizer=tok, seq_len=64, eos_token_id=1)
    got = torch.cat([x["input_ids"] for x in itertools.islice(iter(ds), 5)]).tolist()
    stream = [t for r in reference[:200] for t in [*(vocab[w] for w in texts[r[1]].split()), 1]]
    assert got == stream[: len(got)]


def test_packed_resume_with_workers(run):
    sdl = pytest.importorskip("torchdata.stateful_dataloader")

    def loader():
        ds = MixtureDataset(run, tokenizer=words, seq_len=32, eos_token_id=0)
        return sdl.StatefulDataLoader(ds, batch_size=2, num_workers=2)

    full = torch.cat([b for b in (x["input_ids"] for x in loader())]).tolist()
    first = loader()
    got = [b["input_ids"] for b in itertools.islice(iter(first), 9)]
    state = first.state_dict()
    del first
    second = loader()
    second.load_state_dict(state)
    got += [b["input_ids"] for b in second]
    assert torch.cat(got).tolist() == full


# =============================================================================================================
# Memory: streaming row groups
# =============================================================================================================
def test_reads_row_groups_through_a_bounded_cache(run, reference):
    ds = MixtureDataset(run, cache_bytes=0)
    got = [key(r) for r in ds]
    assert got == reference
    reader = ds._reader
    largest = max(t.nbytes for t in reader._cache.values())
    assert len(reader._cache) == 1 and reader._bytes <= largest  # never more than one row group held
    groups = sum(pq.ParquetFile(f).num_row_groups for f in (run / "curated").glob("*.parquet"))
    assert reader.row_groups_read > groups  # re-read, not held
    roomy = MixtureDataset(run)
    list(roomy)
    assert roomy.reader_stats["row_groups_read"] == groups  # the default cache holds this small run


# =============================================================================================================
# Bad plans
# =============================================================================================================
def edit_plan(run: Path, **changes) -> None:
    plan = json.loads((run / PLAN_FILE).read_text())
    plan.update(changes)
    (run / PLAN_FILE).write_text(json.dumps(plan))


def test_missing_shard(fresh_run):
    (fresh_run / "curated" / "s2.parquet").unlink()
    with pytest.raises(MixturePlanError, match=r"shard curated/s2.parquet is missing"):
        MixtureDataset(fresh_run)


def test_pool_with_no_rows(fresh_run):
    plan = json.loads((fresh_run / PLAN_FILE).read_text())
    plan["pools"][0]["pool"] = "q9/web"
    edit_plan(fresh_run, pools=plan["pools"])
    with pytest.raises(MixturePlanError, match=r"pool 'q9/web' has no rows"):
        MixtureDataset(fresh_run)


def test_plan_from_another_winnow_version(fresh_run):
    edit_plan(fresh_run, winnow_version="0.0.1")
    with pytest.raises(MixturePlanError, match=r"made by winnow 0\.0\.1, this is winnow"):
        MixtureDataset(fresh_run)
    assert MixtureDataset(fresh_run, check_version=False).num_samples > 0


def test_not_a_plan_or_no_plan(fresh_run, tmp_path):
    edit_plan(fresh_run, format="winnow.mixture_plan/99")
    with pytest.raises(MixturePlanError, match="format"):
        MixtureDataset(fresh_run / PLAN_FILE)
    with pytest.raises(MixturePlanError, match="run `winnow mix`"):
        MixtureDataset(tmp_path)
    with pytest.raises(MixturePlanError, match="needs run_dir"):
        MixtureDataset({"format": "x"})


def test_shards_changed_since_the_plan(fresh_run):
    path = fresh_run / "curated" / "s0.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.schema.get_field_index("keep"), "keep", pa.array([True] * len(table))), path)
    with pytest.raises(MixturePlanError, match=r"s0.parquet has \d+ kept rows, the plan counted"):
        MixtureDataset(fresh_run)
    pq.write_table(table.slice(0, 100), path)
    with pytest.raises(MixturePlanError, match="100 rows, the plan counted 150"):
        MixtureDataset(fresh_run)


def test_plan_with_a_missing_or_unknown_key_is_refused_by_name(fresh_run):
    plan = json.loads((fresh_run / PLAN_FILE).read_text())
    broken = json.loads(json.dumps(plan))
    del broken["budget"]
    (fresh_run / PLAN_FILE).write_text(json.dumps(broken))
    with pytest.raises(MixturePlanError, match=r"mixture_plan\.json: the plan lacks budget; re-run `winnow mix`"):
        MixtureDataset(fresh_run)
    broken = json.loads(json.dumps(plan))
    del broken["pools"][2]["phase_tokens"]
    broken["pool_definition"]["bucket_by"] = "score"
    (fresh_run / PLAN_FILE).write_text(json.dumps(broken))
    with pytest.raises(MixturePlanError) as e:
        MixtureDataset(fresh_run)
    assert str(e.value).endswith(
        f"{fresh_run / PLAN_FILE}: the plan lacks pools[2].phase_tokens; the plan has unknown key(s) "
        "pool_definition.bucket_by; re-run `winnow mix`"
    )
    broken = json.loads(json.dumps(plan))
    broken["token_count"] = {"method": "bpe"}
    with pytest.raises(MixturePlanError, match=r"the plan given: bad value\(s\): token_count \(Input tag 'bpe'"):
        MixtureDataset(broken, run_dir=str(fresh_run))


def test_plan_as_a_model_or_a_dict(run, reference):
    plan = json.loads((run / PLAN_FILE).read_text())
    typed = MixturePlan.model_validate(plan)
    from_model = MixtureDataset(typed, run_dir=str(run))
    assert isinstance(from_model.plan, MixturePlan) and from_model.plan == typed
    from_dict = MixtureDataset(plan, run_dir=str(run))
    assert from_model.fingerprint == from_dict.fingerprint == MixtureDataset(run).fingerprint
    assert [key(r) for r in from_model] == reference


def test_a_rank_without_world_size_is_refused_instead_of_yielding_nothing(run):
    assert not torch.distributed.is_available() or not torch.distributed.is_initialized()
    with pytest.raises(ValueError, match=r"rank=1 needs world_size= too \(torch.distributed is not initialised\)"):
        MixtureDataset(run, rank=1)
    assert [key(r) for r in MixtureDataset(run, rank=0, world_size=1)][:3]  # with both, it reads
