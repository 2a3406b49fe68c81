"""Alembic environment for detector's store.

`detector db upgrade` (detector.store.migrate) hands over an open connection in
`config.attributes["connection"]`. A developer writing the next revision runs the `alembic`
command with a scratch ini instead:

    [alembic]
    script_location = detector.store:migrations
    file_template = v%%(rev)s_%%(slug)s
    sqlalchemy.url = sqlite:///scratch.db

    alembic -c scratch.ini upgrade head
    alembic -c scratch.ini revision --autogenerate --rev-id 0002 -m "what changes"

(`v` keeps revision files importable names, which mypy needs.)
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from detector.store.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("detector migrations run online only (detector db upgrade)")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url set")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


_main()
