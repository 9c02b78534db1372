"""Proof folders (what ``anchorpipe seal`` writes): one JSON file per record and ``_batch.json``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from hashlib import sha256
from pathlib import Path
from urllib.parse import quote

from pipelines.core.anchors import Anchor
from pipelines.core.batch import SealedBatch
from pipelines.errors import InputError

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
    anchors: Sequence[Anchor] = (),
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
        for commitment, doc in zip(batch.commitments, batch.proofs(anchors), strict=True):
            name = proof_filename(commitment.record_id)
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
