"""Batch reads and writes of view rows: one statement per batch, whatever its size.

PostgreSQL gets a batch as one array per column, expanded on the server by `unnest` into rows
(`INSERT ... SELECT * FROM unnest($1::uuid[], $2::varchar[], ...)`): one statement, one round
trip, and the cheapest row source the server has (a JSON document expanded by
`json_populate_recordset` costs it about three times as much per row). Each array is written
as PostgreSQL's array text by orjson: a JSON array of scalars is that text, brackets aside, as
long as it holds no escape other than \\" and \\\\ (strings with control characters); a column
that does, or holds a type orjson does not know, is handed to the driver to adapt instead.
Values are first bound as our column types bind them (aware datetimes only, in UTC); decimals
go exactly, as text. SQLite, the embedded store, gets an executemany.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import lru_cache, partial
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Dialect, Integer, Table, TypeDecorator, Uuid, select
from sqlalchemy.dialects import sqlite

Row = dict[str, Any]
Processor = Callable[[Any], Any]
Binders = tuple[tuple[int, Processor], ...]


def upsert(conn: Connection, table: Table, rows: Sequence[Row], key: str) -> None:
    """Insert or replace rows by primary key in one statement per batch, on either dialect:
    every column but the key is set from the new row (as the executemany form always did)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        names = tuple(str(c.name) for c in table.columns if c.name in rows[0])
        conn.exec_driver_sql(
            _pg_upsert_sql(table, names, key, conn.dialect), columns(table, names, rows, conn)
        )
        return
    stmt = sqlite.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[key],
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name != key},
    )
    conn.execute(stmt, list(rows))


def columns(
    table: Table, names: tuple[str, ...], rows: Sequence[Row], conn: Connection
) -> tuple[Any, ...]:
    """PostgreSQL: the rows' values under `names`, one parameter per column for
    `unnest(%s::type[], ...)` (see `unnest_params`), each value bound by its column type."""
    lists = [[r[n] for r in rows] for n in names]
    for i, process in _binders(table, names, conn.dialect):
        lists[i] = [None if v is None else process(v) for v in lists[i]]
    return tuple(_array(values) for values in lists)


def unnest_params(table: Table, names: Sequence[str], dialect: Dialect) -> str:
    """`%s::type[], ...` for `names` of `table`: the arguments `columns` fills."""
    return ", ".join(f"%s::{table.c[n].type.compile(dialect=dialect)}[]" for n in names)


def load_rows(conn: Connection, table: Table, key: str, ids: Sequence[Any]) -> dict[Any, Row]:
    """The rows of `table` whose `key` is in `ids`, as dicts keyed by it, typed as a select of
    the table reads them. PostgreSQL: one `= ANY(array)` statement, the ids sent as one text."""
    if not ids:
        return {}
    if conn.dialect.name != "postgresql" or not isinstance(table.c[key].type, Uuid | Integer):
        result = conn.execute(select(table).where(table.c[key].in_(list(ids))))
        return {r._mapping[key]: dict(r._mapping) for r in result}
    sql, names, processed = _pg_select_sql(table, key, conn.dialect)
    at = names.index(key)
    literal = "{" + ",".join(str(i) for i in ids) + "}"  # uuids, integers: nothing to quote
    rows: dict[Any, Row] = {}
    for values in conn.exec_driver_sql(sql, (literal,)).all():
        row = dict(zip(names, values, strict=True))
        for name, process in processed:
            if row[name] is not None:
                row[name] = process(row[name])
        rows[values[at]] = row
    return rows


def _array(values: list[Any]) -> Any:
    """PostgreSQL's array text for `values`, or the list itself for the driver to adapt."""
    try:
        text = orjson.dumps(values, default=_decimal)
    except TypeError:
        return values
    if b"\\" in text:  # a JSON escape array_in would read otherwise (\n, \u0001, ...)
        return values
    return "{" + text[1:-1].decode() + "}"  # null is NULL to array_in, as it is to JSON


def _decimal(value: object) -> str:
    if type(value) is Decimal and value.is_finite():
        return str(value)
    raise TypeError(f"{type(value).__name__} is not written as JSON")


@lru_cache(maxsize=64)
def _binders(table: Table, names: tuple[str, ...], dialect: Dialect) -> Binders:
    """Our column types' own binding (aware datetimes to UTC, naive ones refused), not the
    driver-level conversions under it: the array text carries decimals exactly."""
    return tuple(
        (i, partial(cast(TypeDecorator[Any], table.c[n].type).process_bind_param, dialect=dialect))
        for i, n in enumerate(names)
        if isinstance(table.c[n].type, TypeDecorator)
    )


@lru_cache(maxsize=64)
def _pg_upsert_sql(table: Table, names: tuple[str, ...], key: str, dialect: Dialect) -> str:
    updates = ", ".join(f"{c.name} = EXCLUDED.{c.name}" for c in table.columns if c.name != key)
    return (  # the names are the table's; the values go as parameters
        f"INSERT INTO {table.name} ({', '.join(names)}) "  # noqa: S608
        f"SELECT * FROM unnest({unnest_params(table, names, dialect)}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


@lru_cache(maxsize=64)
def _pg_select_sql(
    table: Table, key: str, dialect: Dialect
) -> tuple[str, list[str], tuple[tuple[str, Processor], ...]]:
    names = [str(c.name) for c in table.columns]  # plain str keys
    key_type = table.c[key].type.compile(dialect=dialect)
    sql = f"SELECT {', '.join(names)} FROM {table.name} WHERE {key} = ANY(%s::{key_type}[])"  # noqa: S608
    processed = tuple(
        (str(c.name), p)
        for c in table.columns
        if (p := c.type.result_processor(dialect, None)) is not None
    )
    return sql, names, processed
