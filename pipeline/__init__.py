"""winnow's pipeline package: shard I/O, config, stages on datatrove executors, the run directory and the CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("winnow")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0+src"
