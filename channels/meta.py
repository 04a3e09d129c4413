"""Meta custom audiences through the Marketing API: ``OMNICAST_META_AUDIENCE_URL=meta://AD_ACCOUNT_ID``.

Each audience of ours is a customer-list custom audience named ``omnicast: <audience>`` under ``act_<AD_ACCOUNT_ID>``
(found with ``GET /{version}/act_{id}/customaudiences?fields=id,name``, following the paging cursors, and created
with ``POST`` of ``name``, ``subtype=CUSTOM`` and ``customer_file_source=USER_PROVIDED_ONLY`` when missing). Members
are added with ``POST /{version}/{audience_id}/users`` and removed (``OutboundMessage.retract``) with ``DELETE`` of
the same endpoint, in calls of at most 10,000 rows with Meta's multi-key schema (``SCHEMA``): every value normalized
as Meta documents ("Hashing and normalization for multi-key") and SHA-256 hashed, except ``EXTERN_ID`` (our customer
id), which Meta takes as it is. A removal uploads the hashes its addition uploaded (``context["identifiers"]``, kept
by the audiences flow), so it still matches after the profile changed or was erased. The calls of one audience and
operation in one ``send_batch`` form one upload session (``session_id``, ``batch_seq`` from 1, ``last_batch_flag``,
``estimated_num_total``).

The access token is ``OMNICAST_META_ACCESS_TOKEN`` (a system user's token with ``ads_management``), sent as an
``Authorization: Bearer`` header so it is never part of a URL; the Graph base URL is ``OMNICAST_META_GRAPH_URL``
(a local stand-in in tests).

How answers map onto the error tree (Graph API "Handling errors" and the Marketing API rate-limiting guide):

* Throttling, HTTP 429 or an error with code 4, 17, 32, 613, 80003 or 80004, and any error Meta marks
  ``is_transient``, and HTTP 5xx: retried with exponential backoff and jitter (honouring ``Retry-After`` and the
  ``estimated_time_to_regain_access`` of Meta's usage headers), at most ``max_retries`` times and ``max_retry_wait``
  seconds in all; then every message of the call is ``RetryableChannelError``.
* No connection, a timeout, or a connection dropped after the request was sent: retried the same way. This is safe
  because Meta matches members by their hashes: adding a person twice, or removing one who is not (or no longer) in
  the audience, leaves the audience as one call would, so repeating a ``/users`` call whose answer was lost cannot
  double anything. (Creating an audience is not idempotent: after a lost answer the list is read again before
  creating, so a retry does not make a second audience.)
* OAuthException 190 (bad or expired token), permission errors (10, 200-299), a deprecated API version, an ad
  account Meta does not know, a redirect or a 404 without a Graph error: ``ChannelConfigError`` (stop the run),
  raised only while nothing of the ``send_batch`` call was handed over; afterwards the rest is retryable and the next
  call stops the run.
* Any other 4xx (code 100 *invalid parameter*, …): ``PermanentChannelError`` for the messages of that call.
* HTTP 200: ``num_received`` and ``num_invalid_entries`` are counted (``stats``); Meta does not say which rows were
  invalid, so the call's messages are sent unless every row was invalid (then permanent).

A message without a usable email or phone fails permanently before any upload. Logs and errors carry counts, HTTP
statuses and Graph error codes only: never an identifier (plain or hashed), never the token, and never Meta's
``message`` or ``invalid_entry_samples`` texts, which may quote the data.
"""

from __future__ import annotations

import json
import logging
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import Field

from channels.ads import (
    birth_parts,
    normalize_city,
    normalize_country,
    normalize_email,
    normalize_name_meta,
    normalize_phone_meta,
    normalize_state_meta,
    normalize_zip,
    sha256_hex,
)
from channels.audience_api import HEX64, AudienceApiChannel, Call, ChunkResults, Operation, check_token, results_for
from channels.base import ChannelConfigError, ChannelError, DeliveryResult, PermanentChannelError, RetryableChannelError
from channels.http import ConfigStop, Retry, checked_base_url, json_object, retry_after_seconds, secret_text
from channels.spec import AdapterOptions, ChannelResources, ChannelTarget
from models.message import OutboundMessage

__all__ = [
    "AUDIENCE_PREFIX", "MAX_ROWS", "SCHEMA", "MetaAudienceApi", "MetaAudienceChannel", "MetaOptions",
    "graph_identifiers", "graph_row", "normalize_state_meta",
]  # fmt: skip

log = logging.getLogger(__name__)

TOKEN_SETTING = "OMNICAST_META_ACCESS_TOKEN"
GRAPH_SETTING = "OMNICAST_META_GRAPH_URL"
DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"
AUDIENCE_PREFIX = "omnicast: "
MAX_ROWS = 10_000
"""Rows per ``/users`` call: Meta's limit."""
SCHEMA: tuple[str, ...] = (
    "EMAIL", "PHONE", "FN", "LN", "ZIP", "CT", "ST", "COUNTRY", "DOBY", "DOBM", "DOBD", "GEN", "EXTERN_ID",
)  # fmt: skip
"""Meta's multi-key schema, in the order of every row; ``EXTERN_ID`` is the only value not hashed."""
UNHASHED = frozenset({"EXTERN_ID"})
THROTTLE_CODES = frozenset({4, 17, 32, 613, 80003, 80004})
"""Graph error codes that mean "too many calls, try later" (application, user, page, ad-account and custom-audience
rate limits)."""
PAGE_LIMIT = 500
MAX_PAGES = 1_000

_METHOD: dict[Operation, str] = {"add": "POST", "remove": "DELETE"}
_ACCOUNT = re.compile(r"(?:act_)?([0-9]{1,20})")

# rows ------------------------------------------------------------------------------------------------------------


def graph_row(message: OutboundMessage, default_country: str | None = None) -> list[str]:
    """One row in ``SCHEMA`` order: each value normalized then hashed, ``""`` where unknown; ``EXTERN_ID`` plain.

    A removal (``retract``) uploads the hashes its addition uploaded, kept in ``context["identifiers"]`` (keys as
    ``channels.ads.identifiers`` writes them, ``email``, ``phone``, …, in any case), whatever became of the profile
    since; only when those hold neither an email nor a phone hash is the row made from today's profile.
    """
    if message.retract:
        stored = stored_row(message)
        if stored is not None:
            return stored
    return profile_row(message, default_country)


def profile_row(message: OutboundMessage, default_country: str | None = None) -> list[str]:
    """The row of the recipient's profile. ``default_country`` (ISO alpha-2) reads phone numbers and ZIP codes of a
    recipient without a country; the ``COUNTRY`` cell stays empty for them (we do not know it). Gender is not known
    to omnicast: ``GEN`` is empty."""
    r = message.recipient
    region = r.country or default_country
    doby, dobm, dobd = birth_parts(r.birthday)
    values = {
        "EMAIL": normalize_email(r.email),
        "PHONE": normalize_phone_meta(r.phone, region),
        "FN": normalize_name_meta(r.first_name),
        "LN": normalize_name_meta(r.last_name),
        "ZIP": normalize_zip(r.zip, region),
        "CT": normalize_city(r.city),
        "ST": normalize_state_meta(r.region, region),
        "COUNTRY": normalize_country(r.country),
        "DOBY": doby,
        "DOBM": dobm,
        "DOBD": dobd,
        "GEN": None,
    }
    row = [sha256_hex(value) if value else "" for value in (values[key] for key in SCHEMA[:-1])]
    return [*row, str(r.customer_id)]


def stored_row(message: OutboundMessage) -> list[str] | None:
    """The row of the hashes kept in ``context["identifiers"]``; ``None`` unless they hold an email or phone hash.
    Only SHA-256 hashes are taken (a plain value there is dropped, never uploaded)."""
    stored = message.context.get("identifiers")
    if not isinstance(stored, dict):
        return None
    hashes = {str(key).upper(): value for key, value in stored.items() if isinstance(value, str)}
    row = [hashes.get(key, "") if HEX64.fullmatch(hashes.get(key, "")) else "" for key in SCHEMA[:-1]]
    if not row[0] and not row[1]:
        return None
    return [*row, str(message.customer_id)]


def graph_identifiers(message: OutboundMessage, default_country: str | None = None) -> dict[str, str]:
    """The hashes an addition uploads, as ``audience_members.identifiers`` keeps them (lowercase ``SCHEMA`` names,
    empty cells and ``EXTERN_ID`` left out): stored, they make the removal's row the addition's row."""
    row = graph_row(message, default_country)
    return {key.lower(): value for key, value in zip(SCHEMA[:-1], row, strict=False) if value}


def has_key(message: OutboundMessage) -> bool:
    """Whether the message has something Meta matches people by: an email or phone (stored hashes for a removal)."""
    if message.retract and stored_row(message) is not None:
        return True
    return bool(message.recipient.email or message.recipient.phone)


def audience_name(message: OutboundMessage) -> str:
    """The custom audience's name at Meta: ``omnicast: <audience>`` (the campaign when the message names none)."""
    return AUDIENCE_PREFIX + (message.audience or message.campaign or "audience").strip()


# the adapter -----------------------------------------------------------------------------------------------------


class MetaOptions(AdapterOptions):
    """``meta://AD_ACCOUNT_ID?api_version=v21.0&timeout=60&max_retries=4&max_retry_wait=120``."""

    api_version: str = Field(DEFAULT_API_VERSION, pattern=r"^v[0-9]{1,3}\.[0-9]{1,2}$",
                             description="Graph API version, e.g. v21.0")  # fmt: skip
    timeout: float = Field(60.0, gt=0, le=600, description="seconds to connect, send and wait for each answer")
    max_retries: int = Field(4, ge=0, le=10, description="retries of a call that was throttled, 5xx or not answered")
    max_retry_wait: float = Field(120.0, ge=0, le=900, description="seconds of backoff a call may wait in all")


class MetaAudienceApi:
    """The adapter: ``meta://AD_ACCOUNT_ID`` (digits, or ``act_`` and digits) opens a ``MetaAudienceChannel``."""

    schemes: ClassVar[tuple[str, ...]] = ("meta",)
    Options: ClassVar[type[AdapterOptions]] = MetaOptions

    @classmethod
    def open_channel(cls, target: ChannelTarget, resources: ChannelResources) -> MetaAudienceChannel:
        options: MetaOptions = target.options
        account = ad_account(target)
        token = secret_text(getattr(resources.settings, "meta_access_token", None))
        if not token:
            raise ChannelConfigError(
                f"{target.setting}=meta://{account} needs {TOKEN_SETTING}: a Marketing API access token with "
                "ads_management (a system user's token from Business Settings)"
            )
        base_url = graph_url(getattr(resources.settings, "meta_graph_url", None) or DEFAULT_GRAPH_URL)
        default_country = getattr(resources.settings, "default_country", None)
        return MetaAudienceChannel(
            token, account, api_version=options.api_version, base_url=base_url, timeout=options.timeout,
            max_retries=options.max_retries, max_retry_wait=options.max_retry_wait,
            default_country=default_country if isinstance(default_country, str) else None, setting=target.setting,
        )  # fmt: skip


# the channel -----------------------------------------------------------------------------------------------------


class _Lost(Exception):
    """A call that may have been processed but whose answer never came (only for calls that are not idempotent)."""


@dataclass
class _GraphError(Exception):
    """A final (not retried) error answer, by its numbers only (Meta's texts may quote the data)."""

    status: int
    code: int | None
    subcode: int | None
    kind: str | None

    def describe(self) -> str:
        parts = [f"HTTP {self.status}"]
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.subcode is not None:
            parts.append(f"subcode {self.subcode}")
        if self.kind:
            parts.append(self.kind)
        return ", ".join(parts)


class MetaAudienceChannel(AudienceApiChannel[list[str]]):
    """Meta customer-list custom audiences kept in sync through the Marketing API (see the module docstring).

    ``client`` is used as given (tests inject one) and then left open by ``close``; without one the channel builds
    its own and closes it. ``sleep``, ``jitter`` (a float in [0, 1)), ``now`` (for an HTTP-date ``Retry-After``) and
    ``session_ids`` (a new upload session's id) are injectable so tests run without waiting. ``max_rows`` is the rows
    per ``/users`` call (Meta's limit, 10,000; smaller in tests). ``stats`` counts calls, rows and invalid rows.
    """

    name = "meta"
    batch_size = MAX_ROWS
    """Meta cannot be asked who an audience holds, but takes up to 10,000 rows per call: whole batches go over."""
    user_agent = "omnicast (meta custom audiences)"

    def __init__(
        self,
        token: str,
        ad_account: str,
        *,
        client: httpx.Client | None = None,
        api_version: str = DEFAULT_API_VERSION,
        base_url: str = DEFAULT_GRAPH_URL,
        timeout: float = 60.0,
        max_rows: int = MAX_ROWS,
        max_retries: int = 4,
        max_retry_wait: float = 120.0,
        default_country: str | None = None,
        setting: str = "OMNICAST_META_AUDIENCE_URL",
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        session_ids: Callable[[], int] | None = None,
    ) -> None:
        check_token(token, TOKEN_SETTING)
        match = _ACCOUNT.fullmatch(ad_account)
        if match is None:
            raise ChannelConfigError(f"{setting}: the ad account id must be digits (or act_ and digits)")
        if not 1 <= max_rows <= MAX_ROWS:
            raise ValueError(f"max_rows must be between 1 and {MAX_ROWS}")
        super().__init__(
            token, client=client, base_url=base_url, timeout=timeout, max_retries=max_retries,
            max_retry_wait=max_retry_wait, setting=setting, sleep=sleep, jitter=jitter, now=now,
        )  # fmt: skip
        self.account = match.group(1)
        self.api_version = api_version
        self.max_rows = max_rows
        self.default_country = default_country
        self.session_ids = session_ids or (lambda: secrets.randbelow(2**63 - 1) + 1)
        self.audience_ids: dict[str, str] = {}
        """Audience name → Meta's custom audience id, found or created once per channel."""

    def __repr__(self) -> str:  # never the token
        return f"MetaAudienceChannel(account='act_{self.account}', api_version={self.api_version!r})"

    # channel ---------------------------------------------------------------------------------------------------

    def can_reach(self, message: OutboundMessage) -> str | None:
        """An audience member needs an email or a phone number to be matched (a removal: the hashes its addition
        uploaded, or a profile with either)."""
        return None if has_key(message) else "no_address"

    def _group_of(self, message: OutboundMessage) -> tuple[str, list[str]] | ChannelError:
        """The custom audience's name and the message's row (``graph_row``); permanent without an email or phone."""
        row = graph_row(message, self.default_country)
        if not row[0] and not row[1]:
            return PermanentChannelError("no usable email or phone")
        return audience_name(message), row

    # one audience and operation ------------------------------------------------------------------------------------

    def _upload_group(
        self, call: Call, key: str, operation: Operation, members: list[tuple[int, list[str]]]
    ) -> dict[int, DeliveryResult]:
        try:
            audience_id = self._audience_id(key)
        except ConfigStop as stop:
            return self._stopping(call, stop.error, members)
        except ChannelError as exc:
            log.warning("Meta audience lookup failed (%s); %d message(s) not sent", type(exc).__name__, len(members))
            return results_for(members, DeliveryResult.failed(exc))
        return self._upload(call, audience_id, key, operation, members)

    def _upload(
        self, call: Call, audience_id: str, name: str, operation: Operation, members: list[tuple[int, list[str]]]
    ) -> dict[int, DeliveryResult]:
        """One upload session: ``/users`` calls of at most ``max_rows`` rows, ``batch_seq`` 1, 2, …"""
        session_id = self.session_ids()

        def upload(seq: int, count: int, chunk: list[tuple[int, list[str]]]) -> ChunkResults:
            session = {"session_id": session_id, "batch_seq": seq, "last_batch_flag": seq == count,
                       "estimated_num_total": len(members)}  # fmt: skip
            payload = {"schema": list(SCHEMA), "data": [row for _, row in chunk]}
            data = {"payload": json.dumps(payload, separators=(",", ":")), "session": json.dumps(session)}
            path = f"/{self.api_version}/{audience_id}/users"
            try:
                answer = self._request(_METHOD[operation], path, data=data)
            except ConfigStop as stop:
                return self._stopping(call, stop.error, chunk), None
            except _GraphError as exc:
                error = self._users_error(exc, name)
                given_up = None
                if isinstance(error, RetryableChannelError):
                    given_up = DeliveryResult.failed(RetryableChannelError(f"not sent: {error}"))
                return results_for(chunk, DeliveryResult.failed(error)), given_up
            except RetryableChannelError as exc:
                given_up = DeliveryResult.failed(RetryableChannelError(f"not sent: {exc}"))
                return results_for(chunk, DeliveryResult.failed(exc)), given_up
            call.handed_over = True
            return self._accepted(answer, chunk, operation, f"meta:{audience_id}:{session_id}"), None

        return self.upload_chunks(call, members, self.max_rows, upload)

    def _accepted(
        self, answer: dict[str, Any], chunk: list[tuple[int, list[str]]], operation: Operation, provider_id: str
    ) -> dict[int, DeliveryResult]:
        """An answered ``/users`` call: counts logged and kept in ``stats`` (never the samples, which hold data)."""
        received = _count(answer.get("num_received"))
        invalid = _count(answer.get("num_invalid_entries")) or 0
        self.stats["calls"] += 1
        self.stats[f"rows_{operation}"] += len(chunk)
        self.stats["invalid_rows"] += invalid
        if received is not None and received != len(chunk):
            log.warning("Meta received %d of %d rows of a %s call", received, len(chunk), operation)
        if invalid:
            log.warning("Meta found %d of %d rows of a %s call invalid", invalid, len(chunk), operation)
        if invalid >= len(chunk):
            error = PermanentChannelError(f"Meta found every row of the call invalid ({invalid} of {len(chunk)})")
            return results_for(chunk, DeliveryResult.failed(error))
        log.info("Meta custom audience: %s %d row(s)", "added" if operation == "add" else "removed", len(chunk))
        return results_for(chunk, DeliveryResult.sent(provider_id))

    def _users_error(self, exc: _GraphError, name: str) -> ChannelError:
        """A final error answer of a ``/users`` call."""
        if exc.code == 100 and exc.subcode == 33:  # the audience was deleted at Meta since we looked it up
            self.audience_ids.pop(name, None)
            return RetryableChannelError(
                f"the custom audience is gone at Meta ({exc.describe()}); it is looked up (or created) again next time"
            )
        return PermanentChannelError(f"Meta refused the call ({exc.describe()})")

    # audiences ---------------------------------------------------------------------------------------------------

    def _audience_id(self, name: str) -> str:
        """The id of the custom audience ``name``: cached, else found in the ad account's list, else created."""
        if name in self.audience_ids:
            return self.audience_ids[name]
        found = self._find(name)
        if found is None:
            found = self._create(name)
        self.audience_ids[name] = found
        return found

    def _find(self, name: str) -> str | None:
        """Page through ``act_{id}/customaudiences`` (by the ``after`` cursor; never a ``next`` URL as given)."""
        params: dict[str, str] = {"fields": "id,name", "limit": str(PAGE_LIMIT)}
        path = f"/{self.api_version}/act_{self.account}/customaudiences"
        for _ in range(MAX_PAGES):
            try:
                answer = self._request("GET", path, params=params)
            except _GraphError as exc:
                raise self._account_error(exc) from None
            data = answer.get("data")
            if not isinstance(data, list):
                raise RetryableChannelError("Meta's list of custom audiences was unreadable")
            matches = [a["id"] for a in data if isinstance(a, dict) and a.get("name") == name and a.get("id")]
            if matches:
                return str(matches[0])
            paging = _dict(answer.get("paging"))
            after = _dict(paging.get("cursors")).get("after")
            if not paging.get("next") or not isinstance(after, str) or not after:
                return None
            params = {**params, "after": after}
        raise RetryableChannelError(f"more than {MAX_PAGES} pages of custom audiences; not looked through")

    def _create(self, name: str) -> str:
        data = {
            "name": name,
            "subtype": "CUSTOM",
            "customer_file_source": "USER_PROVIDED_ONLY",
            "description": "Kept in sync by omnicast: members are added and removed by its audience sync.",
        }
        path = f"/{self.api_version}/act_{self.account}/customaudiences"
        try:
            answer = self._request("POST", path, data=data, idempotent=False)
        except _Lost:
            found = self._find(name)  # the audience may have been created: never make a second one
            if found is not None:
                return found
            raise RetryableChannelError("Meta's answer to creating the custom audience was lost") from None
        except _GraphError as exc:
            raise self._account_error(exc) from None
        audience_id = answer.get("id")
        if not isinstance(audience_id, str | int) or not str(audience_id).isdigit():
            raise RetryableChannelError("Meta's answer to creating the custom audience had no id")
        log.info("Created a Meta custom audience under act_%s", self.account)
        return str(audience_id)

    def _account_error(self, exc: _GraphError) -> ChannelError | ConfigStop:
        if (exc.code == 100 and exc.subcode == 33) or exc.code == 803:
            return ConfigStop(self._config(
                f"Meta does not know ad account act_{self.account}, or the token may not use it ({exc.describe()})"
            ))  # fmt: skip
        return PermanentChannelError(f"Meta refused the custom audience call ({exc.describe()})")

    # HTTP ------------------------------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, params: dict[str, str] | None = None, data: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:  # fmt: skip
        """One Graph call with its retries: the answer, or ``_GraphError`` (final error answer), ``ConfigStop``
        (configuration), ``_Lost`` (answer lost, ``idempotent=False`` only) or ``RetryableChannelError`` (gave up)."""
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

        def attempt() -> dict[str, Any] | Retry:
            try:
                response = self.client.request(method, url, params=params, data=data, headers=headers)
            except httpx.UnsupportedProtocol as exc:
                raise ConfigStop(ChannelConfigError(f"{GRAPH_SETTING} is not an http(s) URL")) from exc
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError) as exc:
                return Retry(f"{type(exc).__name__} (not connected)")
            except httpx.TransportError as exc:  # sent, answer lost: a /users call may be repeated (see above)
                if not idempotent:
                    log.warning("Meta %s call: %s after the request was sent", method, type(exc).__name__)
                    raise _Lost() from exc
                return Retry(f"{type(exc).__name__} (answer lost; the call is repeated, which Meta takes as one)")
            answer = json_object(response)
            error = _dict(answer.get("error")) or None
            status = response.status_code
            if 200 <= status < 300 and error is None:
                return answer
            graph = _graph_error(status, error)
            throttled = status == 429 or graph.code in THROTTLE_CODES
            transient = bool(error and error.get("is_transient") is True)
            if not (throttled or transient or status >= 500):
                raise self._final(graph, response)
            return Retry(graph.describe() + (" (throttled)" if throttled else ""), _retry_after(response, self.now()))

        return self._retrying(attempt, doing=f"Meta {method} call", who="Meta", api="Meta Graph API", log=log)

    def _final(self, graph: _GraphError, response: httpx.Response) -> _GraphError | ConfigStop:
        """A non-retried error answer: a stop when it says the configuration is wrong, else the numbers."""
        code, status = graph.code, graph.status
        if code in (102, 190) or (status == 401 and code is None):
            return ConfigStop(ChannelConfigError(
                f"{TOKEN_SETTING}: Meta refused the access token ({graph.describe()}); it is invalid, expired or "
                "revoked: make a new system-user token with ads_management"
            ))  # fmt: skip
        if code is not None and (code == 10 or 200 <= code <= 299 or code == 294):
            return ConfigStop(self._config(
                f"the access token may not manage act_{self.account}'s audiences ({graph.describe()}); give its "
                "system user the ad account with ads_management and accept the custom audience terms"
            ))  # fmt: skip
        if code in (12, 2635):
            return ConfigStop(self._config(f"Meta no longer serves API {self.api_version} ({graph.describe()}); "
                                      "set ?api_version= to a current version"))  # fmt: skip
        if 300 <= status < 400:
            return ConfigStop(ChannelConfigError(f"{GRAPH_SETTING}: the API answered with a redirect (HTTP {status})"))
        if code is None and status in (404, 405):
            return ConfigStop(ChannelConfigError(
                f"{GRAPH_SETTING}: HTTP {status} without a Graph error for {response.request.method} "
                f"{self.base_url}/{self.api_version}/…; use the Graph base URL, e.g. {DEFAULT_GRAPH_URL}"
            ))  # fmt: skip
        return graph

    def _config(self, text: str) -> ChannelConfigError:
        return ChannelConfigError(f"{self.setting}: {text}")


# helpers -----------------------------------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    """A count as Meta writes it (a number, sometimes a numeric string)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return _int(value)


def _graph_error(status: int, error: dict[str, Any] | None) -> _GraphError:
    if error is None:
        return _GraphError(status, None, None, None)
    kind = error.get("type")
    return _GraphError(status, _int(error.get("code")), _int(error.get("error_subcode")),
                       kind if isinstance(kind, str) and kind.isidentifier() else None)  # fmt: skip


def _retry_after(response: httpx.Response, now: datetime) -> float | None:
    """Seconds to wait: ``Retry-After`` (delta-seconds or an HTTP-date, ``retry_after_seconds``), else the largest
    ``estimated_time_to_regain_access`` (minutes) in Meta's ``X-Business-Use-Case-Usage`` header."""
    seconds = retry_after_seconds(response.headers.get("Retry-After"), now)
    if seconds is not None:
        return seconds
    usage = response.headers.get("X-Business-Use-Case-Usage")
    if not usage:
        return None
    try:
        parsed = json.loads(usage)
    except ValueError:
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in (parsed.values() if isinstance(parsed, dict) else ())
        for entry in (entries if isinstance(entries, list) else ())
        if isinstance(entry, dict)
    ]
    waits = [m for m in minutes if isinstance(m, int | float) and not isinstance(m, bool) and m > 0]
    return 60.0 * max(waits) if waits else None


def ad_account(target: ChannelTarget) -> str:
    """The digits of ``meta://AD_ACCOUNT_ID`` (``act_`` accepted); ``ChannelConfigError`` naming the setting."""
    parts = target.parts
    fix = f"use {target.setting}=meta://AD_ACCOUNT_ID (the ad account's number, e.g. meta://1234567890)"
    if parts.username or parts.password or parts.port or parts.path not in ("", "/") or parts.fragment:
        raise ChannelConfigError(f"{target.setting}: a Meta URL is the ad account alone; {fix}")
    match = _ACCOUNT.fullmatch((parts.hostname or "").lower())
    if match is None:
        raise ChannelConfigError(f"{target.setting}: the ad account id must be digits (or act_ and digits); {fix}")
    return match.group(1)


def graph_url(value: str) -> str:
    """``OMNICAST_META_GRAPH_URL`` checked: an http(s) base URL without credentials, query or fragment. Plain http
    is accepted (a local stand-in) but logged when the host is not a loopback address (the token would travel
    unencrypted)."""
    fix = f"use the Graph base URL, e.g. {DEFAULT_GRAPH_URL} (or http://127.0.0.1:PORT for a local stand-in)"
    return checked_base_url(value, GRAPH_SETTING, fix=fix, exposed="the access token travels unencrypted", logger=log)
