"""Alembic revisions for the store's schema; run them with `detector db upgrade`."""
