"""``anchorpipe proof get``: fetch an archived proof through the API or straight from the archive."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from pipelines.cli.common import endpoint_opt, printable


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
@endpoint_opt
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
def proof_get(agency_name: str, record_id: str, api: str | None, key: str | None, archive: str | None,
              s3_endpoint: str | None, out: Path | None) -> None:
    """Write the proof of record ID of AGENCY, for `anchorpipe verify`."""
    from pipelines.errors import InputError

    if (api is None) == (archive is None):
        raise InputError("give exactly one of --api URL and --archive LOCATION")
    doc = _from_api(api, key, agency_name, record_id) if api else _from_archive(
        archive, s3_endpoint, agency_name, record_id)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(printable(text))  # (C1 and bidi controls only inside strings: \\u escapes there are the same JSON)


def _from_archive(location: str, endpoint: str | None, agency_name: str, record_id: str) -> dict[str, Any]:
    from pipelines.archive.directory import fetch_proof
    from pipelines.storage import open_store

    return fetch_proof(open_store(location, s3_endpoint=endpoint), agency_name, record_id).model_dump(mode="json")


def _from_api(api: str, key: str | None, agency_name: str, record_id: str) -> dict[str, Any]:
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
