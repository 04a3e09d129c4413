"""One planned store for all template tests (built once: trigger detection and training take a few seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models.db import make_engine, upgrade
from tests.templates.store import PlannedStore, plan_store


@pytest.fixture(scope="session")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlannedStore]:
    folder = tmp_path_factory.mktemp("template-store")
    url = f"sqlite:///{folder / 'omnicast.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield plan_store(engine, folder / "campaigns")
    engine.dispose()
