"""Rows of a SQL table or view after a monotonically increasing column, with a tie-breaker (SQLAlchemy)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import os
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from pipelines.errors import ConfigError, StorageError
from pipelines.sources import Mapping, Page
from pipelines.sources.config import SqlSource


def jsonable(value: Any) -> Any:
    """A JSON value for a column value (times as ISO 8601, decimals as text, bytes as base64)."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def _encode_cursor(values: tuple[Any, Any]) -> str:
    out = []
    for v in values:
        if isinstance(v, dt.datetime):
            out.append({"datetime": v.isoformat()})
        elif isinstance(v, dt.date):
            out.append({"date": v.isoformat()})
        elif isinstance(v, decimal.Decimal):
            out.append({"decimal": str(v)})
        else:
            out.append(v)
    return json.dumps(out)


def _decode_cursor(text: str) -> list[Any]:
    out = []
    for v in json.loads(text):
        if isinstance(v, dict) and "datetime" in v:
            out.append(dt.datetime.fromisoformat(v["datetime"]))
        elif isinstance(v, dict) and "date" in v:
            out.append(dt.date.fromisoformat(v["date"]))
        elif isinstance(v, dict) and "decimal" in v:
            out.append(decimal.Decimal(v["decimal"]))
        else:
            out.append(v)
    return out


class SqlTable:
    def __init__(self, cfg: SqlSource) -> None:
        self.cfg = cfg
        url = os.environ.get(cfg.url_env, "") if cfg.url_env else cfg.url
        if not url:
            raise ConfigError(f"source {cfg.name}: environment variable {cfg.url_env} is not set")
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.mapping = Mapping(cfg.id_field, cfg.content_field, cfg.sha256_field)
        self._table: sa.Table | None = None

    def table(self) -> sa.Table:
        if self._table is None:
            self._table = sa.Table(self.cfg.table, sa.MetaData(), autoload_with=self.engine)
            for col in (self.cfg.cursor_column, self.cfg.tiebreak_column):
                if col not in self._table.c:
                    raise ConfigError(f"source {self.cfg.name}: table {self.cfg.table} has no column {col!r}")
        return self._table

    def fetch(self, cursor: str | None, limit: int) -> Page:
        try:
            table = self.table()
            col, tie = table.c[self.cfg.cursor_column], table.c[self.cfg.tiebreak_column]
            query = sa.select(table).order_by(col, tie).limit(limit)
            if cursor:
                last_col, last_tie = _decode_cursor(cursor)
                query = query.where(sa.or_(col > last_col, sa.and_(col == last_col, tie > last_tie)))
            with self.engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise StorageError(f"{self.cfg.name}: database error {type(exc).__name__}", transient=True) from exc
        items = []
        for row in rows:
            where = f"{self.cfg.table} {self.cfg.cursor_column}={row[self.cfg.cursor_column]} " \
                    f"{self.cfg.tiebreak_column}={row[self.cfg.tiebreak_column]}"
            items.append(self.mapping.pulled(where, {k: jsonable(v) for k, v in row.items()}))
        if not rows:
            return Page([], cursor, False)
        last = rows[-1]
        next_cursor = _encode_cursor((last[self.cfg.cursor_column], last[self.cfg.tiebreak_column]))
        return Page(items, next_cursor, len(rows) == limit)

    def finish(self, units: list[str]) -> None:
        pass
