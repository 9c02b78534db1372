"""``anchorpipe push FILE|-``: send an agency's records to the intake API with the client, resumably."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from pipelines.cli.common import EXIT_INVALID, fail, echo

if TYPE_CHECKING:
    from anchorpipe.client import Client

KEY_ENV = "ANCHORPIPE_API_KEY"


def read_records(stream: BinaryIO, fmt: str, skip: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """(line number, position after it, the record as one JSON line) of each record, after ``skip``: the
    position is a byte offset for JSON Lines, the number of rows read for CSV. JSON Lines are sent as they
    are (the API checks them, and names a bad one by its index); a CSV row becomes a record."""
    if fmt == "csv":
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        reader = csv.DictReader(text)
        if reader.fieldnames is None or "id" not in reader.fieldnames:
            raise click.ClickException("a CSV file needs a header row with an 'id' column")
        for n, row in enumerate(reader, start=2):
            if n - 2 < skip:
                continue
            record: dict[str, Any] = {"id": row.pop("id")}
            if "sha256" in row and len(row) == 1:
                record["sha256"] = row["sha256"]
            else:
                record["content"] = row
            yield n, n - 1, json.dumps(record, ensure_ascii=False).encode()
        return
    if skip:
        stream.seek(skip)
    offset = skip
    for n, line in enumerate(stream, start=1):
        offset += len(line)
        if line.strip():
            yield n, offset, line.rstrip(b"\r\n")


def identity(path: Path) -> dict[str, Any]:
    """What tells that a file is still the one a push began: size, modification time, its first 64 KiB."""
    import hashlib

    st = path.stat()
    with path.open("rb") as fh:
        head = hashlib.sha256(fh.read(1 << 16)).hexdigest()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "head": head}


def _id(line: bytes) -> object:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc.get("id") if isinstance(doc, dict) else None


class PushState:
    """What a push has done, kept beside the input (``FILE.push-state.json``) after every accepted chunk, so
    an interrupted push resumes after the last chunk the API acknowledged."""

    def __init__(self, path: Path | None, source: Path | None = None) -> None:
        self.path = path
        self.doc: dict[str, Any] = {"offset": 0, "accepted": 0, "duplicates": 0, "conflicts": [], "rejected": []}
        self.doc["file"] = identity(source) if source else None
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            if saved.get("file") != self.doc["file"]:
                raise click.ClickException(f"{source} is not the file an interrupted push of it left {path} for "
                                           "(its size, time or first bytes changed): give --restart to push it "
                                           "from the start (records already sent come back as duplicates)")
            self.doc.update(saved)

    def done(self) -> None:
        """The push went through: nothing to resume."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def save(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.doc))
            os.replace(tmp, self.path)


@click.command()
@click.argument("source", metavar="FILE|-")
@click.option("--api", "api_url", required=True, envvar="ANCHORPIPE_API_URL", help="The intake API's URL.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"A file holding the agency's API key (default: ${KEY_ENV}). Never on the command line.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), help="Default: from the file's suffix.")
@click.option("--chunk", default=2_000, show_default=True, type=click.IntRange(1, 50_000), help="Records per request.")
@click.option("--wait", "wait_for", is_flag=True, help="Then wait until every record's proof is archived.")
@click.option("--anchors", default="tlog", show_default=True, help="With --wait: the anchor kinds to wait for, "
              "comma-separated (tlog, witness, tsa, evm).")
@click.option("--proofs", "proofs_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Then save every record's proof here (implies --wait).")
@click.option("--restart", is_flag=True, help="Ignore what an interrupted push of this file recorded.")
def push(source: str, api_url: str, key_file: Path | None, fmt: str | None, chunk: int, wait_for: bool, anchors: str,
         proofs_dir: Path | None, restart: bool) -> None:
    """Push the records of FILE (JSON Lines: {"id", "content"} or {"id", "sha256"} a line; or CSV with an id
    column, and sha256 or content columns) to the API, with a progress bar. Resumable: a push interrupted
    and run again sends only what the API had not acknowledged (duplicates are harmless: the API answers
    them with the first receipt). Prints accepted, duplicates, conflicts and rejected lines at the end.
    """
    from anchorpipe.client import Client, ClientError

    key = _api_key(key_file)
    stdin = source == "-"
    fmt = fmt or ("csv" if source.endswith(".csv") else "jsonl")
    state_file = None if stdin else Path(source + ".push-state.json")
    if restart and state_file is not None:
        state_file.unlink(missing_ok=True)
    state = PushState(state_file, None if stdin else Path(source))
    stream: BinaryIO = sys.stdin.buffer if stdin else open(source, "rb")
    size = 0 if stdin else os.fstat(stream.fileno()).st_size
    ids: list[str] | None = [] if wait_for or proofs_dir else None
    started = time.monotonic()

    def rate(_: object) -> str:
        done = state.doc["accepted"] + state.doc["duplicates"]
        return f"{done:,} records, {done / max(time.monotonic() - started, 1e-3):,.0f}/s"

    with Client(api_url, key) as client, click.progressbar(length=size or 1, label="pushing", file=sys.stderr,
                                                           show_eta=True, show_percent=True,
                                                           item_show_func=rate) as bar:
        bar.update(state.doc["offset"] if fmt == "jsonl" else 0)
        batch: list[tuple[int, int, bytes]] = []

        def flush() -> None:
            _send(client, state, batch, ids)
            bar.update(batch[-1][1] - bar.pos if fmt == "jsonl" and size else 0)

        try:
            for item in read_records(stream, fmt, state.doc["offset"]):
                batch.append(item)
                if len(batch) >= chunk:
                    flush()
                    batch = []
            if batch:
                flush()
        except ClientError as exc:
            state.save()
            fail(f"{exc} (what was acknowledged is recorded: run the same command again to resume)")
    doc = state.doc
    state.done()
    _report(doc)
    if ids is not None:
        _wait_for_proofs(api_url, key, ids, [a.strip() for a in anchors.split(",") if a.strip()], proofs_dir)
    if doc["conflicts"] or doc["rejected"]:
        raise SystemExit(EXIT_INVALID)


def _api_key(key_file: Path | None) -> str:
    key = (key_file.read_text().strip() if key_file else os.environ.get(KEY_ENV, "")).strip()
    if not key:
        fail(f"no API key: give --key-file FILE or set {KEY_ENV} (never on the command line)")
    return key


def _send(client: Client, state: PushState, batch: list[tuple[int, int, bytes]], ids: list[str] | None) -> None:
    """Send one chunk of (line number, end offset, line): records the API refuses one by one (invalid, or a
    conflict) are noted and the rest sent again; then the chunk's end is saved as the resume point."""
    from anchorpipe.client import Conflict, ValidationError

    good = list(batch)
    while good:
        try:
            receipts = client.send_chunk(0, [line for _, _, line in good])
        except ValidationError as exc:  # drop the bad records, send the rest
            bad = {p.index for p in exc.problems}
            state.doc["rejected"] += [{"line": good[p.index][0], "error": f"{p.field}: {p.message}"}
                                      for p in exc.problems]
            good = [g for i, g in enumerate(good) if i not in bad]
            continue
        except Conflict as exc:
            line = next(g for g in good if _id(g[2]) == exc.record_id)
            state.doc["conflicts"].append({"line": line[0], "id": exc.record_id})
            good = [g for g in good if g is not line]
            continue
        for r in receipts:
            state.doc["accepted" if r.status == "accepted" else "duplicates"] += 1
            if ids is not None:
                ids.append(r.id)
        break
    state.doc["offset"] = batch[-1][1]
    state.save()


def _report(doc: dict[str, Any]) -> None:
    echo(f"accepted {doc['accepted']:,}, duplicates {doc['duplicates']:,}, conflicts {len(doc['conflicts']):,}, "
         f"rejected {len(doc['rejected']):,}")
    for c in doc["conflicts"][:50]:
        echo(f"  conflict: line {c['line']}: id {c['id']!r} was accepted before with other content")
    for r in doc["rejected"][:50]:
        echo(f"  rejected: line {r['line']}: {r['error']}")


def _wait_for_proofs(api_url: str, key: str, ids: list[str], wanted: list[str], proofs_dir: Path | None) -> None:
    from urllib.parse import quote

    from anchorpipe.client import Client

    with Client(api_url, key) as client:
        echo(f"waiting for {len(ids):,} proofs ({', '.join(wanted)}) ...", err=True)
        done = client.wait(ids, anchors=wanted)
    if proofs_dir:
        proofs_dir.mkdir(parents=True, exist_ok=True)
        for record_id, status in done.items():
            (proofs_dir / f"{quote(record_id, safe='')}.json").write_text(json.dumps(status.proof) + "\n")
        echo(f"saved {len(done):,} proofs to {proofs_dir}")
    else:
        echo(f"all {len(done):,} proofs archived with {', '.join(wanted)}")
