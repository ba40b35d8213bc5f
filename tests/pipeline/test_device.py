"""The one place that turns a ``device`` setting into a torch device, and its error naming the setting."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.core.device import torch_device
from winnow.core.errors import ConfigError


@pytest.mark.parametrize("available", [True, False])
def test_auto_follows_cuda_and_fixed_values_stay(monkeypatch, available):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert torch_device("auto", "x.device") == ("cuda" if available else "cpu")
    assert torch_device("cpu", "x.device") == "cpu"
    if available:
        assert torch_device("cuda", "x.device") == "cuda"


def test_cuda_without_a_gpu_names_the_setting(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^embed\.device=cuda but torch sees no CUDA device; use auto or cpu$"):
        torch_device("cuda", "embed.device")


def test_every_user_names_its_own_setting(monkeypatch):
    import torch

    from winnow.clustering.kmeans import SphericalKMeans
    from winnow.embedding.embed import Embedder
    from winnow.pipeline.config import EmbedSection

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="cluster.device=cuda"):
        SphericalKMeans(2, niter=1, backend="torch", device="cuda").fit(np.eye(4, dtype=np.float32))
    with pytest.raises(ConfigError, match="embed.device=cuda"):
        Embedder(EmbedSection(device="cuda")).setup()
