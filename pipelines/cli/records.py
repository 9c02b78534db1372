"""``anchorpipe seal`` and ``anchorpipe verify``: the auditor's side, offline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipelines.cli.common import (
    EXIT_INVALID,
    EXIT_UNUSABLE,
    EXIT_VALID,
    EXIT_NOT_ANCHORED,
    endpoint_opt,
    fail,
    load_json,
    progressbar,
    read_bytes,
    sha256_file,
    vkey_opt,
    echo,
)
from pipelines.core.commitment import check_agency, content_sha256
from pipelines.core.proof import MAX_PROOF_BYTES, parse_proof
from pipelines.core.policy import POLICY_KINDS, Policy
from pipelines.core.verify import NotAnchored, Report, verify_bundle, verify_proof
from pipelines.errors import AnchorpipeError, InputError, ProofFormatError, VerificationError
from pipelines.ledger.keys import load_verifiers


@click.command()
@click.argument("records", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--agency", required=True, help="Agency name (a-z 0-9 . _ -, at most 63).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the proofs; must not exist or be empty.")
@click.option("--log", "log_location", metavar="LOCATION",
              help="Anchor the batch in the built-in log at this folder or s3://bucket/prefix (created if absent).")
@click.option("--log-key", "log_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The log's private key file (from 'anchorpipe log keygen'); needed with --log. "
                   "Repeat to sign with several keys while rotating.")
@endpoint_opt
def seal(records: Path, agency: str, out: Path, log_location: str | None, log_keys: tuple[Path, ...],
         s3_endpoint: str | None) -> None:
    """Seal RECORDS.jsonl into one batch and write a proof per record.

    Each line is {"id": ..., "content": <any JSON>} or {"id": ..., "sha256": "<hex>"}.
    Proofs go to OUT/<percent-encoded id>.json, the batch root to OUT/_batch.json.
    If any line is bad, every bad line is reported and nothing is written.
    With --log, the batch is anchored in the built-in log first and every proof
    carries its signed receipt.
    """
    from pipelines.archive.files import check_out_dir, write_proofs
    from pipelines.core.batch import seal_records
    from pipelines.intake.records import read_jsonl
    from pipelines.ledger.keys import open_log

    check_agency(agency)
    check_out_dir(out)
    if (log_location is None) != (not log_keys):
        raise InputError("--log and --log-key go together")
    log = open_log(log_location, log_keys, s3_endpoint, create=True) if log_location else None
    with records.open("rb") as fh, progressbar("reading", records.stat().st_size) as bar:
        inputs = read_jsonl(fh, progress=bar.update)
    batch = seal_records(agency, inputs)
    anchors = list(log.anchor([batch.head]).values()) if log else []
    with progressbar("writing proofs", batch.size) as bar:
        write_proofs(batch, out, anchors=anchors, progress=bar.update)
    echo(f"sealed {batch.size} records into batch {batch.id}")
    echo(f"root {batch.root.hex()}")
    if anchors:
        echo(f"anchored as entry {anchors[0].index} of log {anchors[0].origin}")
    echo(f"proofs in {out}")


@click.command()
@click.argument("proof_file", metavar="PROOF.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--record", "record", type=click.Path(dir_okay=False, path_type=Path),
              help="The record's content as JSON; its RFC 8785 canonical SHA-256 must match.")
@click.option("--record-bytes", "record_bytes", type=click.Path(dir_okay=False, path_type=Path),
              help="A file whose raw bytes' SHA-256 must match (for records sealed by sha256).")
@vkey_opt
@click.option("--tsa-root", "tsa_roots", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PEM file of time-stamping authority root certificates you trust. Repeatable.")
@click.option("--evm-rpc", "evm_rpc", metavar="URL",
              help="A node you trust (your own, or a provider's): asked whether each EVM anchor's block is on "
                   "the canonical chain.")
@click.option("--evm-trusted-blocks", "evm_blocks", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON file of block hashes you know are canonical ({\"chain_id\": N, \"blocks\": [{\"number\": "
                   "n, \"hash\": h}]}), in place of --evm-rpc.")
@click.option("--witness", "witnesses", multiple=True, metavar="VKEY",
              help="A pinned witness key (the text, or a file of them one a line, like witnesses.vkeys). Repeatable.")
@click.option("--witness-quorum", "witness_quorum", type=click.IntRange(1), metavar="K",
              help="How many pinned witnesses must have cosigned the log's checkpoint (default: a majority of them).")
@click.option("--require", "require", multiple=True, type=click.Choice(sorted(POLICY_KINDS)),
              help="An anchor kind that must verify under what you pinned (witness: the quorum of cosignatures). "
                   "Repeatable. Without it (or --policy), any one verified anchor suffices.")
@click.option("--policy", "expression", metavar="EXPR",
              help='A rule over the verified anchor kinds, e.g. "tlog and witness and (tsa or evm)".')
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write the verdict as an evidence report: report.json and a self-contained report.html.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the verdict as one JSON object (outcome, the failed check's name, every check and anchor); "
                   "same exit status.")
def verify(proof_file: Path, record: Path | None, record_bytes: Path | None, log_vkeys: tuple[str, ...],
           tsa_roots: tuple[Path, ...], evm_rpc: str | None, evm_blocks: Path | None, witnesses: tuple[str, ...],
           witness_quorum: int | None, require: tuple[str, ...], expression: str | None, quiet: bool,
           report_dir: Path | None, as_json: bool) -> None:
    """Verify PROOF.json offline (or a whole batch: an archived BATCH.ndjson bundle).

    Checks the leaf commitment, the path to the batch root, and every anchor
    receipt against what you pin: log keys (--log-vkey), TSA roots (--tsa-root),
    canonical EVM blocks (--evm-trusted-blocks, or a node you trust with
    --evm-rpc), witness keys (--witness, with --witness-quorum: a quorum of
    them must have cosigned the log's checkpoint). VALID only when the batch is anchored under something pinned
    and your policy (--require, --policy) holds: the proof's own claims decide
    nothing. Every anchor is listed with its verdict and the time it attests.
    For a bundle, every proof, and that no record of the batch is missing.

    Exit status: 0 valid; 1 invalid (the failed check is printed); 2 unusable
    input; 3 consistent but not anchored under what you pinned.
    """
    report: Report | None = None
    outcome, check, message, code = "valid", None, "", EXIT_VALID
    try:
        policy = _pinned_policy(log_vkeys, tsa_roots, evm_rpc, evm_blocks, witnesses, witness_quorum, require,
                                expression)
        if proof_file.suffix == ".ndjson":
            if record or record_bytes:
                raise InputError("--record and --record-bytes go with one proof, not a bundle")
            report = _verify_bundle(proof_file, policy)
        else:
            report = _verify_one(proof_file, record, record_bytes, policy)
    except NotAnchored as exc:
        outcome, check, message, code = "not-anchored", exc.check, f"NOT VALID: {exc}", EXIT_NOT_ANCHORED
    except VerificationError as exc:
        outcome, check, message, code = "invalid", exc.check, f"INVALID: {exc}", EXIT_INVALID
    except AnchorpipeError as exc:
        check = "format" if isinstance(exc, ProofFormatError) else None
        outcome, message, code = "unusable", str(exc), EXIT_UNUSABLE
    verdict = {"valid": code == EXIT_VALID, "outcome": outcome, "check": check, "message": message,
               "checks": report.checks if report else [], "content_checked": bool(report and report.content_checked),
               "anchors": [vars(v) for v in report.anchors] if report else []}
    if report_dir is not None:
        from pipelines.audit.report import write_verdict

        write_verdict(verdict, str(proof_file), policy.describe() if code != EXIT_UNUSABLE or report else "",
                      report_dir)
    if as_json:
        echo(json.dumps(verdict))
        raise SystemExit(code)
    if code != EXIT_VALID:
        fail(message, code)
    assert report is not None
    if not quiet:
        _print_valid(report, policy, bundle=proof_file.suffix == ".ndjson")


def _pinned_policy(log_vkeys: tuple[str, ...], tsa_roots: tuple[Path, ...], evm_rpc: str | None,
                   evm_blocks: Path | None, witnesses: tuple[str, ...], witness_quorum: int | None,
                   require: tuple[str, ...], expression: str | None) -> Policy:
    """The auditor's policy from the pins given on the command line (InputError for one that cannot be read)."""
    from pipelines.cli.trust import canonical_check, load_evm_blocks, load_tsa_roots, load_witness_keys

    return Policy.of(load_verifiers(log_vkeys), require, tsa_roots=load_tsa_roots(tsa_roots),
                     evm_blocks=load_evm_blocks(evm_blocks) if evm_blocks else None,
                     evm_check=canonical_check(evm_rpc) if evm_rpc else None, expression=expression,
                     witnesses=load_witness_keys(witnesses), witness_quorum=witness_quorum)


def _print_valid(report: Report, policy: Policy, *, bundle: bool) -> None:
    """A VALID verdict: every check passed, what was not checked, and what anchors it."""
    for line in report.checks:
        echo(f"ok: {line}")
    if not bundle and not report.content_checked:
        echo("NOT CHECKED: the record's content (give --record or --record-bytes)")
    for v in report.anchors:
        if v.verdict != "verified":
            echo(f"anchor {v.kind}: UNCHECKED: {v.detail}")
    echo(f"anchored: {', '.join(sorted(report.anchored))} ({policy.describe()})")
    echo("VALID")


def _verify_bundle(path: Path, policy: Policy) -> Report:
    try:
        return verify_bundle_bytes(read_bytes(path), policy)
    except ProofFormatError as exc:
        raise ProofFormatError(f"{path} {exc}") from exc


def verify_bundle_bytes(data: bytes, policy: Policy) -> Report:
    """Verify an archived bundle (one proof a line); ProofFormatError naming the line of a malformed one."""
    return verify_bundle(data, policy)


def _verify_one(proof_file: Path, record: Path | None, record_bytes: Path | None, policy: Policy) -> Report:
    proof = parse_proof(read_bytes(proof_file, MAX_PROOF_BYTES))
    if record is not None and record_bytes is not None:
        raise InputError("give --record or --record-bytes, not both")
    digest = None
    if record is not None:
        digest = content_sha256(load_json(record))
    elif record_bytes is not None:
        digest = sha256_file(record_bytes)
    return verify_proof(proof, policy, content_sha256=digest)
