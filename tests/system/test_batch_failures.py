"""Failures stay with their batch: a permanent error dead-letters that batch once and the others flow."""

from __future__ import annotations

from pipelines.archive import bundle
from pipelines.core.logentry import batch_entry
import pytest

from tests.system.test_stages import accept, log_batch_ids, pipe  # noqa: F401  (pipe is a fixture)


def _anchored_batches(p, n: int) -> list[str]:
    for k in range(n):
        accept(p, f"agency-{k}", 5)
    p.cfg = p.cfg.model_copy(update={"batch_max": 5})
    sealed = p.seal_ripe()
    assert len(sealed) == n
    assert p.anchor(sealed) == sealed
    return sealed


def test_a_batch_whose_bundle_conflicts_fails_alone(pipe):  # noqa: F811
    batches = _anchored_batches(pipe, 3)
    bad = batches[1]
    agency = pipe.state.load_batch(bad).commitments[0].agency
    pipe.store.put_immutable(bundle.bundle_key(agency, bad), b"someone else's bytes\n")
    done = pipe.archive(batches)
    assert sorted(done) == sorted(b for b in batches if b != bad)
    assert pipe.state.batch(bad).state == "failed"
    assert [d["args"] for d in pipe.state.dead_letters()] == [[bad]]
    # The failed batch left its stage: the reconciler will not send it again, and re-runs change nothing.
    assert bad not in pipe.state.in_stage("anchored")
    assert pipe.archive(batches) == []
    assert len(pipe.state.dead_letters()) == 1
    assert pipe.state.archived_records() == 10


def test_a_batch_the_log_refuses_fails_alone_and_the_rest_is_anchored(pipe):  # noqa: F811
    for k in range(3):
        accept(pipe, f"agency-{k}", 5)
    pipe.cfg = pipe.cfg.model_copy(update={"batch_max": 5})
    sealed = pipe.seal_ripe()
    bad = sealed[2]
    # The log already holds this batch id with another entry (a restored backup, a bug): permanent.
    pipe.ledger.append([(bad, batch_entry(bad, b"\x07" * 32, 1, "2026-01-01T00:00:00Z"))])
    anchored = pipe.anchor(sealed)
    assert sorted(anchored) == sorted(sealed[:2])
    assert pipe.state.batch(bad).state == "failed"
    assert [d["args"] for d in pipe.state.dead_letters()] == [[bad]]
    assert pipe.anchor([]) == [] and len(pipe.state.dead_letters()) == 1
    assert sorted(pipe.archive(anchored)) == sorted(anchored)
    assert log_batch_ids(pipe).count(bad) == 1


def test_a_fault_of_the_deployment_fails_no_batch(pipe):  # noqa: F811
    """A sequencer without its key (or any error that is not one batch's) leaves every batch where it was."""
    from pipelines.errors import ConfigError

    for k in range(2):
        accept(pipe, f"agency-{k}", 5)
    sealed = pipe.seal_ripe()

    def no_key():
        raise ConfigError("ANCHORPIPE_LOG_KEY_FILE is required to anchor batches")

    pipe.ledger = no_key
    with pytest.raises(ConfigError):
        pipe.anchor(sealed)
    assert [pipe.state.batch(b).state for b in sealed] == ["sealed", "sealed"]
    assert pipe.state.dead_letters() == []


def test_one_agencys_backlog_does_not_hold_up_another(pipe, monkeypatch):  # noqa: F811
    pipe.cfg = pipe.cfg.model_copy(update={"batch_max": 10})
    accept(pipe, "agency-big", 500)
    accept(pipe, "agency-small", 3)
    turns: list[str] = []
    real = pipe._seal_next

    def recorded(agency, sealed):
        turns.append(agency)
        return real(agency, sealed)

    monkeypatch.setattr(pipe, "_seal_next", recorded)
    pipe.seal_ripe()
    assert set(turns[:2]) == {"agency-big", "agency-small"}  # every agency gets a batch in the first pass
    assert turns.count("agency-big") == 51 and pipe.state.pending_depth() == 0
