"""A local stand-in for the Shopify Admin GraphQL API that enforces the documented contract (tests only).

Served on 127.0.0.1 (a random port) from a thread (``HttpPeer``). One shop holds products (with variants),
customers and orders (with line items and refunds) in memory, each shaped as the GraphQL API returns it, with its
``updatedAt``. What it enforces:

* ``POST /admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``: a missing or wrong token is HTTP 401
  (Shopify's body); a version other than the pinned ones is HTTP 404. The body is JSON ``{"query", "variables"}``.
* The query is parsed (a subset of GraphQL: operations, variables, aliases, arguments, nested selections; no
  fragments or directives) and checked against a schema of the types this stand-in serves: an unknown field or
  argument, an object without a selection, a scalar with one, a missing variable — a GraphQL error, as Shopify
  answers (HTTP 200, ``errors[]``, no ``data``). A root field without its access scope is ``ACCESS_DENIED``.
* Connections: ``first`` required and ≤ 250, cursors only as this server issued them for the same sort key
  (``Invalid cursor``), ``sortKey`` ``ID`` or ``UPDATED_AT`` (order by (updatedAt, id)), ``query`` empty or
  ``updated_at:>='ISO'`` (inclusive; anything else is an error: this stand-in understands no other search).
  ``product(id:)`` and ``order(id:)`` page a long nested connection (variants, line items) further.
* Cost: requested cost computed from the query as Shopify documents it (scalar 0, object 1, connection 2 + first ×
  its node's cost, mutation 10); over ``max_query_cost`` is ``MAX_COST_EXCEEDED``. A leaky bucket
  (``maximum_available``, ``restore_rate`` per second of ``clock``): a query asking more than is available is
  refused ``THROTTLED`` (HTTP 200, ``actualQueryCost: null``); otherwise the requested cost is taken and the
  difference to the actual cost (what the answer held) refunded. Every answer carries ``extensions.cost`` with
  ``throttleStatus``.
* Bulk operations: ``bulkOperationRunQuery(query:)`` (one query operation at a time: another while one runs is a
  ``userErrors`` entry ``OPERATION_IN_PROGRESS``; at least one connection, at most five, nested at most two
  deep); ``currentBulkOperation`` moves ``CREATED`` → ``RUNNING`` → ``COMPLETED`` across polls
  (``bulk_polls``), or ``FAILED`` with ``errorCode`` when ``bulk_error`` is set; its ``url`` is served by this
  peer (``GET /bulk/N.jsonl``, no token: a signed storage URL) as JSONL, one line per object, nested
  connections' nodes on lines of their own with ``__parentId`` (after their parent, or all after every parent
  when ``bulk_grouped`` is False).

Tests steer the next calls with ``script(...)`` (``Reply(status, body, retry_after)``, ``Drop()``), make every
list page after the first ``n`` fail with ``fail_after(n)``, and look at ``calls``. ``ManualClock`` is a clock
that only moves when a reader sleeps on it: the bucket refills exactly as long as the reader waited.
"""

from __future__ import annotations

import base64
import bisect
import copy
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from tests.peers.http_peer import Drop, HttpPeer, PeerHandler

VERSIONS = ("2025-04", "2025-07", "2025-10")
MAX_PAGE = 250
MUTATION_COST = 10
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
SCOPES = frozenset({"read_products", "read_customers", "read_orders"})
ROOT_SCOPES = {"products": "read_products", "product": "read_products", "customers": "read_customers",
               "customer": "read_customers", "orders": "read_orders", "order": "read_orders"}  # fmt: skip
RESOURCES = {"products": "Product", "customers": "Customer", "orders": "Order"}


# --- a clock tests move -------------------------------------------------------------------------------------


@dataclass
class ManualClock:
    """Seconds that pass only when someone sleeps on this clock; every sleep is recorded."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


# --- schema -------------------------------------------------------------------------------------------------

SCALARS = frozenset({
    "ID", "String", "Boolean", "Int", "Float", "DateTime", "Money", "Decimal", "URL", "HTML", "UnsignedInt64",
    "ProductStatus", "ProductVariantInventoryPolicy", "CustomerEmailMarketingState", "CustomerSmsMarketingState",
    "CustomerMarketingOptInLevel", "CustomerConsentCollectedFrom", "CurrencyCode", "OrderDisplayFinancialStatus",
    "OrderDisplayFulfillmentStatus", "BulkOperationStatus", "BulkOperationErrorCode", "BulkOperationType",
    "BulkOperationUserErrorCode", "CountryCode",
})  # fmt: skip
CONNECTIONS = {
    "ProductConnection": "Product",
    "ProductVariantConnection": "ProductVariant",
    "CustomerConnection": "Customer",
    "OrderConnection": "Order",
    "LineItemConnection": "LineItem",
}
CONNECTION_ARGS = frozenset({"first", "after", "last", "before", "query", "sortKey", "reverse"})
MAILING_ADDRESS = {name: "String" for name in (
    "name", "firstName", "lastName", "company", "address1", "address2", "city", "province", "provinceCode",
    "country", "zip", "phone")} | {"countryCodeV2": "CountryCode"}  # fmt: skip
SCHEMA: dict[str, dict[str, str]] = {
    "QueryRoot": {"products": "ProductConnection", "customers": "CustomerConnection", "orders": "OrderConnection",
                  "product": "Product", "customer": "Customer", "order": "Order",
                  "currentBulkOperation": "BulkOperation"},
    "Mutation": {"bulkOperationRunQuery": "BulkOperationRunQueryPayload"},
    "Product": {"id": "ID", "handle": "String", "title": "String", "descriptionHtml": "HTML", "vendor": "String",
                "productType": "String", "tags": "[String]", "status": "ProductStatus", "publishedAt": "DateTime",
                "isGiftCard": "Boolean", "createdAt": "DateTime", "updatedAt": "DateTime", "featuredImage": "Image",
                "metafield": "Metafield", "variants": "ProductVariantConnection"},
    "ProductVariant": {"id": "ID", "sku": "String", "title": "String", "price": "Money", "compareAtPrice": "Money",
                       "inventoryQuantity": "Int", "inventoryPolicy": "ProductVariantInventoryPolicy",
                       "inventoryItem": "InventoryItem", "selectedOptions": "[SelectedOption]", "image": "Image",
                       "createdAt": "DateTime", "updatedAt": "DateTime"},
    "InventoryItem": {"id": "ID", "tracked": "Boolean", "requiresShipping": "Boolean"},
    "SelectedOption": {"name": "String", "value": "String"},
    "Image": {"id": "ID", "url": "URL", "altText": "String"},
    "Metafield": {"id": "ID", "namespace": "String", "key": "String", "value": "String", "type": "String"},
    "Customer": {"id": "ID", "firstName": "String", "lastName": "String", "email": "String", "phone": "String",
                 "emailMarketingConsent": "CustomerEmailMarketingConsentState",
                 "smsMarketingConsent": "CustomerSmsMarketingConsentState", "defaultAddress": "MailingAddress",
                 "amountSpent": "MoneyV2", "numberOfOrders": "UnsignedInt64", "note": "String",
                 "taxExempt": "Boolean", "tags": "[String]", "createdAt": "DateTime", "updatedAt": "DateTime"},
    "CustomerEmailMarketingConsentState": {"marketingState": "CustomerEmailMarketingState",
                                           "marketingOptInLevel": "CustomerMarketingOptInLevel",
                                           "consentUpdatedAt": "DateTime"},
    "CustomerSmsMarketingConsentState": {"marketingState": "CustomerSmsMarketingState",
                                         "marketingOptInLevel": "CustomerMarketingOptInLevel",
                                         "consentUpdatedAt": "DateTime",
                                         "consentCollectedFrom": "CustomerConsentCollectedFrom"},
    "MailingAddress": MAILING_ADDRESS,
    "MoneyV2": {"amount": "Decimal", "currencyCode": "CurrencyCode"},
    "MoneyBag": {"shopMoney": "MoneyV2", "presentmentMoney": "MoneyV2"},
    "Order": {"id": "ID", "name": "String", "email": "String", "phone": "String", "createdAt": "DateTime",
              "updatedAt": "DateTime", "processedAt": "DateTime", "cancelledAt": "DateTime", "closedAt": "DateTime",
              "displayFinancialStatus": "OrderDisplayFinancialStatus",
              "displayFulfillmentStatus": "OrderDisplayFulfillmentStatus", "currencyCode": "CurrencyCode",
              "customerAcceptsMarketing": "Boolean", "subtotalPriceSet": "MoneyBag",
              "totalShippingPriceSet": "MoneyBag", "totalTaxSet": "MoneyBag", "totalPriceSet": "MoneyBag",
              "totalDiscountsSet": "MoneyBag", "totalRefundedSet": "MoneyBag", "discountCodes": "[String]",
              "billingAddress": "MailingAddress", "shippingAddress": "MailingAddress", "note": "String",
              "tags": "[String]", "sourceName": "String", "paymentGatewayNames": "[String]",
              "refunds": "[Refund]", "lineItems": "LineItemConnection", "customer": "Customer"},
    "Refund": {"id": "ID", "createdAt": "DateTime", "note": "String", "totalRefundedSet": "MoneyBag"},
    "LineItem": {"id": "ID", "sku": "String", "name": "String", "title": "String", "quantity": "Int",
                 "currentQuantity": "Int", "vendor": "String", "originalUnitPriceSet": "MoneyBag",
                 "requiresShipping": "Boolean", "taxable": "Boolean"},
    "BulkOperation": {"id": "ID", "status": "BulkOperationStatus", "errorCode": "BulkOperationErrorCode",
                      "createdAt": "DateTime", "completedAt": "DateTime", "objectCount": "UnsignedInt64",
                      "rootObjectCount": "UnsignedInt64", "fileSize": "UnsignedInt64", "url": "URL",
                      "partialDataUrl": "URL", "query": "String", "type": "BulkOperationType"},
    "BulkOperationRunQueryPayload": {"bulkOperation": "BulkOperation", "userErrors": "[BulkOperationUserError]"},
    "BulkOperationUserError": {"field": "[String]", "message": "String", "code": "BulkOperationUserErrorCode"},
    "PageInfo": {"hasNextPage": "Boolean", "hasPreviousPage": "Boolean", "startCursor": "String",
                 "endCursor": "String"},
}  # fmt: skip
FIELD_ARGS = {("Product", "metafield"): {"namespace", "key"}, ("QueryRoot", "product"): {"id"},
              ("QueryRoot", "customer"): {"id"}, ("QueryRoot", "order"): {"id"},
              ("QueryRoot", "currentBulkOperation"): {"type"}, ("Order", "refunds"): {"first"},
              ("Mutation", "bulkOperationRunQuery"): {"query", "groupObjects"}}  # fmt: skip


class GraphQLError(Exception):
    """A query this server refuses: the message and Shopify's ``extensions.code``."""

    def __init__(self, message: str, code: str = "GRAPHQL_VALIDATION_FAILED") -> None:
        super().__init__(message)
        self.code = code


# --- a small GraphQL parser ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'(?P<skip>[\s,]+|#[^\n]*)|(?P<block>"""(?:[^"\\]|\\.|"(?!""))*""")|(?P<string>"(?:[^"\\\n]|\\.)*")'
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<name>[_A-Za-z][_0-9A-Za-z]*)|(?P<spread>\.\.\.)"
    r"|(?P<punct>[{}()\[\]:$!=@])"
)


@dataclass
class Field:
    """One selected field: its response key (alias or name), name, arguments and sub-selection."""

    alias: str
    name: str
    args: dict[str, Any]
    selections: list[Field] | None


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class Enum:
    name: str


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise GraphQLError(f"syntax error, unexpected character {text[position]!r} at offset {position}")
        kind = match.lastgroup or ""
        if kind == "spread":
            raise GraphQLError("fragments are not served by this stand-in", "GRAPHQL_PARSE_FAILED")
        if kind != "skip":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token_kind, token = self.peek()
        if (value is not None and token != value) or (kind is not None and token_kind != kind) or token_kind == "end":
            raise GraphQLError(f"syntax error, unexpected {token or 'end of query'!r}", "GRAPHQL_PARSE_FAILED")
        self.at += 1
        return token

    def document(self) -> tuple[str, list[Field]]:
        kind, token = self.peek()
        operation = "query"
        if kind == "name":
            if token not in ("query", "mutation"):
                raise GraphQLError(f"syntax error, unexpected {token!r}: not an operation", "GRAPHQL_PARSE_FAILED")
            operation = self.take()
            if self.peek()[0] == "name":
                self.take()
            if self.peek()[1] == "(":
                self.variable_definitions()
        selections = self.selection_set()
        if self.peek()[0] != "end":
            raise GraphQLError("this stand-in serves one operation per document", "GRAPHQL_PARSE_FAILED")
        return operation, selections

    def variable_definitions(self) -> None:
        self.take("(")
        while self.peek()[1] != ")":
            self.take("$")
            self.take(kind="name")
            self.take(":")
            self.type_ref()
            if self.peek()[1] == "=":
                self.take("=")
                self.value()
        self.take(")")

    def type_ref(self) -> None:
        if self.peek()[1] == "[":
            self.take("[")
            self.type_ref()
            self.take("]")
        else:
            self.take(kind="name")
        if self.peek()[1] == "!":
            self.take("!")

    def selection_set(self) -> list[Field]:
        self.take("{")
        fields: list[Field] = []
        while self.peek()[1] != "}":
            name = self.take(kind="name")
            alias = name
            if self.peek()[1] == ":":
                self.take(":")
                name = self.take(kind="name")
            args: dict[str, Any] = {}
            if self.peek()[1] == "(":
                self.take("(")
                while self.peek()[1] != ")":
                    arg = self.take(kind="name")
                    self.take(":")
                    args[arg] = self.value()
                self.take(")")
            if self.peek()[1] == "@":
                raise GraphQLError("directives are not served by this stand-in", "GRAPHQL_PARSE_FAILED")
            children = self.selection_set() if self.peek()[1] == "{" else None
            fields.append(Field(alias, name, args, children))
        self.take("}")
        if not fields:
            raise GraphQLError("syntax error, an empty selection", "GRAPHQL_PARSE_FAILED")
        return fields

    def value(self) -> Any:
        kind, token = self.peek()
        if token == "$":
            self.take("$")
            return Variable(self.take(kind="name"))
        if kind == "string":
            self.take()
            return json.loads(token)
        if kind == "block":
            self.take()
            return token[3:-3].replace('\\"""', '"""')
        if kind == "number":
            self.take()
            return float(token) if any(c in token for c in ".eE") else int(token)
        if token == "[":
            self.take("[")
            items = []
            while self.peek()[1] != "]":
                items.append(self.value())
            self.take("]")
            return items
        if kind == "name":
            self.take()
            return {"true": True, "false": False, "null": None}.get(token, Enum(token))
        raise GraphQLError(f"syntax error, unexpected {token or 'end of query'!r}", "GRAPHQL_PARSE_FAILED")


def parse(text: str, variables: dict[str, Any]) -> tuple[str, list[Field]]:
    """The operation type and its checked, variable-free selection (GraphQLError when anything is wrong)."""
    if not isinstance(text, str) or not text.strip():
        raise GraphQLError("No query string was present", "GRAPHQL_PARSE_FAILED")
    operation, selections = _Parser(text).document()
    root = "Mutation" if operation == "mutation" else "QueryRoot"
    _check(root, selections, variables, [])
    return operation, selections


def _substitute(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, Variable):
        if value.name not in variables:
            raise GraphQLError(f"Variable ${value.name} is used but was not provided")
        return variables[value.name]
    if isinstance(value, list):
        return [_substitute(item, variables) for item in value]
    return value


def _check(type_name: str, selections: list[Field], variables: dict[str, Any], path: list[str]) -> None:
    fields = SCHEMA[type_name]
    for selection in selections:
        here = [*path, selection.alias]
        if selection.name == "__typename":
            continue
        if selection.name not in fields:
            raise GraphQLError(f"Field '{selection.name}' doesn't exist on type '{type_name}'", "undefinedField")
        target = fields[selection.name].strip("[]")
        allowed = CONNECTION_ARGS if target in CONNECTIONS else FIELD_ARGS.get((type_name, selection.name), set())
        for arg in selection.args:
            if arg not in allowed:
                raise GraphQLError(f"Field '{selection.name}' doesn't accept argument '{arg}'", "argumentNotAccepted")
        selection.args = {k: _substitute(v, variables) for k, v in selection.args.items()}
        if target in SCALARS:
            if selection.selections is not None:
                raise GraphQLError(f"Selections can't be made on scalars (field '{selection.name}' returns "
                                   f"{target} but has selections)", "selectionMismatch")  # fmt: skip
            continue
        if not selection.selections:
            raise GraphQLError(f"Field must have selections (field '{selection.name}' returns {target} but has no "
                               "selections)", "selectionMismatch")  # fmt: skip
        if target in CONNECTIONS:
            _check_connection(target, selection.selections, variables, here)
        else:
            _check(target, selection.selections, variables, here)


def _check_connection(connection: str, selections: list[Field], variables: dict[str, Any], path: list[str]) -> None:
    node = CONNECTIONS[connection]
    for selection in selections:
        if selection.name == "pageInfo":
            _check("PageInfo", selection.selections or [], variables, path)
            if not selection.selections:
                raise GraphQLError("Field must have selections (field 'pageInfo')", "selectionMismatch")
        elif selection.name == "nodes":
            _check(node, selection.selections or [], variables, path)
        elif selection.name == "edges":
            for edge_field in selection.selections or []:
                if edge_field.name == "node":
                    _check(node, edge_field.selections or [], variables, path)
                    if not edge_field.selections:
                        raise GraphQLError("Field must have selections (field 'node')", "selectionMismatch")
                elif edge_field.name != "cursor":
                    raise GraphQLError(f"Field '{edge_field.name}' doesn't exist on type '{node}Edge'",
                                       "undefinedField")  # fmt: skip
        elif selection.name != "__typename":
            raise GraphQLError(f"Field '{selection.name}' doesn't exist on type '{connection}'", "undefinedField")


def _node_selection(selections: list[Field]) -> list[Field]:
    """The fields selected on a connection's nodes (under ``edges { node }`` or ``nodes``)."""
    for selection in selections:
        if selection.name == "nodes":
            return selection.selections or []
        if selection.name == "edges":
            for edge_field in selection.selections or []:
                if edge_field.name == "node":
                    return edge_field.selections or []
    return []


def requested_cost(type_name: str, selections: list[Field]) -> int:
    """Shopify's documented static cost: scalars and enums 0, an object 1, a connection 2 + first × its node."""
    total = 0
    for selection in selections:
        target = SCHEMA[type_name].get(selection.name, "String").strip("[]")
        if target in SCALARS:
            continue
        if target in CONNECTIONS:
            first = selection.args.get("first") or 1
            total += 2 + int(first) * (
                1 + requested_cost(CONNECTIONS[target], _node_selection(selection.selections or []))
            )
        else:
            total += 1 + requested_cost(target, selection.selections or [])
    return total


# --- records ------------------------------------------------------------------------------------------------


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def number_of(global_id: str) -> int:
    return int(global_id.rsplit("/", 1)[-1])


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def money(amount: str, currency: str = "USD") -> dict[str, Any]:
    return {"shopMoney": {"amount": amount, "currencyCode": currency},
            "presentmentMoney": {"amount": amount, "currencyCode": currency}}  # fmt: skip


def make_product(n: int, *, sku: str | None = None, price: str = "14.50", title: str | None = None,
                 product_type: str = "Coffee Beans", variants: int = 1, status: str = "ACTIVE",
                 published: bool = True, gift_card: bool = False, stock: int | None = 12,
                 image: str | None = None, roast: str | None = "medium",
                 notes: list[str] | None = None, replenish_days: int | None = 30) -> dict[str, Any]:  # fmt: skip
    """A product as the Admin API returns it (``variants`` a list; metafields keyed ``namespace.key``)."""
    sku = sku or f"SKU-{n:04d}"
    metafields: dict[str, dict[str, str]] = {}
    if roast is not None:
        metafields["custom.roast_level"] = {"value": roast, "type": "single_line_text_field"}
    if notes is not None:
        metafields["custom.flavour_notes"] = {"value": json.dumps(notes), "type": "list.single_line_text_field"}
    if replenish_days is not None:
        metafields["custom.replenishment_days"] = {"value": str(replenish_days), "type": "number_integer"}
    return {
        "id": gid("Product", 1000 + n), "handle": f"product-{n}", "title": title or f"Product {n}",
        "descriptionHtml": f"<p>Product {n}</p>", "vendor": "Omnicast Roasters", "productType": product_type,
        "tags": ["coffee", f"t{n % 3}"], "status": status,
        "publishedAt": "2025-01-01T00:00:00Z" if published else None, "isGiftCard": gift_card,
        "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-01-01T00:00:00Z",
        "featuredImage": {"id": gid("ProductImage", n), "url": image or f"https://cdn.example.com/p{n}.jpg",
                          "altText": None},
        "metafields": metafields,
        "variants": [
            {"id": gid("ProductVariant", 100_000 + n * 100 + v), "sku": sku if v == 0 else f"{sku}-{v + 1}",
             "title": "Default Title" if variants == 1 else f"Size {v + 1}", "price": price,
             "compareAtPrice": None, "inventoryQuantity": stock,
             "inventoryPolicy": "DENY", "inventoryItem": {"id": gid("InventoryItem", n * 100 + v),
                                                           "tracked": stock is not None,
                                                           "requiresShipping": not gift_card},
             "selectedOptions": [{"name": "Title" if variants == 1 else "Size",
                                  "value": "Default Title" if variants == 1 else f"Size {v + 1}"}],
             "image": None, "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-01-01T00:00:00Z"}
            for v in range(variants)
        ],
    }  # fmt: skip


def make_customer(n: int, *, email: str | None = None, first_name: str | None = None, phone: str | None = None,
                  email_state: str | None = "SUBSCRIBED", email_at: str | None = "2025-03-01T10:00:00Z",
                  sms_state: str | None = None, sms_at: str | None = None,
                  country: str = "US") -> dict[str, Any]:  # fmt: skip
    """A customer as the Admin API returns it. ``email_state`` None: no email consent object (no email)."""
    email = email if email is not None else f"customer{n}@example.com"
    return {
        "id": gid("Customer", 7_000_000 + n), "firstName": first_name or f"First{n}", "lastName": f"Last{n}",
        "email": email or None, "phone": phone,
        "emailMarketingConsent": None if email_state is None else {
            "marketingState": email_state, "marketingOptInLevel": "SINGLE_OPT_IN", "consentUpdatedAt": email_at},
        "smsMarketingConsent": None if sms_state is None else {
            "marketingState": sms_state, "marketingOptInLevel": "SINGLE_OPT_IN", "consentUpdatedAt": sms_at,
            "consentCollectedFrom": "SHOPIFY"},
        "defaultAddress": {"name": f"First{n} Last{n}", "firstName": f"First{n}", "lastName": f"Last{n}",
                           "company": None, "address1": f"{n} Main St", "address2": None, "city": "Springfield",
                           "province": "Illinois", "provinceCode": "IL", "country": "United States",
                           "countryCodeV2": country, "zip": "62701", "phone": None},
        "amountSpent": {"amount": "42.0", "currencyCode": "USD"}, "numberOfOrders": "2", "note": None,
        "taxExempt": False, "tags": [], "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-01-01T00:00:00Z",
    }  # fmt: skip


def make_order(n: int, *, email: str | None, lines: list[tuple[str, int, str]], status: str = "PAID",
               created_at: str = "2025-06-01T12:00:00Z", accepts_marketing: bool = True,
               currency: str = "USD") -> dict[str, Any]:  # fmt: skip
    """An order as the Admin API returns it; ``lines`` are (sku, quantity, unit price)."""
    subtotal = sum(quantity * float(price) for _, quantity, price in lines)
    return {
        "id": gid("Order", 5_000_000 + n), "name": f"#{1000 + n}", "email": email, "phone": None,
        "createdAt": created_at, "updatedAt": created_at, "processedAt": created_at, "cancelledAt": None,
        "closedAt": None, "displayFinancialStatus": status, "displayFulfillmentStatus": "FULFILLED",
        "currencyCode": currency, "customerAcceptsMarketing": accepts_marketing,
        "subtotalPriceSet": money(f"{subtotal:.2f}", currency), "totalShippingPriceSet": money("5.00", currency),
        "totalTaxSet": money("0.00", currency), "totalPriceSet": money(f"{subtotal + 5:.2f}", currency),
        "totalDiscountsSet": money("0.00", currency), "totalRefundedSet": money("0.00", currency),
        "discountCodes": [], "note": None, "tags": [], "sourceName": "web", "paymentGatewayNames": ["shopify_payments"],
        "billingAddress": {"name": f"First{n} Last{n}", "firstName": f"First{n}", "lastName": f"Last{n}",
                           "company": None, "address1": f"{n} Main St", "address2": None, "city": "Springfield",
                           "province": "Illinois", "provinceCode": "IL", "country": "United States",
                           "countryCodeV2": "US", "zip": "62701", "phone": None},
        "shippingAddress": None, "refunds": [], "customer": None,
        "lineItems": [
            {"id": gid("LineItem", n * 100 + i), "sku": sku, "name": f"Item {sku}", "title": f"Item {sku}",
             "quantity": quantity, "currentQuantity": quantity, "vendor": "Omnicast Roasters",
             "originalUnitPriceSet": money(price, currency), "requiresShipping": True, "taxable": True}
            for i, (sku, quantity, price) in enumerate(lines)
        ],
    }  # fmt: skip


# --- the server ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A canned answer for one call (the call is not processed)."""

    status: int
    body: Any = None
    retry_after: str | int | None = None


Step = Reply | Drop | None


@dataclass
class Call:
    """One request as the server saw it (``root``: the root fields of a GraphQL call; ``outcome``: ``ok``,
    ``THROTTLED``, another error code, or ``scripted``)."""

    method: str
    path: str
    headers: dict[str, str]
    query: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    root: tuple[str, ...] = ()
    status: int = 0
    outcome: str = ""
    requested: int = 0
    available_before: float = 0.0
    available_after: float = 0.0


@dataclass
class BulkOperation:
    id: str
    query: str
    selections: list[Field]
    created_at: str
    polls: int = 0
    status: str = "CREATED"
    error_code: str | None = None
    completed_at: str | None = None
    lines: list[str] = field(default_factory=list)
    object_count: int = 0


@dataclass
class ShopifyAdmin(HttpPeer[Step]):
    thread_name: ClassVar[str] = "shopify-admin-peer"

    token: str = "shpat_test_token"
    versions: tuple[str, ...] = VERSIONS
    scopes: frozenset[str] = SCOPES
    clock: Callable[[], float] = field(default_factory=lambda: ManualClock())
    maximum_available: float = 1000.0
    restore_rate: float = 50.0
    max_query_cost: int = 1000
    bulk_polls: int = 2
    bulk_error: str | None = None
    bulk_grouped: bool = True
    calls: list[Call] = field(default_factory=list)
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Resource (``products``, ``customers``, ``orders``) → gid → the record as the API returns it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for resource in RESOURCES:
            self.records.setdefault(resource, {})
        self._available = self.maximum_available
        self._refilled_at = self.clock()
        self._stamp = datetime(2026, 1, 1, tzinfo=UTC)
        self._cursors: set[str] = set()
        self._operations: list[BulkOperation] = []
        self._fail_after: int | None = None
        self._fail_status = 503
        self._list_pages = 0
        self._sorted: dict[tuple[str, str], tuple[list[tuple[str, int]], list[dict[str, Any]]]] = {}

    # data ------------------------------------------------------------------------------------------------

    def tick(self) -> str:
        """The next ``updatedAt`` (one second after the last one given)."""
        self._stamp += timedelta(seconds=1)
        return iso(self._stamp)

    def stamp_after(self, moment: datetime) -> None:
        """Later ``tick``s (edits, refunds, bulk operations' ``createdAt``) come after ``moment``: a shop filled with
        records of their own past ``updatedAt`` (``tests.peers.shopify_exports``) has its changes stamped later."""
        with self._lock:
            self._stamp = max(self._stamp, moment.astimezone(UTC))

    def put(self, resource: str, *records: dict[str, Any], updated_at: str | None = None) -> None:
        """Create or replace records; each gets ``updated_at`` or the next tick as its ``updatedAt``."""
        with self._lock:
            for record in records:
                stamped = copy.deepcopy(record)
                stamped["updatedAt"] = iso(parse_iso(updated_at)) if updated_at else self.tick()
                self.records[resource][stamped["id"]] = stamped
            self._sorted.clear()

    def edit(self, resource: str, record_id: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Change one record in place (``change`` gets it) and move its ``updatedAt`` on."""
        with self._lock:
            record = self.records[resource][record_id]
            change(record)
            record["updatedAt"] = self.tick()
            self._sorted.clear()
            return record

    def refund(self, order_id: str, amount: str) -> dict[str, Any]:
        """A refund on an order: a ``refunds`` entry, ``totalRefundedSet`` and the financial status follow."""

        def apply(order: dict[str, Any]) -> None:
            currency = order["currencyCode"]
            order["refunds"].append({"id": gid("Refund", 9000 + len(order["refunds"])), "createdAt": self.tick(),
                                     "note": None, "totalRefundedSet": money(amount, currency)})  # fmt: skip
            refunded = sum(float(r["totalRefundedSet"]["shopMoney"]["amount"]) for r in order["refunds"])
            order["totalRefundedSet"] = money(f"{refunded:.2f}", currency)
            total = float(order["totalPriceSet"]["shopMoney"]["amount"])
            order["displayFinancialStatus"] = "REFUNDED" if refunded >= total else "PARTIALLY_REFUNDED"

        return self.edit("orders", order_id, apply)

    # steering --------------------------------------------------------------------------------------------

    def fail_after(self, pages: int, status: int = 503) -> None:
        """After ``pages`` more list pages answered, every GraphQL call answers ``status`` until ``recover``."""
        with self._lock:
            self._fail_after = self._list_pages + pages
            self._fail_status = status

    def recover(self) -> None:
        with self._lock:
            self._fail_after = None

    def drain(self, to: float = 0.0) -> None:
        """Set the bucket to ``to`` points, as if this app's earlier calls had spent the rest."""
        with self._lock:
            self._refill()
            self._available = to

    @property
    def available(self) -> float:
        with self._lock:
            self._refill()
            return self._available

    def graphql_calls(self, outcome: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.root and (outcome is None or c.outcome == outcome)]

    def list_calls(self) -> list[Call]:
        return [c for c in self.graphql_calls() if set(c.root) & set(RESOURCES)]

    # the contract ----------------------------------------------------------------------------------------

    def _refill(self) -> None:
        now = self.clock()
        self._available = min(self.maximum_available, self._available + (now - self._refilled_at) * self.restore_rate)
        self._refilled_at = now

    def _status(self) -> dict[str, float]:
        return {"maximumAvailable": self.maximum_available, "currentlyAvailable": round(self._available, 1),
                "restoreRate": self.restore_rate}  # fmt: skip

    def graphql(self, call: Call, body: Any) -> tuple[int, Any]:
        """The answer to one unscripted GraphQL call (``call`` is filled in as it goes)."""
        if not isinstance(body, dict):
            return 400, {"errors": {"query": "Required parameter missing or invalid"}}
        text, variables = body.get("query"), body.get("variables") or {}
        call.query, call.variables = str(text or ""), dict(variables) if isinstance(variables, dict) else {}
        try:
            operation, selections = parse(call.query, call.variables)
        except GraphQLError as error:
            call.outcome = error.code
            return 200, {"errors": [{"message": str(error), "extensions": {"code": error.code}}]}
        call.root = tuple(s.name for s in selections)
        root_type = "Mutation" if operation == "mutation" else "QueryRoot"
        with self._lock:
            if self._fail_after is not None and self._list_pages >= self._fail_after:
                call.outcome = "failing"
                return self._fail_status, {"errors": "Service Unavailable"}
            self._refill()
            cost = MUTATION_COST if operation == "mutation" else requested_cost(root_type, selections)
            call.requested, call.available_before = cost, self._available
            if cost > self.max_query_cost:
                call.outcome = "MAX_COST_EXCEEDED"
                return 200, {"errors": [{"message": f"Query cost is {cost}, which exceeds the single query max "
                                                    f"cost limit ({self.max_query_cost}).",
                                         "extensions": {"code": "MAX_COST_EXCEEDED", "cost": cost,
                                                        "maxCost": self.max_query_cost}}]}  # fmt: skip
            if cost > self._available:
                call.outcome, call.available_after = "THROTTLED", self._available
                return 200, {"errors": [{"message": "Throttled", "extensions": {
                    "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                    "extensions": {"cost": {"requestedQueryCost": cost, "actualQueryCost": None,
                                            "throttleStatus": self._status()}}}  # fmt: skip
            self._available -= cost
            counter = [0]
            try:
                data = {s.alias: self._root(root_type, s, counter) for s in selections}
            except GraphQLError as error:
                self._available += cost
                call.outcome = error.code
                return 200, {"errors": [{"message": str(error), "extensions": {"code": error.code}}]}
            actual = MUTATION_COST if operation == "mutation" else min(cost, counter[0])
            self._available = min(self.maximum_available, self._available + cost - actual)
            if set(call.root) & set(RESOURCES):
                self._list_pages += 1
            call.outcome, call.available_after = "ok", self._available
            return 200, {
                "data": data,
                "extensions": {
                    "cost": {"requestedQueryCost": cost, "actualQueryCost": actual, "throttleStatus": self._status()}
                },
            }

    def _root(self, root_type: str, selection: Field, counter: list[int]) -> Any:
        name = selection.name
        scope = ROOT_SCOPES.get(name)
        if scope is not None and scope not in self.scopes:
            raise GraphQLError(f"Access denied for {name} field. Required access: `{scope}` access scope.",
                               "ACCESS_DENIED")  # fmt: skip
        if name in RESOURCES:
            return self._list(name, selection, counter)
        if name in ("product", "customer", "order"):
            record = self.records[name + "s"].get(str(selection.args.get("id")))
            if record is None:
                return None
            counter[0] += 1
            return self._project(RESOURCES[name + "s"], record, selection.selections or [], counter)
        if name == "currentBulkOperation":
            return self._poll(selection, counter)
        if name == "bulkOperationRunQuery":
            return self._run_bulk(selection, counter)
        raise GraphQLError(f"Field '{name}' doesn't exist on type '{root_type}'", "undefinedField")

    def _list(self, resource: str, selection: Field, counter: list[int]) -> dict[str, Any]:
        args = selection.args
        first = args.get("first")
        if args.get("last") is not None or args.get("before") is not None:
            raise GraphQLError("this stand-in pages forward only (first/after)", "argumentNotAccepted")
        if not isinstance(first, int) or isinstance(first, bool) or first < 1:
            raise GraphQLError("you must provide one of first or last", "missingRequiredArguments")
        if first > MAX_PAGE:
            raise GraphQLError(f"The first argument must be less than or equal to {MAX_PAGE}", "argumentLimit")
        if args.get("reverse"):
            raise GraphQLError("this stand-in serves reverse: false only", "argumentNotAccepted")
        sort_key = args.get("sortKey") or Enum("ID")
        if not isinstance(sort_key, Enum) or sort_key.name not in ("ID", "UPDATED_AT"):
            raise GraphQLError(f"Argument 'sortKey' has an invalid value ({sort_key}): this stand-in sorts by ID or "
                               "UPDATED_AT", "argumentLiteralsIncompatible")  # fmt: skip
        since = _since(args.get("query"))
        keys, rows = self._in_order(resource, sort_key.name)
        start = 0
        after = args.get("after")
        if after is not None:
            if after not in self._cursors:
                raise GraphQLError("Invalid cursor for current pagination sort.", "BAD_REQUEST")
            cursor_resource, cursor_sort, stamp, number = json.loads(base64.b64decode(after))
            if cursor_resource != resource or cursor_sort != sort_key.name:
                raise GraphQLError("Invalid cursor for current pagination sort.", "BAD_REQUEST")
            start = bisect.bisect_right(keys, (stamp, number))
        bound = iso(since) if since is not None else ""
        chosen: Sequence[int] = range(start, len(rows))
        if sort_key.name == "UPDATED_AT":  # updatedAt texts are all of one format: they sort as the times do
            chosen = range(max(start, bisect.bisect_left(keys, (bound, -1))), len(rows))
        elif bound:
            chosen = [i for i in chosen if rows[i]["updatedAt"] >= bound]
        page_at = list(chosen[: first + 1])
        more = len(page_at) > first
        page = [rows[i] for i in page_at[:first]]
        cursors = []
        for i in page_at[:first]:
            cursor = base64.b64encode(json.dumps([resource, sort_key.name, *keys[i]]).encode()).decode()
            self._cursors.add(cursor)
            cursors.append(cursor)
        return self._connection(RESOURCES[resource], page, cursors, more, selection, counter)

    def _in_order(self, resource: str, sort_key: str) -> tuple[list[tuple[str, int]], list[dict[str, Any]]]:
        """The resource's records in ``sort_key`` order (``UPDATED_AT``: by (updatedAt, id); ``ID``: by id) with
        their sort keys; kept until a record changes."""
        cached = self._sorted.get((resource, sort_key))
        if cached is None:
            by_time = sort_key == "UPDATED_AT"
            pairs = sorted(((r["updatedAt"] if by_time else "", number_of(r["id"])), r)
                           for r in self.records[resource].values())  # fmt: skip
            cached = ([key for key, _ in pairs], [record for _, record in pairs])
            self._sorted[(resource, sort_key)] = cached
        return cached

    def _connection(self, node_type: str, page: list[dict[str, Any]], cursors: list[str], more: bool,
                    selection: Field, counter: list[int]) -> dict[str, Any]:  # fmt: skip
        counter[0] += 2
        nodes = _node_selection(selection.selections or [])
        projected = []
        for record in page:
            counter[0] += 1
            projected.append(self._project(node_type, record, nodes, counter))
        out: dict[str, Any] = {}
        for part in selection.selections or []:
            if part.name == "pageInfo":
                info = {"hasNextPage": more, "hasPreviousPage": False,
                        "startCursor": cursors[0] if cursors else None,
                        "endCursor": cursors[-1] if cursors else None}  # fmt: skip
                out[part.alias] = {f.alias: info[f.name] for f in part.selections or []}
            elif part.name == "nodes":
                out[part.alias] = projected
            elif part.name == "edges":
                out[part.alias] = [
                    {f.alias: (node if f.name == "node" else cursor) for f in part.selections or []}
                    for node, cursor in zip(projected, cursors, strict=True)
                ]
        return out

    def _project(self, type_name: str, record: dict[str, Any], selections: list[Field],
                 counter: list[int]) -> dict[str, Any]:  # fmt: skip
        out: dict[str, Any] = {}
        for selection in selections:
            if selection.name == "__typename":
                out[selection.alias] = type_name
                continue
            target = SCHEMA[type_name][selection.name].strip("[]")
            if selection.name == "metafield":
                value = record.get("metafields", {}).get(
                    f"{selection.args.get('namespace')}.{selection.args.get('key')}"
                )
                if value is not None:
                    counter[0] += 1
                    value = {f.alias: value.get(f.name) for f in selection.selections or []}
                out[selection.alias] = value
            elif target in CONNECTIONS:
                out[selection.alias] = self._nested(target, record, selection, counter)
            elif target in SCALARS:
                out[selection.alias] = record.get(selection.name)
            else:
                value = record.get(selection.name)
                if isinstance(value, list):
                    counter[0] += len(value)
                    out[selection.alias] = [self._project(target, v, selection.selections or [], counter)
                                            for v in value]  # fmt: skip
                elif value is not None:
                    counter[0] += 1
                    out[selection.alias] = self._project(target, value, selection.selections or [], counter)
                else:
                    out[selection.alias] = None
        return out

    def _nested(self, connection: str, record: dict[str, Any], selection: Field,
                counter: list[int]) -> dict[str, Any]:  # fmt: skip
        """A connection inside a record (variants, line items), paged by position."""
        args = selection.args
        first = args.get("first")
        if not isinstance(first, int) or isinstance(first, bool) or first < 1:
            raise GraphQLError("you must provide one of first or last", "missingRequiredArguments")
        if first > MAX_PAGE:
            raise GraphQLError(f"The first argument must be less than or equal to {MAX_PAGE}", "argumentLimit")
        items = record.get(selection.name) or []
        start = 0
        after = args.get("after")
        if after is not None:
            if after not in self._cursors:
                raise GraphQLError("Invalid cursor for current pagination sort.", "BAD_REQUEST")
            parent, name, index = json.loads(base64.b64decode(after))
            if parent != record["id"] or name != selection.name:
                raise GraphQLError("Invalid cursor for current pagination sort.", "BAD_REQUEST")
            start = index + 1
        page = items[start : start + first]
        cursors = []
        for index in range(start, start + len(page)):
            cursor = base64.b64encode(json.dumps([record["id"], selection.name, index]).encode()).decode()
            self._cursors.add(cursor)
            cursors.append(cursor)
        return self._connection(CONNECTIONS[connection], page, cursors, start + first < len(items), selection, counter)

    # bulk operations -------------------------------------------------------------------------------------

    def _run_bulk(self, selection: Field, counter: list[int]) -> dict[str, Any]:
        text = selection.args.get("query")
        errors: list[dict[str, Any]] = []
        operation = None
        running = next((op for op in self._operations if op.status in ("CREATED", "RUNNING")), None)
        try:
            if running is not None:
                raise GraphQLError(f"A bulk query operation for this app and shop is already in progress: "
                                   f"{running.id}.", "OPERATION_IN_PROGRESS")  # fmt: skip
            kind, selections = parse(str(text), {})
            if kind != "query":
                raise GraphQLError("Invalid bulk query: the query must be a query, not a mutation", "INVALID")
            connections = _connections(selections, "QueryRoot", 0)
            if not connections:
                raise GraphQLError("Invalid bulk query: Bulk queries must contain at least one connection.", "INVALID")
            if len(connections) > 5:
                raise GraphQLError("Invalid bulk query: Bulk queries cannot contain more than 5 connections.",
                                   "INVALID")  # fmt: skip
            if max(connections) > 2:
                raise GraphQLError("Invalid bulk query: Bulk queries cannot contain connections with a nesting depth "
                                   "greater than 2.", "INVALID")  # fmt: skip
            for root in selections:
                scope = ROOT_SCOPES.get(root.name)
                if root.name not in RESOURCES:
                    raise GraphQLError(f"Invalid bulk query: this stand-in runs bulk queries on "
                                       f"{', '.join(RESOURCES)} only", "INVALID")  # fmt: skip
                _since(root.args.get("query"))
                if scope not in self.scopes:
                    raise GraphQLError(f"Access denied for {root.name} field. Required access: `{scope}` access "
                                       "scope.", "ACCESS_DENIED")  # fmt: skip
            operation = BulkOperation(gid("BulkOperation", 700 + len(self._operations)), str(text), selections,
                                      self.tick())  # fmt: skip
            self._operations.append(operation)
        except GraphQLError as error:
            errors.append({"field": ["query"], "message": str(error), "code": error.code})
        out: dict[str, Any] = {}
        for part in selection.selections or []:
            if part.name == "bulkOperation":
                out[part.alias] = None if operation is None else self._operation(operation, part, counter)
            elif part.name == "userErrors":
                out[part.alias] = [{f.alias: e.get(f.name) for f in part.selections or []} for e in errors]
        return out

    def _poll(self, selection: Field, counter: list[int]) -> dict[str, Any] | None:
        if not self._operations:
            return None
        operation = self._operations[-1]
        if operation.status in ("CREATED", "RUNNING"):
            operation.polls += 1
            if operation.polls >= self.bulk_polls:
                self._finish(operation)
            else:
                operation.status = "RUNNING"
        return self._operation(operation, selection, counter)

    def _finish(self, operation: BulkOperation) -> None:
        operation.completed_at = self.tick()
        if self.bulk_error is not None:
            operation.status, operation.error_code = "FAILED", self.bulk_error
            return
        operation.status = "COMPLETED"
        parents: list[str] = []
        children: list[str] = []
        for root in operation.selections:
            resource = root.name
            since = _since(root.args.get("query"))
            node_type = RESOURCES[resource]
            nodes = _node_selection(root.selections or [])
            for record in sorted(self.records[resource].values(), key=lambda r: number_of(r["id"])):
                if since is not None and parse_iso(record["updatedAt"]) < since:
                    continue
                line, kids = self._bulk_lines(node_type, record, nodes)
                parents.append(line)
                (children if not self.bulk_grouped else parents).extend(kids)
        operation.lines = parents + children
        operation.object_count = len(operation.lines)

    def _bulk_lines(self, node_type: str, record: dict[str, Any], nodes: list[Field]) -> tuple[str, list[str]]:
        """The record's JSONL line (nested connections left out) and one line per nested node (``__parentId``)."""
        plain = [f for f in nodes if SCHEMA[node_type].get(f.name, "String").strip("[]") not in CONNECTIONS]
        nested = [f for f in nodes if SCHEMA[node_type].get(f.name, "String").strip("[]") in CONNECTIONS]
        counter = [0]
        line = json.dumps(self._project(node_type, record, plain, counter))
        kids = []
        for connection in nested:
            child_type = CONNECTIONS[SCHEMA[node_type][connection.name]]
            child_fields = _node_selection(connection.selections or [])
            for child in record.get(connection.name) or []:
                projected = self._project(child_type, child, child_fields, counter)
                kids.append(json.dumps({**projected, "__parentId": record["id"]}))
        return line, kids

    def _operation(self, operation: BulkOperation, selection: Field, counter: list[int]) -> dict[str, Any]:
        counter[0] += 1
        data = "\n".join(operation.lines) + ("\n" if operation.lines else "")
        number = number_of(operation.id)
        values = {
            "id": operation.id, "status": operation.status, "errorCode": operation.error_code,
            "createdAt": operation.created_at, "completedAt": operation.completed_at,
            "objectCount": str(operation.object_count), "rootObjectCount": str(operation.object_count),
            "fileSize": str(len(data.encode())) if operation.status == "COMPLETED" else None,
            "url": f"{self.url}/bulk/{number}.jsonl?signature=abc" if operation.status == "COMPLETED" and data
            else None,
            "partialDataUrl": None, "query": operation.query, "type": "QUERY",
        }  # fmt: skip
        return {f.alias: values.get(f.name) for f in selection.selections or []}

    def bulk_file(self, number: int) -> bytes | None:
        with self._lock:
            for operation in self._operations:
                if number_of(operation.id) == number and operation.status == "COMPLETED":
                    return ("\n".join(operation.lines) + "\n").encode()
        return None

    @property
    def operations(self) -> list[BulkOperation]:
        return list(self._operations)


def _connections(selections: list[Field], type_name: str, depth: int) -> list[int]:
    """The nesting depth (1 = top level) of every connection in a bulk query."""
    found: list[int] = []
    for selection in selections:
        target = SCHEMA[type_name].get(selection.name, "String").strip("[]")
        if target in CONNECTIONS:
            found.append(depth + 1)
            found += _connections(_node_selection(selection.selections or []), CONNECTIONS[target], depth + 1)
        elif target not in SCALARS:
            found += _connections(selection.selections or [], target, depth)
    return found


_SINCE = re.compile(r"""\s*updated_at:>=\s*(?:'([^']+)'|"([^"]+)"|(\S+))\s*""")


def _since(query: Any) -> datetime | None:
    """The inclusive lower bound of an ``updated_at:>='…'`` search (None: no search); anything else is refused."""
    if query is None or (isinstance(query, str) and not query.strip()):
        return None
    match = _SINCE.fullmatch(query) if isinstance(query, str) else None
    if match is None:
        raise GraphQLError(f"this stand-in understands only the search updated_at:>='ISO-8601', not {query!r}",
                           "argumentLiteralsIncompatible")  # fmt: skip
    text = next(group for group in match.groups() if group)
    try:
        moment = parse_iso(text)
    except ValueError:
        raise GraphQLError(f"updated_at needs a date, not {text!r}", "argumentLiteralsIncompatible") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Handler(PeerHandler):
    peer: ShopifyAdmin
    wbufsize = 1 << 16

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        call = Call("GET", path, self.lower_headers())
        match = re.fullmatch(r"/bulk/(\d+)\.jsonl", path)
        data = self.peer.bulk_file(int(match.group(1))) if match else None
        call.status = 200 if data is not None else 404
        with self.peer._lock:
            self.peer.calls.append(call)
        if data is None:
            self.send_body(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
            return
        self.send_body(200, data, "application/jsonl")

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length") or "0"
        raw = self.rfile.read(int(length)) if length.isdigit() else b""
        headers = self.lower_headers()
        path = self.path.split("?", 1)[0]
        call = Call("POST", path, headers)
        step = self.peer._next_step()
        extra: dict[str, str] = {}
        if isinstance(step, Reply):
            status, answer = step.status, step.body if step.body is not None else {"errors": "scripted"}
            if step.retry_after is not None:
                extra["Retry-After"] = str(step.retry_after)
            call.outcome = "scripted"
        else:
            status, answer = self._answer(call, path, headers, raw)
        call.status = status
        with self.peer._lock:
            self.peer.calls.append(call)
        if isinstance(step, Drop):
            self.close_connection = True
            return
        self.send_body(status, json.dumps(answer).encode(), "application/json", extra)

    def _answer(self, call: Call, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        match = re.fullmatch(r"/admin/api/([^/]+)/graphql\.json", path)
        if headers.get("x-shopify-access-token") != self.peer.token:
            call.outcome = "unauthorized"
            return 401, {"errors": INVALID_TOKEN}
        if match is None or match.group(1) not in self.peer.versions:
            call.outcome = "not found"
            return 404, {"errors": "Not Found"}
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return 415, {"errors": "Unsupported Media Type"}
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return 400, {"errors": {"query": "Required parameter missing or invalid"}}
        return self.peer.graphql(call, body)


ShopifyAdmin.handler = _Handler


def lines_of(peer: ShopifyAdmin, operation: int = -1) -> Iterator[dict[str, Any]]:
    """The JSONL lines of a finished bulk operation, parsed (tests look at what the reader downloaded)."""
    for line in peer.operations[operation].lines:
        yield json.loads(line)
