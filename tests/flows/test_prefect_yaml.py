"""prefect.yaml deploys for real: `prefect deploy --all` against a live Prefect API creates every deployment, each
campaign's with its schedule and a typed parameter form (tests/flows/test_deployments.py keeps the file generated)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def test_every_flow_has_a_scheduled_deployment_with_timezone() -> None:
    entrypoints = {d["entrypoint"].split(":")[0] for d in _deployments()}
    for module in ("flows/daily.py", "flows/sync.py", "flows/train.py", "flows/triggers.py",
                   "flows/campaign.py", "flows/audiences.py"):
        assert module in entrypoints
    for deployment in _deployments():
        assert deployment["work_pool"]["name"] == "omnicast"
        for schedule in deployment["schedules"]:
            assert schedule["cron"] and schedule["timezone"]


@pytest.mark.e2e
def test_prefect_deploy_all_creates_the_deployments(prefect_api: str, tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(tmp_path), "PWD": str(ROOT)}
    subprocess.run([PREFECT, "work-pool", "create", "omnicast", "--type", "process"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    result = subprocess.run([PREFECT, "--no-prompt", "deploy", "--all"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    from prefect.client.orchestration import get_client

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            return {d.name: d for d in await client.read_deployments()}

    deployed = asyncio.run(read())
    assert set(deployed) == {d["name"] for d in _deployments()}
    daily = deployed["daily"].schedules[0]
    assert daily.active and daily.schedule.timezone == "America/Los_Angeles"
    picks = deployed["weekly-picks"]
    assert picks.parameters == {"name": "weekly-picks"} and picks.schedules[0].active
    assert picks.schedules[0].schedule.cron == "0 10 * * 2"
    form = deployed["run-campaign"].parameter_openapi_schema
    assert set(form["properties"]) == {"name", "as_of"} and deployed["run-campaign"].schedules == []
