"""Fixtures shared by the scorer tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and OpenMP barriers stall on a busy 2-core CI box: one torch thread
    for the module, restored afterwards. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
