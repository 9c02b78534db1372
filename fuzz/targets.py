"""Coverage-guided fuzz targets (atheris) for what reads hostile bytes: each calls one parser or reader and
lets only the project's own errors through; anything else (a bare ValueError, an IndexError, a hang past
the per-input timeout, a MemoryError) is a crash atheris keeps. Run with ``make fuzz`` (fuzz/README.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pipelines.core.checkpoint import open_checkpoint
from pipelines.core.note import Signer, Verifier
from pipelines.core.proof import parse_proof
from pipelines.core.policy import Policy
from pipelines.core.verify import verify_bundle, verify_proof
from pipelines.core.witness import open_request, parse_request
from pipelines.errors import AnchorpipeError
from pipelines.intake.records import parse_body
from pipelines.ledger.tlog import LogReader, TransparencyLog
from pipelines.storage.local import LocalStore

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "verifier-corpus"
LOG_KEY = Verifier.parse((CORPUS / "trust" / "log.vkey").read_text().strip())
POLICY = Policy(log_keys=(LOG_KEY,))


def proof(data: bytes) -> None:
    """A proof document: parsed, then verified under a pinned log key."""
    try:
        verify_proof(parse_proof(data), POLICY)
    except AnchorpipeError:
        pass


def bundle(data: bytes) -> None:
    """An archived bundle (one proof a line), verified whole as `verify BUNDLE` and `audit` do."""
    try:
        verify_bundle(data, POLICY)
    except AnchorpipeError:
        pass


def checkpoint(data: bytes) -> None:
    """A signed checkpoint note, opened under the pinned key (what `log show`, `monitor` and audits read)."""
    try:
        open_checkpoint(data.decode("utf-8", "replace"), [LOG_KEY])
    except AnchorpipeError:
        pass


class _Tiles:
    """A real log of 300 entries in a folder; each input replaces one of its tiles."""

    def __init__(self) -> None:
        import tempfile

        from pipelines.core.logentry import batch_entry

        self.root = Path(tempfile.mkdtemp(prefix="fuzz-tiles-"))
        signer = Signer.generate("fuzz.example/log")
        log = TransparencyLog.create(LocalStore(self.root), [signer])
        log.append([(f"b{i}", batch_entry(f"b{i}", bytes([i % 256]) * 32, 1, "2026-12-01T00:00:00Z"))
                    for i in range(300)])
        self.reader = LogReader(LocalStore(self.root), [signer.verifier()])
        self.head = self.reader.head()
        self.keys = sorted(p.relative_to(self.root).as_posix() for p in (self.root / "tile").rglob("*") if p.is_file())
        self.saved = {k: (self.root / k).read_bytes() for k in self.keys}

    def __call__(self, data: bytes) -> None:
        if not data:
            return
        key = self.keys[data[0] % len(self.keys)]
        (self.root / key).write_bytes(data[1:])
        try:
            self.reader.check_tiles(self.head)
            list(self.reader.entries(self.head.checkpoint.size))
        except AnchorpipeError:
            pass
        finally:
            (self.root / key).write_bytes(self.saved[key])


def witness_request(data: bytes) -> None:
    """A tlog-witness add-checkpoint body, parsed and opened against the log the witness knows."""
    try:
        open_request(parse_request(data), {LOG_KEY.name: [LOG_KEY]})
    except AnchorpipeError:
        pass


def intake(data: bytes) -> None:
    """A submission body as the API takes it, NDJSON and JSON."""
    for kind in ("application/x-ndjson", "application/json"):
        try:
            parse_body(data, kind, 1000)
        except AnchorpipeError:
            pass


def seeds(name: str) -> list[bytes]:
    """Valid inputs to start from: the corpus's proofs, a bundle of them, their checkpoints, a witness body."""
    proofs = [p.read_bytes() for p in sorted((CORPUS / "proofs").glob("*.json"))]
    notes = [a["checkpoint"].encode() for p in proofs[:3] for a in json.loads(p).get("anchors", [])
             if isinstance(a, dict) and "checkpoint" in a]
    return {
        "proof": proofs,
        "bundle": [b"\n".join(proofs[:3]) + b"\n"],
        "checkpoint": notes,
        "tiles": [b"\x00" + bytes(32 * 44)],
        "witness_request": [b"old 0\n\n" + n for n in notes],
        "intake": [b'{"id": "a/1", "content": {"n": 1}}\n{"id": "b", "sha256": "' + b"ab" * 32 + b'"}\n'],
    }[name]


TARGETS: dict[str, Callable[[], Callable[[bytes], None]]] = {
    "proof": lambda: proof, "bundle": lambda: bundle, "checkpoint": lambda: checkpoint, "tiles": _Tiles,
    "witness_request": lambda: witness_request, "intake": lambda: intake,
}
