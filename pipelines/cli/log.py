"""``anchorpipe log ...``: keys, creation and auditing of the built-in transparency log."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import click

from pipelines.cli.common import endpoint_opt, fail_with, read_bytes, vkey_opt
from pipelines.errors import AnchorpipeError, VerificationError
from pipelines.runtime import log_reader, open_log

DEFAULT_ORIGIN = "anchorpipe.local/log"
location_arg = click.argument("location", metavar="LOCATION")


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
    """Write a new Ed25519 signing key to KEYFILE (mode 0600; its folder is created, mode 0700, if missing)
    and print its verifier key."""
    from pipelines.core.note import Signer

    try:
        keyfile.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot write {keyfile}: {keyfile.parent} is not a folder we can create "
                                   f"({exc.strerror})") from None
    try:
        signer = Signer.generate(origin)
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{keyfile} exists; not overwriting a key") from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {keyfile}: {exc.strerror}") from None
    except AnchorpipeError as exc:
        fail_with(exc)
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
    try:
        tlog = open_log(location, log_keys, s3_endpoint, create=True)
        head = tlog.head()
    except AnchorpipeError as exc:
        fail_with(exc)
    click.echo(f"log {head.checkpoint.origin} at {tlog.store.describe()}: size {head.checkpoint.size}")


@log.command()
@location_arg
@vkey_opt
@endpoint_opt
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the verified checkpoint (its signed note) to this file, for 'log consistency' later.")
def show(location: str, log_vkeys: tuple[str, ...], s3_endpoint: str | None, save: Path | None) -> None:
    """Verify and print the log's checkpoint, and check its tiles against it."""
    try:
        reader = log_reader(location, log_vkeys, s3_endpoint)
        head = reader.head()
        reader.check_tiles(head)
    except AnchorpipeError as exc:
        fail_with(exc)
    if save is not None:  # only a verified checkpoint is kept, for 'log consistency' later
        save.write_text(head.note)
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
    from pipelines.core.checkpoint import open_checkpoint

    try:
        reader = log_reader(location, log_vkeys, s3_endpoint)
        old = open_checkpoint(read_bytes(old_checkpoint).decode("utf-8", "replace"), reader.verifiers)
        head = reader.head()
        proof = reader.consistency(old, head)
    except VerificationError as exc:
        fail_with(VerificationError(f"NOT CONSISTENT: {exc}"))
    except AnchorpipeError as exc:
        fail_with(exc)
    click.echo(f"consistent: size {old.size} -> {head.checkpoint.size} ({len(proof)} proof hashes)")
    for h in proof:
        click.echo(base64.b64encode(h).decode())
