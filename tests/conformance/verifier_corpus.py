"""Build the verifier conformance corpus (tests/data/verifier-corpus): good and bad proofs, what to pin, and
the outcome and failing check each must give. See that folder's README.md.

    .venv/bin/python -m tests.conformance.verifier_corpus tests/data/verifier-corpus

runs ``anchorpipe demo`` (a local TSA, anvil and three witnesses) for a few records, takes one upgraded
proof (log receipt under a cosigned checkpoint, TSA token, EVM receipt) and its first proof, and derives
every case from them by one alteration each. The corpus is committed: regenerating it makes new keys.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pipelines.core.note import Signer
from pipelines.demo.offline import sample_record

FORMAT = "anchorpipe.verifier-corpus/1"
ALL_PINS = ["log", "witness", "tsa", "evm"]
ALL_KINDS = ["tlog", "witness", "tsa", "evm"]


def flip_hex(h: str, at: int = 0) -> str:
    return h[:at] + ("0" if h[at] != "0" else "1") + h[at + 1:]


def flip_b64(b: str, at: int) -> str:
    raw = bytearray(base64.b64decode(b))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def note_lines(note: str) -> tuple[str, list[str]]:
    text, _, sigs = note.partition("\n\n")
    return text + "\n", sigs.rstrip("\n").split("\n")


def join_note(text: str, lines: list[str]) -> str:
    return text + "\n" + "".join(line + "\n" for line in lines)


def cases(full: dict[str, Any], first: dict[str, Any]) -> list[tuple[dict[str, Any], object]]:
    """(case, proof document or raw text) pairs."""
    out: list[tuple[dict[str, Any], object]] = []

    def add(name: str, doc: object, expect: str, check: str | None, description: str, *, record: bool = True,
            pins: list[str] = ALL_PINS, require: list[str] = ALL_KINDS, quorum: int | None = 2) -> None:
        out.append(({"name": name, "description": description, "record": record, "pins": pins,
                     "require": require, "witness_quorum": quorum if "witness" in pins else None,
                     "expect": expect, "check": check}, doc))

    def altered(fn, base: dict[str, Any] = full) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        doc = copy.deepcopy(base)
        fn(doc)
        return doc

    tlog, tsa, evm = full["anchors"]
    imprint = base64.b64decode(tsa["token"]).find(hashlib.sha256(tsa["checkpoint"].encode()).digest())
    assert imprint > 0
    add("valid-full", full, "valid", None, "Upgraded proof: log receipt under a checkpoint cosigned by 3 witnesses, "
        "a TSA token and an EVM receipt; every kind required, quorum 2, the record's content checked.")
    add("valid-no-record", full, "valid", None, "The same without the record: valid, content not checked.",
        record=False)
    add("valid-quorum-3", full, "valid", None, "All three pinned witnesses cosigned: a quorum of 3 holds.", quorum=3)
    add("valid-log-only", first, "valid", None, "The batch's first proof (log receipt only, not cosigned) with the "
        "log key alone.", pins=["log"], require=["tlog"])
    add("valid-any-anchor", full, "valid", None, "Only the log key pinned, nothing required: the log receipt "
        "suffices, the other anchors are listed as unchecked.", pins=["log"], require=[])
    add("leaf-salt", altered(lambda d: d["record"].update(salt=flip_hex(d["record"]["salt"]))), "invalid", "leaf",
        "record.salt altered: the leaf hash no longer commits to the record.")
    add("leaf-agency", altered(lambda d: d["record"].update(agency="other-agency")), "invalid", "leaf",
        "record.agency altered.")
    add("leaf-id", altered(lambda d: d["record"].update(id=d["record"]["id"] + "x")), "invalid", "leaf",
        "record.id altered.")
    add("content", full, "invalid", "content", "The record file given is not the one committed to.",
        record="other")  # type: ignore[arg-type]
    add("batch-path", altered(lambda d: d["batch"]["path"].__setitem__(0, flip_hex(d["batch"]["path"][0], 5))),
        "invalid", "batch-path", "A hash of the path to the batch root altered.")
    add("batch-size", altered(lambda d: d["batch"].update(size=d["batch"]["size"] * 2)), "invalid", "batch-path",
        "batch.size altered (doubled: the path no longer fits).")
    add("batch-size-entry", altered(lambda d: d["batch"].update(size=d["batch"]["size"] + 1)), "invalid",
        "log-inclusion", "batch.size altered by one: the path may still fit, but the log entry binds the size.")
    add("batch-index", altered(lambda d: d["batch"].update(index=(d["batch"]["index"] + 1) % d["batch"]["size"])),
        "invalid", "batch-path", "batch.index altered.")
    add("batch-root", altered(lambda d: d["batch"].update(root=flip_hex(d["batch"]["root"], 7))), "invalid",
        "batch-path", "batch.root altered.")
    add("log-index", altered(lambda d: d["anchors"][0].update(index=d["anchors"][0]["index"] + 1)), "invalid",
        "log-inclusion", "The log receipt's index altered: the batch's entry is not there.")
    add("log-path", altered(lambda d: d["anchors"][0]["path"].__setitem__(0, flip_hex(d["anchors"][0]["path"][0]))),
        "invalid", "log-inclusion", "A hash of the log receipt's path altered.")
    add("log-entry", altered(lambda d: d["batch"].update(sealed_at="2000-01-01T00:00:00Z")), "invalid",
        "log-inclusion", "batch.sealed_at altered: the log entry bound another seal time.")
    text, lines = note_lines(tlog["checkpoint"])
    sig = lines[0].rsplit(" ", 1)
    forged_sig = join_note(text, [f"{sig[0]} {flip_b64(sig[1], 10)}", *lines[1:]])
    add("checkpoint-signature", altered(lambda d: [a.update(checkpoint=forged_sig) for a in d["anchors"]]),
        "invalid", "checkpoint-signature", "The log's signature on the checkpoint altered.")
    size_line = text.split("\n")
    forged_text = "\n".join([size_line[0], str(int(size_line[1]) + 1), *size_line[2:]])
    add("checkpoint-text", altered(lambda d: [a.update(checkpoint=join_note(forged_text, lines))
                                              for a in d["anchors"]]),
        "invalid", "checkpoint-signature", "The checkpoint's size altered under the log's signature.")
    add("origin", altered(lambda d: d["anchors"][0].update(origin="another.example/log")), "invalid", "origin",
        "The log receipt names another log than its checkpoint.")
    add("unpinned-log-key", full, "not-anchored", "anchored", "A log key other than the log's is pinned: nothing "
        "pinned vouches for the receipt.", pins=["other-log"], require=[])
    add("no-anchors", altered(lambda d: d.update(anchors=[])), "not-anchored", "anchored",
        "No anchor at all (anyone can seal a file of their own): never valid.", pins=["log"], require=[])
    add("tsa-imprint", altered(lambda d: d["anchors"][1].update(token=flip_b64(d["anchors"][1]["token"], imprint))),
        "invalid", "tsa", "A byte of the message imprint inside the TSA token altered: it stamps something else.")
    add("tsa-malformed", altered(lambda d: d["anchors"][1].update(token=flip_b64(d["anchors"][1]["token"],
                                                                                 imprint - 1))),
        "invalid", "tsa", "A length byte inside the TSA token altered: the token does not parse.")
    add("tsa-signature", altered(lambda d: d["anchors"][1].update(token=flip_b64(d["anchors"][1]["token"], -10))),
        "not-anchored", "anchored", "A byte of the TSA's signature altered: no pinned root vouches for the token, so "
        "it counts for nothing (a tampered signature cannot be told from an unpinned TSA's).")
    add("tsa-checkpoint", altered(lambda d: d["anchors"][1].update(checkpoint=first["anchors"][0]["checkpoint"])),
        "invalid", "tsa", "The TSA receipt names a checkpoint no log receipt of the proof is under.")
    add("tsa-unpinned", full, "not-anchored", "anchored", "tsa required, no TSA root pinned.",
        pins=["log", "witness", "evm"])
    add("evm-raw-tx", altered(lambda d: d["anchors"][2].update(raw_tx=flip_hex(d["anchors"][2]["raw_tx"], 40))),
        "invalid", "evm", "A byte of the raw transaction altered.")
    add("evm-header", altered(lambda d: d["anchors"][2].update(header=flip_hex(d["anchors"][2]["header"], 20))),
        "invalid", "evm", "A byte of the block header altered.")
    add("evm-trie-proof", altered(lambda d: d["anchors"][2]["trie_proof"].__setitem__(
        0, flip_hex(d["anchors"][2]["trie_proof"][0], 10))), "invalid", "evm", "A node of the trie proof altered.")
    add("evm-chain-id", altered(lambda d: d["anchors"][2].update(chain_id=d["anchors"][2]["chain_id"] + 1)),
        "invalid", "evm", "The receipt claims another chain than its transaction's.")
    add("evm-unpinned-block", full, "not-anchored", "anchored", "evm required, no block pinned.",
        pins=["log", "witness", "tsa"])
    two = join_note(text, lines[:-1])  # the log's signature and two cosignatures
    log_only = altered(lambda d: d.update(anchors=[{**d["anchors"][0], "checkpoint": two}]))
    add("witness-quorum", log_only, "not-anchored", "witness", "Two of three cosignatures, a quorum of 3 required.",
        pins=["log", "witness"], require=["tlog", "witness"], quorum=3)
    add("witness-quorum-met", log_only, "valid", None, "The same proof, a quorum of 2.", pins=["log", "witness"],
        require=["tlog", "witness"], quorum=2)
    cos = lines[1].rsplit(" ", 1)
    bad_cos = join_note(text, [lines[0], f"{cos[0]} {flip_b64(cos[1], 20)}", *lines[2:]])
    add("witness-cosignature", altered(lambda d: d.update(anchors=[{**d["anchors"][0], "checkpoint": bad_cos}])),
        "invalid", "witness", "A pinned witness's cosignature altered.", pins=["log", "witness"],
        require=["tlog", "witness"])
    add("witness-uncosigned", first, "not-anchored", "witness", "The first proof's checkpoint was never cosigned.",
        pins=["log", "witness"], require=["tlog", "witness"])
    add("format-not-json", "{not json", "unusable", "format", "Not JSON.")
    add("format-missing-salt", altered(lambda d: d["record"].pop("salt")), "unusable", "format",
        "record.salt missing.")
    add("format-bad-hex", altered(lambda d: d.update(leaf_hash="zz" * 32)), "unusable", "format",
        "leaf_hash is not hex.")
    add("format-unknown-anchor", altered(lambda d: d["anchors"].append({"type": "carrier-pigeon"})), "unusable",
        "format", "An anchor of an unknown type.")
    add("format-tag", altered(lambda d: d.update(format="anchorpipe.proof/9")), "unusable", "format",
        "Another format tag.")
    return out


def build(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        res = subprocess.run([sys.executable, "-m", "pipelines.cli", "demo", "--records", "12", "--export",
                              str(export)], capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(res.stdout + res.stderr)
        bundles = sorted((export / "proofs").rglob("*.ndjson"))
        upgraded = [b for b in bundles if ".u" in b.name and len(b.read_text().splitlines()) > 1]
        full = json.loads(upgraded[0].read_text().splitlines()[3])
        first_bundle = next(b for b in bundles if b.name == upgraded[0].name.split(".u")[0] + ".ndjson")
        first = next(json.loads(line) for line in first_bundle.read_text().splitlines()
                     if json.loads(line)["record"]["id"] == full["record"]["id"])
        shutil.rmtree(out, ignore_errors=True)
        (out / "trust").mkdir(parents=True)
        (out / "proofs").mkdir()
        (out / "records").mkdir()
        for name in ("log.vkey", "witnesses.vkeys", "tsa-roots.pem", "evm-blocks.json"):
            shutil.copy(export / name, out / "trust" / name)
    (out / "trust" / "other-log.vkey").write_text(Signer.generate("anchorpipe.local/log").verifier().text() + "\n")
    n = int(full["record"]["id"].split("/")[1])
    record = sample_record(n)
    assert record["id"] == full["record"]["id"]
    (out / "records" / "record.json").write_text(json.dumps(record["content"], indent=1) + "\n")
    (out / "records" / "other.json").write_text(json.dumps({**record["content"], "fee": 0}, indent=1) + "\n")
    manifest = []
    for case, doc in cases(full, first):
        path = f"proofs/{case['name']}.json"
        (out / path).write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=1) + "\n")
        record_file = {True: "records/record.json", False: None, "other": "records/other.json"}[case.pop("record")]
        manifest.append({"name": case["name"], "proof": path, "record": record_file, **{
            k: v for k, v in case.items() if k != "name"}})
    pins = {"log": "trust/log.vkey", "other-log": "trust/other-log.vkey", "witness": "trust/witnesses.vkeys",
            "tsa": "trust/tsa-roots.pem", "evm": "trust/evm-blocks.json"}
    (out / "corpus.json").write_text(json.dumps({"format": FORMAT, "pins": pins, "cases": manifest}, indent=1)
                                     + "\n")
    print(f"{len(manifest)} cases in {out}")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
