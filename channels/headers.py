"""What customer data may look like by the time it reaches a message: text, header text, mailboxes and URLs.

Names, product titles, tags and explanations come from store exports and CRMs that anyone can type into, so every
channel treats them as hostile. The rules, one function each:

* ``clean_text`` (message bodies, card fields): control characters (C0, C1, DEL), lone surrogates and invisible
  format characters (bidi embeddings/overrides/isolates, zero-width spaces, BOM, soft hyphen) are removed; line and
  paragraph breaks (CR, LF, NEL, U+2028/2029, tabs) become a space. ZWJ/ZWNJ and emoji tag characters stay: scripts
  and emoji need them.
* ``header_text`` (the Subject, display names): RFC 2047 encoded-words are decoded first, up to
  ``_MAX_DECODE_ROUNDS`` times (a name can arrive encoded twice), *then* cleaned, so an encoded CRLF is caught; Unicode
  NFC; whitespace collapsed to single spaces; every remaining ``=?`` becomes ``= ?`` so no mail reader can decode
  what is left into something else; at most ``MAX_HEADER_CHARS`` characters.
* ``mailbox`` (To): email-validator decides, the domain is written in IDNA (``bücher.example`` →
  ``xn--bcher-kva.example``); a non-ASCII local part needs SMTPUTF8 (RFC 6531/6532) and says so.
* ``safe_url`` (href, src, card links): only an absolute ``http(s)`` URL with a host and no user-info survives, after
  the same preprocessing a browser does (edge C0/space stripped, tabs and newlines removed), with the host in IDNA
  and unsafe characters percent-encoded; anything else (``javascript:``, ``data:``, relative, ``//host``) is ``None``.

Headers are then *written* by ``unstructured_header`` and ``address_header`` from those parts, never by the standard
library's folder: Python 3.11.7 writes a decoded CR LF into a header verbatim, and we do not rely on a patched
interpreter. Non-ASCII text goes out as RFC 2047 ``Q`` encoded-words made of whole characters, lines ≤ 76 octets.
"""

from __future__ import annotations

import ipaddress
import re
import string
import unicodedata
from dataclasses import dataclass
from email.headerregistry import Address
from email.policy import default as _DEFAULT_POLICY
from functools import lru_cache
from urllib.parse import quote, urlsplit, urlunsplit

import idna
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

MAX_HEADER_CHARS = 250
"""Longest header text (Subject, display name) after cleaning; longer text is cut and ends in "…"."""

MAX_URL_CHARS = 2048
_MAX_DECODE_ROUNDS = 4
_MAX_DECODE_INPUT = 10_000  # decoding is linear, but nobody's name is longer than this
_LINE_BREAKS = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")
_KEEP_FORMAT = frozenset("\u200c\u200d")  # ZWNJ, ZWJ: Persian, Indic scripts and emoji sequences need them
_TAGS = range(0xE0020, 0xE0080)  # emoji tag sequences (subdivision flags)
_Q_LITERAL = frozenset(string.ascii_letters + string.digits + "!*+-/")  # RFC 2047 §5(3): safe even in a phrase
_EW_OVERHEAD = len("=?utf-8?q?") + len("?=")
_LINE = 76  # RFC 2047 §2: a line holding an encoded-word is at most 76 characters
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~ ")
_ASCII_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.?")
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"  # RFC 3986 reserved + unreserved + "%" (existing escapes are kept)
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@(?:[a-z0-9](?:[a-z0-9]|-(?!-)){0,61}(?<!-)\.)+[a-z]{2,63}"
)  # the common case, which email-validator would accept unchanged (no IDNA, no "--" labels, lowercase domain)
_PLAIN_URL = re.compile(
    r"https?://(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"(?:[/?#][A-Za-z0-9!#$%&'()*+,/:;=?@\[\]~._-]*)?"
)


class AddressError(ValueError):
    """An address that cannot be made a valid mailbox. The message never contains the address (PII)."""


@dataclass(frozen=True)
class Mailbox:
    """A validated recipient: ``addr_spec`` is what goes in ``To:`` and ``RCPT TO``.

    The domain is always ASCII (IDNA A-labels). ``smtputf8`` is true when the local part itself is non-ASCII: the
    message then carries UTF-8 in its header (RFC 6532) and an SMTP transport must send it with the ``SMTPUTF8``
    option (RFC 6531), or fail it permanently when the server does not offer that extension.
    """

    addr_spec: str
    smtputf8: bool


# text ----------------------------------------------------------------------------------------------------------


def clean_text(value: str) -> str:
    """``value`` without control or invisible format characters; line breaks and tabs become spaces."""
    if value.isprintable():  # the common case: no Cc, Cf, Cs, Zl, Zp (nor Zs other than " ") anywhere
        return value
    return "".join(_clean_chars(value))


def _clean_chars(value: str) -> list[str]:
    kept = []
    for char in value:
        if char.isprintable():
            kept.append(char)
            continue
        if char in _LINE_BREAKS:
            kept.append(" ")
            continue
        category = unicodedata.category(char)
        if category == "Zs":
            kept.append(char)  # no-break and other spaces are text
        elif category in ("Zl", "Zp"):
            kept.append(" ")
        elif category == "Cf":
            if char in _KEEP_FORMAT or ord(char) in _TAGS:
                kept.append(char)
        elif category not in ("Cc", "Cs"):
            kept.append(char)  # private use, unassigned (emoji newer than this interpreter's Unicode tables)
    return kept


def header_text(value: str, *, limit: int = MAX_HEADER_CHARS) -> str:
    """Text that is safe as the value of an unstructured header, and reads as the customer would expect."""
    text = value[:_MAX_DECODE_INPUT]
    for _ in range(_MAX_DECODE_ROUNDS):
        if "=?" not in text:
            break
        decoded = _decode_encoded_words(text)
        if decoded == text:
            break
        text = decoded
    text = " ".join(unicodedata.normalize("NFC", clean_text(text)).split())
    text = text.replace("=?", "= ?")
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _decode_encoded_words(text: str) -> str:
    """What a mail reader would display for ``text``: RFC 2047 encoded-words decoded, as the stdlib parser does."""
    try:
        return str(_DEFAULT_POLICY.header_factory("subject", text))
    except Exception:  # a parser bug on hostile input must not stop a send: the text is neutralized afterwards
        return text


# headers -------------------------------------------------------------------------------------------------------


def unstructured_header(name: str, value: str) -> str:
    """``Name: value`` folded, CRLF-terminated, ASCII: ``value`` goes through ``header_text`` first."""
    text = header_text(value)
    if text.isascii():
        return _fold(name, text.split(" "))
    return _fold(name, _encoded_words(text, _LINE - len(name) - 2))


def address_header(name: str, mailbox: Mailbox, display_name: str = "") -> str:
    """``Name: display name <addr-spec>`` (or just the addr-spec) folded and CRLF-terminated.

    The display name goes through ``header_text`` and is quoted or encoded as needed; the addr-spec comes from
    ``mailbox`` (already validated), and is UTF-8 only when ``mailbox.smtputf8``.
    """
    phrase = header_text(display_name)
    if not phrase:
        return _fold(name, [mailbox.addr_spec])
    if not phrase.isascii():
        words = _encoded_words(phrase, _LINE - len(name) - 2)
    elif set(phrase) <= _ATEXT:
        words = phrase.split(" ")
    else:
        words = ['"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return _fold(name, [*words, f"<{mailbox.addr_spec}>"])


def _encoded_words(text: str, first_line_room: int) -> list[str]:
    """``text`` as ``=?utf-8?q?…?=`` words of whole characters, each fitting a folded line of ``_LINE`` octets."""
    room = min(first_line_room, _LINE - 1) - _EW_OVERHEAD
    words: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        if char == " ":
            encoded = "_"
        elif char in _Q_LITERAL:
            encoded = char
        else:
            encoded = "".join(f"={byte:02X}" for byte in char.encode("utf-8"))
        if current and size + len(encoded) > room:
            words.append("=?utf-8?q?" + "".join(current) + "?=")
            current, size = [], 0
        current.append(encoded)
        size += len(encoded)
    if current:
        words.append("=?utf-8?q?" + "".join(current) + "?=")
    return words


def _fold(name: str, words: list[str]) -> str:
    """Header lines of at most 78 octets where the words allow it, folded before a space (RFC 5322 §2.2.3)."""
    lines: list[str] = []
    current = f"{name}:"
    first = True
    for word in words:
        if not word:
            continue
        if not first and len(current) + 1 + len(word) > 78:
            lines.append(current)
            current = " " + word
        else:
            current += " " + word
        first = False
    lines.append(current)
    return "\r\n".join(lines) + "\r\n"


# addresses -----------------------------------------------------------------------------------------------------


def mailbox(address: str | None) -> Mailbox:
    """The recipient's validated ``Mailbox``; ``AddressError`` (naming no address) when it can't be one.

    A plain lowercase ASCII address skips email-validator (≈ 40 µs each, a tenth of building a message); a test
    checks with hypothesis that the two agree on every address the shortcut takes.
    """
    if not address or len(address) > 320:
        raise AddressError("recipient address is missing or too long")
    if len(address) <= 254 and _PLAIN_ADDRESS.fullmatch(address):
        local, _, domain = address.partition("@")
        labels = domain.split(".")
        if len(local) <= 64 and not any(".".join(labels[i:]) in SPECIAL_USE_DOMAIN_NAMES for i in range(len(labels))):
            return Mailbox(addr_spec=address, smtputf8=False)
    try:
        valid = validate_email(address.strip(" "), check_deliverability=False)
    except (EmailNotValidError, ValueError):
        raise AddressError("recipient address is not a valid mailbox") from None  # no chaining: its text has PII
    if len(valid.local_part.encode("utf-8")) > 64:  # RFC 5321 §4.5.3.1.1; email-validator lets it through
        raise AddressError("recipient address has a local part longer than 64 octets")
    try:
        addr_spec = Address(username=valid.local_part, domain=valid.ascii_domain).addr_spec
    except (ValueError, TypeError):
        raise AddressError("recipient address is not a valid mailbox") from None
    return Mailbox(addr_spec=addr_spec, smtputf8=not valid.local_part.isascii())


# URLs ----------------------------------------------------------------------------------------------------------


def safe_url(value: object) -> str | None:
    """``value`` as an absolute ``http(s)`` URL that is safe in ``href``/``src`` and card links, else ``None``."""
    if not isinstance(value, str) or not value:
        return None
    return _safe_url(value)


@lru_cache(maxsize=8192)  # product and image URLs repeat across every recipient of a run
def _safe_url(value: str) -> str | None:
    if len(value) <= MAX_URL_CHARS and _PLAIN_URL.fullmatch(value):
        return value
    url = value.strip("".join(map(chr, range(0x21))))  # WHATWG: leading/trailing C0 controls and spaces
    url = url.replace("\t", "").replace("\n", "").replace("\r", "")  # WHATWG: removed anywhere
    if not url or len(url) > MAX_URL_CHARS:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # unbalanced brackets, a port that is not a number
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    host = _ascii_host(parts.hostname or "")
    if host is None:
        return None
    netloc = host if port is None else f"{host}:{port}"
    try:
        path, query, fragment = (quote(part, safe=_URL_SAFE) for part in (parts.path, parts.query, parts.fragment))
    except UnicodeEncodeError:  # a lone surrogate: not text, let alone a URL
        return None
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def _ascii_host(host: str) -> str | None:
    """The host in ASCII (IDNA A-labels, or a bracketed IPv6 address); ``None`` when it isn't a host name."""
    if not host or len(host) > 253:
        return None
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            return None
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    return host if _ASCII_HOST.fullmatch(host) else None
