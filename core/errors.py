"""The exception hierarchy of winnow.

``CurationError`` is the root. ``ConfigError`` is raised before any work starts; ``ShardError`` concerns one
input shard (the run records it and goes on with the other shards); ``RetryableError`` marks transient failures
(network, endpoints) that callers may retry with backoff; ``RunDirLocked`` means another run holds the run
directory. ``Interrupted`` (SIGINT/SIGTERM) is a ``BaseException``, like ``KeyboardInterrupt``.
"""

from __future__ import annotations

import signal

from winnow.core.redact import redact_url


class CurationError(Exception):
    """Base class of every error winnow raises on purpose. Its message never shows the credentials of a URL
    (``https://user:password@host`` is printed as ``https://<redacted>@host``)."""

    def __str__(self) -> str:
        return redact_url(super().__str__())


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


class RunDirLocked(CurationError):
    """Another ``winnow run`` holds the run directory's lock (one writer per run directory)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped a run (a ``BaseException``: no stage records it as a unit failure).

    Args:
        signum: the signal.
    """

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(signum)

    def __str__(self) -> str:
        return f"stopped by {self.name}"

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process a signal ended (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum
