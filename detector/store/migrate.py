"""`detector db upgrade`: run the Alembic revisions shipped inside the package.

No alembic.ini is needed on disk: the script location is the package resource
`detector.store:migrations` and the connection is handed to `env.py` through `Config.attributes`.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from detector.store import tables
from detector.store.base import StoreError
from detector.store.database import build_engine, store_errors

SCRIPT_LOCATION = "detector.store:migrations"

# Any constant will do; it keeps two daemons from running the same upgrade at once.
_POSTGRES_LOCK_KEY = 0x6465746563746F72  # "detector"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Upgrade within the caller's transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_LOCK_KEY})
    _refuse_newer(connection, "the database")
    command.upgrade(alembic_config(connection), revision)


def _refuse_newer(connection: Connection, shown: str) -> None:
    current = connection_revision(connection)
    script = ScriptDirectory.from_config(alembic_config())
    if current is not None and current not in {r.revision for r in script.walk_revisions()}:
        raise StoreError(
            f"{shown} is at schema {current}, newer than this detector knows "
            f"({head_revision()}): run the detector version that upgraded it, or a newer one"
        )


def stamp_connection(connection: Connection, revision: str = "head") -> None:
    """Record `revision` as applied without running it (a schema made by `create_all`)."""
    command.stamp(alembic_config(connection), revision)


def head_revision() -> str | None:
    """The newest revision shipped in the package."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def connection_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`, in one transaction; raises StoreError."""
    engine = build_engine(url)
    try:
        with store_errors("upgrade database schema", url), engine.begin() as connection:
            upgrade_connection(connection, revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at, or None before the first upgrade."""
    engine = build_engine(url)
    try:
        with store_errors("read schema revision", url), engine.connect() as connection:
            return connection_revision(connection)
    finally:
        engine.dispose()


def check_current(connection: Connection, existing: set[str], shown_url: str) -> None:
    """A daemon runs only on the schema it knows: older -> `detector db upgrade`; newer (a
    newer detector upgraded it) -> upgrade this detector. Raises StoreError naming which."""
    missing = sorted(set(tables.metadata.tables) - existing)
    current, head = connection_revision(connection), head_revision()
    if not missing and current == head:
        return
    _refuse_newer(connection, f"database {shown_url}")
    lacking = f"lacks tables {', '.join(missing)}" if missing else f"is at {current}"
    raise StoreError(
        f"database {shown_url} {lacking}, not schema {head}: run `detector db upgrade`"
    )
