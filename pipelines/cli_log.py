"""``anchorpipe log ...``: keys, creation and auditing of the built-in transparency log."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import click

from pipelines.errors import AnchorpipeError, VerificationError

DEFAULT_ORIGIN = "anchorpipe.local/log"
location_arg = click.argument("location", metavar="LOCATION")
endpoint_opt = click.option("--s3-endpoint", envvar="ANCHORPIPE_S3_ENDPOINT",
                            help="S3 endpoint URL for non-AWS services.")
vkey_opt = click.option("--log-vkey", "log_vkeys", multiple=True, metavar="VKEY",
                        help="A pinned verifier key (the text, or a file holding it). Repeatable.")


def _fail(exc: AnchorpipeError) -> None:
    from pipelines.cli import EXIT_INVALID, EXIT_UNUSABLE, fail

    fail(str(exc), EXIT_INVALID if isinstance(exc, VerificationError) else EXIT_UNUSABLE)


def _reader(location: str, s3_endpoint: str | None, vkeys: tuple[str, ...]):
    from pipelines.cli import _load_vkey
    from pipelines.errors import InputError
    from pipelines.storage import open_store
    from pipelines.tlog import LogReader

    if not vkeys:
        raise InputError("give the log's verifier key with --log-vkey: nothing is trusted without it")
    return LogReader(open_store(location, s3_endpoint=s3_endpoint), [_load_vkey(v) for v in vkeys])


@click.group()
def log() -> None:
    """The built-in transparency log (C2SP tlog-tiles with signed checkpoints).

    LOCATION is a folder or s3://bucket/prefix (with --s3-endpoint for non-AWS services).
    """


@log.command()
@click.argument("keyfile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--origin", default=DEFAULT_ORIGIN, show_default=True,
              help="The log's name (its checkpoint origin and key name), e.g. records.example.gov/log.")
def keygen(keyfile: Path, origin: str) -> None:
    """Write a new Ed25519 signing key to KEYFILE (mode 0600) and print its verifier key."""
    from pipelines.core.note import Signer

    try:
        signer = Signer.generate(origin)
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{keyfile} exists; not overwriting a key") from None
    except AnchorpipeError as exc:
        _fail(exc)
    with os.fdopen(fd, "w") as fh:
        fh.write(signer.text() + "\n")
    click.echo(signer.verifier().text())


@log.command()
@location_arg
@click.option("--log-key", "log_keys", required=True, multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The log's private key file (repeatable).")
@endpoint_opt
def init(location: str, log_keys: tuple[Path, ...], s3_endpoint: str | None) -> None:
    """Create an empty log at LOCATION (a size-0 signed checkpoint). Safe to repeat."""
    from pipelines.cli import _open_log

    try:
        tlog = _open_log(location, log_keys, s3_endpoint, create=True)
        head = tlog.head()
    except AnchorpipeError as exc:
        _fail(exc)
    click.echo(f"log {head.checkpoint.origin} at {tlog.store.describe()}: size {head.checkpoint.size}")


@log.command()
@location_arg
@vkey_opt
@endpoint_opt
def show(location: str, log_vkeys: tuple[str, ...], s3_endpoint: str | None) -> None:
    """Verify and print the log's checkpoint, and check its tiles against it."""
    try:
        reader = _reader(location, s3_endpoint, log_vkeys)
        head = reader.head()
        reader.check_tiles(head)
    except AnchorpipeError as exc:
        _fail(exc)
    cp = head.checkpoint
    click.echo(f"origin {cp.origin}\nsize   {cp.size}\nroot   {cp.root.hex()}")
    click.echo("signature verified; tiles agree with the checkpoint")
    click.echo("\n" + head.note, nl=False)


@log.command()
@location_arg
@click.argument("old_checkpoint", metavar="OLD_CHECKPOINT_FILE", type=click.Path(dir_okay=False, path_type=Path))
@vkey_opt
@endpoint_opt
def consistency(location: str, old_checkpoint: Path, log_vkeys: tuple[str, ...], s3_endpoint: str | None) -> None:
    """Prove the log only grew since OLD_CHECKPOINT_FILE (a checkpoint you saved earlier)."""
    from pipelines.cli import _read
    from pipelines.core.checkpoint import open_checkpoint

    try:
        reader = _reader(location, s3_endpoint, log_vkeys)
        old = open_checkpoint(_read(old_checkpoint).decode("utf-8", "replace"), reader.verifiers)
        head = reader.head()
        proof = reader.consistency(old, head)
    except VerificationError as exc:
        _fail(VerificationError(f"NOT CONSISTENT: {exc}"))
    except AnchorpipeError as exc:
        _fail(exc)
    click.echo(f"consistent: size {old.size} -> {head.checkpoint.size} ({len(proof)} proof hashes)")
    for h in proof:
        click.echo(base64.b64encode(h).decode())
