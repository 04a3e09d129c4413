"""A local stand-in for Meta's Graph API custom-audience endpoints that enforces the documented contract (tests only).

Served on 127.0.0.1 (a random port) from a thread by the standard library's ``ThreadingHTTPServer`` with HTTP/1.1
keep-alive. Parameters are read from the query string and from a form-encoded or JSON body, as Graph does; JSON
valued parameters (``payload``, ``session``) may be JSON text or (in a JSON body) objects.

* Every call needs the access token (``Authorization: Bearer|OAuth TOKEN`` or ``access_token``): otherwise HTTP 400
  with an ``OAuthException``, code 190. The version in the path must be one this server serves (else code 2635).
* ``GET /{v}/act_{id}/customaudiences?fields=id,name&limit=&after=`` lists the account's audiences a page at a time
  (``page_size``), with ``paging.cursors`` and ``paging.next`` while more follow; an unknown account is code 100,
  subcode 33. ``POST`` of the same path creates one: ``name``, ``subtype=CUSTOM`` and a ``customer_file_source`` of
  Meta's three are required (code 100 otherwise); the answer is ``{"id"}``.
* ``POST`` (add) and ``DELETE`` (remove) ``/{v}/{audience_id}/users``: ``payload.schema`` a list of known multi-key
  names, ``payload.data`` a list of at most 10,000 rows each as long as the schema, ``session`` with an integer
  ``session_id``, ``batch_seq`` ≥ 1 that never goes back within a session (a repeat is a retry and is accepted) and
  a boolean ``last_batch_flag``; a session that sent its last batch takes no later one. A broken rule is code 100
  for the whole call. A row whose hashed values are not 64 lowercase hex digits (``EXTERN_ID`` may be any string),
  that has no value at all, or whose ``EXTERN_ID`` is in ``invalid_extern_ids`` is counted invalid and sampled in
  ``invalid_entry_samples`` *by its values*, as Meta's samples quote the data (tests check nobody copies them). The
  answer: ``{"audience_id", "session_id", "num_received", "num_invalid_entries", "invalid_entry_samples"}``.
* Each audience's members are kept in ``members[audience_id]``, keyed by the row's EMAIL hash, else its PHONE hash,
  else its EXTERN_ID: an add of a member already there replaces it, a remove of one not there changes nothing.

Tests steer the next calls with ``script(...)``: ``Throttle(code=80003)`` (HTTP 400 with ``is_transient``),
``Throttle(status=429, retry_after=3)``, ``Reply(500)`` or any canned answer, ``Drop()`` (process the call, then
close the connection without answering); ``None`` handles a call normally. ``throttle(n)`` and ``fail(n)`` script
``n`` calls at once. Every call is recorded in ``calls`` (method, path, headers, the raw body as text, and status).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.peers.http_peer import Drop, HttpPeer, PeerHandler

MAX_ROWS = 10_000
KEYS = frozenset({
    "EXTERN_ID", "EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI", "CT", "ST", "ZIP", "MADID",
    "COUNTRY", "LOOKALIKE_VALUE",
})  # fmt: skip
UNHASHED = frozenset({"EXTERN_ID", "MADID", "LOOKALIKE_VALUE"})
FILE_SOURCES = frozenset({"USER_PROVIDED_ONLY", "PARTNER_PROVIDED_ONLY", "BOTH_USER_AND_PARTNER_PROVIDED"})
_HASH = re.compile(r"[0-9a-f]{64}")
_AUDIENCES = re.compile(r"/(v[0-9]+\.[0-9]+)/act_([0-9]+)/customaudiences")
_USERS = re.compile(r"/(v[0-9]+\.[0-9]+)/([0-9]+)/users")


@dataclass(frozen=True)
class Reply:
    """A canned answer for one call (the call is not processed)."""

    status: int
    body: Any = None
    retry_after: str | int | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Throttle:
    """A throttled call: ``status`` 400 with a Graph error ``code`` and ``is_transient`` (Meta's rate limits), or
    ``status`` 429."""

    code: int = 80003
    status: int = 400
    retry_after: int | None = None


Step = Reply | Throttle | Drop | None


@dataclass
class Call:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: str
    params: dict[str, Any]
    status: int = 0
    answer: Any = None


@dataclass
class Audience:
    id: str
    account: str
    name: str
    subtype: str
    customer_file_source: str
    description: str = ""


@dataclass
class MetaGraphServer(HttpPeer[Step]):
    thread_name: ClassVar[str] = "meta-graph-peer"

    token: str = "graph-token"
    accounts: tuple[str, ...] = ("1234567890",)
    versions: tuple[str, ...] = ("v21.0", "v22.0")
    page_size: int = 25
    invalid_extern_ids: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    audiences: dict[str, Audience] = field(default_factory=dict)
    members: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    """Audience id → member key → the member's row (schema key → value)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._sessions: dict[tuple[str, int], tuple[int, bool]] = {}
        self._next_id = 23850000000000000

    # steering and looking --------------------------------------------------------------------------------------

    def throttle(self, n: int, *, code: int = 80003, status: int = 400, retry_after: int | None = None) -> None:
        self.script(*[Throttle(code=code, status=status, retry_after=retry_after)] * n)

    def fail(self, n: int, status: int = 500) -> None:
        self.script(*[Reply(status, {"error": {"message": "An unexpected error has occurred.", "type":
                                              "OAuthException", "code": 2, "is_transient": True}})] * n)  # fmt: skip

    def add_audience(self, account: str, name: str) -> str:
        """An audience made elsewhere (Ads Manager)."""
        with self._lock:
            return self._create(account, name, "CUSTOM", "USER_PROVIDED_ONLY", "")

    def audience_named(self, name: str) -> Audience | None:
        return next((a for a in self.audiences.values() if a.name == name), None)

    def users_calls(self) -> list[Call]:
        return [call for call in self.calls if call.path.endswith("/users")]

    def _create(self, account: str, name: str, subtype: str, source: str, description: str) -> str:
        self._next_id += 1
        audience = Audience(str(self._next_id), account, name, subtype, source, description)
        self.audiences[audience.id] = audience
        self.members[audience.id] = {}
        return audience.id

    # the contract ------------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        """The answer to one (unscripted) call."""
        token = params.get("access_token")
        auth = headers.get("authorization", "")
        if auth.partition(" ")[0].lower() in ("bearer", "oauth"):
            token = auth.partition(" ")[2].strip()
        if token != self.token:
            return _error(190, "Invalid OAuth access token - Cannot parse access token", kind="OAuthException")
        if m := _AUDIENCES.fullmatch(path):
            version, account = m.groups()
            if version not in self.versions:
                return _error(2635, f"You are calling a deprecated version of the Ads API ({version}).")
            if account not in self.accounts:
                return _error(100, f"Unsupported request. Object with ID 'act_{account}' does not exist", subcode=33)
            if method == "GET":
                return self._list(account, params, path)
            if method == "POST":
                return self._create_call(account, params)
            return _error(100, "Unsupported request - method type", status=400)
        if m := _USERS.fullmatch(path):
            version, audience_id = m.groups()
            if version not in self.versions:
                return _error(2635, f"You are calling a deprecated version of the Ads API ({version}).")
            if audience_id not in self.audiences:
                return _error(100, f"Unsupported post request. Object with ID '{audience_id}' does not exist",
                              subcode=33)  # fmt: skip
            if method not in ("POST", "DELETE"):
                return _error(100, "Unsupported request - method type")
            return self._users(method, audience_id, params)
        return 404, {"error": {"message": "Unknown path components", "type": "OAuthException", "code": 2500}}

    def _list(self, account: str, params: dict[str, Any], path: str) -> tuple[int, Any]:
        fields = str(params.get("fields", "id")).split(",")
        limit = min(int(params.get("limit", self.page_size) or self.page_size), self.page_size)
        start = int(params.get("after", "0") or 0)
        with self._lock:
            mine = [a for a in self.audiences.values() if a.account == account]
        page = mine[start : start + limit]
        data = [{name: getattr(a, name) for name in fields if hasattr(a, name)} | {"id": a.id} for a in page]
        body: dict[str, Any] = {"data": data}
        if page:
            body["paging"] = {"cursors": {"before": str(start), "after": str(start + len(page))}}
            if start + len(page) < len(mine):
                query = {k: v for k, v in params.items() if k != "access_token"} | {"after": start + len(page)}
                body["paging"]["next"] = f"{self.url}{path}?{urlencode(query)}&access_token={self.token}"
        return 200, body

    def _create_call(self, account: str, params: dict[str, Any]) -> tuple[int, Any]:
        name = params.get("name")
        if not isinstance(name, str) or not name.strip():
            return _error(100, "The parameter name is required")
        if params.get("subtype") != "CUSTOM":
            return _error(100, "Invalid parameter: subtype must be CUSTOM for a customer list")
        if params.get("customer_file_source") not in FILE_SOURCES:
            return _error(100, "The parameter customer_file_source is required", subcode=1870182)
        with self._lock:
            audience_id = self._create(account, name, "CUSTOM", params["customer_file_source"],
                                       str(params.get("description", "")))  # fmt: skip
        return 200, {"id": audience_id}

    def _users(self, method: str, audience_id: str, params: dict[str, Any]) -> tuple[int, Any]:
        payload = _json_param(params.get("payload"))
        if not isinstance(payload, dict):
            return _error(100, "The parameter payload is required")
        schema, data = payload.get("schema"), payload.get("data")
        if not isinstance(schema, list) or not schema or not all(isinstance(k, str) and k in KEYS for k in schema):
            return _error(100, "Invalid parameter: payload.schema must be a list of known keys", subcode=1870053)
        if len(set(schema)) != len(schema):
            return _error(100, "Invalid parameter: a key is twice in payload.schema")
        if not isinstance(data, list) or not data:
            return _error(100, "The parameter payload.data is required")
        if len(data) > MAX_ROWS:
            return _error(100, f"Too many users in the payload: at most {MAX_ROWS}", subcode=1870044)
        if not all(isinstance(row, list) and len(row) == len(schema) for row in data):
            return _error(100, "Invalid parameter: every row must have one value per schema key", subcode=1870052)
        if not all(isinstance(value, str) for row in data for value in row):
            return _error(100, "Invalid parameter: values must be strings")
        session = _json_param(params.get("session"))
        if not isinstance(session, dict):
            return _error(100, "The parameter session is required")
        session_id, seq, last = session.get("session_id"), session.get("batch_seq"), session.get("last_batch_flag")
        if not isinstance(session_id, int) or isinstance(session_id, bool) or session_id <= 0:
            return _error(100, "Invalid parameter: session.session_id must be a positive integer")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            return _error(100, "Invalid parameter: session.batch_seq must be an integer from 1")
        if not isinstance(last, bool):
            return _error(100, "Invalid parameter: session.last_batch_flag must be a boolean")
        total = session.get("estimated_num_total")
        if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
            return _error(100, "Invalid parameter: session.estimated_num_total must be a count")
        with self._lock:
            seen_seq, seen_last = self._sessions.get((audience_id, session_id), (0, False))
            if seq < seen_seq or (seen_last and seq > seen_seq):
                return _error(100, "Invalid parameter: batch_seq out of order for this session", subcode=2650)
            self._sessions[(audience_id, session_id)] = (max(seq, seen_seq), last or seen_last)
            invalid: dict[str, str] = {}
            count = 0
            members = self.members[audience_id]
            for row in data:
                values = dict(zip(schema, row, strict=True))
                problem = self._row_problem(values)
                if problem is not None:
                    count += 1
                    invalid.setdefault(",".join(row), problem)
                    continue
                key = values.get("EMAIL") or values.get("PHONE") or values.get("EXTERN_ID") or ",".join(row)
                if method == "POST":
                    members[key] = values
                else:
                    members.pop(key, None)
        samples = dict(list(invalid.items())[:10])
        return 200, {
            "audience_id": audience_id, "session_id": str(session_id), "num_received": len(data),
            "num_invalid_entries": count,
            "invalid_entry_samples": samples,
        }  # fmt: skip

    def _row_problem(self, values: dict[str, str]) -> str | None:
        if not any(values.values()):
            return "no value"
        for key, value in values.items():
            if value and key not in UNHASHED and not _HASH.fullmatch(value):
                return f"{key} is not a SHA-256 hash (64 lowercase hex digits)"
        if values.get("EXTERN_ID") in self.invalid_extern_ids:
            return "rejected"
        return None


def _error(code: int, text: str, *, subcode: int | None = None, kind: str = "OAuthException",
           status: int = 400, transient: bool = False) -> tuple[int, Any]:  # fmt: skip
    error: dict[str, Any] = {"message": text, "type": kind, "code": code, "fbtrace_id": "AbCdEf123"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient:
        error["is_transient"] = True
    return status, {"error": error}


def _json_param(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


class _Handler(PeerHandler):
    peer: MetaGraphServer
    wbufsize = 1 << 16  # the status line, headers and body leave in one write (flushed after each request)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = self.headers.get("Content-Length") or "0"
        raw = self.rfile.read(int(length)) if length.isdigit() else b""
        headers = self.lower_headers()
        parts = urlsplit(self.path)
        params: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        kind = headers.get("content-type", "").split(";")[0].strip()
        if raw and kind == "application/json":
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if isinstance(body, dict):
                params.update(body)
        elif raw:
            params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        call = Call(method, parts.path, headers, raw.decode("utf-8", "replace"), params)
        step = self.peer._next_step()
        extra: dict[str, str] = {}
        if isinstance(step, Reply):
            status, answer = step.status, step.body if step.body is not None else {}
            extra.update(step.headers)
            if step.retry_after is not None:
                extra["Retry-After"] = str(step.retry_after)
        elif isinstance(step, Throttle):
            status, answer = _error(step.code, "User request limit reached", status=step.status, transient=True)
            if step.retry_after is not None:
                extra["Retry-After"] = str(step.retry_after)
        else:
            status, answer = self.peer.handle(method, parts.path, params, headers)
        call.status, call.answer = status, answer
        with self.peer._lock:
            self.peer.calls.append(call)  # before answering: the client may look at once
        if isinstance(step, Drop):
            self.close_connection = True
            return
        self.send_body(status, json.dumps(answer).encode(), "application/json", extra)


MetaGraphServer.handler = _Handler
