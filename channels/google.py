"""Google Customer Match through the Data Manager API: ``OMNICAST_GOOGLE_AUDIENCE_URL=google://ACCOUNT_ID?lists=…``.

``google://1234567890?lists=churn-risk:111,high-value:222`` keeps each named audience of ours in step with a Customer
Match user list of Google Ads account 1234567890 (dashes as in ``123-456-7890`` are accepted): the list's id is the
destination's ``productDestinationId``. ``?account_type=`` is the operating account's type (``GOOGLE_ADS`` by
default), ``?login_account=`` a manager account the token's user signs in through. An audience the URL does not map
fails permanently, naming the audience and the option to set. The lists are made in Google Ads (Audience manager →
Customer list); this adapter never creates one.

Members are added with ``POST /v1/audienceMembers:ingest`` and removed (``OutboundMessage.retract``) with
``POST /v1/audienceMembers:remove``, at most 10,000 members per request, one request per user list and operation.
Each member is ``{"userData": {"userIdentifiers": [...]}}`` with up to three identifiers: ``emailAddress`` and
``phoneNumber`` (SHA-256, lowercase hex, ``encoding: HEX``) and, only when given name, family name, country and postal
code are all known, ``address`` (``givenName``/``familyName`` hashed, ``regionCode`` and ``postalCode`` plain, as
Google asks). The values are ``channels.ads.identifiers("google", message)``, exactly what the audiences flow keeps
in ``audience_members.identifiers`` (Email with Google's gmail.com/googlemail.com rule: no dots, no ``+tag``; Phone
E.164; names lowercase without punctuation; Country; Zip): a removal uploads those stored values
(``context["identifiers"]``), so it still matches after the profile changed or was erased; a stored value that should
be a hash and is not is dropped, never uploaded. An ingest request carries request-level consent
``{adUserData, adPersonalization}: CONSENT_GRANTED`` (the gate only lets people through whose ads consent is granted)
and ``termsOfService.customerMatchTermsOfServiceStatus: ACCEPTED`` (configuring this URL is accepting Google's
Customer Match terms for the account); a remove request carries neither (its schema has no such fields).

The token is ``OMNICAST_GOOGLE_ACCESS_TOKEN``: an OAuth 2.0 access token with the
``https://www.googleapis.com/auth/datamanager`` scope, sent as ``Authorization: Bearer``. Google's access tokens
expire (about an hour): whoever starts the run supplies a fresh one. The API base URL is
``OMNICAST_GOOGLE_DATAMANAGER_URL`` (a local stand-in in tests).

How answers map onto the error tree (Google's error model, ``google.rpc.Status``: ``error.code`` HTTP status,
``error.status`` canonical code, ``error.details`` with ``ErrorInfo``, ``BadRequest`` field violations, ``RetryInfo``):

* HTTP 429 ``RESOURCE_EXHAUSTED`` (300 requests a minute per project), 408, 409 ``ABORTED`` and 5xx
  (``INTERNAL``, ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``): retried with exponential backoff and jitter, honouring
  ``Retry-After`` or a ``RetryInfo.retryDelay``, at most ``max_retries`` times and ``max_retry_wait`` seconds in all;
  then every member of the request is ``RetryableChannelError``, and the later requests of the call are not tried.
* No connection, a timeout, or an answer lost after the request was sent: retried the same way. Safe: a user list is
  a set, so adding a person twice, or removing one who is not in the list, leaves it as one request would.
* 401 ``UNAUTHENTICATED`` (bad or expired token), 403 ``PERMISSION_DENIED`` (no access to the account, API not
  enabled for the token's project, scope missing), a redirect, or a 404/405 without a Google error:
  ``ChannelConfigError`` (stop the run), raised only while nothing of the ``send_batch`` call went over; afterwards
  the rest is retryable and the next call stops the run.
* 400 ``INVALID_ARGUMENT`` whose field violations name members (``audience_members[i]``): Google rejects the whole
  request (fast fail), so those members fail permanently and the request is sent again without them. Any other 4xx
  (an unknown user list ``INVALID_USER_LIST_ID``, …): ``PermanentChannelError`` for the request's members.
* HTTP 200: ``{"requestId"}``; every member of the request is sent, provider id ``google:<user list id>:<requestId>``.

Logs and errors carry counts, HTTP statuses, canonical codes and Google's error reasons only: never an identifier
(plain or hashed), never the token, never Google's free-text messages.

Relied on (developers.google.com/data-manager): REST reference ``audienceMembers.ingest`` and ``audienceMembers.remove``
(request fields, at most 10,000 members, ``{"requestId"}``, scope ``auth/datamanager``), ``Destination`` and
``ProductAccount`` (``operatingAccount {accountType, accountId}``, ``loginAccount``, ``productDestinationId``; the
older ``product`` field is deprecated), ``AudienceMember``/``UserData``/``AddressInfo``, ``TermsOfService``,
``Consent``, ``ErrorReason``; the guides "Format user data" (normalization, which fields are hashed, gmail rule),
"Send audience members" (request and error examples, field violation paths), "Understand API errors" (fast-fail
model, detail payloads) and "Limits and quotas" (300 requests/minute, 429 ``RESOURCE_EXHAUSTED``; 10,000 members and
10 identifiers per member).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, field_validator

from channels.ads import identifiers
from channels.audience_api import HEX64, AudienceApiChannel, Call, ChunkResults, Operation, check_token, results_for
from channels.base import ChannelConfigError, ChannelError, DeliveryResult, PermanentChannelError, RetryableChannelError
from channels.http import ConfigStop, Retry, checked_base_url, json_object, retry_after_seconds, secret_text
from channels.spec import AdapterOptions, ChannelResources, ChannelTarget
from models.message import OutboundMessage

__all__ = [
    "MAX_MEMBERS", "GoogleCustomerMatchChannel", "GoogleDataManagerApi", "GoogleOptions", "audience_member",
    "member_values", "parse_lists", "user_identifiers",
]  # fmt: skip

log = logging.getLogger(__name__)

TOKEN_SETTING = "OMNICAST_GOOGLE_ACCESS_TOKEN"
URL_SETTING = "OMNICAST_GOOGLE_DATAMANAGER_URL"
DEFAULT_URL = "https://datamanager.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/datamanager"
MAX_MEMBERS = 10_000
"""Audience members per ingest or remove request: Google's limit."""
ACCOUNT_TYPES = ("GOOGLE_ADS", "DISPLAY_VIDEO_ADVERTISER", "DISPLAY_VIDEO_PARTNER", "DATA_PARTNER")
CONSENT = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}
TERMS = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
RETRY_STATUSES = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED"})

_PATH: dict[Operation, str] = {"add": "/v1/audienceMembers:ingest", "remove": "/v1/audienceMembers:remove"}
_ID = re.compile(r"[0-9]{1,20}")
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_MEMBER_FIELD = re.compile(r"audience_?members\[([0-9]{1,5})\]", re.IGNORECASE)
_DELAY = re.compile(r"([0-9]{1,6}(?:\.[0-9]{1,9})?)s")
HASHED = ("email", "phone", "firstname", "lastname")


# members ---------------------------------------------------------------------------------------------------------


def _key(name: str) -> str:
    """``"First Name"``, ``first_name``, ``FIRSTNAME`` → ``firstname``."""
    return re.sub(r"[^a-z]", "", name.lower())


def _clean(values: Mapping[str, Any]) -> dict[str, str]:
    """Only what may go to Google: SHA-256 hex for Email, Phone, First Name and Last Name, a 2-letter Country (upper
    case) and a plain Zip (a hash or anything long there is dropped). Keys as ``_key`` writes them."""
    out: dict[str, str] = {}
    for name, raw in values.items():
        key, value = _key(str(name)), raw.strip() if isinstance(raw, str) else ""
        if not value:
            continue
        if key in HASHED:
            if HEX64.fullmatch(value.lower()):
                out[key] = value.lower()
        elif key == "country":
            if re.fullmatch(r"[A-Za-z]{2}", value):
                out[key] = value.upper()
        elif key == "zip" and len(value) <= 16 and not HEX64.fullmatch(value.lower()) and value.isprintable():
            out[key] = value
    return out


def member_values(message: OutboundMessage) -> dict[str, str]:
    """What is uploaded for the message's person: ``identifiers("google", message)`` (the values the audiences flow
    stores); for a removal, the stored values in ``context["identifiers"]`` when they hold a usable identifier (else
    today's profile)."""
    if message.retract:
        stored = message.context.get("identifiers")
        if isinstance(stored, dict):
            kept = _clean(stored)
            if user_identifiers(kept):
                return kept
    return _clean(identifiers("google", message))


def user_identifiers(values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The ``UserData.userIdentifiers`` of ``member_values``: email, phone, and the address only when given name,
    family name, region code and postal code are all there."""
    found: list[dict[str, Any]] = []
    if values.get("email"):
        found.append({"emailAddress": values["email"]})
    if values.get("phone"):
        found.append({"phoneNumber": values["phone"]})
    address = [values.get(key) for key in ("firstname", "lastname", "country", "zip")]
    if all(address):
        given, family, region, postal = address
        found.append({"address": {"givenName": given, "familyName": family, "regionCode": region,
                                  "postalCode": postal}})  # fmt: skip
    return found


def audience_member(message: OutboundMessage) -> dict[str, Any] | None:
    """The ``AudienceMember`` of one message, or ``None`` when nothing identifies the person."""
    found = user_identifiers(member_values(message))
    return {"userData": {"userIdentifiers": found}} if found else None


def audience_of(message: OutboundMessage) -> str:
    """The audience a message is about: ``message.audience`` (the campaign when it names none)."""
    return (message.audience or message.campaign or "").strip()


def parse_lists(text: str) -> dict[str, str]:
    """``churn-risk:111,high-value:222`` → ``{"churn-risk": "111", "high-value": "222"}``; ``ValueError`` otherwise."""
    lists: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, colon, list_id = (s.strip() for s in part.rpartition(":"))
        if not colon or not name or not _ID.fullmatch(list_id):
            raise ValueError(
                f"{part!r} is not AUDIENCE:USER_LIST_ID (the user list id is digits, e.g. churn-risk:1234)"
            )
        if name in lists:
            raise ValueError(f"audience {name!r} is given twice")
        lists[name] = list_id
    return lists


def _account_id(value: str) -> str | None:
    """A Google account id: digits, dashes allowed (``123-456-7890``)."""
    digits = value.strip().replace("-", "")
    return digits if _ID.fullmatch(digits) else None


# the adapter -----------------------------------------------------------------------------------------------------


class GoogleOptions(AdapterOptions):
    """``google://ACCOUNT_ID?lists=churn-risk:111,high-value:222&account_type=GOOGLE_ADS&timeout=60&max_retries=4``."""

    lists: str = Field("", description="audience:USER_LIST_ID pairs, comma-separated: each audience's Customer Match "
                                       "user list (required)")  # fmt: skip
    account_type: Literal["GOOGLE_ADS", "DISPLAY_VIDEO_ADVERTISER", "DISPLAY_VIDEO_PARTNER", "DATA_PARTNER"] = Field(
        "GOOGLE_ADS", description="the operating account's type"
    )
    login_account: str | None = Field(None, description="manager account the token's user signs in through (digits)")
    timeout: float = Field(60.0, gt=0, le=600, description="seconds to connect, send and wait for each answer")
    max_retries: int = Field(4, ge=0, le=10, description="retries of a request that was throttled, 5xx or not answered")
    max_retry_wait: float = Field(120.0, ge=0, le=900, description="seconds of backoff a request may wait in all")

    @field_validator("lists")
    @classmethod
    def _lists(cls, value: str) -> str:
        parse_lists(value)
        return value

    @field_validator("login_account")
    @classmethod
    def _login(cls, value: str | None) -> str | None:
        if value is None:
            return None
        account = _account_id(value)
        if account is None:
            raise ValueError("the login account id must be digits (dashes allowed)")
        return account


class GoogleDataManagerApi:
    """The adapter: ``google://ACCOUNT_ID?lists=AUDIENCE:USER_LIST_ID,…`` opens a ``GoogleCustomerMatchChannel``."""

    schemes: ClassVar[tuple[str, ...]] = ("google",)
    Options: ClassVar[type[AdapterOptions]] = GoogleOptions

    @classmethod
    def open_channel(cls, target: ChannelTarget, resources: ChannelResources) -> GoogleCustomerMatchChannel:
        options: GoogleOptions = target.options
        account = operating_account(target)
        lists = parse_lists(options.lists)
        if not lists:
            raise ChannelConfigError(
                f"{target.setting}=google://{account} needs ?lists=AUDIENCE:USER_LIST_ID,… (each audience's Customer "
                "Match user list id, from Google Ads' Audience manager), e.g. ?lists=churn-risk:1234567"
            )
        token = secret_text(getattr(resources.settings, "google_access_token", None))
        if not token:
            raise ChannelConfigError(
                f"{target.setting}=google://{account} needs {TOKEN_SETTING}: an OAuth 2.0 access token with the "
                f"{SCOPE} scope (e.g. from `gcloud auth application-default print-access-token`)"
            )
        base_url = datamanager_url(getattr(resources.settings, "google_datamanager_url", None) or DEFAULT_URL)
        return GoogleCustomerMatchChannel(
            token, account, lists, base_url=base_url, account_type=options.account_type,
            login_account=options.login_account, timeout=options.timeout, max_retries=options.max_retries,
            max_retry_wait=options.max_retry_wait, setting=target.setting,
        )  # fmt: skip


# the channel -----------------------------------------------------------------------------------------------------


@dataclass
class _GoogleError(Exception):
    """A final (not retried) error answer, by its codes only (Google's texts may quote the data)."""

    status: int
    code: str | None
    reasons: tuple[str, ...] = ()
    members: tuple[int, ...] = ()
    """Indices of the request's members that field violations name."""
    retry_delay: float | None = None

    def describe(self) -> str:
        parts = [f"HTTP {self.status}"] + ([self.code] if self.code else [])
        text = " ".join(parts)
        return f"{text} ({', '.join(self.reasons)})" if self.reasons else text


class GoogleCustomerMatchChannel(AudienceApiChannel[dict[str, Any]]):
    """Customer Match user lists kept in sync through the Data Manager API (see the module docstring).

    ``lists`` maps audience names to user list ids. ``client`` is used as given (tests inject one) and then left open
    by ``close``; without one the channel builds its own and closes it. ``sleep``, ``jitter`` (a float in [0, 1)) and
    ``now`` (for an HTTP-date ``Retry-After``) are injectable so tests run without waiting. ``max_members`` is the
    members per request (Google's limit, 10,000; smaller in tests). ``stats`` counts requests, members and retries.
    """

    name = "google"
    batch_size = MAX_MEMBERS
    """Google cannot be asked who a list holds, but takes up to 10,000 members per request: whole batches go over."""
    user_agent = "omnicast (google customer match)"

    def __init__(
        self,
        token: str,
        account: str,
        lists: Mapping[str, str],
        *,
        client: httpx.Client | None = None,
        base_url: str = DEFAULT_URL,
        account_type: str = "GOOGLE_ADS",
        login_account: str | None = None,
        timeout: float = 60.0,
        max_members: int = MAX_MEMBERS,
        max_retries: int = 4,
        max_retry_wait: float = 120.0,
        setting: str = "OMNICAST_GOOGLE_AUDIENCE_URL",
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        check_token(token, TOKEN_SETTING)
        found = _account_id(account)
        if found is None:
            raise ChannelConfigError(f"{setting}: the account id must be digits (dashes allowed)")
        if account_type not in ACCOUNT_TYPES:
            raise ChannelConfigError(f"{setting}: account_type must be one of {', '.join(ACCOUNT_TYPES)}")
        if not all(_ID.fullmatch(list_id) for list_id in lists.values()):
            raise ChannelConfigError(f"{setting}: user list ids must be digits")
        if not 1 <= max_members <= MAX_MEMBERS:
            raise ValueError(f"max_members must be between 1 and {MAX_MEMBERS}")
        super().__init__(
            token, client=client, base_url=base_url, timeout=timeout, max_retries=max_retries,
            max_retry_wait=max_retry_wait, setting=setting, sleep=sleep, jitter=jitter, now=now,
        )  # fmt: skip
        self.account = found
        self.lists = dict(lists)
        self.account_type = account_type
        self.login_account = _account_id(login_account) if login_account else None
        self.max_members = max_members

    def __repr__(self) -> str:  # never the token
        return f"GoogleCustomerMatchChannel(account={self.account!r}, account_type={self.account_type!r})"

    # channel ---------------------------------------------------------------------------------------------------

    def can_reach(self, message: OutboundMessage) -> str | None:
        """A member needs an email, a phone, or a full address (given and family name, country, postal code); a
        removal: the values its addition uploaded, or a profile with one of those."""
        return None if user_identifiers(member_values(message)) else "no_address"

    def _group_of(self, message: OutboundMessage) -> tuple[str, dict[str, Any]] | ChannelError:
        """The audience's user list id and the message's ``AudienceMember``; permanent when the audience has no list
        or nothing identifies the person."""
        audience = audience_of(message)
        list_id = self.lists.get(audience)
        if list_id is None:
            return PermanentChannelError(
                f"no Customer Match user list for audience {audience!r}: add {audience}:USER_LIST_ID to "
                f"?lists= of {self.setting}"
            )
        member = audience_member(message)
        if member is None:
            return PermanentChannelError("no usable email, phone or full address (name, country, postal code)")
        return list_id, member

    # one user list and operation -------------------------------------------------------------------------------

    def _upload_group(
        self, call: Call, key: str, operation: Operation, members: list[tuple[int, dict[str, Any]]]
    ) -> dict[int, DeliveryResult]:
        """Requests of at most ``max_members`` members; after one that gave up, the rest are not tried."""

        def upload(_seq: int, _count: int, chunk: list[tuple[int, dict[str, Any]]]) -> ChunkResults:
            return self._request_chunk(call, key, operation, chunk)

        return self.upload_chunks(call, members, self.max_members, upload)

    def _request_chunk(
        self, call: Call, list_id: str, operation: Operation, chunk: list[tuple[int, dict[str, Any]]]
    ) -> ChunkResults:
        """One request; sent again without the members Google refused (it refuses a request as a whole)."""
        results: dict[int, DeliveryResult] = {}
        pending = chunk
        while pending:
            try:
                answer = self._post(_PATH[operation], self._body(operation, list_id, pending))
            except ConfigStop as stop:
                results.update(self._stopping(call, stop.error, pending))
                return results, None
            except _GoogleError as exc:
                refused = {i for i in exc.members if i < len(pending)}
                if not refused:
                    error = PermanentChannelError(f"Google refused the {operation} request for user list {list_id} "
                                                  f"({exc.describe()})")  # fmt: skip
                    results.update(results_for(pending, DeliveryResult.failed(error)))
                    return results, None
                log.warning("Google refused %d of %d member(s) of a %s request (%s)", len(refused), len(pending),
                            operation, exc.describe())  # fmt: skip
                self.stats["refused"] += len(refused)
                failed = DeliveryResult.failed(PermanentChannelError(f"Google refused this member ({exc.describe()})"))
                results.update({pending[i][0]: failed for i in refused})
                pending = [m for i, m in enumerate(pending) if i not in refused]
                continue
            except RetryableChannelError as exc:
                results.update(results_for(pending, DeliveryResult.failed(exc)))
                return results, DeliveryResult.failed(RetryableChannelError(f"not sent: {exc}"))
            call.handed_over = True
            request_id = _request_id(answer)
            self.stats["requests"] += 1
            self.stats[f"members_{operation}"] += len(pending)
            log.info("Google Customer Match: %s %d member(s)", "added" if operation == "add" else "removed",
                     len(pending))  # fmt: skip
            results.update(results_for(pending, DeliveryResult.sent(f"google:{list_id}:{request_id}")))
            return results, None
        return results, None

    def _body(self, operation: Operation, list_id: str, members: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        destination: dict[str, Any] = {
            "operatingAccount": {"accountType": self.account_type, "accountId": self.account},
            "productDestinationId": list_id,
        }
        if self.login_account:
            destination["loginAccount"] = {"accountType": self.account_type, "accountId": self.login_account}
        body: dict[str, Any] = {
            "destinations": [destination],
            "audienceMembers": [member for _, member in members],
            "encoding": "HEX",
        }
        if operation == "add":
            body["consent"] = dict(CONSENT)
            body["termsOfService"] = dict(TERMS)
        return body

    # HTTP --------------------------------------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request with its retries: the answer, or ``_GoogleError`` (final error answer), ``ConfigStop``
        (configuration) or ``RetryableChannelError`` (gave up)."""
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json",
                   "Content-Type": "application/json"}  # fmt: skip
        content = json.dumps(body, separators=(",", ":")).encode()

        def attempt() -> dict[str, Any] | Retry:
            try:
                response = self.client.post(url, content=content, headers=headers)
            except httpx.UnsupportedProtocol as exc:
                raise ConfigStop(ChannelConfigError(f"{URL_SETTING} is not an http(s) URL")) from exc
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError) as exc:
                return Retry(f"{type(exc).__name__} (not connected)")
            except httpx.TransportError as exc:  # sent, answer lost: repeating it is safe (see the module docstring)
                return Retry(f"{type(exc).__name__} (answer lost; the request is repeated, which Google takes as one)")
            status = response.status_code
            answer = json_object(response)
            if 200 <= status < 300:
                return answer
            error = _google_error(status, answer)
            if not (status in (408, 409, 429) or status >= 500 or error.code in RETRY_STATUSES):
                raise self._final(error)
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), self.now())
            return Retry(error.describe(), error.retry_delay if retry_after is None else retry_after)

        return self._retrying(attempt, doing="Google Data Manager request", who="Google",
                              api="Google Data Manager API", log=log)  # fmt: skip

    def _final(self, error: _GoogleError) -> _GoogleError | ConfigStop:
        """A non-retried error answer: a stop when it says the configuration is wrong, else the codes."""
        if error.status == 401 or error.code == "UNAUTHENTICATED":
            return ConfigStop(ChannelConfigError(
                f"{TOKEN_SETTING}: Google refused the access token ({error.describe()}); it is invalid or expired "
                f"(access tokens last about an hour): supply a fresh OAuth token with the {SCOPE} scope"
            ))  # fmt: skip
        if error.status == 403 or error.code == "PERMISSION_DENIED":
            return ConfigStop(ChannelConfigError(
                f"{self.setting}: Google denied access to {self.account_type} account {self.account} "
                f"({error.describe()}); the token's Google account needs access to it (or ?login_account= its "
                "manager account), and the Data Manager API must be enabled in the token's Cloud project"
            ))  # fmt: skip
        if 300 <= error.status < 400:
            return ConfigStop(ChannelConfigError(
                f"{URL_SETTING}: the API answered with a redirect (HTTP {error.status})"
            ))  # fmt: skip
        if error.code is None and error.status in (404, 405):
            return ConfigStop(ChannelConfigError(
                f"{URL_SETTING}: HTTP {error.status} without a Google error for {self.base_url}/v1/audienceMembers; "
                f"use the API base URL, e.g. {DEFAULT_URL}"
            ))  # fmt: skip
        return error


# helpers -----------------------------------------------------------------------------------------------------------


def _request_id(answer: dict[str, Any]) -> str:
    """Google's ``requestId`` (what its support looks a request up by), ``unknown`` when missing or odd."""
    value = answer.get("requestId")
    return value if isinstance(value, str) and re.fullmatch(r"[\w.:-]{1,128}", value) else "unknown"


def _code(value: Any) -> str | None:
    """An enum-like code of Google's (``INVALID_ARGUMENT``), never free text."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else None


def _google_error(status: int, answer: dict[str, Any]) -> _GoogleError:
    """``{"error": {"code", "message", "status", "details": [...]}}`` read by its codes: the canonical status, the
    reasons of ``ErrorInfo`` and ``BadRequest`` field violations, the members those name, ``RetryInfo``'s delay."""
    error = answer.get("error")
    if not isinstance(error, dict):
        return _GoogleError(status, None)
    reasons: list[str] = []
    members: set[int] = set()
    delay: float | None = None
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.ErrorInfo"):
            reasons.append(_code(detail.get("reason")) or "")
        elif kind.endswith("google.rpc.BadRequest"):
            for violation in detail.get("fieldViolations") or ():
                if not isinstance(violation, dict):
                    continue
                reasons.append(_code(violation.get("reason")) or "")
                match = _MEMBER_FIELD.search(str(violation.get("field", "")))
                if match:
                    members.add(int(match.group(1)))
        elif kind.endswith("google.rpc.RetryInfo"):
            found = _DELAY.fullmatch(str(detail.get("retryDelay", "")))
            delay = float(found.group(1)) if found else None
    unique = tuple(dict.fromkeys(r for r in reasons if r))
    return _GoogleError(status, _code(error.get("status")), unique[:5], tuple(sorted(members)), delay)


def operating_account(target: ChannelTarget) -> str:
    """The digits of ``google://ACCOUNT_ID`` (dashes accepted); ``ChannelConfigError`` naming the setting."""
    parts = target.parts
    fix = f"use {target.setting}=google://ACCOUNT_ID?lists=AUDIENCE:USER_LIST_ID (e.g. google://1234567890?lists=…)"
    if parts.username or parts.password or parts.port or parts.path not in ("", "/") or parts.fragment:
        raise ChannelConfigError(f"{target.setting}: a Google URL is the account id and options alone; {fix}")
    account = _account_id(parts.hostname or "")
    if account is None:
        raise ChannelConfigError(f"{target.setting}: the account id must be digits (dashes allowed); {fix}")
    return account


def datamanager_url(value: str) -> str:
    """``OMNICAST_GOOGLE_DATAMANAGER_URL`` checked: an http(s) base URL without credentials, query or fragment. Plain
    http is accepted (a local stand-in) but logged when the host is not a loopback address."""
    fix = f"use the API base URL, e.g. {DEFAULT_URL} (or http://127.0.0.1:PORT for a local stand-in)"
    return checked_base_url(value, URL_SETTING, fix=fix, exposed="the access token travels unencrypted", logger=log)
