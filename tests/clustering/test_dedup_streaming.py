"""The dedup stage streams one cluster at a time (issue 15): the bucket files assign writes are sorted by cluster
with one cluster per row group; the stage reads each cluster's row groups, front to back through every file, and
writes the same output as one whole-bucket pass (a hand-written reference here), also from bucket files of the older
layout; a cluster whose pairwise pass dominates is logged with its numbers; ``dedup.bucket_dtype=float16`` moves
the similarities by less than its bound and keeps the decisions of these fixtures."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import winnow.pipeline.stages.dedup as dedup_stage
from winnow.clustering.semdedup import is_duplicate, semdedup_cluster
from winnow.core.layout import arrow_to_vectors, bucket_name, vectors_to_arrow
from winnow.pipeline.config import load_config
from winnow.pipeline.runner import run_pipeline
from winnow.pipeline.stages.dedup import dominant_clusters

D = 16
SHARDS = {"s0": 40, "s1": 37, "s2": 45}
#: clusters: 0-4 around e0..e4 (with near and exact copies), 5 holds one outlier row (e5), 6 and 7 none
K, N_BUCKETS, ROW_GROUP = 8, 3, 7


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_inputs(root: Path) -> tuple[Path, Path]:
    """Shards of short texts, and their vectors (``embed.source``): rows near one of e0..e4, a few near or exact
    copies of earlier rows (also of other shards), and one outlier at e5 (in shard s1)."""
    rng = np.random.default_rng(5)
    corpus, source = root / "corpus", root / "vectors"
    corpus.mkdir()
    source.mkdir()
    eye = np.eye(D, dtype=np.float32)
    made: list[np.ndarray] = []
    for stem, n in SHARDS.items():
        ids = [f"{stem}-{i:02d}" for i in range(n)]
        vecs = unit(eye[rng.integers(0, 5, n)] + 0.1 * rng.standard_normal((n, D)))
        for i in range(n):
            if stem == "s1" and i == 3:
                vecs[i] = eye[5]  # the outlier: no copies
                continue
            if made and rng.random() < 0.25:  # a copy of an earlier row: exact or near
                src = made[rng.integers(0, len(made))]
                vecs[i] = src if rng.random() < 0.5 else unit(src + 1e-3 * rng.standard_normal(D))
            made.append(vecs[i].copy())
        pq.write_table(pa.table({"id": ids, "text": [f"document {i}" for i in ids]}), corpus / f"{stem}.parquet")
        pq.write_table(pa.table({"id": ids, "embedding": vectors_to_arrow(vecs)}), source / f"{stem}.parquet")
    return corpus, source


def cfg_for(corpus: Path, source: Path, out: Path, *sets: str):
    base = [
        f"embed.source={source}", f"cluster.k={K}", f"cluster.n_buckets={N_BUCKETS}", "cluster.device=cpu",
        f"io.row_group_size={ROW_GROUP}", "executor.workers=1", "dedup.block_size=16",
    ]  # fmt: skip
    return load_config(None, [*base, *sets], {"io.input": [str(corpus)], "io.output": str(out)})


def run_to_dedup(corpus: Path, source: Path, out: Path, *sets: str) -> None:
    """read, embed (from the source), fit; then the planted centroids e0..e7; then assign and dedup."""
    cfg = cfg_for(corpus, source, out, *sets)
    run_pipeline(cfg, ["read", "embed", "fit"], progress=False)
    buf = io.BytesIO()
    np.save(buf, np.eye(D, dtype=np.float32)[:K])
    (out / "centroids.npy").write_bytes(buf.getvalue())
    run_pipeline(cfg, ["assign", "dedup"], progress=False)


def reference(out: Path, rank: str = "hard", seed: int = 0) -> dict[str, pa.Table]:
    """The whole-bucket pass: every file of a bucket at once, sorted by (cluster, stem, pos), cluster by cluster."""
    want = {}
    for folder in sorted((out / "buckets").iterdir()):
        t = pa.concat_tables([pq.read_table(f) for f in sorted(folder.glob("*.parquet"))])
        labels = t.column("cluster_id").to_numpy()
        order = np.lexsort((t.column("pos").to_numpy(), np.asarray(t.column("stem").to_pylist()), labels))
        t, labels = t.take(pa.array(order)), labels[order]
        vecs, dist = arrow_to_vectors(t.column("embedding")), t.column("dist_to_centroid").to_numpy()
        ids = np.asarray(t.column("id").to_pylist(), dtype=object)
        sims, nn_ids = np.full(len(t), np.nan, np.float32), np.full(len(t), None, dtype=object)
        for cid in np.unique(labels):
            sel = np.flatnonzero(labels == cid)
            s, nn = semdedup_cluster(vecs[sel], dist[sel], rank=rank, seed=seed, cluster_id=int(cid))
            sims[sel] = s
            nn_ids[sel[nn >= 0]] = ids[sel][nn[nn >= 0]]
        whole = pa.table(
            {
                "stem": t.column("stem"), "pos": t.column("pos"),
                "dup_max_sim": pa.array(sims, pa.float32(), mask=np.isnan(sims)),
                "dup_nn_id": pa.array(nn_ids.tolist(), pa.string()),
            }
        )  # fmt: skip
        stems = np.asarray(whole.column("stem").to_pylist(), dtype=object)
        for stem in SHARDS:  # one file per shard of the manifest in every bucket, rows by position
            part = whole.filter(pa.array(stems == stem))
            want[f"{folder.name}/{stem}.parquet"] = part.sort_by("pos")
    return want


def outputs(out: Path) -> dict[str, pa.Table]:
    """``<bucket>/<stem>.parquet`` -> its table without metadata."""
    files = sorted((out / "dedup").glob("*/*.parquet"))
    return {f"{p.parent.name}/{p.name}": pq.read_table(p).replace_schema_metadata(None) for p in files}


def same(got: dict[str, pa.Table], want: dict[str, pa.Table]) -> None:
    assert got.keys() == want.keys()
    for name, t in want.items():
        g = got[name]
        assert g.column("stem").equals(t.column("stem")) and g.column("pos").equals(t.column("pos")), name
        assert g.column("dup_nn_id").to_pylist() == t.column("dup_nn_id").to_pylist(), name
        a, b = (x.column("dup_max_sim").to_numpy(zero_copy_only=False).astype(np.float32) for x in (g, t))
        np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))


def redo_dedup(cfg, out: Path) -> None:
    shutil.rmtree(out / "dedup")
    shutil.rmtree(out / "completions" / "dedup")
    run_pipeline(cfg, ["dedup"], progress=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dedup_streaming")
    corpus, source = make_inputs(root)
    out = root / "run"
    run_to_dedup(corpus, source, out)
    return SimpleNamespace(root=root, corpus=corpus, source=source, out=out)


def test_fixture_has_several_clusters_per_bucket_an_empty_and_a_one_row_cluster(run):
    sizes = {}
    for f in (run.out / "assignments").glob("*.parquet"):
        for c in pq.read_table(f).column("cluster_id").to_pylist():
            sizes[c] = sizes.get(c, 0) + 1
    assert sizes[5] == 1 and 6 not in sizes and 7 not in sizes
    assert all(sizes[c] > ROW_GROUP for c in range(5))  # clusters span several row groups of a file
    assert sorted(p.name for p in (run.out / "buckets").iterdir()) == ["00000", "00001", "00002"]
    assert sum(sizes.values()) == sum(SHARDS.values())


def test_bucket_files_are_sorted_by_cluster(run):
    for f in sorted((run.out / "buckets").glob("*/*.parquet")):
        t = pq.read_table(f)
        keys = list(zip(t.column("cluster_id").to_pylist(), t.column("pos").to_pylist(), strict=True))
        assert keys == sorted(keys), f
        assert {c % N_BUCKETS for c, _ in keys} == {int(f.parent.name)}
        meta = pq.ParquetFile(f).metadata  # the vectors' values: split bytes, no dictionary
        leaf = [meta.row_group(0).column(i) for i in range(meta.num_columns)][-1]
        assert leaf.path_in_schema == "embedding.list.element"
        assert "BYTE_STREAM_SPLIT" in leaf.encodings and leaf.dictionary_page_offset is None


def test_clusters_are_packed_whole_into_row_groups_of_the_read_buffer(run, tmp_path):
    from winnow.pipeline.stages.cluster import pack_clusters

    assert pack_clusters(np.array([0, 3, 4, 9]), np.array([3, 4, 9, 10]), 4) == [(0, 4), (4, 9), (9, 10)]
    assert pack_clusters(np.array([0, 3]), np.array([3, 5]), 1) == [(0, 3), (3, 5)]
    assert pack_clusters(np.array([0, 3]), np.array([3, 5]), 100) == [(0, 5)]
    # at 0, every row group holds one cluster; at 1 MiB, 1 MiB / (16 x 4 bytes x 3 shards) = 5,461 rows: the whole
    # file in one write, which io.row_group_size (7) splits regardless of clusters
    for mib, one_cluster in ((0, True), (1, False)):
        out = tmp_path / f"mib{mib}"
        shutil.copytree(run.out, out)
        cfg = cfg_for(run.corpus, run.source, out, f"dedup.read_buffer_mib={mib}")
        run_pipeline(cfg, ["assign", "dedup"], progress=False)
        mixed = 0
        for f in sorted((out / "buckets").glob("*/*.parquet")):
            pf = pq.ParquetFile(f)
            groups = [pf.read_row_group(g).column("cluster_id").to_pylist() for g in range(pf.metadata.num_row_groups)]
            assert all(len(g) <= ROW_GROUP for g in groups)
            mixed += sum(len(set(g)) > 1 for g in groups)
            if not one_cluster:
                assert sum(map(len, groups[:-1])) == ROW_GROUP * (len(groups) - 1)
        assert (mixed == 0) == one_cluster
        same(outputs(out), outputs(run.out))


def test_streamed_output_equals_the_whole_bucket_pass(run):
    got = outputs(run.out)
    same(got, reference(run.out))
    assert sum(t.num_rows for t in got.values()) == sum(SHARDS.values())
    dup = np.concatenate([t.column("dup_max_sim").to_numpy(zero_copy_only=False) for t in got.values()])
    vecs = np.concatenate([arrow_to_vectors(pq.read_table(f).column("embedding")) for f in run.source.iterdir()])
    copies = len(vecs) - len(np.unique(vecs, axis=0))
    assert copies >= 5 and is_duplicate(dup, 1e-6).sum() == copies  # the planted exact copies, and only they
    assert sum(t.column("dup_max_sim").null_count for t in got.values()) == 6  # one top member per cluster 0-5
    # one file per bucket and shard (empty where the shard has no rows there), rows by position
    assert set(got) == {f"{bucket_name(b)}/{stem}.parquet" for b in range(N_BUCKETS) for stem in SHARDS}
    for name, t in got.items():
        assert set(t.column("stem").to_pylist()) <= {name.split("/")[1][: -len(".parquet")]}
        pos = t.column("pos").to_numpy()
        assert (np.diff(pos) > 0).all(), name


@pytest.mark.parametrize("mib", [0, 64])
def test_a_unit_reads_each_row_group_once_front_to_back(run, tmp_path, monkeypatch, mib):
    out = tmp_path / "run"
    shutil.copytree(run.out, out)
    cfg = cfg_for(run.corpus, run.source, out, f"dedup.read_buffer_mib={mib}")
    run_pipeline(cfg, ["assign"], progress=False)
    reads, held = [], []
    original_read, original_cluster = dedup_stage.read_row_groups, dedup_stage.semdedup_cluster

    def spy_read(r, rel, groups, columns=None, metadata=None):
        t = original_read(r, rel, groups, columns, metadata)
        if groups is not None:  # not the cluster_id index
            reads.append((rel, groups, set(t.column("cluster_id").to_pylist())))
        return t

    def spy_cluster(emb, *args, **kwargs):
        held.append(len(emb))
        return original_cluster(emb, *args, **kwargs)

    monkeypatch.setattr(dedup_stage, "read_row_groups", spy_read)
    monkeypatch.setattr(dedup_stage, "semdedup_cluster", spy_cluster)
    redo_dedup(cfg, out)
    for rel in {r for r, _, _ in reads}:  # every row group read once, in order
        groups = [g for r, gs, _ in reads if r == rel for g in gs]
        assert groups == list(range(pq.ParquetFile(out / rel).metadata.num_row_groups))
    if mib == 0:  # a row group per cluster (io.row_group_size=7 splits some): every read is one cluster's rows
        assert all(len(clusters) == 1 for _, _, clusters in reads)
    assert len(held) == 6 and held.count(1) == 1  # clusters 0-5, one at a time; cluster 5 has one row
    same(outputs(out), outputs(run.out))


def test_bucket_files_of_the_older_layout_give_the_same_output(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run.out, out)
    for f in (out / "buckets").glob("*/*.parquet"):  # one row group, rows by position (as assign wrote them)
        t = pq.read_table(f)
        t = t.take(pa.array(np.argsort(t.column("pos").to_numpy(), kind="stable")))
        pq.write_table(t, f)
    redo_dedup(cfg_for(run.corpus, run.source, out), out)
    same(outputs(out), outputs(run.out))
    for name in outputs(run.out):
        assert (out / "dedup" / name).read_bytes() == (run.out / "dedup" / name).read_bytes()


def test_a_dominant_cluster_is_logged_with_its_numbers(run, tmp_path, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(run.out, out)
    messages: list[str] = []  # the runner resets loguru's sinks: record what the stage logs
    monkeypatch.setattr(dedup_stage, "logger", SimpleNamespace(warning=messages.append, info=lambda m: None))
    redo_dedup(cfg_for(run.corpus, run.source, out, "dedup.warn_cluster_pairs=500"), out)
    sizes = {}
    for f in (out / "assignments").glob("*.parquet"):
        for c in pq.read_table(f).column("cluster_id").to_pylist():
            sizes[c] = sizes.get(c, 0) + 1
    big = sorted(c for c, n in sizes.items() if n * (n - 1) // 2 >= 500)
    warned = [m for m in messages if "raise cluster.k" in m]
    assert big and len(warned) == len(big)
    for c, m in zip(big, warned, strict=True):
        n = sizes[c]
        assert f"dedup bucket {c % N_BUCKETS:05d}: cluster {c} has {n:,} members: {n * (n - 1) // 2:,} pairs" in m
    same(outputs(out), outputs(run.out))  # a warning changes nothing


def test_dominant_clusters_by_share_and_by_size():
    dc = load_config(None).dedup
    msgs = dominant_clusters({1: 10_000, 2: 1_000, 3: 1_000}, dc)
    # 49,995,000 of 49,995,000 + 2 x 499,500 pairs = 98%; 49,995,000 / 2e8 pairs/s = 0.25 s
    assert len(msgs) == 1
    assert msgs[0].startswith("cluster 1 has 10,000 members: 49,995,000 pairs (5.00e+07), 98% of its bucket's")
    assert "2 other clusters average 1,000 members" in msgs[0] and "raise cluster.k" in msgs[0]
    assert dominant_clusters({1: 4_000, 2: 4_000}, dc) == []  # 50% each but under 10^7 pairs
    assert dominant_clusters({1: 5_000, 2: 4_000}, dc)[0].startswith("cluster 1 has 5,000")  # 61% of 2e7 pairs
    assert dominant_clusters({7: 40_000}, dc) == []  # alone: 8e8 pairs, under warn_cluster_pairs
    alone = dominant_clusters({7: 44_722}, dc)  # 1,000,006,281 pairs >= 10^9
    assert len(alone) == 1 and "1,000,006,281 pairs" in alone[0] and "100% of its bucket's" in alone[0]
    assert dominant_clusters({}, dc) == []


def test_float16_bucket_copy_moves_similarities_within_its_bound(run, tmp_path):
    out = tmp_path / "run"
    run_to_dedup(run.corpus, run.source, out, "dedup.bucket_dtype=float16")
    for f in (out / "buckets").glob("*/*.parquet"):
        assert pq.read_schema(f).field("embedding").type.value_type == pa.float16()
    got, want = outputs(out), outputs(run.out)
    vec, ids = {}, {}  # the float32 vectors, by id; ids by (stem, pos)
    for f in sorted((run.out / "embeddings").glob("*.parquet")):
        t = pq.read_table(f)
        for pos, (i, v) in enumerate(
            zip(t.column("id").to_pylist(), arrow_to_vectors(t.column("embedding")), strict=True)
        ):
            vec[i], ids[f.stem, pos] = v.astype(np.float64), i
    assert got.keys() == want.keys()
    changed = 0
    for name, t in want.items():
        g = got[name]
        assert g.column("stem").equals(t.column("stem")) and g.column("pos").equals(t.column("pos"))
        a, b = (x.column("dup_max_sim").to_numpy(zero_copy_only=False) for x in (g, t))
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        assert np.nanmax(np.abs(a - b)) < 2e-3  # float16 rounding: 2^-11 relative per component
        for eps in (0.01, 0.05, 0.1):
            np.testing.assert_array_equal(is_duplicate(a, eps), is_duplicate(b, eps))
        # the nearest member may change only to one as near in float32 (a near-tie: copies of one document)
        for j in np.flatnonzero(
            np.array(g.column("dup_nn_id").to_pylist()) != np.array(t.column("dup_nn_id").to_pylist())
        ):
            me, was, now = (
                ids[t.column("stem")[j].as_py(), t.column("pos")[j].as_py()],
                t["dup_nn_id"][j],
                g["dup_nn_id"][j],
            )
            assert abs(float(vec[me] @ vec[was.as_py()]) - float(vec[me] @ vec[now.as_py()])) < 2e-3
            changed += 1
    assert changed <= 0.1 * sum(SHARDS.values())
