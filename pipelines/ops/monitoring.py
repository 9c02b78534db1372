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


#: What sentry-sdk 3 may collect on its own, each category off: no user identity, cookies, headers, query
#: strings or HTTP bodies (an API key travels in a header, record content in a body), no SQL parameters
#: or queued task arguments, no local variables of a failing frame (a salt, a signing key). Source lines
#: around a frame are code, not data, and stay. Sentry 3 collects most of these unless told not to.
DATA_COLLECTION: dict[str, Any] = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_headers": {"request": {"mode": "off"}},
    "http_bodies": [],
    "url_query_params": {"mode": "off"},
    "graphql": {"document": False, "variables": False},
    "gen_ai": {"inputs": False, "outputs": False},
    "mcp": {"inputs": False, "outputs": False},
    "database_query_data": False,
    "queues": False,
    "stack_frame_variables": False,
}


def sentry_options(dsn: str, sdk_version: str) -> dict[str, Any]:
    """The keyword arguments of ``sentry_sdk.init`` for ``dsn`` under the SDK release ``sdk_version``.

    Sentry 2 gathers little unless ``send_default_pii`` is set; Sentry 3 removed that option (and
    ``include_local_variables``) and gathers much by default, so it is told, category by category, to
    gather nothing about requests, users or frames. Either way every event passes :func:`before_send`.
    """
    major = int(sdk_version.split(".", 1)[0])
    options: dict[str, Any] = {"dsn": dsn, "max_request_body_size": "never", "before_send": before_send}
    if major >= 3:  # no tracing is started (no traces_sample_rate), so no span leaves either
        options["data_collection"] = DATA_COLLECTION
    else:
        options.update(send_default_pii=False, include_local_variables=False, before_send_transaction=before_send)
    return options


def start_sentry(dsn: str, integrations: list[Any] | None = None) -> None:
    """Start the installed sentry-sdk (2 or 3) on ``dsn`` with :func:`sentry_options`."""
    import sentry_sdk

    sentry_sdk.init(integrations=integrations or [], **sentry_options(dsn, sentry_sdk.VERSION))


def init_sentry(cfg: Settings) -> bool:
    """Start Sentry if SENTRY_DSN is set, with the Celery integration; return whether it was started."""
    if cfg.sentry_dsn is None:
        return False
    from sentry_sdk.integrations.celery import CeleryIntegration

    start_sentry(cfg.sentry_dsn.get_secret_value(), [CeleryIntegration()])
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
