"""The demo's ending: the day's sends get simulated responses, which a sync loads, and the report shows the lift;
run again, nothing is simulated twice."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from models.db import make_engine
from models.schema import Click, Order, SourceLoad

CUSTOMERS = 120


@pytest.mark.e2e
def test_the_demo_ends_with_a_report_of_real_responses(
    prefect_api: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from flows.daily import daily_flow
    from flows.demo import demo_settings, finish_demo, prepare_demo

    workdir = tmp_path_factory.mktemp("demo-report")
    manifest, _ = prepare_demo(workdir, CUSTOMERS)
    daily_flow(as_of=manifest["as_of"], demo_workdir=str(workdir))
    first = finish_demo(workdir)

    assert first.page == (workdir / "report" / "index.html").resolve() and first.page.exists()
    assert first.responses.clicks > 0 and first.responses.orders > 0
    engine = make_engine(demo_settings(workdir)["database_url"])
    try:
        with engine.connect() as conn:
            simulated = conn.execute(
                select(func.count()).select_from(Order).where(Order.external_id.like("#R%"))
            ).scalar_one()
            clicks = conn.execute(select(func.count()).select_from(Click)).scalar_one()
            loads = conn.execute(
                select(SourceLoad.run_id, SourceLoad.source, SourceLoad.rows_quarantined).where(
                    SourceLoad.source == "orders"
                )
            ).all()
        assert simulated == first.responses.orders and clicks == first.responses.clicks
        assert len({run for run, _, _ in loads}) == 2  # the day's sync and the one that loaded the responses
        assert loads[0].rows_quarantined == loads[1].rows_quarantined  # only the planted dirt, nothing simulated
    finally:
        engine.dispose()

    variants = (workdir / "report" / "variants.csv").read_text()
    assert "weekly-picks,A," in variants and "weekly-picks,holdout," in variants
    html = first.page.read_text()
    assert "weekly-picks · A" in html and "Lift vs holdout" in html

    again = finish_demo(workdir)
    assert again.responses.skipped and again.responses.orders == 0
    marker = json.loads((workdir / "data" / "responses.json").read_text())
    assert len(marker["rounds"]) == 1
