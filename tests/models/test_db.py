"""The database boundary: URLs and dialects the ledger cannot work with are refused with the setting to fix."""

from __future__ import annotations

import pytest
from sqlalchemy import create_mock_engine

from models.db import DatabaseError, dialect_insert, make_engine
from models.schema import Message


def test_unsupported_database_names_the_setting_and_the_choices() -> None:
    mysql = create_mock_engine("mysql://", executor=lambda *_: None)
    with pytest.raises(DatabaseError, match="OMNICAST_DATABASE_URL.*sqlite:///.*postgresql"):
        dialect_insert(mysql)  # type: ignore[arg-type]


def test_unusable_url_is_refused_without_showing_the_password() -> None:
    with pytest.raises(DatabaseError, match="OMNICAST_DATABASE_URL") as raised:
        make_engine("nosuchdb://admin:hunter2@db.example/shop")
    assert "hunter2" not in str(raised.value)


def test_both_supported_databases_get_their_own_insert() -> None:
    for url in ("sqlite://", "postgresql+psycopg://u@h/d"):
        insert = dialect_insert(create_mock_engine(url, executor=lambda *_: None))  # type: ignore[arg-type]
        assert hasattr(insert(Message.__table__), "on_conflict_do_nothing")  # type: ignore[attr-defined]
