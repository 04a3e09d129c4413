"""A local stand-in for Google's Data Manager API audience endpoints that enforces the documented contract (tests only).

Served on 127.0.0.1 (a random port) from a thread by the standard library's ``ThreadingHTTPServer`` with HTTP/1.1
keep-alive. Errors are Google's ``{"error": {"code", "message", "status", "details"}}`` with ``ErrorInfo`` and
``BadRequest`` field violations (paths as Google writes them: ``audience_members.audience_members[0]``).

* Only ``POST /v1/audienceMembers:ingest`` and ``POST /v1/audienceMembers:remove`` exist (anything else: a bare 404,
  not JSON). Every request needs ``Authorization: Bearer TOKEN`` (else 401 ``UNAUTHENTICATED``) and a JSON object body.
* Top-level fields are those of the method's schema: an unknown one is 400 ``INVALID_ARGUMENT`` (``Unknown name``), as
  Google's JSON parsing does. In particular ``consent`` and ``termsOfService`` are ingest fields, not remove fields.
* ``destinations``: 1 to 10, each with ``operatingAccount {accountType, accountId}`` (an ``accountType`` of the enum;
  an account not in ``accounts``: 403 ``PERMISSION_DENIED``), an optional ``loginAccount`` (must be in ``managers``,
  else 403) and a ``productDestinationId`` that is a user list of that account (else 400 ``INVALID_USER_LIST_ID``).
* ``audienceMembers``: 1 to 10,000 (more: ``TOO_MANY_AUDIENCE_MEMBERS``), each ``{"userData": {"userIdentifiers":
  [...]}}`` with 1 to 10 identifiers, each exactly one of ``emailAddress``, ``phoneNumber`` (64 lowercase hex digits,
  as ``encoding: HEX`` says; ``encoding`` is required) or ``address`` with all of ``givenName`` and ``familyName``
  (hashed the same way), ``regionCode`` (two capital letters, not hashed) and ``postalCode`` (plain: not a hash).
  A member that breaks a rule fails the whole request (Google's fast-fail model) with a field violation naming it;
  so does a member whose email or phone hash is in ``refused`` (``INVALID_AUDIENCE_MEMBER``).
* Ingest only: ``consent`` with ``adUserData`` and ``adPersonalization`` (``CONSENT_GRANTED``/``CONSENT_DENIED``), at
  the request or on every member, and ``termsOfService.customerMatchTermsOfServiceStatus: ACCEPTED`` (else
  ``TERMS_AND_CONDITIONS_NOT_SIGNED``).
* The answer is ``{"requestId"}``. Unless ``validateOnly``, each user list's members are kept in ``members[list_id]``,
  keyed by the email hash, else the phone hash, else the address: an ingest of a member already there replaces it, a
  remove of one not there changes nothing.

Tests steer the next requests with ``script(...)``: ``Throttle(retry_after=3)`` (429 ``RESOURCE_EXHAUSTED``, with a
``Retry-After`` header and/or a ``RetryInfo`` delay), ``Reply(500)`` or any canned answer, ``Drop()`` (process the
request, then close the connection without answering); ``None`` handles a request normally. ``throttle(n)`` and
``fail(n)`` script ``n`` requests at once. Every request is recorded in ``calls``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tests.peers.http_peer import Drop, HttpPeer, PeerHandler

MAX_MEMBERS = 10_000
MAX_IDENTIFIERS = 10
MAX_DESTINATIONS = 10
ACCOUNT_TYPES = frozenset({"GOOGLE_ADS", "DISPLAY_VIDEO_PARTNER", "DISPLAY_VIDEO_ADVERTISER", "DATA_PARTNER"})
CONSENT_VALUES = frozenset({"CONSENT_GRANTED", "CONSENT_DENIED"})
FIELDS = {
    "ingest": frozenset({"destinations", "audienceMembers", "consent", "validateOnly", "encoding", "encryptionInfo",
                         "termsOfService"}),
    "remove": frozenset({"destinations", "audienceMembers", "validateOnly", "encoding", "encryptionInfo"}),
}  # fmt: skip
_HASH = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-fA-F]*")
_PATHS = {"/v1/audienceMembers:ingest": "ingest", "/v1/audienceMembers:remove": "remove"}
_DOMAIN = "datamanager.googleapis.com"


@dataclass(frozen=True)
class Reply:
    """A canned answer for one request (the request is not processed)."""

    status: int
    body: Any = None
    retry_after: str | int | None = None


@dataclass(frozen=True)
class Throttle:
    """HTTP 429 ``RESOURCE_EXHAUSTED`` with ``Retry-After`` and/or a ``RetryInfo`` detail (e.g. ``"12s"``)."""

    retry_after: int | None = None
    retry_delay: str | None = None


Step = Reply | Throttle | Drop | None


@dataclass
class Call:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: str
    json: Any
    status: int = 0
    answer: Any = None


class _Refusal(Exception):
    def __init__(self, status: int, code: str, reason: str, text: str, field: str | None = None) -> None:
        super().__init__(text)
        self.status, self.code, self.reason, self.text, self.field = status, code, reason, text, field

    def answer(self) -> tuple[int, Any]:
        details: list[dict[str, Any]] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": self.reason, "domain": _DOMAIN}
        ]
        if self.field is not None:
            details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [
                {"field": self.field, "description": self.text, "reason": self.reason}]})  # fmt: skip
        return self.status, {"error": {"code": self.status, "message": self.text, "status": self.code,
                                       "details": details}}  # fmt: skip


def _bad(reason: str, text: str, field: str | None = None) -> _Refusal:
    return _Refusal(400, "INVALID_ARGUMENT", reason, text, field)


@dataclass
class GoogleDataManagerServer(HttpPeer[Step]):
    thread_name: ClassVar[str] = "google-dm-peer"

    token: str = "ya29.test-token"
    accounts: dict[str, set[str]] = field(default_factory=lambda: {"1234567890": {"111", "222"}})
    """Operating account id → the ids of its Customer Match user lists."""
    managers: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    """Email or phone hashes whose member Google refuses (``INVALID_AUDIENCE_MEMBER``)."""
    calls: list[Call] = field(default_factory=list)
    members: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """User list id → member key → the member's ``userData``."""

    # steering and looking --------------------------------------------------------------------------------------

    def throttle(self, n: int, *, retry_after: int | None = None, retry_delay: str | None = None) -> None:
        self.script(*[Throttle(retry_after=retry_after, retry_delay=retry_delay)] * n)

    def fail(self, n: int, status: int = 500) -> None:
        code = {500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}.get(status, "UNKNOWN")
        self.script(*[Reply(status, {"error": {"code": status, "message": "Internal error encountered.",
                                               "status": code}})] * n)  # fmt: skip

    def list_members(self, list_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self.members.get(list_id, {}))

    # the contract ------------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        """The answer to one (unscripted) request; ``(404, None)`` for a path the API does not have."""
        operation = _PATHS.get(path)
        if operation is None or method != "POST":
            return 404, None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.token:
            return 401, {"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected "
                                   "OAuth 2 access token, login cookie or other valid authentication credential.",
                                   "status": "UNAUTHENTICATED"}}  # fmt: skip
        try:
            if not isinstance(body, dict):
                raise _bad("INVALID_ARGUMENT", "Invalid JSON payload received.")
            unknown = sorted(set(body) - FIELDS[operation])
            if unknown:
                raise _bad("INVALID_ARGUMENT", f'Invalid JSON payload received. Unknown name "{unknown[0]}": '
                           "Cannot find field.")  # fmt: skip
            lists = self._destinations(body.get("destinations"))
            if body.get("encoding") != "HEX":
                raise _bad("INVALID_FORMAT", "encoding is required for UserData uploads (this stand-in takes HEX)",
                           "encoding")  # fmt: skip
            members = self._members(body.get("audienceMembers"))
            if operation == "ingest":
                self._ingest_rules(body)
        except _Refusal as refusal:
            return refusal.answer()
        request_id = str(uuid.uuid4())
        if body.get("validateOnly") is True:
            return 200, {"requestId": request_id}
        with self._lock:
            for list_id in lists:
                held = self.members.setdefault(list_id, {})
                for key, user_data in members:
                    if operation == "ingest":
                        held[key] = user_data
                    else:
                        held.pop(key, None)
        return 200, {"requestId": request_id}

    def _destinations(self, destinations: Any) -> list[str]:
        if not isinstance(destinations, list) or not destinations:
            raise _bad("REQUIRED_FIELD_MISSING", "destinations is required", "destinations")
        if len(destinations) > MAX_DESTINATIONS:
            raise _bad("TOO_MANY_DESTINATIONS", "at most 10 destinations", "destinations")
        lists: list[str] = []
        for n, destination in enumerate(destinations):
            where = f"destinations[{n}]"
            if not isinstance(destination, dict):
                raise _bad("INVALID_DESTINATION", "This Destination is not valid.", where)
            account = self._account(destination.get("operatingAccount"), f"{where}.operating_account")
            if account not in self.accounts:
                raise _Refusal(403, "PERMISSION_DENIED", "PERMISSION_DENIED",
                               "The caller does not have permission", f"{where}.operating_account")  # fmt: skip
            if "loginAccount" in destination:
                login = self._account(destination["loginAccount"], f"{where}.login_account")
                if login not in self.managers:
                    raise _Refusal(403, "PERMISSION_DENIED", "PERMISSION_DENIED",
                                   "The caller does not have permission", f"{where}.login_account")  # fmt: skip
            list_id = destination.get("productDestinationId")
            if not isinstance(list_id, str) or not list_id:
                raise _bad("REQUIRED_FIELD_MISSING", "productDestinationId is required",
                           f"{where}.product_destination_id")  # fmt: skip
            if list_id not in self.accounts[account]:
                raise _bad("INVALID_USER_LIST_ID", "User list is not valid.", f"{where}.product_destination_id")
            lists.append(list_id)
        return lists

    @staticmethod
    def _account(value: Any, where: str) -> str:
        if not isinstance(value, dict) or set(value) - {"accountType", "accountId"}:
            raise _bad("INVALID_ARGUMENT", "an account is {accountType, accountId}", where)
        if value.get("accountType") not in ACCOUNT_TYPES:
            raise _bad("INVALID_ENUM_VALUE", "Enum value cannot be used.", f"{where}.account_type")
        account = value.get("accountId")
        if not isinstance(account, str) or not account.isdigit():
            raise _bad("INVALID_FORMAT", "accountId must be digits", f"{where}.account_id")
        return account

    def _members(self, members: Any) -> list[tuple[str, dict[str, Any]]]:
        if not isinstance(members, list) or not members:
            raise _bad("REQUIRED_FIELD_MISSING", "audienceMembers is required", "audience_members")
        if len(members) > MAX_MEMBERS:
            raise _bad("TOO_MANY_AUDIENCE_MEMBERS", "Maximum number of audience members allowed per request is "
                       "10,000.", "audience_members")  # fmt: skip
        found: list[tuple[str, dict[str, Any]]] = []
        for n, member in enumerate(members):
            where = f"audience_members.audience_members[{n}]"
            if not isinstance(member, dict) or set(member) - {"userData", "consent", "destinationReferences"}:
                raise _bad("INVALID_AUDIENCE_MEMBER", "This audience member is not valid.", where)
            user_data = member.get("userData")
            if not isinstance(user_data, dict) or set(user_data) != {"userIdentifiers"}:
                raise _bad("INVALID_AUDIENCE_MEMBER", "userData with userIdentifiers is required", where)
            key = self._identifiers(user_data["userIdentifiers"], f"{where}.user_data.user_identifiers")
            if key in self.refused:
                raise _bad("INVALID_AUDIENCE_MEMBER", "This audience member is not valid.", where)
            found.append((key, user_data))
        return found

    @staticmethod
    def _identifiers(identifiers: Any, where: str) -> str:
        """Check a member's identifiers; its key (email hash, else phone hash, else the address)."""
        if not isinstance(identifiers, list) or not identifiers:
            raise _bad("REQUIRED_FIELD_MISSING", "at least one user identifier is required", where)
        if len(identifiers) > MAX_IDENTIFIERS:
            raise _bad("TOO_MANY_USER_IDENTIFIERS", "at most 10 user identifiers per member", where)
        keys: dict[str, str] = {}
        for identifier in identifiers:
            if not isinstance(identifier, dict) or len(identifier) != 1:
                raise _bad("INVALID_FORMAT", "a user identifier is exactly one of emailAddress, phoneNumber, address",
                           where)  # fmt: skip
            ((kind, value),) = identifier.items()
            if kind in ("emailAddress", "phoneNumber"):
                _hashed(value, where, "Email" if kind == "emailAddress" else "Phone number")
                keys.setdefault(kind, value)
            elif kind == "address":
                keys.setdefault(kind, _address(value, where))
            else:
                raise _bad("INVALID_FORMAT", f"unknown user identifier {kind}", where)
        return keys.get("emailAddress") or keys.get("phoneNumber") or keys["address"]

    @staticmethod
    def _ingest_rules(body: dict[str, Any]) -> None:
        consent = body.get("consent")
        members = body["audienceMembers"]
        if consent is None and not all(isinstance(m.get("consent"), dict) for m in members):
            raise _bad("REQUIRED_FIELD_MISSING", "consent is required (request or member level)", "consent")
        for where, given in [("consent", consent)] + [
            (f"audience_members.audience_members[{n}].consent", m.get("consent")) for n, m in enumerate(members)
        ]:  # fmt: skip
            if given is None:
                continue
            if (
                not isinstance(given, dict)
                or set(given) != {"adUserData", "adPersonalization"}
                or not all(value in CONSENT_VALUES for value in given.values())
            ):
                raise _bad("INVALID_ENUM_VALUE", "consent needs adUserData and adPersonalization", where)
        terms = body.get("termsOfService")
        if not isinstance(terms, dict) or terms.get("customerMatchTermsOfServiceStatus") != "ACCEPTED":
            raise _bad("TERMS_AND_CONDITIONS_NOT_SIGNED", "Required terms and conditions are not accepted.",
                       "terms_of_service")  # fmt: skip


def _hashed(value: Any, where: str, what: str) -> None:
    if not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) % 2:
        raise _bad("INVALID_HEX_ENCODING", f"{what} is not hex encoded.", where)
    if not _HASH.fullmatch(value):
        raise _bad("INVALID_SHA256_FORMAT", f"{what} is not a SHA-256 hash (64 lowercase hex digits).", where)


def _address(value: Any, where: str) -> str:
    if not isinstance(value, dict) or set(value) - {"givenName", "familyName", "regionCode", "postalCode"}:
        raise _bad("INVALID_FORMAT", "address is {givenName, familyName, regionCode, postalCode}", where)
    missing = [name for name in ("givenName", "familyName", "regionCode", "postalCode") if not value.get(name)]
    if missing:
        raise _bad("REQUIRED_FIELD_MISSING", f"address.{missing[0]} is required", where)
    _hashed(value["givenName"], where, "Given name")
    _hashed(value["familyName"], where, "Family name")
    region, postal = value["regionCode"], value["postalCode"]
    if not isinstance(region, str) or not re.fullmatch(r"[A-Z]{2}", region):
        raise _bad("INVALID_COUNTRY_CODE", "regionCode is an ISO-3166-1 alpha-2 code, not hashed", where)
    if not isinstance(postal, str) or _HASH.fullmatch(postal) or len(postal) > 16 or postal != postal.strip():
        raise _bad("INVALID_POSTAL_CODE", "Postal code is not valid (it is sent unhashed).", where)
    return "|".join((value["givenName"], value["familyName"], region, postal))


class _Handler(PeerHandler):
    peer: GoogleDataManagerServer
    wbufsize = 1 << 16

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = self.headers.get("Content-Length") or "0"
        raw = self.rfile.read(int(length)) if length.isdigit() else b""
        headers = self.lower_headers()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        call = Call(method, path, headers, raw.decode("utf-8", "replace"), body)
        step = self.peer._next_step()
        extra: dict[str, str] = {}
        if isinstance(step, Reply):
            status, answer = step.status, step.body if step.body is not None else {}
            if step.retry_after is not None:
                extra["Retry-After"] = str(step.retry_after)
        elif isinstance(step, Throttle):
            details: list[dict[str, Any]] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "RESOURCE_EXHAUSTED",
                    "domain": _DOMAIN,
                    "metadata": {"quota_limit": "IngestionMutateRequestsPerMinutePerProject"},
                }
            ]
            if step.retry_delay is not None:
                details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": step.retry_delay})
            status, answer = 429, {"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED",
                                             "details": details}}  # fmt: skip
            if step.retry_after is not None:
                extra["Retry-After"] = str(step.retry_after)
        else:
            status, answer = self.peer.handle(method, path, headers, body)
        call.status, call.answer = status, answer
        with self.peer._lock:
            self.peer.calls.append(call)  # before answering: the client may look at once
        if isinstance(step, Drop):
            self.close_connection = True
            return
        if answer is None:
            self.send_body(status, b"Not Found", "text/plain", extra)
        else:
            self.send_body(status, json.dumps(answer).encode(), "application/json; charset=UTF-8", extra)


GoogleDataManagerServer.handler = _Handler
