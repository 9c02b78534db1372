"""``anchorpipe demo``: the main job on embedded defaults, end to end on one machine.

Starts a private PostgreSQL, Redis, an S3 server (moto), a time-stamping authority
(OpenSSL), an EVM node (anvil), three witnesses of the log, the intake API,
workers and beat; creates an agency; pushes generated records through the HTTP
API; waits for every proof and for its upgrade with witness cosignatures, TSA and
EVM receipts; then, as an auditor holding only S3 read access, the log's
verifier key, the witnesses' keys, the TSA's root and the chain's block hashes,
fetches the proofs back and verifies every one with the log, a quorum of two
witnesses, the TSA and the chain required; prints rates and latencies; stops
everything it started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx

from pipelines.archive.directory import fetch_proof
from pipelines.core.commitment import content_sha256
from pipelines.core.cosignature import WitnessKey
from pipelines.core.note import Signer
from pipelines.core.proof import parse_proof
from pipelines.core.policy import Policy
from pipelines.core.verify import verify_proof
from pipelines.archive.bundle import bundle_keys, read_anchors, upgraded_bundle
from pipelines.demo.localstack import DEFAULT_WORKERS, EXTERNAL_WORKERS, local_stack
from pipelines.demo.services import anvil_node, fund, tsa_server, witness_server
from pipelines.demo.offline import sample_record
from pipelines.errors import VerificationError
from pipelines.intake.auth import add_agency
from pipelines.ledger.tlog import LogReader
from pipelines.state.postgres import PostgresState
from pipelines.storage import get_all, open_store

Echo = Callable[[str], None]
Progress = Callable[[str, int], object]
AGENCY = "demo-agency"
CHUNK = 2_000
SAMPLE_LOOKUPS = 200


def run_demo(records: int, export: Path | None, echo: Echo, progress: Progress, anchors: bool = True,
             **settings: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="anchorpipe-demo-"))
    try:
        with ExitStack() as ctx:
            ext: dict[str, str] = {}
            signer = Signer.generate("anchorpipe.local/log")
            witness_keys: list[str] = []
            if anchors:
                echo("starting a local time-stamping authority (OpenSSL), a local EVM node (anvil, a block a "
                     f"second) and {len(DEMO_WITNESSES)} witnesses of the log")
                ext = _external_ledgers(ctx, work)
                witnesses = [ctx.enter_context(witness_server(work / "witnesses", name, [signer.verifier().text()]))
                             for name in DEMO_WITNESSES]
                witness_keys = [w.vkey for w in witnesses]
                ext |= {"witnesses": ",".join(f"{w.url} {w.vkey}" for w in witnesses),
                        "witness_quorum": str(DEMO_QUORUM)}
            echo(f"starting PostgreSQL, Redis, an S3 server, the API, workers and beat in {work}")
            workers = {**DEFAULT_WORKERS, **EXTERNAL_WORKERS} if anchors else None
            stack = ctx.enter_context(local_stack(work, workers=workers, allow_volatile_state="false", signer=signer,
                                                  **{**ext, **settings}))
            os.environ.update({k: v for k, v in stack.env.items() if k.startswith("AWS_")})
            state = PostgresState.connect(stack.database_url)
            key = add_agency(state, AGENCY)
            echo("warming up: one record through every stage")
            _push(stack.api_url, key, [{"id": "warm-up", "content": "warm-up"}], _quiet)
            _wait_archived(state, 1, _quiet)
            samples = [sample_record(i) for i in range(records)]
            t0 = time.perf_counter()
            _push(stack.api_url, key, samples, progress)
            pushed = time.perf_counter() - t0
            _wait_archived(state, records + 1, progress, offset=1)
            total = time.perf_counter() - t0
            echo(f"accepted {records:,} records through the API at {records / pushed:,.0f} records/s; "
                 f"all proofs archived after {total:.1f} s ({records / total:,.0f} records/s end to end)")
            lat = state.accept_to_archived()
            echo(f"accept -> archived latency: p50 {_pct(lat, 50):.2f} s, p99 {_pct(lat, 99):.2f} s")
            if anchors:
                _wait_anchored(state, progress)
                full = time.perf_counter() - t0
                _report_rounds(state, echo)
                echo(f"every proof upgraded with witness cosignatures, TSA and EVM receipts {full:.1f} s after the "
                     "first record was "
                     f"pushed ({full - total:.1f} s after the last proof was archived; {ext['evm_confirmations']} "
                     "confirmations at a block a second)")
            store = open_store(stack.archive, s3_endpoint=stack.s3_endpoint)
            log_store = open_store(stack.archive + "/log", s3_endpoint=stack.s3_endpoint)
            trust = {**_trust(state, ext), "witnesses": witness_keys} if anchors else None
            _audit(store, log_store, stack.signer.verifier(), samples, echo, progress, trust)
            if export is not None:
                _export(store, log_store, stack.signer.verifier().text(), export, trust)
                echo(f"exported proofs (NDJSON per batch), log.vkey and the log to {export}"
                     + (", with tsa-roots.pem, evm-blocks.json and witnesses.vkeys" if trust else ""))
        echo("stopped everything the demo started")
    finally:
        shutil.rmtree(work, ignore_errors=True)


DEMO_CONFIRMATIONS = 3
DEMO_WITNESSES = ("witness-1.local", "witness-2.local", "witness-3.local")
DEMO_QUORUM = 2


def _external_ledgers(ctx: ExitStack, work: Path) -> dict[str, str]:
    """A TSA and an EVM node of our own, a funded key for the chain: the settings that point at them."""
    from eth_account import Account

    tsa_url, root = ctx.enter_context(tsa_server(work))
    rpc = ctx.enter_context(anvil_node(work, block_time=1))
    key = "0x" + secrets.token_hex(32)
    key_file = work / "evm.key"
    key_file.touch(mode=0o600)
    key_file.write_text(key + "\n")
    fund(rpc, Account.from_key(key).address)
    return {"anchors": "tlog,tsa,evm", "tsa_urls": tsa_url, "tsa_roots": str(root), "evm_rpc_url": rpc,
            "evm_key_file": str(key_file), "evm_confirmations": str(DEMO_CONFIRMATIONS), "external_interval": "2"}


def _wait_anchored(state: PostgresState, progress: Progress, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    with progress("waiting for the external anchors (TSA, chain) and the upgraded proofs", 1) as bar:
        while state.oldest_unanchored() is not None:
            if time.monotonic() > deadline:
                raise VerificationError(f"proofs still lack their external anchors after {timeout:.0f} s")
            time.sleep(0.2)
        bar.update(1)


def _report_rounds(state: PostgresState, echo: Echo) -> None:
    rounds = [r for r in state.round_coverage() if r["kinds"]]
    for r in rounds:
        echo(f"external anchor of log size {r['size']}: {' + '.join(r['kinds'])}, covering {r['records']:,} records "
             f"in {r['batches']} batches, confirmed {(r['closed_ms'] - r['opened_ms']) / 1000:.1f} s after it opened")
    covered = sum(r["records"] for r in rounds)
    echo(f"{len(rounds)} external anchoring rounds (one TSA token and one transaction each) covered {covered:,} "
         f"records: {covered / max(len(rounds), 1):,.0f} records per transaction")


def _trust(state: PostgresState, ext: dict[str, str]) -> dict[str, object]:
    """What the auditor pins: the TSA's root, and the hashes of the blocks holding anchors as the node (not the
    proofs) reports them."""
    rpc = ext["evm_rpc_url"]

    def call(method: str, *params: object) -> object:
        return httpx.post(rpc, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                          timeout=10).json()["result"]

    numbers = sorted({json.loads(t.receipt)["block_number"] for r in state.rounds(limit=10_000) for t in r.targets
                      if t.target == "evm" and t.receipt})
    blocks = [{"number": n, "hash": str(call("eth_getBlockByNumber", hex(n), False)["hash"])[2:]}  # type: ignore[index]
              for n in numbers]
    return {"tsa_root": Path(ext["tsa_roots"]).read_bytes(),
            "evm_blocks": {"chain_id": int(str(call("eth_chainId")), 16), "blocks": blocks}}


def _push(api: str, key: str, samples: list[dict], progress: Progress) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    with httpx.Client(timeout=120) as client, progress("pushing records to the API", len(samples)) as bar:
        for start in range(0, len(samples), CHUNK):
            chunk = samples[start:start + CHUNK]
            body = "\n".join(json.dumps(r) for r in chunk)
            resp = client.post(f"{api}/v1/records", content=body, headers=headers)
            if resp.status_code != 202:
                raise VerificationError(f"the API refused a chunk: {resp.status_code} {resp.text[:200]}")
            bar.update(len(chunk))


class _Silent:
    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def _quiet(label: str, length: int) -> _Silent:
    return _Silent()


def _wait_archived(state: PostgresState, records: int, progress: Progress, timeout: float = 600, offset: int = 0) -> None:
    deadline = time.monotonic() + timeout
    with progress("waiting for every proof", records - offset) as bar:
        done = offset
        while done < records:
            if time.monotonic() > deadline:
                raise VerificationError(f"only {done} of {records} proofs archived after {timeout:.0f} s")
            time.sleep(0.1)
            now = state.archived_records()
            bar.update(now - done)
            done = now


def _pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def _audit(store, log_store, vkey, samples: list[dict], echo: Echo, progress: Progress,
           trust: dict[str, object] | None) -> None:
    """An auditor with S3 read access, the pinned log key and (with external anchors) the TSA's root and the
    chain's block hashes; trusts nothing else."""
    require = ["tlog"]
    roots, blocks, witnesses = [], {}, []
    if trust is not None:
        from pipelines.core.tsa import load_roots

        require = ["tlog", "witness", "tsa", "evm"]
        roots = load_roots(trust["tsa_root"])  # type: ignore[arg-type]
        evm = trust["evm_blocks"]
        blocks = {evm["chain_id"]: [b["hash"] for b in evm["blocks"]]}  # type: ignore[index]
        witnesses = [WitnessKey.parse(k) for k in trust["witnesses"]]  # type: ignore[attr-defined]
    policy = Policy.of([vkey], require, tsa_roots=roots, evm_blocks=blocks, witnesses=witnesses,
                       witness_quorum=DEMO_QUORUM if witnesses else None)
    with ThreadPoolExecutor(8) as pool:  # the index lookup, record by record, on a sample
        looked_up = list(pool.map(lambda r: fetch_proof(store, AGENCY, r["id"]), samples[:SAMPLE_LOOKUPS]))
    for rec, proof in zip(samples, looked_up, strict=False):
        verify_proof(proof, policy, content_sha256=content_sha256(rec["content"]))
    # Every proof: each batch's bundle fetched once, upgraded with its newest anchors object; every record must
    # have exactly one proof.
    content = {rec["id"]: rec["content"] for rec in samples}
    upgraded = _upgraded_bundles(store, AGENCY)
    keys, firsts = list(upgraded), [k for k, (_, up) in upgraded.items() if up is not None]
    proved: set[str] = set()
    with progress(f"verifying every proof (required: {', '.join(require)})", len(samples)) as bar:
        for key in keys:
            for line in upgraded[key][0]:
                proof = parse_proof(line)
                if proof.record.id == "warm-up":
                    continue
                if proof.record.id in proved:
                    raise VerificationError(f"record {proof.record.id} has two proofs")
                proved.add(proof.record.id)
                verify_proof(proof, policy, content_sha256=content_sha256(content[proof.record.id]))
                bar.update(1)
    missing = len(content) - len(proved)
    if missing:
        raise VerificationError(f"{missing} records have no proof in the archive")
    reader = LogReader(log_store, [vkey])
    head = reader.head()
    reader.check_tiles(head)
    echo(f"auditor: {SAMPLE_LOOKUPS} proofs found by (agency, id) through the archive's index (at most 4 GETs "
         f"each), and all {len(samples):,} proofs in {len(keys)} batches verified with {' + '.join(require)} "
         "required: every record has exactly one, and every one is VALID")
    if trust is not None:  # the first proofs stay: each batch's bundle still verifies as written (log anchor)
        for raw in get_all(store, firsts[:20]):
            for line in (raw or b"").splitlines()[:50]:
                verify_proof(parse_proof(line), Policy.of([vkey], ["tlog"]))
        echo(f"auditor: the first proofs are still archived as written ({len(firsts)} bundles beside their "
             "anchors objects, all write-once) and still VALID under the log key")
    echo(f"auditor: log {head.checkpoint.origin} at size {head.checkpoint.size}: tiles match the signed checkpoint")


def _upgraded_bundles(store, agency: str) -> dict[str, tuple[list[bytes], str | None]]:
    """Each bundle's proofs as the auditor reads them (with the anchors of the batch's newest upgrade), and
    the key of that anchors object (None: never upgraded)."""
    found = list(bundle_keys(store.list_keys(f"proofs/{agency}/")).values())
    out = {}
    for (_, key, up), raw in zip(found, get_all(store, [k for _, k, _ in found]), strict=True):
        data = raw or b""
        if up is not None:
            data = upgraded_bundle(data, read_anchors(store, up))
        out[key] = ([line for line in data.splitlines() if line.strip()], up)
    return out


def _export(store, log_store, vkey_text: str, export: Path, trust: dict[str, object] | None) -> None:
    (export / "proofs").mkdir(parents=True, exist_ok=True)
    (export / "log.vkey").write_text(vkey_text + "\n")
    if trust is not None:
        (export / "tsa-roots.pem").write_bytes(trust["tsa_root"])  # type: ignore[arg-type]
        (export / "evm-blocks.json").write_text(json.dumps(trust["evm_blocks"], indent=2) + "\n")
        (export / "witnesses.vkeys").write_text("".join(k + "\n" for k in trust["witnesses"]))  # type: ignore[attr-defined]
    for key in store.list_keys("proofs/"):  # bundles and anchors objects as archived
        (export / key).parent.mkdir(parents=True, exist_ok=True)
        (export / key).write_bytes(store.get(key))
    for lines, up in _upgraded_bundles(store, AGENCY).values():  # and each upgraded batch's proofs in full
        if up is not None:
            (export / (up.removesuffix(".json") + ".ndjson")).write_bytes(b"".join(line + b"\n" for line in lines))
    for key in log_store.list_keys(""):
        if key in ("checkpoint", "anchorpipe/cosigned-checkpoint") or key.startswith("tile/"):
            path = export / "log" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(log_store.get(key))
