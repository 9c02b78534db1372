"""Offline verification of a proof, in numbered steps, under the auditor's policy; no I/O.

VALID means: the record is committed in a batch whose root is anchored under a
key the auditor pinned, and every anchor kind the auditor requires verified. A
proof's own claims decide nothing: a proof without anchors, or whose anchors
nothing pinned can check, is :class:`NotAnchored`, never valid.

Each step either passes, adding a line to the report, or raises
:class:`VerificationError` saying what was expected and what was found. What
the auditor pins and requires is the :class:`~pipelines.core.policy.Policy`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

from pipelines.core import merkle
from pipelines.core.anchors import EvmAnchor, TlogAnchor, TsaAnchor
from pipelines.core.checkpoint import Checkpoint, open_signed_checkpoint, parse_checkpoint_text
from pipelines.core.commitment import record_leaf_hash
from pipelines.core.cosignature import Cosignature, WitnessKey, verify_cosignatures
from pipelines.core.evm import Block, verify_evm_receipt
from pipelines.core.logentry import batch_entry
from pipelines.core.note import Verifier, claimed_signers, split_note
from pipelines.core.policy import Policy
from pipelines.core.proof import ANCHORS_MEMBER, BatchInclusion, Proof, parse_proof, parse_proof_head
from pipelines.core.tsa import Stamp, stamped_message, verify_token
from pipelines.errors import InputError, NoTrustedSignature, VerificationError

AnyAnchor = TlogAnchor | TsaAnchor | EvmAnchor
_P = TypeVar("_P")
class NotAnchored(VerificationError):
    """Every check passed, but nothing ties the batch to a key or root the auditor pinned (or a
    required anchor kind is missing): consistent, and still not VALID."""


@dataclass(frozen=True)
class AnchorVerdict:
    """One anchor of a proof: its kind, ``verified`` or ``unchecked``, what it proved (or why not), and the
    time it attests (for external anchors)."""

    kind: str
    verdict: str
    detail: str
    time: str | None = None


@dataclass
class Report:
    """What a verification checked, in order, and what it did not."""

    checks: list[str] = field(default_factory=list)
    content_checked: bool = False
    anchored: dict[str, str] = field(default_factory=dict)  # anchor kind -> what it proved, under which key
    anchors: list[AnchorVerdict] = field(default_factory=list)

    def ok(self, line: str) -> None:
        self.checks.append(line)


def verify_inclusion(proof: Proof, *, content_sha256: bytes | None = None) -> Report:
    """Steps 1-3: the leaf commits to the record (and to ``content_sha256`` if given), under the
    batch root the proof names. Not a verdict: the root itself is unanchored here."""
    report = Report()
    rec = proof.record
    # Step 1: the leaf hash is the commitment to exactly these record fields.
    leaf = record_leaf_hash(rec.agency, rec.id, bytes.fromhex(rec.content_sha256), bytes.fromhex(rec.salt))
    if leaf.hex() != proof.leaf_hash:
        raise VerificationError(f"leaf hash {proof.leaf_hash} does not commit to the record (computed {leaf.hex()})",
                                "leaf")
    report.ok(f"leaf hash commits to agency {rec.agency!r}, record {rec.id!r}")
    # Step 2: the auditor's copy of the record is the one committed to.
    if content_sha256 is not None:
        if content_sha256.hex() != rec.content_sha256:
            raise VerificationError(
                f"record content hashes to {content_sha256.hex()}, the proof commits to {rec.content_sha256}",
                "content")
        report.ok("record content matches content_sha256")
        report.content_checked = True
    # Step 3: the leaf is in the batch under the stated root.
    b = proof.batch
    try:
        merkle.verify_inclusion(b.index, b.size, leaf, [bytes.fromhex(h) for h in b.path], bytes.fromhex(b.root))
    except VerificationError as exc:
        raise VerificationError(str(exc), "batch-path") from None
    report.ok(f"leaf {b.index} of {b.size} is included in batch {b.id} with root {b.root}")
    return report


def verify_proof(proof: Proof, policy: Policy, *, content_sha256: bytes | None = None) -> Report:
    """Verify ``proof`` offline under ``policy``.

    Raises :class:`VerificationError` on the first failed step, and
    :class:`NotAnchored` when every step passed but the batch is not anchored
    under anything pinned or a required anchor kind did not verify.
    """
    report = verify_inclusion(proof, content_sha256=content_sha256)
    check_anchors(proof.anchors, proof.batch, policy, report)
    return report


def check_anchors(anchors: Sequence[AnyAnchor], batch: BatchInclusion, policy: Policy, report: Report) -> None:
    """Step 4 and the verdict: every anchor that something pinned can check must verify; then the policy.

    An anchor that fails a check makes the proof INVALID (a receipt was altered); one that nothing the
    auditor pinned vouches for is listed as unchecked and counts for nothing."""
    logged: list[tuple[int, TlogAnchor]] = []
    for n, anchor in enumerate(anchors):
        try:
            verdict = _check_anchor(anchor, anchors, batch, policy)
        except NoTrustedSignature as exc:
            report.anchors.append(AnchorVerdict(anchor.type, "unchecked", str(exc)))
            continue
        except VerificationError as exc:
            raise VerificationError(f"anchor {n} ({anchor.type}): {exc}", exc.check or anchor.type) from exc
        report.ok(verdict.detail)
        report.anchors.append(verdict)
        report.anchored.setdefault(anchor.type, verdict.detail)
        if isinstance(anchor, TlogAnchor):
            logged.append((n, anchor))
    if policy.witnesses:
        _check_witnesses(logged, policy, report)
    if policy.satisfied(set(report.anchored)):
        return
    if not anchors:
        why = "the proof carries no anchor"
    else:
        missing = sorted(policy.require - set(report.anchored))
        unchecked = [f"{v.kind}: {v.detail}" for v in report.anchors if v.verdict != "verified"]
        why = "; ".join(([f"required anchor kind(s) {missing} did not verify"] if missing else [])
                        + ([f"the policy {policy.expression!r} does not hold for the verified kinds "
                            f"{sorted(report.anchored) or 'none'}"] if policy.expression else []) + unchecked)
    only_witness = bool(report.anchored) and policy.require - set(report.anchored) == {"witness"}
    raise NotAnchored(f"consistent but not anchored under a pinned key or root: {why} ({policy.describe()})",
                      "witness" if only_witness else "anchored")


def _check_witnesses(logged: Sequence[tuple[int, TlogAnchor]], policy: Policy, report: Report) -> None:
    """Step 5: the pinned witnesses' cosignatures on the checkpoints of the verified log receipts. The best
    receipt counts; a quorum of them means every pinned witness that cosigned saw this same log (no split
    view). A cosignature by a pinned witness that does not verify makes the proof INVALID."""
    best: tuple[Cosignature, ...] = ()
    for n, anchor in logged:
        try:
            found = _cosigned(anchor.checkpoint, policy.witnesses)
        except VerificationError as exc:
            raise VerificationError(f"anchor {n} (tlog): {exc}", "witness") from exc
        best = max(best, found, key=len)
    names = ", ".join(c.witness for c in best) or "none"
    if len(best) >= policy.witness_quorum:
        when = datetime.fromtimestamp(max(c.timestamp for c in best), UTC).isoformat().replace("+00:00", "Z")
        detail = (f"the log's checkpoint is cosigned by {len(best)} pinned witness(es) ({names}); quorum "
                  f"{policy.witness_quorum} of {len(policy.witnesses)}: no split view")
        report.ok(detail)
        report.anchors.append(AnchorVerdict("witness", "verified", detail, when))
        report.anchored["witness"] = detail
    else:
        report.anchors.append(AnchorVerdict(
            "witness", "unchecked", f"the log's checkpoint is cosigned by {len(best)} of the pinned witnesses "
            f"({names}); {policy.witness_quorum} required"))


def _unpinned(anchor: TlogAnchor) -> str:
    """Which key signed the checkpoint, as its note says (beside the pinned keys, a wrong pin reads as one)."""
    claimed = claimed_signers(anchor.checkpoint)
    return (f"log {anchor.origin}: its checkpoint is signed by no pinned key (its note says it is signed by "
            f"{', '.join(claimed) or 'no readable key'})")


@lru_cache(maxsize=64)
def _cosigned(note: str, witnesses: tuple[WitnessKey, ...]) -> tuple[Cosignature, ...]:
    return tuple(verify_cosignatures(note, witnesses))


def _check_anchor(anchor: AnyAnchor, anchors: Sequence[AnyAnchor], batch: BatchInclusion, policy: Policy
                  ) -> AnchorVerdict:
    if isinstance(anchor, TlogAnchor):
        if not policy.log_keys:
            raise NoTrustedSignature(f"log {anchor.origin}: no log key pinned")
        try:
            return AnchorVerdict("tlog", "verified", verify_tlog_anchor(anchor, batch, list(policy.log_keys)))
        except NoTrustedSignature:
            raise NoTrustedSignature(_unpinned(anchor)) from None
    cp = _attested(anchor.checkpoint, anchors, batch)
    if isinstance(anchor, TsaAnchor):
        stamp = _verified_token(anchor.token, anchor.checkpoint, policy.tsa_roots)
        when = stamp.gen_time.isoformat().replace("+00:00", "Z")
        return AnchorVerdict("tsa", "verified", f"time-stamped by {stamp.signer} at {when} (pinned TSA root): log "
                             f"{cp.origin!r} at size {cp.size}, which holds the batch", when)
    block = _verified_evm(anchor)
    where = f"block {block.number} ({block.hash}) of chain {block.chain_id}"
    if block.hash in policy.evm_blocks.get(block.chain_id, frozenset()):
        how = "a block hash you pinned"
    elif policy.evm_check is not None and (canonical := policy.evm_check(block)) is not None:
        if not canonical:
            raise VerificationError(f"canonical chain: {where} is not on the chain your node follows", "evm")
        how = "on the canonical chain per your node"
    else:
        raise NoTrustedSignature(f"transaction {anchor.tx_hash} is in {where}; that block hash remains to be "
                                 "checked on the canonical chain (--evm-rpc URL or --evm-trusted-blocks FILE)")
    when = datetime.fromtimestamp(block.timestamp, UTC).isoformat().replace("+00:00", "Z")
    return AnchorVerdict("evm", "verified", f"written to {where} at {when}, {how}: log {cp.origin!r} at size "
                         f"{cp.size}, which holds the batch", when)


# A round's receipts repeat in every proof of every batch it covers: check each once (failures are not cached).
@lru_cache(maxsize=64)
def _verified_token(token: str, note: str, roots: tuple[Any, ...]) -> Stamp:
    try:
        der = base64.b64decode(token, validate=True)
    except ValueError:  # binascii.Error: not base64, or cut short
        raise VerificationError("the TSA token is not valid base64", "tsa") from None
    return verify_token(der, stamped_message(note), roots)


@lru_cache(maxsize=64)
def _verified_evm(anchor: EvmAnchor) -> Block:
    return verify_evm_receipt(anchor, split_note(anchor.checkpoint)[0])


def _attested(note: str, anchors: Sequence[AnyAnchor], batch: BatchInclusion) -> Checkpoint:
    """The checkpoint an external anchor attests, once the batch is shown to be in its tree: by the
    ``tlog`` receipt under that very checkpoint (its signature is not needed: the anchor vouches for it)."""
    cp = parse_checkpoint_text(split_note(note)[0])
    for t in anchors:
        if isinstance(t, TlogAnchor) and t.checkpoint == note:
            _included(t.index, tuple(t.path), cp.size, cp.root, batch)
            return cp
    raise VerificationError("no tlog receipt under the checkpoint this anchor attests: nothing shows the batch is "
                            "in that tree")


@lru_cache(maxsize=64)
def _open_checkpoint(note: str, keys: tuple[Verifier, ...], origin: str | None) -> tuple[Checkpoint, tuple[str, ...]]:
    """Checkpoints repeat across a batch's proofs: verify each signature once (failures are not cached)."""
    cp, signers = open_signed_checkpoint(note, list(keys), origin)
    return cp, tuple(signers)


def _included(index: int, path: tuple[str, ...], size: int, root: bytes, batch: BatchInclusion) -> None:
    """The batch's log entry is leaf ``index`` of the tree (``size``, ``root``)."""
    _entry_included(index, path, size, root, batch.id, batch.root, batch.size, batch.sealed_at)


@lru_cache(maxsize=1024)
def _entry_included(index: int, path: tuple[str, ...], size: int, root: bytes, batch_id: str, batch_root: str,
                    batch_size: int, sealed_at: str) -> None:
    """Every proof of a batch shares its log entry and path: each is checked once (failures are not cached)."""
    entry = batch_entry(batch_id, bytes.fromhex(batch_root), batch_size, sealed_at)
    merkle.verify_inclusion(index, size, merkle.leaf_hash(entry), [bytes.fromhex(h) for h in path], root)


def verify_tlog_anchor(anchor: TlogAnchor, batch: BatchInclusion, log_keys: list[Verifier]) -> str:
    """Check a ``tlog`` receipt: signed checkpoint, then the batch's entry under its root."""
    # 4a: the checkpoint is signed by a pinned key and names the anchor's log.
    try:
        cp, signers = _open_checkpoint(anchor.checkpoint, tuple(log_keys), None)
    except NoTrustedSignature:
        raise
    except VerificationError as exc:
        raise VerificationError(str(exc), "checkpoint-signature") from None
    if cp.origin != anchor.origin:
        raise VerificationError(f"checkpoint origin is {cp.origin!r}, the receipt names {anchor.origin!r}", "origin")
    # 4b, 4c: the log entry is exactly this batch's id, root, size and seal time, at the anchor's index.
    try:
        _included(anchor.index, tuple(anchor.path), cp.size, cp.root, batch)
    except VerificationError as exc:
        raise VerificationError(str(exc), "log-inclusion") from None
    return (f"batch is entry {anchor.index} of log {cp.origin!r} at size {cp.size}, "
            f"checkpoint signed by pinned key {', '.join(signers)}")


def verify_bundle(data: bytes, policy: Policy) -> Report:
    """Audit an archived bundle (one proof a line), as :func:`verify_batch` does for parsed proofs, in
    O(n) hashing: the shared anchors (every line's last member) are parsed and checked once; each line's
    leaf is recomputed from its record; the batch tree is rebuilt once from all leaves, its root compared
    with the batch's, and each proof's path compared with the tree's path at its index (the only path that
    verifies under that root). Raises like :func:`verify_proof`; ProofFormatError names a malformed line."""
    lines = [line for line in data.splitlines() if line.strip()]
    if not lines:
        raise VerificationError("an empty bundle proves nothing")
    first = _bundle_line(0, lines[0], parse_proof)
    b = first.batch
    if b.size != len(lines):  # before anything is sized by what the bundle claims
        raise VerificationError(_miscounted(lines, b.size), "batch-path")
    suffix = lines[0][lines[0].rfind(ANCHORS_MEMBER):]
    same = {"id": b.id, "size": b.size, "root": b.root, "sealed_at": b.sealed_at}
    leaves: list[bytes | None] = [None] * b.size
    paths: list[list[str] | tuple[str, ...]] = [[]] * b.size
    ids: list[str] = [""] * b.size
    for n, line in enumerate(lines):  # proof n is line n + 1
        record, leaf, batch = _bundle_leaf(n, line, suffix, first)
        index = batch["index"]
        if {k: batch[k] for k in same} != same:
            raise VerificationError(f"proof {n} (record {record.id!r}) is of batch {batch['id']} root "
                                    f"{batch['root']}, not {b.id} root {b.root}", "batch-path")
        if not 0 <= index < b.size or leaves[index] is not None:
            raise VerificationError(f"proof {n} (record {record.id!r}): leaf {index} appears twice or is outside "
                                    f"the batch of {b.size}", "batch-path")
        leaves[index], paths[index], ids[index] = leaf, batch["path"], record.id
    _check_batch_tree(leaves, paths, ids, b.root)
    report = Report()
    report.ok(f"all {b.size} records of batch {b.id} (root {b.root}) are included, none missing")
    check_anchors(first.anchors, b, policy, report)
    return report


def _bundle_leaf(n: int, line: bytes, suffix: bytes, first: Proof) -> tuple[Any, bytes, dict[str, Any]]:
    """Proof n of a bundle: its record, its leaf (recomputed, and checked against the leaf hash it states) and
    its batch member; a line laid out as the first is read up to the shared anchors, any other whole."""
    cut = line.rfind(ANCHORS_MEMBER)
    if cut > 0 and line[cut:] == suffix:
        record, leaf_hex, batch = _bundle_line(n, line[:cut] + b"}", parse_proof_head)
    else:  # laid out otherwise: parse it whole and compare its anchors as values
        proof = _bundle_line(n, line, parse_proof)
        if proof.anchors != first.anchors:
            raise VerificationError(f"proof {n} (record {proof.record.id!r}) carries other anchors than proof 0",
                                    "anchored")
        record, leaf_hex, batch = proof.record, proof.leaf_hash, proof.batch.model_dump()
    leaf = record_leaf_hash(record.agency, record.id, bytes.fromhex(record.content_sha256),
                            bytes.fromhex(record.salt))
    if leaf.hex() != leaf_hex:
        raise VerificationError(f"proof {n} (record {record.id!r}): leaf hash {leaf_hex} does not commit to the "
                                f"record (computed {leaf.hex()})", "leaf")
    return record, leaf, batch


#: A bundle short of more leaves than this is reported by count alone (the size is the proofs' claim).
MISSING_NAMED_UP_TO = 1_000


def _missing(present: set[int], size: int) -> str:
    """Which leaves of a batch of ``size`` are not in ``present``: the first ten by index."""
    if size - len(present) > MISSING_NAMED_UP_TO:
        return f"{size - len(present):,} are missing"
    gone = [i for i in range(size) if i not in present]
    shown = ", ".join(map(str, gone[:10])) + (f" and {len(gone) - 10} more" if len(gone) > 10 else "")
    return f"missing leaf {shown}" if len(gone) == 1 else f"missing leaves {shown}"


def _miscounted(lines: list[bytes], size: int) -> str:
    """Why a bundle's line count is not its batch's size, naming the leaves it lacks when they are few."""
    said = f"the bundle has {len(lines)} of the batch's {size} records"
    if len(lines) > size:
        return said + ": some are extra"
    if size - len(lines) > MISSING_NAMED_UP_TO:
        return said + f": {size - len(lines):,} are missing"
    present = set()
    for line in lines:
        try:
            present.add(parse_proof(line).batch.index)
        except VerificationError:  # a malformed line is named later, by the check that reads it
            continue
    return f"{said}: {_missing(present, size)}"


def _check_batch_tree(leaves: list[bytes | None], paths: list[list[str] | tuple[str, ...]], ids: list[str],
                      root: str) -> None:
    """Every leaf of the batch is there, they give its root, and each proof's path is the tree's path."""
    if None in leaves:
        raise VerificationError(f"the bundle has {len(leaves) - leaves.count(None)} of the batch's {len(leaves)} "
                                f"records: {_missing({i for i, leaf in enumerate(leaves) if leaf is not None}, len(leaves))}",
                                "batch-path")
    tree = merkle.Tree(leaves)  # type: ignore[arg-type]
    if tree.root.hex() != root:
        raise VerificationError(f"the batch's leaves give root {tree.root.hex()}, the proofs say {root}",
                                "batch-path")
    for index, (want, got) in enumerate(zip(tree.all_paths(as_hex=True), paths, strict=True)):
        if tuple(got) != want:
            raise VerificationError(f"proof of record {ids[index]!r}: its path does not lead from leaf {index} to "
                                    f"the batch root", "batch-path")


def _bundle_line(n: int, line: bytes, parse: Callable[[bytes], _P]) -> _P:
    try:
        return parse(line)
    except InputError as exc:
        raise type(exc)(f"line {n + 1}: {exc}") from None


def verify_batch(proofs: Sequence[Proof], policy: Policy) -> Report:
    """Audit a whole batch (an archived bundle): every proof verifies, none is missing or extra.

    All proofs must name the same batch (id, root, size, seal time) and carry the
    same anchors, which are checked once; indices must be exactly 0 .. size-1,
    so a dropped or duplicated record fails. Raises like :func:`verify_proof`.
    """
    if not proofs:
        raise VerificationError("an empty bundle proves nothing")
    first = proofs[0]
    seen: set[int] = set()
    for n, proof in enumerate(proofs):
        b = proof.batch
        if (b.id, b.root, b.size, b.sealed_at) != (first.batch.id, first.batch.root, first.batch.size,
                                                    first.batch.sealed_at):
            raise VerificationError(f"proof {n} is of batch {b.id} root {b.root}, not {first.batch.id} "
                                    f"root {first.batch.root}")
        if proof.anchors != first.anchors:
            raise VerificationError(f"proof {n} (record {proof.record.id!r}) carries other anchors than proof 0")
        if b.index in seen:
            raise VerificationError(f"leaf {b.index} appears twice (proof {n})")
        seen.add(b.index)
        try:
            verify_inclusion(proof)
        except VerificationError as exc:
            raise VerificationError(f"proof {n} (record {proof.record.id!r}): {exc}") from exc
    if len(seen) != first.batch.size:
        raise VerificationError(f"the bundle has {len(seen)} of the batch's {first.batch.size} records: "
                                f"{_missing(seen, first.batch.size)}")
    report = Report()
    report.ok(f"all {first.batch.size} records of batch {first.batch.id} (root {first.batch.root}) are included, "
              "none missing")
    check_anchors(first.anchors, first.batch, policy, report)
    return report
