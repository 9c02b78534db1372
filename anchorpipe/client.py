"""The agency's client of the anchorpipe intake API (docs/client.md); implemented in pipelines.client."""

from pipelines.client import (
    AsyncClient,
    AuthError,
    Client,
    ClientError,
    ConflictError,
    FieldProblem,
    NotFound,
    Receipt,
    RecordStatus,
    Submission,
    Unavailable,
    ValidationError,
    verify,
)

__all__ = ["AsyncClient", "AuthError", "Client", "ClientError", "ConflictError", "FieldProblem", "NotFound",
           "Receipt", "RecordStatus", "Submission", "Unavailable", "ValidationError", "verify"]
