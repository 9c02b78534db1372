"""``anchorpipe openapi``: the intake API's contract, exported to a file and checked against the code."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipelines.cli.common import EXIT_INVALID, fail, echo


@click.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/openapi.json"),
              show_default=True, help="Where the document goes.")
@click.option("--check", is_flag=True, help="Write nothing: exit 1 if --out differs from what the code serves.")
def openapi(out: Path, check: bool) -> None:
    """Export the intake API's OpenAPI document (what /openapi.json serves), or --check that the committed copy
    is still the code's: CI runs the check, so the contract cannot change unnoticed."""
    from pipelines.api.app import openapi_document

    text = json.dumps(openapi_document(), indent=1, ensure_ascii=False) + "\n"
    if check:
        if not out.exists() or out.read_text() != text:
            fail(f"{out} is not the API's current contract: run `anchorpipe openapi --out {out}` and review the "
                 "change (within /v1 only backwards-compatible ones)", EXIT_INVALID)
        echo(f"{out} matches the API")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    echo(f"wrote {out} ({len(text):,} bytes)")
