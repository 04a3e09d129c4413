"""A local stand-in for WooCommerce's REST API v3 (products, variations, customers, orders) that enforces the
documented contract (tests only).

Served on 127.0.0.1 (a random port) from a thread; ``url`` stands for ``https://HOST`` (the API lives under
``/wp-json/wc/v3``). The store is held in memory (``products``, ``variations``, ``customers``, ``orders``: id →
record as stored, with ``date_created_gmt``/``date_modified_gmt``), edited through ``add_*``/``edit_*``/``refund``/
``delete_customer``, which date each change by the server's clock (``clock``, naive UTC, one second later per
change). Answers carry the site-time fields too (``date_modified`` = GMT + ``site_offset``), and ``Date`` is the
server's clock.

* Authentication: HTTP Basic ``consumer_key:consumer_secret`` (or the ``consumer_key``/``consumer_secret`` query
  parameters). Missing → 401 ``woocommerce_rest_cannot_view``; an unknown key → 401
  ``woocommerce_rest_authentication_error``; a wrong secret → 401 (invalid signature). Errors are WordPress's
  ``{code, message, data: {status}}``.
* Lists: ``page`` ≥ 1 and ``per_page`` 1…100 (default 10), else 400 ``rest_invalid_param``; ``X-WP-Total`` and
  ``X-WP-TotalPages`` on every list, a ``Link`` header with ``rel="next"``/``"prev"``; a page past the end is ``[]``.
  ``order`` asc/desc (default desc) and ``orderby`` from the endpoint's enum (products, variations and orders:
  date, id, include, title, slug, modified; customers: id, include, name, registered_date), else 400.
  Sorting by date/modified breaks ties by id, as WooCommerce does.
* Products, variations, orders: ``after``/``before``/``modified_after``/``modified_before`` must be ISO 8601 dates
  (else 400) and compare strictly (WordPress's ``after`` is exclusive) against the site-time fields, or the GMT ones
  with ``dates_are_gmt=true``; ``status`` defaults to ``any`` (everything but the trash). Customers take no date
  filter: unknown parameters are ignored, as WordPress ignores them.
* ``/products/{id}/variations`` of an unknown product → 404 ``woocommerce_rest_product_invalid_id``; an unknown route
  → 404 ``rest_no_route``.

Tests steer the next requests with ``script(...)``: ``Throttle(retry_after)`` (429), ``Reply(status, body)``,
``Drop()``; ``fail_after_pages = n`` answers 500 to every request once ``n`` list pages were served (until it is set
back to None; with ``fail_on``, only requests whose path holds it count and fail); ``on_page(path, page)`` is
called once each list page's answer is taken (a test edits the store there, as a shop manager would mid-read).
Every request is recorded in ``calls``.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.peers.http_peer import Drop, HttpPeer, PeerHandler

API = "/wp-json/wc/v3"
WC_TIME = "%Y-%m-%dT%H:%M:%S"
POST_ORDERBY = ("date", "id", "include", "title", "slug", "modified")
CUSTOMER_ORDERBY = ("id", "include", "name", "registered_date")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
_VARIATIONS = re.compile(rf"{API}/products/(\d+)/variations")


@dataclass(frozen=True)
class Reply:
    """A canned answer for one request (not processed)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Throttle:
    """429 Too Many Requests (a host's or a security plugin's rate limit), with ``Retry-After`` when given."""

    retry_after: int | None = None


Step = Reply | Throttle | Drop | None


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    count: int = 0


def error(status: int, code: str, message: str, **data: Any) -> tuple[int, Any]:
    return status, {"code": code, "message": message, "data": {"status": status, **data}}


def invalid(name: str, why: str) -> tuple[int, Any]:
    return error(400, "rest_invalid_param", f"Invalid parameter(s): {name}", params={name: why})


@dataclass
class WooCommerceServer(HttpPeer[Step]):
    thread_name: ClassVar[str] = "woocommerce-peer"

    key: str = "ck_" + "a1" * 20
    secret: str = "cs_" + "b2" * 20
    clock: datetime = datetime(2026, 11, 20, 9, 0, 0)
    site_offset: timedelta = timedelta(hours=2)
    products: dict[int, dict[str, Any]] = field(default_factory=dict)
    variations: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    fail_after_pages: int | None = None
    fail_on: str = ""
    """The failure mode counts (and fails) only requests whose path holds this (e.g. ``/orders``)."""
    on_page: Callable[[str, int], None] | None = None
    pages_served: int = 0
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._next_id = 100
        self._store_lock = threading.RLock()

    # the store ---------------------------------------------------------------------------------------------------

    @property
    def credentials(self) -> str:
        """The token a reader is configured with: ``ck_…:cs_…``."""
        return f"{self.key}:{self.secret}"

    def tick(self, seconds: float = 1) -> str:
        """Advance the server's clock; the new time as WooCommerce writes ``*_gmt`` fields."""
        with self._store_lock:
            self.clock += timedelta(seconds=seconds)
            return self.clock.strftime(WC_TIME)

    def _new(self, record: dict[str, Any], at: str | None = None) -> dict[str, Any]:
        with self._store_lock:
            self._next_id += 1
            stamp = at or self.tick()
            return {"id": self._next_id, "date_created_gmt": stamp, "date_modified_gmt": stamp, **record}

    def add_product(self, sku: str, price: str = "12.00", **fields: Any) -> int:
        slug = fields.pop("slug", sku.lower())
        record = {
            "name": slug.replace("-", " ").title(), "slug": slug, "type": "simple", "status": "publish",
            "catalog_visibility": "visible", "sku": sku, "price": price, "regular_price": price, "sale_price": "",
            "on_sale": False, "manage_stock": False, "stock_quantity": None, "backorders": "no",
            "categories": [{"id": 15, "name": "Coffee Beans", "slug": "coffee-beans"}], "tags": [], "images": [],
            "meta_data": [], "variations": [],
        } | fields  # fmt: skip
        product = self._new(record)
        with self._store_lock:
            self.products[product["id"]] = product
            if product["type"] == "variable":
                self.variations.setdefault(product["id"], {})
        return int(product["id"])

    def add_variation(self, product_id: int, sku: str, price: str = "12.00", **fields: Any) -> int:
        record = {
            "sku": sku, "price": price, "regular_price": price, "sale_price": "", "on_sale": False, "status": "publish",
            "manage_stock": "parent", "stock_quantity": None, "backorders": "no", "image": None, "attributes": [],
        } | fields  # fmt: skip
        variation = self._new(record)
        with self._store_lock:
            self.variations.setdefault(product_id, {})[variation["id"]] = variation
            self.products[product_id]["variations"].append(variation["id"])
            self.products[product_id]["date_modified_gmt"] = variation["date_modified_gmt"]  # the parent is re-saved
        return int(variation["id"])

    def add_customer(self, email: str, **fields: Any) -> int:
        record = {
            "email": email, "first_name": "", "last_name": "", "role": "customer", "username": email.split("@")[0],
            "billing": {"first_name": "", "last_name": "", "company": "", "address_1": "", "address_2": "",
                        "city": "", "state": "", "postcode": "", "country": "", "email": email, "phone": ""},
            "shipping": {}, "is_paying_customer": False, "avatar_url": "", "meta_data": [],
        }  # fmt: skip
        billing = fields.pop("billing", {})
        record |= fields
        record["billing"] = record["billing"] | billing
        customer = self._new(record)
        with self._store_lock:
            self.customers[customer["id"]] = customer
        return int(customer["id"])

    def add_order(self, email: str, lines: list[tuple[str, int, str]], status: str = "completed", **fields: Any) -> int:
        """An order of ``lines`` (sku, quantity, unit price); totals follow from them."""
        with self._store_lock:
            items: list[dict[str, Any]] = []
            for sku, quantity, price in lines:
                self._next_id += 1
                amount = f"{quantity * float(price):.2f}"
                items.append({"id": self._next_id, "name": sku.title(), "product_id": 0, "variation_id": 0,
                              "quantity": quantity, "subtotal": amount, "total": amount, "sku": sku,
                              "price": float(price)})  # fmt: skip
            total = sum(float(str(item["total"])) for item in items)
            billing = {"first_name": "Jane", "last_name": "Doe", "city": "Berlin", "state": "BE", "postcode": "10115",
                       "country": "DE", "email": email, "phone": ""} | fields.pop("billing", {})  # fmt: skip
            record = {
                "number": "", "status": status, "currency": "EUR", "total": f"{total:.2f}", "total_tax": "0.00",
                "shipping_total": "0.00", "discount_total": "0.00", "customer_id": 0, "billing": billing,
                "line_items": items, "refunds": [], "date_paid_gmt": None,
            } | fields  # fmt: skip
            order = self._new(record)
            order["number"] = order["number"] or str(order["id"])
            if status in ("completed", "processing") and order["date_paid_gmt"] is None:
                order["date_paid_gmt"] = order["date_created_gmt"]
            self.orders[order["id"]] = order
            return int(order["id"])

    def _touch(self, record: dict[str, Any], changes: dict[str, Any]) -> None:
        with self._store_lock:
            record.update(changes)
            record["date_modified_gmt"] = self.tick()

    def edit_product(self, product_id: int, **changes: Any) -> None:
        self._touch(self.products[product_id], changes)

    def edit_variation(self, product_id: int, variation_id: int, **changes: Any) -> None:
        """A variation's edit re-saves its parent (WooCommerce syncs the variable product's prices)."""
        with self._store_lock:
            self._touch(self.variations[product_id][variation_id], changes)
            self.products[product_id]["date_modified_gmt"] = self.variations[product_id][variation_id][
                "date_modified_gmt"
            ]

    def edit_customer(self, customer_id: int, **changes: Any) -> None:
        self._touch(self.customers[customer_id], changes)

    def edit_order(self, order_id: int, **changes: Any) -> None:
        self._touch(self.orders[order_id], changes)

    def refund(self, order_id: int, amount: float, *, full: bool = False) -> None:
        """A refund (``refunds[].total`` negative); a full one also sets the status ``refunded``."""
        with self._store_lock:
            order = self.orders[order_id]
            self._next_id += 1
            refunds = [*order["refunds"], {"id": self._next_id, "reason": "", "total": f"-{amount:.2f}"}]
            self._touch(order, {"refunds": refunds} | ({"status": "refunded"} if full else {}))

    def delete_customer(self, customer_id: int) -> None:
        with self._store_lock:
            del self.customers[customer_id]

    # the contract ------------------------------------------------------------------------------------------------

    def handle(self, path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        problem = self._auth_problem(params, headers)
        if problem is not None:
            return (*problem, {})
        with self._store_lock:
            if path == f"{API}/products":
                records, kind = list(self.products.values()), "post"
            elif path == f"{API}/orders":
                records, kind = list(self.orders.values()), "post"
            elif path == f"{API}/customers":
                records, kind = list(self.customers.values()), "customer"
            elif m := _VARIATIONS.fullmatch(path):
                product_id = int(m.group(1))
                if product_id not in self.products:
                    return (*error(404, "woocommerce_rest_product_invalid_id", "Invalid ID."), {})
                records, kind = list(self.variations.get(product_id, {}).values()), "post"
            else:
                return (*error(404, "rest_no_route", "No route was found matching the URL and request method."), {})
            return self._list(path, params, records, kind)

    def _auth_problem(self, params: dict[str, str], headers: dict[str, str]) -> tuple[int, Any] | None:
        key, secret = params.get("consumer_key"), params.get("consumer_secret")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                key, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except ValueError:
                key = secret = None
        if not key:
            return error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        if key != self.key:
            return error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if secret != self.secret:
            return error(401, "woocommerce_rest_authentication_error",
                         "Invalid signature - provided signature does not match.")  # fmt: skip
        return None

    def _list(self, path: str, params: dict[str, str], records: list[dict[str, Any]],
              kind: str) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
        page, per_page = params.get("page", "1"), params.get("per_page", "10")
        if not page.isdigit() or int(page) < 1:
            return (*invalid("page", "page must be greater than or equal to 1"), {})
        if not per_page.isdigit() or not 1 <= int(per_page) <= 100:
            return (*invalid("per_page", "per_page must be between 1 (inclusive) and 100 (inclusive)"), {})
        order = params.get("order", "desc")
        if order not in ("asc", "desc"):
            return (*invalid("order", "order is not one of asc and desc."), {})
        allowed = POST_ORDERBY if kind == "post" else CUSTOMER_ORDERBY
        orderby = params.get("orderby", "date" if kind == "post" else "name")
        if orderby not in allowed:
            return (*invalid("orderby", f"orderby is not one of {', '.join(allowed)}."), {})
        if kind == "post":
            filtered = self._filter_posts(params, records)
            if isinstance(filtered, tuple):
                return (*filtered, {})
            records = filtered
        keys = {
            "id": lambda r: (r["id"],),
            "include": lambda r: (r["id"],),
            "date": lambda r: (r["date_created_gmt"], r["id"]),
            "modified": lambda r: (r["date_modified_gmt"], r["id"]),
            "title": lambda r: (r.get("name", ""), r["id"]),
            "slug": lambda r: (r.get("slug", ""), r["id"]),
            "name": lambda r: (f"{r.get('first_name', '')} {r.get('last_name', '')}", r["id"]),
            "registered_date": lambda r: (r["date_created_gmt"], r["id"]),
        }
        records.sort(key=keys[orderby], reverse=order == "desc")
        number, size = int(page), int(per_page)
        total, pages = len(records), math.ceil(len(records) / size)
        body = [self._public(record) for record in records[(number - 1) * size : number * size]]  # snapshots
        links = []
        query = {k: v for k, v in params.items() if k not in ("consumer_key", "consumer_secret")}
        if number > 1:
            links.append(
                f'<{self.url}{path}?{urlencode(query | {"page": min(number - 1, max(pages, 1))})}>; rel="prev"'
            )
        if pages > number:
            links.append(f'<{self.url}{path}?{urlencode(query | {"page": number + 1})}>; rel="next"')
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        if links:
            headers["Link"] = ", ".join(links)
        return 200, body, headers

    def _filter_posts(self, params: dict[str, str], records: list[dict[str, Any]]) -> list[dict[str, Any]] | tuple:
        gmt = params.get("dates_are_gmt", "false").lower()
        if gmt not in ("true", "false", "1", "0"):
            return invalid("dates_are_gmt", "dates_are_gmt is not of type boolean.")
        use_gmt = gmt in ("true", "1")
        bounds = []
        for name, column, later in (("after", "date_created", True), ("before", "date_created", False),
                                    ("modified_after", "date_modified", True),
                                    ("modified_before", "date_modified", False)):  # fmt: skip
            if name not in params:
                continue
            if not _DATE.fullmatch(params[name]):
                return invalid(name, "Invalid date.")
            bound = datetime.fromisoformat(params[name][:19].replace(" ", "T"))
            bounds.append((column, bound, later))
        status = params.get("status", "any")
        kept = []
        for record in records:
            if status == "any" and record.get("status") == "trash":
                continue
            if status != "any" and record.get("status") not in status.split(","):
                continue
            ok = True
            for column, bound, later in bounds:
                stamp = datetime.fromisoformat(record[f"{column}_gmt"])
                stamp = stamp if use_gmt else stamp + self.site_offset
                ok = ok and (stamp > bound if later else stamp < bound)
            if ok:
                kept.append(record)
        return kept

    def _public(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as WooCommerce answers it: with the site-time twins of its GMT fields."""
        answer = json.loads(json.dumps(record))
        for name in ("date_created", "date_modified", "date_paid", "date_completed"):
            value = record.get(f"{name}_gmt")
            if value:
                answer[name] = (datetime.fromisoformat(value) + self.site_offset).strftime(WC_TIME)
        return answer


class _Handler(PeerHandler):
    peer: WooCommerceServer
    wbufsize = 1 << 16  # the status line, headers and body leave in one write (flushed after each request)

    def date_time_string(self, timestamp: float | None = None) -> str:
        return format_datetime(self.peer.clock.replace(tzinfo=UTC), usegmt=True)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = self.lower_headers()
        call = Call("GET", parts.path, params, headers)
        step = self.peer._next_step()
        extra: dict[str, str] = {}
        if isinstance(step, Reply):
            status, body, extra = step.status, step.body if step.body is not None else {}, dict(step.headers)
        elif isinstance(step, Throttle):
            status, body = error(429, "too_many_requests", "Too many requests, please slow down.")
            if step.retry_after is not None:
                extra["Retry-After"] = str(step.retry_after)
        elif (
            self.peer.fail_after_pages is not None
            and self.peer.fail_on in parts.path
            and self.peer.pages_served >= self.peer.fail_after_pages
        ):
            status, body = error(500, "internal_server_error", "There has been a critical error on this website.")
        else:
            status, body, extra = self.peer.handle(parts.path, params, headers)
        call.status = status
        call.count = len(body) if isinstance(body, list) else 0
        with self.peer._lock:
            self.peer.calls.append(call)
        if status == 200 and isinstance(body, list) and self.peer.fail_on in parts.path:
            with self.peer._lock:
                self.peer.pages_served += 1
            if self.peer.on_page is not None:  # the answer is already taken: an edit here lands after this page
                self.peer.on_page(parts.path, int(params.get("page", "1") or 1))
        if isinstance(step, Drop):
            self.close_connection = True
            return
        self.send_body(status, json.dumps(body).encode(), "application/json; charset=UTF-8", extra)


WooCommerceServer.handler = _Handler
