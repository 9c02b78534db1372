"""External anchors: rounds that anchor one log checkpoint to TSAs and chains, and proofs upgraded under them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UP = """
-- One anchoring round: the log checkpoint (tree size, signed note) every target anchors.
CREATE TABLE anchorings (
    size       bigint PRIMARY KEY,
    note       text    NOT NULL,
    opened_ms  bigint  NOT NULL,
    closed_ms  bigint,
    kinds      text[]  NOT NULL DEFAULT '{}'   -- the kinds confirmed when it closed: what upgrades add
);
CREATE UNIQUE INDEX anchorings_one_open ON anchorings ((true)) WHERE closed_ms IS NULL;

-- Each target's progress on a round: 'tsa:<url>' or 'evm:<chain id>'. An EVM target keeps every
-- transaction it signed (sent or about to be) in txs, so a crash re-sends the same bytes.
CREATE TABLE anchor_receipts (
    size          bigint  NOT NULL REFERENCES anchorings (size),
    target        text    NOT NULL,
    state         text    NOT NULL CHECK (state IN ('pending', 'submitted', 'confirmed', 'failed')),
    receipt       text,
    txs           jsonb   NOT NULL DEFAULT '[]',
    attempts      integer NOT NULL DEFAULT 0,
    next_try_ms   bigint  NOT NULL DEFAULT 0,
    error         text,
    updated_ms    bigint  NOT NULL,
    confirmed_ms  bigint,
    PRIMARY KEY (size, target)
);

-- Where each batch is in the log, the external anchors its newest proofs carry, and the object that holds them.
ALTER TABLE batches ADD COLUMN log_index bigint;
ALTER TABLE batches ADD COLUMN anchors_key text;
ALTER TABLE batches ADD COLUMN ext_size bigint;
ALTER TABLE batches ADD COLUMN ext_kinds text[];
ALTER TABLE batches ADD COLUMN ext_done boolean NOT NULL DEFAULT false;
UPDATE batches SET log_index = (anchor::jsonb ->> 'index')::bigint WHERE anchor IS NOT NULL;
-- Archived batches still waiting for (more) external anchors, by log position: upgrades and lag.
CREATE INDEX batches_to_upgrade ON batches (log_index) WHERE state = 'archived' AND NOT ext_done;
"""


def upgrade() -> None:
    op.execute(UP)


def downgrade() -> None:
    op.execute("DROP INDEX batches_to_upgrade")
    for col in ("ext_done", "ext_kinds", "ext_size", "anchors_key", "log_index"):
        op.execute(f"ALTER TABLE batches DROP COLUMN {col}")
    op.execute("DROP TABLE anchor_receipts")
    op.execute("DROP TABLE anchorings")
