"""Alembic's entry point for anchorpipe's schema (run by ``anchorpipe db upgrade``, see :mod:`..schema`).

The database URL comes from the caller (``config.attributes["url"]``). A
session-level advisory lock makes concurrent upgrades (several processes
starting at once) run one after another; the second finds nothing to do.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

MIGRATION_LOCK = 0x616E6368  # "anch": an arbitrary, fixed advisory lock id


def run() -> None:
    engine = create_engine(context.config.attributes["url"], poolclass=NullPool)
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        conn.commit()
        try:
            context.configure(connection=conn, target_metadata=None, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            conn.commit()
    engine.dispose()


run()
