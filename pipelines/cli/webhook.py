"""``anchorpipe webhook ...``: the operator's view of webhook deliveries (reads ANCHORPIPE_DATABASE_URL)."""

from __future__ import annotations

import json

import click

from pipelines.cli.common import echo


def _state():  # type: ignore[no-untyped-def]
    from pipelines.runtime import runtime

    return runtime().state


@click.group()
def webhook() -> None:
    """Agencies register webhooks with the API (POST /v1/webhooks); these commands show and replay them."""


@webhook.command("list")
@click.option("--agency", help="One agency's webhooks only.")
def webhook_list(agency: str | None) -> None:
    """Each webhook as a JSON line: id, agency, URL, events (never its secret)."""
    for h in _state().webhooks(agency):
        echo(json.dumps({"id": h.id, "agency": h.agency, "url": h.url, "events": h.events}))


@webhook.command("dead")
@click.option("--agency", help="One agency's dead letters only.")
def webhook_dead(agency: str | None) -> None:
    """Events that failed every attempt (ANCHORPIPE_WEBHOOK_ATTEMPTS), as JSON lines with their last error."""
    for doc in _state().webhook_events("dead", agency):
        echo(json.dumps(doc))


@webhook.command("replay")
@click.option("--agency", help="Only this agency's dead letters.")
@click.option("--event", "events", multiple=True, type=int, help="Only this event id. Repeatable.")
def webhook_replay(agency: str | None, events: tuple[int, ...]) -> None:
    """Send dead-lettered events again (from the first attempt); the webhooks worker delivers them."""
    n = _state().replay_webhooks(agency, list(events) or None)
    echo(f"{n} event{'s' if n != 1 else ''} to send again")
