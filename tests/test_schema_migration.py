"""The migration builds the same schema the code declares, on both databases."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel


def test_migration_creates_every_declared_table(engine: Engine) -> None:
    present = set(inspect(engine).get_table_names())
    declared = set(SQLModel.metadata.tables)
    assert declared <= present


def test_ledger_key_is_unique_on_both_databases(engine: Engine) -> None:
    uniques = inspect(engine).get_unique_constraints("messages")
    columns = {tuple(u["column_names"]) for u in uniques}
    assert ("occurrence_key", "customer_id", "channel") in columns


def test_migrations_match_the_declared_schema(engine: Engine) -> None:
    """`alembic check`: a table change without its revision fails here, on both databases."""
    from alembic import command

    from models.db import alembic_config

    command.check(alembic_config(engine.url.render_as_string(hide_password=False)))
