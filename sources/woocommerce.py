"""The store from WooCommerce's REST API v3 (``woocommerce://HOST[/path]``): products, customers and orders, read
incrementally and checked by the Shopify export's own checks.

Where: ``woocommerce://shop.example/blog`` reads ``https://shop.example/blog/wp-json/wc/v3``;
``OMNICAST_STORE_API_BASE`` (``config.api_base``) replaces ``https://HOST[/path]`` (a local stand-in). Credentials:
``OMNICAST_STORE_TOKEN`` holds a REST API key as ``ck_…:cs_…`` (WooCommerce → Settings → Advanced → REST API → Add
key, Permissions: Read), sent as HTTP Basic over https; over plain http only to a loopback host (WooCommerce itself
wants OAuth 1.0a signatures on plain http, and a key must never cross a network in clear text).

Reading. Every list is paged with ``page``/``per_page=100`` and WordPress's ``X-WP-Total``/``X-WP-TotalPages``
headers. Products and orders are asked for ``orderby=modified&order=asc`` and, once a watermark is known,
``modified_after=<watermark − 1 s>&dates_are_gmt=true`` (WordPress compares ``after`` strictly, at second precision:
one second back makes the watermark inclusive; records read twice are read once). After every full page the next
request starts again at page 1 from that page's latest modification (keyset paging): a record edited during the read
moves to the end of the order, and page numbers alone would then skip the record that slid into its place. Only when
a whole page shares one second does the page number advance. Variable products have their variations read from
``/products/{id}/variations`` (a variation's save syncs and re-saves its parent, which dates the parent; a refund
dates its order: ``wc_create_refund`` sets the order's ``date_modified``). The customers list
takes no modification filter (``orderby`` is ``id``, ``name``, ``registered_date`` or ``include`` only): it is read
in full every run, ordered by id, and an incremental run keeps only the customers modified since the watermark; that
full list is also what :attr:`SourceRead.present` reports (ids of every customer the store still has,
when the list was read whole and its total did not move while it was read).

Watermarks (``date_modified_gmt``, ``YYYY-MM-DDTHH:MM:SS`` UTC): products and orders, the latest modification of the
last complete page; customers, the latest modification read but never later than the answer's ``Date`` (server clock)
minus :data:`CLOCK_MARGIN` (the list is in id order, so a customer edited after its page was read must still be newer
than the watermark). A read that fails part-way keeps what complete pages held and the watermarks they reached, sets
``error`` and never raises; one that could read nothing at all is refused (:class:`~sources.base.SourceRefused`), as
is a key the store rejects (HTTP 401/403). 429 and 5xx answers are retried (``Retry-After`` honoured, else jittered
exponential backoff).

Records in the Shopify export's columns (then ``check_products``/``check_customers``/``check_orders``):

* products: one row per simple/external product and per variation of a variable product (grouped products are
  containers: their children are products of their own). Handle = ``slug``, Title = ``name``, Type = first category,
  Tags = tag names, Variant SKU/Price = ``sku``/``price`` (Compare At = ``regular_price`` when on sale), inventory
  tracked when ``manage_stock`` (a variation's ``parent`` takes the product's), sold regardless when ``backorders`` is
  not ``no``; Status: ``publish`` → active, ``draft``/``pending``/``private``/``future`` → draft (another word is set
  aside: loaded as not active); Published = published and not hidden from the catalogue; Image Src = the variation's
  image, else the product's first; meta keys in :data:`META_COLUMNS` fill the Shopify metafield columns. WooCommerce
  has no vendor and no gift-card flag: both blank.
* customers: Customer ID = ``id``, names (the billing names when the account has none), Email = ``email``, the billing
  address, Default Address Phone = billing phone. Accepts Email/SMS Marketing stay **blank**: WooCommerce has no
  standard marketing-consent field (newsletter plugins keep their own), so no statement either way — the CRM or the
  checkout decides.
* orders: one row per line item (an order without items gets one row without a SKU, quarantined as in a CSV), Name =
  ``#`` + ``number``, Email = billing email, Created at / Paid at = ``date_created_gmt`` / ``date_paid_gmt``, money
  fields from ``total``, ``shipping_total``, ``total_tax``, ``discount_total``, Subtotal = the items' totals, Refunded
  Amount = the sum of ``refunds[].total``, Lineitem price = the unit price before discounts (``subtotal ÷ quantity``),
  Billing Name/City/Zip/Province/Country from the billing address, Accepts Marketing blank (as customers). Financial
  Status from ``status`` and refunds:

  ==============================  ======================================================================
  WooCommerce ``status``          Financial Status
  ==============================  ======================================================================
  ``completed``, ``processing``   ``paid``; ``partially_refunded`` with refunds below the total;
                                  ``refunded`` when the refunds cover it
  ``refunded``                    ``refunded``
  ``pending``, ``on-hold``        ``pending`` (not paid yet)
  ``cancelled``, ``failed``       ``voided``, and Cancelled at = ``date_modified_gmt`` (WooCommerce keeps no
                                  cancel time; the status change is the last modification): never counted as
                                  spend
  another (a plugin's own)        passed on: set aside as an unknown Financial Status (the order loads
                                  without one)
  ==============================  ======================================================================

  Trashed orders and products are not listed (``status=any`` leaves the trash out): they stop changing, they are not
  reported deleted.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import pandas as pd

from channels.base import ChannelConfigError
from channels.http import Retry, checked_base_url, is_loopback, jittered_backoff, retry_after_seconds, with_retries
from sources.base import ReadContext, SourceConfig, SourceRead, SourceRefused
from sources.shopify import check_customers, check_orders, check_products
from sources.validate import Intake, raw_frame

__all__ = ["WooCommerceApi", "WooCommerceRead", "financial_status", "text_frame"]

log = logging.getLogger(__name__)

API_PATH = "/wp-json/wc/v3"
PER_PAGE = 100
"""WooCommerce's largest page (``per_page`` is 1…100)."""
MAX_RETRIES = 6
MAX_RETRY_WAIT = 600.0
"""Seconds one request may spend waiting between retries in all before the read stops there."""
TIMEOUT = httpx.Timeout(60.0, connect=15.0)
CLOCK_MARGIN = timedelta(minutes=5)
"""How far the customers' watermark stays behind the server's clock (see the module docstring)."""
HOW_TO_KEY = (
    "create a REST API key in WooCommerce → Settings → Advanced → REST API → Add key (Permissions: Read) and set "
    "{setting}=ck_…:cs_… (the consumer key, a colon, the consumer secret)"
)
_KEY = re.compile(r"(ck_[A-Za-z0-9]+):(cs_[A-Za-z0-9]+)")
WC_TIME = "%Y-%m-%dT%H:%M:%S"
EXPORT_TIME = "%Y-%m-%d %H:%M:%S +0000"

META_COLUMNS = {
    "flavour_notes": "Flavour notes (product.metafields.custom.flavour_notes)",
    "roast_level": "Roast level (product.metafields.custom.roast_level)",
    "origin": "Origin (product.metafields.custom.origin)",
    "replenishment_days": "Replenishment days (product.metafields.custom.replenishment_days)",
}
"""Product meta keys (``meta_data[].key``) read into the Shopify metafield columns the product checks use."""
PRODUCT_COLUMNS = [
    "Handle", "Title", "Vendor", "Type", "Tags", "Published", "Gift Card", "Status", "Variant SKU", "Variant Price",
    "Variant Compare At Price", "Variant Inventory Tracker", "Variant Inventory Qty", "Variant Inventory Policy",
    "Image Src", *META_COLUMNS.values(),
]  # fmt: skip
CUSTOMER_COLUMNS = [
    "Customer ID", "First Name", "Last Name", "Email", "Accepts Email Marketing", "Phone", "Accepts SMS Marketing",
    "Default Address City", "Default Address Province Code", "Default Address Country Code", "Default Address Zip",
    "Default Address Phone",
]  # fmt: skip
ORDER_COLUMNS = [
    "Name", "Email", "Financial Status", "Paid at", "Accepts Marketing", "Currency", "Subtotal", "Shipping", "Taxes",
    "Total", "Discount Amount", "Created at", "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku",
    "Billing Name", "Billing City", "Billing Zip", "Billing Province", "Billing Country", "Cancelled at",
    "Refunded Amount", "Id", "Lineitem id",
]  # fmt: skip
"""The orders export's columns, plus ``Lineitem id``: two identical lines of one order stay two lines (the export
checks skip rows repeated field for field)."""
PRODUCT_STATUS = {"publish": "active", "draft": "draft", "pending": "draft", "private": "draft", "future": "draft"}


@dataclass
class WooCommerceRead(SourceRead):
    """A store read from WooCommerce, with how many requests it made and the waits it took. ``present`` is set when
    this run read the whole customers list and its total held still while it was read."""

    requests: int = 0
    waits: list[float] = field(default_factory=list)


class _Stop(Exception):
    """The read cannot go on (retries exhausted, an answer that breaks the API's contract); complete pages stay.
    ``status``: the HTTP status that stopped it, when one did."""

    def __init__(self, problem: str, status: int | None = None) -> None:
        super().__init__(problem)
        self.status = status


class WooCommerceApi:
    """The store from WooCommerce's REST API v3 (see the module docstring)."""

    role: ClassVar[str] = "store"
    platform: ClassVar[str] = "woocommerce"

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
        self._token_setting = _sibling(config.setting, "TOKEN")
        self._base_setting = _sibling(config.setting, "API_BASE")
        self.requests = 0
        self.waits: list[float] = []
        self._answered = False

    # configuration -----------------------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        """``woocommerce://HOST[:PORT][/path]`` (never credentials), and the stand-in base when one is set."""
        parts = urlsplit(self.config.url.strip())
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            port = ""
        where = f"woocommerce://{parts.hostname or ''}{port}{parts.path.rstrip('/')}"
        return f"{where} via {self.config.api_base}" if self.config.api_base else where

    def _refused(self, problem: str) -> SourceRefused:
        return SourceRefused(f"{self.config.setting} ({self.location}): {problem}")

    def check(self) -> None:
        """The URL names a host, the key is ``ck_…:cs_…`` and may travel to the API's base: else SourceRefused."""
        self._api_root()
        self._key()

    def _api_root(self) -> str:
        parts = urlsplit(self.config.url.strip())
        if parts.scheme.lower() != "woocommerce" or not parts.hostname:
            raise self._refused("not a woocommerce://HOST URL — e.g. woocommerce://shop.example (the store's host, and "
                                "its path when WordPress lives in a folder)")  # fmt: skip
        if parts.username or parts.password or parts.query or parts.fragment:
            raise self._refused(f"the URL must not hold credentials, a query or a fragment — the key goes in "
                                f"{self._token_setting}")  # fmt: skip
        try:
            parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
        except ValueError:
            raise self._refused("the URL's port is not a number") from None
        if self.config.api_base:
            try:
                base = checked_base_url(self.config.api_base, self._base_setting,
                                        fix="give the store's address, e.g. https://shop.example", exposed="the REST "
                                        "API key travels unencrypted", logger=log)  # fmt: skip
            except ChannelConfigError as exc:
                raise self._refused(str(exc)) from None
        else:
            base = f"https://{parts.netloc}{parts.path.rstrip('/')}"
        split = urlsplit(base)
        if split.scheme == "http" and not is_loopback(split.hostname or ""):
            raise self._refused(f"{self._base_setting}={base} is plain http to a host that is not this machine: the "
                                f"REST API key would cross the network in clear text — use https")  # fmt: skip
        return base + API_PATH

    def _key(self) -> tuple[str, str]:
        token = (self.config.token or "").strip()
        how = HOW_TO_KEY.format(setting=self._token_setting)
        if not token:
            raise self._refused(f"{self._token_setting} is not set — {how}")
        match = _KEY.fullmatch(token)
        if match is None:
            raise self._refused(f"{self._token_setting} is not a WooCommerce REST API key (ck_…:cs_…) — {how}")
        return match.group(1), match.group(2)

    # reading -----------------------------------------------------------------------------------------------------

    def read(self, context: ReadContext) -> WooCommerceRead:
        api, key = self._api_root(), self._key()
        client = self._client or httpx.Client(timeout=TIMEOUT, headers={"User-Agent": "omnicast"})
        self._answered = False
        session = _Session(self, client, api, key, context)
        try:
            error = session.run()
        finally:
            if self._client is None:
                client.close()
        if error is not None and not self._answered:
            raise self._refused(f"{error} — check the host, that WooCommerce (3.5 or later) is active and its REST "
                                f"API reachable (Settings → Permalinks must not be 'Plain')")  # fmt: skip
        return session.result(self, error)

    def _get(self, client: httpx.Client, url: str, key: tuple[str, str], params: Mapping[str, Any]) -> httpx.Response:
        """One GET, retried on 429/5xx and network errors; 401/403 refuse the source; another error stops the read."""

        def attempt() -> httpx.Response | Retry:
            try:
                response = client.get(url, params=dict(params), auth=key)
            except httpx.TimeoutException:
                return Retry("the request timed out")
            except httpx.TransportError as exc:
                return Retry(f"network error ({type(exc).__name__})")
            self.requests += 1
            if response.status_code == 429 or response.status_code >= 500:
                wait = retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC))
                return Retry(f"HTTP {response.status_code}{_problem(response)}", wait)
            return response

        def give_up(retry: Retry, attempts: int) -> httpx.Response:
            raise _Stop(f"{retry.problem} ({attempts} attempts)")

        def on_retry(retry: Retry, wait: float, number: int) -> None:
            log.info("woocommerce: %s; retry %d in %.1f s", retry.problem, number, wait)
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
        if response.status_code in (401, 403):
            how = HOW_TO_KEY.format(setting=self._token_setting)
            raise self._refused(f"the key in {self._token_setting} was refused (HTTP {response.status_code}"
                                f"{_problem(response)}) — {how}")  # fmt: skip
        if response.status_code >= 400:
            problem = f"HTTP {response.status_code}{_problem(response)} from {urlsplit(url).path}"
            raise _Stop(problem, response.status_code)
        return response


@dataclass
class _Resource:
    """What one resource's read holds so far: its records' rows by id (the latest version wins), the modification
    of each record read, and the watermark its complete pages reached."""

    rows: dict[int, list[dict[str, str]]] = field(default_factory=dict)
    seen: dict[int, str] = field(default_factory=dict)
    watermark: str | None = None


class _Session:
    """One read: the three resources in order (products first: their SKUs are the orders' known SKUs), stopping at
    the first failure."""

    def __init__(self, reader: WooCommerceApi, client: httpx.Client, api: str, key: tuple[str, str],
                 context: ReadContext) -> None:  # fmt: skip
        self.reader, self.client, self.api, self.key, self.context = reader, client, api, key, context
        stored = context.watermarks
        self.resources = {name: _Resource(watermark=stored.get(name)) for name in ("products", "customers", "orders")}
        self.incremental = any(stored.get(name) for name in self.resources)
        self.present: set[str] | None = None

    def get(self, path: str, params: Mapping[str, Any]) -> httpx.Response:
        response = self.reader._get(self.client, self.api + path, self.key, params)
        self.reader._answered = True
        return response

    def run(self) -> str | None:
        for name, reading in (("products", self.products), ("customers", self.customers), ("orders", self.orders)):
            try:
                reading()
            except _Stop as stop:
                log.warning("woocommerce: %s read stopped: %s", name, stop)
                return f"{name}: {stop}"
            self.context.say(f"woocommerce {name}: {len(self.resources[name].rows)} changed records read")
        return None

    # products and orders: keyset pages by modification --------------------------------------------------------

    def by_modification(self, name: str, path: str, rows_of: Callable[[dict[str, Any]], list[dict[str, str]]]) -> None:
        resource = self.resources[name]
        cursor = reached = _wc_time(resource.watermark)
        page = 1
        while True:
            params: dict[str, Any] = {"per_page": PER_PAGE, "page": page, "orderby": "modified", "order": "asc"}
            if cursor is not None:
                params |= {"modified_after": (cursor - timedelta(seconds=1)).strftime(WC_TIME), "dates_are_gmt": "true"}
            response = self.get(path, params)
            records = _records(response)
            stamps = [_modified(record) for record in records]
            fresh = {}
            for record in records:
                identity = _id(record)
                if resource.seen.get(identity) != record.get("date_modified_gmt"):
                    fresh[identity] = (rows_of(record), record.get("date_modified_gmt"))
            for identity, (rows, modified) in fresh.items():  # the page is complete: it counts
                resource.rows.pop(identity, None)
                resource.rows[identity] = rows
                resource.seen[identity] = str(modified)
            if not records:
                return
            latest = max(stamps)
            if reached is None or latest > reached:
                reached = latest
                resource.watermark = latest.strftime(WC_TIME)
            if page >= _total_pages(response, len(records)):
                return
            if cursor is None or latest > cursor:
                cursor, page = latest, 1
            else:
                page += 1  # a whole page within one second: only the page number moves on

    def products(self) -> None:
        self.by_modification("products", "/products", self.product_rows)

    def product_rows(self, product: dict[str, Any]) -> list[dict[str, str]]:
        kind = product.get("type")
        if kind == "grouped":
            return []
        if kind != "variable":
            return [_product_row(product, None)]
        return [_product_row(product, variation) for variation in self.variations(_id(product))]

    def variations(self, product_id: int) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            try:
                response = self.get(f"/products/{product_id}/variations",
                                    {"per_page": PER_PAGE, "page": page, "orderby": "id", "order": "asc"})  # fmt: skip
            except _Stop as stop:
                if stop.status == 404:  # the product was deleted while the list was read: nothing to sell
                    return
                raise
            records = _records(response)
            yield from records
            if not records or page >= _total_pages(response, len(records)):
                return
            page += 1

    def orders(self) -> None:
        self.by_modification("orders", "/orders", _order_rows)

    # customers: the whole list, by id --------------------------------------------------------------------------

    def customers(self) -> None:
        resource = self.resources["customers"]
        since = _wc_time(resource.watermark) if resource.watermark else None
        ids: set[str] = set()
        totals: set[int] = set()
        latest: datetime | None = None
        server_start: datetime | None = None
        page = 1
        while True:
            response = self.get("/customers", {"per_page": PER_PAGE, "page": page, "orderby": "id", "order": "asc"})
            server_start = server_start or _server_time(response)
            records = _records(response)
            totals.add(_header_int(response, "X-WP-Total", -1))
            for record in records:
                stamp = _modified(record)
                identity = _id(record)
                ids.add(str(identity))
                latest = stamp if latest is None else max(latest, stamp)
                if since is None or stamp >= since:
                    resource.rows.pop(identity, None)
                    resource.rows[identity] = [_customer_row(record)]
            if not records or page >= _total_pages(response, len(records)):
                break
            page += 1
        if len(totals) == 1 and len(ids) == totals.pop():
            self.present = ids
        if latest is not None:
            ceiling = (server_start or _naive_utc(self.context.now)) - CLOCK_MARGIN
            resource.watermark = min(latest, ceiling).strftime(WC_TIME)

    # result ------------------------------------------------------------------------------------------------------

    def result(self, reader: WooCommerceApi, error: str | None) -> WooCommerceRead:
        context = self.context
        intakes = {name: Intake(name, f"woocommerce:{name}") for name in self.resources}

        def rows(name: str) -> list[dict[str, str]]:
            return [row for group in self.resources[name].rows.values() for row in group]

        products_frame = text_frame(intakes["products"], rows("products"), PRODUCT_COLUMNS)
        products = check_products(products_frame, intakes["products"])
        customers_frame = text_frame(intakes["customers"], rows("customers"), CUSTOMER_COLUMNS)
        customers = check_customers(customers_frame, intakes["customers"], context.default_country)
        known = set(context.known_skus) | set(products["sku"])
        orders = check_orders(text_frame(intakes["orders"], rows("orders"), ORDER_COLUMNS), intakes["orders"], known,
                              context.now)  # fmt: skip
        for intake in intakes.values():
            intake.release()
        context.say(f"woocommerce: {len(products)} products, {len(customers)} customers, {len(orders.orders)} orders "
                    f"({len(orders.lines)} lines) in {reader.requests} requests")  # fmt: skip
        frames: dict[str, pd.DataFrame] = {"products": products, "customers": customers, "orders": orders.orders,
                                           "lines": orders.lines}  # fmt: skip
        watermarks = {name: r.watermark for name, r in self.resources.items() if r.watermark}
        return WooCommerceRead(
            reader.role, reader.platform, reader.location, frames, intakes, watermarks=watermarks,
            incremental=self.incremental, error=error, present=self.present,
            requests=reader.requests, waits=list(reader.waits),
        )  # fmt: skip


def text_frame(intake: Intake, records: list[dict[str, str]], columns: list[str]) -> pd.DataFrame:
    """:func:`~sources.validate.raw_frame`, with text columns even when there is no record (an incremental run that
    found nothing new: the checks take the cells as text)."""
    frame = raw_frame(intake, records, columns)
    if frame.empty:
        for name in columns:
            frame[name] = frame[name].astype(str)
    return frame


# answers -----------------------------------------------------------------------------------------------------------


def _records(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        answer = response.json()
    except ValueError:
        raise _Stop(f"an answer from {response.request.url.path} is not JSON") from None
    if not isinstance(answer, list) or not all(isinstance(item, dict) for item in answer):
        raise _Stop(f"an answer from {response.request.url.path} is not a list of records")
    return answer


def _id(record: Mapping[str, Any]) -> int:
    identity = record.get("id")
    if not isinstance(identity, int) or isinstance(identity, bool):
        raise _Stop("a record without an integer id")
    return identity


def _modified(record: Mapping[str, Any]) -> datetime:
    stamp = _wc_time(record.get("date_modified_gmt"))
    if stamp is None:
        raise _Stop(f"record {record.get('id')!r} has no readable date_modified_gmt")
    return stamp


def _header_int(response: httpx.Response, name: str, default: int) -> int:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isdigit() else default


def _total_pages(response: httpx.Response, count: int) -> int:
    """``X-WP-TotalPages``; without it, a short page is the last."""
    pages = _header_int(response, "X-WP-TotalPages", -1)
    if pages >= 0:
        return pages
    return 0 if count < PER_PAGE else 1 << 30


def _server_time(response: httpx.Response) -> datetime | None:
    """The server's clock from the answer's ``Date`` header (UTC, naive), or None."""
    try:
        when = parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError):
        return None
    return _naive_utc(when)


def _problem(response: httpx.Response) -> str:
    """`` code: message`` of a WordPress error body ``{code, message, data: {status}}`` (short), or nothing."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or not body.get("code"):
        return ""
    return f" {str(body.get('code'))[:80]}: {str(body.get('message', ''))[:160]}"


# mapping -----------------------------------------------------------------------------------------------------------


def _wc_time(value: Any) -> datetime | None:
    """A WooCommerce ``*_gmt`` time (``2026-10-02T16:15:00``, UTC) as a naive UTC datetime; None when unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        stamp = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return _naive_utc(stamp)


def _export_time(value: Any) -> str:
    """A ``*_gmt`` time as the Shopify export writes times; the raw text when it does not read (the check then says
    what is wrong with it), blank when absent."""
    stamp = _wc_time(value)
    if stamp is not None:
        return stamp.strftime(EXPORT_TIME)
    return "" if value is None else str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is no number


def _money(value: float) -> str:
    return f"{value:.2f}"


def _meta(record: Mapping[str, Any]) -> dict[str, str]:
    values = {}
    for entry in record.get("meta_data") or []:
        if isinstance(entry, dict) and entry.get("key") in META_COLUMNS and entry.get("value") not in (None, ""):
            values[META_COLUMNS[entry["key"]]] = _text(entry["value"])
    return values


def _first_image(record: Mapping[str, Any]) -> str:
    images = record.get("images") or []
    first = images[0] if images and isinstance(images[0], dict) else {}
    return _text(first.get("src"))


def _product_row(product: Mapping[str, Any], variation: Mapping[str, Any] | None) -> dict[str, str]:
    """One export row: a simple product, or one variation of a variable product (product-level fields from it)."""
    item = variation if variation is not None else product
    categories = [c.get("name") for c in product.get("categories") or [] if isinstance(c, dict) and c.get("name")]
    tags = [t.get("name") for t in product.get("tags") or [] if isinstance(t, dict) and t.get("name")]
    status = _text(product.get("status"))
    if variation is not None and variation.get("status") not in (None, "publish"):
        status = _text(variation.get("status"))  # a disabled (private) variation is not for sale
    manage = item.get("manage_stock")
    stock_from = product if manage == "parent" else item
    tracked = manage is True or (manage == "parent" and product.get("manage_stock") is True)
    image = item.get("image") if variation is not None else None
    image_src = _text(image.get("src")) if isinstance(image, dict) else ""
    return {
        "Handle": _text(product.get("slug")),
        "Title": _text(product.get("name")),
        "Type": _text(categories[0]) if categories else "",
        "Tags": ", ".join(str(tag) for tag in tags),
        "Published": "true" if status == "publish" and product.get("catalog_visibility") != "hidden" else "false",
        "Status": PRODUCT_STATUS.get(status, status),
        "Variant SKU": _text(item.get("sku")),
        "Variant Price": _text(item.get("price")),
        "Variant Compare At Price": _text(item.get("regular_price")) if item.get("on_sale") else "",
        "Variant Inventory Tracker": "woocommerce" if tracked else "",
        "Variant Inventory Qty": _text(stock_from.get("stock_quantity")) if tracked else "",
        "Variant Inventory Policy": "deny" if stock_from.get("backorders", "no") == "no" else "continue",
        "Image Src": image_src or _first_image(product),
        **_meta(product),
    }


def _customer_row(customer: Mapping[str, Any]) -> dict[str, str]:
    billing = _mapping(customer.get("billing"))
    return {
        "Customer ID": _text(customer.get("id")),
        "First Name": _text(customer.get("first_name") or billing.get("first_name")),
        "Last Name": _text(customer.get("last_name") or billing.get("last_name")),
        "Email": _text(customer.get("email")),
        "Accepts Email Marketing": "",
        "Phone": "",
        "Accepts SMS Marketing": "",
        "Default Address City": _text(billing.get("city")),
        "Default Address Province Code": _text(billing.get("state")),
        "Default Address Country Code": _text(billing.get("country")),
        "Default Address Zip": _text(billing.get("postcode")),
        "Default Address Phone": _text(billing.get("phone")),
    }


def _refunded(order: Mapping[str, Any]) -> tuple[float | None, str]:
    """The refunds' sum (``refunds[].total`` are negative) and its cell; a total that is not a number leaves the
    raw text (set aside by the check)."""
    totals = [refund.get("total") for refund in order.get("refunds") or [] if isinstance(refund, dict)]
    numbers = [_number(total) for total in totals]
    if any(number is None for number in numbers):
        return None, "; ".join(_text(total) for total in totals)
    amount = sum(abs(number) for number in numbers if number is not None)
    return amount, _money(amount)


def financial_status(order: Mapping[str, Any]) -> str:
    """Shopify's Financial Status for a WooCommerce order (the table in the module docstring)."""
    status = _text(order.get("status"))
    refunded, _ = _refunded(order)
    if status == "refunded":
        return "refunded"
    if status in ("completed", "processing"):
        total = _number(order.get("total"))
        if refunded:
            return "refunded" if total is not None and refunded >= total - 0.005 else "partially_refunded"
        return "paid"
    if status in ("pending", "on-hold"):
        return "pending"
    if status in ("cancelled", "failed"):
        return "voided"
    return status


def _unit_price(item: Mapping[str, Any]) -> str:
    quantity, subtotal = _number(item.get("quantity")), _number(item.get("subtotal"))
    if quantity and quantity > 0 and subtotal is not None:
        return _money(subtotal / quantity)
    return _text(item.get("price"))


def _order_rows(order: Mapping[str, Any]) -> list[dict[str, str]]:
    """One export row per line item, each with the order's fields (the checks take them from its first row)."""
    billing = _mapping(order.get("billing"))
    items = [item for item in order.get("line_items") or [] if isinstance(item, dict)]
    line_totals = [_number(item.get("total")) for item in items]
    subtotal = _money(sum(t for t in line_totals if t is not None)) if all(t is not None for t in line_totals) else ""
    _, refunded = _refunded(order)
    status = _text(order.get("status"))
    name = " ".join(part for part in (_text(billing.get("first_name")), _text(billing.get("last_name"))) if part)
    head = {
        "Name": f"#{order['number']}" if order.get("number") not in (None, "") else "",
        "Email": _text(billing.get("email")),
        "Financial Status": financial_status(order),
        "Paid at": _export_time(order.get("date_paid_gmt")),
        "Accepts Marketing": "",
        "Currency": _text(order.get("currency")),
        "Subtotal": subtotal,
        "Shipping": _text(order.get("shipping_total")),
        "Taxes": _text(order.get("total_tax")),
        "Total": _text(order.get("total")),
        "Discount Amount": _text(order.get("discount_total")),
        "Created at": _export_time(order.get("date_created_gmt")),
        "Billing Name": name,
        "Billing City": _text(billing.get("city")),
        "Billing Zip": _text(billing.get("postcode")),
        "Billing Province": _text(billing.get("state")),
        "Billing Country": _text(billing.get("country")),
        "Cancelled at": _export_time(order.get("date_modified_gmt")) if status in ("cancelled", "failed") else "",
        "Refunded Amount": refunded,
        "Id": _text(order.get("id")),
    }
    lines = [
        {
            "Lineitem quantity": _text(item.get("quantity")),
            "Lineitem name": _text(item.get("name")),
            "Lineitem price": _unit_price(item),
            "Lineitem sku": _text(item.get("sku")),
            "Lineitem id": _text(item.get("id")),
        }
        for item in items
    ]
    return [head | line for line in lines or [{}]]


# settings ----------------------------------------------------------------------------------------------------------


def _sibling(setting: str, suffix: str) -> str:
    """``OMNICAST_STORE_URL`` → ``OMNICAST_STORE_TOKEN`` (the settings of one source share their stem)."""
    stem = setting[: -len("_URL")] if setting.endswith("_URL") else "OMNICAST_STORE"
    return f"{stem}_{suffix}"


def _naive_utc(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when
