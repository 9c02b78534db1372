"""A log's client of one C2SP tlog-witness: ``add-checkpoint`` over HTTP, answers checked before use.

A 409 with ``text/x.tlog.size`` raises :class:`WitnessConflict` with the size the
witness holds (the caller retries with a proof from there); a network failure, a
timeout, 429 or 5xx a transient :class:`WitnessError`; 403, 404, 422 and other
answers a permanent one (the witness does not know the log, or refuses it: an
operator must look). A cosignature is returned only once it verifies under the
witness's pinned key.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from pipelines.core.cosignature import WitnessKey, add_signature_lines, verify_cosignatures
from pipelines.core.note import SIG_PREFIX
from pipelines.core.witness import SIZE_CONTENT_TYPE, AddCheckpoint
from pipelines.errors import VerificationError
from pipelines.ledger import WitnessConflict, WitnessError


class WitnessClient:
    """The :class:`~pipelines.ledger.Witness` port over C2SP tlog-witness HTTP."""

    def __init__(self, url: str, key: WitnessKey, timeout: float = 5.0) -> None:
        self.url, self.key = url.rstrip("/"), key
        self.name = key.name
        self._http = httpx.Client(timeout=timeout, headers={"content-type": "text/plain; charset=utf-8"})

    def __repr__(self) -> str:
        return f"WitnessClient({self.name!r}, {self.where})"

    @property
    def where(self) -> str:
        """The witness's scheme, host and port: what may be shown (never credentials, a path or a query)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def add_checkpoint(self, old: int, proof: Sequence[bytes], note: str) -> str:
        """Ask for a cosignature of the signed checkpoint ``note``, extending the ``old`` size the witness
        holds by consistency ``proof``; return the witness's verified signature line(s)."""
        body = AddCheckpoint(old, tuple(proof), note).body()
        where = self.where
        try:
            resp = self._http.post(f"{self.url}/add-checkpoint", content=body)
        except httpx.HTTPError as exc:
            raise WitnessError(f"witness {self.name} at {where}: {type(exc).__name__}", transient=True) from None
        if resp.status_code == 409 and resp.headers.get("content-type", "").startswith(SIZE_CONTENT_TYPE):
            text = resp.text.strip()
            if not text.isdigit():
                raise WitnessError(f"witness {self.name} answered 409 with a malformed size", status=409)
            raise WitnessConflict(self.name, int(text))
        if resp.status_code != 200:
            detail = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
            raise WitnessError(f"witness {self.name} at {where} answered {resp.status_code}: {detail}",
                               status=resp.status_code, transient=resp.status_code in (429, 502, 503, 504))
        lines = [line + "\n" for line in resp.text.splitlines() if line.startswith(SIG_PREFIX + self.name + " ")]
        mine = []
        for line in lines:
            try:
                if verify_cosignatures(add_signature_lines(note, [line]), [self.key]):
                    mine.append(line)
            except VerificationError as exc:
                raise WitnessError(f"witness {self.name} answered a bad cosignature: {exc}") from None
        if not mine:
            raise WitnessError(f"witness {self.name} answered no cosignature by its pinned key {self.key.text()}")
        return mine[0]

    def close(self) -> None:
        self._http.close()
