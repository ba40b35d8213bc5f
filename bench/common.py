"""Helpers shared by the bench scripts (which run unchanged on a bare GPU machine: standard library only here)."""

from __future__ import annotations

import json
from typing import Any


def sync(device: str) -> None:
    """Wait for the device's queued work, so that a timer reads finished work (a no-op off CUDA)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def emit(res: dict[str, Any], out: str | None) -> None:
    """Print a result as indented JSON and append it, one line, to ``out`` if given."""
    print(json.dumps(res, indent=2), flush=True)
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(res) + "\n")
