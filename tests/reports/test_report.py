"""The report's files: one self-contained page whose numbers are the measurement's, CSVs with the same numbers,
names that stay text, the `omnicast report` command and the `report` flow's artifacts."""

from __future__ import annotations

import csv
import re
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from flows.cli_report import register
from models.errors import InputError
from models.measurement import measure
from models.schema import Message
from reports import CSV_FILES, INDEX, render_html, write_report
from tests.models.measurement_fixture import T0, build


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_page_is_self_contained_and_holds_the_numbers(sqlite_engine: Engine, tmp_path: Path) -> None:
    build(sqlite_engine)
    measurement = measure(sqlite_engine)
    page = write_report(measurement, tmp_path / "out")
    assert page == tmp_path / "out" / INDEX
    html = page.read_text()
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    # No script, no external asset: the only URL is the SVG namespace.
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"\bsrc=", html)
    assert html.count("<svg") >= 2 + 2  # the two daily charts, a funnel per campaign, interval strips
    # The hand-computed numbers of tests/models/test_measurement.py appear as the page writes them.
    for text in ("picks · A", "picks · holdout", "winback · A", "messages sent",
                 "$80.00", "66.7%", "+16.7 pp", "last click within 5 days"):  # fmt: skip
        assert text in html, text
    assert ">5<" in html  # messages sent on the first day (daily table)
    for name in CSV_FILES:
        assert (tmp_path / "out" / name).exists()
        assert f'href="{name}"' in html


def test_the_csvs_hold_the_same_numbers(sqlite_engine: Engine, tmp_path: Path) -> None:
    build(sqlite_engine)
    measurement = measure(sqlite_engine)
    write_report(measurement, tmp_path)
    variants = _csv(tmp_path / "variants.csv")
    assert [(r["campaign"], r["variant"]) for r in variants] == [
        (r["campaign"], r["variant"]) for r in measurement.variant_rows()
    ]
    a = variants[0]
    assert (a["campaign"], a["variant"], a["recipients"], a["sent"], a["clickers"]) == ("picks", "A", "3", "2", "2")
    assert float(a["revenue"]) == 40.0 and float(a["conversion_lift"]) == pytest.approx(2 / 3 - 0.5, abs=1e-6)
    holdout = next(r for r in variants if r["variant"] == "holdout")
    assert holdout["conversion_lift"] == "" and holdout["ctr"] == ""  # no value, not 0
    campaigns = _csv(tmp_path / "campaigns.csv")
    assert [(r["campaign"], r["variants"], r["recipients"], r["holdout_recipients"]) for r in campaigns] == [
        ("picks", "A, B", "5", "2"),
        ("winback", "A", "1", "1"),
    ]
    daily = _csv(tmp_path / "daily.csv")
    assert daily[0] == {"day": "2026-11-10", "messages_sent": "5", "clicks": "4", "orders": "2", "revenue": "40.0"}
    assert sum(float(r["revenue"]) for r in daily) == 100.0


def test_names_stay_text(sqlite_engine: Engine, tmp_path: Path) -> None:
    """Variant names come from YAML; even one that looks like markup is shown, never run."""
    build(sqlite_engine)
    hostile = '<script>alert("x")</script>'
    with sqlite_engine.begin() as conn:
        conn.execute(
            insert(Message.__table__),  # type: ignore[attr-defined]
            [
                {"occurrence_key": f"x:{n}", "customer_id": cid, "channel": "email", "campaign": "x</svg><b>",
                 "variant": variant, "state": state, "reason": reason, "created_at": T0, "updated_at": T0,
                 "sent_at": T0 + timedelta(minutes=1) if state == "sent" else None}
                for n, (cid, variant, state, reason) in enumerate(
                    [(1, hostile, "sent", None), (2, hostile, "sent", None), (3, "holdout", "suppressed", "holdout"),
                     (4, "holdout", "suppressed", "holdout")]
                )
            ],
        )  # fmt: skip
    html = render_html(measure(sqlite_engine))
    assert "<script>" not in html and "</svg><b>" not in html
    assert "&lt;script&gt;" in html and "x&lt;/svg&gt;&lt;b&gt;" in html


def test_an_empty_report_says_so(sqlite_engine: Engine, tmp_path: Path) -> None:
    html = write_report(measure(sqlite_engine), tmp_path).read_text()
    assert "No campaign messages yet" in html
    assert _csv(tmp_path / "variants.csv") == [] and (tmp_path / "daily.csv").read_text().startswith("day,")


# ---------------------------------------------------------------- the command


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command, so Typer keeps `report` as a subcommand
    def noop() -> None: ...

    return app


@pytest.fixture
def settings_env(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICAST_DATABASE_URL", sqlite_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("OMNICAST_TIMEZONE", "UTC")


def test_omnicast_report_writes_the_page(
    app: typer.Typer, settings_env: None, sqlite_engine: Engine, tmp_path: Path
) -> None:
    build(sqlite_engine)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").exists() and (out / "variants.csv").exists()
    assert f"report: {out / 'index.html'}" in result.output.replace("\n", "")
    assert "picks" in result.output and "winback" in result.output
    only = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "w"), "--campaign", "winback", "--since",
                                    "2026-11-11"])  # fmt: skip
    assert only.exit_code == 0, only.output
    assert [r["campaign"] for r in _csv(tmp_path / "w" / "campaigns.csv")] == ["winback"]


def test_omnicast_report_refuses_what_it_cannot_use(app: typer.Typer, settings_env: None, tmp_path: Path) -> None:
    unknown = CliRunner().invoke(app, ["report", "--out", str(tmp_path), "--campaign", "nope"])
    assert isinstance(unknown.exception, InputError) and "unknown campaign 'nope'" in str(unknown.exception)
    assert "weekly-picks" in str(unknown.exception)  # the shipped campaign files name the known ones
    bad_day = CliRunner().invoke(app, ["report", "--out", str(tmp_path), "--since", "last week"])
    assert isinstance(bad_day.exception, InputError) and "--since" in str(bad_day.exception)
    blocked = tmp_path / "file"
    blocked.write_text("")
    not_a_folder = CliRunner().invoke(app, ["report", "--out", str(blocked / "x")])
    assert isinstance(not_a_folder.exception, InputError) and "--out" in str(not_a_folder.exception)


# ---------------------------------------------------------------- the flow


def test_the_report_flow_publishes_the_numbers(
    prefect_api: str, settings_env: None, sqlite_engine: Engine, tmp_path: Path
) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.report import report_flow

    build(sqlite_engine)
    result = report_flow(out=str(tmp_path / "flow"))
    assert result == {"campaigns": 2, "arms": 5, "page": str(tmp_path / "flow" / "index.html")}

    async def latest(key: str) -> object:
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return found[-1].data

    markdown = str(asyncio.run(latest("report")))
    assert "## picks" in markdown and "+16.7 pp [" in markdown and "Newcombe" in markdown
    table = asyncio.run(latest("report-variants"))
    assert "holdout" in str(table) and "window_conversion_rate" in str(table)
