"""``anchorpipe source ...``: the agency systems the workers pull from (reads ANCHORPIPE_SOURCES)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from pipelines.cli.common import echo

if TYPE_CHECKING:
    from pipelines.stages.pull import SourceRunner


def _runner(name: str) -> SourceRunner:
    from pipelines.runtime import runtime

    return runtime().source_runner(name)


@click.group()
def source() -> None:
    """Agency systems pulled by the workers (ANCHORPIPE_SOURCES names the TOML file)."""


@source.command("list")
def source_list() -> None:
    """Each source with its kind, agency, interval, cursor, failures and quarantine size."""
    from pipelines.runtime import runtime

    rt = runtime()
    sources = rt.sources()
    status = {name: (rt.state.source_status(name), rt.state.quarantine_size(name)) for name in sources}
    for name, s in sources.items():
        info, quarantined = status[name]
        echo(f"{name}: {s.kind} for {s.agency} every {s.interval:g} s; cursor {info.get('cursor') or '(start)'}; "
                   f"failures {info.get('failures', 0)}; quarantined {quarantined}"
                   + (f"; last error: {info['last_error']}" if info.get("last_error") else ""))


@source.command("test")
@click.argument("name")
def source_test(name: str) -> None:
    """Fetch one page from the stored cursor and show what would be ingested; change nothing."""
    page, verdicts = _runner(name).preview()
    for item, problem in verdicts:
        rid = item.record.get("id") if isinstance(item.record, dict) else None
        echo(f"{'QUARANTINE' if problem else 'ingest'}  {item.position}  id={rid!r}"
                   + (f"  ({problem})" if problem else ""))
    ok = sum(1 for _, p in verdicts if p is None)
    echo(f"{ok} would be ingested, {len(verdicts) - ok} quarantined; more after this page: {page.more}")


@source.command("run")
@click.argument("name")
@click.option("--once", is_flag=True, required=True, help="Run one pull now, in this process.")
def source_run(name: str, once: bool) -> None:
    """Pull NAME now (the same run beat schedules), and report."""
    result = _runner(name).run()
    echo(f"{name}: {result.status}; {result.accepted} accepted, {result.duplicates} already known, "
               f"{result.quarantined} quarantined, {result.pages} pages" + (f"; {result.error}" if result.error else ""))
    if result.status == "failed":
        raise SystemExit(1)


@source.command("quarantine")
@click.argument("name")
@click.option("--replay", is_flag=True, help="Try every quarantined item again (after fixing its cause).")
@click.option("--drop", "drop", multiple=True, metavar="POSITION",
              help="Remove this item from the quarantine for good, unread (repeatable).")
@click.option("--drop-all", is_flag=True, help="Remove every quarantined item of NAME for good, unread.")
def source_quarantine(name: str, replay: bool, drop: tuple[str, ...], drop_all: bool) -> None:
    """List the items of NAME set aside as invalid: one JSON line each, with its position (file and line or
    byte offset, object key, row key or feed cursor), the reason, the item and when (UTC)."""
    from datetime import UTC, datetime

    runner = _runner(name)
    if replay:
        accepted, left = runner.replay()
        echo(f"replayed: {accepted} accepted, {left} still quarantined")
        return
    if drop or drop_all:
        gone = runner.drop(None if drop_all else list(drop))
        echo(f"dropped {gone} quarantined item{'s' if gone != 1 else ''} of {name}")
        return
    for doc in runner.quarantine():
        at = doc.get("at")
        if isinstance(at, int):
            doc["at"] = datetime.fromtimestamp(at / 1000, UTC).isoformat(timespec="seconds")
        echo(json.dumps(doc, ensure_ascii=False))
