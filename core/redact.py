"""Credentials in URLs (``https://user:password@host/...``, ``s3://key:secret@bucket/...``) never reach the
console, the logs, an error message or the resolved config: :func:`redact_url` replaces the userinfo part."""

from __future__ import annotations

import re
from typing import Any

#: ``scheme://userinfo@``: the userinfo is everything between ``://`` and the first ``@`` before the path
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s?#'\"]+)@")

REDACTED = "<redacted>"


def redact_url(text: str) -> str:
    """``text`` with the userinfo of every URL in it replaced by ``<redacted>`` (``https://<redacted>@host/x``)."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def redact_urls(obj: Any) -> Any:
    """:func:`redact_url` applied to every string in nested dicts and lists (keys included)."""
    if isinstance(obj, str):
        return redact_url(obj)
    if isinstance(obj, dict):
        return {redact_urls(k): redact_urls(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_urls(v) for v in obj]
    return obj
