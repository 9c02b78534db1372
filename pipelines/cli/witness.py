"""``anchorpipe witness ...``: run a C2SP tlog-witness for other parties' logs (an agency witnessing another)."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.common import write_key_file, echo
from pipelines.errors import InputError

DEFAULT_NAME = "anchorpipe.local/witness"


@click.group()
def witness() -> None:
    """A witness: cosigns the checkpoints of the logs it is given, once each is shown consistent with the
    latest it cosigned (c2sp.org/tlog-witness). Logs ask it; auditors pin its verifier key."""


@witness.command()
@click.argument("keyfile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=DEFAULT_NAME, show_default=True,
              help="The witness's name (its key name), e.g. witness.records.example.gov.")
def keygen(keyfile: Path, name: str) -> None:
    """Write a new Ed25519 cosigning key to KEYFILE (mode 0600) and print its verifier key, the line
    auditors and logs pin (signature type 0x04, c2sp.org/tlog-cosignature)."""
    from pipelines.core.cosignature import Cosigner

    cosigner = Cosigner.generate(name)
    write_key_file(keyfile, cosigner.text())
    echo(cosigner.verifier().text())


@witness.command()
@click.option("--key", "key_file", required=True, envvar="ANCHORPIPE_WITNESS_KEY_FILE",
              type=click.Path(dir_okay=False, path_type=Path), help="The witness's key file (from 'witness keygen').")
@click.option("--log", "logs", multiple=True, required=True, metavar="VKEY", envvar="ANCHORPIPE_WITNESS_LOGS",
              help="A log to witness: its verifier key (the text, or a file of them, one a line); its origin is "
                   "the key's name. Repeatable.")
@click.option("--state", "state_file", required=True, envvar="ANCHORPIPE_WITNESS_STATE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="SQLite file holding the latest checkpoint cosigned per log. Back it up: a witness that loses "
                   "it can be made to cosign a fork; it refuses to start without it unless --init.")
@click.option("--init", "init", is_flag=True,
              help="A new witness: create the state file if it is absent (never needed again; do not add it to "
                   "a unit that restarts the witness).")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="ANCHORPIPE_WITNESS_HOST")
@click.option("--port", default=7380, show_default=True, type=click.IntRange(0, 65535), envvar="ANCHORPIPE_WITNESS_PORT")
@click.option("--rate", default=50.0, show_default=True, type=click.FloatRange(0),
              help="Requests per second per client address (0: no limit); over it: 429 with Retry-After.")
@click.option("--burst", default=100.0, show_default=True, type=click.FloatRange(1))
def serve(key_file: Path, logs: tuple[str, ...], state_file: Path, init: bool, host: str, port: int, rate: float,
          burst: float) -> None:
    """Serve POST /add-checkpoint (C2SP tlog-witness) until stopped."""
    import uvicorn

    from pipelines.witness.server import create_app
    from pipelines.witness.state import WitnessState

    if not init and not state_file.exists():
        raise InputError(f"{state_file} does not exist: a witness that lost its state could be made to cosign "
                         f"a fork of a size it cosigned before. Restore it from its backup, or give --init "
                         f"once to start a new witness")
    witness_ = _witness(key_file, logs, WitnessState(state_file))
    echo(f"witness {witness_.cosigner.verifier().text()} on http://{host}:{port} for "
               f"{', '.join(sorted(witness_.logs))}", err=True)
    uvicorn.run(create_app(witness_, rate, burst), host=host, port=port, log_level="warning", access_log=False)


def _witness(key_file: Path, logs: tuple[str, ...], state):  # type: ignore[no-untyped-def]
    from pipelines.core.cosignature import Cosigner
    from pipelines.core.note import Verifier
    from pipelines.ledger.keys import read_text
    from pipelines.witness.server import Witness

    lines = [line for line in read_text(key_file, "witness key file").splitlines() if line.strip()]
    if len(lines) != 1:
        raise InputError(f"{key_file}: want one witness key (from 'anchorpipe witness keygen')")
    cosigner = Cosigner.parse(lines[0])
    known: dict[str, list[Verifier]] = {}
    for value in logs:
        texts = read_text(value, "log key file").splitlines() if Path(value).is_file() else value.split()
        for text in (t for t in texts if t.strip()):
            key = Verifier.parse(text)
            known.setdefault(key.name, []).append(key)
    if not known:
        raise InputError("no log to witness: give --log VKEY")
    return Witness(cosigner, known, state)
