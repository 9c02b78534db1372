"""The ``anchorpipe`` command line. Catches only anchorpipe's own errors."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import click

from pipelines import __version__
from pipelines.core.commitment import check_agency, content_sha256
from pipelines.core.proof import parse_proof
from pipelines.core.verify import verify_proof
from pipelines.errors import AnchorpipeError, InputError, VerificationError

EXIT_VALID, EXIT_INVALID, EXIT_UNUSABLE = 0, 1, 2


def fail(message: str, code: int = EXIT_UNUSABLE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="anchorpipe")
def main() -> None:
    """anchorpipe: seal records into Merkle batches, anchor them, verify their proofs."""


@main.command()
@click.argument("records", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--agency", required=True, help="Agency name (a-z 0-9 . _ -, at most 63).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the proofs; must not exist or be empty.")
@click.option("--log", "log_location", metavar="LOCATION",
              help="Anchor the batch in the built-in log at this folder or s3://bucket/prefix (created if absent).")
@click.option("--log-key", "log_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The log's private key file (from 'anchorpipe log keygen'); needed with --log. "
                   "Repeat to sign with several keys while rotating.")
@click.option("--s3-endpoint", envvar="ANCHORPIPE_S3_ENDPOINT", help="S3 endpoint URL for non-AWS services.")
def seal(records: Path, agency: str, out: Path, log_location: str | None, log_keys: tuple[Path, ...],
         s3_endpoint: str | None) -> None:
    """Seal RECORDS.jsonl into one batch and write a proof per record.

    Each line is {"id": ..., "content": <any JSON>} or {"id": ..., "sha256": "<hex>"}.
    Proofs go to OUT/<percent-encoded id>.json, the batch root to OUT/_batch.json.
    If any line is bad, every bad line is reported and nothing is written.
    With --log, the batch is anchored in the built-in log first and every proof
    carries its signed receipt.
    """
    from pipelines import offline
    from pipelines.records import read_jsonl

    try:
        check_agency(agency)
        offline.check_out_dir(out)
        if (log_location is None) != (not log_keys):
            raise InputError("--log and --log-key go together")
        log = _open_log(log_location, log_keys, s3_endpoint, create=True) if log_location else None
        size = records.stat().st_size
        with records.open("rb") as fh, click.progressbar(length=size, label="reading", file=sys.stderr) as bar:
            inputs = read_jsonl(fh, progress=bar.update)
        batch = offline.seal_records(agency, inputs)
        anchors = [offline.anchor_in_log(batch, log)] if log else None
        with click.progressbar(length=batch.size, label="writing proofs", file=sys.stderr) as bar:
            offline.write_proofs(batch, out, anchors=anchors, progress=bar.update)
    except AnchorpipeError as exc:
        fail(str(exc))
    click.echo(f"sealed {batch.size} records into batch {batch.id}")
    click.echo(f"root {batch.root.hex()}")
    if anchors:
        click.echo(f"anchored as entry {anchors[0]['index']} of log {anchors[0]['origin']}")
    click.echo(f"proofs in {out}")


@main.command()
@click.argument("proof_file", metavar="PROOF.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--record", "record", type=click.Path(dir_okay=False, path_type=Path),
              help="The record's content as JSON; its RFC 8785 canonical SHA-256 must match.")
@click.option("--record-bytes", "record_bytes", type=click.Path(dir_okay=False, path_type=Path),
              help="A file whose raw bytes' SHA-256 must match (for records sealed by sha256).")
@click.option("--log-vkey", "log_vkeys", multiple=True, metavar="VKEY",
              help="A pinned verifier key of the built-in log (the text, or a file holding it). Repeatable.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def verify(proof_file: Path, record: Path | None, record_bytes: Path | None, log_vkeys: tuple[str, ...],
           quiet: bool) -> None:
    """Verify PROOF.json offline (or a whole batch: an archived BATCH.ndjson bundle).

    Checks the leaf commitment, the path to the batch root and, with --log-vkey,
    every log receipt (signed checkpoint and the batch's inclusion in the log).
    For a bundle, every proof, and that no record of the batch is missing.
    Exit status: 0 valid, 1 invalid (the reason is printed), 2 unusable input.
    """
    try:
        if proof_file.suffix == ".ndjson":
            if record or record_bytes:
                raise InputError("--record and --record-bytes go with one proof, not a bundle")
            report = _verify_bundle(proof_file, log_vkeys)
        else:
            report = _verify_one(proof_file, record, record_bytes, log_vkeys)
    except VerificationError as exc:
        fail(f"INVALID: {exc}", EXIT_INVALID)
    except AnchorpipeError as exc:
        fail(str(exc))
    if not quiet:
        for line in report.checks:
            click.echo(f"ok: {line}")
        for line in report.unchecked:
            click.echo(f"NOT CHECKED: {line}")
        click.echo("VALID" if not report.unchecked else "VALID (batch inclusion only: give --log-vkey to check anchors)")


def _verify_bundle(path: Path, log_vkeys: tuple[str, ...]):
    from pipelines.core.verify import verify_batch

    proofs = []
    for n, line in enumerate(_read(path).splitlines(), start=1):
        if line.strip():
            try:
                proofs.append(parse_proof(line))
            except InputError as exc:
                raise InputError(f"{path} line {n}: {exc}") from exc
    return verify_batch(proofs, log_keys=[_load_vkey(v) for v in log_vkeys] or None)


def _verify_one(proof_file: Path, record: Path | None, record_bytes: Path | None, log_vkeys: tuple[str, ...]):
    proof = parse_proof(_read(proof_file))
    if record is not None and record_bytes is not None:
        raise InputError("give --record or --record-bytes, not both")
    digest = None
    if record is not None:
        digest = content_sha256(_load_json(record))
    elif record_bytes is not None:
        digest = hashlib.sha256(_read(record_bytes)).digest()
    return verify_proof(proof, content_sha256=digest, log_keys=[_load_vkey(v) for v in log_vkeys] or None)


@main.command()
@click.option("--records", default=10_000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="How many generated records to push through.")
@click.option("--export", "export", type=click.Path(file_okay=False, path_type=Path),
              help="Keep every proof, the log and its verifier key (log.vkey) in this folder.")
@click.option("--offline", is_flag=True, help="Seal and anchor in-process, with no services (no Redis, S3, Celery).")
@click.option("--batch-size", default=1_000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="With --offline: records per sealed batch.")
def demo(records: int, export: Path | None, offline: bool, batch_size: int) -> None:
    """Run the main job on embedded defaults and verify every proof.

    Starts a private Redis (AOF), an S3 server, the API, workers and beat; pushes
    generated records through the HTTP API; waits for every proof; fetches and
    verifies them as an auditor; prints rates and latencies; stops everything.
    """

    def progress(label: str, length: int):
        return click.progressbar(length=length, label=label, file=sys.stderr)

    try:
        if export is not None:
            from pipelines.offline import check_out_dir

            check_out_dir(export)
        if offline:
            from pipelines.demo_offline import run_demo as run_offline

            run_offline(records, batch_size, export, click.echo, progress)
        else:
            from pipelines.demo import run_demo

            run_demo(records, export, click.echo, progress)
    except AnchorpipeError as exc:
        fail(str(exc), EXIT_INVALID if isinstance(exc, VerificationError) else EXIT_UNUSABLE)


def _load_vkey(value: str):
    from pipelines.core.note import Verifier

    path = Path(value)
    return Verifier.parse(_read(path).decode("utf-8", "replace") if path.is_file() else value)


def _load_signer(path: Path):
    from pipelines.core.note import Signer

    return Signer.parse(_read(path).decode("utf-8", "replace"))


def _open_log(location: str, key_files: tuple[Path, ...], s3_endpoint: str | None, *, create: bool = False):
    from pipelines.storage import open_store
    from pipelines.tlog import TransparencyLog

    store = open_store(location, s3_endpoint=s3_endpoint)
    signers = [_load_signer(k) for k in key_files]
    if create:
        TransparencyLog.create(store, signers)
    return TransparencyLog.open(store, signers)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc


def _load_json(path: Path) -> object:
    try:
        return json.loads(_read(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not JSON: {exc}") from exc


from pipelines.cli_log import log  # noqa: E402  (command groups register on main)
from pipelines.cli_service import agency, auditor, dead_letters, proof  # noqa: E402
from pipelines.cli_source import source  # noqa: E402

for _group in (log, agency, auditor, proof, source, dead_letters):
    main.add_command(_group)

if __name__ == "__main__":
    main()
