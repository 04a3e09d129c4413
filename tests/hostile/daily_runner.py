"""The `omnicast` command line, run out of process by the hostile suite, with Prefect flow heartbeats off.

Heartbeats cost about a second per flow run and an environment variable cannot turn them off (REFERENCE.md), so
the suite starts the real CLI app through this wrapper::

    python -m tests.hostile.daily_runner daily --as-of 2026-11-27

With ``--zygote`` it imports everything once and then forks one child per command line it reads on stdin (a JSON
list: the child's log file, then the arguments). It answers ``started <pid>`` at once and ``exited <pid> <code>``
when the child ends. A forked child runs exactly what the console script runs, without paying ~3 s of imports
again: the kill test starts 26 runs.
"""

from __future__ import annotations

import json
import os
import selectors
import sys
from typing import Any


def run_cli(arguments: list[str]) -> int:
    """The CLI app on ``arguments`` with heartbeats off; its exit code."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.cli import app

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        try:
            app(arguments, prog_name="omnicast", standalone_mode=True)
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


def _say(text: str) -> None:
    os.write(1, (text + "\n").encode())


def _fork(request: list[Any]) -> int:
    log_file, arguments = request[0], request[1:]
    pid = os.fork()
    if pid:
        return pid
    code = 1  # the child: its own session (killable as a group), output to its log file
    try:
        os.setsid()
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        code = run_cli(arguments)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def zygote() -> None:
    """Import once, then fork a child per request (see the module docstring). Single-threaded on purpose: a
    fork copies only the calling thread, so no lock can be left held in a child."""
    import flows.cli  # noqa: F401
    import flows.daily  # noqa: F401  (the heavy part: Prefect, pandas, LightFM)

    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    buffer = b""
    children: set[int] = set()
    _say("ready")
    while True:
        if selector.select(timeout=0.05):
            chunk = os.read(0, 65536)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                pid = _fork(json.loads(line))
                children.add(pid)
                _say(f"started {pid}")
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                _say(f"exited {pid} {os.waitstatus_to_exitcode(status)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--zygote"]:
        zygote()
    else:
        sys.exit(run_cli(sys.argv[1:]))
