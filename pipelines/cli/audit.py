"""``anchorpipe audit`` (a whole archive, read-only) and ``anchorpipe monitor`` (following a log)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipelines.cli.common import EXIT_INVALID, echo, endpoint_opt, progressbar, read_bytes
from pipelines.errors import InputError

if TYPE_CHECKING:
    from pipelines.audit.archive import AuditResult


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
    from pipelines.ledger.keys import load_verifiers

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
@click.option("--pdf", is_flag=True, help="With --report, also report.pdf (printed by a headless Chromium).")
@click.option("--workers", type=click.IntRange(1), help="Processes verifying bundles (default: one per core).")
@click.option("--restart", is_flag=True, help="Forget what an interrupted audit of this report folder finished.")
@endpoint_opt
def audit(archive: str, log_vkeys: tuple[str, ...], witnesses: tuple[str, ...], witness_quorum: int | None,
          tsa_roots: tuple[Path, ...], evm_blocks: Path | None, require: tuple[str, ...], expression: str | None,
          log_location: str | None, saved: tuple[Path, ...], agency: str | None, sample: int | None,
          report_dir: Path | None, pdf: bool, workers: int | None, restart: bool, s3_endpoint: str | None) -> None:
    """Audit a whole archive (a folder, or s3://bucket/prefix with read-only credentials) as an auditor.

    Checks the log (its signed checkpoint, its tiles, consistency with the checkpoints you saved, the
    witnesses' cosignatures), that every batch in the log has its bundle and every bundle is in the log,
    and every proof of every bundle (with its newest anchors) under what you pin and require. The folder
    written by `anchorpipe demo --export DIR` is such an archive. An interrupted audit with --report resumes
    where it stopped. Exit status: 0 everything held, 1 findings (listed, with evidence), 2 unusable input.
    """
    from pipelines.audit.archive import audit_archive
    from pipelines.audit.report import write_report

    pins = load_pins(log_vkeys, witnesses, witness_quorum, tsa_roots, evm_blocks, require, expression)
    notes = [(str(p), read_bytes(p).decode("utf-8", "replace")) for p in saved]
    state = _resume_file(report_dir, restart)
    if "://" not in archive:
        archive = str(Path(archive).resolve())
    with _ProgressBar("verifying bundles") as bar:
        result = audit_archive(archive, log_location or archive.rstrip("/") + "/log", pins, s3_endpoint=s3_endpoint,
                               agency=agency, sample=sample, saved=notes, workers=workers, state_file=state,
                               progress=bar.update)
    _print_findings(result)
    if report_dir is not None:
        json_path, html_path = write_report(result, report_dir)
        echo(f"report: {html_path} and {json_path}")
        if pdf:
            from pipelines.audit.report import print_pdf

            echo(f"report: {print_pdf(html_path)}")
    echo("PASSED" if result.ok else f"FAILED: {len(result.failures)} finding(s)")
    if not result.ok:
        raise SystemExit(EXIT_INVALID)


def _resume_file(report_dir: Path | None, restart: bool) -> Path | None:
    """Where an audit with --report keeps what it finished (forgotten with --restart); None without --report."""
    if report_dir is None:
        return None
    report_dir.mkdir(parents=True, exist_ok=True)
    state = report_dir / "audit-state.jsonl"
    if restart and state.exists():
        state.unlink()
    return state


class _ProgressBar:
    """A progress bar on stderr, drawn from the first report of progress on (a total is known only then)."""

    def __init__(self, label: str) -> None:
        self.label, self.bar = label, None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = progressbar(self.label, total, show_eta=True, show_pos=True)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _print_findings(result: AuditResult) -> None:
    """The audit's lines: the log, its witnesses and consistency, each agency, the sample, every finding."""
    log = result.log
    echo(f"log {log['origin']} at size {log['size']:,}: checkpoint signed by a pinned key; {log.get('tiles', '')}")
    if "witnessed" in log:
        w = log["witnessed"]
        echo(f"newest cosigned checkpoint: size {w['size']}, cosigned by {len(w['cosigned_by'])} pinned "
             f"witness(es) {', '.join(w['cosigned_by'])}")
    for c in log.get("consistency", []):
        echo(f"consistent with {c['saved']} (size {c['size']})")
    for name, row in sorted(result.per_agency().items()):
        echo(f"agency {name}: {row['batches']:,} batches, {row['records']:,} records, {row['valid']:,} valid, "
             f"{row['failed']:,} failed")
    if result.sample:
        s = result.sample
        echo(f"sample: {s['drawn']:,} of {s['of']:,} proofs verified; with 95 % confidence fewer than "
             f"{s['bad_fraction_below']:.2%} of all proofs are bad")
    for f in result.failures:
        echo(f"FINDING: {f['what']}: {f['where']}\n  {f['evidence'].splitlines()[0] if f['evidence'] else ''}")


@click.command()
@click.argument("location", metavar="LOCATION")
@pins_options
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder keeping every checkpoint seen (the evidence) and where the monitor left off.")
@click.option("--interval", default=30.0, show_default=True, type=click.FloatRange(0.05),
              help="Seconds between polls.")
@click.option("--stall", "stall_after", default=3600.0, show_default=True, type=click.FloatRange(0),
              help="Alert when the log has not grown for this many seconds.")
@click.option("--webhook", metavar="URL", help="POST each alert here as JSON ({kind, log, message, evidence, at}).")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve Prometheus metrics on this port (needs the server extras' prometheus-client).")
@click.option("--once", is_flag=True, help="Poll once and exit (for cron): 0 if no alert, 1 otherwise.")
@endpoint_opt
def monitor(location: str, log_vkeys: tuple[str, ...], witnesses: tuple[str, ...], witness_quorum: int | None,
            state_dir: Path, interval: float, stall_after: float, webhook: str | None, metrics_port: int | None,
            once: bool, s3_endpoint: str | None) -> None:
    """Follow the log at LOCATION: verify each new checkpoint's signature, its consistency with the last one
    seen and (with --witness) its cosignatures, keep every checkpoint in --state, and alert on a fork, a bad
    signature, a lost witness quorum or a stall (stderr, --webhook, Sentry with SENTRY_DSN).

    Runs until a fork or a bad signature (exit 1: the log can no longer be trusted; both checkpoints are
    printed as the evidence) or until stopped.
    """
    import os

    from pipelines.audit.monitor import FATAL, monitor_for
    from pipelines.cli.trust import load_witness_keys
    from pipelines.ledger.keys import load_verifiers
    from pipelines.storage import open_store

    if not log_vkeys:
        raise InputError("give the log's verifier key with --log-vkey: nothing is trusted without it")
    mon = monitor_for(open_store(location, s3_endpoint=s3_endpoint), load_verifiers(log_vkeys), state_dir,
                      load_witness_keys(witnesses), witness_quorum, stall_after)
    gauges = _monitor_metrics(metrics_port)
    sentry = _sentry(os.environ.get("SENTRY_DSN"))
    origin = mon.reader.verifiers[0].name
    echo(f"monitoring {origin} at {mon.reader.store.describe()} every {interval:g} s; evidence in {state_dir}",
               err=True)
    while True:
        cp, alerts = mon.poll()
        if cp is not None:
            echo(f"{time.strftime('%H:%M:%S')} size {cp.size} root {cp.root.hex()[:16]}…: "
                       f"{'ok' if not alerts else ', '.join(a.kind for a in alerts)}")
            if gauges:
                gauges["size"].set(cp.size)
        for alert in alerts:
            _raise(alert, origin, webhook, sentry, gauges)
        if any(a.kind in FATAL for a in alerts) or (once and alerts):
            raise SystemExit(EXIT_INVALID)
        if once:
            return
        time.sleep(interval)


def _raise(alert, origin: str, webhook: str | None, sentry: bool, gauges) -> None:  # type: ignore[no-untyped-def]
    import httpx

    echo(f"ALERT {alert.kind}: {alert.message}", err=True)
    if alert.evidence:
        echo(alert.evidence, err=True, nl=not alert.evidence.endswith("\n"))
    if gauges:
        gauges["alerts"].labels(alert.kind).inc()
    if webhook:
        try:
            httpx.post(webhook, json=alert.to_json(origin), timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            echo(f"the webhook failed: {type(exc).__name__}", err=True)
    if sentry:
        import sentry_sdk

        sentry_sdk.capture_message(f"anchorpipe monitor: {alert.kind} on {origin}: {alert.message}", level="error")


def _sentry(dsn: str | None) -> bool:
    if not dsn:
        return False
    try:
        import sentry_sdk  # noqa: F401 - in the server extras only
    except ImportError:
        return False
    from pipelines.ops.monitoring import start_sentry

    # As the services do: nothing about requests, users or frames collected, every event scrubbed (a webhook
    # URL may hold a token in its path).
    start_sentry(dsn)
    return True


def _monitor_metrics(port: int | None):  # type: ignore[no-untyped-def]
    if port is None:
        return None
    try:
        from prometheus_client import Counter, Gauge, start_http_server
    except ImportError:
        raise click.ClickException("--metrics-port needs prometheus-client (pip install 'anchorpipe[server]')") from None
    start_http_server(port, addr="127.0.0.1")
    return {"size": Gauge("anchorpipe_monitor_log_size", "Size of the monitored log's checkpoint"),
            "alerts": Counter("anchorpipe_monitor_alerts", "Alerts raised by the monitor", ["kind"])}
