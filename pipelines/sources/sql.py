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


#: How each cursor value type is written into the stored cursor (tagged JSON) and read back.
_CODECS: list[tuple[str, type | tuple[type, ...], Any, Any]] = [
    ("datetime", dt.datetime, dt.datetime.isoformat, dt.datetime.fromisoformat),
    ("date", dt.date, dt.date.isoformat, dt.date.fromisoformat),
    ("time", dt.time, dt.time.isoformat, dt.time.fromisoformat),
    ("decimal", decimal.Decimal, str, decimal.Decimal),
    ("uuid", uuid.UUID, str, uuid.UUID),
    ("bytes", (bytes, bytearray, memoryview), lambda v: base64.b64encode(bytes(v)).decode(), base64.b64decode),
]


def _encode_cursor(values: tuple[Any, Any]) -> str:
    """The stored cursor for a row's (cursor column, tie-breaker) values, whatever their types."""
    out = []
    for v in values:
        if v is None or isinstance(v, bool | int | float | str):
            out.append(v)
            continue
        for tag, kind, encode, _ in _CODECS:
            if isinstance(v, kind):
                out.append({tag: encode(v)})
                break
        else:
            raise ConfigError(f"cursor values of type {type(v).__name__} are not supported; "
                              "use a number, text, time, date, decimal, UUID or binary column")
    return json.dumps(out)


def _decode_cursor(text: str) -> list[Any]:
    decoders = {tag: decode for tag, _, _, decode in _CODECS}
    out = []
    for v in json.loads(text):
        if isinstance(v, dict) and len(v) == 1 and next(iter(v)) in decoders:
            tag, raw = next(iter(v.items()))
            out.append(decoders[tag](raw))
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
                if self.cfg.safety_lag:
                    query = query.where(col <= self._horizon(conn, col))
                rows = [dict(r._mapping) for r in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise StorageError(f"{self.cfg.name}: database error {type(exc).__name__}", transient=True) from exc
        except (TypeError, ValueError) as exc:  # a stored cursor or a safety lag that does not fit the column
            raise ConfigError(f"{self.cfg.name}: cursor column {self.cfg.cursor_column!r}: {exc}") from exc
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

    def _horizon(self, conn: sa.Connection, col: sa.ColumnElement[Any]) -> Any:
        """The newest cursor value safe to read: ``safety_lag`` behind the database's clock (time
        columns) or behind the column's largest value (numbers). Rows past it wait for a later run, so
        a transaction that stamped its row earlier but commits later is not passed by the cursor."""
        lag = self.cfg.safety_lag
        newest = conn.execute(sa.select(sa.func.max(col))).scalar()
        if newest is None:
            return None
        if isinstance(newest, dt.datetime | dt.date):
            now = conn.execute(sa.select(sa.func.current_timestamp())).scalar()
            if isinstance(now, str):  # SQLite: UTC as text
                now = dt.datetime.fromisoformat(now)
            if isinstance(now, dt.datetime) and isinstance(newest, dt.datetime) and newest.tzinfo is None \
                    and now.tzinfo is not None:
                now = now.astimezone(dt.UTC).replace(tzinfo=None)
            return now - dt.timedelta(seconds=lag)
        if isinstance(newest, int | float | decimal.Decimal):
            return newest - type(newest)(lag)
        raise TypeError(f"safety_lag needs a time or number column, not {type(newest).__name__}")

    def finish(self, units: list[str]) -> None:
        pass
