"""`omnicast serve` and `omnicast forget` (flows/cli_answers.py), on a Typer app built the way flows/cli.py builds its
own: the CLI's error contract (one ``error:`` line, exit 2) holds for both."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer
from sqlalchemy import insert
from typer.testing import CliRunner

from flows.cli import OmnicastGroup
from flows.cli_answers import register
from models.db import make_engine, upgrade
from models.schema import Customer
from tests.web.conftest import SECRET, SIGNER

ROOT = Path(__file__).resolve().parents[2]
SERVE_SCRIPT = """
import typer
from flows.cli import OmnicastGroup
from flows.cli_answers import register
app = typer.Typer(cls=OmnicastGroup, pretty_exceptions_enable=False)
register(app)
app()
"""


def cli() -> typer.Typer:
    app = typer.Typer(cls=OmnicastGroup, no_args_is_help=True, pretty_exceptions_enable=False)
    register(app)
    return app


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite database with one customer, and the settings pointing at it (no .env from the repo)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("OMNICAST_"):
            monkeypatch.delenv(name)
    url = f"sqlite:///{tmp_path / 'omnicast.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Customer.__table__).values(id=1, email="ann@example.com", first_name="Ann"))  # type: ignore[attr-defined]
    engine.dispose()
    monkeypatch.setenv("OMNICAST_DATABASE_URL", url)
    monkeypatch.setenv("OMNICAST_SECRET_KEY", SECRET)
    return url


def test_forget_prints_what_it_erased_and_is_safe_twice(database: str) -> None:
    runner = CliRunner()
    first = runner.invoke(cli(), ["forget", "Ann@Example.com"])
    assert first.exit_code == 0, first.output
    assert "erased 1 customer profile(s) (ids 1)" in first.output and "ann@example.com" not in first.output.lower()
    again = runner.invoke(cli(), ["forget", "ann@example.com", "--json"])
    assert again.exit_code == 0
    report = json.loads(again.output)
    assert report["found"] is False and report["already_erased"] is True
    unknown = runner.invoke(cli(), ["forget", "nobody@example.com"])
    assert unknown.exit_code == 0 and unknown.output.startswith("not found")


def test_forget_refuses_what_is_not_an_address(database: str) -> None:
    result = CliRunner().invoke(cli(), ["forget", "not-an-address"])
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error:") and "not an email address" in last


def test_serve_without_a_secret_key_or_with_a_taken_port_says_how_to_fix_it(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.delenv("OMNICAST_SECRET_KEY")
    result = runner.invoke(cli(), ["serve", "--port", "8000"])
    assert result.exit_code == 2 and "OMNICAST_SECRET_KEY" in result.output.strip().splitlines()[-1]
    monkeypatch.setenv("OMNICAST_SECRET_KEY", SECRET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = runner.invoke(cli(), ["serve", "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error:") and f"127.0.0.1:{port}" in last and "--port" in last
    result = runner.invoke(cli(), ["serve", "--port", "70000"])
    assert result.exit_code == 2


def test_serve_answers_one_click_unsubscribes_at_the_serve_url(database: str, tmp_path: Path) -> None:
    """The real command in its own process: it prints the public URL, and the List-Unsubscribe URL works."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OMNICAST_")},
        "OMNICAST_DATABASE_URL": database,
        "OMNICAST_SECRET_KEY": SECRET,
        "OMNICAST_SERVE_URL": f"http://127.0.0.1:{port}/mail",
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert f"answering for http://127.0.0.1:{port}/mail on http://127.0.0.1:{port}" in first_line, first_line
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/mail/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "omnicast serve did not come up"
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        token = SIGNER.sign(1, "email")
        answer = httpx.post(f"http://127.0.0.1:{port}/mail/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert token not in stderr and "POST /mail/u/… 200" in stderr
    from models.consent import consent_states

    engine = make_engine(database)
    with engine.connect() as conn:
        assert consent_states(conn, [1], "email") == {1: "denied"}
    engine.dispose()
