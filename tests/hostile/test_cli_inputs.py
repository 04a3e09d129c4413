"""Bad settings and bad command-line arguments, as a user meets them: the real `omnicast` script in a subprocess.

The contract, for every case: exit code 2, no ``Traceback`` anywhere in the output, and the last non-empty line of
stderr is one ``error: …`` line naming the setting, argument or file (and never showing a secret). Most cases fail
before Prefect is even imported; the few whose error can only surface inside a flow (a file the sources read, a
migration, a stage lock) share the session's Prefect API through ``PREFECT_API_URL``. The selected cases run a few
at a time in parallel, so the module stays well under a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text

from models.db import make_engine, prepare
from models.locks import stage_lock

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("omnicast")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "flows.cli"]
PARALLEL = 3
PASSWORD = "hunter2-never-shown"
SECRET = "s3cret-never-shown-in-errors"


@dataclass(frozen=True)
class Case:
    """One bad input: the command line, the settings that differ from a sane set-up, and what the error must name.

    ``{dir}`` in arguments and settings is the case's own folder (files a case needs are made by ``setup``).
    """

    args: tuple[str, ...]
    named: str
    env: dict[str, str] = field(default_factory=dict)
    flow: bool = False
    unset: tuple[str, ...] = ()
    setup: Callable[[Path], AbstractContextManager[object]] | None = None


def _not_a_database(folder: Path) -> AbstractContextManager[object]:
    (folder / "notes.db").write_text("my shopping list, not a database\n" * 200)
    return nullcontext()


def _blocking_file(folder: Path) -> AbstractContextManager[object]:
    (folder / "a-file").write_text("a regular file where a folder should be\n")
    return nullcontext()


def _newer_database(folder: Path) -> AbstractContextManager[object]:
    url = f"sqlite:///{folder / 'omnicast.db'}"
    prepare(url).dispose()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    engine.dispose()
    return nullcontext()


def _store(folder: Path) -> AbstractContextManager[object]:
    """A real (tiny) store export, so the sources get past the store files to the file under test."""
    from sample import write_sample

    write_sample(folder / "sample", customers=10, seed=1)
    (folder / "crm-folder").mkdir()
    return nullcontext()


def _sync_lock_held(folder: Path) -> AbstractContextManager[object]:
    """Another run holding the sync lock on the case's database for as long as the case runs."""
    _store(folder)
    url = f"sqlite:///{folder / 'omnicast.db'}"
    prepare(url).dispose()
    return stage_lock(make_engine(url), "sync", wait_seconds=0)


def _corrupt_demo(folder: Path) -> AbstractContextManager[object]:
    (folder / "demo" / "data").mkdir(parents=True)
    (folder / "demo" / "data" / "manifest.json").write_text('{"as_of": "2026-11-')
    return nullcontext()


def _dkim_folder(folder: Path) -> AbstractContextManager[object]:
    (folder / "dkim").mkdir()
    return nullcontext()


DAILY = ("daily", "--as-of", "2026-11-27")
SAMPLE_STORE = {"OMNICAST_STORE_PATH": "{dir}/sample/shopify"}

CASES: dict[str, Case] = {
    # --- settings ---------------------------------------------------------------------------------------------------
    "timezone-unknown": Case(("train",), "OMNICAST_TIMEZONE", {"OMNICAST_TIMEZONE": "Mars/Olympus_Mons"}),
    "timezone-offset-text": Case(("train",), "OMNICAST_TIMEZONE", {"OMNICAST_TIMEZONE": "UTC+2 "}),
    "country-three-letters": Case(("train",), "OMNICAST_DEFAULT_COUNTRY", {"OMNICAST_DEFAULT_COUNTRY": "ZZZ"}),
    "country-with-digit": Case(("train",), "OMNICAST_DEFAULT_COUNTRY", {"OMNICAST_DEFAULT_COUNTRY": "us1"}),
    "country-empty": Case(("train",), "OMNICAST_DEFAULT_COUNTRY", {"OMNICAST_DEFAULT_COUNTRY": ""}),
    "database-missing-folder": Case(
        ("train",), "OMNICAST_DATABASE_URL", {"OMNICAST_DATABASE_URL": "sqlite:////no/such/dir/omnicast.db"}
    ),
    "database-not-a-database": Case(
        ("train",), "notes.db", {"OMNICAST_DATABASE_URL": "sqlite:///{dir}/notes.db"}, setup=_not_a_database
    ),
    "database-is-a-folder": Case(("train",), "OMNICAST_DATABASE_URL", {"OMNICAST_DATABASE_URL": "sqlite:///{dir}"}),
    "database-postgres-unreachable": Case(
        ("train",), "OMNICAST_DATABASE_URL", {"OMNICAST_DATABASE_URL": f"postgresql://shop:{PASSWORD}@127.0.0.1:1/shop"}
    ),
    "database-postgres-unknown-host": Case(
        ("sync",), "OMNICAST_DATABASE_URL",
        {"OMNICAST_DATABASE_URL": f"postgresql+psycopg://shop:{PASSWORD}@db.invalid/shop", **SAMPLE_STORE},
    ),  # fmt: skip
    "database-unknown-driver": Case(
        ("train",), "OMNICAST_DATABASE_URL", {"OMNICAST_DATABASE_URL": f"postgresql+nodriver://u:{PASSWORD}@h/d"}
    ),
    "database-mysql": Case(("train",), "OMNICAST_DATABASE_URL", {"OMNICAST_DATABASE_URL": "mysql://shop@db/shop"}),
    "database-garbage": Case(("train",), "OMNICAST_DATABASE_URL", {"OMNICAST_DATABASE_URL": "my database please"}),
    "database-in-memory": Case(("train",), "OMNICAST_DATABASE_URL", {"OMNICAST_DATABASE_URL": "sqlite://"}),
    "database-from-a-newer-omnicast": Case(("train",), "OMNICAST_DATABASE_URL", flow=True, setup=_newer_database),
    "lease-zero": Case(("train",), "OMNICAST_CLAIM_LEASE_SECONDS", {"OMNICAST_CLAIM_LEASE_SECONDS": "0"}),
    "lease-negative": Case(("train",), "OMNICAST_CLAIM_LEASE_SECONDS", {"OMNICAST_CLAIM_LEASE_SECONDS": "-1"}),
    "lease-not-a-number": Case(("train",), "OMNICAST_CLAIM_LEASE_SECONDS", {"OMNICAST_CLAIM_LEASE_SECONDS": "abc"}),
    "lease-infinite": Case(("train",), "OMNICAST_CLAIM_LEASE_SECONDS", {"OMNICAST_CLAIM_LEASE_SECONDS": "inf"}),
    "lock-wait-negative": Case(("train",), "OMNICAST_LOCK_WAIT_SECONDS", {"OMNICAST_LOCK_WAIT_SECONDS": "-5"}),
    "lock-wait-words": Case(("train",), "OMNICAST_LOCK_WAIT_SECONDS", {"OMNICAST_LOCK_WAIT_SECONDS": "forever"}),
    "top-k-too-many": Case(
        ("train",), "OMNICAST_RECOMMENDATIONS_PER_CUSTOMER", {"OMNICAST_RECOMMENDATIONS_PER_CUSTOMER": "5000"}
    ),
    "email-url-unknown-scheme": Case(DAILY, "OMNICAST_EMAIL_URL", {"OMNICAST_EMAIL_URL": "carrier-pigeon://coop"}),
    "inapp-url-relative-path": Case(DAILY, "OMNICAST_INAPP_URL", {"OMNICAST_INAPP_URL": "file://outbox/inapp"}),
    "meta-url-unwritable-folder": Case(
        DAILY, "OMNICAST_META_AUDIENCE_URL", {"OMNICAST_META_AUDIENCE_URL": "file:///proc/omnicast-audiences"}
    ),
    "outbox-under-a-file": Case(DAILY, "a-file", {"OMNICAST_OUTBOX_DIR": "{dir}/a-file/outbox"}, setup=_blocking_file),
    "secret-missing": Case(DAILY, "OMNICAST_SECRET_KEY", unset=("OMNICAST_SECRET_KEY",)),
    "secret-empty": Case(DAILY, "OMNICAST_SECRET_KEY", {"OMNICAST_SECRET_KEY": ""}),
    "dkim-key-missing": Case(DAILY, "OMNICAST_DKIM_KEY_FILE", {"OMNICAST_DKIM_KEY_FILE": "{dir}/nope.pem"}),
    "dkim-key-is-a-folder": Case(
        DAILY, "OMNICAST_DKIM_KEY_FILE", {"OMNICAST_DKIM_KEY_FILE": "{dir}/dkim"}, setup=_dkim_folder
    ),
    "dkim-selector-spaces": Case(("train",), "OMNICAST_DKIM_SELECTOR", {"OMNICAST_DKIM_SELECTOR": "my selector"}),
    "sender-not-an-address": Case(("train",), "OMNICAST_SENDER_ADDRESS", {"OMNICAST_SENDER_ADDRESS": "the shop"}),
    "sender-header-injection": Case(
        ("train",), "OMNICAST_SENDER_ADDRESS",
        {"OMNICAST_SENDER_ADDRESS": "Shop <hi@shop.example>\r\nBcc: evil@attacker.example"},
    ),  # fmt: skip
    "sender-two-mailboxes": Case(
        ("train",), "OMNICAST_SENDER_ADDRESS", {"OMNICAST_SENDER_ADDRESS": "a@shop.example, b@shop.example"}
    ),
    "public-url-javascript": Case(("train",), "OMNICAST_PUBLIC_URL", {"OMNICAST_PUBLIC_URL": "javascript:alert(1)"}),
    "public-url-no-scheme": Case(("train",), "OMNICAST_PUBLIC_URL", {"OMNICAST_PUBLIC_URL": "shop.example.com"}),
    "unsubscribe-mailto-not-an-address": Case(
        ("train",), "OMNICAST_UNSUBSCRIBE_MAILTO", {"OMNICAST_UNSUBSCRIBE_MAILTO": "mailto:nobody"}
    ),
    "store-path-unset": Case(("sync",), "OMNICAST_STORE_URL is not set", unset=("OMNICAST_STORE_PATH",)),
    "prefect-api-unreachable": Case(("train",), "PREFECT_API_URL", {"PREFECT_API_URL": "http://127.0.0.1:1/api"}),
    "prefect-api-garbage": Case(("train",), "PREFECT_API_URL", {"PREFECT_API_URL": "http://[::1"}),
    "store-path-empty": Case(("sync",), "OMNICAST_STORE_URL is not set", {"OMNICAST_STORE_PATH": ""}),
    "outbox-empty": Case(("train",), "OMNICAST_OUTBOX_DIR", {"OMNICAST_OUTBOX_DIR": ""}),
    "store-name-line-break": Case(
        ("train",), "OMNICAST_STORE_NAME", {"OMNICAST_STORE_NAME": "Bean & Leaf\r\nBcc: evil@attacker.example"}
    ),
    "daily-store-missing": Case(DAILY, "nowhere", {"OMNICAST_STORE_PATH": "{dir}/nowhere"}, flow=True),
    "store-url-unknown-scheme": Case(("sync",), "OMNICAST_STORE_URL", {"OMNICAST_STORE_URL": "ftp://files.example/x"}),
    "store-shopify-without-token": Case(
        ("sync",), "OMNICAST_STORE_TOKEN", {"OMNICAST_STORE_URL": "shopify://bean-and-leaf.myshopify.com"}
    ),
    "store-shopify-not-a-shop": Case(
        ("sync",), "OMNICAST_STORE_URL",
        {"OMNICAST_STORE_URL": "shopify://example.com", "OMNICAST_STORE_TOKEN": "shpat_1"},
    ),
    "store-woocommerce-bad-key": Case(
        ("sync",), "OMNICAST_STORE_TOKEN",
        {"OMNICAST_STORE_URL": "woocommerce://shop.example", "OMNICAST_STORE_TOKEN": "x"},
    ),
    "crm-hubspot-without-token": Case(
        ("sync",), "OMNICAST_CRM_TOKEN", {"OMNICAST_CRM_URL": "hubspot://", **SAMPLE_STORE}, setup=_store
    ),
    "analytics-url-is-an-api": Case(
        ("sync",), "OMNICAST_ANALYTICS_URL", {"OMNICAST_ANALYTICS_URL": "https://analytics.example", **SAMPLE_STORE},
        setup=_store,
    ),
    "lock-held-by-another-run": Case(
        ("sync",), "OMNICAST_LOCK_WAIT_SECONDS", {"OMNICAST_LOCK_WAIT_SECONDS": "0", **SAMPLE_STORE},
        flow=True, setup=_sync_lock_held,
    ),  # fmt: skip
    # --- command-line arguments -------------------------------------------------------------------------------------
    "sample-as-of-word": Case(("sample", "--out", "{dir}/s", "--as-of", "tomorrow"), "--as-of"),
    "sample-as-of-impossible-date": Case(("sample", "--out", "{dir}/s", "--as-of", "2026-13-45"), "--as-of"),
    "daily-as-of-european": Case(("daily", "--as-of", "27/11/2026"), "--as-of"),
    "triggers-as-of-word": Case(("triggers", "run", "--as-of", "yesterday"), "--as-of"),
    "campaign-unknown": Case(("campaign", "run", "black-friday"), "black-friday"),
    "campaign-missing-name": Case(("campaign", "run"), "name"),
    "platform-unknown": Case(("audiences", "sync", "--platform", "snapchat"), "snapchat"),
    "customers-zero": Case(("sample", "--out", "{dir}/s", "--customers", "0"), "--customers"),
    "customers-negative": Case(("sample", "--out", "{dir}/s", "--customers", "-5"), "--customers"),
    "customers-not-a-number": Case(("sample", "--out", "{dir}/s", "--customers", "abc"), "--customers"),
    "customers-absurd": Case(("sample", "--out", "{dir}/s", "--customers", "10000000000"), "--customers"),
    "seed-negative": Case(("sample", "--out", "{dir}/s", "--seed", "-1"), "--seed"),
    "sample-out-under-a-file": Case(("sample", "--out", "{dir}/a-file/store"), "a-file", setup=_blocking_file),
    "sample-out-unwritable": Case(("sample", "--out", "/proc/omnicast-sample"), "--out"),
    "sample-out-with-markup": Case(("sample", "--out", "{dir}/a-file/[bold]x[/]"), "[bold]x[/]", setup=_blocking_file),
    "demo-corrupt-manifest": Case(("demo", "--workdir", "{dir}/demo"), "manifest.json", setup=_corrupt_demo),
    "demo-workdir-is-a-file": Case(("demo", "--workdir", "{dir}/a-file"), "--workdir", setup=_blocking_file),
    "sample-missing-out": Case(("sample",), "--out"),
    "unknown-option": Case(("sample", "--out", "{dir}/s", "--colour", "blue"), "--colour"),
    "unknown-command": Case(("fly",), "fly"),
    "no-command": Case((), "no command given"),
    "group-without-command": Case(("audiences",), "no command given"),
    "campaign-name-not-utf8": Case(("campaign", "run", "caf\udcff"), "no campaign named"),
    "store-missing-folder": Case(("sync", "--store", "{dir}/nowhere"), "nowhere", flow=True),
    "store-is-a-file": Case(("sync", "--store", "{dir}/a-file"), "a-file", flow=True, setup=_blocking_file),
    "crm-missing-file": Case(
        ("sync", "--store", "{dir}/sample/shopify", "--crm", "{dir}/contacts.csv"), "contacts.csv",
        flow=True, setup=_store,
    ),  # fmt: skip
    "crm-is-a-folder": Case(
        ("sync", "--store", "{dir}/sample/shopify", "--crm", "{dir}/crm-folder"), "crm-folder",
        flow=True, setup=_store,
    ),  # fmt: skip
    "analytics-missing-file": Case(
        ("sync", "--store", "{dir}/sample/shopify", "--analytics", "{dir}/events.jsonl"), "events.jsonl",
        flow=True, setup=_store,
    ),  # fmt: skip
}


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def last_stderr_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def _environment(folder: Path, case: Case, api_url: str | None) -> dict[str, str]:
    """A clean environment: a sane SQLite set-up inside the case's folder, then the case's own settings."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        "PREFECT_HOME": str(folder / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "COLUMNS": "200",
        "OMNICAST_DATABASE_URL": f"sqlite:///{folder / 'omnicast.db'}",
        "OMNICAST_OUTBOX_DIR": str(folder / "outbox"),
        "OMNICAST_STORE_PATH": str(folder / "store"),
        "OMNICAST_SECRET_KEY": SECRET,
    }
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update({name: value.replace("{dir}", str(folder)) for name, value in case.env.items()})
    for name in case.unset:
        env.pop(name, None)
    return env


def _run(name: str, case: Case, folder: Path, api_url: str | None) -> Outcome:
    import time

    folder.mkdir(parents=True)
    args = [arg.replace("{dir}", str(folder)) for arg in case.args]
    with case.setup(folder) if case.setup else nullcontext():
        started = time.monotonic()
        done = subprocess.run(
            [*COMMAND, *args], cwd=folder, env=_environment(folder, case, api_url),
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    return Outcome(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    """Run every selected case once, a few at a time; tests then only read their case's outcome."""
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "name" in item.callspec.params
    ]
    root = tmp_path_factory.mktemp("cli-inputs")
    with ThreadPoolExecutor(PARALLEL) as pool:
        # Cases that fail before any flow start at once; the Prefect API is started meanwhile for the others.
        futures = {n: pool.submit(_run, n, CASES[n], root / n, None) for n in selected if not CASES[n].flow}
        flow_cases = [n for n in selected if CASES[n].flow]
        if flow_cases:
            api_url = request.getfixturevalue("prefect_api")
            futures |= {n: pool.submit(_run, n, CASES[n], root / n, api_url) for n in flow_cases}
        results = {name: future.result() for name, future in futures.items()}
    if os.environ.get("OMNICAST_SHOW_TIMINGS"):
        for name, outcome in sorted(results.items(), key=lambda item: -item[1].seconds):
            print(f"{outcome.seconds:6.2f}s {name}")
    yield results


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_naming_it_with_exit_code_2(name: str, outcomes: dict[str, Outcome]) -> None:
    case, outcome = CASES[name], outcomes[name]
    everything = outcome.stdout + outcome.stderr
    assert "Traceback" not in everything, everything[-3000:]
    assert outcome.code == 2, everything[-3000:]
    last = outcome.last_stderr_line
    assert last.startswith("error: "), outcome.stderr[-3000:]
    assert case.named in last, last
    assert PASSWORD not in everything and SECRET not in everything
