"""Inputs the fuzzers found (`make fuzz`, fuzz/README.md), kept as regression inputs: each input in
tests/data/fuzz-findings/<target>/ goes through its target again and raises nothing but the project's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.paths import DATA

FINDINGS = DATA / "fuzz-findings"
CASES = sorted(p for p in FINDINGS.glob("*/*") if p.is_file())


@pytest.mark.parametrize("case", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_a_fuzz_finding_is_now_a_clean_refusal(case: Path):
    from fuzz.targets import TARGETS

    TARGETS[case.parent.name]()(case.read_bytes())  # the target lets only AnchorpipeError through


def test_a_tsa_token_that_is_not_base64_is_a_tsa_failure():
    import json

    from pipelines.core.proof import parse_proof
    from pipelines.core.policy import Policy
    from pipelines.core.verify import verify_proof
    from pipelines.errors import VerificationError
    from fuzz.targets import CORPUS, LOG_KEY

    doc = json.loads((CORPUS / "proofs" / "valid-full.json").read_text())
    for anchor in doc["anchors"]:
        if anchor["type"] == "tsa":
            anchor["token"] = anchor["token"][:-3]  # cut short: incorrect padding
    from pipelines.core.tsa import load_roots

    roots = tuple(load_roots((CORPUS / "trust" / "tsa-roots.pem").read_bytes()))
    with pytest.raises(VerificationError) as failed:
        verify_proof(parse_proof(json.dumps(doc)), Policy(log_keys=(LOG_KEY,), tsa_roots=roots))
    assert failed.value.check == "tsa" and "base64" in str(failed.value)
