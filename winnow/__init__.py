"""winnow: data curation and pruning for LLM pretraining corpora (embed, cluster, score, prune, mix)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("winnow")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0+src"
