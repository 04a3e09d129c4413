"""`omnicast worker`: a real APScheduler on a job store in the omnicast database, with a fast clock (a job's next run
time moved to now) and the flow call replaced by a recorder; then the real command in subprocesses: SIGTERM stops
after the running job, and a one-off falls due and runs the real campaign flow."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

import flows.worker as worker_module
from flows.deployments import CAMPAIGN_ENTRYPOINT, DAILY_ENTRYPOINT, scheduled_runs
from flows.worker import (
    ONCE,
    Worker,
    job_store,
    paused_scheduler,
    schedule_once,
)
from models.campaigns import SHIPPED_DIR, load_catalog
from models.errors import InputError
from tests.flows.test_deployments import schedule_app

ROOT = Path(__file__).resolve().parents[2]
LA = ZoneInfo("America/Los_Angeles")


class Recorder:
    """Stands in for the flow call: remembers (entrypoint, parameters) and lets a test wait for the n-th call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.changed = threading.Condition()

    def __call__(self, entrypoint: str, parameters: dict[str, Any]) -> None:
        with self.changed:
            self.calls.append((entrypoint, dict(parameters)))
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[str, dict[str, Any]]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.calls) >= count, timeout), f"{self.calls} after {timeout}s"
            return list(self.calls)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    record = Recorder()
    monkeypatch.setattr(worker_module, "_run_flow", record)
    return record


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'omnicast.db'}"


@pytest.fixture
def campaigns(tmp_path: Path) -> Path:
    folder = tmp_path / "campaigns"
    shutil.copytree(SHIPPED_DIR, folder)
    return folder


def _soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _started(database_url: str, runs: Any, lines: list[str], grace: int = 3600) -> Worker:
    worker = Worker(database_url, runs, grace_seconds=grace, poll_seconds=0.2, say=lines.append)
    worker.start()
    return worker


def test_a_campaign_whose_schedule_falls_due_runs(database_url: str, recorder: Recorder) -> None:
    lines: list[str] = []
    worker = _started(database_url, scheduled_runs(load_catalog()), lines)
    try:
        jobs = {job.id: job for job in worker.scheduler.get_jobs()}
        assert set(jobs) == {"schedule:daily#0", "schedule:weekly-picks#0"}
        picks = jobs["schedule:weekly-picks#0"]
        first = picks.next_run_time.astimezone(LA)
        assert (first.strftime("%A"), first.hour, first.minute) == ("Tuesday", 10, 0)  # crontab's 2, not Wednesday
        assert any(line.startswith("weekly-picks") and "cron 0 10 * * 2 America/Los_Angeles" in line
                   for line in worker.next_runs_text())  # fmt: skip

        worker.scheduler.modify_job(picks.id, next_run_time=_soon(0.3))  # the fast clock: Tuesday 10:00 is now
        assert recorder.wait_for(1) == [(CAMPAIGN_ENTRYPOINT, {"name": "weekly-picks"})]
        after = worker.scheduler.get_job(picks.id).next_run_time.astimezone(LA)
        assert after.strftime("%A %H:%M") == "Tuesday 10:00"  # back on its schedule
    finally:
        worker.stop()
    assert recorder.calls == [(CAMPAIGN_ENTRYPOINT, {"name": "weekly-picks"})]  # the daily run was not due


def test_a_run_missed_while_the_worker_was_down_runs_once_within_the_grace(
    database_url: str, recorder: Recorder
) -> None:
    runs = scheduled_runs(load_catalog())
    _started(database_url, runs, []).stop()
    with paused_scheduler(database_url) as scheduler:  # down for two days: two daily runs missed
        scheduler.modify_job("schedule:daily#0", next_run_time=datetime.now(UTC) - timedelta(minutes=30))
    lines: list[str] = []
    worker = _started(database_url, runs, lines)
    try:
        assert recorder.wait_for(1) == [(DAILY_ENTRYPOINT, {})]
        time.sleep(0.5)
        assert len(recorder.calls) == 1  # coalesced into one run
    finally:
        worker.stop()

    with paused_scheduler(database_url) as scheduler:
        scheduler.modify_job("schedule:daily#0", next_run_time=datetime.now(UTC) - timedelta(hours=3))
    lines.clear()
    worker = _started(database_url, runs, lines, grace=3600)
    try:
        time.sleep(0.8)
    finally:
        worker.stop()
    assert len(recorder.calls) == 1  # too late: not run, and said so
    assert any(line.startswith("missed: daily was due") and "next:" in line for line in lines), lines


def test_restarts_keep_a_one_off_and_the_edited_files_win(
    database_url: str, campaigns: Path, recorder: Recorder
) -> None:
    later = (datetime.now(LA) + timedelta(days=2)).replace(second=0, microsecond=0)
    when = schedule_once(database_url, load_catalog(campaigns), "weekly-picks", f"{later:%Y-%m-%d %H:%M}",
                         default_zone="UTC")  # fmt: skip
    assert when == later and when.tzinfo == LA  # the campaign's time zone
    first = _started(database_url, scheduled_runs(load_catalog(campaigns)), [])
    first.stop()

    text = (campaigns / "weekly-picks.yaml").read_text().replace('"0 10 * * 2"', '"0 9 * * 4"')
    (campaigns / "weekly-picks.yaml").write_text(text)
    lines: list[str] = []
    worker = Worker(database_url, scheduled_runs(load_catalog(campaigns)), poll_seconds=0.2, say=lines.append)
    changes = worker.start()
    stop = threading.Event()
    polling = threading.Thread(target=worker.serve, args=(stop,))  # the command's main loop
    polling.start()
    try:
        assert changes.replaced == ["weekly-picks"] and changes.kept == ["daily"]
        jobs = {job.id: job for job in worker.scheduler.get_jobs()}
        picks = jobs["schedule:weekly-picks#0"].next_run_time.astimezone(LA)
        assert picks.strftime("%A %H:%M") == "Thursday 09:00"
        once = [job for job in jobs.values() if job.id.startswith(ONCE)]
        assert [job.next_run_time for job in once] == [later]  # the one-off survived the restart

        # another process stores a one-off while the worker runs: the worker picks it up and runs it when due
        soon = _soon(1.0).isoformat()
        schedule_once(database_url, load_catalog(campaigns), "birthday", soon, default_zone="UTC")
        calls = recorder.wait_for(1)
        assert calls == [(CAMPAIGN_ENTRYPOINT, {"name": "birthday", "as_of": datetime.now(UTC).date().isoformat()})]
        assert any(line.startswith("new job: birthday") and "(once, for " in line for line in lines), lines
    finally:
        stop.set()
        polling.join()
        worker.stop()

    (campaigns / "weekly-picks.yaml").unlink()
    worker = Worker(database_url, scheduled_runs(load_catalog(campaigns)), say=[].append)
    changes = worker.start()
    worker.stop()
    assert changes.removed == ["weekly-picks"]


def test_a_job_another_process_removes_mid_hand_over_does_not_stop_the_scheduler(
    database_url: str, recorder: Recorder
) -> None:
    from sqlalchemy import create_engine, text

    store = create_engine(database_url)
    worker = _started(database_url, scheduled_runs(load_catalog()), [])
    executor = worker.scheduler._lookup_executor("default")
    hand_over = executor.submit_job

    def submit_while_another_process_deletes(job: Any, run_times: Any) -> None:
        if job.id.startswith("once:birthday@"):  # gone from the store before APScheduler removes it itself
            with store.begin() as conn:
                conn.execute(text(f"DELETE FROM {worker_module.JOB_TABLE} WHERE id = :id"), {"id": job.id})
        hand_over(job, run_times)

    executor.submit_job = submit_while_another_process_deletes  # type: ignore[method-assign]
    try:
        for name, delay in (("birthday", 0.5), ("winback", 1.5)):
            schedule_once(database_url, load_catalog(), name, _soon(delay).isoformat(), default_zone="UTC")
        worker.poll()
        calls = recorder.wait_for(2)
        assert [parameters["name"] for _, parameters in calls] == ["birthday", "winback"]  # still scheduling
    finally:
        worker.stop()
        store.dispose()


def test_a_one_off_in_the_past_or_unreadable_is_refused(database_url: str) -> None:
    with pytest.raises(InputError, match=r"--at '2020-01-01 10:00' is in the past in America/Los_Angeles"):
        schedule_once(database_url, load_catalog(), "weekly-picks", "2020-01-01 10:00", default_zone="UTC")
    with pytest.raises(InputError, match='use "YYYY-MM-DD HH:MM" in the campaign'):
        schedule_once(database_url, load_catalog(), "weekly-picks", "next tuesday", default_zone="UTC")
    with pytest.raises(InputError, match="no campaign named 'black-friday'"):
        schedule_once(database_url, load_catalog(), "black-friday", "2030-01-01 10:00", default_zone="UTC")


def test_campaign_run_at_schedules_a_one_off_in_the_campaigns_time_zone(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNICAST_DATABASE_URL", database_url)
    runner, app = CliRunner(), schedule_app()
    result = runner.invoke(app, ["campaign", "run", "weekly-picks", "--at", "2030-12-10 10:00"])
    assert result.exit_code == 0, result.output
    assert "weekly-picks will run at 2030-12-10 10:00 PST (America/Los_Angeles), for 2030-12-10" in result.stdout
    with paused_scheduler(database_url) as scheduler:
        [job] = scheduler.get_jobs()
    assert job.next_run_time == datetime(2030, 12, 10, 18, 0, tzinfo=UTC)
    assert job.args[2] == {"name": "weekly-picks", "as_of": "2030-12-10"}

    past = runner.invoke(app, ["campaign", "run", "weekly-picks", "--at", "2020-12-08 10:00"])
    assert past.exit_code == 2 and past.stderr.strip().splitlines()[-1].startswith("error: --at '2020-12-08 10:00'")
    assert "--at" in runner.invoke(app, ["campaign", "run", "--help"]).stdout


# --- the real command, in a subprocess ------------------------------------------------------------------------------

LAUNCH = """
import sys, time
from pathlib import Path
import flows.worker
marks = Path(sys.argv[1])
def held(entrypoint, parameters):  # runs until the test releases it
    marks.write_text("started\\n")
    release, deadline = marks.with_name("release"), time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    marks.write_text("started\\nfinished\\n")
if sys.argv[2] == "held":
    flows.worker._run_flow = held
from tests.flows.test_deployments import schedule_app
schedule_app()(["worker", "--poll", "0.2", "--prefect-yaml", sys.argv[3]])
"""


def _environment(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    for name in ("products_export.csv", "customers_export.csv", "orders_export.csv"):
        (store / name).touch()
    settings = {
        "OMNICAST_DATABASE_URL": database_url,
        "OMNICAST_STORE_PATH": str(store),
        "OMNICAST_SECRET_KEY": "test-secret-key-0123456789",
        "OMNICAST_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OMNICAST_")}
    return {**environment, **settings, "PYTHONPATH": str(ROOT), **extra}


def _launch(tmp_path: Path, environment: dict[str, str], job: str) -> subprocess.Popen[str]:
    """The worker command in a subprocess, its output in tmp_path/out and tmp_path/err."""
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(tmp_path / "marks"), job, str(ROOT / "prefect.yaml")],
        cwd=tmp_path, env=environment, stdout=(tmp_path / "out").open("w"), stderr=(tmp_path / "err").open("w"),
        text=True,
    )  # fmt: skip


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigterm_stops_the_worker_after_the_running_job(tmp_path: Path, database_url: str) -> None:
    schedule_once(database_url, load_catalog(), "weekly-picks", _soon(1).isoformat(), default_zone="UTC")
    process = _launch(tmp_path, _environment(tmp_path, database_url), job="held")
    marks, out = tmp_path / "marks", tmp_path / "out"
    try:
        _wait(lambda: marks.exists() or process.poll() is not None, 60, "the one-off to start")
        assert process.poll() is None, (tmp_path / "err").read_text()
        process.send_signal(signal.SIGTERM)
        _wait(lambda: "stopping after the running job (weekly-picks) finishes" in out.read_text(), 30, "the stop")
        time.sleep(0.5)
        assert process.poll() is None  # still waiting for the job
        (tmp_path / "release").touch()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, (tmp_path / "err").read_text()
    assert marks.read_text() == "started\nfinished\n"  # the running job was finished, not cut off
    text = out.read_text()
    assert "next runs:" in text and "daily" in text and "weekly-picks" in text
    assert text.rstrip().endswith("omnicast worker stopped")
    assert "SIGTERM received" in (tmp_path / "err").read_text()


@pytest.mark.e2e
def test_the_worker_runs_a_campaign_that_falls_due(prefect_api: str, tmp_path: Path, database_url: str) -> None:
    """The contract from outside: a one-off of weekly-picks, picked up by a running `omnicast worker`, runs the real
    campaign flow (on an empty store: 0 planned) and shows in the Prefect API as `weekly-picks <day>`."""
    environment = _environment(tmp_path, database_url, PREFECT_API_URL=prefect_api)
    started = datetime.now(UTC)  # the session's server also holds other tests' weekly-picks runs of today
    process = _launch(tmp_path, environment, job="real")
    try:
        time.sleep(1)  # the worker is starting: the one-off reaches it through the job store
        when = schedule_once(database_url, load_catalog(), "weekly-picks", _soon(2).isoformat(), default_zone="UTC")
        name = f"weekly-picks {when.date()}"
        _wait(lambda: process.poll() is not None or _flow_runs(name, started), 90, "the flow run")
        assert process.poll() is None, (tmp_path / "err").read_text()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    err = (tmp_path / "err").read_text()
    assert process.returncode == 0, err
    assert "weekly-picks: ended COMPLETED" in err
    assert _flow_runs(f"weekly-picks {when.date()}", started) == ["COMPLETED"]


def _flow_runs(name: str, since: datetime) -> list[str]:
    """The final states of the flow runs named ``name`` created since ``since``."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async def states() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
            return [
                run.state.type.value
                for run in runs
                if run.state and run.state.is_final() and run.created is not None and run.created >= since
            ]

    return asyncio.run(states())


def test_a_worker_starting_while_another_process_creates_the_job_store_goes_on(database_url: str) -> None:
    """Two processes opening the job store at once (a worker starting, `campaign run --at` adding a one-off) both
    look for its table before either creates it; the second CREATE then fails "already exists". Played here in one
    process: the table appears between the look and the create. The store opens and holds the one-off added."""
    from sqlalchemy import Table

    first = job_store(database_url)
    first.start(None, "default")  # the other process: it creates the table
    second = job_store(database_url)
    create = Table.create
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Table, "create", lambda table, bind, checkfirst=False: create(table, bind, checkfirst=False))
        second.start(None, "default")  # its look came "before" the table existed: a plain CREATE
    with paused_scheduler(database_url) as scheduler:
        scheduler.add_job(print, "date", run_date=datetime(2030, 1, 1, tzinfo=UTC), id="once:probe")
    assert [job.id for job in second.get_all_jobs()] == ["once:probe"]


def test_a_job_store_error_that_is_not_the_race_still_stops(tmp_path: Path) -> None:
    """A database that cannot be opened is an error, not a table someone else made."""
    from sqlalchemy.exc import DBAPIError

    store = job_store(f"sqlite:///{tmp_path / 'missing' / 'folder' / 'omnicast.db'}")
    with pytest.raises(DBAPIError):
        store.start(None, "default")
