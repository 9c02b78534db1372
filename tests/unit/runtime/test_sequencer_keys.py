"""The runtime opens the log for sequencing with every key of its key file, and closes the file."""

from __future__ import annotations

import warnings

from pipelines.core.note import Signer
from tests.support.runtimes import offline_runtime


def test_the_sequencer_closes_its_key_file(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = offline_runtime(tmp_path, Signer.generate("example.gov/log").text() + "\n").sequencer
        assert log.head().checkpoint.size == 0
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_the_sequencer_signs_with_every_key_of_a_rotation_file(tmp_path):
    old, new = Signer.generate("example.gov/log"), Signer.generate("example.gov/log")
    log = offline_runtime(tmp_path, f"{old.text()}\n{new.text()}\n").sequencer
    note = log.head().note
    for key in (old, new):  # a proof verifies under either pinned key while auditors move over
        from pipelines.core.checkpoint import open_checkpoint

        assert open_checkpoint(note, [key.verifier()], "example.gov/log").size == 0
