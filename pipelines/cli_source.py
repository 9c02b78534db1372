"""``anchorpipe source ...``: the agency systems the workers pull from (reads ANCHORPIPE_SOURCES)."""

from __future__ import annotations

import json

import click

from pipelines.errors import AnchorpipeError


def _fail(exc: AnchorpipeError) -> None:
    from pipelines.cli import fail

    fail(str(exc))


def _runner(name: str):
    from pipelines.config import settings
    from pipelines.errors import ConfigError, InputError
    from pipelines.pull import SourceRunner
    from pipelines.sources.config import load_sources
    from pipelines.state import State

    cfg = settings()
    if not cfg.sources:
        raise ConfigError("ANCHORPIPE_SOURCES is not set: no sources file")
    sources = load_sources(cfg.sources)
    if name not in sources:
        raise InputError(f"no source {name!r}; known: {', '.join(sorted(sources)) or 'none'}")
    return SourceRunner(sources[name], State.connect(cfg.redis_url), max_pending=cfg.pull_max_pending,
                        lock_ttl=cfg.source_lock_ttl)


@click.group()
def source() -> None:
    """Agency systems pulled by the workers (ANCHORPIPE_SOURCES names the TOML file)."""


@source.command("list")
def source_list() -> None:
    """Each source with its kind, agency, interval, cursor, failures and quarantine size."""
    from pipelines.config import settings
    from pipelines.sources.config import load_sources
    from pipelines.state import State

    try:
        cfg = settings()
        sources = load_sources(cfg.sources) if cfg.sources else {}
        state = State.connect(cfg.redis_url)
    except AnchorpipeError as exc:
        _fail(exc)
    for name, s in sources.items():
        info = state.r.hgetall(f"ap:src:{name}")
        quarantined = state.r.hlen(f"ap:src:{name}:quarantine")
        click.echo(f"{name}: {s.kind} for {s.agency} every {s.interval:g} s; cursor {info.get('cursor') or '(start)'}; "
                   f"failures {info.get('failures', 0)}; quarantined {quarantined}"
                   + (f"; last error: {info['last_error']}" if info.get("last_error") else ""))


@source.command("test")
@click.argument("name")
def source_test(name: str) -> None:
    """Fetch one page from the stored cursor and show what would be ingested; change nothing."""
    try:
        page, verdicts = _runner(name).preview()
    except AnchorpipeError as exc:
        _fail(exc)
    for item, problem in verdicts:
        rid = item.record.get("id") if isinstance(item.record, dict) else None
        click.echo(f"{'QUARANTINE' if problem else 'ingest'}  {item.position}  id={rid!r}"
                   + (f"  ({problem})" if problem else ""))
    ok = sum(1 for _, p in verdicts if p is None)
    click.echo(f"{ok} would be ingested, {len(verdicts) - ok} quarantined; more after this page: {page.more}")


@source.command("run")
@click.argument("name")
@click.option("--once", is_flag=True, required=True, help="Run one pull now, in this process.")
def source_run(name: str, once: bool) -> None:
    """Pull NAME now (the same run beat schedules), and report."""
    try:
        result = _runner(name).run()
    except AnchorpipeError as exc:
        _fail(exc)
    click.echo(f"{name}: {result.status}; {result.accepted} accepted, {result.duplicates} already known, "
               f"{result.quarantined} quarantined, {result.pages} pages" + (f"; {result.error}" if result.error else ""))
    if result.status == "failed":
        raise SystemExit(1)


@source.command("quarantine")
@click.argument("name")
@click.option("--replay", is_flag=True, help="Try every quarantined item again (after fixing its cause).")
def source_quarantine(name: str, replay: bool) -> None:
    """List the items of NAME set aside as invalid, with their position and reason."""
    try:
        runner = _runner(name)
        if replay:
            accepted, left = runner.replay()
            click.echo(f"replayed: {accepted} accepted, {left} still quarantined")
            return
        for doc in runner.quarantine():
            click.echo(json.dumps(doc, ensure_ascii=False))
    except AnchorpipeError as exc:
        _fail(exc)
