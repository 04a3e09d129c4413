"""The issue's contract for ad audiences, end to end against a local server that enforces Meta's Marketing API:
a daily run uploads every audience; ``omnicast audiences sync --platform meta --json`` then adds 0; a customer who
withdraws ads consent in the CRM export is removed by the next sync once the store is re-synced."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from channels.ads import normalize_email, sha256_hex
from models.db import make_engine
from models.schema import AudienceMember, Customer
from tests.peers.meta_graph import MetaGraphServer

CUSTOMERS = 300
TOKEN = "meta-system-user-token"
ACCOUNT = "1234567890"
runner = CliRunner()


def audiences_sync(*arguments: str) -> dict[str, Any]:
    from flows.cli import app

    result = runner.invoke(app, ["audiences", "sync", "--platform", "meta", "--json", *arguments])
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def server_members(server: MetaGraphServer) -> dict[str, set[str]]:
    """Audience name → the EMAIL hashes Meta holds for it."""
    return {
        server.audiences[audience_id].name: {row.get("EMAIL", "") for row in rows.values()}
        for audience_id, rows in server.members.items()
    }


@pytest.fixture(scope="module")
def meta_days(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from flows.cli import app
    from flows.daily import daily_flow
    from flows.demo import prepare_demo

    workdir = tmp_path_factory.mktemp("meta-days")
    manifest, environment = prepare_demo(workdir, CUSTOMERS)
    as_of = manifest["as_of"]
    found: dict[str, Any] = {}
    with MetaGraphServer(token=TOKEN, accounts=(ACCOUNT,)) as server, pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        patch.setenv("OMNICAST_META_AUDIENCE_URL", f"meta://{ACCOUNT}")
        patch.setenv("OMNICAST_META_ACCESS_TOKEN", TOKEN)
        patch.setenv("OMNICAST_META_GRAPH_URL", server.url)
        found["day"] = daily_flow(as_of=as_of)
        found["after_day"] = server_members(server)
        found["second"] = audiences_sync("--as-of", as_of)

        engine = make_engine(environment["OMNICAST_DATABASE_URL"])
        members = AudienceMember.__table__  # type: ignore[attr-defined]
        customers = Customer.__table__  # type: ignore[attr-defined]
        with engine.connect() as conn:
            emails = dict(conn.execute(
                select(customers.c.id, customers.c.email).join(members, members.c.customer_id == customers.c.id)
                .where(members.c.audience == "churn-risk", members.c.platform == "meta")
            ).tuples().all())  # fmt: skip
        crm = Path(environment["OMNICAST_CRM_URL"])
        leaver = withdraw_ads_consent(crm, set(emails.values()))
        found["leaver"] = sha256_hex(normalize_email(leaver) or "")
        synced = runner.invoke(app, ["sync"])
        assert synced.exit_code == 0, synced.output
        found["third"] = audiences_sync("--as-of", as_of)
        found["after_withdrawal"] = server_members(server)
        found["calls"] = list(server.calls)
        engine.dispose()
    return found


def withdraw_ads_consent(crm: Path, candidates: set[str]) -> str:
    """Rewrite one contact of ``candidates`` in the HubSpot export: ads consent false, modified a minute ago."""
    with crm.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    fields = list(rows[0])
    row = next(r for r in rows if r["Email"] in candidates and r["Ads Personalization Consent"] == "true")
    row["Ads Personalization Consent"] = "false"
    row["Last Modified Date"] = (datetime.now() - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M")
    with crm.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return row["Email"]


@pytest.mark.e2e
def test_the_daily_run_uploads_every_audience_and_a_second_sync_adds_nothing(meta_days: Any) -> None:
    uploaded = meta_days["after_day"]
    assert set(uploaded) == {"omnicast: churn-risk", "omnicast: high-value"}
    assert all(len(hashes) >= 5 for hashes in uploaded.values())
    second = meta_days["second"]
    assert set(second) == {"churn-risk", "high-value"}
    for name, platforms in second.items():
        assert set(platforms) == {"meta"}
        meta = platforms["meta"]
        assert meta["added"] == 0 and meta["removed"] == 0
        assert meta["size"] == meta["unchanged"] == len(uploaded[f"omnicast: {name}"])


@pytest.mark.e2e
def test_a_withdrawal_in_the_crm_export_is_removed_on_the_next_sync(meta_days: Any) -> None:
    third = meta_days["third"]["churn-risk"]["meta"]
    assert third["removed"] == 1 and third["added"] == 0
    assert meta_days["leaver"] in meta_days["after_day"]["omnicast: churn-risk"]
    assert meta_days["leaver"] not in meta_days["after_withdrawal"]["omnicast: churn-risk"]
    assert third["size"] == len(meta_days["after_withdrawal"]["omnicast: churn-risk"])
    deletes = [call for call in meta_days["calls"] if call.method == "DELETE"]
    assert deletes and all("@" not in json.dumps(call.body) for call in meta_days["calls"])  # hashes only
