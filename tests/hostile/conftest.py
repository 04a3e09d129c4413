"""The hostile suite: every case a hostile run found, and the corpus around it, kept as tests.

Each module covers one front (bad files and fields, bad settings and arguments, injected customer data, crashes,
races). Every test here is marked ``hostile`` so ``pytest -m hostile`` runs the suite alone; it is part of
``make test``.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/hostile/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.hostile)
