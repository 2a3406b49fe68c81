"""Opening the database: the engine for a URL, per-backend settings, and errors without secrets.

SQLite runs in WAL mode with `synchronous=NORMAL`, foreign keys on and a busy timeout, set on
every new connection; its parent directory is made on first connect. PostgreSQL connections
are checked before use and time out instead of hanging.

Every database failure leaves the store as a StoreError with one line that names what was
being done and the URL with its password hidden; the original exception stays chained.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InvalidRequestError, SQLAlchemyError

from detector.store import tables
from detector.store.base import StoreError

DEFAULT_URL = "sqlite:///var/detector.db"
SQLITE_BUSY_TIMEOUT_MS = 5000
POSTGRES_CONNECT_TIMEOUT_S = 10


def redact(text: str, url: str) -> str:
    """`text` with the password of `url` (plain or URL-encoded) replaced by `***`."""
    try:
        password = make_url(url).password
    except (SQLAlchemyError, ValueError):
        password = None
    if password is None:  # an unparsable URL: hide what sits between `user:` and `@`
        _, sep, rest = url.partition("://")
        credentials, at, _ = rest.rpartition("@")
        password = credentials.partition(":")[2] if sep and at else None
    if password:
        for form in {password, quote(password, safe=""), quote_plus(password)}:
            text = text.replace(form, "***")
    return text


def safe_url(url: str) -> str:
    """The URL for messages and logs: password hidden."""
    try:
        parsed = make_url(url)
    except (SQLAlchemyError, ValueError):
        return redact(url, url)
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def describe(error: BaseException) -> str:
    """The first line of what the database said, without the SQL and parameters."""
    origin = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    lines = [line.strip() for line in str(origin).splitlines() if line.strip()]
    return lines[0] if lines else type(origin).__name__


@contextmanager
def store_errors(action: str, url: str) -> Iterator[None]:
    """Re-raise database failures as a one-line StoreError without the password."""
    try:
        yield
    except StoreError:
        raise
    except (SQLAlchemyError, OSError, sqlite3.Error) as error:
        message = f"{action} failed ({safe_url(url)}): {describe(error)}"
        raise StoreError(redact(message, url)) from error


# ------------------------------------------------------------------ engine


def _sqlite_connect_hooks(engine: Engine, url: URL) -> None:
    uri_mode = url.query.get("uri") == "true"
    database = url.database or ""

    @event.listens_for(engine, "do_connect")
    def _make_parent_dir(*_: object) -> None:
        if database and database != ":memory:" and not uri_mode:
            parent = Path(database).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                reason = error.strerror or str(error)
                message = f"cannot make directory {parent} for the database: {reason}"
                raise OSError(message) from error

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
            # A read-only database cannot switch modes; reading it still works.
            with suppress(sqlite3.OperationalError):
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()


def build_engine(url: str) -> Engine:
    """The engine for `url`, configured for its backend; raises StoreError."""
    with store_errors("open store", url):
        try:
            parsed = make_url(url)
        except ValueError as error:
            raise StoreError(redact(f"bad store URL {safe_url(url)}: {error}", url)) from None
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            engine = create_engine(
                parsed, json_serializer=tables.dumps_json, json_deserializer=orjson.loads
            )
            _sqlite_connect_hooks(engine, parsed)
            return engine
        if backend == "postgresql":
            return create_engine(
                parsed,
                json_serializer=tables.dumps_json,
                json_deserializer=orjson.loads,
                pool_pre_ping=True,
                connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
            )
        raise StoreError(
            f"unsupported store URL {safe_url(url)}: use sqlite:///PATH or postgresql+psycopg://…"
        )


# ------------------------------------------------------------------ the results hot path

_COLUMNS = ", ".join(tables.WRITE_COLUMNS)
_VALUES = f"({', '.join('?' for _ in tables.WRITE_COLUMNS)})"
_INSERT_RESULTS = f"INSERT INTO probe_results ({_COLUMNS}) VALUES {_VALUES}"
# One statement of this many rows (13 parameters each; SQLite allows 32,766) binds them in
# one step: ~20 % less CPU a row than executemany's step and reset per row.
ROWS_PER_INSERT = 32
_INSERT_RESULTS_CHUNK = (
    f"INSERT INTO probe_results ({_COLUMNS}) VALUES {', '.join([_VALUES] * ROWS_PER_INSERT)}"
)
_COPY_RESULTS = f"COPY probe_results ({_COLUMNS}) FROM STDIN"


def insert_results(connection: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Write result rows (`tables.result_row`) on the driver's own connection, inside the
    caller's SQLAlchemy transaction: executemany on SQLite, COPY on PostgreSQL. SQLAlchemy's
    execution context cost ~0.8 µs a row on top of SQLite's own insert (bench/
    probe_cost_bench.py); a Core or ORM executemany costs twice as much, ten times on PG."""
    driver = connection.connection.driver_connection
    if driver is None:
        raise InvalidRequestError("the database connection is closed")
    if connection.dialect.name != "postgresql":  # sqlite3.Error: store_errors words it
        full = len(rows) - len(rows) % ROWS_PER_INSERT
        for start in range(0, full, ROWS_PER_INSERT):
            chunk = rows[start : start + ROWS_PER_INSERT]
            driver.execute(_INSERT_RESULTS_CHUNK, list(chain.from_iterable(chunk)))
        if full < len(rows):
            driver.executemany(_INSERT_RESULTS, rows[full:])
        return
    import psycopg  # only PostgreSQL needs the driver imported here

    try:
        with driver.cursor() as cursor, cursor.copy(_COPY_RESULTS) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as error:
        raise DBAPIError(_COPY_RESULTS, None, error) from error
