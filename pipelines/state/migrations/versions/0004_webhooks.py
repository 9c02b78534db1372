"""Webhooks: the URLs agencies registered, and an outbox of events written in the same transaction as what
they report (a batch archived, its anchors confirmed, an item quarantined), delivered by their own queue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UP = """
CREATE TABLE webhooks (
    id          bigserial PRIMARY KEY,
    agency      text    NOT NULL,
    url         text    NOT NULL,
    events      text[]  NOT NULL,
    secret      text    NOT NULL,           -- the Standard Webhooks signing secret (whsec_...), shown once
    created_ms  bigint  NOT NULL
);
CREATE INDEX webhooks_by_agency ON webhooks (agency);

-- One row per (webhook, event): pending until delivered; dead after too many failed attempts (replayable).
CREATE TABLE webhook_events (
    id            bigserial PRIMARY KEY,
    webhook_id    bigint  NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    type          text    NOT NULL,
    payload       jsonb   NOT NULL,
    created_ms    bigint  NOT NULL,
    state         text    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts      integer NOT NULL DEFAULT 0,
    next_try_ms   bigint  NOT NULL DEFAULT 0,
    error         text,
    delivered_ms  bigint
);
CREATE INDEX webhook_events_due ON webhook_events (next_try_ms) WHERE state = 'pending';
"""


def upgrade() -> None:
    op.execute(UP)


def downgrade() -> None:
    op.execute("DROP TABLE webhook_events")
    op.execute("DROP TABLE webhooks")
