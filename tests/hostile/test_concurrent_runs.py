"""Two `omnicast daily` started at the same moment on one PostgreSQL database: both finish, nothing is sent twice.

Before stage locks, one of the two often crashed in sync (``UniqueViolation ix_products_sku`` on a fresh database,
``ForeignKeyViolation order_lines_order_id_fkey`` on a warm one). Now the stages that write (migration, sync,
train, triggers, campaign and audience planning) take turns through advisory locks, and delivery runs in parallel
behind the ledger. Checked on a fresh database, then again on the warm one a week later: both runs exit 0, the
ledger holds no duplicate key and nothing ``pending``/``sending``, and what the two runs say they sent adds up to
what the ledger, the SMTP server (email, over SMTP to a real aiosmtpd on loopback) and the file sinks hold; the
SMTP server got every message at most once.

The test holds the sync lock itself until both runs wait for it, so they reach sync at the same moment every time
(left alone, their syncs overlapped in only some pairs on a store this small). Both subprocesses talk to the
session's Prefect API (``PREFECT_API_URL``) rather than each starting a temporary server of its own, which costs
a server start per run.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from models.db import make_engine
from models.locks import stage_lock
from tests.conftest import empty_postgres_database
from tests.peers.smtp_server import SmtpPeer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("omnicast")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "flows.cli"]
CUSTOMERS = 150
SENT = re.compile(r"^([\d,]+) new messages sent", re.MULTILINE)
WAITED = re.compile(r"another omnicast run holds the (\w+) lock on this database")

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.timeout(600)]


@dataclass
class Finished:
    code: int
    output: str
    seconds: float

    @property
    def waited_for(self) -> list[str]:
        """The stages this run found held by the other run (and waited for)."""
        return WAITED.findall(self.output)

    @property
    def sent(self) -> int:
        found = SENT.search(self.output)
        return int(found.group(1).replace(",", "")) if found else 0


@pytest.fixture(scope="module")
def fresh_postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database, not migrated: the two runs race to migrate it too."""
    with empty_postgres_database("omnicast_race") as url:
        yield url


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpPeer]:
    with SmtpPeer() as peer:
        yield peer


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, fresh_postgres_url: str, prefect_api: str, smtp: SmtpPeer
) -> dict[str, str]:
    """A small generated store and the environment both runs share (only the database differs from the demo's)."""
    from flows.demo import prepare_demo

    workdir = tmp_path_factory.mktemp("concurrent-days")
    manifest, demo_env = prepare_demo(workdir, CUSTOMERS)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OMNICAST_", "PREFECT_"))},
        **demo_env,
        "OMNICAST_DATABASE_URL": fresh_postgres_url,
        "OMNICAST_EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
        "OMNICAST_EMAIL_DAILY_CAP": "0",  # the warm pair runs next week's day on today's real clock
        "OMNICAST_EMAIL_WEEKLY_CAP": "0",
        "OMNICAST_AS_OF": manifest["as_of"],  # read by the test only
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(workdir / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "COLUMNS": "200",
    }


def _two_at_once(env: dict[str, str], day: date, engine: Engine) -> list[Finished]:
    """Start two daily runs for ``day`` at the same moment and wait for both.

    Left alone, the two reach sync up to a few seconds apart, and on a store this small one sync can be over
    before the other starts. So the test holds the sync lock itself until both runs wait for it, then lets go: both
    reach the stage at the same moment, every time.
    """
    started = time.monotonic()
    with stage_lock(engine, "sync", wait_seconds=0):
        runs = [
            subprocess.Popen([*COMMAND, "daily", "--as-of", day.isoformat()], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
            for _ in range(2)
        ]
        outputs: list[list[str]] = [[], []]
        readers = [threading.Thread(target=_read, args=(run, lines)) for run, lines in zip(runs, outputs, strict=True)]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + 180
        while not all("sync" in WAITED.findall("".join(lines)) for lines in outputs):
            if time.monotonic() > deadline or any(run.poll() is not None for run in runs):
                break  # the assertions below show what each run printed
            time.sleep(0.05)
    for run in runs:
        run.wait(timeout=420)
    for reader in readers:
        reader.join()
    seconds = time.monotonic() - started
    return [Finished(run.returncode, "".join(lines), seconds) for run, lines in zip(runs, outputs, strict=True)]


def _read(run: subprocess.Popen[str], lines: list[str]) -> None:
    assert run.stdout is not None
    lines.extend(iter(run.stdout.readline, ""))


def _ledger(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT state, count(*) FROM messages GROUP BY state")).all()
        duplicates = conn.execute(text(
            "SELECT count(*) FROM (SELECT 1 FROM messages GROUP BY occurrence_key, customer_id, channel "
            "HAVING count(*) > 1) AS d"
        )).scalar()  # fmt: skip
    return {**{state: n for state, n in rows}, "duplicate keys": int(duplicates or 0)}


def _delivered(outbox: Path, smtp: SmtpPeer) -> int:
    """Messages the peers hold: one email received over SMTP per email (never one twice), one JSONL line per card,
    one CSV row per audience member."""
    ids = Counter(email.message_from_bytes(m.data)["Message-ID"] for m in smtp.messages)
    assert max(ids.values(), default=1) == 1, "an email arrived twice"
    emails = len(ids)
    cards = sum(len(p.read_text().splitlines()) for p in (outbox / "inapp").glob("*.jsonl"))
    members = sum(max(0, len(p.read_text().splitlines()) - 1) for p in (outbox / "audiences").glob("*.csv"))
    return emails + cards + members


@pytest.mark.parametrize("database", ["fresh", "warm"])
def test_two_daily_runs_at_once_both_finish_and_send_each_message_once(
    database: str, store: dict[str, str], smtp: SmtpPeer
) -> None:
    engine = make_engine(store["OMNICAST_DATABASE_URL"])
    outbox = Path(store["OMNICAST_OUTBOX_DIR"])
    day = date.fromisoformat(store["OMNICAST_AS_OF"])
    if database == "warm":
        day += timedelta(days=7)  # the next week on the database the fresh pair left: new broadcasts to deliver
    sent_before = _ledger(engine).get("sent", 0) if database == "warm" else 0
    in_outbox_before = _delivered(outbox, smtp) if outbox.exists() else 0

    runs = _two_at_once(store, day, engine)

    for run in runs:
        assert "Traceback" not in run.output, run.output[-4000:]
        assert run.code == 0, run.output[-4000:]
        assert "sync" in run.waited_for, run.output[-4000:]  # both met the lock: the race really happened
    ledger = _ledger(engine)
    engine.dispose()
    assert ledger["duplicate keys"] == 0, ledger
    assert ledger.get("pending", 0) == 0 and ledger.get("sending", 0) == 0, ledger
    sent_now = ledger.get("sent", 0) - sent_before
    assert sent_now > 0, ledger  # the pair had real work to share
    assert sum(run.sent for run in runs) == sent_now, ([run.sent for run in runs], ledger)
    assert _delivered(outbox, smtp) - in_outbox_before == sent_now
    print(f"\n{database} database: two daily runs at once in {runs[0].seconds:.1f}s; sent {[r.sent for r in runs]}; "
          f"waited for {[r.waited_for for r in runs]}; ledger {ledger}")  # fmt: skip
