"""``anchorpipe config check`` and ``anchorpipe init``: the deployment's settings and dependencies, one line each."""

from __future__ import annotations

import click

from pipelines.cli.common import EXIT_UNUSABLE, echo


def _runtime():  # type: ignore[no-untyped-def]
    from pipelines.runtime import runtime

    return runtime()


def _report(checks) -> None:  # type: ignore[no-untyped-def]
    failed = 0
    for c in checks:
        echo(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<9} {c.detail}")
        failed += not c.ok
    if failed:
        echo(f"{failed} check{'s' if failed > 1 else ''} failed", err=True)
        raise SystemExit(EXIT_UNUSABLE)


@click.group()
def config() -> None:
    """The settings every process reads (environment variables ANCHORPIPE_*)."""


@config.command("check")
def config_check() -> None:
    """Print the resolved settings (secrets masked), then check every dependency: the database (reachable,
    schema current, durable), Redis, the archive (writable), the log (its key matches) and the sources.
    Exits 2 if any check fails."""
    from pipelines.cli.checks import run_checks, settings_lines

    rt = _runtime()
    for line in settings_lines(rt):
        echo(line)
    echo("")
    _report(run_checks(rt))


@click.command()
@click.option("--agency", help="Also create this agency and print its first API key (shown once).")
def init(agency: str | None) -> None:
    """Set up a new deployment from its settings: the database schema, the bucket (with Object Lock when
    ANCHORPIPE_S3_RETENTION_DAYS is set) and the log (signed with ANCHORPIPE_LOG_KEY_FILE). Safe to repeat."""
    from pipelines.cli.checks import init as run_init

    rt = _runtime()
    _report(run_init(rt))
    if agency:
        from pipelines.intake.auth import add_agency

        key = add_agency(rt.state, agency)
        echo(key)
        echo(f"(the API key of agency {agency}: shown only this once)", err=True)
