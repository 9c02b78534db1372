"""One reading of text for every entry point: the same bytes give the same digest or the same refusal; record ids
neither normalised nor allowed to carry what a terminal or a bidi renderer would obey."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings

from pipelines.cli.common import load_json
from pipelines.errors import InputError, RecordError
from pipelines.intake.records import parse_record, read_jsonl
from tests.support.inputs import BAD_RECORDS, json_values, via_api, via_pull, via_seal, via_verify


def test_verify_record_reads_the_record_file_by_the_same_rules(tmp_path: Path):
    (tmp_path / "rec.json").write_text('{"n": 123456789012345678901234567890}')
    with pytest.raises(InputError, match="outside"):
        load_json(tmp_path / "rec.json")


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_a_pulled_line_outside_the_rules_becomes_a_quarantinable_item(name):
    with pytest.raises(InputError):  # refused when read or when validated: never an exception of another kind
        via_pull(BAD_RECORDS[name])


def test_record_ids_are_not_unicode_normalised():
    """Documented: ids are compared as given, so NFC and NFD spellings are two records."""
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    records = read_jsonl([json.dumps({"id": i, "content": 1}).encode() for i in (nfc, nfd)])
    assert [r.id for r in records] == [nfc, nfd]


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_every_entry_point_reads_the_same_text_to_the_same_digest_or_refuses_it(value, tmp_path_factory):
    line = '{"id": "r", "content": ' + json.dumps(value, allow_nan=True) + "}"
    tmp = tmp_path_factory.mktemp("v")
    outcomes = []
    for read in (via_api, via_seal, via_pull, lambda text: via_verify(text, tmp)):
        try:
            outcomes.append(read(line).hex())
        except (InputError, RecordError):
            outcomes.append("refused")
    assert len(set(outcomes)) == 1, outcomes


@pytest.mark.parametrize("bad", ["id-\u202eexe.pdf", "a\u2066b", "x\u0085y", "csi\u009b31m"])
def test_bidirectional_and_c1_controls_are_refused_in_new_record_ids(bad):
    from pipelines.errors import FieldError

    with pytest.raises(FieldError, match="U\\+"):
        parse_record({"id": bad, "content": 1})


def test_proofs_sealed_before_the_rule_still_parse():
    from pipelines.core.commitment import check_record_id

    assert check_record_id("old-\u202eid") == "old-\u202eid"  # the proof format keeps its rule


def test_terminal_output_escapes_what_a_terminal_would_obey():
    from click.testing import CliRunner

    from pipelines.cli.common import echo, printable

    assert printable("batch \x1b[2J\u202eevil\ttab\nnext ü") == "batch \\u001b[2J\\u202eevil\ttab\nnext ü"
    import click

    @click.command()
    def show() -> None:
        echo("FINDING: \x1b]0;owned\x07 \U000e0041")

    out = CliRunner().invoke(show).output
    assert "\x1b" not in out and "\x07" not in out and "\\u001b]0;owned\\u0007 \\U000e0041" in out
