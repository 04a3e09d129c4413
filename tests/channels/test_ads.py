"""Ad audience files: normalized + hashed identifiers only, one file per audience and batch, never overwritten."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import string
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from channels import ads
from channels.ads import (
    GOOGLE_COLUMNS,
    META_COLUMNS,
    AudienceFileChannel,
    normalize_country,
    normalize_email,
    normalize_email_google,
    normalize_name_google,
    normalize_name_meta,
    normalize_phone,
    normalize_phone_meta,
    normalize_zip,
    sha256_hex,
)
from channels.dispatch import dispatch
from models.message import OutboundMessage, Recipient
from tests.channels.conftest import add_customers

TODAY = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
HEX64 = re.compile(r"[0-9a-f]{64}")

PERSON = {
    "email": " Ann.Smith+coffee@GMail.com ",
    "phone": "+1 (503) 555-0100",
    "first_name": "Ann-Marie",
    "last_name": "O'Brien",
    "city": "Portland",
    "region": "OR",
    "country": "US",
    "zip": "97201-1234",
    "birthday": date(1990, 4, 7),
}
PLAINTEXT = ["Ann.Smith", "ann.smith", "annsmith", "5035550100", "503", "Ann-Marie", "O'Brien", "obrien", "Portland",
             "portland", "97201", "1990"]  # fmt: skip


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


# normalizers: examples --------------------------------------------------------------------------------------------


def test_email_normalization() -> None:
    assert normalize_email(" Ann.Smith+coffee@GMail.com ") == "ann.smith+coffee@gmail.com"
    assert normalize_email_google(" Ann.Smith+coffee@GMail.com ") == "annsmith@gmail.com"
    assert normalize_email_google("ann.smith+x@googlemail.com") == "annsmith@googlemail.com"
    assert normalize_email_google("ann.smith+x@example.com") == "ann.smith+x@example.com"
    for bad in (None, "", "no-at-sign", "@example.com", "ann@", "ann@localhost", "+@gmail.com"):
        assert normalize_email_google(bad) is None


def test_phone_normalization() -> None:
    assert normalize_phone("+1 (503) 555-0100") == "+15035550100"
    assert normalize_phone("(503) 555-0100", "us") == "+15035550100"
    assert normalize_phone("030 1234567", "DE") == "+49301234567"
    assert normalize_phone_meta("+44 20 7946 0018") == "442079460018"
    for bad in (None, "", "   ", "12", "call me", "(503) 555-0100"):  # the last one has no country
        assert normalize_phone(bad) is None


def test_name_city_zip_country_normalization() -> None:
    assert normalize_name_meta("  Ann-Marie ") == "annmarie"
    assert normalize_name_meta("Zoë") == "zoë"
    assert normalize_name_meta("O'Brien") == "obrien"
    assert normalize_name_google(" Mary   Ann ") == "mary ann"
    assert normalize_name_google("O'Brien") == "o brien"
    assert ads.normalize_city("New York") == "newyork"
    assert normalize_zip("97201-1234", "US") == "97201"
    assert normalize_zip("SW1A 1AA", "GB") == "sw1a1aa"
    assert normalize_country("US") == "us" and normalize_country("USA") is None
    assert ads.birth_parts(date(1990, 4, 7)) == ("1990", "04", "07")


def test_hash_is_the_lowercase_sha256_hex_of_the_utf8_bytes() -> None:
    assert sha256_hex("ann@example.com") == hashlib.sha256(b"ann@example.com").hexdigest()


# normalizers: properties -----------------------------------------------------------------------------------------

NORMALIZERS = [
    normalize_email,
    normalize_email_google,
    normalize_name_meta,
    normalize_name_google,
    ads.normalize_city,
    ads.normalize_state,
    normalize_zip,
    normalize_country,
]


@given(st.text(max_size=40), st.sampled_from(NORMALIZERS))
def test_normalizers_are_idempotent(value: str, normalize: object) -> None:
    once = normalize(value)  # type: ignore[operator]
    assert once is None or normalize(once) == once  # type: ignore[operator]


@given(st.emails())
def test_email_cells_are_64_hex_and_never_contain_the_address(address: str) -> None:
    for normalize in (normalize_email, normalize_email_google):
        normalized = normalize(address)
        if normalized is None:
            continue
        assert normalize(normalized) == normalized
        cell = ads.hashed(normalized)
        assert HEX64.fullmatch(cell)
        assert address not in cell and address.lower() not in cell


phone_numbers = st.builds(
    lambda cc, rest: f"+{cc}{rest}",
    st.sampled_from(["1", "44", "49", "33", "61", "81"]),
    st.text(alphabet=string.digits, min_size=6, max_size=11),
)


@given(phone_numbers)
def test_phone_cells_are_64_hex_idempotent_and_never_contain_the_number(raw: str) -> None:
    e164 = normalize_phone(raw)
    if e164 is None:
        return
    assert normalize_phone(e164) == e164 and e164.startswith("+")
    cell = ads.hashed(normalize_phone_meta(raw))
    assert HEX64.fullmatch(cell)
    assert raw not in cell and raw.lstrip("+") not in cell


@given(st.text(alphabet=st.characters(categories=["L", "Zs", "P"]), min_size=1, max_size=30))
def test_name_cells_are_64_hex_and_never_contain_the_name(name: str) -> None:
    for normalize in (normalize_name_meta, normalize_name_google):
        normalized = normalize(name)
        if normalized is None:
            continue
        cell = ads.hashed(normalized)
        assert HEX64.fullmatch(cell)
        if re.search(r"[^0-9a-f]", normalized):  # a hex-looking name could appear in any hex string by chance
            assert normalized not in cell


# files -----------------------------------------------------------------------------------------------------------


def member(customer_id: int, audience: str = "Loyal Regulars", **person: object) -> OutboundMessage:
    return OutboundMessage(
        occurrence_key="audience:loyal:2026-11-27",
        channel="meta",
        recipient=Recipient(customer_id=customer_id, **{**PERSON, **person}),  # type: ignore[arg-type]
        campaign="loyal",
        audience=audience,
    )


def test_meta_file_has_the_schema_columns_all_hashed(tmp_path: Path) -> None:
    channel = AudienceFileChannel("meta", tmp_path, clock=lambda: TODAY)
    results = channel.send_batch([member(1), member(2, email="bob@example.com", phone=None, birthday=None)])

    assert {r.provider_id for r in results} == {"meta-loyal-regulars-20261127-1.csv"}
    path = tmp_path / "meta-loyal-regulars-20261127-1.csv"
    rows = read_csv(path)
    assert tuple(rows[0]) == META_COLUMNS
    assert rows[0]["email"] == sha256_hex("ann.smith+coffee@gmail.com")
    assert rows[0]["phone"] == sha256_hex("15035550100")
    assert rows[0]["fn"] == sha256_hex("annmarie") and rows[0]["ln"] == sha256_hex("obrien")
    assert rows[0]["ct"] == sha256_hex("portland") and rows[0]["st"] == sha256_hex("or")
    assert rows[0]["zip"] == sha256_hex("97201") and rows[0]["country"] == sha256_hex("us")
    assert (rows[0]["doby"], rows[0]["dobm"], rows[0]["dobd"]) == tuple(sha256_hex(v) for v in ("1990", "04", "07"))
    assert rows[1]["phone"] == "" and rows[1]["doby"] == ""
    assert all(HEX64.fullmatch(cell) for row in rows for cell in row.values() if cell)


def test_google_file_has_exact_headers_hashes_and_plain_country_and_zip(tmp_path: Path) -> None:
    channel = AudienceFileChannel("google", tmp_path, clock=lambda: TODAY)
    channel.send_batch([member(1)])
    path = tmp_path / "google-loyal-regulars-20261127-1.csv"

    assert path.read_text().splitlines()[0] == "Email,Phone,First Name,Last Name,Country,Zip"
    row = read_csv(path)[0]
    assert tuple(row) == GOOGLE_COLUMNS
    assert row["Email"] == sha256_hex("annsmith@gmail.com")
    assert row["Phone"] == sha256_hex("+15035550100")
    assert row["First Name"] == sha256_hex("ann marie") and row["Last Name"] == sha256_hex("o brien")
    assert row["Country"] == "US" and row["Zip"] == "97201"  # unhashed, as Google's template requires


@pytest.mark.parametrize("platform", ["meta", "google", "tiktok"])
def test_audience_files_contain_no_plaintext_identifier(tmp_path: Path, platform: str) -> None:
    channel = AudienceFileChannel(platform, tmp_path, clock=lambda: TODAY)  # type: ignore[arg-type]
    channel.send_batch([member(1), member(2, email="zoe.k@example.org", phone="+44 20 7946 0018")])
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files)  # owner only
    content = "".join(p.read_text() for p in files).lower()
    allowed = {"97201"} if platform == "google" else set()  # Google's Zip is plain by its template, nothing else
    for plaintext in [*PLAINTEXT, "zoe.k", "example.org", "gmail", "7946", ",or,"]:
        if plaintext not in allowed:
            assert plaintext.lower() not in content, plaintext
    if platform != "google":
        assert "us," not in content and ",us" not in content


def test_tiktok_file_has_its_template_columns_and_drops_the_plus_tag(tmp_path: Path) -> None:
    channel = AudienceFileChannel("tiktok", tmp_path, clock=lambda: TODAY)
    channel.send_batch([member(1)])
    row = read_csv(tmp_path / "tiktok-loyal-regulars-20261127-1.csv")[0]
    assert tuple(row) == ("Email_SHA256", "Phone_SHA256")
    assert row["Email_SHA256"] == sha256_hex("ann.smith@gmail.com")  # lower case, +coffee gone, dots kept
    assert row["Phone_SHA256"] == sha256_hex("15035550100")  # country code first, digits only


def test_a_removal_uploads_the_stored_hashes_in_a_file_of_its_own(tmp_path: Path) -> None:
    channel = AudienceFileChannel("meta", tmp_path, clock=lambda: TODAY)
    stored = ads.identifiers("meta", member(1))
    erased = replace(member(1), recipient=Recipient(customer_id=1), retract=True, context={"identifiers": stored})
    results = channel.send_batch([member(2), erased])
    assert [r.provider_id for r in results] == [
        "meta-loyal-regulars-20261127-1.csv", "meta-loyal-regulars-remove-20261127-1.csv",
    ]  # fmt: skip
    row = read_csv(tmp_path / "meta-loyal-regulars-remove-20261127-1.csv")[0]
    assert row["email"] == sha256_hex("ann.smith+coffee@gmail.com") and row["fn"] == stored["fn"]


def test_each_audience_in_a_batch_gets_its_own_file(tmp_path: Path) -> None:
    channel = AudienceFileChannel("meta", tmp_path, clock=lambda: TODAY)
    results = channel.send_batch([member(1, "VIP"), member(2, "Lapsed buyers"), member(3, "VIP")])
    assert [r.provider_id for r in results] == [
        "meta-vip-20261127-1.csv",
        "meta-lapsed-buyers-20261127-1.csv",
        "meta-vip-20261127-1.csv",
    ]
    assert len(read_csv(tmp_path / "meta-vip-20261127-1.csv")) == 2


def test_a_second_batch_the_same_day_gets_the_next_number(tmp_path: Path) -> None:
    channel = AudienceFileChannel("meta", tmp_path, clock=lambda: TODAY)
    channel.send_batch([member(1)])
    channel.send_batch([member(2)])
    AudienceFileChannel("meta", tmp_path, clock=lambda: TODAY).send_batch([member(3)])  # another worker
    names = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert names == [f"meta-loyal-regulars-20261127-{n}.csv" for n in (1, 2, 3)]
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary files left behind


def test_a_published_file_tells_which_messages_it_holds(tmp_path: Path) -> None:
    AudienceFileChannel("meta", tmp_path, clock=lambda: TODAY).send_batch([member(1), member(2)])
    restarted = AudienceFileChannel("meta", tmp_path, clock=lambda: TODAY)  # e.g. after a crash
    held = restarted.already_delivered([member(1), member(2), member(3)])
    assert held == {member(i).ledger_key: "meta-loyal-regulars-20261127-1.csv" for i in (1, 2)}


def test_a_batch_whose_csv_never_appeared_holds_nothing(tmp_path: Path) -> None:
    channel = AudienceFileChannel("meta", tmp_path, clock=lambda: TODAY)
    channel.send_batch([member(1)])
    (tmp_path / "meta-loyal-regulars-20261127-1.csv").unlink()  # died between the keys file and the CSV
    assert channel.already_delivered([member(1)]) == {}
    channel.send_batch([member(1)])
    assert channel.already_delivered([member(1)]) == {member(1).ledger_key: "meta-loyal-regulars-20261127-2.csv"}


def test_member_without_email_or_phone_is_unreachable_and_garbage_fails(tmp_path: Path) -> None:
    channel = AudienceFileChannel("google", tmp_path, clock=lambda: TODAY)
    assert channel.can_reach(member(1, email=None, phone=None)) == "no_address"
    assert channel.can_reach(member(1, email=None)) is None
    result = channel.send(member(1, email="not-an-email", phone="123"))
    assert result.status == "failed" and not result.retryable
    assert list(tmp_path.glob("*.csv")) == []


def test_batch_size_is_the_platform_limit() -> None:
    assert AudienceFileChannel.batch_size == 10_000


def test_audiences_go_through_dispatch_with_ads_consent(sqlite_engine: Engine, tmp_path: Path) -> None:
    add_customers(sqlite_engine, [1, 2], channel="ads")
    add_customers(sqlite_engine, [3], consent="granted", channel="email")  # email consent is not ads consent
    channel = AudienceFileChannel("meta", tmp_path, clock=lambda: TODAY)

    report = dispatch(sqlite_engine, [member(1), member(2), member(3)], {"meta": channel})

    assert report.total_sent == 2 and report.channels["meta"].suppressed.total() == 1
    assert len(read_csv(tmp_path / "meta-loyal-regulars-20261127-1.csv")) == 2


def test_meta_files_and_the_meta_api_hash_a_state_name_alike() -> None:
    """The hashes the audience table keeps for a Meta member (file format) match what the API uploads, so a
    removal matches on the state too: "Oregon" and "OR" are both ``or``."""
    from channels.meta import SCHEMA, graph_row

    named = member(1, region="Oregon")
    row = dict(zip(META_COLUMNS, ads.meta_row(named), strict=True))
    assert row["st"] == sha256_hex("or") == dict(zip(SCHEMA, graph_row(named), strict=True))["ST"]
