"""The store: where decisions, results and history land, and what the status page reads.

`open_store(url)` is the one way in for the daemon and the CLI: it returns a SqlStore with
its schema ready (created or migrated on SQLite, checked on PostgreSQL, where `detector db
upgrade` creates and migrates it).
"""

from __future__ import annotations

from detector.store.base import ComponentRecord, NotFound, Store, StoreError
from detector.store.database import DEFAULT_URL
from detector.store.sql import SqlStore

__all__ = [
    "ComponentRecord",
    "NotFound",
    "SqlStore",
    "Store",
    "StoreError",
    "open_store",
]


def open_store(url: str = DEFAULT_URL) -> SqlStore:
    """A store for `url` with its schema ready; raises StoreError (password never shown)."""
    store = SqlStore(url)
    try:
        store.create_schema()
    except BaseException:
        store.close()
        raise
    return store
