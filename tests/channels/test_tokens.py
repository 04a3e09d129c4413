"""Link tokens: opaque, deterministic, unforgeable, one purpose each, and the links in old emails keep working."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from channels.tokens import (
    DEFAULT_SALT,
    MAX_CLICK_URL_CHARS,
    ClickClaim,
    InvalidTokenError,
    UnsubscribeClaim,
    UnsubscribeSigner,
)

SECRET = "a-long-random-secret"
SIGNER = UnsubscribeSigner(SECRET)


def raw_bytes(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_token_round_trips_customer_and_channel() -> None:
    token = SIGNER.sign(42, "email")
    assert SIGNER.verify(token) == UnsubscribeClaim(customer_id=42, channel="email")


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(min_size=1, max_size=40))
def test_any_customer_and_channel_round_trip(customer_id: int, channel: str) -> None:
    assert SIGNER.verify(SIGNER.sign(customer_id, channel)) == UnsubscribeClaim(customer_id, channel)


def test_same_customer_and_channel_always_give_the_same_token() -> None:
    """A retried message must be byte-identical, so its unsubscribe link must be too."""
    assert SIGNER.sign(302, "email") == SIGNER.sign(302, "email") == UnsubscribeSigner(SECRET).sign(302, "email")
    assert SIGNER.sign(302, "email") != SIGNER.sign(302, "inapp") != SIGNER.sign(303, "email")


def test_token_is_short_url_safe_base64_without_padding() -> None:
    token = SIGNER.sign(302, "email")
    assert len(token) == 32
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in token)
    assert len(SIGNER.sign(2**62, "email")) <= 44  # the largest id still fits a short URL


@pytest.mark.parametrize("customer_id", [302, 1234567890, 7])
def test_token_reveals_neither_the_customer_id_nor_any_structure(customer_id: int) -> None:
    token = SIGNER.sign(customer_id, "email")
    raw = raw_bytes(token)
    assert str(customer_id) not in token if customer_id > 99 else True
    assert b"email" not in raw and "email" not in token
    for width in (2, 4, 8):
        for order in ("big", "little"):
            if customer_id < 2 ** (8 * width):
                assert customer_id.to_bytes(width, order) not in raw  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # not JSON, not even text
        json.loads(raw.decode("utf-8"))


def test_consecutive_customers_get_unrelated_tokens() -> None:
    """Sequential ids must not show through: two neighbours' tokens differ in almost every byte after the version."""
    first, second = raw_bytes(SIGNER.sign(302, "email")), raw_bytes(SIGNER.sign(303, "email"))
    assert first[0] == second[0] == 1  # the format version, in clear
    same = sum(a == b for a, b in zip(first[1:], second[1:], strict=True))
    assert same <= 4  # ~0.1 expected by chance for 23 random bytes


def test_every_altered_character_is_rejected() -> None:
    token = SIGNER.sign(42, "email")
    for position in range(len(token)):
        for replacement in {"A", "B", "-", "_"} - {token[position]}:
            with pytest.raises(InvalidTokenError):
                SIGNER.verify(token[:position] + replacement + token[position + 1 :])


def test_every_altered_bit_is_rejected() -> None:
    raw = raw_bytes(SIGNER.sign(42, "email"))
    for index in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[index] ^= 1 << bit
            forged = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
            with pytest.raises(InvalidTokenError):
                SIGNER.verify(forged)


def test_truncated_or_extended_token_is_rejected() -> None:
    token = SIGNER.sign(42, "email")
    for forged in (token[:-1], token[:-4], token + "A", token + "AAAA", token[4:]):
        with pytest.raises(InvalidTokenError):
            SIGNER.verify(forged)


def test_token_made_with_another_key_or_salt_is_rejected() -> None:
    token = SIGNER.sign(42, "email")
    with pytest.raises(InvalidTokenError):
        UnsubscribeSigner("another-secret").verify(token)
    with pytest.raises(InvalidTokenError):
        UnsubscribeSigner(SECRET, salt="other").verify(token)


def test_legacy_token_from_an_old_email_still_verifies() -> None:
    """Links already sent (itsdangerous over ``[id, channel]``) must keep working for years."""
    legacy = URLSafeSerializer(SECRET, salt=DEFAULT_SALT).dumps([302, "email"])
    assert legacy.startswith("WzMwMiwiZW1haWwiXQ.")  # the readable payload this change stops issuing
    assert SIGNER.verify(legacy) == UnsubscribeClaim(customer_id=302, channel="email")


def test_legacy_token_with_another_key_or_forged_payload_is_rejected() -> None:
    legacy = URLSafeSerializer(SECRET, salt=DEFAULT_SALT).dumps([302, "email"])
    with pytest.raises(InvalidTokenError):
        UnsubscribeSigner("another-secret").verify(legacy)
    payload, signature = legacy.split(".")
    other = URLSafeSerializer(SECRET, salt=DEFAULT_SALT).dumps([303, "email"]).split(".")[0]
    with pytest.raises(InvalidTokenError):
        SIGNER.verify(f"{other}.{signature}")
    for bad_payload in (["x", "email"], [302], [302, ""], {"id": 302}):
        forged = URLSafeSerializer(SECRET, salt=DEFAULT_SALT).dumps(bad_payload)
        with pytest.raises(InvalidTokenError):
            SIGNER.verify(forged)


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "not.a.token", "W10.invalid", "A", "AQ", "=" * 8, "a b", "é" * 10, "A" * 32, "A" * 600, "AQ==", "%41"],
)
def test_garbage_is_rejected(garbage: str) -> None:
    with pytest.raises(InvalidTokenError):
        SIGNER.verify(garbage)


def test_signer_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="OMNICAST_SECRET_KEY"):
        UnsubscribeSigner("")


# --- purposes and click tokens ----------------------------------------------------------------------------------

CLICK = ClickClaim(
    customer_id=302,
    occurrence_key="weekly-picks:2026-W48",
    channel="email",
    campaign="weekly-picks",
    variant="B",
    url="https://beanandleaf.example/products/yirgacheffe-0?utm_source=email&utm_medium=crm#notes",
)


def test_click_token_round_trips_everything_it_holds() -> None:
    assert SIGNER.verify_click(SIGNER.sign_click(CLICK)) == CLICK
    no_variant = ClickClaim(7, "birthday:2026:7", "email", "birthday", None, "http://x.example/")
    assert SIGNER.verify_click(SIGNER.sign_click(no_variant)) == no_variant
    empty_variant = ClickClaim(7, "birthday:2026:7", "email", "birthday", "", "http://x.example/")
    assert SIGNER.verify_click(SIGNER.sign_click(empty_variant)) == empty_variant  # "" and None stay apart


@given(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(min_size=1, max_size=60),
    st.text(min_size=1, max_size=10),
    st.text(max_size=30),
    st.none() | st.text(max_size=10),
    st.text(min_size=1, max_size=300),
)
def test_any_click_round_trips(
    customer_id: int, occurrence: str, channel: str, campaign: str, variant: str | None, url: str
) -> None:
    claim = ClickClaim(customer_id, occurrence, channel, campaign, variant, url)
    assert SIGNER.verify_click(SIGNER.sign_click(claim)) == claim


def test_click_tokens_are_deterministic_and_opaque() -> None:
    """A retried message is byte-identical, links included; the token shows neither the URL nor the customer."""
    token = SIGNER.sign_click(CLICK)
    assert token == SIGNER.sign_click(CLICK) == UnsubscribeSigner(SECRET).sign_click(CLICK)
    raw = raw_bytes(token)
    assert raw[0] == 2
    for clear in (b"beanandleaf", b"weekly", b"email", b"302"):
        assert clear not in raw
    assert "beanandleaf" not in token
    other = ClickClaim(303, CLICK.occurrence_key, CLICK.channel, CLICK.campaign, CLICK.variant, CLICK.url)
    assert SIGNER.sign_click(other) != token


def test_a_token_only_works_for_its_purpose() -> None:
    """A click token is no unsubscribe token and the other way round, even with its purpose byte rewritten."""
    unsubscribe, click = SIGNER.sign(302, "email"), SIGNER.sign_click(CLICK)
    with pytest.raises(InvalidTokenError):
        SIGNER.verify(click)
    with pytest.raises(InvalidTokenError):
        SIGNER.verify_click(unsubscribe)
    for token, verify, purpose in ((click, SIGNER.verify, 1), (unsubscribe, SIGNER.verify_click, 2)):
        relabelled = bytes([purpose]) + raw_bytes(token)[1:]
        with pytest.raises(InvalidTokenError):
            verify(base64.urlsafe_b64encode(relabelled).rstrip(b"=").decode())


def test_click_token_with_another_key_altered_or_truncated_is_rejected() -> None:
    token = SIGNER.sign_click(CLICK)
    with pytest.raises(InvalidTokenError):
        UnsubscribeSigner("another-secret").verify_click(token)
    raw = raw_bytes(token)
    for index in range(0, len(raw), 7):
        flipped = bytearray(raw)
        flipped[index] ^= 0x10
        with pytest.raises(InvalidTokenError):
            SIGNER.verify_click(base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode())
    for forged in (token[:-1], token[:-4], token + "AAAA", "x" * 5000, "", "a.b"):
        with pytest.raises(InvalidTokenError):
            SIGNER.verify_click(forged)


def test_click_token_limits() -> None:
    long_url = ClickClaim(1, "o", "email", "c", None, "https://x.example/" + "a" * MAX_CLICK_URL_CHARS)
    with pytest.raises(ValueError, match="target URL"):
        SIGNER.sign_click(long_url)
    longest = ClickClaim(1, "o", "email", "c", None, ("https://x.example/" + "a" * 3000)[:MAX_CLICK_URL_CHARS])
    assert SIGNER.verify_click(SIGNER.sign_click(longest)) == longest
    with pytest.raises(ValueError):
        SIGNER.sign_click(ClickClaim(1, "", "email", "c", None, "https://x.example/"))
