"""Which torch device a ``device`` setting means (shared by the embedder, k-means, the raters and the proxy LM)."""

from __future__ import annotations

from winnow.core.errors import ConfigError


def torch_device(device: str, key: str) -> str:
    """``auto`` is ``cuda`` where torch sees a CUDA device, else ``cpu``; other values stay as they are.

    Raises:
        ConfigError: ``cuda`` asked for where torch sees none; the message names the setting ``key``.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}=cuda but torch sees no CUDA device; use auto or cpu")
    return device
