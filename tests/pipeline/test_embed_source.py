"""Bring your own embeddings (``embed.source``): another run's ``embeddings/`` reproduces that run's curated rows
without a model; a source that does not match its shard (count, ids, dimension, NaN, zero vector, missing file)
is a clear error naming the file and the row; float16 and plain-list sources are converted."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.core.errors import ConfigError, CurationError
from winnow.core.io import list_shards
from winnow.core.layout import arrow_to_vectors
from winnow.core.stats import ShardStats
from winnow.embedding.embed import BUNDLED_NAME, Embedder, model_label
from winnow.embedding.section import EmbedSection, score_domain, source_label
from winnow.pipeline.config import WinnowConfig, load_config
from winnow.pipeline.stages import STAGES, EmbedStage

N = 30  # documents per shard
WORDS = "river mountain engine library garden protein theorem market violin harbour glacier senate recipe".split()
#: prune on the vectors (distance to the centroid), score without a model: curated rows depend on the embeddings
SETS = [
    "embed.batch_size=8", "embed.device=cpu", "executor.torch_threads=1", "cluster.k=2", "cluster.n_buckets=2",
    "cluster.device=cpu", "score.domain=keywords", "prune.strategy=prototypicality_hard", "prune.keep_fraction=0.6",
]  # fmt: skip
STEMS = ("a", "b")


def make_corpus(folder: Path) -> Path:
    """``a.parquet`` with ids and a null text (a reject); ``b.jsonl`` without ids (derived ``b:<row>``) and a
    broken line."""
    folder.mkdir(parents=True)
    rng = random.Random(3)

    def text(i: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + f" number {i}."

    rows = [{"id": f"a-{i}", "text": text(i), "source": "web"} for i in range(N)]
    rows.insert(7, {"id": "a-null", "text": None, "source": "web"})
    pq.write_table(pa.Table.from_pylist(rows), folder / "a.parquet")
    lines = [json.dumps({"text": text(i), "source": "books"}) for i in range(N)]
    lines.insert(11, '{"text": ')
    (folder / "b.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def make_cfg(corpus: Path, out: Path, *sets: str) -> WinnowConfig:
    return load_config(None, [*SETS, *sets], {"io.input": [str(corpus)], "io.output": str(out)})


def run_all(cfg: WinnowConfig):
    from winnow.pipeline.runner import run_pipeline

    return run_pipeline(cfg, list(STAGES), progress=False)


def tables(out: Path, folder: str) -> dict[str, pa.Table]:
    """Each file's table without its schema metadata (provenance differs between runs)."""
    return {p.name: pq.read_table(p).replace_schema_metadata(None) for p in sorted((out / folder).glob("*.parquet"))}


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo")
    corpus = make_corpus(root / "corpus")
    out = root / "original"
    run_all(make_cfg(corpus, out))
    return SimpleNamespace(root=root, corpus=corpus, out=out, embeddings=out / "embeddings")


def copy_source(original, dest: Path) -> Path:
    shutil.copytree(original.embeddings, dest)
    return dest


def embed_one(original, source: Path, tmp_path: Path, stem: str = "a", *sets: str):
    """Run the embed stage on one shard with ``embed.source`` (no runner): its output table and stats."""
    cfg = make_cfg(original.corpus, tmp_path / "run", f"embed.source={source}", *sets)
    shards = list_shards(cfg.io.input)
    stage = EmbedStage(cfg, str(tmp_path / "run"), shards)
    stats = ShardStats(shards=1)
    stage.process_shard(next(s for s in shards if s.stem == stem), stats)
    return pq.read_table(tmp_path / "run" / "embeddings" / f"{stem}.parquet"), stats


def rewrite(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path)


# -- the round trip -----------------------------------------------------------------------------------------------


def test_another_runs_embeddings_give_the_same_curated_rows(original, tmp_path, monkeypatch):
    def no_model(self):
        raise AssertionError("a model was loaded although embed.source is set")

    monkeypatch.setattr(Embedder, "setup", no_model)
    source = copy_source(original, tmp_path / "theirs")
    out = tmp_path / "byo"
    result = run_all(make_cfg(original.corpus, out, f"embed.source={source}"))
    assert not result.failures
    assert tables(out, "embeddings") == tables(original.out, "embeddings")
    curated = tables(out, "curated")
    assert set(curated) == {f"{s}.parquet" for s in STEMS}
    assert curated == tables(original.out, "curated")
    assert not curated["a.parquet"].column("keep").to_pylist() == [True] * N  # the prune used the vectors
    assert tables(out, "rejects") == tables(original.out, "rejects")  # line-exact rejects, as without a source


def test_provenance_names_the_source(original, tmp_path):
    source = copy_source(original, tmp_path / "theirs")
    out = tmp_path / "byo"
    run_all(
        make_cfg(original.corpus, out, f"embed.source={source}", "prune.strategy=none", "prune.keep_fraction=null")
    )
    label = f"external:{source.resolve()}"
    meta = pq.read_schema(out / "embeddings" / "a.parquet").metadata
    assert meta[b"winnow.model"] == label.encode()
    assert meta[b"winnow.embed_source"] == str(source).encode()
    assert meta[b"winnow.embed_source_model"] == BUNDLED_NAME.encode()  # the source file's own label
    assert b"winnow.embed_device" not in meta
    assert pq.read_schema(out / "curated" / "a.parquet").metadata[b"winnow.model"] == label.encode()


def test_source_without_a_model_label_is_external(original, tmp_path):
    source = copy_source(original, tmp_path / "theirs")
    rewrite(source / "a.parquet", pq.read_table(source / "a.parquet").replace_schema_metadata(None))
    embed_one(original, source, tmp_path)
    meta = pq.read_schema(tmp_path / "run" / "embeddings" / "a.parquet").metadata
    assert meta[b"winnow.embed_source_model"] == b"external"


# -- conversions --------------------------------------------------------------------------------------------------


def test_float16_source_is_converted_and_normalised(original, tmp_path):
    source = copy_source(original, tmp_path / "theirs")
    table = pq.read_table(source / "b.parquet")
    vecs = arrow_to_vectors(table.column("embedding"))
    half = pa.FixedSizeListArray.from_arrays(pa.array(vecs.astype(np.float16).ravel()), vecs.shape[1])
    rewrite(source / "b.parquet", table.set_column(1, "embedding", half))
    out, stats = embed_one(original, source, tmp_path, "b")
    got = arrow_to_vectors(out.column("embedding"))
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), vecs.shape[1])
    assert out.column("id").to_pylist() == table.column("id").to_pylist()
    assert out.column("id")[0].as_py() == "b:0"  # derived ids
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # unit to float32 precision
    np.testing.assert_allclose(got, vecs, atol=2e-3)
    assert stats.kept == N


def test_float64_plain_lists_unnormalised_and_float16_store(original, tmp_path):
    source = copy_source(original, tmp_path / "theirs")
    table = pq.read_table(source / "a.parquet")
    vecs = arrow_to_vectors(table.column("embedding")).astype(np.float64) * 3.0
    plain = pa.array([list(v) for v in vecs], pa.list_(pa.float64()))
    rewrite(source / "a.parquet", table.set_column(1, "embedding", plain))
    out, _ = embed_one(original, source, tmp_path, "a", "embed.store_dtype=float16")
    assert out.schema.field("embedding").type == pa.list_(pa.float16(), vecs.shape[1])
    got = arrow_to_vectors(out.column("embedding"))
    np.testing.assert_allclose(got, vecs / 3.0, atol=1e-3)


def test_unit_vectors_are_kept_bit_for_bit(original, tmp_path):
    source = copy_source(original, tmp_path / "theirs")
    out, _ = embed_one(original, source, tmp_path)
    theirs = pq.read_table(source / "a.parquet")
    assert out.column("embedding").equals(theirs.column("embedding"))


# -- errors -------------------------------------------------------------------------------------------------------


def broken(original, tmp_path, stem: str, change) -> Path:
    """A copy of the original's embeddings with ``change(table) -> table`` applied to ``<stem>.parquet``."""
    source = copy_source(original, tmp_path / "theirs")
    rewrite(source / f"{stem}.parquet", change(pq.read_table(source / f"{stem}.parquet")))
    return source


def with_vector(table: pa.Table, row: int, value: np.ndarray) -> pa.Table:
    vecs = arrow_to_vectors(table.column("embedding")).copy()
    vecs[row] = value
    col = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), vecs.shape[1])
    return table.set_column(1, "embedding", col)


@pytest.mark.parametrize(
    ("stem", "change", "message"),
    [
        ("a", lambda t: t.slice(0, N - 1), rf"a.parquet: {N - 1} rows, but shard .*a.parquet has {N} valid rows"),
        ("a", lambda t: pa.concat_tables([t, t.slice(0, 1)]), rf"a.parquet: {N + 1} rows, but shard .* has {N} valid"),
        ("a", lambda t: pa.concat_tables([t.slice(0, 1), t.slice(0, 1), t.slice(2)]),
         r"a.parquet: row 1: id 'a-0', but valid row 1 of shard .*a.parquet \(record 1\) has id 'a-1'"),
        ("b", lambda t: t.set_column(0, "id", pa.array([f"b-{i}" for i in range(N)])),
         r"b.parquet: row 0: id 'b-0', but valid row 0 of shard .*b.jsonl \(record 0\) has id 'b:0'"),
        ("b", lambda t: pa.concat_tables([t.slice(0, 11), t.slice(12)]),
         r"b.parquet: row 11: id 'b:13', but valid row 11 of shard .*b.jsonl \(record 12\) has id 'b:12'"),
        ("a", lambda t: with_vector(t, 5, np.nan), r"a.parquet: row 5: NaN or infinite value"),
        ("a", lambda t: with_vector(t, 9, np.inf), r"a.parquet: row 9: NaN or infinite value"),
        ("a", lambda t: with_vector(t, 3, 0.0), r"a.parquet: row 3: zero vector"),
        ("a", lambda t: t.select(["embedding"]), r"a.parquet: no 'id' column"),
        ("a", lambda t: t.set_column(1, "embedding", pa.array([f"x{i}" for i in range(N)])),
         r"a.parquet: column 'embedding' is string; expected a list"),
    ],
    ids=["fewer rows", "more rows", "ids out of order", "wrong derived ids", "a row missing", "nan", "inf",
         "zero vector", "no id column", "not vectors"],
)  # fmt: skip
def test_a_source_that_does_not_match_is_a_clear_error(original, tmp_path, stem, change, message):
    source = broken(original, tmp_path, stem, change)
    with pytest.raises(CurationError, match=rf"embed.source: .*{message}"):
        embed_one(original, source, tmp_path, stem)
    assert not (tmp_path / "run" / "embeddings" / f"{stem}.parquet").exists()  # nothing half-written


def test_rows_of_another_dimension_are_an_error(original, tmp_path):
    def ragged(t: pa.Table) -> pa.Table:
        rows = [list(v) for v in arrow_to_vectors(t.column("embedding"))]
        rows[4] = rows[4][:-1]
        return t.set_column(1, "embedding", pa.array(rows, pa.list_(pa.float32())))

    source = broken(original, tmp_path, "a", ragged)
    with pytest.raises(CurationError, match=r"a.parquet: row 4: dimension 383, expected 384"):
        embed_one(original, source, tmp_path)


def test_files_of_another_dimension_are_an_error(original, tmp_path):
    def narrow(t: pa.Table) -> pa.Table:
        vecs = arrow_to_vectors(t.column("embedding"))[:, :8]
        return t.set_column(1, "embedding", pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), 8))

    source = broken(original, tmp_path, "b", narrow)
    with pytest.raises(CurationError, match=r"b.parquet: dimension 8, but .*a.parquet has dimension 384"):
        embed_one(original, source, tmp_path, "b")


def test_a_missing_file_is_an_error(original, tmp_path):
    source = copy_source(original, tmp_path / "theirs")
    (source / "b.parquet").unlink()
    with pytest.raises(CurationError, match=r"embed.source: .*b.parquet: missing.*b.jsonl"):
        embed_one(original, source, tmp_path, "b")


def test_a_run_lists_the_failed_shard(original, tmp_path):
    from winnow.core.errors import ShardError

    source = copy_source(original, tmp_path / "theirs")
    (source / "b.parquet").unlink()
    with pytest.raises(ShardError, match=r"stage embed: 1 unit\(s\) failed:\n  b: CurationError: embed.source"):
        run_all(make_cfg(original.corpus, tmp_path / "byo", f"embed.source={source}"))


# -- config, labels, the score stage's domain ---------------------------------------------------------------------


def test_config_and_labels(tmp_path):
    assert EmbedSection().source is None
    embed = EmbedSection(source=str(tmp_path / "vectors"))
    assert model_label(embed) == f"external:{(tmp_path / 'vectors').resolve()}"
    assert model_label(EmbedSection()) == model_label("bundled") == BUNDLED_NAME
    assert source_label("s3://bucket/run/embeddings/") == "external:s3://bucket/run/embeddings"
    with pytest.raises(ValueError, match="embed.source"):
        EmbedSection(source=" ")
    cfg = WinnowConfig(embed=embed)
    assert not EmbedStage.wants_gpu(cfg.model_copy(update={"embed": embed.model_copy(update={"device": "cuda"})}))
    assert cfg.fingerprint(["embed"]) != WinnowConfig().fingerprint(["embed"])


def test_no_model_embeds_texts_in_another_space():
    with pytest.raises(ConfigError, match="embed.source"):
        Embedder(EmbedSection(source="/elsewhere")).setup()


def test_heuristic_domain_falls_back_to_keywords():
    from loguru import logger

    byo = EmbedSection(source="/elsewhere")
    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING")
    try:
        assert score_domain("auto", byo) == "keywords"
    finally:
        logger.remove(sink)
    assert any("keywords" in m for m in messages)
    assert score_domain("keywords", byo) == "keywords"
    with pytest.raises(ConfigError, match="score.domain=embedding"):
        score_domain("embedding", byo)
    for domain in ("auto", "embedding", "keywords"):
        assert score_domain(domain, EmbedSection()) == domain
