"""prefect.yaml is generated from the campaign files and the two never drift; the worker's schedules fire when
Prefect's would."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import typer
import yaml
from typer.testing import CliRunner

from flows.deployments import (
    CAMPAIGN_ENTRYPOINT,
    DEFAULT_STAGES,
    RUN_CAMPAIGN,
    deployments,
    deployments_yaml,
    drift,
    scheduled_runs,
    stage_deployments,
)
from models.campaigns import SHIPPED_DIR, load_catalog
from models.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "prefect.yaml"


def schedule_app() -> typer.Typer:
    """The omnicast app as flows/cli.py builds it, with this module's commands registered (as the lead wires)."""
    from flows.cli import OmnicastGroup, campaign_run
    from flows.cli_schedule import register

    app = typer.Typer(cls=OmnicastGroup, no_args_is_help=True)
    campaign = typer.Typer(no_args_is_help=True)
    campaign.command("run")(campaign_run)
    app.add_typer(campaign, name="campaign")
    register(app)
    return app


@pytest.fixture
def campaigns(tmp_path: Path) -> Path:
    """A copy of the shipped campaigns a test may edit."""
    folder = tmp_path / "campaigns"
    shutil.copytree(SHIPPED_DIR, folder)
    return folder


def _add_campaign(folder: Path, name: str, cron: str, *, enabled: bool = True, active: bool = True) -> None:
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\ndescription: A test broadcast.\nenabled: {str(enabled).lower()}\n"
        "audience:\n  segment: has-picks\ntemplate: weekly_picks\nchannels: [email]\n"
        f'schedule:\n  cron: "{cron}"\n  timezone: Europe/Berlin\n  active: {str(active).lower()}\n'
    )


def test_the_committed_prefect_yaml_is_the_generated_one() -> None:
    generated = deployments_yaml(load_catalog(), stage_deployments(COMMITTED))
    assert COMMITTED.read_text() == generated, (
        "prefect.yaml and campaigns/*.yaml disagree: run `omnicast deployments write` and commit prefect.yaml "
        f"({'; '.join(drift(COMMITTED.read_text(), generated))})"
    )


def test_the_committed_stage_deployments_are_the_defaults() -> None:
    assert stage_deployments(COMMITTED) == list(DEFAULT_STAGES)


def test_each_scheduled_campaign_is_a_deployment_of_the_campaign_flow_on_its_schedule() -> None:
    catalog = load_catalog()
    found = {d["name"]: d for d in deployments(catalog)}
    for campaign in catalog.campaigns:
        schedule = campaign.spec.schedule
        if schedule is None:  # triggered: the daily run sends it
            assert campaign.name not in found
            continue
        deployment = found[campaign.name]
        assert deployment["entrypoint"] == CAMPAIGN_ENTRYPOINT
        assert deployment["parameters"] == {"name": campaign.name}
        assert deployment["schedules"] == [
            {"cron": schedule.cron, "timezone": schedule.timezone, "active": schedule.active and campaign.spec.enabled}
        ]
    assert found["weekly-picks"]["schedules"][0]["active"] is True  # the daily run no longer sends it
    run_any = found[RUN_CAMPAIGN]
    assert run_any["entrypoint"] == CAMPAIGN_ENTRYPOINT and "parameters" not in run_any and run_any["schedules"] == []
    assert "weekly-picks" in run_any["description"]


def test_the_campaign_flow_has_a_typed_parameter_form() -> None:
    from prefect.utilities.callables import parameter_schema

    from flows.campaign import campaign_flow

    properties = parameter_schema(campaign_flow).model_dump()["properties"]
    assert set(properties) == {"name", "as_of"}
    assert "string" in str(properties["name"]) and "string" in str(properties["as_of"])


def test_a_new_disabled_or_paused_campaign_shows_in_the_generated_file(campaigns: Path) -> None:
    _add_campaign(campaigns, "spring-sale", "30 9 * * 1-5")
    _add_campaign(campaigns, "old-sale", "0 9 1 * *", enabled=False)
    _add_campaign(campaigns, "quiet-sale", "0 9 2 * *", active=False)
    found = {d["name"]: d for d in yaml.safe_load(deployments_yaml(load_catalog(campaigns)))["deployments"]}
    assert found["spring-sale"]["schedules"] == [{"cron": "30 9 * * 1-5", "timezone": "Europe/Berlin", "active": True}]
    assert found["old-sale"]["schedules"][0]["active"] is False and "Disabled" in found["old-sale"]["description"]
    assert found["quiet-sale"]["schedules"][0]["active"] is False
    names = [run.deployment for run in scheduled_runs(load_catalog(campaigns))]
    assert names == ["daily", "spring-sale", "weekly-picks"]  # what the worker runs: active schedules only


def test_drift_names_the_campaign_and_the_field(campaigns: Path) -> None:
    before = deployments_yaml(load_catalog(campaigns))
    text = (campaigns / "weekly-picks.yaml").read_text().replace('"0 10 * * 2"', '"0 9 * * 2"')
    (campaigns / "weekly-picks.yaml").write_text(text)
    _add_campaign(campaigns, "spring-sale", "30 9 * * 1-5")
    problems = drift(before, deployments_yaml(load_catalog(campaigns)))
    assert "deployment weekly-picks: schedules[0].cron is '0 10 * * 2' here, '0 9 * * 2' generated" in problems
    assert "deployment spring-sale is missing" in problems
    assert drift(before, before) == []


def test_a_campaign_named_like_a_stage_is_refused(campaigns: Path) -> None:
    _add_campaign(campaigns, "daily", "0 9 * * *")
    with pytest.raises(InputError, match="deployment name 'daily' is used twice.*rename the campaign"):
        deployments_yaml(load_catalog(campaigns))


def test_write_then_check_and_a_hand_edited_daily_cron_survives(
    campaigns: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNICAST_CAMPAIGNS_DIR", str(campaigns))
    out = tmp_path / "prefect.yaml"
    runner, app = CliRunner(), schedule_app()
    first = runner.invoke(app, ["deployments", "write", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "wrote" in first.stdout and "weekly-picks" in first.stdout
    assert runner.invoke(app, ["deployments", "write", "--check", "--out", str(out)]).exit_code == 0

    out.write_text(out.read_text().replace('cron: "0 6 * * *"', 'cron: "0 5 * * *"'))  # the operator's own time
    _add_campaign(campaigns, "spring-sale", "30 9 * * 1-5")
    stale = runner.invoke(app, ["deployments", "write", "--check", "--out", str(out)])
    assert stale.exit_code == 2
    last = stale.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "deployment spring-sale is missing" in last
    assert "omnicast deployments write" in last

    assert runner.invoke(app, ["deployments", "write", "--out", str(out)]).exit_code == 0
    written = {d["name"]: d for d in yaml.safe_load(out.read_text())["deployments"]}
    assert written["daily"]["schedules"][0]["cron"] == "0 5 * * *"
    assert "spring-sale" in written
    runs = {run.deployment: run for run in scheduled_runs(load_catalog(campaigns), stage_deployments(out))}
    assert runs["daily"].cron == "0 5 * * *"  # the worker reads the daily run's cron from the same file
    again = runner.invoke(app, ["deployments", "write", "--out", str(out)])
    assert "up to date" in again.stdout


@pytest.mark.parametrize(
    "cron",
    ["0 10 * * 2", "0 6 * * *", "30 9 * * 1-5", "0 8 * * 0", "0 8 * * 7", "15 7 * * */2", "0 9 1 * 1",
     "0 12 * * sun,wed", "0 1 * * 5-7", "*/20 3 * * *"],
)  # fmt: skip
def test_the_worker_fires_when_prefect_would(cron: str) -> None:
    """APScheduler 3 counts weekdays from Monday and ANDs day and weekday; cron_trigger follows cron, as Prefect."""
    from prefect.server.schemas.schedules import CronSchedule

    from flows.worker import cron_trigger

    zone = "America/Los_Angeles"
    start = datetime(2026, 3, 2, tzinfo=UTC)  # spans the DST change of 2026-03-08
    expected = asyncio.run(CronSchedule(cron=cron, timezone=zone).get_dates(n=12, start=start))
    trigger = cron_trigger(cron, zone)
    fired, previous, now = [], None, start.astimezone(ZoneInfo(zone))
    while len(fired) < 12:
        fire = trigger.get_next_fire_time(previous, now)
        fired.append(fire)
        previous, now = fire, fire + timedelta(seconds=1)
    assert [f.astimezone(UTC) for f in fired] == [e.astimezone(UTC) for e in expected]
