"""The store from the Shopify Admin GraphQL API (``shopify://SHOP.myshopify.com``): products, customers, orders.

Each record fetched is put in the columns of Shopify's own CSV export (``products_export.csv`` one row per variant,
``customers_export.csv``, ``orders_export.csv`` one row per line item with the order's fields on its first row) and
checked by ``sources.shopify.check_*``: a bad email or price is quarantined exactly as in the export.

How it reads, per resource (``products``, ``customers``, ``orders``):

* **First load** (no stored watermark): a bulk operation — ``bulkOperationRunQuery``, then ``currentBulkOperation``
  polled (waits growing from :data:`BULK_POLL_FIRST` to :data:`BULK_POLL_CAP` seconds) until ``COMPLETED``, then the
  JSONL at its ``url`` downloaded (without the access token: it is a signed storage URL) and nested nodes put back
  under their parent by ``__parentId``. ``FAILED``/``CANCELED``/``EXPIRED`` refuse the source naming Shopify's
  ``errorCode``. Its watermark: the latest ``updatedAt`` seen, but no later than the operation's ``createdAt``
  (a record changed while the operation ran is read again next time).
* **Incremental** (a stored watermark): cursor pages of ``query: "updated_at:>='WATERMARK'"`` (inclusive: a record
  read twice changes nothing), ``sortKey: UPDATED_AT``; a nested connection longer than one page (a product's
  variants, an order's line items) is paged on through ``product(id:)``/``order(id:)``. The watermark reached is the
  last ``updatedAt`` of the last complete page.

Cost: Shopify meters queries by calculated cost from a leaky bucket; every answer says how full it is
(``extensions.cost.throttleStatus``). Before a query the reader waits until the bucket holds the query's cost
(deficit / restoreRate, counting the refill since the last answer); a ``THROTTLED`` answer is waited out and the same
page asked again. A page holds as many records as fit under :data:`MAX_QUERY_COST` (at most 250), learnt from the
costs Shopify reports. HTTP 429 waits its ``Retry-After``; 5xx and dropped connections are retried with backoff
(:data:`MAX_RETRIES`). Credentials refused (401/403, ``ACCESS_DENIED``), an unknown shop or API version (404) or a
query Shopify refuses refuse the source (:class:`~sources.base.SourceRefused`). Retries exhausted part-way return
what the complete pages held, their watermarks, and ``error``; later resources are not read (orders need the
products' SKUs). Logs hold counts only.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import orjson
import pandas as pd

from channels.base import ChannelConfigError
from channels.http import Retry, checked_base_url, jittered_backoff, retry_after_seconds, with_retries
from sources.base import ReadContext, SourceConfig, SourceRead, SourceRefused
from sources.shopify import check_customers, check_orders, check_products
from sources.validate import ROW, Intake, raw_frame

__all__ = ["API_VERSION", "MAX_PAGE", "MAX_QUERY_COST", "RESOURCES", "SCOPES", "WAIT_MARGIN", "ReadStats", "ShopifyApi"]

logger = logging.getLogger(__name__)

API_VERSION = "2025-07"
"""The Admin API version every call names (Shopify supports a version for a year: move it on with the schema)."""
SCOPES = ("read_products", "read_customers", "read_orders")
RESOURCES = ("products", "customers", "orders")
MAX_PAGE = 250
"""Shopify's largest ``first``."""
MAX_QUERY_COST = 1000
"""Shopify's most a single query may cost; a page's size is chosen to stay under it."""
NESTED_PAGE = 10
"""Variants of a product / line items of an order fetched with it; more are paged on (rare, and cheap then)."""
MAX_RETRIES = 5
"""Retries of one call after 429, 5xx or a dropped connection, before the read stops there."""
MAX_RETRY_WAIT = 300.0
MAX_THROTTLED = 50
"""``THROTTLED`` answers to one call (each waited out) before the read stops there."""
BULK_POLL_FIRST = 1.0
BULK_POLL_CAP = 30.0
BULK_MAX_WAIT = 6 * 3600.0
"""How long a bulk operation may run before the read gives up on it (a very large store's orders take hours)."""
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
WAIT_MARGIN = 1.0
"""Points waited for beyond a query's cost: Shopify reports the bucket rounded, so a wait to the exact point can fall
short by a fraction of a point and be throttled (at 50 points/s: 20 ms a wait)."""

_HOST = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
_SETTING = re.compile(r"([A-Z][A-Z0-9_]*?)_(?:URL|PATH)\b")
_STATES = {"SUBSCRIBED": "yes", "NOT_SUBSCRIBED": "no", "UNSUBSCRIBED": "no", "PENDING": "no", "INVALID": "no",
           "REDACTED": "no"}  # fmt: skip
"""Marketing states as the export's yes/no: only ``SUBSCRIBED`` consents; an unknown state states nothing."""

PRODUCT_COLUMNS = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Type", "Tags", "Published", "Option1 Name", "Option1 Value",
    "Variant SKU", "Variant Inventory Tracker", "Variant Inventory Qty", "Variant Inventory Policy", "Variant Price",
    "Variant Compare At Price", "Image Src", "Gift Card", "Flavour notes (product.metafields.custom.flavour_notes)",
    "Roast level (product.metafields.custom.roast_level)", "Origin (product.metafields.custom.origin)",
    "Replenishment days (product.metafields.custom.replenishment_days)", "Status",
]  # fmt: skip
CUSTOMER_COLUMNS = [
    "Customer ID", "First Name", "Last Name", "Email", "Accepts Email Marketing", "Default Address Company",
    "Default Address Address1", "Default Address Address2", "Default Address City", "Default Address Province Code",
    "Default Address Country Code", "Default Address Zip", "Default Address Phone", "Phone", "Accepts SMS Marketing",
    "Total Spent", "Total Orders", "Note", "Tax Exempt", "Tags",
]  # fmt: skip
ORDER_COLUMNS = [
    "Name", "Email", "Financial Status", "Fulfillment Status", "Accepts Marketing", "Currency", "Subtotal",
    "Shipping", "Taxes", "Total", "Discount Code", "Discount Amount", "Created at", "Lineitem quantity",
    "Lineitem name", "Lineitem price", "Lineitem sku", "Billing Name", "Billing City", "Billing Zip",
    "Billing Province", "Billing Country", "Billing Phone", "Notes", "Cancelled at", "Payment Method",
    "Refunded Amount", "Vendor", "Id", "Tags", "Source", "Phone", "Lineitem id",
]  # fmt: skip
"""The export's columns, and the line item's own id: two line items alike in every exported column (the same SKU
twice, say) are two lines, not an exact duplicate row to skip."""
METAFIELDS = {"flavour_notes": "Flavour notes (product.metafields.custom.flavour_notes)",
              "roast_level": "Roast level (product.metafields.custom.roast_level)",
              "origin": "Origin (product.metafields.custom.origin)",
              "replenishment_days": "Replenishment days (product.metafields.custom.replenishment_days)"}  # fmt: skip


# --- what is asked -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resource:
    """One resource's query parts: its root field, the fields of a node, its one nested connection (``variants``,
    ``lineItems``) and that connection's node fields, the root field fetching one record (to page the nested
    connection on), and a first guess of a node's cost (Shopify's answers then tell)."""

    name: str
    fields: str
    nested: str | None
    nested_fields: str
    single: str
    node_cost: int


_METAFIELDS = " ".join(f'{key}: metafield(namespace: "custom", key: "{key}") {{ value }}' for key in METAFIELDS)
_MONEY = "{ shopMoney { amount } }"
SPECS = {
    "products": _Resource(
        "products",
        "id handle title descriptionHtml vendor productType tags status publishedAt isGiftCard updatedAt "
        f"featuredImage {{ url }} {_METAFIELDS}",
        "variants",
        "id sku price compareAtPrice inventoryQuantity inventoryPolicy inventoryItem { tracked } "
        "selectedOptions { name value }",
        "product",
        1 + 1 + len(METAFIELDS) + 2 + NESTED_PAGE * 3,
    ),
    "customers": _Resource(
        "customers",
        "id firstName lastName email phone note taxExempt tags numberOfOrders updatedAt "
        "emailMarketingConsent { marketingState consentUpdatedAt } "
        "smsMarketingConsent { marketingState consentUpdatedAt } "
        "defaultAddress { company address1 address2 city provinceCode countryCodeV2 zip phone } "
        "amountSpent { amount }",
        None,
        "",
        "customer",
        1 + 4,
    ),
    "orders": _Resource(
        "orders",
        "id name email phone createdAt updatedAt cancelledAt displayFinancialStatus displayFulfillmentStatus "
        "currencyCode customerAcceptsMarketing discountCodes note tags sourceName paymentGatewayNames "
        f"subtotalPriceSet {_MONEY} totalShippingPriceSet {_MONEY} totalTaxSet {_MONEY} totalPriceSet {_MONEY} "
        f"totalDiscountsSet {_MONEY} billingAddress {{ name city zip provinceCode countryCodeV2 phone }} "
        f"refunds {{ id createdAt totalRefundedSet {_MONEY} }}",
        "lineItems",
        f"id sku name quantity vendor originalUnitPriceSet {_MONEY}",
        "order",
        1 + 10 + 1 + 3 + 2 + NESTED_PAGE * 3,
    ),
}  # fmt: skip
_PAGE_INFO = "pageInfo { hasNextPage endCursor }"


def _page_query(spec: _Resource) -> str:
    nested = ""
    if spec.nested:
        nested = f"{spec.nested}(first: {NESTED_PAGE}) {{ {_PAGE_INFO} nodes {{ {spec.nested_fields} }} }}"
    return (
        f"query Page($first: Int!, $after: String, $query: String) {{ {spec.name}(first: $first, after: $after, "
        f"query: $query, sortKey: UPDATED_AT) {{ {_PAGE_INFO} nodes {{ {spec.fields} {nested} }} }} }}"
    )


def _rest_query(spec: _Resource) -> str:
    return (
        f"query Rest($id: ID!, $after: String) {{ {spec.single}(id: $id) {{ {spec.nested}(first: {MAX_PAGE}, "
        f"after: $after) {{ {_PAGE_INFO} nodes {{ {spec.nested_fields} }} }} }} }}"
    )


def _bulk_query(spec: _Resource) -> str:
    nested = f"{spec.nested} {{ edges {{ node {{ {spec.nested_fields} }} }} }}" if spec.nested else ""
    return f"{{ {spec.name} {{ edges {{ node {{ {spec.fields} {nested} }} }} }} }}"


RUN_BULK = (
    "mutation RunBulk($query: String!) { bulkOperationRunQuery(query: $query) { "
    "bulkOperation { id status createdAt } userErrors { field message code } } }"
)
POLL_BULK = "query PollBulk { currentBulkOperation { id status errorCode createdAt objectCount url partialDataUrl } }"


# --- errors and accounting -------------------------------------------------------------------------------------


class _Stopped(Exception):
    """A call that could not be completed after its retries (what failed, in one line): the read stops there, and
    ``watermark`` is how far the resource's complete pages got."""

    def __init__(self, problem: str, watermark: str | None = None) -> None:
        super().__init__(problem)
        self.watermark = watermark


class _TooCostly(Exception):
    """``MAX_COST_EXCEEDED``: the page asked for more than one query may cost (``limit``: what Shopify says it is)."""

    def __init__(self, limit: float | None) -> None:
        super().__init__(f"over the single query limit ({limit})")
        self.limit = limit


@dataclass
class ReadStats:
    """What one read cost: calls made, ``THROTTLED`` answers, seconds waited for the bucket, other retries."""

    requests: int = 0
    throttled: int = 0
    throttle_wait: float = 0.0
    retries: int = 0
    bulk_operations: int = 0
    pages: dict[str, int] = field(default_factory=dict)


class _Bucket:
    """The leaky bucket as the last answer described it, refilled by the time since (``clock``)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.available: float | None = None
        self.maximum = float(MAX_QUERY_COST)
        self.rate = 50.0
        self.at = 0.0

    def update(self, cost: Mapping[str, Any] | None) -> None:
        status = (cost or {}).get("throttleStatus")
        if not isinstance(status, Mapping):
            return
        try:
            self.maximum = float(status["maximumAvailable"])
            self.available = float(status["currentlyAvailable"])
            self.rate = max(float(status["restoreRate"]), 1e-6)
        except (KeyError, TypeError, ValueError):
            return
        self.at = self.clock()

    def wait_for(self, cost: float) -> float:
        """Seconds until the bucket holds ``cost`` points and :data:`WAIT_MARGIN` more; 0 when it holds ``cost``, or
        nothing is known yet."""
        if self.available is None:
            return 0.0
        now = min(self.maximum, self.available + (self.clock() - self.at) * self.rate)
        deficit = min(cost, self.maximum) - now
        return (deficit + WAIT_MARGIN) / self.rate if deficit > 0 else 0.0


# --- the reader ------------------------------------------------------------------------------------------------


class ShopifyApi:
    """The store from the Shopify Admin GraphQL API (see the module docstring).

    ``sleep`` and ``clock`` are how the reader waits and tells time (tests pass a clock that only moves when slept
    on); ``client`` an httpx client to use instead of its own (closed by its owner)."""

    role: ClassVar[str] = "store"
    platform: ClassVar[str] = "shopify"

    def __init__(
        self,
        config: SourceConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        client: httpx.Client | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.sleep = sleep
        self.clock = clock
        self.jitter = jitter
        self._client = client
        self.stats = ReadStats()
        self._bucket = _Bucket(clock)
        self._costs: dict[str, float] = {}
        """Query shape → the cost Shopify last said it requested (the next query of that shape waits for it)."""
        self._node_cost: dict[str, float] = {}
        """Resource → what one record of a page costs, as Shopify's answers show it."""
        self._max_cost = float(MAX_QUERY_COST)
        """The most one query may cost: Shopify's documented limit, or the lower one a refusal named."""
        parts = urlsplit(config.url.strip())
        self.shop = (parts.hostname or "").lower()
        self._parts = parts

    # settings -------------------------------------------------------------------------------------------------

    def _sibling(self, suffix: str) -> str:
        """A setting next to the URL's: ``OMNICAST_STORE_URL (--store)`` → ``OMNICAST_STORE_TOKEN``."""
        match = _SETTING.match(self.config.setting)
        return f"{match.group(1) if match else 'OMNICAST_STORE'}_{suffix}"

    @property
    def token_setting(self) -> str:
        return self._sibling("TOKEN")

    @property
    def base_setting(self) -> str:
        return self._sibling("API_BASE")

    @property
    def location(self) -> str:
        where = f"shopify://{self.shop}"
        return f"{where} via {self.config.api_base.strip()}" if self.config.api_base else where

    @property
    def endpoint(self) -> str:
        return f"{self._base()}/admin/api/{API_VERSION}/graphql.json"

    def _where(self) -> str:
        return f"{self.config.setting} ({self.config.url.strip()})"

    def _token_fix(self) -> str:
        return (
            f"set {self.token_setting} to the Admin API access token (shpat_…) of a custom app installed on "
            f"{self.shop or 'the shop'} with the {', '.join(SCOPES)} scopes (Shopify admin → Settings → Apps → "
            "Develop apps)"
        )

    def check(self) -> None:
        """The URL names a myshopify.com shop, a token is set, the API base (when set) is an http(s) URL."""
        parts = self._parts
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (
            parts.scheme.lower() != "shopify"
            or not _HOST.fullmatch(self.shop)
            or parts.username
            or parts.password
            or port is not None
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise SourceRefused(
                f"{self._where()}: not a Shopify shop — write shopify://SHOP.myshopify.com with the shop's own "
                "myshopify.com domain (Shopify admin → Settings → Domains), not its storefront domain"
            )
        if not (self.config.token or "").strip():
            raise SourceRefused(f"{self._where()}: no access token — {self._token_fix()}")
        self._base()

    def _base(self) -> str:
        if not self.config.api_base:
            return f"https://{self.shop}"
        try:
            return checked_base_url(
                self.config.api_base,
                self.base_setting,
                fix=f"leave {self.base_setting} unset to reach https://{self.shop}",
                exposed="the store's access token travels unencrypted",
                logger=logger,
            )
        except ChannelConfigError as error:
            raise SourceRefused(str(error)) from None

    # reading --------------------------------------------------------------------------------------------------

    def read(self, context: ReadContext) -> SourceRead:
        self.check()
        own = self._client is None
        client = self._client or httpx.Client(timeout=TIMEOUT)
        try:
            return self._read(client, context)
        finally:
            if own:
                client.close()

    def _read(self, client: httpx.Client, context: ReadContext) -> SourceRead:
        records: dict[str, list[dict[str, Any]]] = {name: [] for name in RESOURCES}
        watermarks: dict[str, str] = {}
        incremental = False
        error: str | None = None
        for resource in RESOURCES:
            stored = context.watermarks.get(resource)
            try:
                if stored:
                    incremental = True
                    mark = self._pages(client, resource, stored, records[resource])
                else:
                    mark = self._bulk(client, resource, records[resource])
            except _Stopped as stop:
                mark = stop.watermark
                error = (
                    f"{self._where()}: reading {resource} stopped after {len(records[resource])} records: {stop} — "
                    f"what was read is kept and the next run resumes from there"
                )
                logger.warning("shopify %s: stopped after %d records", resource, len(records[resource]))
            if mark or stored:
                watermarks[resource] = str(mark or stored)
            context.say(f"{resource}: {len(records[resource])} records fetched")
            if error is not None:
                unread = RESOURCES[RESOURCES.index(resource) + 1 :]
                watermarks.update({name: context.watermarks[name] for name in unread if context.watermarks.get(name)})
                break
        frames, intakes = self._frames(records, context)
        logger.info(
            "shopify read: %d products, %d customers, %d orders; %d requests, %d throttled, %.1f s waited",
            len(records["products"]), len(records["customers"]), len(records["orders"]), self.stats.requests,
            self.stats.throttled, self.stats.throttle_wait,
        )  # fmt: skip
        return SourceRead(self.role, self.platform, self.location, frames, intakes, watermarks, incremental,
                          error=error)  # fmt: skip

    def _pages(self, client: httpx.Client, resource: str, since: str, out: list[dict[str, Any]]) -> str | None:
        """Every record changed since ``since``, page by page; the watermark of the last complete page."""
        spec = SPECS[resource]
        query = _page_query(spec)
        after: str | None = None
        mark: str | None = None
        while True:
            node_cost = self._node_cost.get(resource, float(spec.node_cost))
            size = _page_size(node_cost, self._max_cost)
            variables = {"first": size, "after": after, "query": f"updated_at:>='{since}'"}
            shape = f"page:{resource}:{size}"
            try:
                data = self._query(client, query, variables, shape, 2 + size * node_cost)
            except _TooCostly as refusal:
                if size == 1:
                    raise SourceRefused(f"{self._where()}: one {resource} record costs more than a query may") from None
                stated = refusal.limit if refusal.limit and refusal.limit < self._max_cost else None
                self._max_cost = stated or self._max_cost
                if stated is None:
                    self._node_cost[resource] = node_cost * 2  # no limit named: half the page next time
                continue
            except _Stopped as stop:
                stop.watermark = mark
                raise
            connection = _object(data.get(resource), f"{resource} connection")
            nodes = [node for node in connection.get("nodes") or [] if isinstance(node, dict)]
            if shape in self._costs:  # what Shopify said the page cost: the next page is as large as fits
                self._node_cost[resource] = max(1.0, (self._costs[shape] - 2) / size)
            try:
                for node in nodes:
                    if spec.nested:
                        node[spec.nested] = self._nested(client, spec, node)
            except _Stopped as stop:
                stop.watermark = mark
                raise
            out.extend(nodes)
            self.stats.pages[resource] = self.stats.pages.get(resource, 0) + 1
            mark = _latest([mark, *[node.get("updatedAt") for node in nodes]]) or mark
            info = _object(connection.get("pageInfo"), "pageInfo")
            if not info.get("hasNextPage"):
                return mark
            after = info.get("endCursor")
            if not after:
                raise SourceRefused(f"{self._where()}: Shopify said more {resource} follow but gave no cursor")

    def _nested(self, client: httpx.Client, spec: _Resource, node: dict[str, Any]) -> list[dict[str, Any]]:
        """The node's nested connection as a list, paged on through ``product(id:)``/``order(id:)`` when long."""
        connection = node.get(spec.nested or "")
        if not isinstance(connection, dict):
            return []
        items = [item for item in connection.get("nodes") or [] if isinstance(item, dict)]
        info = connection.get("pageInfo") or {}
        while info.get("hasNextPage") and info.get("endCursor"):
            variables = {"id": node.get("id"), "after": info["endCursor"]}
            data = self._query(client, _rest_query(spec), variables, f"rest:{spec.name}", 3 + MAX_PAGE * 3)
            parent = data.get(spec.single)
            if not isinstance(parent, dict):
                break  # deleted since the page was read: what the page held stands
            more = _object(parent.get(spec.nested), spec.nested or "")
            items += [item for item in more.get("nodes") or [] if isinstance(item, dict)]
            info = more.get("pageInfo") or {}
        return items

    # bulk operations ------------------------------------------------------------------------------------------

    def _bulk(self, client: httpx.Client, resource: str, out: list[dict[str, Any]]) -> str | None:
        """Every record, by a bulk operation; the watermark it reached."""
        spec = SPECS[resource]
        operation = self._start_bulk(client, _bulk_query(spec))
        self.stats.bulk_operations += 1
        logger.info("shopify %s: bulk operation started", resource)
        waited = 0.0
        wait = BULK_POLL_FIRST
        while True:
            if waited > BULK_MAX_WAIT:
                raise _Stopped(f"the bulk operation ran over {BULK_MAX_WAIT / 3600:.0f} h")
            self.sleep(wait)
            waited += wait
            wait = min(BULK_POLL_CAP, wait * 2)
            data = self._query(client, POLL_BULK, {}, "poll", 1)
            current = data.get("currentBulkOperation")
            if not isinstance(current, dict) or current.get("id") != operation.get("id"):
                raise SourceRefused(f"{self._where()}: the bulk operation for {resource} is gone (another one of "
                                    "this app replaced it) — run the sync again, once at a time")  # fmt: skip
            status = current.get("status")
            if status == "COMPLETED":
                break
            if status in ("FAILED", "CANCELED", "CANCELING", "EXPIRED"):
                code = current.get("errorCode") or "no error code"
                raise SourceRefused(
                    f"{self._where()}: Shopify's bulk operation for {resource} ended {status} ({code})"
                    + (f" — {self._token_fix()}" if code == "ACCESS_DENIED" else " — run the sync again later")
                )
        url = current.get("url")
        nodes = self._download(client, url) if url else []
        _assemble(nodes, spec, out)
        logger.info("shopify %s: bulk operation completed, %d records", resource, len(out))
        mark = _latest([node.get("updatedAt") for node in out])
        started = operation.get("createdAt")
        return _earliest(mark, started if isinstance(started, str) else None)

    def _start_bulk(self, client: httpx.Client, bulk_query: str) -> dict[str, Any]:
        """Run the bulk query; when this app's earlier one still runs, wait for it to end first."""
        for _attempt in range(2):
            data = self._query(client, RUN_BULK, {"query": bulk_query}, "bulk", 10)
            payload = _object(data.get("bulkOperationRunQuery"), "bulkOperationRunQuery")
            errors = [e for e in payload.get("userErrors") or [] if isinstance(e, dict)]
            operation = payload.get("bulkOperation")
            if not errors and isinstance(operation, dict):
                return operation
            if any(e.get("code") == "OPERATION_IN_PROGRESS" or "in progress" in str(e.get("message")) for e in errors):
                self._wait_for_running(client)
                continue
            text = "; ".join(str(e.get("message")) for e in errors) or "no operation and no reason"
            raise SourceRefused(f"{self._where()}: Shopify refused the bulk query: {text}")
        raise SourceRefused(f"{self._where()}: another bulk operation of this app keeps running — run the sync again "
                            "once it has ended")  # fmt: skip

    def _wait_for_running(self, client: httpx.Client) -> None:
        waited, wait = 0.0, BULK_POLL_FIRST
        while waited <= BULK_MAX_WAIT:
            data = self._query(client, POLL_BULK, {}, "poll", 1)
            current = data.get("currentBulkOperation")
            if not isinstance(current, dict) or current.get("status") not in ("CREATED", "RUNNING", "CANCELING"):
                return
            self.sleep(wait)
            waited += wait
            wait = min(BULK_POLL_CAP, wait * 2)

    def _download(self, client: httpx.Client, url: str) -> list[dict[str, Any]]:
        """The JSONL a bulk operation wrote (fetched without the access token: a signed storage URL)."""

        def attempt() -> list[dict[str, Any]] | Retry:
            self.stats.requests += 1
            try:
                with client.stream("GET", url) as response:
                    if response.status_code == 429 or response.status_code >= 500:
                        return Retry(f"HTTP {response.status_code} downloading the bulk result",
                                     self._retry_after(response))  # fmt: skip
                    if response.status_code != 200:
                        raise SourceRefused(f"{self._where()}: the bulk result could not be downloaded (HTTP "
                                            f"{response.status_code}) — run the sync again")  # fmt: skip
                    nodes = []
                    for line in response.iter_lines():
                        if line.strip():
                            value = orjson.loads(line)
                            if isinstance(value, dict):
                                nodes.append(value)
                    return nodes
            except httpx.TransportError as exc:
                return Retry(f"the bulk result download broke off ({type(exc).__name__})")
            except orjson.JSONDecodeError:
                raise SourceRefused(f"{self._where()}: the bulk result is not JSONL — run the sync again") from None

        return self._retrying(attempt)

    # one call -------------------------------------------------------------------------------------------------

    def _query(self, client: httpx.Client, query: str, variables: dict[str, Any], shape: str,
               guess: float) -> dict[str, Any]:  # fmt: skip
        """The ``data`` of one GraphQL call: waits for the bucket first, waits out ``THROTTLED`` and asks again."""
        for _ in range(MAX_THROTTLED + 1):
            wait = self._bucket.wait_for(self._costs.get(shape, guess))
            if wait > 0:
                self._wait(wait)
            answer = self._post(client, {"query": query, "variables": variables})
            cost = answer.get("extensions", {}).get("cost") if isinstance(answer.get("extensions"), dict) else None
            self._bucket.update(cost)
            if isinstance(cost, dict) and isinstance(cost.get("requestedQueryCost"), int | float):
                self._costs[shape] = float(cost["requestedQueryCost"])
            errors = answer.get("errors")
            if not errors:
                return _object(answer.get("data"), "data")
            codes = [_code(e) for e in errors] if isinstance(errors, list) else []
            if "THROTTLED" in codes:
                self.stats.throttled += 1
                self._wait(max(self._bucket.wait_for(self._costs.get(shape, guess)), 1.0 / self._bucket.rate))
                continue
            if "MAX_COST_EXCEEDED" in codes:
                raise _TooCostly(_max_cost(errors))
            message = _messages(errors)
            if "ACCESS_DENIED" in codes:
                raise SourceRefused(f"{self._where()}: Shopify denied access ({message}) — {self._token_fix()}")
            raise SourceRefused(f"{self._where()}: Shopify refused the query (API {API_VERSION}): {message}")
        raise _Stopped(f"still THROTTLED after {MAX_THROTTLED} waits")

    def _wait(self, seconds: float) -> None:
        self.stats.throttle_wait += seconds
        logger.debug("shopify: waiting %.2f s for the cost bucket", seconds)
        self.sleep(seconds)

    def _post(self, client: httpx.Client, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"X-Shopify-Access-Token": (self.config.token or "").strip(), "Content-Type": "application/json",
                   "Accept": "application/json"}  # fmt: skip
        body = orjson.dumps(payload)

        def attempt() -> dict[str, Any] | Retry:
            self.stats.requests += 1
            try:
                response = client.post(self.endpoint, content=body, headers=headers)
            except httpx.TransportError as exc:
                return Retry(f"the connection to Shopify failed ({type(exc).__name__})")
            status = response.status_code
            if status == 429 or status >= 500:
                return Retry(f"Shopify answered HTTP {status}", self._retry_after(response))
            if status in (401, 403):
                what = "rejected the access token" if status == 401 else "refused the access token (a scope missing?)"
                raise SourceRefused(f"{self.token_setting}: {self.shop} {what} (HTTP {status}) — {self._token_fix()}")
            if status == 404:
                raise SourceRefused(
                    f"{self._where()}: no Shopify Admin API at {self.endpoint} (HTTP 404): the shop or API version "
                    f"{API_VERSION} is unknown — check the shop's myshopify.com domain"
                    + (f" and {self.base_setting}" if self.config.api_base else "")
                )
            if status in (402, 423):
                state = "frozen (unpaid)" if status == 402 else "locked"
                raise SourceRefused(f"{self._where()}: the shop is {state} (HTTP {status}) — the store owner must "
                                    "reactivate it in Shopify admin")  # fmt: skip
            if status != 200:
                raise SourceRefused(f"{self._where()}: Shopify answered HTTP {status} to a query — the API's "
                                    f"contract has changed (API {API_VERSION})?")  # fmt: skip
            try:
                answer = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                return Retry("Shopify's answer was not JSON")
            if not isinstance(answer, dict):
                return Retry("Shopify's answer was not a JSON object")
            return answer

        return self._retrying(attempt)

    def _retry_after(self, response: httpx.Response) -> float | None:
        return retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC))

    def _retrying(self, attempt: Callable[[], Any]) -> Any:
        def on_retry(retry: Retry, wait: float, number: int) -> None:
            self.stats.retries += 1
            logger.info("shopify: %s; retry %d in %.1f s", retry.problem, number, wait)

        def give_up(retry: Retry, attempts: int) -> Any:
            raise _Stopped(f"{retry.problem} ({attempts} attempts)")

        return with_retries(
            attempt,
            max_retries=MAX_RETRIES,
            max_retry_wait=MAX_RETRY_WAIT,
            delay=lambda n, after: jittered_backoff(n, after, self.jitter, first=1.0, cap=60.0),
            sleep=self.sleep,
            on_retry=on_retry,
            give_up=give_up,
        )

    # frames ---------------------------------------------------------------------------------------------------

    def _frames(
        self, records: dict[str, list[dict[str, Any]]], context: ReadContext
    ) -> tuple[dict[str, pd.DataFrame], dict[str, Intake]]:
        intakes = {name: Intake(name, f"shopify:{name}") for name in RESOURCES}
        products = check_products(
            _raw_frame(intakes["products"], list(_product_rows(records["products"])), PRODUCT_COLUMNS),
            intakes["products"],
        )
        intakes["products"].release()
        customer_rows = [_customer_row(record) for record in records["customers"]]
        customers = check_customers(
            _raw_frame(intakes["customers"], customer_rows, CUSTOMER_COLUMNS), intakes["customers"],
            context.default_country,
        )  # fmt: skip
        intakes["customers"].release()
        for channel, key in (("email", "emailMarketingConsent"), ("sms", "smsMarketingConsent")):
            stamps = [_consent_time(record.get(key)) for record in records["customers"]]
            when = pd.DatetimeIndex(pd.to_datetime(pd.Series(stamps, dtype="object"), utc=True))
            rows = customers[ROW].to_numpy(dtype="int64") - 1  # the record each checked row came from
            customers[f"accepts_{channel}_at"] = pd.Series(when.take(rows), index=customers.index)
        known = set(context.known_skus) | set(products["sku"])
        orders = check_orders(
            _raw_frame(intakes["orders"], list(_order_rows(records["orders"])), ORDER_COLUMNS), intakes["orders"],
            known, context.now,
        )  # fmt: skip
        intakes["orders"].release()
        frames = {"products": products, "customers": customers, "orders": orders.orders, "lines": orders.lines}
        return frames, intakes


# --- records as export rows ----------------------------------------------------------------------------------


def _product_rows(products: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """One row per variant, in ``products_export.csv``'s columns (product fields on every row)."""
    for product in products:
        image = product.get("featuredImage") or {}
        level = {
            "Handle": product.get("handle"), "Title": product.get("title"),
            "Body (HTML)": product.get("descriptionHtml"), "Vendor": product.get("vendor"),
            "Type": product.get("productType"), "Tags": _joined(product.get("tags")),
            "Published": "TRUE" if product.get("publishedAt") else "FALSE",
            "Image Src": image.get("url") if isinstance(image, dict) else None,
            "Gift Card": _true_false(product.get("isGiftCard")),
            "Status": str(product.get("status") or "").lower(),
        }  # fmt: skip
        for key, column in METAFIELDS.items():
            level[column] = _metafield_text(product.get(key))
        for variant in product.get("variants") or [{}]:
            options = variant.get("selectedOptions") or [{}]
            first_option = options[0] if isinstance(options[0], dict) else {}
            item = variant.get("inventoryItem") or {}
            yield {
                **level,
                "Option1 Name": first_option.get("name"), "Option1 Value": first_option.get("value"),
                "Variant SKU": variant.get("sku"),
                "Variant Inventory Tracker": "shopify" if isinstance(item, dict) and item.get("tracked") else "",
                "Variant Inventory Qty": variant.get("inventoryQuantity"),
                "Variant Inventory Policy": str(variant.get("inventoryPolicy") or "").lower(),
                "Variant Price": variant.get("price"), "Variant Compare At Price": variant.get("compareAtPrice"),
            }  # fmt: skip


def _customer_row(customer: dict[str, Any]) -> dict[str, Any]:
    """A customer in ``customers_export.csv``'s columns (Customer ID: the number of its gid)."""
    address = customer.get("defaultAddress") or {}
    spent = customer.get("amountSpent") or {}
    return {
        "Customer ID": _number(customer.get("id")), "First Name": customer.get("firstName"),
        "Last Name": customer.get("lastName"), "Email": customer.get("email"),
        "Accepts Email Marketing": _consent_word(customer.get("emailMarketingConsent")),
        "Default Address Company": address.get("company"), "Default Address Address1": address.get("address1"),
        "Default Address Address2": address.get("address2"), "Default Address City": address.get("city"),
        "Default Address Province Code": address.get("provinceCode"),
        "Default Address Country Code": address.get("countryCodeV2"), "Default Address Zip": address.get("zip"),
        "Default Address Phone": address.get("phone"), "Phone": customer.get("phone"),
        "Accepts SMS Marketing": _consent_word(customer.get("smsMarketingConsent")),
        "Total Spent": spent.get("amount") if isinstance(spent, dict) else None,
        "Total Orders": customer.get("numberOfOrders"), "Note": customer.get("note"),
        "Tax Exempt": _yes_no(customer.get("taxExempt")),
        "Tags": _joined(customer.get("tags")),
    }  # fmt: skip


def _order_rows(orders: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """One row per line item in ``orders_export.csv``'s columns: Name, Email, Created at and Id on every row, the
    order's own fields on its first (as the export writes them)."""
    for order in orders:
        billing = order.get("billingAddress") or {}
        every = {"Name": order.get("name"), "Email": order.get("email"),
                 "Created at": _export_time(order.get("createdAt")), "Id": _number(order.get("id"))}  # fmt: skip
        first = {
            "Financial Status": str(order.get("displayFinancialStatus") or "").lower(),
            "Fulfillment Status": str(order.get("displayFulfillmentStatus") or "").lower(),
            "Accepts Marketing": _yes_no(order.get("customerAcceptsMarketing")),
            "Currency": order.get("currencyCode"), "Subtotal": _amount(order.get("subtotalPriceSet")),
            "Shipping": _amount(order.get("totalShippingPriceSet")), "Taxes": _amount(order.get("totalTaxSet")),
            "Total": _amount(order.get("totalPriceSet")), "Discount Code": _joined(order.get("discountCodes")),
            "Discount Amount": _amount(order.get("totalDiscountsSet")),
            "Billing Name": billing.get("name"), "Billing City": billing.get("city"),
            "Billing Zip": billing.get("zip"), "Billing Province": billing.get("provinceCode"),
            "Billing Country": billing.get("countryCodeV2"), "Billing Phone": billing.get("phone"),
            "Notes": order.get("note"), "Cancelled at": _export_time(order.get("cancelledAt")),
            "Payment Method": " + ".join(str(g) for g in order.get("paymentGatewayNames") or []),
            "Refunded Amount": _refunded(order.get("refunds")), "Tags": _joined(order.get("tags")),
            "Source": order.get("sourceName"), "Phone": order.get("phone"),
        }  # fmt: skip
        for position, line in enumerate(order.get("lineItems") or [{}]):
            yield {
                **every, **(first if position == 0 else {}),
                "Lineitem quantity": line.get("quantity"), "Lineitem name": line.get("name"),
                "Lineitem price": _amount(line.get("originalUnitPriceSet")), "Lineitem sku": line.get("sku"),
                "Vendor": line.get("vendor"), "Lineitem id": _number(line.get("id")),
            }  # fmt: skip


def _raw_frame(intake: Intake, rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """:func:`raw_frame`, with text columns when there are no rows (it gives float columns then, which the checks'
    string methods refuse)."""
    frame = raw_frame(intake, rows, columns)
    if not rows:
        frame = frame.astype(dict.fromkeys(columns, str))
        intake.original = frame
    return frame


def _assemble(nodes: list[dict[str, Any]], spec: _Resource, out: list[dict[str, Any]]) -> None:
    """Bulk JSONL lines back into records: a line with ``__parentId`` is a node of its parent's nested connection
    (parents come first in Shopify's file, but any order is put together)."""
    parents: dict[str, dict[str, Any]] = {}
    children: list[dict[str, Any]] = []
    for node in nodes:
        if "__parentId" in node:
            children.append(node)
        else:
            if spec.nested:
                node[spec.nested] = []
            parents[str(node.get("id"))] = node
            out.append(node)
    for child in children:
        parent = parents.get(str(child.pop("__parentId")))
        if parent is not None and spec.nested:
            parent[spec.nested].append(child)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SourceRefused(f"Shopify's answer holds no {what} object: the API's contract has changed?")
    return value


def _code(error: Any) -> str:
    extensions = error.get("extensions") if isinstance(error, dict) else None
    return str(extensions.get("code")) if isinstance(extensions, dict) else ""


def _messages(errors: Any) -> str:
    if isinstance(errors, list):
        return "; ".join(str(e.get("message")) if isinstance(e, dict) else str(e) for e in errors)[:300]
    return str(errors)[:300]


def _instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _latest(stamps: list[Any]) -> str | None:
    """The latest of ISO timestamps (as written), ignoring blanks and unreadable ones."""
    best: tuple[datetime, str] | None = None
    for stamp in stamps:
        moment = _instant(stamp) if isinstance(stamp, str) else None
        if moment is not None and (best is None or moment > best[0]):
            best = (moment, stamp)
    return best[1] if best else None


def _earliest(mark: str | None, started: str | None) -> str | None:
    """A bulk watermark: the latest ``updatedAt`` read, but no later than the operation's start."""
    if mark is None or started is None:
        return mark
    late, start = _instant(mark), _instant(started)
    return started if late is not None and start is not None and start < late else mark


def _page_size(node_cost: float, max_cost: float = MAX_QUERY_COST) -> int:
    """As many records as fit under ``max_cost`` (a connection costs 2 + records × each one's cost)."""
    return max(1, min(MAX_PAGE, int((max_cost - 2) // max(1.0, node_cost))))


def _max_cost(errors: list[Any]) -> float | None:
    """The single query limit a ``MAX_COST_EXCEEDED`` error names (``extensions.maxCost``), if it does."""
    for error in errors:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        limit = extensions.get("maxCost") if isinstance(extensions, dict) else None
        if isinstance(limit, int | float) and not isinstance(limit, bool) and limit > 2:
            return float(limit)
    return None


def _number(global_id: Any) -> str:
    """``gid://shopify/Customer/123`` → ``123`` (the export's id)."""
    return str(global_id).rsplit("/", 1)[-1] if global_id else ""


def _joined(values: Any) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) else str(values or "")


def _yes_no(value: Any) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else ""


def _true_false(value: Any) -> str:
    return {True: "TRUE", False: "FALSE"}.get(value, "") if isinstance(value, bool) else ""


def _amount(money_bag: Any) -> str | None:
    shop = money_bag.get("shopMoney") if isinstance(money_bag, dict) else None
    return shop.get("amount") if isinstance(shop, dict) else None


def _refunded(refunds: Any) -> str:
    """The sum of an order's refunds (blank without any)."""
    if not isinstance(refunds, list) or not refunds:
        return ""
    total = Decimal(0)
    for refund in refunds:
        amount = _amount(refund.get("totalRefundedSet")) if isinstance(refund, dict) else None
        try:
            total += Decimal(str(amount or "0"))
        except InvalidOperation:
            return str(amount)  # check_orders sets the cell aside, as for a bad export cell
    return f"{total:.2f}"


def _metafield_text(metafield: Any) -> str:
    """A metafield's value as the export writes it: a list metafield (JSON) joined by ``; ``."""
    value = metafield.get("value") if isinstance(metafield, dict) else None
    if not isinstance(value, str):
        return ""
    if value.startswith("["):
        try:
            items = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
        if isinstance(items, list):
            return "; ".join(str(item) for item in items)
    return value


def _consent_word(consent: Any) -> str:
    state = consent.get("marketingState") if isinstance(consent, dict) else None
    return _STATES.get(str(state), "") if state else ""


def _consent_time(consent: Any) -> datetime | None:
    return _instant(consent.get("consentUpdatedAt")) if isinstance(consent, dict) else None


def _export_time(value: Any) -> str:
    """An API timestamp (``2026-11-20T14:03:11Z``) as the export writes it (``2026-11-20 14:03:11 +0000``); one that
    does not parse is passed on as it came, for ``check_orders`` to quarantine."""
    if not value:
        return ""
    moment = _instant(str(value))
    return moment.strftime("%Y-%m-%d %H:%M:%S %z") if moment is not None else str(value)
