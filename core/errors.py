"""The exception hierarchy of winnow.

``CurationError`` is the root. ``ConfigError`` is raised before any work starts; ``ShardError`` concerns one
input shard (the run records it and goes on with the other shards); ``RetryableError`` marks transient failures
(network, endpoints) that callers may retry with backoff.
"""

from __future__ import annotations


class CurationError(Exception):
    """Base class of every error winnow raises on purpose."""


class ConfigError(CurationError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


class ShardError(CurationError):
    """An input shard cannot be processed; carries the shard's path."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


class RetryableError(CurationError):
    """A transient failure worth retrying (an endpoint timed out, a remote read was interrupted)."""


class RejectsFoundError(CurationError):
    """Raised by ``--fail-on-reject`` when a run rejected input rows."""
