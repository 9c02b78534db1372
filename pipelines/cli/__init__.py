"""The ``anchorpipe`` command line: one module per command group, sharing ``common``.

Catches only anchorpipe's own errors. Nothing imports this package; it imports
the rest lazily, so the auditor's commands run without the server extras.
"""

from __future__ import annotations

import click

from pipelines import __version__
from pipelines.cli.config import config, init
from pipelines.cli.demo import demo
from pipelines.cli.log import log
from pipelines.cli.proof import proof
from pipelines.cli.records import seal, verify
from pipelines.cli.service import agency, auditor, db, dead_letters, key
from pipelines.cli.source import source


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="anchorpipe")
def main() -> None:
    """anchorpipe: seal records into Merkle batches, anchor them, verify their proofs."""


for _command in (seal, verify, demo, log, agency, auditor, key, proof, source, dead_letters, db, config, init):
    main.add_command(_command)

if __name__ == "__main__":
    main()
