"""`omnicast worker`: the schedules of prefect.yaml, run in-process by APScheduler 3 (no Prefect server needed).

The jobs are the active schedules of the same deployments `omnicast deployments write` puts in prefect.yaml
(flows/deployments.py): the daily run at its cron, every scheduled campaign at the cron and time zone of its file.
They live in the omnicast database (table ``omnicast_scheduler_jobs``, ``OMNICAST_DATABASE_URL``), so a restart keeps
what is due: a run missed while the worker was down runs once when it starts again (coalesced), if it is no more
than the grace period late. On start the jobs are made to match the files (a changed cron or time zone replaces
its job, a removed or paused campaign's job goes), one-offs (`omnicast campaign run NAME --at ...`) are kept.

Each job runs its Prefect flow in this process (``campaign_flow(name=...)``, ``daily_flow()``): with
``PREFECT_API_URL`` set the runs show in that server's UI, otherwise Prefect starts a temporary local server. One
job runs at a time (max_instances=1 per job, one executor thread). SIGTERM or SIGINT stops the worker after the
running job (a second one stops at once: the ledger makes that safe too).
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError

from flows.deployments import CAMPAIGN_ENTRYPOINT, ScheduledRun
from models.campaigns import Catalog
from models.errors import InputError
from models.schedules import cron_trigger

JOB_TABLE = "omnicast_scheduler_jobs"
SCHEDULE = "schedule:"
"""Id prefix of the jobs made from the files (replaced on start)."""
ONCE = "once:"
"""Id prefix of one-off jobs (`omnicast campaign run NAME --at ...`), kept until they run."""
DEFAULT_GRACE_SECONDS = 3600
DEFAULT_POLL_SECONDS = 10.0
JOB_FUNCTION = "flows.worker:run_deployment"

log = logging.getLogger("omnicast.worker")
_running: set[str] = set()
_running_lock = threading.Lock()


# --- what a job does ------------------------------------------------------------------------------------------------


def run_deployment(deployment: str, entrypoint: str, parameters: dict[str, Any]) -> None:
    """The job function (stored by name in the job store): run ``entrypoint``'s flow with ``parameters`` in this
    process and log how it ended."""
    with _running_lock:
        _running.add(deployment)
    try:
        log.info("%s: starting (%s)", deployment, _parameters_text(parameters))
        state = _run_flow(entrypoint, parameters)
        if getattr(state, "is_failed", lambda: False)() or getattr(state, "is_crashed", lambda: False)():
            log.error("%s: ended %s: %s", deployment, state.type.value, state.message)
        else:
            log.info("%s: ended %s", deployment, getattr(getattr(state, "type", None), "value", "completed"))
    except Exception as exc:  # a flow that cannot even start (a setting): say so and keep the other schedules
        log.error("%s: could not run: %s", deployment, " ".join(str(exc).split()) or type(exc).__name__)
    finally:
        with _running_lock:
            _running.discard(deployment)


def _run_flow(entrypoint: str, parameters: dict[str, Any]) -> Any:
    """Import the flow ``flows/x.py:name`` and call it in-process; its final state."""
    path, _, name = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)(**parameters, return_state=True)


def _parameters_text(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in parameters.items()) or "no parameters"


def running() -> list[str]:
    """The deployments whose job is running now."""
    with _running_lock:
        return sorted(_running)


# --- the scheduler --------------------------------------------------------------------------------------------------


class SharedJobStore(SQLAlchemyJobStore):
    """APScheduler's SQL job store, opened by several processes at once: a worker starting while `omnicast campaign
    run --at` adds a one-off. APScheduler creates its table on first use by looking, then creating; two processes
    that both look before either creates race, and the second's CREATE fails with "already exists". That process
    finds the table there and goes on."""

    def start(self, scheduler: Any, alias: str) -> None:
        try:
            super().start(scheduler, alias)
        except DBAPIError:
            if not inspect(self.engine).has_table(self.jobs_t.name):
                raise
            log.info("the job store's table was created by another process at the same moment")


def job_store(database_url: str) -> SQLAlchemyJobStore:
    """The job store in the omnicast database (its own table, created on first use), on omnicast's engine (the
    psycopg driver, SQLite's WAL and busy timeout)."""
    from models.db import make_engine

    return SharedJobStore(engine=make_engine(database_url), tablename=JOB_TABLE)


class OmnicastScheduler(BackgroundScheduler):
    """APScheduler's background scheduler, which looks for due jobs only while running.

    APScheduler 3's thread processes the job store once more when it is woken while paused or shutting down (a
    change to the store wakes it): a job due then is handed to an executor already shut down, fails, and its run time
    is consumed. A command that only edits the store (``--at``) or a worker stopping must never do that."""

    def _process_jobs(self) -> float | None:
        if self.state != STATE_RUNNING:
            return None
        try:
            return super()._process_jobs()  # type: ignore[no-any-return]
        except JobLookupError:
            # Another process sharing the job store (a second worker, `campaign run --at` replacing a one-off)
            # removed a job between APScheduler reading it and removing it after the hand-over. The store is right;
            # left unhandled, this would end the scheduler's thread and no job would ever run again. Look again.
            log.info("a job was removed from the store by another process while it was being handed over")
            return 0.0


def make_scheduler(database_url: str, grace_seconds: int = DEFAULT_GRACE_SECONDS) -> BackgroundScheduler:
    """A scheduler on the database's job store: one job at a time, a late run coalesced into one within the grace."""
    return OmnicastScheduler(
        jobstores={"default": job_store(database_url)},
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace_seconds},
        timezone=UTC,
    )


@contextmanager
def paused_scheduler(database_url: str, grace_seconds: int = DEFAULT_GRACE_SECONDS) -> Iterator[BackgroundScheduler]:
    """The job store opened for changes, nothing run (what `omnicast campaign run --at` uses)."""
    scheduler = make_scheduler(database_url, grace_seconds)
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


def schedule_job_id(run: ScheduledRun, index: int) -> str:
    return f"{SCHEDULE}{run.deployment}#{index}"


def _trigger(run: ScheduledRun) -> BaseTrigger:
    return cron_trigger(run.cron, run.timezone)


@dataclass
class Sync:
    """What :func:`sync_jobs` changed."""

    added: list[str]
    replaced: list[str]
    kept: list[str]
    removed: list[str]


def sync_jobs(scheduler: BackgroundScheduler, runs: list[ScheduledRun], grace_seconds: int) -> Sync:
    """Make the scheduled jobs match ``runs``: new ones added, changed ones replaced (the files win), unchanged ones
    kept with their next run time (so a run missed while the worker was down still runs), others removed."""
    existing = {job.id: job for job in scheduler.get_jobs() if job.id.startswith(SCHEDULE)}
    result = Sync([], [], [], [])
    wanted: set[str] = set()
    counts: dict[str, int] = {}
    for run in runs:
        index = counts[run.deployment] = counts.get(run.deployment, -1) + 1
        job_id = schedule_job_id(run, index)
        wanted.add(job_id)
        trigger = _trigger(run)
        args = [run.deployment, run.entrypoint, run.parameters]
        old = existing.get(job_id)
        if old is not None and _same(old, trigger, args, grace_seconds):
            result.kept.append(run.deployment)
            continue
        scheduler.add_job(
            JOB_FUNCTION, trigger, args=args, id=job_id, name=f"{run.deployment} ({run.cron} {run.timezone})",
            replace_existing=True, misfire_grace_time=grace_seconds, coalesce=True, max_instances=1,
        )  # fmt: skip
        (result.replaced if old is not None else result.added).append(run.deployment)
    for job_id, job in existing.items():
        if job_id not in wanted:
            scheduler.remove_job(job_id)
            result.removed.append(str(job.args[0]) if job.args else job_id)
    return result


def _same(job: Job, trigger: BaseTrigger, args: list[Any], grace_seconds: int) -> bool:
    return (
        repr(job.trigger) == repr(trigger)
        and list(job.args) == args
        and job.func_ref == JOB_FUNCTION
        and job.misfire_grace_time == grace_seconds
        and job.next_run_time is not None
    )


def schedule_once(
    database_url: str, catalog: Catalog, name: str, at: str, *, default_zone: str, as_of: str | None = None,
    grace_seconds: int = DEFAULT_GRACE_SECONDS, now: datetime | None = None,
) -> datetime:  # fmt: skip
    """Store a one-off run of campaign ``name`` at ``at`` (``YYYY-MM-DD HH:MM`` in the campaign's time zone, or the
    store's for a campaign without a schedule) for `omnicast worker`; the time it will run, in that zone."""
    campaign = catalog.campaign(name)
    zone = ZoneInfo(campaign.spec.schedule.timezone if campaign.spec.schedule else default_zone)
    when = parse_at(at, zone)
    current = (now or datetime.now(UTC)).astimezone(zone)
    if when <= current:
        raise InputError(
            f"--at {at!r} is in the past in {zone.key} (it is {current:%Y-%m-%d %H:%M} there); give a later time"
        )
    parameters = {"name": name, "as_of": as_of or when.date().isoformat()}
    with paused_scheduler(database_url, grace_seconds) as scheduler:
        scheduler.add_job(
            JOB_FUNCTION, DateTrigger(run_date=when, timezone=zone), args=[name, CAMPAIGN_ENTRYPOINT, parameters],
            id=f"{ONCE}{name}@{when.isoformat()}", name=f"{name} (once)", replace_existing=True,
            misfire_grace_time=grace_seconds, coalesce=True, max_instances=1,
        )  # fmt: skip
    return when


def parse_at(text: str, zone: ZoneInfo) -> datetime:
    """``YYYY-MM-DD HH:MM[:SS]`` in ``zone`` (an explicit UTC offset wins); :class:`InputError` otherwise."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f'--at {text!r} is not a time; use "YYYY-MM-DD HH:MM" in the campaign\'s time zone ({zone.key}), '
            'e.g. "2026-12-08 10:00"'
        ) from None
    return when.replace(tzinfo=zone) if when.tzinfo is None else when.astimezone(zone)


# --- the worker -----------------------------------------------------------------------------------------------------


class Worker:
    """The scheduler with the files' jobs, started; :meth:`serve` until a signal, then :meth:`stop`."""

    def __init__(
        self, database_url: str, runs: list[ScheduledRun], *, grace_seconds: int = DEFAULT_GRACE_SECONDS,
        poll_seconds: float = DEFAULT_POLL_SECONDS, say: Callable[[str], None] = print,
    ) -> None:  # fmt: skip
        self.runs = runs
        self.grace_seconds = grace_seconds
        self.poll_seconds = poll_seconds
        self.say = say
        self.scheduler = make_scheduler(database_url, grace_seconds)
        self.scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
        self._known: set[str] = set()

    def start(self) -> Sync:
        """Open the job store, make its jobs match the files, then let them run."""
        self.scheduler.start(paused=True)
        changes = sync_jobs(self.scheduler, self.runs, self.grace_seconds)
        self._known = {job.id for job in self.scheduler.get_jobs()}
        self.scheduler.resume()
        return changes

    def jobs(self) -> list[Job]:
        never = datetime.max.replace(tzinfo=UTC)
        return sorted(self.scheduler.get_jobs(), key=lambda job: job.next_run_time or never)

    def next_runs_text(self) -> list[str]:
        """One line per job: what, when (in its own time zone), how it is scheduled."""
        return [describe(job) for job in self.jobs()]

    def serve(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: every ``poll_seconds``, look for jobs other commands stored (one-offs) and wake the
        scheduler for them."""
        while not stop.wait(self.poll_seconds):
            self.poll()

    def poll(self) -> None:
        jobs = self.scheduler.get_jobs()
        for job in jobs:
            if job.id not in self._known:
                self.say(f"new job: {describe(job)}")
        self._known = {job.id for job in jobs}
        self.scheduler.wakeup()

    def stop(self) -> None:
        """Hand nothing new to the executor, let the running job finish, close the job store. Jobs not yet handed over
        keep their times in the store: the next start runs what fell due meanwhile (within the grace)."""
        self.scheduler.pause()
        busy = running()
        if busy:
            self.say(f"stopping after the running job ({', '.join(busy)}) finishes…")
        self.scheduler.shutdown(wait=True)

    def _missed(self, event: JobExecutionEvent) -> None:
        job = self.scheduler.get_job(event.job_id)
        what = event.job_id.removeprefix(SCHEDULE).removeprefix(ONCE).split("#")[0].split("@")[0]
        due = event.scheduled_run_time
        after = f"; next: {_when(job.next_run_time)}" if job is not None and job.next_run_time else ""
        self.say(
            f"missed: {what} was due {_when(due)}, more than {self.grace_seconds}s ago (the worker was not running); "
            f"not run{after}"
        )


def describe(job: Job) -> str:
    """``weekly-picks  next 2026-12-08 10:00 PST  (cron 0 10 * * 2 America/Los_Angeles)``."""
    deployment = str(job.args[0]) if job.args else job.id
    if isinstance(job.trigger, DateTrigger):
        how = "once"
        if len(job.args) > 2 and isinstance(job.args[2], dict) and job.args[2].get("as_of"):
            how += f", for {job.args[2]['as_of']}"
    else:
        how = job.name.partition("(")[2].rstrip(")") or str(job.trigger)
        how = f"cron {how}"
    return f"{deployment:<16} next {_when(job.next_run_time)}  ({how})"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "never (paused)"
    return f"{moment:%Y-%m-%d %H:%M %Z}"


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (the worker finishes the running job); a second one ends the process."""

    def handle(signum: int, frame: FrameType | None) -> None:
        log.warning("%s received: stopping after the running job (send it again to stop now)",
                    signal.Signals(signum).name)  # fmt: skip
        stop.set()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def configure_logging() -> None:
    """The worker's lines (and APScheduler's errors) on stderr, with the time."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    for name, level in (("omnicast.worker", logging.INFO), ("apscheduler", logging.ERROR)):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False
