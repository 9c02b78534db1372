"""The one error tree of anchorpipe.

Every error the project raises on purpose derives from :class:`AnchorpipeError`.
Adapters translate foreign exceptions (boto3, redis, HTTP) into this tree with
``raise ... from exc`` and say whether a retry may help (``transient``).
"""

from __future__ import annotations


class AnchorpipeError(Exception):
    """Base of every error anchorpipe raises on purpose."""

    #: True when retrying the same operation later may succeed.
    transient: bool = False


class InputError(AnchorpipeError):
    """Input that anchorpipe cannot use: malformed, out of range or missing."""


class RecordError(InputError):
    """One or more records were rejected; ``problems`` lists ``(position, message)``."""

    def __init__(self, problems: list[tuple[int, str]], what: str = "record") -> None:
        self.problems = problems
        shown = "; ".join(f"{what} {pos}: {msg}" for pos, msg in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} bad {what}(s): {shown}{more}")


class ProofFormatError(InputError):
    """A proof document does not parse into proof format v1."""


class VerificationError(AnchorpipeError):
    """A well-formed proof or receipt does not verify; the message says which check failed."""


class StorageError(AnchorpipeError):
    """The archive or log storage failed; ``transient`` says whether to retry."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ConflictError(StorageError):
    """An immutable object already exists with different bytes, or a compare-and-swap lost."""


class ConfigError(AnchorpipeError):
    """A setting is missing or invalid; the message names it."""
