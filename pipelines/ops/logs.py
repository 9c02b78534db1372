"""Structured logs: one JSON object a line on stderr, one INFO line per batch per stage and per pull run.

Every line has ``time``, ``level``, ``logger`` and ``message``; stage lines add
``event`` (``sealed``, ``anchored``, ``archived``, ``compacted``, ``pulled``) and
their figures (``batch``, ``agency``, ``records``, ``bytes``, ``seconds``...), so
one ``batch`` id follows a batch across the sealer, the sequencer and the
archiver. Lines carry ids and counts only: never record content, salts or keys.
The API's access lines (uvicorn's) go through the same handler.
``ANCHORPIPE_LOG_FORMAT=text`` gives plain lines for a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.config import Settings

LOGGER = logging.getLogger("anchorpipe")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class NoQueryStrings(logging.Filter):
    """Access lines name the path, never the query string: a client may put a key in it (``?api_key=``), and
    a refused one is written too. The query is replaced by ``?[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            path = str(args[2])
            if "?" in path:
                args[2] = path.split("?", 1)[0] + "?[redacted]"
                record.args = tuple(args)
        return True


def _no_color(record: logging.LogRecord) -> bool:
    """uvicorn puts an ANSI-coloured copy of each message in ``color_message``: no line carries it."""
    record.__dict__.pop("color_message", None)
    return True


def configure(cfg: Settings) -> None:
    """Send every logger's records to stderr in the configured format (JSON by default), at the
    configured level for anchorpipe's own lines. Safe to call again: it replaces its own handler."""
    handler = logging.StreamHandler(sys.stderr)
    if cfg.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                                           rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                                           datefmt="%Y-%m-%dT%H:%M:%S%z"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.set_name("anchorpipe")
    handler.addFilter(NoQueryStrings())
    handler.addFilter(_no_color)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "anchorpipe"]:
        root.removeHandler(old)
    root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    LOGGER.setLevel(cfg.log_level.upper())
    for name in UVICORN_LOGGERS:  # the API's access and error lines, in the same format as the rest
        server = logging.getLogger(name)
        server.handlers.clear()
        server.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)


def event(name: str, message: str, level: str = "info", **fields: Any) -> None:
    """One line (INFO unless ``level`` says otherwise): ``message`` for people, ``event`` and ``fields`` for
    machines."""
    LOGGER.log(logging.getLevelNamesMapping()[level.upper()], message, extra={"event": name, **fields})
