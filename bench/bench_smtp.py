"""Benchmark: SmtpTransport against a raw smtplib loop, to the same local aiosmtpd server in the same run.

The server (aiosmtpd, a handler that only counts) runs in its own process, so it does not share the client's
interpreter lock. Messages are built once up front by the email channel (weekly picks, 4 products: the real size and
shape), then each variant sends all of them:

* baseline: ``smtplib.SMTP`` on one connection, ``sendmail`` per message (the least an SMTP client can do);
* ``SmtpTransport.deliver`` one at a time (pool=1: what dispatch does, one message in flight);
* ``SmtpTransport.deliver`` from ``--threads`` threads over a pool of ``--pool`` connections.

Variants alternate for ``--rounds`` rounds and the best round of each is reported (the machine is shared), with the
client process's CPU time per message: the server parses every line in Python and sets the pace, so the client's
CPU shows what the transport itself costs on top of smtplib.

    .venv/bin/python bench/bench_smtp.py [--messages 2000] [--rounds 3] [--threads 4] [--pool 4]
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_dispatch import messages as planned_messages  # noqa: E402  (bench/ is on sys.path: run as a script)

from channels.email import EmailChannel, email_channel  # noqa: E402
from channels.headers import mailbox  # noqa: E402
from channels.smtp import SmtpTransport  # noqa: E402
from channels.spec import ChannelResources  # noqa: E402
from flows.settings import Settings  # noqa: E402
from models.message import OutboundMessage  # noqa: E402

TARGET = 0.80


class CountingHandler:
    """Accepts every message and counts it; the count is the queue id, so the client can check the total."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return f"250 2.0.0 Ok: queued as {self.count}"


def serve() -> None:
    """The server process: aiosmtpd on 127.0.0.1, a free port printed on stdout, until stdin closes."""
    from aiosmtpd.smtp import SMTP

    handler = CountingHandler()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(handler, hostname="bench.test", data_size_limit=None, enable_SMTPUTF8=True, loop=loop),
            "127.0.0.1",
            0,
        )
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    loop.add_reader(sys.stdin.fileno(), loop.stop)  # the parent closes our stdin when it is done
    loop.run_forever()


def build_messages(count: int) -> list[tuple[bytes, OutboundMessage]]:
    """The dispatch benchmark's weekly-picks messages (4 products each), built once by the email channel."""
    settings = Settings(secret_key="bench-secret")
    channel = email_channel(_NullTransport(), ChannelResources(settings))
    assert isinstance(channel, EmailChannel)
    return [(channel.build(message), message) for message in planned_messages(count)]


class _NullTransport:
    def deliver(self, msg_bytes: bytes, message: OutboundMessage) -> str:  # pragma: no cover
        raise AssertionError("only building here")

    def close(self) -> None:
        pass


def raw_smtplib(port: int, items: list[tuple[bytes, OutboundMessage]]) -> float:
    """The baseline: one smtplib connection, sendmail per message (envelope as SmtpTransport computes it)."""
    envelopes = [(mailbox(m.recipient.email).addr_spec, data) for data, m in items]
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.client") as smtp:
        for recipient, data in envelopes:
            smtp.sendmail("hello@beanandleaf.example", [recipient], data)
    return time.perf_counter() - started


def one_at_a_time(port: int, items: list[tuple[bytes, OutboundMessage]]) -> float:
    transport = SmtpTransport("127.0.0.1", port, pool=1, helo="bench.client")
    started = time.perf_counter()
    for data, message in items:
        transport.deliver(data, message)
    transport.close()
    return time.perf_counter() - started


def pooled(port: int, items: list[tuple[bytes, OutboundMessage]], *, pool: int, threads: int) -> float:
    transport = SmtpTransport("127.0.0.1", port, pool=pool, helo="bench.client")
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as executor:
        for _ in executor.map(lambda item: transport.deliver(*item), items):
            pass
    transport.close()
    return time.perf_counter() - started


def through_dispatch(port: int, items: list[tuple[bytes, OutboundMessage]], folder: Path) -> tuple[float, float]:
    """The whole path a run takes, timed against its own baseline: dispatch (SQLite ledger: claim, consent gate,
    ``sending`` committed before each hand-over, outcome) → email channel (render + MIME per message) → SMTP, versus
    building the same messages and sending them with the raw smtplib loop."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from channels.dispatch import dispatch
    from channels.registry import open_channel
    from channels.spec import BY_NAME
    from models.db import make_engine, upgrade
    from models.schema import Consent, Customer

    url = f"sqlite:///{folder / 'bench-smtp.db'}"
    upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    messages = [message for _, message in items]
    with engine.begin() as conn:
        conn.execute(insert(Customer.__table__), [{"id": m.customer_id, "email": m.recipient.email,  # type: ignore[attr-defined]
                                                  "created_at": now, "updated_at": now} for m in messages])  # fmt: skip
        conn.execute(insert(Consent.__table__), [{"customer_id": m.customer_id, "channel": "email",  # type: ignore[attr-defined]
                     "state": "granted", "source": "bench", "recorded_at": now} for m in messages])  # fmt: skip
    settings = Settings(secret_key="bench-secret")
    channel = open_channel(BY_NAME["email"], f"smtp://127.0.0.1:{port}?pool=1&helo=bench.client",
                           ChannelResources(settings))  # fmt: skip
    started = time.perf_counter()
    report = dispatch(engine, messages, {"email": channel})
    dispatched = time.perf_counter() - started
    channel.close()
    assert report.total_sent == len(messages), report.rows()
    built = email_channel(_NullTransport(), ChannelResources(settings))
    assert isinstance(built, EmailChannel)
    started = time.perf_counter()
    rebuilt = [(built.build(message), message) for message in messages]
    baseline = time.perf_counter() - started + raw_smtplib(port, rebuilt)
    engine.dispose()
    return dispatched, baseline


def server_count(port: int) -> int:
    """How many messages the server has accepted, this probe included (its queue id is the count)."""
    probe = b"From: <hello@beanandleaf.example>\r\nTo: <probe@example.com>\r\nSubject: count\r\n\r\nprobe\r\n"
    with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.client") as smtp:
        smtp.ehlo()
        smtp.mail("hello@beanandleaf.example")
        smtp.rcpt("probe@example.com")
        code, reply = smtp.data(probe)
    return int(reply.rsplit(b" ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pool", type=int, default=4)
    args = parser.parse_args()

    started = time.perf_counter()
    items = build_messages(args.messages)
    size = sum(len(data) for data, _ in items) / len(items)
    print(f"built {len(items):,} messages ({size / 1024:.1f} KiB each) in {time.perf_counter() - started:.1f} s")

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        variants: dict[str, Callable[[], float]] = {
            "raw smtplib loop, one connection (baseline)": lambda: raw_smtplib(port, items),
            "SmtpTransport.deliver, one at a time": lambda: one_at_a_time(port, items),
            f"SmtpTransport.deliver, {args.threads} threads, pool={args.pool}": lambda: pooled(
                port, items, pool=args.pool, threads=args.threads
            ),
        }
        best = {label: float("inf") for label in variants}
        cpu = {label: float("inf") for label in variants}
        before = server_count(port)
        for _ in range(args.rounds):
            for label, run in variants.items():
                cpu_started = time.process_time()
                best[label] = min(best[label], run())
                cpu[label] = min(cpu[label], time.process_time() - cpu_started)
        received = server_count(port) - before - 1
        expected = args.rounds * len(variants) * len(items)
        assert received == expected, f"the server counted {received:,} messages, expected {expected:,}"
        with tempfile.TemporaryDirectory() as folder:
            dispatched, built_and_sent = through_dispatch(port, items, Path(folder))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)

    baseline = args.messages / best["raw smtplib loop, one connection (baseline)"]
    print(f"{args.messages:,} messages to a local aiosmtpd (separate process), best of {args.rounds} rounds:")
    for label, seconds in best.items():
        rate = args.messages / seconds
        print(
            f"  {label:<48} {seconds:6.2f} s  {rate:8,.0f} msgs/s  {rate / baseline:5.2f}x baseline"
            f"  (client CPU {cpu[label] / args.messages * 1000:.3f} ms/msg)"
        )
    single = args.messages / best["SmtpTransport.deliver, one at a time"] / baseline
    verdict = "meets" if single >= TARGET else "MISSES"
    print(f"one-at-a-time delivery {verdict} the target of {TARGET:.0%} of the raw loop ({single:.0%})")
    count = args.messages
    print(
        f"the whole path, once: dispatch (SQLite ledger) → render + MIME → SMTP {dispatched:6.2f} s "
        f"{count / dispatched:8,.0f} msgs/s; baseline build + raw smtplib {built_and_sent:6.2f} s "
        f"{count / built_and_sent:8,.0f} msgs/s ({built_and_sent / dispatched:.2f}x)"
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        main()
