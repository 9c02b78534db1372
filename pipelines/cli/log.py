"""``anchorpipe log ...``: keys, creation and auditing of the built-in transparency log."""

from __future__ import annotations

import base64
from pathlib import Path

import click

from pipelines.cli.common import endpoint_opt, read_bytes, vkey_opt, write_key_file, echo
from pipelines.ledger.keys import log_reader, open_log

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

    signer = Signer.generate(origin)
    write_key_file(keyfile, signer.text())
    echo(signer.verifier().text())


@log.command()
@location_arg
@click.option("--log-key", "log_keys", required=True, multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The log's private key file (repeatable).")
@endpoint_opt
def init(location: str, log_keys: tuple[Path, ...], s3_endpoint: str | None) -> None:
    """Create an empty log at LOCATION (a size-0 signed checkpoint). Safe to repeat."""
    tlog = open_log(location, log_keys, s3_endpoint, create=True)
    head = tlog.head()
    echo(f"log {head.checkpoint.origin} at {tlog.store.describe()}: size {head.checkpoint.size}")


witness_opt = click.option("--witness", "witnesses", multiple=True, metavar="VKEY",
                           help="A pinned witness key (the text, or a file of them, one a line). Repeatable.")


@log.command()
@location_arg
@vkey_opt
@endpoint_opt
@witness_opt
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the verified checkpoint (its signed note; the cosigned one with --witness) to this "
                   "file, for 'log consistency' later.")
def show(location: str, log_vkeys: tuple[str, ...], s3_endpoint: str | None, witnesses: tuple[str, ...],
         save: Path | None) -> None:
    """Verify and print the log's checkpoint, and check its tiles against it. With --witness, also the newest
    cosigned checkpoint and which pinned witnesses cosigned it."""
    from pipelines.cli.trust import load_witness_keys
    from pipelines.core.cosignature import verify_cosignatures

    keys = load_witness_keys(witnesses)
    reader = log_reader(location, log_vkeys, s3_endpoint)
    head = reader.head()
    reader.check_tiles(head)
    cosigned = reader.cosigned() if keys else None
    cosigners = [c.witness for c in verify_cosignatures(cosigned.note, keys)] if cosigned else []
    if save is not None:  # only a verified checkpoint is kept, for 'log consistency' later
        save.write_text(cosigned.note if cosigned else head.note)
    cp = head.checkpoint
    echo(f"origin {cp.origin}\nsize   {cp.size}\nroot   {cp.root.hex()}")
    echo("signature verified; tiles agree with the checkpoint")
    echo("\n" + head.note, nl=False)
    if keys:
        if cosigned is None:
            echo("\nno cosigned checkpoint published")
        else:
            echo(f"\ncosigned checkpoint: size {cosigned.checkpoint.size}, cosigned by "
                       f"{len(cosigners)} of {len(keys)} pinned witnesses ({', '.join(cosigners) or 'none'})")
            echo("\n" + cosigned.note, nl=False)


@log.command()
@location_arg
@click.argument("saved", nargs=-1, required=True, metavar="SAVED_CHECKPOINT_FILE...",
                type=click.Path(dir_okay=False, path_type=Path))
@vkey_opt
@endpoint_opt
@witness_opt
def consistency(location: str, saved: tuple[Path, ...], log_vkeys: tuple[str, ...], s3_endpoint: str | None,
                witnesses: tuple[str, ...]) -> None:
    """Prove the log only grew since each SAVED_CHECKPOINT_FILE (checkpoints you saved earlier, cosigned or not).

    A saved checkpoint the log's current one does not extend, or two saved ones of the same size with
    different roots, are a fork (a split view): both checkpoints, each signed by the log's key, are printed
    as the evidence (with the pinned witnesses that cosigned each), and the exit status is 1.
    """
    from pipelines.audit.forks import check_saved
    from pipelines.cli.trust import load_witness_keys
    from pipelines.core.cosignature import verify_cosignatures

    keys = load_witness_keys(witnesses)
    reader = log_reader(location, log_vkeys, s3_endpoint)
    head = reader.head()
    consistent, forks = check_saved(reader, head, [(str(p), read_bytes(p).decode("utf-8", "replace")) for p in saved])
    if forks:
        echo(f"FORK: {len(forks)} pair(s) of checkpoints signed by the log's key are not consistent")
        for fork in forks:
            echo(f"\n{fork.what}")
            for where, note in (fork.first, fork.second):
                cosigners = [c.witness for c in verify_cosignatures(note, keys)] if keys else []
                by = f" (cosigned by {', '.join(cosigners)})" if cosigners else " (cosigned by no pinned witness)" \
                    if keys else ""
                echo(f"--- {where}{by}\n{note}", nl=False)
        raise SystemExit(1)
    for c in consistent:
        echo(f"consistent: {c.saved} size {c.size} -> {head.checkpoint.size} ({len(c.proof)} proof hashes)")
        for h in c.proof:
            echo(base64.b64encode(h).decode())
