"""In-app feed: schema-valid content cards, one JSON line each, a retry never duplicates a card."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from channels.base import ChannelConfigError
from channels.dispatch import dispatch
from channels.inapp import InAppFeedChannel, card_errors, card_validator
from channels.outbox import ledger_hash
from channels.render import CardRenderer
from tests.channels.conftest import add_customers, message

NOW = datetime(2026, 11, 27, 23, 59, tzinfo=UTC)
TEMPLATES = ["weekly_picks", "birthday", "replenishment", "winback", "abandoned_cart"]


def feed_channel(folder: Path, clock: datetime = NOW) -> InAppFeedChannel:
    return InAppFeedChannel(folder, CardRenderer(), clock=lambda: clock)


def cards(folder: Path, day: str = "20261127") -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / f"{day}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_makes_a_schema_valid_card(tmp_path: Path, template: str) -> None:
    result = feed_channel(tmp_path).send(message(5, channel="inapp", template=template, variant="b"))
    assert result.status == "sent", result.error

    (card,) = cards(tmp_path)
    assert card_errors(card, now=NOW) == []
    assert list(card_validator().iter_errors(card)) == []
    assert card["id"] == ledger_hash(message(5, channel="inapp").ledger_key)
    assert card["customer_id"] == 5 and card["campaign"] == "weekly-picks" and card["variant"] == "b"
    item = card["items"][0]  # type: ignore[index]
    assert {k: item[k] for k in ("sku", "title", "explanation", "price")} == {
        "sku": "BL-000", "title": "Ethiopia Yirgacheffe Lot 0", "explanation": "Because you bought Kenya AA Nyeri",
        "price": 18.5,
    }  # fmt: skip
    assert item["url"].startswith("https://beanandleaf.example/products/") and item["image_url"].startswith("https://")
    assert card["button"] and card["dismissible"] is True and card["pinned"] is (template == "abandoned_cart")
    assert card["user_id"] is None  # a test recipient with no Shopify, CRM or analytics id
    assert card["extras"] == {"campaign": "weekly-picks", "variant": "b", "template": template}
    assert datetime.fromisoformat(str(card["created_at"])) == NOW
    assert datetime.fromisoformat(str(card["expires_at"])) == NOW + timedelta(days=14)
    assert result.provider_id == f"20261127.jsonl#{card['id']}"


def test_retry_does_not_append_the_same_card_twice(tmp_path: Path) -> None:
    channel = feed_channel(tmp_path)
    channel.send(message(5, channel="inapp"))
    channel.send(message(5, channel="inapp"))
    feed_channel(tmp_path).send(message(5, channel="inapp"))  # another process, same day
    channel.send(message(6, channel="inapp"))
    assert [c["customer_id"] for c in cards(tmp_path)] == [5, 6]


def test_parallel_writers_neither_interleave_nor_duplicate(tmp_path: Path) -> None:
    messages = [message(i, channel="inapp") for i in range(1, 41)]

    def write() -> None:
        feed_channel(tmp_path).send_batch(messages)

    threads = [threading.Thread(target=write) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c["customer_id"] for c in cards(tmp_path)) == list(range(1, 41))


def test_a_torn_line_from_a_crash_does_not_swallow_the_next_card(tmp_path: Path) -> None:
    (tmp_path / "20261127.jsonl").write_text('{"id": "half-writ')
    feed_channel(tmp_path).send(message(5, channel="inapp"))
    lines = (tmp_path / "20261127.jsonl").read_text().splitlines()
    assert lines[0] == '{"id": "half-writ' and json.loads(lines[1])["customer_id"] == 5


def test_each_utc_day_has_its_own_feed_file(tmp_path: Path) -> None:
    feed_channel(tmp_path, NOW).send(message(5, channel="inapp"))
    feed_channel(tmp_path, NOW + timedelta(minutes=2)).send(message(6, channel="inapp"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20261127.jsonl", "20261128.jsonl"]


def test_a_card_that_breaks_the_schema_fails_permanently(tmp_path: Path) -> None:
    broken = message(5, channel="inapp")
    broken.context["store"]["url"] = "ftp://not-a-web-uri"
    result = feed_channel(tmp_path).send(broken)
    assert result.status == "failed" and not result.retryable and "web_uri" in str(result.error)
    assert not (tmp_path / "20261127.jsonl").exists() or cards(tmp_path) == []


def test_expiry_must_be_within_thirty_days() -> None:
    with pytest.raises(ChannelConfigError, match="30 days"):
        InAppFeedChannel("/tmp", CardRenderer(), ttl=timedelta(days=31))
    card = {"expires_at": (NOW + timedelta(days=31)).isoformat()}
    assert any("30 days" in e for e in card_errors(card, now=NOW))
    assert any("UTC offset" in e for e in card_errors({"expires_at": "2026-12-01T00:00:00"}, now=NOW))


def test_unknown_template_stops_the_run(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError, match="nope"):
        feed_channel(tmp_path).send(message(5, channel="inapp", template="nope"))


def test_inapp_needs_inapp_consent(sqlite_engine: Engine, tmp_path: Path) -> None:
    add_customers(sqlite_engine, [1], channel="inapp")
    add_customers(sqlite_engine, [2], channel="email")
    report = dispatch(
        sqlite_engine, [message(1, channel="inapp"), message(2, channel="inapp")], {"inapp": feed_channel(tmp_path)}
    )
    assert report.total_sent == 1 and [c["customer_id"] for c in cards(tmp_path)] == [1]


def test_a_card_written_on_an_earlier_day_is_known_as_delivered(tmp_path: Path) -> None:
    feed_channel(tmp_path, NOW).send(message(5, channel="inapp"))
    next_day = feed_channel(tmp_path, NOW + timedelta(hours=2))  # a rerun after midnight (UTC): another feed file
    held = next_day.already_delivered([message(5, channel="inapp"), message(6, channel="inapp")])
    key = message(5, channel="inapp").ledger_key
    assert held == {key: f"20261127.jsonl#{ledger_hash(key)}"}


def test_a_torn_last_line_is_not_a_delivered_card(tmp_path: Path) -> None:
    channel = feed_channel(tmp_path)
    channel.send(message(5, channel="inapp"))
    with open(tmp_path / "20261127.jsonl", "ab") as handle:  # a crash in the middle of appending card 6
        handle.write(b'{"id":"' + ledger_hash(message(6, channel="inapp").ledger_key).encode() + b'","title":"Hal')
    assert list(feed_channel(tmp_path).already_delivered([message(6, channel="inapp")])) == []


def test_an_invalid_card_is_explained_without_quoting_customer_data() -> None:
    card = {"id": "x" * 32, "type": "CLASSIC", "title": "Ann Secret-Surname\u0007", "body": "b",
            "image_url": "javascript:alert(1)", "web_uri": "https://shop.example"}  # fmt: skip
    errors = "; ".join(card_errors(card, now=NOW))
    assert errors and "Secret-Surname" not in errors and "alert(1)" not in errors
