"""Unsubscribe tokens: who wants out of which channel, in a short URL-safe string nobody can read or forge.

Format (version 1)::

    base64url-without-padding( 0x01 ‖ AES-SIV(key, payload, associated data = 0x01) )
    payload = unsigned LEB128 varint of the zigzag-encoded customer id ‖ channel name (UTF-8)

AES-SIV (RFC 5297, ``cryptography``) is authenticated *and deterministic*: the same customer and channel always
give the same token, so a retried message is byte-identical, while the token reveals nothing (no customer id, no
structure) and any altered byte fails the 128-bit tag. The 512-bit key is derived with HKDF-SHA256 from
``OMNICAST_SECRET_KEY``, with the signer's salt as HKDF salt (the purpose), so no other use of the secret key can
produce or read these tokens. Customer 302 leaving ``email`` is 32 characters: short enough for a URL path and the
subject of a ``mailto:`` link. A token carries no email address (links get forwarded and logged by mail clients).

Tokens never expire: an unsubscribe link in a three-year-old email must still work (RFC 8058, Gmail/Yahoo
bulk-sender rules). That includes the tokens sent before version 1, ``itsdangerous.URLSafeSerializer(secret_key,
salt)`` over the readable JSON ``[customer_id, channel]``: they contain a ``.`` (version 1 never does) and are still
verified, never issued.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, URLSafeSerializer

DEFAULT_SALT = "omnicast.unsubscribe.v1"
VERSION = b"\x01"
_HKDF_INFO = b"omnicast unsubscribe token, AES-SIV-512, version 1"
_TAG_BYTES = 16
_MAX_TOKEN_CHARS = 512  # a legacy token for a long channel name is ~70 characters; anything far longer is junk
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_ID = 2**63


class InvalidTokenError(ValueError):
    """The token was not made with our key and salt, was altered, or does not hold a customer and channel."""


@dataclass(frozen=True)
class UnsubscribeClaim:
    """What a verified token says: this customer no longer wants this channel."""

    customer_id: int
    channel: str


class UnsubscribeSigner:
    """Makes and checks unsubscribe tokens with one secret key; the salt keeps them apart from other uses of it."""

    def __init__(self, secret_key: str | bytes, *, salt: str = DEFAULT_SALT) -> None:
        if not secret_key:
            raise ValueError("an unsubscribe signer needs a non-empty secret key (OMNICAST_SECRET_KEY)")
        secret = secret_key.encode("utf-8") if isinstance(secret_key, str) else bytes(secret_key)
        key = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt.encode("utf-8"), info=_HKDF_INFO).derive(secret)
        self._siv = AESSIV(key)
        self._legacy = URLSafeSerializer(secret_key, salt=salt)

    def sign(self, customer_id: int, channel: str) -> str:
        """The opaque token for ``customer_id`` leaving ``channel``; safe in a URL path and a mailto subject."""
        if not channel:
            raise ValueError("an unsubscribe token needs a channel name")
        payload = _varint(_zigzag(int(customer_id))) + channel.encode("utf-8")
        sealed = VERSION + self._siv.encrypt(payload, [VERSION])
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def verify(self, token: str) -> UnsubscribeClaim:
        """The claim inside ``token``; raises ``InvalidTokenError`` when it was tampered with or is malformed."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            raise InvalidTokenError("unsubscribe token is empty or too long")
        if "." in token:
            return self._verify_legacy(token)
        sealed = _b64decode_canonical(token)
        if len(sealed) <= 1 + _TAG_BYTES or sealed[:1] != VERSION:
            raise InvalidTokenError("unsubscribe token has an unknown format")
        try:
            payload = self._siv.decrypt(sealed[1:], [VERSION])
        except InvalidTag as exc:
            raise InvalidTokenError("unsubscribe token was not made with this key, or was altered") from exc
        return _claim(payload)

    def _verify_legacy(self, token: str) -> UnsubscribeClaim:
        """A pre-version-1 token (itsdangerous over JSON) from an email sent before tokens became opaque."""
        try:
            payload = self._legacy.loads(token)
        except BadSignature as exc:
            raise InvalidTokenError("unsubscribe token signature does not match") from exc
        well_formed = isinstance(payload, list) and len(payload) == 2 and type(payload[0]) is int
        if not well_formed or not isinstance(payload[1], str) or not payload[1]:
            raise InvalidTokenError("unsubscribe token does not hold a customer id and a channel")
        return UnsubscribeClaim(customer_id=payload[0], channel=payload[1])


def _b64decode_canonical(token: str) -> bytes:
    """Decode base64url without padding, refusing any other spelling of the same bytes (so every character counts)."""
    if not _BASE64URL.fullmatch(token) or len(token) % 4 == 1:
        raise InvalidTokenError("unsubscribe token is not base64url")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidTokenError("unsubscribe token is not base64url") from exc
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        raise InvalidTokenError("unsubscribe token is not canonical base64url")
    return raw


def _claim(payload: bytes) -> UnsubscribeClaim:
    """Parse an authenticated payload (a malformed one can only come from a key misuse, but it is still refused)."""
    value = shift = index = 0
    while True:
        if index >= len(payload):
            raise InvalidTokenError("unsubscribe token does not hold a customer id")
        byte = payload[index]
        value |= (byte & 0x7F) << shift
        index += 1
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise InvalidTokenError("unsubscribe token holds an oversized customer id")
    try:
        channel = payload[index:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTokenError("unsubscribe token holds an unreadable channel") from exc
    if not channel:
        raise InvalidTokenError("unsubscribe token does not hold a channel")
    return UnsubscribeClaim(customer_id=_unzigzag(value), channel=channel)


def _zigzag(number: int) -> int:
    if not -_MAX_ID <= number < _MAX_ID:
        raise ValueError("customer id does not fit in 64 bits")
    return number * 2 if number >= 0 else -number * 2 - 1


def _unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
