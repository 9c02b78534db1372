"""The state's schema in PostgreSQL: upgrading it (Alembic) and checking a database is current.

``anchorpipe db upgrade`` runs :func:`upgrade`; services call :func:`check_current`
at start and refuse a database whose schema is older or newer than this
version's, naming the command that fixes it.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import ConfigError, StateError

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlalchemy_url(url: str) -> str:
    """``url`` for SQLAlchemy with the psycopg 3 driver (Alembic runs on SQLAlchemy)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ConfigError("ANCHORPIPE_DATABASE_URL must be a postgresql:// URL")


def _config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = sqlalchemy_url(url)
    return cfg


def head() -> str:
    """The schema revision this version of anchorpipe needs."""
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(_config("postgresql://")).get_current_head())


def upgrade(url: str) -> tuple[str | None, str]:
    """Bring the database at ``url`` to this version's schema; return (revision before, revision now)."""
    from alembic import command
    from sqlalchemy.exc import OperationalError

    before = current(url)
    try:
        command.upgrade(_config(url), "head")
    except OperationalError as exc:
        raise StateError(f"PostgreSQL failed: {exc.orig}", transient=True) from exc
    return before, head()


def current(url: str) -> str | None:
    """The database's schema revision (None for an empty database)."""
    import psycopg

    try:
        with psycopg.connect(psycopg_url(url), connect_timeout=10) as conn:
            exists = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return None
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            return None if row is None else str(row[0])
    except psycopg.OperationalError as exc:
        raise StateError(f"PostgreSQL failed: {exc}", transient=True) from exc


def check_current(url: str) -> None:
    """ConfigError unless the database's schema is exactly the one this version needs."""
    now, want = current(url), head()
    if now != want:
        raise ConfigError(f"the database schema is at revision {now or 'none (empty database)'}, this version "
                          f"needs {want}: run 'anchorpipe db upgrade'")


def psycopg_url(url: str) -> str:
    """``url`` as libpq takes it (SQLAlchemy's ``postgresql+psycopg://`` spelling accepted)."""
    return "postgresql://" + sqlalchemy_url(url)[len("postgresql+psycopg://"):]
