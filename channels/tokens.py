"""Link tokens: who wants out of which channel, and which link of which message someone clicked, in short URL-safe
strings nobody can read or forge.

Format::

    base64url-without-padding( purpose ‖ AES-SIV(key[purpose], payload, associated data = purpose) )

    purpose 0x01 (unsubscribe): payload = varint(zigzag(customer id)) ‖ channel name (UTF-8)
    purpose 0x02 (click):       payload = varint(zigzag(customer id)) ‖ occurrence key ‖ channel ‖ campaign
                                          ‖ variant ‖ target URL, each a varint length then UTF-8
                                          (the variant's length is stored plus one; 0 means no variant)

AES-SIV (RFC 5297, ``cryptography``) is authenticated *and deterministic*: the same customer and channel (or the
same link of the same message) always give the same token, so a retried message is byte-identical, while the token
reveals nothing (no customer id, no structure) and any altered byte fails the 128-bit tag. Each purpose has its own
512-bit key, derived with HKDF-SHA256 from ``OMNICAST_SECRET_KEY`` (HKDF salt = the signer's salt, info = the
purpose), and the purpose byte is also the associated data: a click token is refused where an unsubscribe token is
expected and the other way round, even with its first byte changed, and no other use of the secret key can produce
or read either. Customer 302 leaving ``email`` is 32 characters: short enough for a URL path and the subject of a
``mailto:`` link. A token carries no email address (links get forwarded and logged by mail clients); a click token
carries the target URL, which the template put in the email anyway.

An unsubscribe token is scoped to one customer and one channel (the "list"): it manages that channel and its topics
(``email:weekly-picks``) and nothing else. Tokens never expire: an unsubscribe link in a three-year-old email must
still work (RFC 8058, Gmail/Yahoo bulk-sender rules). That includes the unsubscribe tokens sent before this format,
``itsdangerous.URLSafeSerializer(secret_key, salt)`` over the readable JSON ``[customer_id, channel]``: they contain
a ``.`` (the current format never does) and are still verified, never issued.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, URLSafeSerializer

DEFAULT_SALT = "omnicast.unsubscribe.v1"
VERSION = b"\x01"
"""The purpose byte of unsubscribe tokens (it was the format version before click tokens existed)."""
UNSUBSCRIBE: Final = b"\x01"
CLICK: Final = b"\x02"
_HKDF_INFO = {
    UNSUBSCRIBE: b"omnicast unsubscribe token, AES-SIV-512, version 1",
    CLICK: b"omnicast click token, AES-SIV-512, version 1",
}
_NAMES = {UNSUBSCRIBE: "unsubscribe", CLICK: "click"}
_TAG_BYTES = 16
_MAX_TOKEN_CHARS = {UNSUBSCRIBE: 512, CLICK: 4096}  # a legacy unsubscribe token is ~70 characters; a click token
# for the longest URL a template may hold (2,048 characters) ~2,800: anything far longer is junk
MAX_CLICK_URL_CHARS: Final = 2048
_MAX_FIELD_CHARS: Final = 200  # occurrence key, channel, campaign, variant
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_ID = 2**63


class InvalidTokenError(ValueError):
    """The token was not made with our key and salt for this purpose, was altered, or does not hold what it must."""


@dataclass(frozen=True)
class UnsubscribeClaim:
    """What a verified unsubscribe token says: this customer no longer wants this channel."""

    customer_id: int
    channel: str


@dataclass(frozen=True)
class ClickClaim:
    """What a verified click token says: this customer got this link in the message with this ledger key."""

    customer_id: int
    occurrence_key: str
    channel: str
    campaign: str
    variant: str | None
    url: str

    @property
    def ledger_key(self) -> tuple[str, int, str]:
        return (self.occurrence_key, self.customer_id, self.channel)


class TokenSigner:
    """Makes and checks link tokens with one secret key; the salt keeps them apart from other uses of it."""

    def __init__(self, secret_key: str | bytes, *, salt: str = DEFAULT_SALT) -> None:
        if not secret_key:
            raise ValueError("a token signer needs a non-empty secret key (OMNICAST_SECRET_KEY)")
        secret = secret_key.encode("utf-8") if isinstance(secret_key, str) else bytes(secret_key)
        self._siv = {
            purpose: AESSIV(HKDF(algorithm=hashes.SHA256(), length=64, salt=salt.encode("utf-8"), info=info)
                            .derive(secret))
            for purpose, info in _HKDF_INFO.items()
        }  # fmt: skip
        self._legacy = URLSafeSerializer(secret_key, salt=salt)

    # --- unsubscribe -------------------------------------------------------------------------------------------

    def sign(self, customer_id: int, channel: str) -> str:
        """The opaque unsubscribe token for ``customer_id`` leaving ``channel``; safe in a URL path and a mailto
        subject."""
        if not channel:
            raise ValueError("an unsubscribe token needs a channel name")
        return self._seal(UNSUBSCRIBE, _varint(_zigzag(int(customer_id))) + channel.encode("utf-8"))

    def verify(self, token: str) -> UnsubscribeClaim:
        """The claim inside an unsubscribe ``token``; ``InvalidTokenError`` when it was tampered with, is malformed
        or is a token for another purpose (a click token)."""
        if isinstance(token, str) and "." in token and len(token) <= _MAX_TOKEN_CHARS[UNSUBSCRIBE]:
            return self._verify_legacy(token)
        reader = _Reader(self._open(UNSUBSCRIBE, token))
        customer_id = reader.customer_id()
        channel = reader.rest()
        if not channel:
            raise InvalidTokenError("unsubscribe token does not hold a channel")
        return UnsubscribeClaim(customer_id=customer_id, channel=channel)

    verify_unsubscribe = verify

    # --- clicks ------------------------------------------------------------------------------------------------

    def sign_click(self, claim: ClickClaim) -> str:
        """The opaque click token for one link of one message (deterministic: same link, same token)."""
        if not claim.occurrence_key or not claim.channel:
            raise ValueError("a click token needs the message's occurrence key and channel")
        if not claim.url or len(claim.url) > MAX_CLICK_URL_CHARS:
            raise ValueError(f"a click token needs a target URL of 1 to {MAX_CLICK_URL_CHARS} characters")
        fields = (claim.occurrence_key, claim.channel, claim.campaign)
        if any(len(value) > _MAX_FIELD_CHARS for value in (*fields, claim.variant or "")):
            raise ValueError(f"occurrence key, channel, campaign and variant are limited to {_MAX_FIELD_CHARS} chars")
        payload = bytearray(_varint(_zigzag(int(claim.customer_id))))
        for value in fields:
            payload += _text(value)
        if claim.variant is None:
            payload += b"\x00"
        else:
            encoded = claim.variant.encode("utf-8")
            payload += _varint(len(encoded) + 1) + encoded
        payload += _text(claim.url)
        return self._seal(CLICK, bytes(payload))

    def verify_click(self, token: str) -> ClickClaim:
        """The claim inside a click ``token``; ``InvalidTokenError`` when it is not one of ours."""
        reader = _Reader(self._open(CLICK, token))
        customer_id = reader.customer_id()
        occurrence_key, channel, campaign = reader.text(), reader.text(), reader.text()
        variant_length = reader.varint()
        variant = None if variant_length == 0 else reader.take(variant_length - 1)
        url = reader.text()
        reader.end()
        if not occurrence_key or not channel or not url:
            raise InvalidTokenError("click token does not hold a message and a link")
        return ClickClaim(customer_id, occurrence_key, channel, campaign, variant, url)

    # --- format ------------------------------------------------------------------------------------------------

    def _seal(self, purpose: bytes, payload: bytes) -> str:
        sealed = purpose + self._siv[purpose].encrypt(payload, [purpose])
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def _open(self, purpose: bytes, token: str) -> bytes:
        name = _NAMES[purpose]
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS[purpose]:
            raise InvalidTokenError(f"{name} token is empty or too long")
        sealed = _b64decode_canonical(token, name)
        if len(sealed) <= 1 + _TAG_BYTES or sealed[:1] != purpose:
            raise InvalidTokenError(f"{name} token has an unknown format or another purpose")
        try:
            return self._siv[purpose].decrypt(sealed[1:], [purpose])
        except InvalidTag as exc:
            raise InvalidTokenError(f"{name} token was not made with this key, or was altered") from exc

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


UnsubscribeSigner = TokenSigner
"""The name the email channel knows the signer by (it signs unsubscribe and click tokens alike)."""


def _b64decode_canonical(token: str, name: str) -> bytes:
    """Decode base64url without padding, refusing any other spelling of the same bytes (so every character counts)."""
    if not _BASE64URL.fullmatch(token) or len(token) % 4 == 1:
        raise InvalidTokenError(f"{name} token is not base64url")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidTokenError(f"{name} token is not base64url") from exc
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        raise InvalidTokenError(f"{name} token is not canonical base64url")
    return raw


class _Reader:
    """Reads an authenticated payload (a malformed one can only come from a key misuse, but it is still refused)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.index = 0

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self.index >= len(self.payload):
                raise InvalidTokenError("token payload ends too early")
            byte = self.payload[self.index]
            value |= (byte & 0x7F) << shift
            self.index += 1
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise InvalidTokenError("token holds an oversized number")

    def customer_id(self) -> int:
        return _unzigzag(self.varint())

    def take(self, length: int) -> str:
        end = self.index + length
        if end > len(self.payload):
            raise InvalidTokenError("token payload ends too early")
        chunk, self.index = self.payload[self.index : end], end
        try:
            return chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidTokenError("token holds unreadable text") from exc

    def text(self) -> str:
        return self.take(self.varint())

    def rest(self) -> str:
        return self.take(len(self.payload) - self.index)

    def end(self) -> None:
        if self.index != len(self.payload):
            raise InvalidTokenError("token payload has trailing bytes")


def _text(value: str) -> bytes:
    encoded = value.encode("utf-8")
    return _varint(len(encoded)) + encoded


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
