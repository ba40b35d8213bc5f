"""The student rater: it recovers planted ratings (a known function of the embedding) far above chance, its
held-out report is honest (≈ 0 on unlearnable ratings, and what it says is what the saved model does on the
held-out ids), save → load gives identical predictions, the rater's table follows the schema, the
``train-student`` command works on a hand-built run directory, and ``winnow run`` scores with a student."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from scipy.stats import spearmanr
from typer.testing import CliRunner

from winnow.core.errors import ConfigError, CurationError
from winnow.pipeline.cli.student import train_student_command
from winnow.pipeline.config import load_config
from winnow.scorers.base import CRITERIA, DOMAINS, QUALITY_SCHEMA
from winnow.scorers.heuristic import features_matrix
from winnow.scorers.student import (
    DOMAIN_NAMES,
    META_FILE,
    RATING_COLUMNS,
    REPORT_FILE,
    WEIGHTS_FILE,
    StudentModel,
    StudentRater,
    StudentSection,
    round_ratings,
    split,
    train_student,
)

N, DIM = 2000, 128
WORDS = (
    "the a of and data model river city law court music bank farm code road phone shop health school patient "
    "market crop train network film lesson theorem budget"
).split()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def unit_vectors(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    e = rng.normal(size=(n, d))
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def random_texts(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 40)))).capitalize() + "." for _ in range(n)]


def ratings_table(ids: list[str], ratings: np.ndarray, domains: np.ndarray) -> pa.Table:
    cols: dict[str, pa.Array] = {"id": pa.array(ids, pa.string())}
    for j, name in enumerate(RATING_COLUMNS):
        cols[name] = pa.array(ratings[:, j], pa.int8())
    cols["quality_domain"] = pa.array([DOMAIN_NAMES[k] for k in domains], pa.string())
    return pa.table(cols)


@pytest.fixture(scope="module")
def planted():
    """2,000 random unit vectors; criterion c = clip(round(3 + 2·tanh(w_c·e)), 1, 5); domain = argmax(W e)."""
    rng = np.random.default_rng(0)
    emb = unit_vectors(rng, N, DIM)
    w = rng.normal(size=(len(RATING_COLUMNS), DIM))  # |w| ≈ √d, so w·e has unit variance
    wd = rng.normal(size=(len(DOMAIN_NAMES), DIM))
    ratings = np.clip(np.rint(3 + 2 * np.tanh(emb @ w.T)), 1, 5).astype(np.int8)
    domains = np.argmax(emb @ wd.T, axis=1)
    texts = random_texts(rng, N)
    ids = [f"doc-{i}" for i in range(N)]
    return {
        "emb": emb,
        "texts": texts,
        "features": features_matrix(texts),
        "ids": ids,
        "ratings": ratings,
        "domains": domains,
        "table": ratings_table(ids, ratings, domains),
    }


@pytest.fixture(scope="module")
def trained(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "model"
    report = train_student(
        planted["table"], planted["emb"], planted["texts"], out, seed=0, features=planted["features"],
        embed_model="synthetic",
    )  # fmt: skip
    return {"dir": out, "report": report}


# ---------------------------------------------------------------------------------------------------------------
# learning and honesty


def test_recovers_planted_ratings_far_above_chance(trained):
    report = trained["report"]
    held = report["holdout"]
    assert report["n_holdout"] == 400 and report["n_train"] + report["n_val"] + report["n_holdout"] == N
    assert report["skipped_no_ratings"] == 0
    assert held["criteria_spearman"] > 0.85, held
    assert held["overall_spearman"] > 0.85
    for key in (*CRITERIA, "overall"):
        r = held["ratings"][key]
        assert r["n"] == 400
        assert r["spearman"] > 0.75, (key, r)
        assert r["mae"] < 0.7 * r["baseline_mae"], (key, r)  # far better than the best constant
    # 15 random hyperplanes in 128 dimensions from 1,400 examples: far above the majority class, not perfect
    assert held["domain_accuracy"] > 0.4
    assert held["domain_accuracy"] > 4 * held["domain_majority_baseline"]


def test_report_is_what_the_saved_model_does_on_the_held_out_ids(planted, trained):
    """Recompute the held-out metrics independently: the held-out ids from the split, predictions from the
    model loaded from disk, Spearman from scipy."""
    report = trained["report"]
    hold, val, train = split(planted["ids"], seed=0, holdout=0.2, val_fraction=0.1)
    assert len(hold) == report["n_holdout"] and len(val) == report["n_val"] and len(train) == report["n_train"]
    assert not set(hold) & (set(val) | set(train))
    model = StudentModel.load(trained["dir"])
    pred, probs = model.predict(planted["emb"][hold], features=planted["features"][hold])
    y = planted["ratings"][hold].astype(float)
    for j, name in enumerate(RATING_COLUMNS):
        key = name.removeprefix("quality_")
        rho = spearmanr(pred[:, j], y[:, j]).statistic
        assert report["holdout"]["ratings"][key]["spearman"] == pytest.approx(rho, abs=1e-6)
        mae = np.mean(np.abs(round_ratings(pred[:, j]) - y[:, j]))
        assert report["holdout"]["ratings"][key]["mae"] == pytest.approx(mae, abs=1e-9)
    acc = np.mean(np.argmax(probs, axis=1) == planted["domains"][hold])
    assert report["holdout"]["domain_accuracy"] == pytest.approx(acc, abs=1e-9)
    assert json.loads((trained["dir"] / REPORT_FILE).read_text()) == report
    assert json.loads((trained["dir"] / META_FILE).read_text())["report"] == report


def test_unlearnable_ratings_report_no_skill(planted, tmp_path):
    """Ratings and domains drawn at random: the held-out Spearman is ≈ 0 and the domain accuracy ≈ chance, even
    though the model can fit its training rows."""
    rng = np.random.default_rng(1)
    ratings = rng.integers(1, 6, size=(N, len(RATING_COLUMNS))).astype(np.int8)
    domains = rng.integers(0, len(DOMAIN_NAMES), size=N)
    table = ratings_table(planted["ids"], ratings, domains)
    report = train_student(
        table, planted["emb"], planted["texts"], tmp_path / "m", seed=0, features=planted["features"]
    )
    held = report["holdout"]
    assert abs(held["criteria_spearman"]) < 0.06, held
    for key in (*CRITERIA, "overall"):
        assert abs(held["ratings"][key]["spearman"]) < 0.2, (key, held["ratings"][key])
        assert held["ratings"][key]["mae"] > 0.9 * held["ratings"][key]["baseline_mae"]
    assert held["domain_accuracy"] < 0.13  # chance: 1/15 ≈ 0.067
    assert abs(held["domain_accuracy"] - held["domain_majority_baseline"]) < 0.06


def test_split_depends_on_ids_and_seed_not_row_order():
    ids = [f"d{i}" for i in range(500)]
    hold, val, train = split(ids, seed=3, holdout=0.2, val_fraction=0.1)
    assert (len(hold), len(val), len(train)) == (100, 40, 360)
    perm = np.random.default_rng(0).permutation(500)
    shuffled = [ids[i] for i in perm]
    h2, v2, _ = split(shuffled, seed=3, holdout=0.2, val_fraction=0.1)
    assert {shuffled[i] for i in h2} == {ids[i] for i in hold}
    assert {shuffled[i] for i in v2} == {ids[i] for i in val}
    h3, _, _ = split(ids, seed=4, holdout=0.2, val_fraction=0.1)
    assert set(h3) != set(hold)
    assert [len(x) for x in split(ids[:10], 0, 0.2, 0.1)] == [2, 0, 8]  # under 20 rows: no validation split
    assert len(split(ids[:3], 0, 0.0, 0.1)[0]) == 0


def test_missing_ratings_are_masked_skipped_and_counted(planted, tmp_path):
    n = 300
    ratings = planted["ratings"][:n].astype(float)
    rows = pa.Table.from_arrays(
        [pa.array(planted["ids"][:n])]
        + [pa.array(ratings[:, j], pa.float64()) for j in range(len(RATING_COLUMNS))]
        + [pa.array([DOMAIN_NAMES[k] for k in planted["domains"][:n]], pa.string())],
        names=["id", *RATING_COLUMNS, "quality_domain"],
    ).to_pylist()
    for r in rows[:10]:  # nothing at all: skipped
        r.update(dict.fromkeys([*RATING_COLUMNS, "quality_domain"]))
    for r in rows[10:30]:  # scores null, domain kept (a partial llm answer)
        r.update(dict.fromkeys(RATING_COLUMNS))
    for r in rows[30:40]:  # domain null, scores kept
        r["quality_domain"] = None
    rows[40]["quality_domain"] = "H"  # a letter is a domain too
    table = pa.Table.from_pylist(rows)
    report = train_student(
        table, planted["emb"][:n], planted["texts"][:n], tmp_path / "m", epochs=5, features=planted["features"][:n]
    )
    assert report["n_rows"] == n and report["skipped_no_ratings"] == 10 and report["n_used"] == n - 10
    assert report["rows_missing_some_rating"] == 20 and report["rows_missing_domain"] == 10
    assert report["n_holdout"] == round(0.2 * (n - 10))
    held = report["holdout"]
    assert held["ratings"]["accuracy"]["n"] < report["n_holdout"]  # rows without scores are not scored
    rows[50]["quality_accuracy"] = 6
    with pytest.raises(CurationError, match="outside 1..5"):
        train_student(pa.Table.from_pylist(rows), planted["emb"][:n], None, tmp_path / "x", use_text_features=False)
    rows[50]["quality_accuracy"] = 3
    rows[51]["quality_domain"] = "Cooking"
    with pytest.raises(CurationError, match="unknown domain"):
        train_student(pa.Table.from_pylist(rows), planted["emb"][:n], None, tmp_path / "x", use_text_features=False)


# ---------------------------------------------------------------------------------------------------------------
# files, determinism and the rater


def assert_same_tensors(a: Path, b: Path) -> None:
    from safetensors.numpy import load_file

    ta, tb = load_file(str(a / WEIGHTS_FILE)), load_file(str(b / WEIGHTS_FILE))
    assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_save_load_gives_identical_predictions(planted, trained, tmp_path):
    emb, feats = planted["emb"][:300], planted["features"][:300]
    a = StudentModel.load(trained["dir"])
    b = StudentModel.load(trained["dir"])
    pa_, pb = a.predict(emb, features=feats), b.predict(emb, features=feats)
    assert np.array_equal(pa_[0], pb[0]) and np.array_equal(pa_[1], pb[1])
    a.save(tmp_path / "copy")
    c = StudentModel.load(tmp_path / "copy")
    pc_ = c.predict(emb, features=feats)
    assert np.array_equal(pa_[0], pc_[0]) and np.array_equal(pa_[1], pc_[1])
    assert_same_tensors(tmp_path / "copy", trained["dir"])
    assert sorted(p.name for p in trained["dir"].iterdir()) == sorted([WEIGHTS_FILE, META_FILE, REPORT_FILE])
    meta = json.loads((trained["dir"] / META_FILE).read_text())
    assert meta["embedding_dim"] == DIM and meta["embed_model"] == "synthetic"
    assert meta["criteria"] == list(CRITERIA) and meta["domains"] == list(DOMAINS.values())
    assert len(meta["feature_mean"]) == len(meta["feature_names"]) == feats.shape[1]
    # texts give the same features as the precomputed ones
    by_text = a.predict(emb[:50], planted["texts"][:50])
    assert np.array_equal(by_text[0], pa_[0][:50])


def test_training_is_deterministic(planted, tmp_path):
    kw = dict(seed=5, epochs=8, features=planted["features"][:400])
    r1 = train_student(planted["table"].slice(0, 400), planted["emb"][:400], None, tmp_path / "a", **kw)
    r2 = train_student(planted["table"].slice(0, 400), planted["emb"][:400], None, tmp_path / "b", **kw)
    assert_same_tensors(tmp_path / "a", tmp_path / "b")
    assert r1["holdout"] == r2["holdout"]


def test_rater_schema_ranges_and_determinism(planted, trained):
    rater = StudentRater({"model_dir": str(trained["dir"]), "batch_size": 64})
    emb, texts = planted["emb"][:200], planted["texts"][:200]
    t1 = rater.rate(texts, emb)
    assert t1.schema == QUALITY_SCHEMA and t1.num_rows == 200
    for name in RATING_COLUMNS:
        col = t1.column(name)
        assert col.null_count == 0
        v = col.to_numpy()
        assert v.min() >= 1 and v.max() <= 5
    score = t1.column("quality_score").to_numpy()
    assert score.dtype == np.float32 and score.min() >= 1.0 and score.max() <= 5.0
    assert len(np.unique(score)) > 100  # continuous
    assert np.array_equal(t1.column("quality_overall").to_numpy(), np.floor(score + 0.5).astype(np.int8))
    assert set(t1.column("quality_domain").to_pylist()) <= set(DOMAIN_NAMES)
    assert rater.rate(texts, emb).equals(t1)
    # pickles without its model (workers load it in setup), rates the same afterwards
    clone = pickle.loads(pickle.dumps(rater))
    assert clone.model is None
    assert clone.rate(texts, emb).equals(t1)
    # the batch size does not change the answers
    other = StudentRater(StudentSection(model_dir=str(trained["dir"]), batch_size=7)).rate(texts, emb)
    assert np.allclose(other.column("quality_score").to_numpy(), score, atol=1e-5)
    assert other.column("quality_domain").equals(t1.column("quality_domain"))
    assert rater.rate([], np.zeros((0, DIM), np.float32)).schema == QUALITY_SCHEMA


def test_rater_errors(planted, trained, tmp_path):
    rater = StudentRater({"model_dir": str(trained["dir"])})
    with pytest.raises(CurationError, match="embeddings"):
        rater.rate(["a text"], None)
    with pytest.raises(CurationError, match="128-dimensional"):
        rater.rate(["a text"], np.ones((1, 64), np.float32))
    with pytest.raises(ConfigError, match="not a student model directory"):
        StudentRater({"model_dir": str(tmp_path)}).setup()
    with pytest.raises(ConfigError, match="trained on embeddings of 'synthetic'"):
        StudentRater({"model_dir": str(trained["dir"])}, embed_model="sentence-transformers/other").setup()
    StudentRater({"model_dir": str(trained["dir"])}, embed_model="synthetic").setup()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / WEIGHTS_FILE).write_bytes((trained["dir"] / WEIGHTS_FILE).read_bytes())
    meta = json.loads((trained["dir"] / META_FILE).read_text())
    (bad / META_FILE).write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ConfigError, match="version"):
        StudentModel.load(bad)
    (bad / META_FILE).write_text(json.dumps({**meta, "architecture": {**meta["architecture"], "hidden": 8}}))
    with pytest.raises(ConfigError, match="do not match"):
        StudentModel.load(bad)


def test_config_section():
    cfg = load_config(None, ["score.backend=student", "score.student.model_dir=models/s"])
    assert cfg.score.student == StudentSection(model_dir="models/s")
    assert cfg.score.student.batch_size == 1024 and cfg.score.student.device == "cpu"
    with pytest.raises(ConfigError, match="needs a score.student section"):
        load_config(None, ["score.backend=student"])
    with pytest.raises(ConfigError, match="score.student.batch_size"):
        load_config(None, ["score.student.model_dir=m", "score.student.batch_size=0"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["score.student.model_dir=m", "score.student.layers=3"])


# ---------------------------------------------------------------------------------------------------------------
# the train-student command on a hand-built run directory


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _main() -> None:
        """test app"""

    app.command("train-student")(train_student_command)
    return app


def build_run(root: Path, planted, n: int = 600) -> Path:
    """A run directory as ``winnow run`` leaves it: embeddings/<stem>.parquet (id, embedding, winnow.model
    metadata) and curated/<stem>.parquet (id, text, ...) for two shards, and config.resolved.yaml."""
    run = root / "run"
    (run / "embeddings").mkdir(parents=True)
    (run / "curated").mkdir()
    (run / "config.resolved.yaml").write_text("io:\n  id_field: id\n  text_field: text\n")
    half = n // 2
    for stem, sl in (("a", slice(0, half)), ("b", slice(half, n))):
        ids = planted["ids"][sl]
        emb = planted["emb"][sl]
        vec = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), DIM)
        t = pa.table({"id": pa.array(ids), "embedding": vec}).replace_schema_metadata({"winnow.model": "synthetic"})
        pq.write_table(t, run / "embeddings" / f"{stem}.parquet")
        cur = pa.table({"id": ids, "text": planted["texts"][sl], "keep": [True] * len(ids)})
        pq.write_table(cur, run / "curated" / f"{stem}.parquet")
    return run


def test_cli_end_to_end_on_a_run_directory(planted, tmp_path):
    run = build_run(tmp_path, planted)
    # ratings as `winnow score` writes them: quality/<stem>.parquet with QUALITY_SCHEMA columns, some null
    table = planted["table"].slice(0, 650)  # 50 rated ids are not in the run
    rows = table.to_pylist()
    for r in rows[:7]:
        r.update(dict.fromkeys([*RATING_COLUMNS, "quality_domain"]))
    full = pa.Table.from_pylist(rows)
    full = full.append_column("quality_score", pa.array([r["quality_overall"] for r in rows], pa.float32()))
    (run / "quality").mkdir()
    pq.write_table(full.slice(0, 400), run / "quality" / "a.parquet")
    with (tmp_path / "more.jsonl").open("w") as f:  # the rest as JSONL, one id repeated
        for r in rows[400:] + rows[399:400]:
            f.write(json.dumps(r) + "\n")
    out = tmp_path / "model"
    result = CliRunner().invoke(
        cli_app(),
        ["train-student", "--ratings", str(run / "quality" / "*.parquet"), "--ratings", str(tmp_path / "more.jsonl"),
         "--run", str(run), "--out", str(out), "--epochs", "40", "--seed", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "held-out" in result.output and "domain accuracy" in result.output
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["ratings_files"] == 2 and report["ratings_rows_read"] == 651 and report["duplicate_ids"] == 1
    assert report["skipped_not_in_run"] == 50 and report["skipped_no_ratings"] == 7
    assert report["n_used"] == 593 and report["embed_model"] == "synthetic"
    assert report["settings"]["seed"] == 1 and report["settings"]["epochs"] == 40
    assert report["holdout"]["criteria_spearman"] > 0.5  # 470 training rows of a 128-d planted function
    rated = StudentRater({"model_dir": str(out)}, embed_model="synthetic").rate(
        planted["texts"][:5], planted["emb"][:5]
    )
    assert rated.num_rows == 5

    result = CliRunner().invoke(
        cli_app(), ["train-student", "--ratings", str(run / "quality" / "*.parquet"), "--run", str(run),
                    "--out", str(tmp_path / "m2"), "--epochs", "2", "--json", "--no-text-features"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["settings"]["text_features"] is False
    assert json.loads((tmp_path / "m2" / META_FILE).read_text())["feature_names"] == []


def test_cli_errors(planted, tmp_path):
    run = build_run(tmp_path, planted, n=100)
    ratings = tmp_path / "r.parquet"
    pq.write_table(planted["table"].slice(0, 100), ratings)

    def invoke(*args: str):
        return CliRunner().invoke(cli_app(), ["train-student", *args])

    assert (
        invoke("--ratings", str(ratings), "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")).exit_code == 2
    )
    assert invoke("--ratings", str(tmp_path / "none*.parquet"), "--run", str(run), "--out", "o").exit_code == 2
    bad = planted["table"].slice(0, 100).drop_columns(["quality_overall"])
    pq.write_table(bad, tmp_path / "bad.parquet")
    r = invoke("--ratings", str(tmp_path / "bad.parquet"), "--run", str(run), "--out", str(tmp_path / "o"))
    assert r.exit_code == 1 and "quality_overall" in r.output
    other = pa.table({"id": ["zz"] * 3, **{c: [3, 3, 3] for c in RATING_COLUMNS}, "quality_domain": ["Law"] * 3})
    pq.write_table(other, tmp_path / "other.parquet")
    r = invoke("--ratings", str(tmp_path / "other.parquet"), "--run", str(run), "--out", str(tmp_path / "o"))
    assert r.exit_code == 1 and "none of the 1 rated ids" in r.output
    for sub in ("curated",):
        for p in (run / sub).iterdir():
            p.unlink()
    r = invoke("--ratings", str(ratings), "--run", str(run), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "winnow write" in r.output


# ---------------------------------------------------------------------------------------------------------------
# winnow run with score.backend=student


CORPUS = [
    "The patient was given a new treatment for chronic heart disease and recovered within two weeks.",
    "Interest rates rose again this quarter, and the central bank signalled further tightening of credit.",
    "The court ruled that the contract was void because one party had not been informed of the terms.",
    "Students in the new programme learn algebra through projects that use real measurements.",
    "The compiler now inlines small functions, which makes the generated machine code faster.",
    "The film premiered at the festival to a standing ovation from a packed audience.",
    "Prove that the sum of two even integers is even, using the definition of divisibility.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "The ministry published new guidelines for public procurement and local government budgets.",
    "The museum's collection of folk songs and dances shows the region's cultural history.",
    "The railway line will be electrified, cutting travel times between the two cities by an hour.",
    "Free shipping on all orders! Add to cart now, buy two get one free, limited offer, click here.",
    "The operator is upgrading its mobile network so that more phones can use the faster band.",
    "Farmers planted the wheat early this year because the soil was warm and the rains came on time.",
    "lol idk wat ur talking about tbh, im just here 4 the memes haha",
    "click here click here click here click here click here click here click here",
    "Buy now. Buy now. Buy now. Buy now. Buy now. Buy now. Buy now. Buy now.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
    "The quarterly report shows revenue growth of twelve percent, driven by strong exports.",
    "Regular exercise lowers blood pressure and improves sleep in most adults.",
    "THE BEST DEALS!!! $$$ CHEAP CHEAP CHEAP !!! WWW.DEALS.EXAMPLE !!!",
    "Tides are caused mainly by the gravitational pull of the moon on the oceans.",
    "The new library will open in spring, with a larger reading room and a children's section.",
    "asdf qwer zxcv asdf qwer zxcv 1234 5678 asdf qwer",
]


def test_winnow_run_with_the_student_backend(tmp_path):
    from winnow.core.layout import arrow_to_vectors
    from winnow.core.logging import setup_logging
    from winnow.pipeline.cli.app import app as winnow_app

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for stem, part in (("a", CORPUS[:12]), ("b", CORPUS[12:])):
        with (corpus / f"{stem}.jsonl").open("w") as f:
            for i, text in enumerate(part):
                f.write(json.dumps({"id": f"{stem}{i}", "text": text}) + "\n")
    out = tmp_path / "run"
    sets = ["embed.batch_size=8", "embed.device=cpu", "executor.torch_threads=1", "cluster.k=2",
            "cluster.n_buckets=2", "cluster.device=cpu"]  # fmt: skip
    set_args = [a for s in sets for a in ("--set", s)]
    base = ["run", "--input", str(corpus), "--output", str(out), "--no-progress", "-q", *set_args]
    try:
        # 1. a first run rates with the heuristic backend; its ratings stand in for an llm's
        result = CliRunner().invoke(winnow_app, base)
        assert result.exit_code == 0, result.output
        # 2. train a student on them
        model = tmp_path / "student"
        result = CliRunner().invoke(
            cli_app(), ["train-student", "--ratings", str(out / "quality" / "*.parquet"), "--run", str(out),
                        "--out", str(model), "--epochs", "20"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads((model / REPORT_FILE).read_text())
        assert report["n_used"] == len(CORPUS) and report["embed_model"]
        # 3. rerun with the student: score (and prune, write) redo, the rest is reused
        student = ["--set", "score.backend=student", "--set", f"score.student.model_dir={model}"]
        result = CliRunner().invoke(winnow_app, [*base, *student])
        assert result.exit_code == 0, result.output
    finally:
        setup_logging(0)
    rater = StudentRater({"model_dir": str(model)}, embed_model=report["embed_model"])
    for stem in ("a", "b"):
        quality = pq.read_table(out / "quality" / f"{stem}.parquet")
        curated = pq.read_table(out / "curated" / f"{stem}.parquet")
        emb = arrow_to_vectors(pq.read_table(out / "embeddings" / f"{stem}.parquet").column("embedding"))
        expected = rater.rate(curated.column("text").to_pylist(), emb)
        assert quality.select(QUALITY_SCHEMA.names).equals(expected)
        assert curated.select(QUALITY_SCHEMA.names).equals(expected)
        assert quality.column("id").to_pylist() == curated.column("id").to_pylist()
