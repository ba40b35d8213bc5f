"""Unit tests of ``winnow.scorers.textdedup``: the exact-dedup key, the MinHash section's numbers and checks, and the
signature / bucket / cluster round trip on a handful of documents."""

from __future__ import annotations

import random

import numpy as np
import pytest

from winnow.core.errors import ConfigError
from winnow.scorers.textdedup import (
    SIG_SUFFIX,
    MinhashSection,
    bucket_dir,
    minhash_clusters,
    remove_signatures,
    text_hashes,
    write_signatures,
)

WORDS = (
    "harbour glacier senate recipe violin theorem protein garden library engine mountain river lantern orchard "
    "meadow quarry tunnel ferry canyon bakery museum vineyard compass anchor summit valley prairie island"
).split()


def essay(seed: int, n: int = 120) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 9_999)) for _ in range(n))


# -- exact key -----------------------------------------------------------------------------------------------------


def test_text_hashes_ignore_case_punctuation_and_whitespace():
    base = "The quick brown fox jumps over the lazy dog near the river bank"
    variants = [
        base,
        base.upper(),
        "The quick, brown fox -- jumps over the lazy dog; near the river bank!",
        "  The   quick brown\tfox jumps\nover the lazy dog near the river bank.  ",
        "the QUICK brown fox jumps over the lazy dog near the river bank?!",
    ]
    h = text_hashes(variants)
    assert h.dtype == np.uint64 and h.shape == (len(variants),)
    assert len(set(h.tolist())) == 1


def test_text_hashes_differ_for_other_words():
    base = "The quick brown fox jumps over the lazy dog near the river bank"
    others = [
        base,
        base.replace("lazy", "sleepy"),
        base + " today",
        base.replace("quick brown", "brown quick"),
        "The quick brown fox jumps over the lazy dog near the river",
    ]
    h = text_hashes(others)
    assert len(set(h.tolist())) == len(others)
    assert len(text_hashes([])) == 0


# -- the section's numbers --------------------------------------------------------------------------------------------


def test_threshold_and_candidate_probability_of_14_by_8():
    s = MinhashSection()
    assert (s.n_grams, s.bands, s.rows) == (5, 14, 8)
    assert s.threshold == pytest.approx((1 / 14) ** (1 / 8))
    assert s.threshold == pytest.approx(0.71901, abs=1e-5)
    assert s.candidate_probability(0.8) == pytest.approx(1 - (1 - 0.8**8) ** 14)
    assert s.candidate_probability(0.8) == pytest.approx(0.92355, abs=1e-5)
    assert s.candidate_probability(0.5) == pytest.approx(1 - (1 - 0.5**8) ** 14)
    assert s.candidate_probability(0.5) == pytest.approx(0.05332, abs=1e-5)
    assert s.candidate_probability(1.0) == 1.0
    assert s.candidate_probability(0.0) == 0.0


def test_threshold_is_where_the_probability_is_steepest():
    s = MinhashSection(bands=20, rows=5)
    assert s.threshold == pytest.approx(20 ** (-1 / 5))
    grid = np.linspace(0.01, 0.99, 9_801)
    slope = np.gradient([s.candidate_probability(x) for x in grid], grid)
    # the exact maximum of the derivative is ((r-1)/(br-1))^(1/r); (1/b)^(1/r) approximates it
    steepest = grid[int(np.argmax(slope))]
    assert steepest == pytest.approx(((5 - 1) / (20 * 5 - 1)) ** (1 / 5), abs=2e-3)
    assert abs(steepest - s.threshold) < 0.05


def test_datatrove_config_carries_the_parameters():
    cfg = MinhashSection(n_grams=3, bands=9, rows=4, seed=7).datatrove()
    assert (cfg.n_grams, cfg.num_buckets, cfg.hashes_per_bucket, cfg.seed) == (3, 9, 4, 7)
    assert cfg.hash_config.precision == 64


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"n_grams": 0}, "prefilter.minhash.n_grams"),
        ({"bands": 0}, "prefilter.minhash.bands"),
        ({"rows": -1}, "prefilter.minhash.rows"),
        ({"bands": 1000}, "prefilter.minhash.bands"),
        ({"seed": -1}, "prefilter.minhash.seed"),
        ({"seed": 2**32}, "prefilter.minhash.seed"),
    ],
)
def test_validation_names_the_key(kwargs, key):
    with pytest.raises((ConfigError, ValueError)) as err:
        MinhashSection(**kwargs)
    assert key in str(err.value)


def test_unknown_key_is_refused():
    with pytest.raises(ValueError, match="band"):
        MinhashSection(band=3)


# -- signatures, buckets, clusters ------------------------------------------------------------------------------------


def _near(text: str, every: int) -> str:
    """``text`` with every ``every``-th word replaced."""
    words = text.split()
    return " ".join("zzzreplaced" if i % every == every // 2 else w for i, w in enumerate(words))


def test_signature_files_and_clusters(tmp_path):
    section = MinhashSection(bands=6, rows=3)
    a0, a1, b0 = essay(1), essay(2), essay(3)
    shards = {
        "s0": [a0, a1, essay(4)],
        "s1": [essay(5), a0.upper(), _near(a1, 40)],  # an exact (normalised) copy of a0, a near copy of a1
        "s2": [b0, essay(6)],
        "s3": [b0],
    }
    folder = tmp_path / "minhash"
    for stem, texts in shards.items():
        write_signatures(texts, str(folder), stem, section)
    for b in range(section.bands):
        names = sorted(p.name for p in (folder / bucket_dir(b)).iterdir())
        assert names == sorted(f"{s}{SIG_SUFFIX}" for s in shards)
    assert not [p for p in folder.iterdir() if not p.name.startswith("bucket_")]  # no temporary folder left

    clusters = minhash_clusters(str(folder), section, list(shards))
    assert set(clusters) == set(shards)
    member = {(stem, int(doc)): int(c) for stem, arr in clusters.items() for doc, c in arr.tolist()}
    assert member[("s0", 0)] == member[("s1", 1)]
    assert member[("s0", 1)] == member[("s1", 2)]
    assert member[("s2", 0)] == member[("s3", 0)]
    assert len({member[("s0", 0)], member[("s0", 1)], member[("s2", 0)]}) == 3
    assert set(member) == {("s0", 0), ("s1", 1), ("s0", 1), ("s1", 2), ("s2", 0), ("s3", 0)}
    assert not [p for p in folder.iterdir() if not p.name.startswith("bucket_")]


def test_clusters_fail_on_missing_signatures(tmp_path):
    section = MinhashSection(bands=2, rows=2)
    write_signatures([essay(1)], str(tmp_path), "s0", section)
    with pytest.raises(RuntimeError, match="s1"):
        minhash_clusters(str(tmp_path), section, ["s0", "s1"])


def test_remove_signatures_of_gone_shards_and_extra_bands(tmp_path):
    write_signatures([essay(1)], str(tmp_path), "keep", MinhashSection(bands=4, rows=2))
    write_signatures([essay(2)], str(tmp_path), "gone", MinhashSection(bands=4, rows=2))
    removed = remove_signatures(str(tmp_path), {"keep"}, bands=3)
    assert "bucket_003" in removed
    assert sorted(r for r in removed if r != "bucket_003") == [f"bucket_{b:03d}/gone{SIG_SUFFIX}" for b in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [bucket_dir(b) for b in range(3)]
    for b in range(3):
        assert [p.name for p in (tmp_path / bucket_dir(b)).iterdir()] == [f"keep{SIG_SUFFIX}"]
    assert remove_signatures(str(tmp_path / "absent"), set(), 1) == []
