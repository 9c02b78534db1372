"""The auditor's policy: what they pin (log keys, TSA roots, canonical blocks, witness keys) and what they
require (anchor kinds, or a rule over them). Verification (:mod:`.verify`) checks proofs under it; nothing
here looks at a proof."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pipelines.core.anchors import ANCHOR_KINDS
from pipelines.core.cosignature import WitnessKey
from pipelines.core.evm import Block
from pipelines.core.note import Verifier
from pipelines.errors import InputError

#: Asks a node or explorer the auditor trusts whether a block is on the canonical chain: True, False, or
#: None when it cannot tell (the chain is another, the node is unreachable).
CanonicalCheck = Callable[[Block], bool | None]
#: What a policy can require: the anchor kinds, and ``witness`` (a quorum of pinned witnesses cosigned the
#: checkpoint of a verified log receipt).
POLICY_KINDS = ANCHOR_KINDS | {"witness"}



@dataclass(frozen=True)
class Policy:
    """What the auditor pins and requires.

    ``log_keys``: verifier keys of built-in logs. ``tsa_roots``: root certificates of
    time-stamping authorities. ``evm_blocks``: per chain id, block hashes the auditor
    knows are canonical; ``evm_check`` asks a node they trust instead. ``require``:
    anchor kinds that must each verify; ``expression`` (``"tlog and (tsa or evm)"``)
    a rule over the verified kinds. With neither, any one verified anchor suffices.
    ``witnesses``: pinned witness keys; ``witness_quorum`` of them must have cosigned
    the checkpoint of a verified log receipt (then ``witness`` is required).
    """

    log_keys: tuple[Verifier, ...] = ()
    require: frozenset[str] = frozenset()
    tsa_roots: tuple[Any, ...] = ()  # cryptography x509.Certificate
    evm_blocks: Mapping[int, frozenset[str]] = field(default_factory=dict)
    evm_check: CanonicalCheck | None = None
    expression: str | None = None
    witnesses: tuple[WitnessKey, ...] = ()
    witness_quorum: int = 0

    @classmethod
    def of(cls, log_keys: Iterable[Verifier] = (), require: Iterable[str] = (), *, tsa_roots: Iterable[Any] = (),
           evm_blocks: Mapping[int, Iterable[str]] | None = None, evm_check: CanonicalCheck | None = None,
           expression: str | None = None, witnesses: Iterable[WitnessKey] = (),
           witness_quorum: int | None = None) -> Policy:
        """A policy; InputError naming an unknown anchor kind, a malformed expression or an impossible quorum.
        With witnesses and no quorum, a majority of them is the quorum."""
        kinds = frozenset(require)
        unknown = sorted(kinds - POLICY_KINDS)
        if unknown:
            raise InputError(f"unknown anchor kind(s) {unknown}; known: {sorted(POLICY_KINDS)}")
        if expression is not None:
            _compile(expression)
        pinned = tuple(witnesses)
        quorum = len(pinned) // 2 + 1 if witness_quorum is None and pinned else (witness_quorum or 0)
        if quorum > len(pinned) or quorum < 0:
            raise InputError(f"a witness quorum of {quorum} needs at least that many pinned witness keys "
                             f"(--witness), {len(pinned)} given")
        if quorum or "witness" in kinds:
            if not pinned:
                raise InputError("requiring witness cosignatures needs pinned witness keys (--witness VKEY)")
            kinds |= {"witness"}
        blocks = {int(c): frozenset(h.lower().removeprefix("0x") for h in hs) for c, hs in (evm_blocks or {}).items()}
        return cls(tuple(log_keys), kinds, tuple(tsa_roots), blocks, evm_check, expression, pinned, max(quorum, 1)
                   if pinned else 0)

    def satisfied(self, verified: set[str]) -> bool:
        if self.expression is not None and not _compile(self.expression)(verified):
            return False
        return bool(verified) and self.require <= verified

    def describe(self) -> str:
        keys = ", ".join(f"{k.name}+{k.id:08x}" for k in self.log_keys) or "none"
        rule = self.expression or " and ".join(sorted(self.require)) or "any one"
        witnesses = f"; witnesses: {self.witness_quorum} of {len(self.witnesses)} pinned" if self.witnesses else ""
        return (f"pinned log keys: {keys}; TSA roots: {len(self.tsa_roots)}; EVM: "
                f"{'a trusted node' if self.evm_check else f'{sum(map(len, self.evm_blocks.values()))} pinned blocks'}"
                f"{witnesses}; required: {rule}")


@lru_cache(maxsize=32)
def _compile(expression: str) -> Callable[[set[str]], bool]:
    """``tlog and (tsa or evm)``: anchor kinds joined by ``and``/``or`` with parentheses (Python's parser,
    and nothing but names and those two operators let through)."""
    bad = InputError(f"policy {expression!r}: want anchor kinds {sorted(POLICY_KINDS)} joined by 'and', 'or' "
                     "and parentheses")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise bad from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in POLICY_KINDS:
                raise InputError(f"policy {expression!r}: unknown anchor kind {node.id!r}; known: "
                                 f"{sorted(POLICY_KINDS)}")
        elif not isinstance(node, ast.Expression | ast.BoolOp | ast.And | ast.Or | ast.Load):
            raise bad

    def holds(node: ast.expr, have: set[str]) -> bool:
        if isinstance(node, ast.Name):
            return node.id in have
        assert isinstance(node, ast.BoolOp)
        results = (holds(v, have) for v in node.values)
        return all(results) if isinstance(node.op, ast.And) else any(results)

    return lambda have: holds(tree.body, have)
