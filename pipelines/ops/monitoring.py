"""Sentry set-up with secrets and record content scrubbed before anything leaves the process."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pipelines.ops.redact import redact

if TYPE_CHECKING:
    from pipelines.config import Settings

_SECRET_NAMES = re.compile(r"authorization|cookie|token|secret|password|key|dsn|content", re.I)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: "[redacted]" if _SECRET_NAMES.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Drop request bodies and cookies; redact secret-looking names and API keys everywhere."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        request.pop("query_string", None)
    return _scrub(event)


def init_sentry(cfg: Settings) -> bool:
    """Start Sentry if SENTRY_DSN is set; return whether it was started."""
    if cfg.sentry_dsn is None:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration

    sentry_sdk.init(
        dsn=cfg.sentry_dsn.get_secret_value(),
        integrations=[CeleryIntegration()],
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=before_send,
        before_send_transaction=before_send,
    )
    return True


def report_exception(exc: BaseException) -> None:
    """Send ``exc`` to Sentry if it is installed and started (scrubbed by :func:`before_send`)."""
    try:
        import sentry_sdk
    except ImportError:
        return
    sentry_sdk.capture_exception(exc)


def report_message(message: str, level: str = "error") -> None:
    """Send ``message`` to Sentry if it is installed and started (scrubbed by :func:`before_send`)."""
    try:
        import sentry_sdk
    except ImportError:
        return
    sentry_sdk.capture_message(message, level=level)  # type: ignore[arg-type]
