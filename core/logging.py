"""Console logging for every command: one loguru sink on stderr, its level set by ``-v`` / ``-q``. Every record's
message has the credentials of URLs in it redacted (``https://<redacted>@host/...``), whichever sink it goes to."""

from __future__ import annotations

import sys
from typing import Any

from loguru import logger

from winnow.core.redact import redact_url

_LOG_LEVEL = {"level": "WARNING"}


def setup_logging(verbosity: int = 0) -> None:
    """Console logging: warnings by default, INFO with ``-v``, DEBUG with ``-vv``, errors only with ``-q``."""
    level = {-1: "ERROR", 0: "WARNING", 1: "INFO"}.get(verbosity, "DEBUG" if verbosity > 1 else "ERROR")
    _LOG_LEVEL["level"] = level
    apply_logging()


def apply_logging() -> None:
    """(Re)install the stderr sink at the chosen level (executor workers call this after they start)."""
    logger.remove()
    logger.configure(patcher=_redact_record)
    logger.add(sys.stderr, level=_LOG_LEVEL["level"], format="<level>{level: <8}</level> | {message}")


def _redact_record(record: Any) -> None:
    record["message"] = redact_url(record["message"])


def log_level() -> str:
    return _LOG_LEVEL["level"]
