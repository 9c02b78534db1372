"""What every command module shares: exit codes, failing cleanly, reading files, common options."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from pipelines.errors import AnchorpipeError, InputError, VerificationError

#: verify: valid; a check failed; the input is unusable; consistent but not anchored under anything pinned.
EXIT_VALID, EXIT_INVALID, EXIT_UNUSABLE, EXIT_NOT_ANCHORED = 0, 1, 2, 3

endpoint_opt = click.option("--s3-endpoint", envvar="ANCHORPIPE_S3_ENDPOINT",
                            help="S3 endpoint URL for non-AWS services.")
vkey_opt = click.option("--log-vkey", "log_vkeys", multiple=True, metavar="VKEY",
                        help="A pinned verifier key of the built-in log (the text, or a file holding it). Repeatable.")


class Duration(click.ParamType):
    """A duration: seconds, or a number with s, m, h or d (``90d``, ``12h``)."""

    name = "duration"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        unit = self.UNITS.get(text[-1:], None)
        try:
            seconds = float(text[:-1] if unit else text) * (unit or 1)
        except ValueError:
            self.fail(f"{value!r} is not a duration (e.g. 3600, 90m, 12h, 30d)", param, ctx)
        if seconds < 0:
            self.fail("a duration cannot be negative", param, ctx)
        return seconds


_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """``text`` safe for a terminal: control, format and bidirectional characters (an id read from a hostile
    archive may hold escape sequences or overrides) written as ``\\uXXXX``; newlines and tabs kept."""
    if text.isprintable() and not _BIDI.intersection(text):
        return text
    return "".join(c if c in "\n\t" or (c.isprintable() and c not in _BIDI) else _escaped(c) for c in text)


def _escaped(c: str) -> str:
    return f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"


def echo(message: object = "", **kwargs: object) -> None:
    """``click.echo`` of ``message`` made :func:`printable`: every line a command prints goes through here."""
    click.echo(printable(str(message)), **kwargs)  # type: ignore[arg-type]


def fail(message: str, code: int = EXIT_UNUSABLE) -> NoReturn:
    echo(f"error: {message}", err=True)
    sys.exit(code)


def fail_with(exc: AnchorpipeError) -> NoReturn:
    """Exit with the error's message: status 1 for a failed verification, 2 for anything else."""
    fail(str(exc), EXIT_INVALID if isinstance(exc, VerificationError) else EXIT_UNUSABLE)


def env_file() -> str | None:
    """The settings file the CLI reads: ANCHORPIPE_ENV_FILE, or ./.env when there is one."""
    return os.environ.get("ANCHORPIPE_ENV_FILE") or (".env" if os.path.isfile(".env") else None)


def write_key_file(keyfile: Path, text: str) -> None:
    """Write a new private key to ``keyfile`` (mode 0600; its folder created, mode 0700, if missing), never
    over an existing file; a ClickException saying why not."""
    try:
        keyfile.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot write {keyfile}: {keyfile.parent} is not a folder we can create "
                                   f"({exc.strerror})") from None
    try:
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{keyfile} exists; not overwriting a key") from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {keyfile}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


#: The most a file named on the command line is read to (a key, a checkpoint, a proof, a bundle), unless the
#: command knows a smaller bound from the format.
MAX_FILE_BYTES = 256 << 20


def read_bytes(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes, at most ``limit`` of them; InputError for a device, a pipe or a larger file."""
    with _open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        data = fh.read(limit + 1) if size <= limit else b""
        if size > limit or len(data) > limit:
            raise InputError(f"{path} is {max(size, len(data)):,} bytes or more, over the {limit:,} bytes such a "
                             f"file may hold: not read")
        return data


def sha256_file(path: Path) -> bytes:
    """The SHA-256 of a regular file, read in chunks (any size)."""
    import hashlib

    with _open_regular(path) as fh:
        return hashlib.file_digest(fh, "sha256").digest()


def _open_regular(path: Path):  # type: ignore[no-untyped-def]
    import stat

    try:
        fh = open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise InputError(f"{path} is not a regular file (a device, a pipe or a folder): not read")
    return fh


def load_json(path: Path) -> object:
    """A record file's JSON, read by the same rules as every entry point (pipelines.core.jsontext)."""
    from pipelines.core.jsontext import JSONTextError, loads

    try:
        return loads(read_bytes(path))
    except JSONTextError as exc:
        raise InputError(f"{path}: {exc}") from exc


def progressbar(label: str, length: int, **options: Any):  # type: ignore[no-untyped-def]
    """A progress bar on standard error, so standard output stays clean for results (options as click's)."""
    return click.progressbar(length=length, label=label, file=sys.stderr, **options)
