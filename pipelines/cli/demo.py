"""``anchorpipe demo``: the main job on embedded defaults, online (services) or offline."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.common import progressbar


@click.command()
@click.option("--records", default=10_000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="How many generated records to push through.")
@click.option("--export", "export", type=click.Path(file_okay=False, path_type=Path),
              help="Keep every proof, the log and its verifier key (log.vkey) in this folder, and what an auditor "
                   "pins for the witnesses and external anchors: witnesses.vkeys, tsa-roots.pem and evm-blocks.json.")
@click.option("--log-only", is_flag=True, help="Anchor in the built-in log only: no local TSA, EVM node or witnesses.")
@click.option("--federation", is_flag=True,
              help="Three agencies' logs, each witnessed by the two others' witnesses; every proof verified with a "
                   "quorum of 2 cosignatures. With --export: one folder per agency, and witnesses.vkeys.")
@click.option("--offline", is_flag=True, help="Seal and anchor in-process, with no services (no database, Redis, S3 or Celery).")
@click.option("--batch-size", default=1_000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="With --offline or --federation: records per sealed batch.")
def demo(records: int, export: Path | None, log_only: bool, federation: bool, offline: bool, batch_size: int) -> None:
    """Run the main job on embedded defaults and verify every proof.

    Starts a private PostgreSQL, Redis, an S3 server, a time-stamping authority
    (OpenSSL), an EVM node (anvil), three witnesses, the API, workers and beat;
    pushes generated records through the HTTP API; waits for every proof and its
    upgrade with witness cosignatures, TSA and EVM receipts; fetches and verifies
    them as an auditor requiring the log, a quorum of 2 witnesses, the TSA and
    the chain; prints rates and latencies; stops everything.
    """
    if export is not None:
        from pipelines.archive.files import check_out_dir

        check_out_dir(export)
    if federation:
        from pipelines.demo.federation import run_federation

        run_federation(records, batch_size, export, click.echo, progressbar)
    elif offline:
        from pipelines.demo.offline import run_demo as run_offline

        run_offline(records, batch_size, export, click.echo, progressbar)
    else:
        from pipelines.demo.online import run_demo

        run_demo(records, export, click.echo, progressbar, anchors=not log_only)
