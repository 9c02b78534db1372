"""Commands for running the service: keys for agencies and auditors, dead letters (read the environment)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from pipelines.cli.common import Duration, echo

if TYPE_CHECKING:
    from pipelines.state.postgres import PostgresState


def _state() -> PostgresState:
    from pipelines.runtime import runtime

    return runtime().state


expires_opt = click.option("--expires", type=Duration(), default=None,
                           help="The key stops working after this long (e.g. 90d). Default: never.")


def _show_key(key: str, expires_in_s: float | None) -> None:
    echo(key)
    when = "never expires" if expires_in_s is None else f"expires in {expires_in_s / 86400:g} days"
    echo(f"(shown only this once; {when})", err=True)


@click.group()
def agency() -> None:
    """Agencies and their API keys (reads ANCHORPIPE_DATABASE_URL)."""


@agency.command("add")
@click.argument("name")
@expires_opt
def agency_add(name: str, expires: float | None) -> None:
    """Create agency NAME and print its API key (shown only this once). An existing agency is refused."""
    from pipelines.intake.auth import add_agency

    key = add_agency(_state(), name, expires)
    _show_key(key, expires)


@click.group()
def auditor() -> None:
    """Auditors: read-only keys over chosen agencies (reads ANCHORPIPE_DATABASE_URL)."""


@auditor.command("add")
@click.argument("name")
@click.option("--agency", "agencies", multiple=True, required=True, help="An agency the auditor may read. Repeatable.")
@expires_opt
def auditor_add(name: str, agencies: tuple[str, ...], expires: float | None) -> None:
    """Create auditor NAME and print its read-only API key (shown only this once)."""
    from pipelines.intake.auth import add_auditor

    key = add_auditor(_state(), name, list(agencies), expires)
    _show_key(key, expires)


def _add_rotate(group: click.Group, kind: str) -> None:
    """``anchorpipe agency|auditor rotate NAME --grace D``: one command for both kinds of principal."""

    @group.command("rotate")
    @click.argument("name")
    @click.option("--grace", type=Duration(), required=True,
                  help=f"How long the {kind}'s current keys keep working (e.g. 7d), so its systems can move over.")
    @expires_opt
    def rotate_key(name: str, grace: float, expires: float | None) -> None:
        from pipelines.intake.auth import rotate

        key = rotate(_state(), kind, name, grace, expires)
        _show_key(key, expires)

    rotate_key.help = f"Print a new API key for {kind} NAME; its current keys expire after --grace."


_add_rotate(agency, "agency")
_add_rotate(auditor, "auditor")


@click.group()
def key() -> None:
    """Every API key: list them (by id, never the key itself) and revoke one."""


@key.command("list")
def key_list() -> None:
    """One line per key: id, kind, name, agencies, created, expires (UTC)."""
    from pipelines.intake.auth import list_keys
    from pipelines.state import now_ms

    keys = list_keys(_state())
    now = now_ms()
    for k in keys:
        expires = "never" if k.expires_ms is None else _utc(k.expires_ms) + (" (expired)" if k.expired(now) else "")
        echo(f"{k.id}  {k.kind:7}  {k.name}  agencies={','.join(k.agencies)}  created={_utc(k.created_ms)}  "
                   f"expires={expires}")


@key.command("revoke")
@click.argument("key_id")
def key_revoke(key_id: str) -> None:
    """Revoke the key with KEY_ID (from 'anchorpipe key list'): it stops working at once."""
    from pipelines.intake.auth import revoke

    gone = revoke(_state(), key_id)
    echo(f"revoked key {gone.id} of {gone.kind} {gone.name}")


def _utc(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.group("dead-letters")
def dead_letters() -> None:
    """Work that failed permanently and waits for people (reads ANCHORPIPE_DATABASE_URL)."""


@dead_letters.command("list")
def dead_letters_list() -> None:
    """Each dead letter as a JSON line: task, arguments (batch ids), error, time (ms)."""
    for doc in _state().dead_letters():
        echo(json.dumps(doc))


@dead_letters.command("clear")
@click.option("--all", "everything", is_flag=True, help="Delete every dead letter, not only the resolved ones.")
def dead_letters_clear(everything: bool) -> None:
    """Delete the dead letters whose batches have been archived since (resolved), or with --all every one."""
    n = _state().clear_dead_letters(everything)
    echo(f"cleared {n} dead letter{'s' if n != 1 else ''}")


@dead_letters.command("redrive")
@click.argument("batch_id")
def dead_letters_redrive(batch_id: str) -> None:
    """Put failed batch BATCH_ID back where it failed; the reconciler picks it up at its next tick."""
    stage = _state().redrive(batch_id)
    echo(f"batch {batch_id} is {stage} again")


@click.group()
def db() -> None:
    """The PostgreSQL schema of the system of record (reads ANCHORPIPE_DATABASE_URL)."""


def _database_url() -> str:
    from pipelines.config import settings

    return settings().database_url


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to this version's (safe to run again, and from several hosts at once)."""
    from pipelines.state.schema import upgrade

    before, now = upgrade(_database_url())
    echo(f"schema at revision {now}" + ("" if before == now else f" (was {before or 'empty'})"))


@db.command("status")
def db_status() -> None:
    """Print the database's schema revision and the one this version needs; exit 1 if they differ."""
    from pipelines.state.schema import current, head

    now, want = current(_database_url()), head()
    echo(f"database at {now or 'none (empty)'}; this version needs {want}")
    if now != want:
        raise SystemExit(1)


@db.command("import-redis")
@click.argument("redis_url")
def db_import_redis(redis_url: str) -> None:
    """Copy an earlier version's state from Redis (REDIS_URL) into the empty database, all or nothing.

    Stop the earlier version's API, pullers and workers first; Redis is only read."""
    from pipelines.state.redis_import import import_redis

    done = import_redis(redis_url, _state(), lambda m: echo(f"  {m}", err=True))
    echo(f"imported {done.records:,} records ({done.pending:,} pending), {done.batches:,} batches, "
               f"{done.agencies} agencies, {done.keys} keys, {done.sources} sources, "
               f"{done.dead_letters} dead letters")
