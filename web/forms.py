"""Request bodies: read with a size limit, and HTML-form fields parsed without python-multipart.

RFC 8058 one-click POSTs come as ``application/x-www-form-urlencoded`` or ``multipart/form-data`` (both allowed, and
mailbox providers use both); the preference centre's own form is urlencoded. Multipart is parsed with the standard
library's MIME parser: the bodies involved are a few hundred bytes, and no file upload is ever accepted.
"""

from __future__ import annotations

from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl

from starlette.requests import Request

MAX_FORM_BYTES = 16 * 1024
MAX_FIELDS = 64


class BodyError(ValueError):
    """The body is too large or is not a form; the message is safe to show (it quotes nothing from the body)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyError(f"request body is larger than {limit} bytes", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(f"request body is larger than {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_form(content_type: str | None, body: bytes) -> list[tuple[str, str]]:
    """The ``(name, value)`` fields of an HTML form body, in order; ``BodyError`` when it is not a form.

    A body without a content type (or ``text/plain``) is read as urlencoded: ``List-Unsubscribe=One-Click`` sent
    bare still means what it says.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("", "application/x-www-form-urlencoded", "text/plain"):
        return _urlencoded(body)
    if media == "multipart/form-data":
        return _multipart(content_type or "", body)
    raise BodyError("expected an HTML form body (application/x-www-form-urlencoded or multipart/form-data)", 415)


def _urlencoded(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
        return parse_qsl(text.strip(), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BodyError("the form body is not UTF-8 urlencoded text with a few fields") from exc


def _multipart(content_type: str, body: bytes) -> list[tuple[str, str]]:
    if "boundary=" not in content_type.lower():
        raise BodyError("multipart/form-data body without a boundary")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(EmailMessage, policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise BodyError("multipart/form-data body could not be read")
    fields: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = _field_name(part)
        if name is None or part.get_filename() is not None:
            continue  # not a form field, or a file upload: never wanted here
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            fields.append((name, payload.decode(part.get_content_charset() or "utf-8")))
        except (LookupError, UnicodeDecodeError) as exc:
            raise BodyError("a multipart/form-data field is not readable text") from exc
        if len(fields) > MAX_FIELDS:
            raise BodyError("too many form fields")
    return fields


def _field_name(part: Message) -> str | None:
    if part.get_content_disposition() != "form-data":
        return None
    name = part.get_param("name", header="content-disposition")
    return name if isinstance(name, str) else None
