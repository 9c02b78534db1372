"""Every verifier runs the conformance corpus (tests/data/verifier-corpus): the CLI here, the browser checker
in tests/system/test_browser_checker.py. Each case must give its expected outcome, and a failing one must name the
expected check."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from tests.support.paths import DATA

CORPUS = DATA / "verifier-corpus"
MANIFEST = json.loads((CORPUS / "corpus.json").read_text())
EXIT = {"valid": 0, "invalid": 1, "unusable": 2, "not-anchored": 3}
FLAG = {"log": "--log-vkey", "other-log": "--log-vkey", "witness": "--witness", "tsa": "--tsa-root",
        "evm": "--evm-trusted-blocks"}


def cli_args(case: dict) -> list[str]:
    """The `anchorpipe verify` command line of a case (as docs in the corpus's README say)."""
    args = ["verify", str(CORPUS / case["proof"]), "--json"]
    if case["record"]:
        args += ["--record", str(CORPUS / case["record"])]
    for pin in case["pins"]:
        args += [FLAG[pin], str(CORPUS / MANIFEST["pins"][pin])]
    for kind in case["require"]:
        args += ["--require", kind]
    if case["witness_quorum"]:
        args += ["--witness-quorum", str(case["witness_quorum"])]
    return args


def test_the_corpus_covers_every_check_and_outcome():
    cases = MANIFEST["cases"]
    assert len({c["name"] for c in cases}) == len(cases) >= 35
    assert {c["expect"] for c in cases} == set(EXIT)
    assert {c["check"] for c in cases} >= {"leaf", "content", "batch-path", "log-inclusion", "checkpoint-signature",
                                           "origin", "tsa", "evm", "witness", "anchored", "format"}


@pytest.mark.parametrize("case", MANIFEST["cases"], ids=lambda c: c["name"])
def test_the_cli_gives_each_case_its_outcome_and_check(case):
    res = CliRunner().invoke(main, cli_args(case))
    verdict = json.loads(res.output)
    assert (res.exit_code, verdict["outcome"]) == (EXIT[case["expect"]], case["expect"]), verdict["message"]
    assert verdict["valid"] == (case["expect"] == "valid")
    assert verdict["check"] == case["check"], verdict["message"]
    if case["expect"] == "valid":
        verified = {a["kind"] for a in verdict["anchors"] if a["verdict"] == "verified"}
        assert set(case["require"]) <= verified
        assert verdict["content_checked"] == bool(case["record"])
