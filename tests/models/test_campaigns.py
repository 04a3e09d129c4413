"""Campaign and segment files: the shipped ones load; a broken one is refused with its file, line and field."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from models.campaigns import SHIPPED_DIR, load_catalog
from models.schema import Recommendation
from models.segments import Segment, members
from models.yamlfile import YamlFileError
from tests.models.builders import StoreBuilder, at

TODAY = date(2026, 11, 27)


def test_the_shipped_files_reproduce_the_five_campaigns() -> None:
    catalog = load_catalog()
    assert sorted(catalog.names) == ["abandoned-cart", "birthday", "replenishment", "weekly-picks", "winback"]
    by_name = {campaign.name: campaign for campaign in catalog.campaigns}
    assert by_name["winback"].trigger_kind == "churn_risk" and by_name["winback"].channels == ("email",)
    assert by_name["weekly-picks"].segment == "has-picks" and by_name["weekly-picks"].spec.schedule is not None
    assert [c.name for c in sorted(catalog.campaigns, key=lambda c: c.priority)][:4] == [
        "abandoned-cart", "replenishment", "birthday", "winback",
    ]  # fmt: skip
    assert set(catalog.audiences) == {"churn-risk", "high-value"}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "campaigns"
    shutil.copytree(SHIPPED_DIR, folder)
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("birthday.yaml", "trigger: birthday", "trigger: brithday",
          r"birthday.yaml, line 5, field audience.trigger: .*'brithday'"),
        ("birthday.yaml", "template: birthday", "tempalte: birthday", r"line 6, field tempalte: unknown field"),
        ("birthday.yaml", "products: 3", "products: many", r"line 8, field products: "),
        ("weekly-picks.yaml", '"0 10 * * 2"', '"0 25 * * 2"', r"weekly-picks.yaml, line 14, field schedule.cron"),
        ("weekly-picks.yaml", "America/Los_Angeles", "America/Springfield", r"line 15, field schedule.timezone"),
        ("weekly-picks.yaml", "segment: has-picks", "segment: vip",
          r"line 5, field audience.segment: unknown segment 'vip'"),
        ("weekly-picks.yaml", "    weight: 1", "    weight: -1", r"line 11, field variants\[0\].weight"),
        ("winback.yaml", "channels: [email]", "channels: [email, sms]",
          r"winback.yaml, line 7, field channels: .*'sms'"),
        ("winback.yaml", "name: winback", "name: Win Back!", r"line 2, field name: "),
        ("replenishment.yaml", "holdout_percent: 10", "holdout_percent: 100", r"line 9, field holdout_percent"),
        ("segments.yaml", "spend_top_share: 0.10", "spend_top: 0.10",
          r"segments.yaml, line \d+, field segments.high-value"),
        ("abandoned-cart.yaml", "channels: [email, inapp]", "channels: [email, inapp",
          r"abandoned-cart.yaml, line \d+: not valid YAML"),
        ("winback.yaml", "products: 3", "products: 3\nsend_window: 9am-8pm",
          r"winback.yaml, line 9, field send_window: .*is not HH:MM-HH:MM"),
        ("winback.yaml", "products: 3", "products: 3\nsend_window: 09:00-09:00",
          r"line 9, field send_window: .*starts where it ends"),
        ("winback.yaml", "products: 3", "products: 3\nproducts_like: []", r"line 9, field products_like: give a word"),
        ("winback.yaml", "products: 3", "products: 3\nstart: 2026-02-30",
          r"winback.yaml, line 9: 2026-02-30 is not a date .*write YYYY-MM-DD"),
        ("segments.yaml", "spend_top_share: 0.10", "spend_top: 0.10", r"unknown field 'spend_top'; fields here: .*"
          r"spend_top_share"),
    ],
)  # fmt: skip
def test_a_broken_file_names_its_file_line_and_field(
    tmp_path: Path, file: str, old: str, new: str, expected: str
) -> None:
    folder = _folder(tmp_path)
    _edit(folder / file, old, new)
    with pytest.raises(YamlFileError, match=expected):
        load_catalog(folder)


def test_every_broken_file_is_reported_at_once(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _edit(folder / "birthday.yaml", "trigger: birthday", "trigger: nope")
    _edit(folder / "winback.yaml", "products: 3", "products: -3")
    with pytest.raises(YamlFileError) as raised:
        load_catalog(folder)
    assert "birthday.yaml" in str(raised.value) and "winback.yaml" in str(raised.value)


def test_a_segment_campaign_picks_what_its_segment_likes_unless_it_says_otherwise(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    fruity = (folder / "weekly-picks.yaml").read_text().replace("name: weekly-picks", "name: fruity-picks")
    (folder / "fruity-picks.yaml").write_text(fruity.replace("segment: has-picks", "segment: fruity-fans"))
    (folder / "lemon-picks.yaml").write_text(
        fruity.replace("name: fruity-picks", "name: lemon-picks") + "products_like: [Lemon, citrus]\n"
    )
    catalog = load_catalog(folder)
    assert catalog.campaign("fruity-picks").likes[:3] == ("fruit", "berry", "apricot")  # from segments.yaml
    assert catalog.campaign("lemon-picks").likes == ("lemon", "citrus")  # its own words win
    assert catalog.campaign("weekly-picks").likes == ()  # has-picks has no taste: any product


def test_two_campaigns_with_one_name_are_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    shutil.copy(folder / "birthday.yaml", folder / "birthday-copy.yaml")
    with pytest.raises(YamlFileError, match="two campaigns are named 'birthday'"):
        load_catalog(folder)


def test_an_offer_pool_must_exist_and_have_a_code_column(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    with (folder / "birthday.yaml").open("a") as handle:
        handle.write("offer:\n  pool: codes.csv\n  description: 15% off your next order\n")
    with pytest.raises(YamlFileError, match=r"line 14, field offer.pool: the code pool .*codes.csv cannot be read"):
        load_catalog(folder)
    (folder / "codes.csv").write_text("voucher\nA1\n")
    with pytest.raises(YamlFileError, match="no 'code' column"):
        load_catalog(folder)
    (folder / "codes.csv").write_text("code\nA1\nA2\n")
    assert load_catalog(folder).campaign("birthday").spec.offer is not None


# --- segments ------------------------------------------------------------------------------------------------------


def test_segment_conditions_all_must_hold(engine: Engine) -> None:
    store = StoreBuilder(engine)
    fruity = store.product("Kenya AA", flavour_notes="blackcurrant|fruity")
    nutty = store.product("Brazil", flavour_notes="nutty|chocolate")
    loyal, once, other = store.customer(country="US"), store.customer(country="US"), store.customer(country="DE")
    for customer in (loyal, loyal, once, other, other):
        store.order(customer, at("2026-11-01"), [(nutty, 1)])
    with engine.begin() as conn:
        conn.execute(insert(Recommendation.__table__), [  # type: ignore[attr-defined]
            {"customer_id": cid, "product_id": pid, "rank": 1, "score": 1.0, "model": "hybrid", "explanation": "x",
             "trained_at": at("2026-11-26")} for cid, pid in ((loyal, fruity), (once, fruity), (other, nutty))
        ])  # fmt: skip

    def segment(*conditions: dict) -> list[int]:
        with engine.connect() as conn:
            return members(conn, Segment.model_validate({"where": list(conditions)}), TODAY)

    assert segment({"likes": "fruity"}) == sorted([loyal, once])
    assert segment({"likes": ["lemon", "blackcurrant"]}) == sorted([loyal, once])  # any of the words
    assert segment({"likes": "fruity"}, {"orders_at_least": 2}) == [loyal]
    assert segment({"profile": {"country": "DE"}}) == [other]
    assert segment({"ordered_within_days": 30}) == sorted([loyal, once, other])
    assert segment({"not_ordered_within_days": 10}) == sorted([loyal, once, other])
    assert segment({"has_recommendations": True}, {"profile": {"country": ["US"]}}) == sorted([loyal, once])


def test_weekly_picks_next_runs_fall_on_tuesdays_as_cron_and_prefect_read_2() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from models.schedules import next_runs

    schedule = load_catalog().campaign("weekly-picks").spec.schedule
    assert schedule is not None
    runs = next_runs(schedule.cron, schedule.timezone, 3, datetime(2026, 12, 3, tzinfo=ZoneInfo("UTC")))
    assert [run.strftime("%a %H:%M") for run in runs] == ["Tue 10:00"] * 3
    assert runs[0].date().isoformat() == "2026-12-08"


def test_the_readme_examples_are_valid_files(tmp_path: Path) -> None:
    """The campaign and segment the README shows a marketer load as written (every field it names exists)."""
    readme = (SHIPPED_DIR.parent / "README.md").read_text()
    section = readme[readme.index("## Campaigns and segments (YAML)") :]
    campaign, segments = (block.split("```", 1)[0] for block in section.split("```yaml\n")[1:3])
    folder = _folder(tmp_path)
    (folder / "weekly-picks.yaml").write_text(campaign)
    spec = load_catalog(folder).campaign("weekly-picks")
    assert spec.send_window == "09:00-20:00" and spec.likes == ("apricot", "citrus") and spec.priority == 5
    segment = Segment.model_validate(yaml.safe_load(segments)["segments"]["fruity-fans"])
    assert segment.liked_words() == ["apricot", "berry", "cherry", "lemon"]
