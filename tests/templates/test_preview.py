"""``omnicast preview``: the real email for a real customer, and a gallery, without writing to the database.

The command is added to a Typer app by ``flows.cli_preview.register`` (as flows/cli.py does) and run against the
planned template store (shipped campaign files).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from flows.cli import OmnicastGroup
from flows.cli_preview import register
from models.schema import Assignment, Customer, Experiment, Message, OfferCode
from models.schema import Campaign as CampaignRow
from tests.templates.store import TODAY, PlannedStore

runner = CliRunner()
WRITTEN = (Assignment, Experiment, CampaignRow, Message, OfferCode)


def cli() -> typer.Typer:
    app = typer.Typer(cls=OmnicastGroup, no_args_is_help=True, pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        """omnicast (test app)"""

    register(app)
    return app


@pytest.fixture
def env(planned: PlannedStore, monkeypatch: pytest.MonkeyPatch) -> PlannedStore:
    monkeypatch.setenv("OMNICAST_DATABASE_URL", planned.engine.url.render_as_string(hide_password=False))
    monkeypatch.delenv("OMNICAST_CAMPAIGNS_DIR", raising=False)
    monkeypatch.setenv("OMNICAST_PUBLIC_URL", "https://beanandleaf.example")
    return planned


def counts(planned: PlannedStore) -> dict[str, int]:
    with planned.engine.connect() as conn:
        return {
            table.__tablename__: conn.execute(select(func.count()).select_from(table.__table__)).scalar_one()  # type: ignore[attr-defined]
            for table in WRITTEN
        }


def email_of(planned: PlannedStore, name: str) -> str:
    with planned.engine.connect() as conn:
        table = Customer.__table__  # type: ignore[attr-defined]
        return str(conn.execute(select(table.c.email).where(table.c.id == planned.people[name])).scalar_one())


def test_preview_writes_the_real_email_for_a_customer_and_changes_nothing(env: PlannedStore, tmp_path: Path) -> None:
    before = counts(env)
    out = tmp_path / "ava.html"
    result = runner.invoke(
        cli(), ["preview", "replenishment", "--customer", email_of(env, "ava").upper(), "--out", str(out),
                "--as-of", TODAY.isoformat()],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.lstrip().lower().startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "Running low on Ethiopia Guji Honey?" in page and "Hi Ava, you ordered Ethiopia Guji Honey on" in page
    assert "utm_source=omnicast&amp;utm_medium=email&amp;utm_campaign=replenishment" in page
    assert not re.search(r"\{\{|\{%", page)
    assert f"wrote {out}" in result.output and "subject: Running low on Ethiopia Guji Honey?" in result.output
    assert counts(env) == before  # no assignment, no experiment, no ledger row, no offer code


def test_preview_by_id_to_stdout_and_for_a_customer_outside_todays_audience(env: PlannedStore) -> None:
    ben = env.people["ben"]
    result = runner.invoke(cli(), ["preview", "winback", "--customer", str(ben), "--as-of", TODAY.isoformat()])
    assert result.exit_code == 0, result.output
    assert "<!doctype html>" in result.output.lower() and "We miss you, Ben" in result.output
    assert f"note: customer {ben} has never had a churn_risk moment" in result.output


def test_preview_sample_writes_a_gallery(env: PlannedStore, tmp_path: Path) -> None:
    before = counts(env)
    result = runner.invoke(
        cli(), ["preview", "weekly-picks", "--sample", "4", "--out", str(tmp_path / "gallery"), "--as-of",
                TODAY.isoformat()],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "gallery").glob("*.html"))
    assert len(files) == 5 and "index.html" in files
    index = (tmp_path / "gallery" / "index.html").read_text()
    assert index.count("<iframe") == 4 and "weekly-picks: 4 sample emails" in index
    for name in files:
        if name != "index.html":
            assert f'src="{name}"' in index and "</html>" in (tmp_path / "gallery" / name).read_text()
    assert counts(env) == before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["preview", "weekly-picks"], "give either --customer"),
        (["preview", "weekly-picks", "--customer", "1", "--sample", "2"], "give either --customer"),
        (["preview", "weekly-picks", "--sample", "2"], "--out DIR"),
        (["preview", "weekly-picks", "--customer", "nobody@example.com"], "no customer matches --customer"),
        (["preview", "black-friday", "--customer", "1"], "no campaign named 'black-friday'"),
        (["preview", "weekly-picks", "--customer", "1", "--variant", "Z"], "has no variant 'Z'"),
    ],
)
def test_preview_mistakes_are_one_error_line(env: PlannedStore, args: list[str], says: str) -> None:
    result = runner.invoke(cli(), args)
    assert result.exit_code == 2, result.output
    assert says in result.output.strip().splitlines()[-1]


def test_preview_of_a_cart_email_for_someone_without_a_cart_says_why(env: PlannedStore) -> None:
    result = runner.invoke(cli(), ["preview", "abandoned-cart", "--customer", str(env.people["ben"])])
    assert result.exit_code == 2
    assert "nothing left in a cart" in result.output
