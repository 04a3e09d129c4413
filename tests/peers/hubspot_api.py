"""A local stand-in for HubSpot's CRM API v3 contacts endpoints that enforces the documented contract (tests only).

Served on 127.0.0.1 (a random port) from a thread; ``url`` stands for ``https://api.hubapi.com``. Contacts are held
in memory (``contacts``: id → ``{"properties", "createdAt", "updatedAt", "archived", "archivedAt"}``) and changed
through ``add_contact``/``edit_contact``/``archive``, which date each change by the server's clock (``clock``, aware
UTC, one second later per change, unless ``at`` says when; ``lastmodifieddate`` follows ``updatedAt``). ``Date`` on
every answer is the server's clock; ``advance(seconds)`` moves it (a test's injected ``sleep`` can call it, so rate
windows pass without real waiting).

* Authentication: ``Authorization: Bearer <token>``; missing or unknown → 401 ``INVALID_AUTHENTICATION``; a token
  without ``crm.objects.contacts.read`` in ``scopes`` → 403 ``MISSING_SCOPES``. Errors are HubSpot's
  ``{status: "error", message, correlationId, category}``.
* ``GET /crm/v3/objects/contacts``: ``limit`` 1…100 (default 10), ``after`` a cursor this server issued (else 400
  ``VALIDATION_ERROR``), ``properties`` (comma-separated; unknown ones are left out, known ones without a value are
  null; ``hs_object_id``, ``createdate``, ``lastmodifieddate`` always come), ``archived=true|false`` (archived ones
  carry ``archivedAt``); results in id order, ``paging.next.after``/``link`` while more follow.
* ``POST /crm/v3/objects/contacts/search``: ``limit`` 1…200 (default 10); ``after`` an offset; no query returns more
  than ``search_cap`` results (10,000; a test may lower it): pages stop there, ``paging.next`` still offers the next
  offset while more match, and an ``after`` at or past the cap → 400 ``VALIDATION_ERROR``; at most 5 filter
  groups (OR), 10 filters a group (AND), 25 filters in all (the limits since August 2024); operators EQ, NEQ, LT,
  LTE, GT, GTE, BETWEEN (``highValue``), IN/NOT_IN (``values``), HAS_PROPERTY, NOT_HAS_PROPERTY on known properties
  (else 400); datetime values as epoch milliseconds or ISO 8601; at most one sort (ASCENDING/DESCENDING; ties in
  id order); archived contacts are never found. Answers ``{total, results, paging.next.after}`` without rate-limit
  headers (HubSpot sends none on search).
* Rate limits: with ``rate_max`` set, at most that many requests per ``rate_interval_ms`` of the server's clock;
  every other answer carries ``X-HubSpot-RateLimit-Max``/``-Remaining``/``-Interval-Milliseconds``; one over →
  429 ``RATE_LIMIT`` with ``policyName`` ``TEN_SECONDLY_ROLLING`` (``Retry-After`` only when ``retry_after`` is set).

Tests steer the next requests with ``script(...)``: ``Throttle(policy, retry_after)`` (429; ``DAILY`` for the daily
limit), ``Reply(status, body)``, ``Drop()``; ``fail_after_pages = n`` answers 502 to every request once ``n`` pages
(lists or searches) were served, until it is set back to None. Every request is recorded in ``calls``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.peers.http_peer import Drop, HttpPeer, PeerHandler

CONTACTS = "/crm/v3/objects/contacts"
SEARCH = f"{CONTACTS}/search"
SCOPE = "crm.objects.contacts.read"
PROPERTIES = frozenset({
    "email", "firstname", "lastname", "phone", "mobilephone", "date_of_birth", "hs_email_optout",
    "hs_marketable_status", "hs_timezone", "city", "state", "country", "zip", "createdate", "lastmodifieddate",
    "hs_object_id", "loyalty_tier", "email_marketing_consent", "ads_personalization_consent",
    "in_app_messaging_consent",
})  # fmt: skip
"""The account's contact properties (standard ones and the custom ones the reader asks for)."""
DATETIMES = frozenset({"createdate", "lastmodifieddate"})
NUMBERS = frozenset({"hs_object_id"})
ALWAYS = ("hs_object_id", "createdate", "lastmodifieddate")
OPERATORS = frozenset({"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
                       "NOT_HAS_PROPERTY"})  # fmt: skip


@dataclass(frozen=True)
class Reply:
    """A canned answer for one request (not processed)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Throttle:
    """429: HubSpot's rolling ten-second limit (``TEN_SECONDLY_ROLLING``) or its daily one (``DAILY``)."""

    policy: str = "TEN_SECONDLY_ROLLING"
    retry_after: int | None = None


Step = Reply | Throttle | Drop | None


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    body: Any
    headers: dict[str, str]
    status: int = 0
    count: int = 0


def error(status: int, category: str, message: str, **extra: Any) -> tuple[int, Any]:
    return status, {"status": "error", "message": message, "correlationId": "0a1b2c3d-peer", "category": category,
                    **extra}  # fmt: skip


def invalid(message: str) -> tuple[int, Any]:
    return error(400, "VALIDATION_ERROR", message)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass
class HubSpotServer(HttpPeer[Step]):
    thread_name: ClassVar[str] = "hubspot-peer"

    token: str = "pat-na1-00000000-peer-token"
    scopes: frozenset[str] = frozenset({SCOPE})
    clock: datetime = datetime(2026, 11, 20, 9, 0, 0, tzinfo=UTC)
    search_cap: int = 10_000
    rate_max: int | None = None
    rate_interval_ms: int = 10_000
    retry_after: int | None = None
    fail_after_pages: int | None = None
    pages_served: int = 0
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._next_id = 1000
        self._store_lock = threading.RLock()
        self._window_start = self.clock
        self._window_count = 0
        self._cursors: dict[str, str] = {}
        """Issued list cursors → the id the next page starts at."""

    # the store ---------------------------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        with self._store_lock:
            self.clock += timedelta(seconds=seconds)

    def _tick(self) -> datetime:
        with self._store_lock:
            self.clock += timedelta(seconds=1)
            return self.clock

    def add_contact(self, email: str | None = None, *, at: datetime | None = None, **properties: Any) -> str:
        """A contact (``at``: its create and modification time, else the next second of the clock)."""
        with self._store_lock:
            self._next_id += 1
            identity = str(self._next_id)
            when = at or self._tick()
            props = {"email": email} | {k: None if v is None else str(v) for k, v in properties.items()}
            self.contacts[identity] = {"properties": props, "createdAt": when, "updatedAt": when, "archived": False,
                                       "archivedAt": None}  # fmt: skip
            return identity

    def edit_contact(self, identity: str, *, at: datetime | None = None, **properties: Any) -> None:
        with self._store_lock:
            contact = self.contacts[identity]
            contact["properties"].update({k: None if v is None else str(v) for k, v in properties.items()})
            contact["updatedAt"] = at or self._tick()

    def archive(self, identity: str) -> None:
        with self._store_lock:
            contact = self.contacts[identity]
            contact["archived"], contact["archivedAt"] = True, self._tick()

    def _public(self, identity: str, contact: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
        values = contact["properties"] | {
            "hs_object_id": identity,
            "createdate": iso(contact["createdAt"]),
            "lastmodifieddate": iso(contact["updatedAt"]),
        }
        names = [name for name in dict.fromkeys([*wanted, *ALWAYS]) if name in PROPERTIES]
        answer = {
            "id": identity,
            "properties": {name: values.get(name) for name in names},
            "createdAt": iso(contact["createdAt"]),
            "updatedAt": iso(contact["updatedAt"]),
            "archived": contact["archived"],
        }
        if contact["archived"]:
            answer["archivedAt"] = iso(contact["archivedAt"])
        return answer

    # the contract ------------------------------------------------------------------------------------------------

    def authorize(self, headers: dict[str, str]) -> tuple[int, Any] | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.token:
            return error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found. This API supports "
                         "OAuth 2.0 authentication and you can find more details at "
                         "https://developers.hubspot.com/docs/methods/auth/oauth-overview")  # fmt: skip
        if SCOPE not in self.scopes:
            return error(403, "MISSING_SCOPES", "This app hasn't been granted all required scopes to make this call.",
                         errors=[{"message": "One or more of the following scopes are required.",
                                  "context": {"requiredScopes": [SCOPE]}}])  # fmt: skip
        return None

    def rate_limited(self) -> tuple[bool, dict[str, str]]:
        """Counts this request in the rolling window; (over the limit?, the rate-limit headers)."""
        if self.rate_max is None:
            return False, {}
        with self._store_lock:
            if self.clock >= self._window_start + timedelta(milliseconds=self.rate_interval_ms):
                self._window_start, self._window_count = self.clock, 0
            self._window_count += 1
            remaining = self.rate_max - self._window_count
        headers = {
            "X-HubSpot-RateLimit-Max": str(self.rate_max),
            "X-HubSpot-RateLimit-Remaining": str(max(remaining, 0)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.rate_interval_ms),
        }
        return remaining < 0, headers

    def list(self, params: dict[str, str]) -> tuple[int, Any]:
        limit = params.get("limit", "10")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            return invalid(f"limit must be between 1 and 100, got {limit!r}")
        archived = params.get("archived", "false")
        if archived not in ("true", "false"):
            return invalid("archived must be true or false")
        after = params.get("after")
        start = self._cursors.get(after) if after is not None else None
        if after is not None and start is None:
            return invalid(f"Invalid after: {after!r} is not a cursor this endpoint issued")
        wanted = [name.strip() for name in params.get("properties", "").split(",") if name.strip()]
        with self._store_lock:
            ids = sorted((i for i, c in self.contacts.items() if c["archived"] == (archived == "true")), key=int)
            ids = [i for i in ids if start is None or int(i) >= int(start)]
            page = ids[: int(limit)]
            results = [self._public(i, self.contacts[i], wanted) for i in page]
        body: dict[str, Any] = {"results": results}
        if len(ids) > len(page):
            following = f"{ids[len(page)]}"
            cursor = f"c{len(self._cursors) + 1:x}{following}"
            with self._store_lock:
                self._cursors[cursor] = following
            query = dict(params) | {"after": cursor}
            body["paging"] = {"next": {"after": cursor, "link": f"{self.url}{CONTACTS}?{urlencode(query)}"}}
        return 200, body

    def search(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return invalid("Invalid input JSON on line 1")
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 200:
            return invalid(f"limit must be between 1 and 200, got {limit!r}")
        after = body.get("after", "0")
        if not str(after).isdigit():
            return invalid(f"Invalid after: {after!r}")
        offset = int(after)
        if offset >= self.search_cap:
            return invalid(f"The search can't page past {self.search_cap} results (after={offset}): narrow the "
                           f"search instead.")  # fmt: skip
        groups = body.get("filterGroups", [])
        if not isinstance(groups, list) or len(groups) > 5:
            return invalid("At most 5 filterGroups")
        filters = []
        for group in groups:
            members = group.get("filters", []) if isinstance(group, dict) else None
            if not isinstance(members, list) or len(members) > 10:
                return invalid("A filterGroup holds at most 10 filters")
            for one in members:
                problem = _filter_problem(one)
                if problem:
                    return invalid(problem)
            filters.append(members)
        if sum(len(group) for group in filters) > 25:
            return invalid("At most 25 filters in all")
        sorts = body.get("sorts", [])
        if not isinstance(sorts, list) or len(sorts) > 1:
            return invalid("Only one sort is allowed")
        wanted = body.get("properties") or []
        if not isinstance(wanted, list):
            return invalid("properties must be a list")
        with self._store_lock:
            found = [(i, c) for i, c in self.contacts.items() if not c["archived"]]
            found = [(i, c) for i, c in found if not filters or any(all(_matches(i, c, f) for f in g) for g in filters)]
            found.sort(key=lambda item: int(item[0]))
            if sorts:
                name, descending = sorts[0].get("propertyName"), sorts[0].get("direction") == "DESCENDING"
                if name not in PROPERTIES or sorts[0].get("direction") not in ("ASCENDING", "DESCENDING"):
                    return invalid(f"Cannot sort by {name!r} {sorts[0].get('direction')!r}")
                found.sort(key=lambda item: _sort_key(item[0], item[1], name), reverse=descending)
            page = found[offset : min(offset + limit, self.search_cap)]
            results = [self._public(i, c, wanted) for i, c in page]
        answer: dict[str, Any] = {"total": len(found), "results": results}
        if offset + limit < len(found):
            answer["paging"] = {"next": {"after": str(offset + limit)}}
        return 200, answer


def _value(identity: str, contact: dict[str, Any], name: str) -> Any:
    if name == "hs_object_id":
        return int(identity)
    if name == "createdate":
        return _ms(contact["createdAt"])
    if name == "lastmodifieddate":
        return _ms(contact["updatedAt"])
    return contact["properties"].get(name)


def _sort_key(identity: str, contact: dict[str, Any], name: str) -> tuple[int, Any]:
    value = _value(identity, contact, name)
    return (1, "") if value is None else (0, value)


def _given(name: str, value: Any) -> Any:
    """A filter value as compared: datetimes as epoch ms (from ms or ISO 8601), numbers as numbers."""
    text = str(value)
    if name in DATETIMES:
        if text.lstrip("-").isdigit():
            return int(text)
        return _ms(datetime.fromisoformat(text.replace("Z", "+00:00")))
    if name in NUMBERS:
        return int(text)
    return text


def _filter_problem(one: Any) -> str | None:
    if not isinstance(one, dict):
        return "A filter must be an object"
    name, operator = one.get("propertyName"), one.get("operator")
    if name not in PROPERTIES:
        return f"There was a problem with the request: unknown property {name!r}"
    if operator not in OPERATORS:
        return f"Unknown operator {operator!r}"
    try:
        if operator in ("IN", "NOT_IN"):
            [_given(name, value) for value in one.get("values", [])]
        elif operator not in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            _given(name, one.get("value"))
            if operator == "BETWEEN":
                _given(name, one.get("highValue"))
    except (TypeError, ValueError):
        return f"{name}: {one.get('value')!r} is not a valid value"
    return None


def _matches(identity: str, contact: dict[str, Any], one: dict[str, Any]) -> bool:
    name, operator = one["propertyName"], one["operator"]
    actual = _value(identity, contact, name)
    if operator == "HAS_PROPERTY":
        return actual not in (None, "")
    if operator == "NOT_HAS_PROPERTY":
        return actual in (None, "")
    if operator in ("IN", "NOT_IN"):
        inside = actual in [_given(name, value) for value in one.get("values", [])]
        return inside if operator == "IN" else not inside
    if actual is None:
        return operator == "NEQ"
    value = _given(name, one.get("value"))
    if operator == "BETWEEN":
        return bool(value <= actual <= _given(name, one.get("highValue")))
    return bool({
        "EQ": actual == value, "NEQ": actual != value, "LT": actual < value, "LTE": actual <= value,
        "GT": actual > value, "GTE": actual >= value,
    }[operator])  # fmt: skip


class _Handler(PeerHandler):
    peer: HubSpotServer
    wbufsize = 1 << 16  # the status line, headers and body leave in one write (flushed after each request)

    def date_time_string(self, timestamp: float | None = None) -> str:
        return format_datetime(self.peer.clock, usegmt=True)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = self.headers.get("Content-Length") or "0"
        raw = self.rfile.read(int(length)) if length.isdigit() else b""
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = "not json"
        headers = self.lower_headers()
        call = Call(method, parts.path, params, body, headers)
        step = self.peer._next_step()
        peer = self.peer
        extra: dict[str, str] = {}
        if isinstance(step, Reply):
            status, answer, extra = step.status, step.body if step.body is not None else {}, dict(step.headers)
        elif isinstance(step, Throttle):
            status, answer, extra = _throttled(step.policy, step.retry_after, peer)
        elif peer.fail_after_pages is not None and peer.pages_served >= peer.fail_after_pages:
            status, answer = 502, {"status": "error", "message": "Bad Gateway", "category": "UNKNOWN"}
        elif (denied := peer.authorize(headers)) is not None:
            status, answer = denied
        else:
            over, limits = peer.rate_limited() if parts.path != SEARCH else (False, {})
            if over:
                status, answer, extra = _throttled("TEN_SECONDLY_ROLLING", peer.retry_after, peer)
            elif method == "GET" and parts.path == CONTACTS:
                status, answer = peer.list(params)
                extra = limits
            elif method == "POST" and parts.path == SEARCH:
                status, answer = peer.search(body)
            else:
                status, answer = error(404, "OBJECT_NOT_FOUND", "Unable to infer object type from: " + parts.path)
        call.status = status
        call.count = len(answer.get("results", [])) if isinstance(answer, dict) else 0
        with peer._lock:
            peer.calls.append(call)
            if status == 200:
                peer.pages_served += 1
        if isinstance(step, Drop):
            self.close_connection = True
            return
        self.send_body(status, json.dumps(answer).encode(), "application/json;charset=utf-8", extra)


def _throttled(policy: str, retry_after: int | None, peer: HubSpotServer) -> tuple[int, Any, dict[str, str]]:
    daily = policy == "DAILY"
    answer = {"status": "error", "message": f"You have reached your {'daily' if daily else 'secondly'} limit.",
              "errorType": "RATE_LIMIT", "correlationId": "0a1b2c3d-peer", "policyName": policy}  # fmt: skip
    if daily:
        headers = {"X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": "0"}
    else:
        headers = {"X-HubSpot-RateLimit-Max": str(peer.rate_max or 100), "X-HubSpot-RateLimit-Remaining": "0",
                   "X-HubSpot-RateLimit-Interval-Milliseconds": str(peer.rate_interval_ms)}  # fmt: skip
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return 429, answer, headers


HubSpotServer.handler = _Handler
