"""The sample store the tests of ``sample/`` read: generated once per session (2,000 customers, seed 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sample import write_sample
from tests.sample.reading import AS_OF


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("store")
    return out, write_sample(out, customers=2000, seed=7, as_of=AS_OF)
