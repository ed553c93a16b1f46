"""Fixtures shared by several test modules: one PostgreSQL server for the whole session."""

from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]
