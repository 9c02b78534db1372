"""The one place that turns settings into stores, state and ledgers.

Routes, tasks and commands ask this module for what they need and never build
their own. It stands above the stages it builds and imports them; the adapters
of optional parts (PostgreSQL, Redis, S3, the chain, each source kind) are
imported only when a setting asks for them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.core.cosignature import WitnessKey
from pipelines.errors import ConfigError, InputError
from pipelines.ledger.keys import load_signers, load_verifiers, read_text
from pipelines.ledger.tlog import LogReader, TransparencyLog
from pipelines.sources import Source
from pipelines.sources.config import SourceConfig, load_sources
from pipelines.stages.batches import Pipeline
from pipelines.stages.external import ExternalAnchoring
from pipelines.stages.pull import SourceRunner
from pipelines.stages.webhooks import Deliveries
from pipelines.stages.witnessing import Witnessing, quorum_met
from pipelines.state import State
from pipelines.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from pipelines.config import Settings
    from pipelines.state.postgres import PostgresState
    from pipelines.state.redis import BrokerQueues, FailureLimiter, RateLimiter

#: How long a starting service waits for its database to come up (a host booting, PostgreSQL restarting).
START_WAIT_S = 60.0


class Runtime:
    """What a service process needs, built from its settings on first use and then kept."""

    def __init__(self, cfg: Settings) -> None:
        self.cfg = cfg
        self._runners: dict[str, SourceRunner] = {}

    def store(self, location: str) -> ObjectStore:
        """The object store at ``location`` with the deployment's S3 endpoint, retention and encryption."""
        if location.startswith("s3://"):
            from pipelines.storage.s3 import S3Options

            cfg = self.cfg
            options = S3Options(cfg.s3_retention_days or None, cfg.s3_sse or None, cfg.s3_kms_key_id)
            return open_store(location, s3_endpoint=cfg.s3_endpoint, options=options)
        return open_store(location)

    @cached_property
    def state(self) -> PostgresState:
        from pipelines.state.postgres import PostgresState

        return PostgresState.connect(self.cfg.database_url, max_connections=self.cfg.database_pool,
                                     wait=self.cfg.database_wait)

    @cached_property
    def queues(self) -> BrokerQueues:
        """Depths of the Celery queues (the broker's Redis)."""
        from pipelines.state.redis import BrokerQueues

        return BrokerQueues(self.cfg.broker)

    @cached_property
    def webhooks(self) -> Deliveries:
        """Webhook deliveries from the outbox (pipelines.stages.webhooks)."""
        return Deliveries(self.state, self.cfg.webhook_attempts, self.cfg.webhook_timeout,
                          allow_private=self.cfg.webhook_allow_private)

    @cached_property
    def rate_limiter(self) -> RateLimiter | None:
        """Per-agency records/s limits (ANCHORPIPE_RATE_LIMIT, ANCHORPIPE_RATE_LIMITS), None without any."""
        if not self.cfg.rate_limit and not self.cfg.rate_limit_map:
            return None
        from pipelines.state.redis import RateLimiter

        return RateLimiter(self.cfg.redis_url, self.cfg.rate_limit_map, self.cfg.rate_limit)

    @cached_property
    def failure_limiter(self) -> FailureLimiter | None:
        """Refused requests per client address and key (ANCHORPIPE_FAILURE_LIMIT), None without a limit."""
        if not self.cfg.failure_limit:
            return None
        from pipelines.state.redis import FailureLimiter

        return FailureLimiter(self.cfg.redis_url, self.cfg.failure_limit)

    def check_start(self, wait_s: float = START_WAIT_S, on_wait: Callable[[str], None] | None = None) -> None:
        """What every service process passes before it serves, in order: Sentry started (when SENTRY_DSN is
        set), then the database at this version's schema and durable.

        A database that is unreachable or still starting is waited for, up to ``wait_s`` seconds, with
        ``on_wait`` told once why; then the last error is raised (transient). A wrong setting or schema
        raises ConfigError at once. The caller stops the process on either, so no step is skipped."""
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

        from pipelines.ops.monitoring import init_sentry
        from pipelines.ops.redact import redact

        try:
            init_sentry(self.cfg)
        except Exception as exc:  # a wrong option, an SDK the code does not know: not a reason to serve blind
            raise ConfigError(f"SENTRY_DSN is set but Sentry did not start: {type(exc).__name__}: "
                              f"{redact(str(exc))}") from exc
        told: list[str] = []

        def tell(state: RetryCallState) -> None:
            if on_wait and not told and state.outcome is not None:
                told.append(str(state.outcome.exception()))
                on_wait(f"waiting up to {wait_s:g} s for PostgreSQL: {told[0]}")

        for attempt in Retrying(retry=retry_if_exception(lambda e: getattr(e, "transient", False)),
                                stop=stop_after_delay(wait_s), wait=wait_exponential(0.2, max=5),
                                before_sleep=tell, reraise=True):
            with attempt:
                self.check_state()

    def check_state(self) -> None:
        """Refuse to serve on a database that is not at this version's schema or could lose a commit."""
        from pipelines.state.schema import check_current

        check_current(self.cfg.database_url)
        if not self.cfg.allow_volatile_state:
            self.state.check_persistence()

    @cached_property
    def archive(self) -> ObjectStore:
        return self.store(self.cfg.archive)

    @cached_property
    def log_store(self) -> ObjectStore:
        return self.store(self.cfg.log_location)

    @cached_property
    def sequencer(self) -> TransparencyLog:
        """The built-in log, opened for sequencing with the key file (created if absent)."""
        if not self.cfg.log_key_file:
            raise ConfigError("ANCHORPIPE_LOG_KEY_FILE is required to anchor batches")
        try:
            signers = load_signers([self.cfg.log_key_file])
        except InputError as exc:
            raise ConfigError(f"ANCHORPIPE_LOG_KEY_FILE: {exc}") from exc
        TransparencyLog.create(self.log_store, signers)
        return TransparencyLog.open(self.log_store, signers)

    @cached_property
    def pipeline(self) -> Pipeline:
        return Pipeline(self.cfg, self.state, self.archive, lambda: self.sequencer, log_store=self.log_store,
                        external=(lambda: self.external_anchoring) if self.cfg.rounds else None)

    @cached_property
    def log_reader(self) -> LogReader:
        """The log, read with its verifier key (ANCHORPIPE_LOG_VKEY, or that of ANCHORPIPE_LOG_KEY_FILE): what
        the anchorer and the witnessing stage check checkpoints with."""
        cfg = self.cfg
        try:
            if cfg.log_vkey:
                keys = load_verifiers([cfg.log_vkey])
            elif cfg.log_key_file:
                keys = [s.verifier() for s in load_signers([cfg.log_key_file])]
            else:
                raise ConfigError("set ANCHORPIPE_LOG_VKEY (or ANCHORPIPE_LOG_KEY_FILE): checkpoints are checked with "
                                  "the log's key")
        except InputError as exc:
            raise ConfigError(f"ANCHORPIPE_LOG_VKEY: {exc}") from exc
        return LogReader(self.log_store, keys, keys[0].name)

    @cached_property
    def external_anchoring(self) -> ExternalAnchoring:
        """The TSAs and the chain of ANCHORPIPE_ANCHORS, and the log's head as its key verifies it."""
        from pipelines.core.tsa import load_roots
        from pipelines.ledger.tsa import TsaClient

        cfg = self.cfg
        reader = self.log_reader
        roots = load_roots(Path(cfg.tsa_roots).read_bytes()) if cfg.tsa_roots else []
        tsas = [TsaClient(u, roots, cfg.tsa_timeout) for u in cfg.tsa_url_list] if "tsa" in cfg.external_kinds else []
        evm = None
        if "evm" in cfg.external_kinds:
            from pipelines.ledger.evm import EvmChain

            key = (read_text(cfg.evm_key_file, "ANCHORPIPE_EVM_KEY_FILE") if cfg.evm_key_file
                   else cfg.evm_key.get_secret_value() if cfg.evm_key else "")
            evm = EvmChain(cfg.evm_rpc_url or "", key, chain_id=cfg.evm_chain_id)
        if not cfg.witness_list:
            return ExternalAnchoring(cfg, self.state, reader.head, tsas, evm)
        keys = [WitnessKey.parse(vkey) for _, vkey in cfg.witness_list]
        return ExternalAnchoring(cfg, self.state, reader.cosigned, tsas, evm,
                                 witnessed=lambda note: quorum_met(note, keys, cfg.quorum))

    @cached_property
    def witnessing(self) -> Witnessing:
        """The witnesses of ANCHORPIPE_WITNESSES, asked about the log's head as its key verifies it."""
        from pipelines.ledger.witness import WitnessClient

        cfg = self.cfg
        if not cfg.witness_list:
            raise ConfigError("ANCHORPIPE_WITNESSES names no witness")
        reader = self.log_reader
        clients = [WitnessClient(url, WitnessKey.parse(vkey), cfg.witness_timeout) for url, vkey in cfg.witness_list]
        return Witnessing(reader, clients, cfg.quorum)

    def sources(self) -> dict[str, SourceConfig]:
        """The configured pull sources (ANCHORPIPE_SOURCES), validated; none if unset."""
        return load_sources(self.cfg.sources) if self.cfg.sources else {}

    def source_runner(self, name: str) -> SourceRunner:
        """The runner of source ``name``, built once per process (its HTTP client, database engine or
        S3 client is reused by every run)."""
        if name not in self._runners:
            if not self.cfg.sources:
                raise ConfigError("ANCHORPIPE_SOURCES is not set: no sources file")
            sources = self.sources()
            if name not in sources:
                raise InputError(f"no source {name!r}; known: {', '.join(sorted(sources)) or 'none'}")
            self._runners[name] = SourceRunner(sources[name], self.state, build_source(sources[name], self.state),
                                               max_pending=self.cfg.pull_max_pending,
                                               lock_ttl=self.cfg.source_lock_ttl)
        return self._runners[name]


def build_source(cfg: SourceConfig, state: State) -> Source:
    """The connector for a configured source (each kind's client library is imported only when used)."""
    if cfg.kind == "http":
        from pipelines.sources.http import HttpFeed

        return HttpFeed(cfg)
    if cfg.kind == "s3":
        from pipelines.sources.s3 import S3Prefix

        return S3Prefix(cfg, lambda unit: state.source_unit_finished(cfg.name, unit))
    if cfg.kind == "sql":
        from pipelines.sources.sql import SqlTable

        return SqlTable(cfg)
    from pipelines.sources.folder import DropFolder

    return DropFolder(cfg)


def runtime() -> Runtime:
    """The process's runtime, built from the environment's settings once."""
    global _RUNTIME
    if _RUNTIME is None:
        from pipelines.config import settings

        _RUNTIME = Runtime(settings())
    return _RUNTIME


_RUNTIME: Runtime | None = None
