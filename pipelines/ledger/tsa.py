"""Asking an RFC 3161 time-stamping authority to stamp a checkpoint (RFC 3161 section 3.4, over HTTP).

The request (built by rfc3161-client) carries a fresh nonce and asks for the
TSA's certificate; the answer is checked before it becomes a receipt: a
granted response, our nonce, SHA-256 of our checkpoint, and, when the operator
configured the TSA's roots, a signature that verifies under them. A TSA that
is down, slow or answers garbage raises a transient :class:`StorageError`: the
pipeline goes on with the log anchor and asks again later.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import httpx
import rfc3161_client

from pipelines.core.anchors import TsaAnchor
from pipelines.core.tsa import stamped_message, token_of, verify_token
from pipelines.errors import NoTrustedSignature, StorageError, VerificationError


class TsaClient:
    def __init__(self, url: str, roots: Sequence[Any] = (), timeout: float = 10.0) -> None:
        self.url, self.roots, self.timeout = url, list(roots), timeout

    def __repr__(self) -> str:
        return f"TsaClient({self.url})"

    def timestamp(self, checkpoint_note: str) -> TsaAnchor:
        """A ``tsa`` receipt for the signed checkpoint note."""
        message = stamped_message(checkpoint_note)
        request = rfc3161_client.TimestampRequestBuilder().data(message).hash_algorithm(
            rfc3161_client.HashAlgorithm.SHA256).nonce(nonce=True).cert_request(
            cert_request=True).build()
        try:
            resp = httpx.post(self.url, content=request.as_bytes(), timeout=self.timeout,
                              headers={"Content-Type": "application/timestamp-query"})
        except httpx.HTTPError as exc:
            raise StorageError(f"TSA {self.url}: {type(exc).__name__}", transient=True) from None
        if resp.status_code != 200:
            raise StorageError(f"TSA {self.url} answered HTTP {resp.status_code}", transient=True)
        try:
            token = token_of(resp.content)
            parsed = rfc3161_client.decode_timestamp_response(resp.content)
            if parsed.tst_info.nonce != request.nonce:
                raise VerificationError("the answer does not carry our nonce (a replayed or misrouted token)")
            try:
                verify_token(token, message, self.roots)
            except NoTrustedSignature:
                if self.roots:  # configured roots must vouch for it; with none, the imprint was still checked
                    raise
        except VerificationError as exc:
            raise StorageError(f"TSA {self.url} answered with something unusable: {exc}", transient=True) from None
        return TsaAnchor(type="tsa", tsa=self.url, checkpoint=checkpoint_note, token=base64.b64encode(token).decode())
