"""The one error tree of anchorpipe.

Every error the project raises on purpose derives from :class:`AnchorpipeError`.
Adapters translate foreign exceptions (boto3, redis, HTTP) into this tree with
``raise ... from exc`` and say whether a retry may help (``transient``).
"""

from __future__ import annotations

from dataclasses import dataclass


class AnchorpipeError(Exception):
    """Base of every error anchorpipe raises on purpose."""

    #: True when retrying the same operation later may succeed.
    transient: bool = False


class InputError(AnchorpipeError):
    """Input that anchorpipe cannot use: malformed, out of range or missing."""


class FieldError(InputError):
    """One record is invalid because of ``field`` (id, content, sha256, or record for its shape)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Problem:
    """Where one input went wrong: ``position`` (a 0-based index in a request, or a 1-based line
    number in a file, as the raiser says), the ``field`` at fault, and a message for people."""

    position: int
    field: str
    message: str


class RecordError(InputError):
    """One or more records were rejected; ``problems`` names each one. Nothing of the input was kept."""

    def __init__(self, problems: list[Problem], what: str = "record") -> None:
        self.problems = problems
        self.what = what
        shown = "; ".join(f"{what} {p.position}: {p.message}" for p in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} bad {what}(s): {shown}{more}")


class ConflictRecord(InputError):
    """A record id is already stored with different content."""

    def __init__(self, record_id: str) -> None:
        super().__init__(f"record {record_id!r} was already accepted with different content")
        self.record_id = record_id


class ProofFormatError(InputError):
    """A proof document does not parse into proof format v1."""


class VerificationError(AnchorpipeError):
    """A well-formed proof or receipt does not verify; the message says which check failed, and ``check``
    names it for machines (``leaf``, ``content``, ``batch-path``, ``checkpoint-signature``, ``origin``,
    ``log-inclusion``, ``tsa``, ``evm``, ``witness``, ``anchored``; see tests/data/verifier-corpus)."""

    def __init__(self, message: str, check: str | None = None) -> None:
        super().__init__(message)
        self.check = check


class NoTrustedSignature(VerificationError):
    """Signed by no key or root the reader pinned (a note's signatures, a TSA token's certificate chain, an
    EVM block nobody pinned): nothing pinned vouches for it, so it proves nothing, and disproves nothing."""


class BadSignature(VerificationError):
    """A signature by a pinned key does not verify: what it signed was altered, or it was forged."""


class RateLimited(AnchorpipeError):
    """An agency sent more records than its rate limit allows; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int, whole: bool = False) -> None:
        super().__init__(message)
        self.retry_after, self.whole = retry_after, whole


class StorageError(AnchorpipeError):
    """The archive, log or state storage failed; ``transient`` says whether to retry."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ConflictError(StorageError):
    """An immutable object already exists with different bytes, or a compare-and-swap lost."""


class UnusableObject(StorageError):
    """An object that cannot be read as given: larger than its format allows, or in a folder, not a regular
    file inside it (a symbolic link, a device, a pipe). Never transient; the message names the object."""


class StateError(StorageError):
    """The pipeline's own state store (PostgreSQL, the system of record) failed; always transient."""


class PersistenceError(StorageError):
    """The state store would not keep accepted records across a restart (PostgreSQL with fsync,
    synchronous_commit or full_page_writes off)."""


class LogStateError(AnchorpipeError):
    """The stored log disagrees with its checkpoint, or is missing: refuse to go on."""


class ConfigError(AnchorpipeError):
    """A setting is missing or invalid; the message names it."""


#: The status a service process exits with when it cannot start on its configuration (sysexits.h's
#: EX_CONFIG): the systemd units do not restart a process that exits with it.
EXIT_CONFIG = 78
#: ... and when a dependency stayed unreachable while it waited (EX_TEMPFAIL): restarted, it may succeed.
EXIT_UNAVAILABLE = 75
