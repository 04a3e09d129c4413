"""A daily run SIGKILLed at 20 random moments, each time run again: every message ends sent once or recorded with
its reason, and nothing is written twice.

The store is small and real: `omnicast sample` data, email over SMTP to a real aiosmtpd on loopback (in this test's
process, so it outlives every killed run), the file sinks for audiences and in-app cards, SQLite, and the real CLI in
a subprocess against the session's Prefect API. Kill moments are drawn from a seeded generator (set
``OMNICAST_KILL_SEED`` to replay another sequence): half anywhere in the flow run, half inside its delivery step,
where a crash is most dangerous. Runs come in groups on one business day: four runs each killed (each one also
finishing what the killed one before it left), then a clean run, which must leave nothing unfinished. The lease
is one second so every rerun may take over at once.

After every run, killed or not, the peers must agree with the ledger: the SMTP server got each planned message at
most once, and only messages the ledger has as sent, being handed over when the run died, or failed ``in_doubt``
(accepted by the server, the run killed before it could record it: SMTP has no way to ask, so it is never resent);
every file belongs to a message that is sent (or being handed over), no file is ever replaced, no card or audience
row appears twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from channels.outbox import ledger_hash
from models.db import make_engine
from models.schema import Message
from tests.peers.smtp_server import SmtpPeer

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("OMNICAST_KILLS", "20"))  # 20 unless replaying a shorter sequence
GROUP = 4
SEED = int(os.environ.get("OMNICAST_KILL_SEED", "20261130"))
CUSTOMERS = 200
LEASE_SECONDS = 0.5
FLOW_STARTED = "Beginning flow run"
DELIVERY_STARTED = "plan-audiences"  # the last planning task: delivery starts right after it finishes


@dataclass
class Run:
    """One `omnicast daily` run (a child of the zygote) and the lines it printed, with when each was seen."""

    pid: int
    log: Path
    zygote: Zygote
    lines: list[tuple[float, str]] = field(default_factory=list)
    _read: int = 0

    @property
    def exit_code(self) -> int | None:
        return self.zygote.exited.get(self.pid)

    def poll(self) -> None:
        """Take in the lines written since the last look."""
        data = self.log.read_bytes()[self._read :]
        complete = data[: data.rfind(b"\n") + 1]
        self._read += len(complete)
        now = time.monotonic()
        self.lines += [(now, line) for line in complete.decode(errors="replace").splitlines()]

    def wait_for(self, text: str, timeout: float = 120.0) -> float | None:
        """When the first line containing ``text`` was seen; ``None`` if the run ended without one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ended = self.exit_code is not None
            self.poll()
            for at, line in self.lines:
                if text in line and (text == FLOW_STARTED or "Finished" in line):
                    return at
            if ended:
                return None
            time.sleep(0.02)
        raise TimeoutError(f"no line with {text!r} after {timeout}s")

    def kill(self) -> bool:
        """SIGKILL the run (its whole process group); ``False`` when it had already ended."""
        if self.exit_code is not None:
            return False
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended and was reaped just now; the zygote's word is on its way
            return False
        return True

    def wait(self, timeout: float = 300.0) -> int:
        deadline = time.monotonic() + timeout
        while self.exit_code is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {self.pid} still going after {timeout}s")
            self.poll()  # stamps lines as they come: the calibration run measures its phases this way
            time.sleep(0.02)
        self.poll()
        return self.exit_code

    @property
    def output(self) -> str:
        self.poll()
        return "\n".join(line for _, line in self.lines)


class Zygote:
    """``daily_runner --zygote``: imports once, forks a run per request, reports exits."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile.daily_runner", "--zygote"],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        self.exited: dict[int, int] = {}
        self._started: list[int] = []
        self._ready = threading.Event()
        self._new = threading.Condition()
        threading.Thread(target=self._listen, daemon=True).start()
        assert self._ready.wait(120), "the zygote did not start"

    def _listen(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            word, *rest = line.split()
            if word == "ready":
                self._ready.set()
            elif word == "started":
                with self._new:
                    self._started.append(int(rest[0]))
                    self._new.notify_all()
            elif word == "exited":
                self.exited[int(rest[0])] = int(rest[1])

    def fork(self, log: Path, arguments: list[str]) -> Run:
        assert self.process.stdin is not None
        log.touch()  # the child opens it after the fork: exist before anyone polls it
        with self._new:
            count = len(self._started)
            self.process.stdin.write(json.dumps([str(log), *arguments]) + "\n")
            self.process.stdin.flush()
            assert self._new.wait_for(lambda: len(self._started) > count, timeout=30)
            pid = self._started[count]
        return Run(pid, log, self)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


class World:
    """The store, its settings and what the outbox looked like after each run."""

    def __init__(self, workdir: Path, api_url: str, smtp: SmtpPeer) -> None:
        from flows.demo import prepare_demo

        self.smtp = smtp
        self.workdir = workdir
        self.manifest, demo_env = prepare_demo(workdir, CUSTOMERS)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OMNICAST_")},
            **demo_env,
            "OMNICAST_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
            "OMNICAST_EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
            # Every run happens today on the real clock, whatever business day it is for: without this, the
            # frequency cap (judged on the real day) would hold back every email after the first day's.
            "OMNICAST_EMAIL_DAILY_CAP": "0",
            "OMNICAST_EMAIL_WEEKLY_CAP": "0",
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(workdir / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "200",
        }
        self.outbox = workdir / "outbox"
        self.engine = make_engine(demo_env["OMNICAST_DATABASE_URL"])
        self.files: dict[str, tuple[int, int]] = {}
        self.zygote = Zygote(self.env)
        self.runs = 0

    def start(self, day: date) -> Run:
        self.runs += 1
        return self.zygote.fork(self.workdir / f"run-{self.runs:02d}.log", ["daily", "--as-of", day.isoformat()])

    def run_to_end(self, day: date) -> Run:
        run = self.start(day)
        run.wait()
        return run

    def in_flight(self) -> set[tuple[int, str, str]]:
        """(row, state, since when) of every message claimed or in hand-over right now."""
        return {(r.id, r.state, str(r.updated_at)) for r in self.ledger() if r.state in ("pending", "sending")}

    def ledger(self) -> list[Message]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(Message)).all())  # type: ignore[call-overload]

    def check(self, *, finished: bool) -> Counter[str]:
        """The outbox agrees with the ledger; with ``finished``, nothing is left pending or being handed over."""
        rows = self.ledger()
        states = Counter(f"{r.state}/{r.reason}" if r.reason else r.state for r in rows)
        in_doubt = {r.channel for r in rows if r.state == "failed" and r.reason == "in_doubt"}
        assert in_doubt <= {"email"}, states  # every file sink can tell what it holds; SMTP cannot
        if finished:
            assert not {"pending", "sending", "failed/retryable"} & set(states), states
        hashes = {ledger_hash((r.occurrence_key, r.customer_id, r.channel)): r for r in rows}
        self._check_emails(rows, hashes)
        self._check_cards(rows, hashes)
        self._check_audiences(rows, hashes)
        return states

    def _check_emails(self, rows: list[Message], hashes: dict[str, Message]) -> None:
        """Each message reached the SMTP server at most once, and only one the ledger has handed over."""
        received = Counter(_message_id_hash(m.data) for m in self.smtp.messages)
        assert max(received.values(), default=1) == 1, [h for h, n in received.items() if n > 1]
        for digest in received:
            row = hashes.get(digest)
            assert row is not None and row.channel == "email", digest
            assert row.state in ("sent", "sending") or (row.state, row.reason) == ("failed", "in_doubt"), row
        for row in rows:
            if row.channel == "email" and row.state == "sent":
                assert ledger_hash((row.occurrence_key, row.customer_id, row.channel)) in received

    def _check_cards(self, rows: list[Message], hashes: dict[str, Message]) -> None:
        ids: Counter[str] = Counter()
        for path in (self.outbox / "inapp").glob("*.jsonl"):
            for line in path.read_text().splitlines():
                try:
                    ids[json.loads(line)["id"]] += 1
                except (ValueError, KeyError):
                    continue  # a torn last line of a killed run is not a card
        assert max(ids.values(), default=1) == 1, [card for card, n in ids.items() if n > 1]
        for card in ids:
            row = hashes.get(card)
            assert row is not None and row.channel == "inapp" and row.state in ("sent", "sending"), card
        for row in rows:
            if row.channel == "inapp" and row.state == "sent":
                assert ledger_hash((row.occurrence_key, row.customer_id, row.channel)) in ids

    def _check_audiences(self, rows: list[Message], hashes: dict[str, Message]) -> None:
        folder = self.outbox / "audiences"
        listed: Counter[str] = Counter()
        for keys in (folder / ".ledger").glob("*.keys"):
            csv_file = folder / (keys.name.removesuffix(".keys") + ".csv")
            if not csv_file.exists():
                continue  # killed between the two writes: nothing of that batch was published
            digests = keys.read_text().split()
            assert len(csv_file.read_text().splitlines()) == len(digests) + 1, csv_file.name  # header + one per key
            listed.update(digests)
        assert max(listed.values(), default=1) == 1, "an audience member was uploaded twice"
        for row in rows:
            if row.channel in ("meta", "google") and row.state == "sent":
                assert listed[ledger_hash((row.occurrence_key, row.customer_id, row.channel))] == 1


def _message_id_hash(data: bytes) -> str:
    """The ledger hash our Message-ID carries (``<hash@domain>``)."""
    head = data.partition(b"\r\n\r\n")[0].decode("utf-8", "replace")
    line = next(line for line in head.split("\r\n") if line.lower().startswith("message-id:"))
    return line.split("<", 1)[1].split("@", 1)[0]


@pytest.mark.e2e
@pytest.mark.timeout(1200)
def test_a_day_killed_at_20_random_moments_ends_with_every_message_sent_once(
    prefect_api: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    smtp = SmtpPeer()
    smtp.start()
    world = World(tmp_path_factory.mktemp("killed-days"), prefect_api, smtp)
    day = date.fromisoformat(world.manifest["as_of"])
    calibration = world.run_to_end(day)
    assert calibration.exit_code in (0, 1), calibration.output[-3000:]
    flow_start = calibration.wait_for(FLOW_STARTED)
    delivery_start = calibration.wait_for(DELIVERY_STARTED)
    assert flow_start is not None and delivery_start is not None, calibration.output[-3000:]
    window = {"flow": calibration.lines[-1][0] - flow_start, "delivery": calibration.lines[-1][0] - delivery_start}
    world.check(finished=True)

    rng = random.Random(SEED)
    kills: list[dict[str, object]] = []
    since_clean = 0
    day += timedelta(days=7)  # a new ISO week: a new weekly broadcast to deliver
    for _ in range(3 * KILLS):  # runs that end before their moment do not count as kills
        if len(kills) == KILLS:
            break
        phase = "delivery" if len(kills) % 2 else "flow"
        before = world.in_flight()
        run = world.start(day)
        marker = run.wait_for(DELIVERY_STARTED if phase == "delivery" else FLOW_STARTED)
        delay = rng.uniform(0, 1.1 * window[phase])
        if marker is not None:
            time.sleep(max(0.0, marker + delay - time.monotonic()))
        killed = run.kill()
        code = run.wait(timeout=60)
        world.check(finished=not killed)
        if not killed:  # the run finished first: the day is done, move to fresh work
            assert code in (0, 1) and "Traceback" not in run.output, run.output[-3000:]
            if marker is not None and run.lines:  # later days run shorter than the first: aim within this one
                window[phase] = min(window[phase], max(run.lines[-1][0] - marker, 0.5))
            day += timedelta(days=7)
            since_clean = 0
            continue
        left = world.in_flight() - before
        kills.append({"day": day.isoformat(), "phase": phase, "after_s": round(delay, 2),
                      "left_claimed": sum(1 for _, s, _ in left if s == "pending"),
                      "left_in_hand_over": sum(1 for _, s, _ in left if s == "sending")})  # fmt: skip
        since_clean += 1
        time.sleep(LEASE_SECONDS + 0.1)
        if since_clean == GROUP or len(kills) == KILLS:  # a clean rerun finishes everything the kills left
            rerun = world.run_to_end(day)
            assert rerun.exit_code in (0, 1) and "Traceback" not in rerun.output, rerun.output[-3000:]
            final = world.check(finished=True)
            if rerun.exit_code == 1:  # only failures no retry can fix may end a day Failed
                outcomes = {state.partition("/")[0] if state.startswith("suppressed") else state for state in final}
                assert outcomes <= {"sent", "suppressed", "failed/permanent", "failed/in_doubt"}, final
            day += timedelta(days=7)
            since_clean = 0
    world.zygote.close()
    smtp.stop()

    mid_delivery = [k for k in kills if k["left_claimed"] or k["left_in_hand_over"]]
    print(f"\nkill test (seed {SEED}): {len(kills)} runs killed ({world.runs} runs in all), {len(mid_delivery)} "
          f"of them in the middle of delivery; {len(smtp.messages)} emails received over SMTP, none twice; "
          f"ledger at the end: {dict(world.check(finished=True))}")  # fmt: skip
    for kill in kills:
        print("  ", kill)
    assert len(kills) == KILLS, kills
    assert mid_delivery, "no kill landed while messages were claimed or handed over: widen the delivery window"
