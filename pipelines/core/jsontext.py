"""The one way anchorpipe reads JSON that carries records: strict, bounded, the same everywhere. No I/O.

The intake API, pull sources, ``anchorpipe seal`` and ``anchorpipe verify --record``
all read JSON here, so the same text always gives the same value and hence the
same RFC 8785 digest. Rules (docs/proof-format.md §1):

- integers must lie within ±(2**53 - 1), the range RFC 8785 (I-JSON) keeps exact;
- numbers must be finite (``NaN``, ``Infinity`` and overflowing literals such as
  ``1e400`` are refused);
- an object must not repeat a key;
- nesting deeper than :data:`MAX_DEPTH` arrays and objects is refused;
- strings (keys too) must be valid Unicode: no lone surrogates.

Every violation raises :class:`JSONTextError` (an :class:`InputError`) saying
what was found; nothing else escapes (no RecursionError, no ValueError).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pipelines.errors import InputError

#: Largest integer magnitude kept exact by RFC 8785 (IEEE 754 doubles).
MAX_SAFE_INTEGER = 2**53 - 1
#: Deepest nesting of arrays and objects accepted.
MAX_DEPTH = 64


class JSONTextError(InputError):
    """Text that is not JSON, or JSON outside anchorpipe's rules."""


def _constant(text: str) -> Any:
    raise JSONTextError(f"{text} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise JSONTextError(f"key {dup!r} appears twice in one object")
    return obj


# Numbers are parsed by the C scanner and judged by check_value (range, finiteness): Python-level
# number hooks would cost a third of the parse.
_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant)


def loads(text: bytes | str, *, walk: bool = True) -> Any:
    """Parse ``text`` under the rules above; raise :class:`JSONTextError` naming the first violation.

    ``walk=False`` leaves the number, depth and Unicode rules to the caller, for record parsing, where
    :func:`pipelines.core.commitment.content_sha256` applies them to the content anyway (and the id
    is checked on its own): the value is then walked once, not twice.
    """
    try:
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("utf-8")
        value = _DECODER.decode(text)
    except JSONTextError:
        raise
    except UnicodeDecodeError as exc:
        raise JSONTextError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise JSONTextError(f"not JSON: {exc}") from None
    except RecursionError:
        raise JSONTextError(f"nesting deeper than {MAX_DEPTH}") from None
    except ValueError as exc:  # an integer literal beyond Python's digit limit, among others
        raise JSONTextError(f"integer outside ±(2**53 - 1) or otherwise not a JSON number ({exc})") from None
    if walk:
        check_value(value, unicode=_may_hold_surrogates(text))
    return value


# A lone surrogate can reach a parsed string only as a \uD800-\uDFFF escape (UTF-8 bytes cannot encode one)
# or in a str given as such: when the text shows neither, the per-string Unicode check is skipped.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _may_hold_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None


def check_value(value: Any, *, unicode: bool = True) -> None:
    """Apply the rules to a value however it was read (JSON, CSV, SQL): numbers, depth, and (unless the
    caller showed no string can hold a lone surrogate) Unicode.

    Iterative, so no input can exhaust the stack; raises :class:`JSONTextError`.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if unicode:
                _check_text(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_SAFE_INTEGER:
                raise JSONTextError(f"integer {str(item)[:20]} is outside ±(2**53 - 1)")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise JSONTextError(f"number {item} is not finite")
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise JSONTextError(f"nesting deeper than {MAX_DEPTH}")
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        raise JSONTextError(f"object key {key!r} is not a string")
                    if unicode:
                        _check_text(key)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        else:
            raise JSONTextError(f"a {type(item).__name__} is not a JSON value")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JSONTextError(f"string {text[:40]!r} holds a lone surrogate (not valid Unicode)") from None
