"""Progress a user can see: on a terminal, a long stage counts documents as they are processed, with a total."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.pipeline.test_resume import make_corpus, tiny_overrides


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_embed_shows_a_document_count_with_one_worker_on_a_tty(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=200)
    out = tmp_path / "out"
    run_read = [sys.executable, "-m", "winnow", "run", "--input", str(corpus), "--output", str(out), "-q"]
    # batches of 10 documents: the count must advance within a shard, not jump from 0 to the total
    sets = [arg for item in [*tiny_overrides(), "io.read_batch_size=10"] for arg in ("--set", item)]
    # parse once first (so embed knows each shard's total), then embed on a terminal
    subprocess.run([*run_read[:3], "embed", *run_read[4:], *sets, "--no-progress"], check=True, timeout=300)
    subprocess.run(["rm", "-rf", str(out / "embeddings"), str(out / "completions" / "embed")], check=True)
    primary, secondary = pty.openpty()
    # a terminal of 30 x 120 (a new pseudo-terminal has no size, and tqdm then draws nothing)
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "winnow", "embed", "--input", str(corpus), "--output", str(out), *sets],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=secondary, env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(primary)
    assert proc.returncode == 0, seen[-2000:].decode(errors="replace")
    text = seen.decode(errors="replace")
    counts = {int(a) for a, b in re.findall(r"embed s0: .*?(\d+)/(\d+)", text) if b == "200"}
    assert 200 in counts and len(counts) >= 3, text[-3000:]  # the count advances batch by batch up to the total
