"""Stage locks: a second run of a stage on the same database waits for the first, says so, and gives up clearly."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from models.db import make_engine
from models.errors import LockTimeoutError
from models.locks import lock_key, stage_lock

ROOT = Path(__file__).resolve().parents[2]


def _hold_in_thread(engine: Engine, stage: str, seconds: float) -> tuple[threading.Thread, threading.Event]:
    """Take ``stage``'s lock in another thread and keep it for ``seconds``; the event is set once it is held."""
    held = threading.Event()

    def hold() -> None:
        with stage_lock(engine, stage, wait_seconds=5):
            held.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10), "the first holder never got the lock"
    return thread, held


def test_second_run_of_a_stage_waits_for_the_first_and_says_why(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    thread, _ = _hold_in_thread(engine, "sync", 0.6)
    started = time.monotonic()
    with (
        caplog.at_level(logging.INFO, logger="models.locks"),
        stage_lock(engine, "sync", wait_seconds=10, poll_seconds=0.05),
    ):
        waited = time.monotonic() - started
    thread.join()
    assert 0.3 < waited < 5
    assert "another omnicast run holds the sync lock on this database; waiting up to 10 s" in caplog.text


def test_a_lock_held_too_long_is_a_timeout_naming_the_setting(engine: Engine) -> None:
    thread, _ = _hold_in_thread(engine, "train", 1.0)
    with (
        pytest.raises(LockTimeoutError, match="train lock.*OMNICAST_LOCK_WAIT_SECONDS"),
        stage_lock(engine, "train", wait_seconds=0.2, poll_seconds=0.05),
    ):
        pass  # pragma: no cover - never reached
    thread.join()
    with stage_lock(engine, "train", wait_seconds=0):  # released by its holder, free again
        pass


def test_different_stages_do_not_wait_for_each_other(engine: Engine) -> None:
    thread, _ = _hold_in_thread(engine, "campaign", 0.8)
    started = time.monotonic()
    with stage_lock(engine, "audiences", wait_seconds=0):
        assert time.monotonic() - started < 0.5
    thread.join()


def test_an_error_inside_the_stage_releases_the_lock(engine: Engine) -> None:
    with pytest.raises(RuntimeError), stage_lock(engine, "triggers", wait_seconds=0):
        raise RuntimeError("boom")
    with stage_lock(engine, "triggers", wait_seconds=0):
        pass


_HOLDER = """
import sys, time
from models.db import make_engine
from models.locks import stage_lock
with stage_lock(make_engine(sys.argv[1]), "sync", wait_seconds=5):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_run_leaves_no_lock_behind(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeoutError), stage_lock(engine, "sync", wait_seconds=0):
            pass  # pragma: no cover - never reached
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        with stage_lock(engine, "sync", wait_seconds=5, poll_seconds=0.05):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_sqlite_lock_files_live_beside_the_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    with stage_lock(engine, "sync", wait_seconds=0):
        assert (tmp_path / "shop.db.locks" / "sync.lock").exists()


def test_an_in_memory_database_needs_no_lock() -> None:
    engine = make_engine("sqlite://")
    with stage_lock(engine, "sync", wait_seconds=0), stage_lock(engine, "sync", wait_seconds=0):
        pass


def test_every_stage_has_its_own_stable_key() -> None:
    stages = ["migrate", "sync", "train", "triggers", "campaign", "audiences"]
    keys = [lock_key(stage) for stage in stages]
    assert len(set(keys)) == len(stages)
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert lock_key("sync") == lock_key("sync")
