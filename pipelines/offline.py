"""``anchorpipe seal``: seal one batch offline and write a proof file per record."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from urllib.parse import quote

from pipelines.core.batch import Commitment, SealedBatch
from pipelines.core.commitment import SALT_SIZE, check_agency
from pipelines.core.logentry import batch_entry
from pipelines.errors import InputError
from pipelines.records import RecordInput
from pipelines.tlog import TransparencyLog

MAX_FILENAME = 200
BATCH_FILE = "_batch.json"


def proof_filename(record_id: str) -> str:
    """The file name of a record's proof: ``<id percent-encoded>.json``.

    Every byte outside ``A-Z a-z 0-9 - _ . ~`` is percent-encoded (UTF-8, upper
    hex), and so is a leading ``.`` or ``_`` (names starting with ``_`` are
    anchorpipe's own, such as ``_batch.json``); a name longer than 200
    characters becomes ``_sha256-<hex of SHA-256 of the UTF-8 id>.json``.
    """
    name = quote(record_id, safe="")
    if name[0] in "._":
        name = f"%{ord(name[0]):02X}" + name[1:]
    if len(name) > MAX_FILENAME:
        name = "_sha256-" + sha256(record_id.encode()).hexdigest()
    return name + ".json"


def now_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_batch_id(sealed_at: str) -> str:
    compact = sealed_at.replace("-", "").replace(":", "")
    return f"{compact}-{secrets.token_hex(4)}"


def seal_records(agency: str, records: list[RecordInput]) -> SealedBatch:
    """Seal ``records`` of one agency into a new batch with fresh random salts."""
    check_agency(agency)
    sealed_at = now_timestamp()
    commitments = [Commitment(agency, r.id, r.content_sha256, secrets.token_bytes(SALT_SIZE)) for r in records]
    return SealedBatch(new_batch_id(sealed_at), sealed_at, commitments)


def anchor_in_log(batch: SealedBatch, log: TransparencyLog) -> dict[str, object]:
    """Append the batch's entry to the built-in log and return its receipt."""
    log.append([(batch.id, batch_entry(batch.id, batch.root, batch.size, batch.sealed_at))])
    return log.receipt(batch.id, log.head())


def batch_summary(batch: SealedBatch) -> dict[str, object]:
    return {
        "format": "anchorpipe.batch/1",
        "id": batch.id,
        "size": batch.size,
        "root": batch.root.hex(),
        "sealed_at": batch.sealed_at,
    }


def check_out_dir(out: Path) -> None:
    """Refuse an output folder that exists and is not empty (nothing is overwritten)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"output folder {out} exists and is not empty")


def write_proofs(
    batch: SealedBatch,
    out: Path,
    anchors: list[dict[str, object]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write every proof and ``_batch.json`` into ``out``, all or nothing.

    The files go to a hidden sibling folder first; renaming it to ``out`` is the
    commit point, so a crash leaves no partial ``out`` behind.
    """
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        for i in range(batch.size):
            name = proof_filename(batch.commitments[i].record_id)
            doc = batch.proof(i, anchors)
            (staging / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            if progress is not None:
                progress(1)
        (staging / BATCH_FILE).write_text(json.dumps(batch_summary(batch), indent=2) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)  # commit point
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
