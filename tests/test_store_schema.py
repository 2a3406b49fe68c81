"""Opening a store: bad URLs, unusable or read-only files and a down server are StoreErrors
that never show the password; the schema and its migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from factories import T0, make_result
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from detector.store import (
    SqlStore,
    StoreError,
    migrate,
    open_store,
    tables,
)

# ------------------------------------------------------------------ failures and secrets


def test_read_only_sqlite_refuses_writes_with_store_error(tmp_path: Path) -> None:
    path = tmp_path / "detector.db"
    writable = open_store(f"sqlite:///{path}")
    writable.add_results([make_result(T0)])
    writable.close()

    read_only = open_store(f"sqlite:///file:{path}?mode=ro&uri=true")  # refuses even root
    try:
        assert [r.at for r in read_only.results_since(0)] == [T0]
        with pytest.raises(StoreError, match=r"add probe results failed.*readonly"):
            read_only.add_results([make_result(T0 + 1)])
        with pytest.raises(StoreError, match="readonly"):
            read_only.commit_engine([], {"x": 1}, {}, T0)
    finally:
        read_only.close()


def test_unusable_sqlite_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(StoreError, match=r"open database failed.*cannot make directory"):
        open_store(f"sqlite:///{blocker}/detector.db")  # a file where a directory should be


def test_unsupported_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="unsupported store URL"):
        SqlStore("mysql://user:hunter2@localhost/db")
    with pytest.raises(StoreError) as caught:
        SqlStore("postgresql+psycopg://user:hunter2@localhost:port/db")
    assert "hunter2" not in str(caught.value)


def test_errors_never_show_the_password(postgres_server: str) -> None:
    port = make_url(postgres_server).port
    secret = "s3cr/t@pass"
    encoded = "s3cr%2Ft%40pass"
    for url in (
        f"postgresql+psycopg://detector:{encoded}@127.0.0.1:1/detector",  # nothing listens
        f"postgresql+psycopg://postgres:{encoded}@127.0.0.1:{port}/no_such_db",
    ):
        with pytest.raises(StoreError) as caught:
            open_store(url)
        message = str(caught.value)
        assert "\n" not in message
        assert secret not in message and encoded not in message, message
        assert "***" in message


# ------------------------------------------------------------------ schema and migrations


def test_upgrade_matches_create_all_on_postgres(postgres_server: str) -> None:
    url = pg.create_database(postgres_server)
    assert migrate.current_revision(url) is None
    migrate.upgrade(url)
    migrate.upgrade(url)  # a second run is a no-op
    assert migrate.current_revision(url) == migrate.head_revision()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), tables.metadata)
            assert diff == []
            names = set(inspect(connection).get_table_names())
        assert names == set(tables.metadata.tables) | {"alembic_version"}
    finally:
        engine.dispose()
    open_store(url).close()


def test_postgres_without_upgrade_says_what_to_run(postgres_server: str) -> None:
    url = pg.create_database(postgres_server)
    with pytest.raises(StoreError, match="run `detector db upgrade`"):
        open_store(url)


def test_sqlite_schema_is_stamped_and_matches_the_migrations(tmp_path: Path) -> None:
    created = f"sqlite:///{tmp_path}/created.db"
    open_store(created).close()
    assert migrate.current_revision(created) == migrate.head_revision()
    migrate.upgrade(created)  # nothing to do

    migrated = f"sqlite:///{tmp_path}/migrated.db"
    migrate.upgrade(migrated)
    engine = create_engine(migrated)
    try:
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), tables.metadata) == []
    finally:
        engine.dispose()


def test_an_older_sqlite_file_is_upgraded_on_open_and_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    migrate.upgrade(url, "0001")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO probe_results (at, probe, kind, component, ok, labels, phases)"
            f" VALUES ({T0}, 'p', 'http', 'sendcloud/api', 0, '{{}}', '{{}}')"
        )
    engine.dispose()
    store = open_store(url)
    try:
        assert migrate.current_revision(url) == migrate.head_revision()
        [old] = store.results_since(0)
        assert (old.failure_kind, old.instance, old.suspect) == ("fail", "", False)
    finally:
        store.close()


def test_postgres_at_an_older_revision_says_what_to_run(postgres_server: str) -> None:
    url = pg.create_database(postgres_server)
    migrate.upgrade(url, "0001")
    head = migrate.head_revision()  # newer revisions may add tables: either is said
    message = f"(is at 0001|lacks tables audit), not schema {head}: run `detector db upgrade`"
    with pytest.raises(StoreError, match=message):
        open_store(url)


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/detector.db")
    try:
        with store.engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert pragma("PRAGMA busy_timeout").scalar() == 5000
    finally:
        store.close()
    assert os.path.exists(tmp_path / "detector.db")
