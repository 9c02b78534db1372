"""``anchorpipe audit`` (a whole archive, read-only) and ``anchorpipe monitor`` (following a log)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.cli.common import EXIT_INVALID, endpoint_opt, fail_with, read_bytes
from pipelines.errors import AnchorpipeError, InputError


def pins_options(fn):  # type: ignore[no-untyped-def]
    """The options naming what an auditor pins, shared by audit and monitor."""
    for option in reversed([
        click.option("--log-vkey", "log_vkeys", multiple=True, metavar="VKEY",
                     help="The log's verifier key (text or file). Repeatable; required."),
        click.option("--witness", "witnesses", multiple=True, metavar="VKEY",
                     help="A pinned witness key (text, or a file of them one a line). Repeatable."),
        click.option("--witness-quorum", type=click.IntRange(1), metavar="K",
                     help="Cosignatures of pinned witnesses required (default: a majority of them)."),
    ]):
        fn = option(fn)
    return fn


def load_pins(log_vkeys: tuple[str, ...], witnesses: tuple[str, ...], witness_quorum: int | None,
              tsa_roots: tuple[Path, ...] = (), evm_blocks: Path | None = None, require: tuple[str, ...] = (),
              expression: str | None = None):  # type: ignore[no-untyped-def]
    from pipelines.audit.archive import Pins
    from pipelines.cli.trust import load_evm_blocks, load_witness_keys
    from pipelines.runtime import load_verifiers

    if not log_vkeys:
        raise InputError("give the log's verifier key with --log-vkey: nothing is trusted without it")
    pins = Pins(tuple(v.text() for v in load_verifiers(log_vkeys)),
                tuple(w.text() for w in load_witness_keys(witnesses)), witness_quorum,
                b"".join(read_bytes(p) for p in tsa_roots),
                tuple((c, tuple(h)) for c, h in (load_evm_blocks(evm_blocks) if evm_blocks else {}).items()),
                require, expression)
    pins.policy()  # a bad pin or policy is an error now, not in every worker
    return pins


@click.command()
@click.argument("archive", metavar="ARCHIVE")
@pins_options
@click.option("--tsa-root", "tsa_roots", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PEM file of TSA root certificates you trust. Repeatable.")
@click.option("--evm-trusted-blocks", "evm_blocks", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON file of block hashes you know are canonical.")
@click.option("--require", multiple=True, help="An anchor kind every proof must have verified (tlog, witness, tsa, "
              "evm). Repeatable.")
@click.option("--policy", "expression", metavar="EXPR", help='A rule over the verified kinds, e.g. "tlog and (tsa '
              'or evm)".')
@click.option("--log", "log_location", metavar="LOCATION", help="The log's location (default: ARCHIVE/log).")
@click.option("--checkpoint", "saved", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A checkpoint you saved earlier ('log show --save'): the log must extend it. Repeatable.")
@click.option("--agency", help="Audit this agency's bundles only (the log is still checked whole).")
@click.option("--sample", type=click.IntRange(1), metavar="N",
              help="Verify N proofs drawn at random instead of every one, and say what that shows.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write report.json and report.html (the evidence report) to this folder.")
@click.option("--workers", type=click.IntRange(1), help="Processes verifying bundles (default: one per core).")
@click.option("--restart", is_flag=True, help="Forget what an interrupted audit of this report folder finished.")
@endpoint_opt
def audit(archive: str, log_vkeys: tuple[str, ...], witnesses: tuple[str, ...], witness_quorum: int | None,
          tsa_roots: tuple[Path, ...], evm_blocks: Path | None, require: tuple[str, ...], expression: str | None,
          log_location: str | None, saved: tuple[Path, ...], agency: str | None, sample: int | None,
          report_dir: Path | None, workers: int | None, restart: bool, s3_endpoint: str | None) -> None:
    """Audit a whole archive (a folder, or s3://bucket/prefix with read-only credentials) as an auditor.

    Checks the log (its signed checkpoint, its tiles, consistency with the checkpoints you saved, the
    witnesses' cosignatures), that every batch in the log has its bundle and every bundle is in the log,
    and every proof of every bundle (with its newest anchors) under what you pin and require. The folder
    written by `anchorpipe demo --export DIR` is such an archive. An interrupted audit with --report resumes
    where it stopped. Exit status: 0 everything held, 1 findings (listed, with evidence), 2 unusable input.
    """
    from pipelines.audit.archive import audit_archive
    from pipelines.audit.report import write_report

    try:
        pins = load_pins(log_vkeys, witnesses, witness_quorum, tsa_roots, evm_blocks, require, expression)
        notes = [(str(p), read_bytes(p).decode("utf-8", "replace")) for p in saved]
        state = None
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
            state = report_dir / "audit-state.jsonl"
            if restart and state.exists():
                state.unlink()
        bar = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = click.progressbar(length=total, label="verifying bundles", file=sys.stderr, show_eta=True,
                                        show_pos=True)
                bar.__enter__()
            bar.update(done - bar.pos)

        result = audit_archive(archive, log_location or archive.rstrip("/") + "/log", pins, s3_endpoint=s3_endpoint,
                               agency=agency, sample=sample, saved=notes, workers=workers, state_file=state,
                               progress=progress)
        if bar is not None:
            bar.__exit__(None, None, None)
    except AnchorpipeError as exc:
        fail_with(exc)
    log = result.log
    click.echo(f"log {log['origin']} at size {log['size']:,}: checkpoint signed by a pinned key; {log.get('tiles', '')}")
    if "witnessed" in log:
        w = log["witnessed"]
        click.echo(f"newest cosigned checkpoint: size {w['size']}, cosigned by {len(w['cosigned_by'])} pinned "
                   f"witness(es) {', '.join(w['cosigned_by'])}")
    for c in log.get("consistency", []):
        click.echo(f"consistent with {c['saved']} (size {c['size']})")
    for name, row in sorted(result.per_agency().items()):
        click.echo(f"agency {name}: {row['batches']:,} batches, {row['records']:,} records, {row['valid']:,} valid, "
                   f"{row['failed']:,} failed")
    if result.sample:
        s = result.sample
        click.echo(f"sample: {s['drawn']:,} of {s['of']:,} proofs verified; with 95 % confidence fewer than "
                   f"{s['bad_fraction_below']:.2%} of all proofs are bad")
    for f in result.failures:
        click.echo(f"FINDING: {f['what']}: {f['where']}\n  {f['evidence'].splitlines()[0] if f['evidence'] else ''}")
    if report_dir is not None:
        json_path, html_path = write_report(result, report_dir)
        click.echo(f"report: {html_path} and {json_path}")
    click.echo("PASSED" if result.ok else f"FAILED: {len(result.failures)} finding(s)")
    if not result.ok:
        raise SystemExit(EXIT_INVALID)
