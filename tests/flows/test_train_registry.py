"""The train flow with the model registry: it judges, registers and fits the picks with whichever version serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from models.db import make_engine, upgrade
from models.registry import list_versions
from models.schema import ModelVersion, Recommendation
from tests.models.test_registry import NOW, by_epochs, make_store, params


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    url = f"sqlite:///{tmp_path / 'omnicast.db'}"
    upgrade(url)
    engine = make_engine(url)
    make_store(engine)
    monkeypatch.setenv("OMNICAST_DATABASE_URL", url)
    monkeypatch.setattr("flows.train.utcnow", lambda: NOW)  # the store's history ends at NOW
    return engine


def _fits(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record the arguments every fit of the day's picks gets (and still fit them)."""
    import flows.train

    calls: list[dict[str, Any]] = []
    real = flows.train.train_and_recommend

    def spy(engine: Engine, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(engine, **kwargs)

    monkeypatch.setattr(flows.train, "train_and_recommend", spy)
    return calls


def _artifact_markdown() -> str:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> list:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["train-report"])),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )

    return str(asyncio.run(read())[0].data)


@pytest.mark.e2e
def test_train_flow_promotes_rejects_and_forces(
    prefect_api: str, store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.train import train_flow

    fits = _fits(monkeypatch)
    first = train_flow()
    (v1,) = list_versions(store)
    assert (v1.status, v1.reason.split(" (")[0]) == ("serving", "first model")
    assert set(v1.evaluation["harness"]) == {"exclude_seen", "include_seen"}  # the real harness, on the store
    assert v1.evaluation["candidate"]["include_seen"]["users"] >= 20
    assert first.recommendations > 0
    markdown = _artifact_markdown()
    assert "model v1: serving, first model" in markdown and "harness: popularity" in markdown
    assert "@example.com" not in markdown  # counts and figures only

    # a worse configuration: judged against v1 re-fitted on the same split, rejected, never reaches customers
    monkeypatch.setattr("models.registry.holdout_figures", by_epochs)
    monkeypatch.setattr("models.registry.current_parameters", lambda: params(epochs=3))
    train_flow()
    assert {r.version: r.status for r in list_versions(store)} == {1: "serving", 2: "rejected"}
    assert fits[-1]["epochs"] == v1.parameters["epochs"]  # today's picks: the serving version's parameters
    assert "today's recommendations were fitted with v1's parameters" in _artifact_markdown()

    # --force promotes it anyway
    train_flow(force=True)
    latest = list_versions(store)[0]
    assert (latest.version, latest.status) == (3, "serving") and "--force" in latest.reason
    assert fits[-1]["epochs"] == 3
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Recommendation)).scalar_one() == first.recommendations
        assert conn.execute(select(func.count()).select_from(ModelVersion)).scalar_one() == 3


def test_train_command_takes_force(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "--force" in result.output
