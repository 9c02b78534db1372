"""What `anchorpipe config check` checks, and what `anchorpipe init` sets up: one line per dependency.

Every check runs even when an earlier one fails, and says what to do about a
failure; nothing here prints a secret (URLs are shown with their passwords
masked, secret settings as ``***``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from pipelines.errors import AnchorpipeError, LogStateError

if TYPE_CHECKING:
    from pipelines.runtime import Runtime

#: The object `config check` writes to prove the archive is writable (always the same bytes: write-once safe).
PROBE_KEY = "_anchorpipe/write-probe"
PROBE = b"anchorpipe write probe\n"
_PASSWORD = re.compile(r"(//[^:/@]+:)[^@/]+@")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def masked(value: Any) -> str:
    """A setting's value for printing: secrets as ***, passwords in URLs masked."""
    if isinstance(value, SecretStr):
        return "***" if value.get_secret_value() else ""
    return _PASSWORD.sub(r"\1***@", str(value))


def node_name(url: str) -> str:
    """A node URL without credentials, path or query: what may be printed."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}" + (
        "/***" if parts.path.strip("/") or parts.query else "")


def settings_lines(rt: Runtime) -> list[str]:
    """``ANCHORPIPE_NAME=value`` for every setting, resolved, secrets masked."""
    out = []
    for name, field in type(rt.cfg).model_fields.items():
        value = getattr(rt.cfg, name)
        env = "SENTRY_DSN" if name == "sentry_dsn" else f"ANCHORPIPE_{name.upper()}"
        if name == "evm_rpc_url" and value:  # a provider's URL often carries its API key in the path
            value = node_name(value)
        out.append(f"{env}={'' if value is None else masked(value) if not field.repr else value}")
    return out


def _check(name: str, fn: Callable[[], str]) -> Check:
    try:
        return Check(name, True, fn())
    except AnchorpipeError as exc:
        return Check(name, False, masked(str(exc)))


def run_checks(rt: Runtime) -> Iterator[Check]:
    """Check every dependency of the deployment, one :class:`Check` each."""
    yield _check("database", lambda: _database(rt))
    yield _check("redis", lambda: _redis(rt))
    yield _check("archive", lambda: _archive(rt))
    yield _check("log", lambda: _log(rt))
    yield _check("sources", lambda: _sources(rt))
    if "tsa" in rt.cfg.external_kinds:
        for url in rt.cfg.tsa_url_list:
            yield _check(f"tsa {url}", lambda url=url: _tsa(rt, url))
    if "evm" in rt.cfg.external_kinds:
        yield _check("evm", lambda: _evm(rt))
    for url, vkey in rt.cfg.witness_list:
        yield _check(f"witness {node_name(url)}", lambda url=url, vkey=vkey: _witness(rt, url, vkey))


def _database(rt: Runtime) -> str:
    rt.check_state()
    return f"{masked(rt.cfg.database_url)}: reachable, schema current, commits durable"


def _redis(rt: Runtime) -> str:
    rt.queues.ping()
    return f"{masked(rt.cfg.broker)}: reachable (the broker: work in flight only)"


def _archive(rt: Runtime) -> str:
    rt.archive.put_immutable(PROBE_KEY, PROBE)
    if rt.archive.get(PROBE_KEY) != PROBE:
        raise LogStateError(f"{rt.archive.describe()}: the write probe did not read back")
    retention = f", Object Lock retention {rt.cfg.s3_retention_days} days" if rt.cfg.s3_retention_days else ""
    return f"{rt.archive.describe()}: writable and readable{retention}"


def _log(rt: Runtime) -> str:
    from pipelines.ledger.tlog import LogReader
    from pipelines.ledger.keys import load_signers

    if not rt.cfg.log_key_file:
        return "no ANCHORPIPE_LOG_KEY_FILE here (only the sequencer needs it)"
    signers = load_signers([rt.cfg.log_key_file])
    try:
        head = LogReader(rt.log_store, [s.verifier() for s in signers], signers[0].name).head()
    except LogStateError as exc:
        if "no checkpoint" in str(exc):
            raise LogStateError(f"no log at {rt.log_store.describe()} yet: 'anchorpipe init' creates it") from exc
        raise
    return (f"{rt.log_store.describe()}: origin {head.checkpoint.origin}, size {head.checkpoint.size}, "
            "signed by the key in ANCHORPIPE_LOG_KEY_FILE")


def _tsa(rt: Runtime, url: str) -> str:
    """One real time-stamp request (a probe message, not a checkpoint), checked as the anchorer checks it."""
    client = next(c for c in rt.external_anchoring.tsas if c.url == url)
    client.timestamp("anchorpipe config check\n\n— probe\n")
    roots = "its token verified under ANCHORPIPE_TSA_ROOTS" if client.roots else "no ANCHORPIPE_TSA_ROOTS to check it"
    return f"answered a time-stamp request: {roots}"


def _evm(rt: Runtime) -> str:
    chain = rt.external_anchoring.evm
    assert chain is not None
    balance = chain.balance()
    if balance == 0:
        raise LogStateError(f"chain {chain.chain_id}: the sender {chain.address} has no funds for gas")
    return (f"{chain.rpc}: chain {chain.chain_id} at block {chain.head()}, sender {chain.address} with "
            f"{balance / 10**18:.6f} ETH; {rt.cfg.evm_confirmations} confirmations")


def _witness(rt: Runtime, url: str, vkey: str) -> str:
    """The witness answers, is the one pinned, and witnesses this log (its ``GET /`` lists the log's key)."""
    import httpx

    try:
        about = httpx.get(url.rstrip("/") + "/", timeout=rt.cfg.witness_timeout).text.splitlines()
    except httpx.HTTPError as exc:
        raise LogStateError(f"unreachable ({type(exc).__name__})") from None
    log_key = rt.log_reader.verifiers[0].text()
    if f"witness {vkey}" not in about:
        return (f"answers, but does not list {vkey.split('+')[0]}'s key (not an anchorpipe witness?): it must "
                f"know the log's key {log_key}")
    if not any(line.startswith("log ") and log_key in line.split() for line in about):
        raise LogStateError(f"does not witness this log: give it --log {log_key}")
    return f"{vkey.split('+')[0]}, witnesses this log; quorum {rt.cfg.quorum} of {len(rt.cfg.witness_list)}"


def _sources(rt: Runtime) -> str:
    sources = rt.sources()
    return f"{len(sources)} valid: {', '.join(sorted(sources))}" if sources else "none configured"


def init(rt: Runtime) -> Iterator[Check]:
    """Set up what a new deployment needs, each step safe to repeat: the schema, the bucket, the log."""
    from pipelines.state.schema import upgrade

    def schema() -> str:
        before, now = upgrade(rt.cfg.database_url)
        return f"schema at revision {now}" + ("" if before == now else f" (was {before or 'empty'})")

    yield _check("database", schema)
    yield _check("archive", lambda: _bucket(rt))
    yield _check("log", lambda: _create_log(rt))


def _bucket(rt: Runtime) -> str:
    location = rt.cfg.archive
    if location.startswith("s3://"):
        from pipelines.storage.s3 import bucket_exists, create_bucket

        bucket = location[len("s3://"):].split("/", 1)[0]
        if not bucket_exists(bucket, endpoint_url=rt.cfg.s3_endpoint):
            create_bucket(bucket, endpoint_url=rt.cfg.s3_endpoint, object_lock=bool(rt.cfg.s3_retention_days))
            return f"created bucket {bucket}" + (" with Object Lock" if rt.cfg.s3_retention_days else "")
        return f"bucket {bucket} exists"
    return f"{location}: a folder (created as needed)"


def _create_log(rt: Runtime) -> str:
    if not rt.cfg.log_key_file:
        raise LogStateError("set ANCHORPIPE_LOG_KEY_FILE (made by 'anchorpipe log keygen') to create the log")
    log = rt.sequencer  # creates an empty log if there is none, checks the key against it otherwise
    head = log.head()
    return f"{rt.log_store.describe()}: origin {head.checkpoint.origin}, size {head.checkpoint.size}"
