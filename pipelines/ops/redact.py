"""Redacting secrets from text before it leaves the process (Sentry, logs, stored errors). No I/O."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"ap_[A-Za-z0-9_-]{20,}|PRIVATE\+KEY\+\S+|whsec_[A-Za-z0-9+/=]{16,}")
#: ``scheme://user:password@host``: the whole userinfo goes.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
#: Query parameters whose names say they carry a secret.
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[\w.-]*(?:key|token|secret|password|passwd|pwd|signature|sig|auth|credential)[\w.-]*))"
    r"=(?P<value>[^&;#\s'\"]*)", re.I)

REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with API keys, signing keys, URL credentials and secret query parameters replaced."""
    text = _TOKEN.sub(REDACTED, text)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['name']}={REDACTED}", text)
