"""``anchorpipe config check`` and ``anchorpipe init``: the deployment's settings and dependencies, one line each."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.common import EXIT_UNUSABLE, echo, env_file, read_bytes


def _runtime():  # type: ignore[no-untyped-def]
    from pipelines.runtime import runtime

    return runtime()


def _report(checks, err: bool = False) -> None:  # type: ignore[no-untyped-def]
    failed = 0
    for c in checks:
        echo(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<9} {c.detail}", err=err)
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
    _warn_ambiguous_lines()
    echo("")
    _report(run_checks(rt))


def _warn_ambiguous_lines() -> None:
    """A line of the settings file that honcho, systemd or the CLI would each read differently (on stderr)."""
    from pipelines.ops.envfile import ambiguous_lines

    path = env_file()
    if path is None:
        return
    for number, name, why in ambiguous_lines(read_bytes(Path(path)).decode("utf-8", "replace")):
        echo(f"warn  {path}:{number}: {name}: {why}", err=True)


@click.command()
@click.option("--agency", help="Also create this agency and print its first API key (shown once); an agency that "
                               "exists is left as it is.")
def init(agency: str | None) -> None:
    """Set up a new deployment from its settings: the database schema, the bucket (with Object Lock when
    ANCHORPIPE_S3_RETENTION_DAYS is set) and the log (signed with ANCHORPIPE_LOG_KEY_FILE). Safe to repeat.

    One line per step on stderr; on stdout only the new agency's API key, so `anchorpipe init --agency NAME >
    agency.key` captures the key alone."""
    from pipelines.cli.checks import init as run_init

    rt = _runtime()
    _report(run_init(rt), err=True)
    if agency:
        from pipelines.intake.auth import add_agency

        if agency in rt.state.agencies():
            echo(f"ok    agency    {agency} exists: its key was shown when it was made ('anchorpipe agency rotate "
                 f"{agency}' makes a new one)", err=True)
            return
        key = add_agency(rt.state, agency)
        echo(f"ok    agency    {agency} created; its API key (on stdout) is shown only this once", err=True)
        echo(key)
