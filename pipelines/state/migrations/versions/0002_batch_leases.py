"""Batch leases: a stage that works on a batch holds a lease it renews; a dead worker's lease expires.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Milliseconds since the epoch in the server's clock; NULL while no worker holds the batch.
    op.execute("ALTER TABLE batches ADD COLUMN lease_until bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE batches DROP COLUMN lease_until")
