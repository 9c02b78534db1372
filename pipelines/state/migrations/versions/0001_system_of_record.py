"""PostgreSQL as the system of record: records, batches, keys, sources, quarantine, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Times are milliseconds since the epoch (bigint), as everywhere in anchorpipe's state.
SCHEMA = """
CREATE TABLE agencies (
    name        text PRIMARY KEY,
    created_ms  bigint NOT NULL
);

-- One row per accepted record. batch_id is NULL while the record waits to be sealed (the pending
-- pool); leaf is its position in the batch's tree. Rows never change after they are claimed.
CREATE TABLE records (
    agency          text   NOT NULL,
    id              text   NOT NULL,
    content_sha256  bytea  NOT NULL,
    salt            bytea  NOT NULL,
    accepted_ms     bigint NOT NULL,
    batch_id        text,
    leaf            integer,
    PRIMARY KEY (agency, id)
);
-- The pending pool: small (only what waits to be sealed), oldest first per agency.
CREATE INDEX records_pending ON records (agency, accepted_ms, id) WHERE batch_id IS NULL;
CREATE INDEX records_batch ON records (batch_id, leaf) WHERE batch_id IS NOT NULL;

-- A batch, its stage (claimed, sealed, anchored, archived, failed) and where its proofs are.
CREATE TABLE batches (
    id          text PRIMARY KEY,
    agency      text    NOT NULL,
    state       text    NOT NULL CHECK (state IN ('claimed', 'sealed', 'anchored', 'archived', 'failed')),
    sealed_at   text    NOT NULL,
    size        integer NOT NULL,
    created_ms  bigint  NOT NULL,
    updated_ms  bigint  NOT NULL,
    root        text,
    anchor      text,
    error       text,
    bundle      text,
    offsets     integer[]
);
-- Work in flight by stage and age (the reconciler's and the metrics' view); archived batches drop out.
CREATE INDEX batches_in_flight ON batches (state, updated_ms) WHERE state <> 'archived';

CREATE TABLE counters (
    name   text PRIMARY KEY,
    value  bigint NOT NULL
);
INSERT INTO counters VALUES ('archived_records', 0), ('checkpoint_ms', 0);

CREATE TABLE dead_letters (
    seq    bigserial PRIMARY KEY,
    doc    text   NOT NULL,  -- JSON; text, not jsonb: an error message may hold any character
    at_ms  bigint NOT NULL
);

-- API keys by the SHA-256 of the key (the key itself is never stored).
CREATE TABLE api_keys (
    digest     text PRIMARY KEY,
    principal  jsonb NOT NULL
);

CREATE TABLE sources (
    name        text PRIMARY KEY,
    cursor      text,
    failures    integer NOT NULL DEFAULT 0,
    next_at     bigint  NOT NULL DEFAULT 0,
    last_error  text    NOT NULL DEFAULT '',
    last_ok     bigint,
    lock_token  text,
    lock_until  bigint
);
CREATE TABLE source_units (
    source  text NOT NULL,
    unit    text NOT NULL,
    at_ms   bigint NOT NULL,
    PRIMARY KEY (source, unit)
);
CREATE TABLE quarantine (
    source    text  NOT NULL,
    position  text  NOT NULL,
    doc       text  NOT NULL,  -- JSON; text, not jsonb: a bad item may hold any character
    PRIMARY KEY (source, position)
);
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute("DROP TABLE quarantine, source_units, sources, api_keys, dead_letters, counters, batches, records, "
               "agencies")
