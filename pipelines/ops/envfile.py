"""The settings file's one format: what honcho, systemd's ``EnvironmentFile`` and the CLI (python-dotenv) all
read the same way, and the lines one of them would read differently.

The rule (docs/operations.md, "Settings"): one ``NAME=value`` a line; a value holding a space, a ``#`` or a
quote is written in double quotes (``NAME="a b"``). honcho drops the spaces of an unquoted value
(``https://w.example key`` becomes ``https://w.examplekey``); systemd and python-dotenv keep them. A ``#``
after a space starts a comment for honcho and python-dotenv, not for systemd: comments go on lines of their
own. Kubernetes reads no such file: its ConfigMap is YAML (infra/kubernetes).
"""

from __future__ import annotations

import re

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


def ambiguous_lines(text: str) -> list[tuple[int, str, str]]:
    """``(line number, name, why)`` for each line whose value another reader would split or strip differently."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if m is None:
            continue
        name, value = m.group(1), m.group(2).strip()
        if value[:1] in ('"', "'"):
            continue  # quoted: every reader takes what is between the quotes
        if re.search(r"\s#", value):
            found.append((number, name, "a # after a space: honcho and the CLI read a comment there, systemd keeps "
                                        "it in the value; put the comment on a line of its own"))
        elif re.search(r"\s", value):
            found.append((number, name, "its value holds spaces but no quotes: honcho drops the spaces, systemd "
                                        "and the CLI keep them; write it in double quotes"))
        elif "#" in value or '"' in value or "'" in value:
            found.append((number, name, "its value holds a # or a quote without quotes around it: readers differ "
                                        "on where it ends; write it in double quotes"))
    return found
