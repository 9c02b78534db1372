"""The ``anchorpipe`` command line: one module per command group, sharing ``common``.

Commands raise anchorpipe's own errors and the group catches them once (:class:`Commands`): one
``error:`` line and the exit status of its kind; anything else is a bug and keeps its traceback.
Nothing imports this package; it imports the rest lazily, so the auditor's commands run without the
server extras.
"""

from __future__ import annotations

import os

import click

from pipelines import __version__
from pipelines.cli.common import env_file, fail, fail_with
from pipelines.cli.api import openapi
from pipelines.cli.audit import audit, monitor
from pipelines.cli.config import config, init
from pipelines.cli.demo import demo
from pipelines.cli.log import log
from pipelines.cli.proof import proof
from pipelines.cli.push import push
from pipelines.cli.records import seal, verify
from pipelines.cli.service import agency, auditor, db, dead_letters, key
from pipelines.cli.source import source
from pipelines.cli.webhook import webhook
from pipelines.cli.witness import witness
from pipelines.errors import AnchorpipeError


class Commands(click.Group):
    """The command group that turns the project's errors into one line and an exit status, for every
    command and sub-command (sigstore-python's ``main`` does the same)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except AnchorpipeError as exc:
            fail_with(exc)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="anchorpipe")
def main() -> None:
    """anchorpipe: seal records into Merkle batches, anchor them, verify their proofs.

    Commands that use the service's settings read them from the environment, after
    the file named by ANCHORPIPE_ENV_FILE (or ./.env when there is one): the same
    file honcho and systemd's EnvironmentFile give the services. The environment wins.
    """
    _load_env_file()


def _load_env_file() -> None:
    path = env_file()
    if path is None:
        return
    if not os.path.isfile(path):
        fail(f"ANCHORPIPE_ENV_FILE names {path}, which is not a file")
    try:
        from dotenv import load_dotenv
    except ImportError:  # the auditor's install: its commands read no service settings
        return
    load_dotenv(path, override=False)


for _command in (audit, monitor, openapi, push, seal, verify, demo, log, agency, auditor, key, proof, source, dead_letters, db, config, init,
                 witness, webhook):
    main.add_command(_command)

if __name__ == "__main__":
    main()
