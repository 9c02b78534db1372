"""Commands for running the service: keys for agencies and auditors, dead letters (read the environment)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from pipelines.cli.common import fail_with
from pipelines.errors import AnchorpipeError

if TYPE_CHECKING:
    from pipelines.state.redis import RedisState


def _state() -> RedisState:
    from pipelines.runtime import runtime

    return runtime().state


@click.group()
def agency() -> None:
    """Agencies (reads ANCHORPIPE_REDIS_URL)."""


@agency.command("add")
@click.argument("name")
def agency_add(name: str) -> None:
    """Create agency NAME and print its API key (shown only this once)."""
    from pipelines.intake.auth import add_agency

    try:
        key = add_agency(_state(), name)
    except AnchorpipeError as exc:
        fail_with(exc)
    click.echo(key)


@click.group()
def auditor() -> None:
    """Auditors: read-only keys over chosen agencies (reads ANCHORPIPE_REDIS_URL)."""


@auditor.command("add")
@click.argument("name")
@click.option("--agency", "agencies", multiple=True, required=True, help="An agency the auditor may read. Repeatable.")
def auditor_add(name: str, agencies: tuple[str, ...]) -> None:
    """Create auditor NAME and print its read-only API key (shown only this once)."""
    from pipelines.intake.auth import add_auditor

    try:
        key = add_auditor(_state(), name, list(agencies))
    except AnchorpipeError as exc:
        fail_with(exc)
    click.echo(key)


@click.group("dead-letters")
def dead_letters() -> None:
    """Work that failed permanently and waits for people (reads ANCHORPIPE_REDIS_URL)."""


@dead_letters.command("list")
def dead_letters_list() -> None:
    """Each dead letter as a JSON line: task, arguments (batch ids), error, time (ms)."""
    try:
        for doc in _state().dead_letters():
            click.echo(json.dumps(doc))
    except AnchorpipeError as exc:
        fail_with(exc)


@dead_letters.command("redrive")
@click.argument("batch_id")
def dead_letters_redrive(batch_id: str) -> None:
    """Put failed batch BATCH_ID back where it failed; the reconciler picks it up at its next tick."""
    try:
        stage = _state().redrive(batch_id)
    except AnchorpipeError as exc:
        fail_with(exc)
    click.echo(f"batch {batch_id} is {stage} again")
