"""The log's keys and how a command opens the log with them: signing keys for the sequencer, pinned
verifier keys for everyone who only reads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipelines.core.note import Signer, Verifier
from pipelines.errors import InputError
from pipelines.ledger.tlog import LogReader, TransparencyLog
from pipelines.storage import open_store


def read_text(path: str | Path, what: str) -> str:
    """A small text file's contents (keys, checkpoints); InputError naming ``what`` if unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from exc


def load_signers(key_files: Sequence[str | Path]) -> list[Signer]:
    """Signing keys from files written by ``anchorpipe log keygen`` (a file may hold several, one a line)."""
    signers = []
    for path in key_files:
        text = read_text(path, "key file")
        signers += [Signer.parse(line) for line in text.splitlines() if line.strip()]
    if not signers:
        raise InputError("no signing key given")
    return signers


def load_verifiers(values: Sequence[str]) -> list[Verifier]:
    """Pinned verifier keys, each given as its text or as a file holding it."""
    return [Verifier.parse(read_text(v, "verifier key") if Path(v).is_file() else v) for v in values]


def open_log(location: str, key_files: Sequence[str | Path], s3_endpoint: str | None = None, *,
             create: bool = False) -> TransparencyLog:
    """The built-in log at ``location`` opened for sequencing (created first if ``create``)."""
    store = open_store(location, s3_endpoint=s3_endpoint)
    signers = load_signers(key_files)
    if create:
        TransparencyLog.create(store, signers)
    return TransparencyLog.open(store, signers)


def log_reader(location: str, vkeys: Sequence[str], s3_endpoint: str | None = None) -> LogReader:
    """Read-only access to the log at ``location``, trusting only the pinned ``vkeys``."""
    if not vkeys:
        raise InputError("give the log's verifier key with --log-vkey: nothing is trusted without it")
    return LogReader(open_store(location, s3_endpoint=s3_endpoint), load_verifiers(vkeys))
