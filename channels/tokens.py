"""Signed unsubscribe tokens: who wants out of which channel, in a URL-safe string nobody can forge.

A token is ``itsdangerous.URLSafeSerializer(secret_key, salt)`` over ``[customer_id, channel]``. It carries no
email address (links get forwarded and logged by mail clients), only the customer id. Tokens never expire: an
unsubscribe link in a three-year-old email must still work (RFC 8058, Gmail/Yahoo bulk-sender rules).
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

DEFAULT_SALT = "omnicast.unsubscribe.v1"


class InvalidTokenError(ValueError):
    """The token was not signed with our key and salt, was altered, or does not hold a customer and channel."""


@dataclass(frozen=True)
class UnsubscribeClaim:
    """What a verified token says: this customer no longer wants this channel."""

    customer_id: int
    channel: str


class UnsubscribeSigner:
    """Makes and checks unsubscribe tokens with one secret key; the salt keeps them apart from other signatures."""

    def __init__(self, secret_key: str | bytes, *, salt: str = DEFAULT_SALT) -> None:
        if not secret_key:
            raise ValueError("an unsubscribe signer needs a non-empty secret key (OMNICAST_SECRET_KEY)")
        self._serializer = URLSafeSerializer(secret_key, salt=salt)

    def sign(self, customer_id: int, channel: str) -> str:
        """A token for ``customer_id`` leaving ``channel``; safe in a URL path and a mailto subject."""
        token = self._serializer.dumps([int(customer_id), channel])
        return token if isinstance(token, str) else token.decode("ascii")

    def verify(self, token: str) -> UnsubscribeClaim:
        """The claim inside ``token``; raises ``InvalidTokenError`` when it was tampered with or is malformed."""
        try:
            payload = self._serializer.loads(token)
        except BadSignature as exc:
            raise InvalidTokenError("unsubscribe token signature does not match") from exc
        if not (
            isinstance(payload, list) and len(payload) == 2 and type(payload[0]) is int and isinstance(payload[1], str)
        ):
            raise InvalidTokenError("unsubscribe token does not hold a customer id and a channel")
        return UnsubscribeClaim(customer_id=payload[0], channel=payload[1])
