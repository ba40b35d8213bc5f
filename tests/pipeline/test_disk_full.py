"""A full disk (ENOSPC): a clear error naming the run directory, no partial file under a final name, and the rerun
after space is freed completes with the bytes of a clean run. The run directory is a small tmpfs; the test is
skipped where mounting is not permitted."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.pipeline.test_resume import final_files, make_corpus, tiny_overrides


def _mount(point: Path, size: str) -> bool:
    point.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True)
    return proc.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    point = Path("/tmp") / f"winnow-enospc-{uuid.uuid4().hex[:8]}"  # not under tmp_path: pytest cleans that up
    if not _mount(point, "200k"):
        point.rmdir()
        pytest.skip("mounting a tmpfs is not permitted here")
    yield point
    subprocess.run(["umount", str(point)], check=False)
    point.rmdir()


def winnow(corpus: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "winnow", "run", "--input", str(corpus), "--output", str(out), "--no-progress"]
    cmd += [arg for item in tiny_overrides() for arg in ("--set", item)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_a_full_disk_fails_clearly_and_the_rerun_after_freeing_space_completes(tmp_path, small_disk):
    corpus = make_corpus(tmp_path / "corpus", n=150)
    clean = winnow(corpus, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    out = small_disk / "run"
    full = winnow(corpus, out)
    assert full.returncode == 1, full.stderr
    assert f"no space left on the device of {out}" in full.stderr and "Traceback" not in full.stderr
    # nothing partial under a final name: every parquet file there is whole, and no temporary file is left
    for path in out.rglob("*"):
        assert ".tmp-" not in path.name, path
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_metadata(path)  # a truncated file would fail here
    # free space, rerun: the bytes of the clean run
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = winnow(corpus, out)
    assert again.returncode == 0, again.stderr
    assert final_files(out) == final_files(tmp_path / "clean")
