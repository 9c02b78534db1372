"""The worked examples in docs/ must stay true."""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.core.proof import parse_proof
from pipelines.core.verify import verify_inclusion

DOCS = Path(__file__).parent.parent / "docs"


def _blocks(name: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / name).read_text(), flags=re.S)


def test_the_proof_format_example_verifies():
    (example,) = _blocks("proof-format.md", "json")
    report = verify_inclusion(parse_proof(example))
    assert report.checks[-1].endswith("94dc7888b071ff90215715fac3aefa097e61886e3e5e132c57002924e8f99871")


def test_the_proof_format_python_snippet_prints_the_leaf_hash(capsys):
    (snippet,) = _blocks("proof-format.md", "python")
    exec(compile(snippet, "proof-format.md", "exec"), {})
    assert capsys.readouterr().out.strip() == parse_proof(_blocks("proof-format.md", "json")[0]).leaf_hash
