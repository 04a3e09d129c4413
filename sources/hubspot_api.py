"""CRM contacts from HubSpot's CRM API v3 (``hubspot://`` or ``hubspot://PORTAL_ID``), read incrementally and checked
by the contacts CSV's own checks (``sources.crm.check_contacts`` with the :data:`~sources.crm.HUBSPOT` mapping).

Where: ``https://api.hubapi.com`` unless ``OMNICAST_CRM_API_BASE`` (``config.api_base``) names a stand-in. Credentials:
``OMNICAST_CRM_TOKEN`` holds a private app's access token (HubSpot → Settings → Integrations → Private Apps, scope
``crm.objects.contacts.read``), sent as ``Authorization: Bearer …`` (over plain http only to a loopback host).

Reading.

* First load (no watermark): ``GET /crm/v3/objects/contacts?limit=100&properties=…&archived=false``, following
  ``paging.next.after``. The list is in id order, so its watermark is the latest ``lastmodifieddate`` read but never
  later than the first answer's ``Date`` (HubSpot's clock) minus :data:`CLOCK_MARGIN`: a contact edited after its
  page was read is still newer than the watermark. A first load that fails part-way returns what it read without a
  watermark: the next run loads from the start again (the list's cursor is no place to resume a later search from).
* Incremental runs: ``POST /crm/v3/objects/contacts/search`` with ``lastmodifieddate GTE <watermark − INDEX_LAG>``,
  sorted ascending by ``lastmodifieddate``, ``limit`` 200 (search's largest page). After every page the next search
  starts again from that page's latest ``lastmodifieddate`` instead of following ``after``: a search never gets near
  HubSpot's 10,000-results-per-query cap however many contacts changed, and a contact edited during the read (which
  moves to the end of the order) cannot push another one past a page boundary unseen. A page whose contacts all share
  one ``lastmodifieddate`` is paged through by ``hs_object_id`` (that time in both bounds, ``hs_object_id GT`` the
  last id read, sorted by id) before the search moves past that time. :data:`INDEX_LAG` is taken off the watermark
  because HubSpot says newly updated records take a few moments to appear in search results; contacts read twice
  are read once (the later answer wins). The watermark is the latest ``lastmodifieddate`` of the last complete page.
* Deleted contacts: ``GET /crm/v3/objects/contacts?archived=true`` (every run; HubSpot keeps archived contacts 90
  days) → ``SourceRead.deleted`` (Record IDs). Contacts erased for good (GDPR delete) are listed nowhere.
* Rate limits: 429 waits for ``Retry-After`` when given, else the window of
  ``X-HubSpot-RateLimit-Interval-Milliseconds``, else a jittered exponential backoff; a 429 whose ``policyName`` is
  ``DAILY`` stops the read (the daily limit resets at midnight in the account's time zone). An answer whose
  ``X-HubSpot-RateLimit-Remaining`` is 0 waits out that window before the next request rather than collecting a 429.
  5xx and network errors are retried; 401/403 refuse the source (:class:`~sources.base.SourceRefused`); a read that
  fails part-way keeps what its complete pages held, their watermark and ``error``, and never raises (one that could
  read nothing at all is refused).

Properties (internal names) into the contacts CSV's columns:

======================================  ===================================================================
CSV column (``HUBSPOT``)                HubSpot property
======================================  ===================================================================
Record ID                               the object's ``id``
First Name, Last Name, Email            ``firstname``, ``lastname``, ``email``
Phone Number                            ``phone``, else ``mobilephone``
Date of Birth                           ``date_of_birth``
Loyalty Tier                            :data:`LOYALTY_TIER_PROPERTY` (custom)
Email Marketing Consent                 ``Unsubscribed`` when ``hs_email_optout`` is true (HubSpot's "Unsubscribed
                                        from all email"), else :data:`EMAIL_CONSENT_PROPERTY` (custom,
                                        subscribed/unsubscribed)
Ads Personalization Consent             :data:`ADS_CONSENT_PROPERTY` (custom, true/false)
In-App Messaging Consent                :data:`INAPP_CONSENT_PROPERTY` (custom, true/false)
Marketing contact status                ``hs_marketable_status``: true → Marketing contact, false → Non-marketing
                                        contact
Time Zone                               ``hs_timezone`` (``america_slash_new_york`` → ``America/New_York``)
City, State/Region, Country/Region,     ``city``, ``state``, ``country``, ``zip``
Postal Code
Create Date, Last Modified Date         ``createdate``, ``lastmodifieddate`` (UTC, as ``YYYY-MM-DD HH:MM``)
======================================  ===================================================================

A property the account does not have is simply absent from the answers: its column stays blank (no statement).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any, ClassVar
from urllib.parse import urlsplit
from zoneinfo import available_timezones

import httpx

from channels.base import ChannelConfigError
from channels.http import Retry, checked_base_url, is_loopback, jittered_backoff, retry_after_seconds, with_retries
from sources.base import ReadContext, SourceConfig, SourceRead, SourceRefused
from sources.crm import HUBSPOT, check_contacts
from sources.validate import Intake, raw_frame

__all__ = ["HubSpotApi", "HubSpotRead", "contact_row"]

log = logging.getLogger(__name__)

API_BASE = "https://api.hubapi.com"
CONTACTS = "/crm/v3/objects/contacts"
SEARCH = f"{CONTACTS}/search"
LIST_LIMIT = 100
"""The list endpoint's largest page."""
SEARCH_LIMIT = 200
"""The search endpoint's largest page."""
MAX_RETRIES = 6
MAX_RETRY_WAIT = 600.0
"""Seconds one request may spend waiting between retries in all before the read stops there."""
TIMEOUT = httpx.Timeout(60.0, connect=15.0)
INDEX_LAG = timedelta(minutes=5)
"""How far before the watermark an incremental search starts (updates reach the search index after a moment)."""
CLOCK_MARGIN = timedelta(minutes=5)
"""How far a first load's watermark stays behind HubSpot's clock (see the module docstring)."""
SCOPE = "crm.objects.contacts.read"
HOW_TO_TOKEN = (
    "create a private app in HubSpot → Settings → Integrations → Private Apps with the " + SCOPE + " scope and set "
    "{setting} to its access token"
)

EMAIL_CONSENT_PROPERTY = "email_marketing_consent"
"""Custom contact property (subscribed/unsubscribed) behind the export's "Email Marketing Consent" column."""
ADS_CONSENT_PROPERTY = "ads_personalization_consent"
INAPP_CONSENT_PROPERTY = "in_app_messaging_consent"
LOYALTY_TIER_PROPERTY = "loyalty_tier"
PROPERTIES = (
    "email", "firstname", "lastname", "phone", "mobilephone", "date_of_birth", LOYALTY_TIER_PROPERTY,
    EMAIL_CONSENT_PROPERTY, "hs_email_optout", ADS_CONSENT_PROPERTY, INAPP_CONSENT_PROPERTY, "hs_marketable_status",
    "hs_timezone", "city", "state", "country", "zip", "createdate", "lastmodifieddate",
)  # fmt: skip
"""The properties asked for (internal names): what the ``HUBSPOT`` mapping's columns need."""
MARKETABLE = {"true": "Marketing contact", "false": "Non-marketing contact"}
CRM_TIME = "%Y-%m-%d %H:%M"
_TOKEN = re.compile(r"\S+")


@dataclass
class HubSpotRead(SourceRead):
    """The CRM read from HubSpot, with what it cost: requests made and the waits (seconds) rate limits asked for."""

    requests: int = 0
    waits: list[float] = field(default_factory=list)


class _Stop(Exception):
    """The read cannot go on (retries exhausted, the daily limit, an answer that breaks the contract)."""


class HubSpotApi:
    """CRM contacts from HubSpot's CRM API v3 (see the module docstring)."""

    role: ClassVar[str] = "crm"
    platform: ClassVar[str] = "hubspot"

    def __init__(
        self,
        config: SourceConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        client: httpx.Client | None = None,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._client = client
        stem = config.setting[: -len("_URL")] if config.setting.endswith("_URL") else "OMNICAST_CRM"
        self._token_setting = f"{stem}_TOKEN"
        self._base_setting = f"{stem}_API_BASE"
        self.requests = 0
        self.waits: list[float] = []
        self._answered = False
        self._pause = 0.0

    # configuration -----------------------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        portal = urlsplit(self.config.url.strip()).netloc.rpartition("@")[2]
        where = f"hubspot://{portal}"
        return f"{where} via {self.config.api_base}" if self.config.api_base else where

    def _refused(self, problem: str) -> SourceRefused:
        return SourceRefused(f"{self.config.setting} ({self.location}): {problem}")

    def check(self) -> None:
        """The URL is ``hubspot://`` (or ``hubspot://PORTAL_ID``), a token is set and may travel to the API's base."""
        self._base()
        self._token()

    def _base(self) -> str:
        parts = urlsplit(self.config.url.strip())
        if parts.scheme.lower() != "hubspot":
            raise self._refused("not a hubspot:// URL — write hubspot:// (or hubspot://PORTAL_ID)")
        if parts.username or parts.password or parts.query or parts.fragment or parts.path.strip("/"):
            raise self._refused(f"write hubspot:// or hubspot://PORTAL_ID only — the token goes in "
                                f"{self._token_setting}")  # fmt: skip
        if parts.netloc and not parts.netloc.isdigit():
            raise self._refused(f"{parts.netloc!r} is not a HubSpot account (portal) id — write hubspot://12345678 "
                                f"or just hubspot://")  # fmt: skip
        if not self.config.api_base:
            return API_BASE
        try:
            base = checked_base_url(self.config.api_base, self._base_setting, fix=f"leave it unset for {API_BASE}",
                                    exposed="the access token travels unencrypted", logger=log)  # fmt: skip
        except ChannelConfigError as exc:
            raise self._refused(str(exc)) from None
        split = urlsplit(base)
        if split.scheme == "http" and not is_loopback(split.hostname or ""):
            raise self._refused(f"{self._base_setting}={base} is plain http to a host that is not this machine: the "
                                f"access token would cross the network in clear text — use https")  # fmt: skip
        return base

    def _token(self) -> str:
        token = (self.config.token or "").strip()
        how = HOW_TO_TOKEN.format(setting=self._token_setting)
        if not token:
            raise self._refused(f"{self._token_setting} is not set — {how}")
        if not _TOKEN.fullmatch(token):
            raise self._refused(f"{self._token_setting} holds spaces: not an access token — {how}")
        return token

    # reading -----------------------------------------------------------------------------------------------------

    def read(self, context: ReadContext) -> HubSpotRead:
        base, token = self._base(), self._token()
        client = self._client or httpx.Client(timeout=TIMEOUT, headers={"User-Agent": "omnicast"})
        self._answered, self._pause = False, 0.0
        session = _Session(self, client, base, token, context)
        try:
            error = session.run()
        finally:
            if self._client is None:
                client.close()
        if error is not None and not self._answered:
            raise self._refused(f"{error} — check {self._base_setting} and that api.hubapi.com is reachable")
        return session.result(error)

    def _call(self, client: httpx.Client, method: str, url: str, token: str, *, params: Mapping[str, Any] | None = None,
              body: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
        """One request, retried on 429/5xx and network errors; 401/403 refuse the source; another error (or the
        daily limit) stops the read. Returns the answer's JSON object."""
        if self._pause > 0:
            self._wait(self._pause)
            self._pause = 0.0
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

        def attempt() -> httpx.Response | Retry:
            try:
                response = client.request(method, url, params=params, json=body, headers=headers)
            except httpx.TimeoutException:
                return Retry("the request timed out")
            except httpx.TransportError as exc:
                return Retry(f"network error ({type(exc).__name__})")
            self.requests += 1
            status = response.status_code
            if status == 429:
                answer = _json(response)
                if str(answer.get("policyName", "")).upper() == "DAILY":
                    raise _Stop("HubSpot's daily API limit is reached (it resets at midnight in the account's time "
                                "zone)")  # fmt: skip
                return Retry(f"HTTP 429{_problem(answer)}", _rate_wait(response))
            if status >= 500:
                wait = retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC))
                return Retry(f"HTTP {status}{_problem(_json(response))}", wait)
            return response

        def give_up(retry: Retry, attempts: int) -> httpx.Response:
            raise _Stop(f"{retry.problem} ({attempts} attempts)")

        def on_retry(retry: Retry, wait: float, number: int) -> None:
            log.info("hubspot: %s; retry %d in %.1f s", retry.problem, number, wait)
            self.waits.append(wait)

        response = with_retries(
            attempt,
            max_retries=MAX_RETRIES,
            max_retry_wait=MAX_RETRY_WAIT,
            delay=lambda n, after: jittered_backoff(n, after, random.random, first=1.0, cap=60.0),
            sleep=self._sleep,
            on_retry=on_retry,
            give_up=give_up,
        )
        answer = _json(response)
        if response.status_code in (401, 403):
            how = HOW_TO_TOKEN.format(setting=self._token_setting)
            raise self._refused(f"the token in {self._token_setting} was refused (HTTP {response.status_code}"
                                f"{_problem(answer)}) — {how}")  # fmt: skip
        if response.status_code >= 400:
            raise _Stop(f"HTTP {response.status_code}{_problem(answer)} from {method} {urlsplit(url).path}")
        if not isinstance(answer.get("results"), list):
            raise _Stop(f"an answer from {method} {urlsplit(url).path} holds no results list")
        self._answered = True
        remaining = _header_int(response, "X-HubSpot-RateLimit-Remaining")
        interval = _header_int(response, "X-HubSpot-RateLimit-Interval-Milliseconds")
        if remaining is not None and remaining <= 0 and interval:
            self._pause = interval / 1000.0  # the window is spent: wait it out before the next request
        answer["_date"] = response.headers.get("Date")
        return answer

    def _wait(self, seconds: float) -> None:
        log.info("hubspot: rate window spent; waiting %.1f s", seconds)
        self.waits.append(seconds)
        self._sleep(seconds)


class _Session:
    """One read: the contacts (a first load or a search since the watermark), then the archived ones."""

    def __init__(self, reader: HubSpotApi, client: httpx.Client, base: str, token: str, context: ReadContext) -> None:
        self.reader, self.client, self.base, self.token, self.context = reader, client, base, token, context
        self.stored = context.watermarks.get("contacts")
        self.rows: dict[str, dict[str, str]] = {}
        self.watermark: str | None = self.stored
        self.deleted: list[str] = []

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.reader._call(self.client, method, self.base + path, self.token, **kwargs)

    def run(self) -> str | None:
        try:
            if self.stored:
                self.search_since(self.stored)
            else:
                self.first_load()
        except _Stop as stop:
            log.warning("hubspot: contacts read stopped: %s", stop)
            return f"contacts: {stop}"
        self.context.say(f"hubspot contacts: {len(self.rows)} read")
        try:
            self.archived()
        except _Stop as stop:
            log.warning("hubspot: archived contacts read stopped: %s", stop)
            return f"archived contacts: {stop}"
        return None

    def keep(self, results: list[Any]) -> list[int]:
        """Rows of a complete page (a contact read again replaces its earlier row); their ``lastmodifieddate`` (ms)."""
        stamps = []
        for record in results:
            if not isinstance(record, dict) or not str(record.get("id", "")).isdigit():
                raise _Stop("a contact without a numeric id")
            stamp = _modified_ms(record)
            if stamp is None:
                raise _Stop(f"contact {record['id']} has no readable lastmodifieddate")
            stamps.append(stamp)
        for record in results:
            identity = str(record["id"])
            self.rows.pop(identity, None)
            self.rows[identity] = contact_row(record)
        return stamps

    def first_load(self) -> None:
        after: str | None = None
        latest: int | None = None
        started: datetime | None = None
        while True:
            params = {"limit": LIST_LIMIT, "properties": ",".join(PROPERTIES), "archived": "false"}
            answer = self.call("GET", CONTACTS, params=params | ({"after": after} if after else {}))
            started = started or _server_time(answer.get("_date"))
            stamps = self.keep(answer["results"])
            latest = max([latest or 0, *stamps]) if stamps else latest
            after = _next_after(answer)
            if after is None:
                break
        if latest is not None:
            now = self.context.now if self.context.now.tzinfo else self.context.now.replace(tzinfo=UTC)
            ceiling = (started or now) - CLOCK_MARGIN
            self.watermark = _iso(min(latest, _ms(ceiling)))

    def search_since(self, watermark: str) -> None:
        stored = _parse_ms(watermark)
        if stored is None:
            raise _Stop(f"the stored watermark {watermark!r} is not a time: run once with --full")
        reached = stored
        cursor = stored - int(INDEX_LAG.total_seconds() * 1000)
        while True:
            answer = self.call("POST", SEARCH, body=_search(cursor))
            stamps = self.keep(answer["results"])
            if not stamps:
                return
            latest = max(stamps)
            if latest > reached:
                reached = latest
                self.watermark = _iso(reached)
            if _next_after(answer) is None:
                return
            if latest > cursor:
                cursor = latest
                continue
            self.tie(cursor)  # a whole page at one time: through it by id, then past it
            cursor += 1

    def tie(self, stamp: int) -> None:
        last_id = 0
        while True:
            answer = self.call("POST", SEARCH, body=_search(stamp, after_id=last_id))
            results = answer["results"]
            self.keep(results)
            if not results:
                return
            last_id = max(int(record["id"]) for record in results)
            if _next_after(answer) is None:
                return

    def archived(self) -> None:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": LIST_LIMIT, "archived": "true"}
            answer = self.call("GET", CONTACTS, params=params | ({"after": after} if after else {}))
            for record in answer["results"]:
                if isinstance(record, dict) and str(record.get("id", "")).isdigit():
                    self.deleted.append(str(record["id"]))
            after = _next_after(answer)
            if after is None:
                return

    def result(self, error: str | None) -> HubSpotRead:
        reader, context = self.reader, self.context
        intake = Intake("crm", "hubspot:contacts")
        frame = raw_frame(intake, list(self.rows.values()), CONTACT_COLUMNS)
        if frame.empty:  # an incremental run that found nothing new: the checks still take the cells as text
            for name in CONTACT_COLUMNS:
                frame[name] = frame[name].astype(str)
        contacts = check_contacts(frame, intake, context.default_country, HUBSPOT, context.now)
        intake.release()
        context.say(f"hubspot: {len(contacts)} contacts, {len(self.deleted)} archived, {reader.requests} requests")
        watermarks = {"contacts": self.watermark} if self.watermark else {}
        return HubSpotRead(
            reader.role, reader.platform, reader.location, {"contacts": contacts}, {"crm": intake},
            watermarks=watermarks, incremental=bool(self.stored), deleted=list(dict.fromkeys(self.deleted)),
            error=error, requests=reader.requests, waits=list(reader.waits),
        )  # fmt: skip


# requests and answers ----------------------------------------------------------------------------------------------


def _search(stamp: int, *, after_id: int | None = None) -> dict[str, Any]:
    """A search for contacts modified at or after ``stamp`` (ms) in modification order; with ``after_id``, those
    modified exactly at ``stamp`` with an id above it, in id order."""
    if after_id is None:
        filters = [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(stamp)}]
        sort = "lastmodifieddate"
    else:
        filters = [
            {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(stamp)},
            {"propertyName": "lastmodifieddate", "operator": "LTE", "value": str(stamp)},
            {"propertyName": "hs_object_id", "operator": "GT", "value": str(after_id)},
        ]
        sort = "hs_object_id"
    return {
        "filterGroups": [{"filters": filters}],
        "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
        "properties": list(PROPERTIES),
        "limit": SEARCH_LIMIT,
    }


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _problem(answer: Mapping[str, Any]) -> str:
    """`` CATEGORY: message`` of a HubSpot error body (short), or nothing."""
    if not answer.get("message"):
        return ""
    kind = answer.get("category") or answer.get("errorType") or answer.get("policyName") or ""
    return f" {str(kind)[:60]}: {str(answer['message'])[:160]}"


def _header_int(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.lstrip("-").isdigit() else None


def _rate_wait(response: httpx.Response) -> float | None:
    """A 429's wait: ``Retry-After``, else the rolling window HubSpot names in its headers (None: back off)."""
    after = retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC))
    if after is not None:
        return after
    interval = _header_int(response, "X-HubSpot-RateLimit-Interval-Milliseconds")
    return interval / 1000.0 if interval else None


def _next_after(answer: Mapping[str, Any]) -> str | None:
    paging = answer.get("paging")
    following = paging.get("next") if isinstance(paging, dict) else None
    after = following.get("after") if isinstance(following, dict) else None
    return str(after) if after not in (None, "") else None


def _server_time(value: Any) -> datetime | None:
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# times -------------------------------------------------------------------------------------------------------------


def _parse(value: Any) -> datetime | None:
    """A HubSpot datetime (``2026-11-01T10:00:00.123Z``) as an aware UTC datetime; None when unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        stamp = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _parse_ms(value: Any) -> int | None:
    stamp = _parse(value)
    return None if stamp is None else _ms(stamp)


def _iso(ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _modified_ms(record: Mapping[str, Any]) -> int | None:
    properties = _properties(record)
    return _parse_ms(properties.get("lastmodifieddate") or record.get("updatedAt"))


def _crm_time(value: Any) -> str:
    """A datetime as the contacts export writes it (UTC, minutes); the raw text when it does not read."""
    stamp = _parse(value)
    if stamp is not None:
        return stamp.strftime(CRM_TIME)
    return "" if value is None else str(value)


# mapping -----------------------------------------------------------------------------------------------------------

CONTACT_COLUMNS = [
    HUBSPOT.record_id, HUBSPOT.first_name, HUBSPOT.last_name, HUBSPOT.email, HUBSPOT.phone, HUBSPOT.birthday,
    HUBSPOT.loyalty_tier, HUBSPOT.marketing_status, HUBSPOT.email_consent, HUBSPOT.ads_consent, HUBSPOT.inapp_consent,
    HUBSPOT.timezone, HUBSPOT.city, HUBSPOT.region, HUBSPOT.country, HUBSPOT.zip, HUBSPOT.created, HUBSPOT.modified,
]  # fmt: skip
"""The contacts export's columns, in its order."""


@cache
def _timezone_names() -> dict[str, str]:
    """HubSpot's ``hs_timezone`` values (``america_slash_new_york``) → IANA names."""
    names = {}
    for name in available_timezones():
        names[name.lower().replace("/", "_slash_")] = name
        names[name.lower().replace("/", "_slash_").replace("-", "_hyphen_")] = name
    return names


def _timezone(value: Any) -> str:
    """The IANA name of an ``hs_timezone`` value; an IANA name as is; anything else raw (the check sets it aside)."""
    text = "" if value is None else str(value).strip()
    return _timezone_names().get(text.lower(), text) if "/" not in text else text


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _properties(record: Mapping[str, Any]) -> Mapping[str, Any]:
    properties = record.get("properties")
    return properties if isinstance(properties, dict) else {}


def contact_row(record: Mapping[str, Any]) -> dict[str, str]:
    """One contact in the contacts export's columns (the table in the module docstring)."""
    p = _properties(record)
    m = HUBSPOT
    opted_out = str(p.get("hs_email_optout") or "").strip().lower() == "true"
    status = _text(p.get("hs_marketable_status")).strip()
    return {
        m.record_id: _text(record.get("id")),
        m.first_name: _text(p.get("firstname")),
        m.last_name: _text(p.get("lastname")),
        m.email: _text(p.get("email")),
        m.phone: _text(p.get("phone") or p.get("mobilephone")),
        m.birthday: _text(p.get("date_of_birth")),
        m.loyalty_tier: _text(p.get(LOYALTY_TIER_PROPERTY)),
        m.marketing_status: MARKETABLE.get(status.lower(), status),
        m.email_consent: "Unsubscribed" if opted_out else _text(p.get(EMAIL_CONSENT_PROPERTY)),
        m.ads_consent: _text(p.get(ADS_CONSENT_PROPERTY)),
        m.inapp_consent: _text(p.get(INAPP_CONSENT_PROPERTY)),
        m.timezone: _timezone(p.get("hs_timezone")),
        m.city: _text(p.get("city")),
        m.region: _text(p.get("state")),
        m.country: _text(p.get("country")),
        m.zip: _text(p.get("zip")),
        m.created: _crm_time(p.get("createdate") or record.get("createdAt")),
        m.modified: _crm_time(p.get("lastmodifieddate") or record.get("updatedAt")),
    }
