"""Unsubscribe tokens: round trip, and anything altered or signed elsewhere is refused."""

from __future__ import annotations

import pytest

from channels.tokens import InvalidTokenError, UnsubscribeClaim, UnsubscribeSigner

SIGNER = UnsubscribeSigner("a-long-random-secret")


def test_token_round_trips_customer_and_channel() -> None:
    token = SIGNER.sign(42, "email")
    assert SIGNER.verify(token) == UnsubscribeClaim(customer_id=42, channel="email")


def test_token_is_url_safe_and_carries_no_email_address() -> None:
    token = SIGNER.sign(42, "email")
    assert all(c.isalnum() or c in "-_." for c in token)
    assert "@" not in token


@pytest.mark.parametrize("position", [0, 5, -1, -5])
def test_tampered_token_is_rejected(position: int) -> None:
    token = SIGNER.sign(42, "email")
    flipped = "A" if token[position] != "A" else "B"
    tampered = token[:position] + flipped + (token[position + 1 :] if position != -1 else "")
    with pytest.raises(InvalidTokenError):
        SIGNER.verify(tampered)


def test_token_for_another_customer_cannot_be_forged_by_editing_the_payload() -> None:
    payload, signature = SIGNER.sign(42, "email").split(".")
    other_payload = SIGNER.sign(43, "email").split(".")[0]
    assert payload != other_payload
    with pytest.raises(InvalidTokenError):
        SIGNER.verify(f"{other_payload}.{signature}")


def test_token_signed_with_another_key_or_salt_is_rejected() -> None:
    token = SIGNER.sign(42, "email")
    with pytest.raises(InvalidTokenError):
        UnsubscribeSigner("another-secret").verify(token)
    with pytest.raises(InvalidTokenError):
        UnsubscribeSigner("a-long-random-secret", salt="other").verify(token)


def test_garbage_is_rejected() -> None:
    for garbage in ["", "abc", "not.a.token", "W10.invalid"]:
        with pytest.raises(InvalidTokenError):
            SIGNER.verify(garbage)


def test_signer_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="OMNICAST_SECRET_KEY"):
        UnsubscribeSigner("")
