"""Commands for running the service: keys for agencies and auditors, fetching proofs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pipelines.errors import AnchorpipeError


def _fail(exc: AnchorpipeError) -> None:
    from pipelines.cli import fail

    fail(str(exc))


def _state():
    from pipelines.config import settings
    from pipelines.state import State

    return State.connect(settings().redis_url)


@click.group()
def agency() -> None:
    """Agencies (reads ANCHORPIPE_REDIS_URL)."""


@agency.command("add")
@click.argument("name")
def agency_add(name: str) -> None:
    """Create agency NAME and print its API key (shown only this once)."""
    from pipelines.auth import add_agency

    try:
        key = add_agency(_state(), name)
    except AnchorpipeError as exc:
        _fail(exc)
    click.echo(key)


@click.group()
def auditor() -> None:
    """Auditors: read-only keys over chosen agencies (reads ANCHORPIPE_REDIS_URL)."""


@auditor.command("add")
@click.argument("name")
@click.option("--agency", "agencies", multiple=True, required=True, help="An agency the auditor may read. Repeatable.")
def auditor_add(name: str, agencies: tuple[str, ...]) -> None:
    """Create auditor NAME and print its read-only API key (shown only this once)."""
    from pipelines.auth import add_auditor

    try:
        key = add_auditor(_state(), name, list(agencies))
    except AnchorpipeError as exc:
        _fail(exc)
    click.echo(key)


@click.group()
def proof() -> None:
    """Fetch archived proofs."""


@proof.command("get")
@click.argument("agency_name", metavar="AGENCY")
@click.argument("record_id", metavar="ID")
@click.option("--api", "api", metavar="URL", help="Fetch through the intake API (with --key).")
@click.option("--key", envvar="ANCHORPIPE_API_KEY", help="Agency or auditor API key (or ANCHORPIPE_API_KEY).")
@click.option("--archive", "archive", metavar="LOCATION",
              help="Fetch straight from the archive: s3://bucket/prefix or a folder (read-only access suffices).")
@click.option("--s3-endpoint", envvar="ANCHORPIPE_S3_ENDPOINT", help="S3 endpoint URL for non-AWS services.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
def proof_get(agency_name: str, record_id: str, api: str | None, key: str | None, archive: str | None,
              s3_endpoint: str | None, out: Path | None) -> None:
    """Write the proof of record ID of AGENCY, for `anchorpipe verify`."""
    from pipelines.errors import InputError

    try:
        if (api is None) == (archive is None):
            raise InputError("give exactly one of --api URL and --archive LOCATION")
        doc = _from_api(api, key, agency_name, record_id) if api else _from_archive(
            archive, s3_endpoint, agency_name, record_id)
    except AnchorpipeError as exc:
        _fail(exc)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def _from_archive(location: str, endpoint: str | None, agency_name: str, record_id: str) -> dict:
    from pipelines.archive import fetch_proof
    from pipelines.storage import open_store

    return fetch_proof(open_store(location, s3_endpoint=endpoint), agency_name, record_id).model_dump(mode="json")


def _from_api(api: str, key: str | None, agency_name: str, record_id: str) -> dict:
    from urllib.parse import quote

    import httpx

    from pipelines.errors import InputError, StorageError

    if not key:
        raise InputError("--api needs --key (or ANCHORPIPE_API_KEY)")
    url = f"{api.rstrip('/')}/v1/records/{quote(record_id, safe='')}"
    try:
        resp = httpx.get(url, params={"agency": agency_name}, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    except httpx.HTTPError as exc:
        raise StorageError(f"cannot reach {api}: {type(exc).__name__}", transient=True) from exc
    if resp.status_code != 200:
        raise InputError(f"{api} answered {resp.status_code}: {resp.json().get('detail', '')}")
    doc = resp.json()
    if "proof" not in doc:
        raise InputError(f"record {record_id!r} is {doc['status']}: no proof archived yet")
    return doc["proof"]


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
        _fail(exc)


@dead_letters.command("redrive")
@click.argument("batch_id")
def dead_letters_redrive(batch_id: str) -> None:
    """Put failed batch BATCH_ID back where it failed; the reconciler picks it up at its next tick."""
    try:
        stage = _state().redrive(batch_id)
    except AnchorpipeError as exc:
        _fail(exc)
    click.echo(f"batch {batch_id} is {stage} again")
