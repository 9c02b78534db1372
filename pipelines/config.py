"""Every setting of the service, read from the environment in one place and validated at start.

Each setting is ``ANCHORPIPE_<NAME>``, except ``SENTRY_DSN``. See
docs/operations.md for the list with defaults and examples.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANCHORPIPE_", extra="ignore", frozen=True)

    #: PostgreSQL, the system of record (accepted records, batches, keys, sources). Required.
    #: (Kept out of repr, as every URL here: it may hold a password.)
    database_url: str = Field(repr=False)
    #: Most connections each process opens to PostgreSQL.
    database_pool: int = Field(10, ge=1, le=1000)
    #: Seconds a request waits for a database connection before it is answered 503 (PostgreSQL down or busy).
    database_wait: float = Field(0.5, gt=0, le=60)
    #: Redis for work in flight (the Celery broker); it may restart empty. Required.
    redis_url: str = Field(repr=False)
    #: Celery broker; defaults to redis_url.
    broker_url: str | None = Field(None, repr=False)
    #: Where proofs are archived: s3://bucket/prefix or a folder. Required.
    archive: str
    #: Where the built-in log lives; defaults to <archive>/log.
    log: str | None = None
    #: The log's private key file (the sequencer needs it; nothing else reads it).
    log_key_file: str | None = None
    #: The log's verifier key (the text, or a file holding it): what the anchorer and the witnessing stage check
    #: the checkpoints with, so they need no private key. Defaults to the one of ANCHORPIPE_LOG_KEY_FILE.
    log_vkey: str | None = None
    #: S3 endpoint for non-AWS services (MinIO, Ceph RGW, moto).
    s3_endpoint: str | None = None
    #: Object Lock COMPLIANCE retention, in days, for archived objects (0: none).
    s3_retention_days: int = Field(0, ge=0)
    #: Server-side encryption: "", "AES256" or "aws:kms"; with aws:kms, s3_kms_key_id.
    s3_sse: str = ""
    s3_kms_key_id: str | None = None
    #: A batch is sealed when it has this many records ...
    batch_max: int = Field(10_000, ge=1, le=1_000_000)
    #: ... or when its oldest record has waited this long (seconds).
    batch_interval: float = Field(1.0, gt=0, le=3600)
    #: Largest request body the intake API accepts, in bytes.
    max_body_bytes: int = Field(64 << 20, ge=1024)
    #: Most records in one request.
    max_records_per_request: int = Field(50_000, ge=1)
    #: Attempts before a webhook event goes to the dead letters (``anchorpipe webhook replay`` sends it again).
    webhook_attempts: int = Field(10, ge=1, le=100)
    #: Seconds a webhook receiver may take to answer.
    webhook_timeout: float = Field(10.0, gt=0, le=120)
    #: Let agencies register webhooks on loopback, private or link-local addresses (off: the notifier would
    #: otherwise reach into the operator's own network on an agency's say-so).
    webhook_allow_private: bool = False
    #: Records a second each agency may submit through the API (0: no limit); over it, 429 with Retry-After.
    rate_limit: int = Field(0, ge=0)
    #: Per-agency limits overriding it: ``agency=records_per_second`` pairs, comma-separated.
    rate_limits: str = ""
    #: Refused requests (400, 401, 403, 413, 422) allowed per client address, and per key presented, in each
    #: ten seconds; past it every request of theirs is answered 429 unread until the window ends (0: no limit).
    #: Off by default: it needs the API to see each client's own address (behind infra/nginx on the same
    #: host, uvicorn takes it from X-Forwarded-For); behind a proxy it cannot tell apart, it would count all
    #: clients as one.
    failure_limit: int = Field(0, ge=0)
    #: Celery's visibility timeout (seconds): above the longest task, or a task runs twice.
    visibility_timeout: int = Field(3600, ge=5)
    #: How often (seconds) the Redis transport looks for unacknowledged messages to restore.
    unacked_restore_interval: float = Field(100.0, gt=0)
    #: The reconciler re-drives any batch that stayed in one stage longer than this (seconds): the budget
    #: within which the work of a dead worker, or of a lost message, is taken up again.
    stuck_after: float = Field(15.0, gt=0)
    #: /readyz answers 503 once a stage's oldest batch has waited longer than this (seconds); 0: never (a stuck
    #: stage then makes it "degraded" only, intake going on).
    unready_after: float = Field(0.0, ge=0)
    #: GET /v1/records answers 503 when the archive takes longer than this (seconds) to return a proof.
    archive_read_timeout: float = Field(5.0, gt=0)
    #: The sources file (TOML) of agency systems to pull from; none by default.
    sources: str | None = None
    #: Pulling pauses while more than this many accepted records wait to be sealed (backpressure).
    pull_max_pending: int = Field(1_000_000, ge=1)
    #: A source's run lock expires this many seconds after its holder stops renewing it.
    source_lock_ttl: float = Field(300.0, gt=0)
    #: Start even if PostgreSQL could lose committed transactions (fsync off; tests and demos only).
    allow_volatile_state: bool = False
    #: Log lines as JSON objects ("json") or plain text ("text"), on stderr.
    log_format: Literal["json", "text"] = "json"
    #: Level of anchorpipe's own log lines (INFO: one line per batch per stage and per pull run).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Sentry DSN, from SENTRY_DSN.
    sentry_dsn: SecretStr | None = Field(None, validation_alias="SENTRY_DSN")
    #: Prometheus metrics port for workers (0: none).
    metrics_port: int = Field(0, ge=0, le=65535)
    #: Address the workers' metrics listener binds (0.0.0.0 where Prometheus scrapes from elsewhere).
    metrics_addr: str = "127.0.0.1"
    #: Bearer token that the API's /metrics requires; unset, the API serves no metrics (they name agencies).
    metrics_token: SecretStr | None = None

    #: The anchors to seek, comma-separated: ``tlog`` (the built-in log, always), ``tsa``, ``evm``.
    anchors: str = "tlog"
    #: Every this many seconds the log's latest checkpoint, if it grew, is anchored externally (one round).
    external_interval: float = Field(10.0, gt=0, le=86400)
    #: A round whose targets are not all confirmed after this many seconds closes with those that are.
    external_deadline: float = Field(600.0, gt=0)
    #: RFC 3161 time-stamping authorities' URLs, comma-separated (with ``tsa`` in anchors).
    tsa_urls: str = ""
    #: PEM file of those TSAs' root certificates: each token is checked against them before it is kept.
    tsa_roots: str | None = None
    #: Seconds to wait for a TSA's answer.
    tsa_timeout: float = Field(10.0, gt=0, le=300)
    #: JSON-RPC URL of an EVM node (with ``evm`` in anchors). Kept out of repr: it may hold an API key.
    evm_rpc_url: str | None = Field(None, repr=False)
    #: The sending account's private key, in a file (mode 0600) or in ANCHORPIPE_EVM_KEY.
    evm_key_file: str | None = None
    evm_key: SecretStr | None = None
    #: The chain id the node must serve (refuse to anchor elsewhere); unset: whatever it serves.
    evm_chain_id: int | None = Field(None, ge=1)
    #: Blocks on top of the anchoring transaction's before it counts (12: about 2.4 minutes on Ethereum).
    evm_confirmations: int = Field(12, ge=1, le=10_000)
    #: Seconds an anchoring transaction may wait unmined before it is replaced at a higher fee (same nonce).
    evm_replace_after: float = Field(120.0, gt=0)

    #: Witnesses asked to cosign each checkpoint: ``<URL> <witness vkey>`` entries, separated by commas or
    #: newlines (the vkey is what ``anchorpipe witness keygen`` printed). None by default.
    witnesses: str = ""
    #: Cosignatures a checkpoint needs to count as witnessed; 0: a majority of the witnesses.
    witness_quorum: int = Field(0, ge=0)
    #: Seconds to wait for a witness's answer (a slow or dead one never holds up the log).
    witness_timeout: float = Field(5.0, gt=0, le=300)
    #: How often (seconds) the newest checkpoint is sent to the witnesses, if the log grew.
    witness_interval: float = Field(1.0, gt=0, le=3600)

    @field_validator("anchors")
    @classmethod
    def _anchors(cls, v: str) -> str:
        kinds = [k.strip() for k in v.split(",") if k.strip()]
        unknown = sorted(set(kinds) - {"tlog", "tsa", "evm"})
        if unknown:
            raise ValueError(f"unknown anchor kind(s) {unknown}; known: evm, tlog, tsa")
        if "tlog" not in kinds:
            raise ValueError("tlog is always on: external anchors attest the log's checkpoints")
        return ",".join(sorted(set(kinds)))

    @model_validator(mode="after")
    def _external(self) -> Settings:
        if "tsa" in self.external_kinds and not self.tsa_url_list:
            raise ValueError("anchors has tsa: set ANCHORPIPE_TSA_URLS")
        if "evm" in self.external_kinds and not (self.evm_rpc_url and (self.evm_key_file or self.evm_key)):
            raise ValueError("anchors has evm: set ANCHORPIPE_EVM_RPC_URL and ANCHORPIPE_EVM_KEY_FILE "
                             "(or ANCHORPIPE_EVM_KEY)")
        return self

    @field_validator("rate_limits")
    @classmethod
    def _rate_limits(cls, v: str) -> str:
        for entry in _entries(v):
            name, _, n = entry.partition("=")
            if not name.strip() or not n.strip().isdigit():
                raise ValueError(f"want agency=records_per_second pairs, got {entry!r}")
        return v

    @property
    def rate_limit_map(self) -> dict[str, int]:
        return {name.strip(): int(n) for name, _, n in (e.partition("=") for e in _entries(self.rate_limits))}

    @field_validator("witnesses")
    @classmethod
    def _witnesses(cls, v: str) -> str:
        from pipelines.core.cosignature import WitnessKey
        from pipelines.errors import InputError

        for entry in _entries(v):
            parts = entry.split()
            if len(parts) != 2 or not parts[0].startswith(("http://", "https://")):
                raise ValueError(f"want '<http(s) URL> <witness vkey>' entries, got {entry[:80]!r}")
            try:
                WitnessKey.parse(parts[1])
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _quorum(self) -> Settings:
        if self.witness_quorum > len(self.witness_list):
            raise ValueError(f"ANCHORPIPE_WITNESS_QUORUM is {self.witness_quorum}, but "
                             f"{len(self.witness_list)} witnesses are configured (ANCHORPIPE_WITNESSES)")
        return self

    @property
    def witness_list(self) -> list[tuple[str, str]]:
        """The configured witnesses' (URL, vkey) pairs."""
        return [(p[0], p[1]) for p in (e.split() for e in _entries(self.witnesses))]

    @property
    def quorum(self) -> int:
        """Cosignatures a checkpoint needs (0 without witnesses)."""
        return self.witness_quorum or (len(self.witness_list) // 2 + 1 if self.witness_list else 0)

    @property
    def rounds(self) -> bool:
        """Whether anchoring rounds run: external anchors or witnesses are configured (proofs get upgraded)."""
        return bool(self.external_kinds or self.witness_list)

    @property
    def upgrade_kinds(self) -> frozenset[str]:
        """What a fully upgraded proof carries beyond the log: the external kinds, and ``witness``."""
        return self.external_kinds | ({"witness"} if self.witness_list else frozenset())

    @property
    def external_kinds(self) -> frozenset[str]:
        """The external anchor kinds configured (tsa, evm)."""
        return frozenset(self.anchors.split(",")) - {"tlog"}

    @property
    def tsa_url_list(self) -> list[str]:
        return [u.strip() for u in self.tsa_urls.split(",") if u.strip()]

    @field_validator("database_url")
    @classmethod
    def _database(cls, v: str) -> str:
        if not v.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            raise ValueError("want a postgresql:// URL")
        return v

    @field_validator("s3_sse")
    @classmethod
    def _sse(cls, v: str) -> str:
        if v not in ("", "AES256", "aws:kms"):
            raise ValueError(f"want '', 'AES256' or 'aws:kms', got {v!r}")
        return v

    @property
    def log_location(self) -> str:
        return self.log or self.archive.rstrip("/") + "/log"

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url


def _entries(text: str) -> list[str]:
    return [e.strip() for e in text.replace("\n", ",").split(",") if e.strip()]


def load_settings() -> Settings:
    """Read and validate the environment; raise ConfigError naming every bad setting."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a rule across settings: its message names them
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            name = str(err["loc"][0]).upper()
            name = name if name == "SENTRY_DSN" else f"ANCHORPIPE_{name}"
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
