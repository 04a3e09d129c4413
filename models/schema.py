"""The database tables (SQLModel). One module so the schema reads in one sitting.

Conventions: timestamps are timezone-aware and come back in UTC (SQLModel's UTCDateTime refuses naive ones);
``customer_id`` always points at the golden profile in ``customers``;
rows coming from a source keep that source's own id in ``external_id`` (or in ``identities``).
Change a table only together with a new Alembic revision under ``migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy import true as sa_true
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC now: the one clock convention of the schema."""
    return datetime.now(UTC)


class Customer(SQLModel, table=True):
    """The golden profile: one person, however many source records point at them."""

    __tablename__ = "customers"
    id: int | None = Field(default=None, primary_key=True)
    email: str | None = Field(default=None, index=True, description="normalized (trimmed, lowercase)")
    phone: str | None = Field(default=None, index=True, description="E.164")
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2")
    zip: str | None = None
    birthday: date | None = None
    loyalty_tier: str | None = None
    timezone: str | None = Field(default=None, description="IANA name; store default when empty")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    erased_at: datetime | None = Field(
        default=None, description="set by `omnicast forget`: every PII column is blank from then on"
    )


class Identity(SQLModel, table=True):
    """One source record (Shopify customer, CRM contact, analytics user) linked to a golden profile."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_identity_source_external"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    source: str = Field(description="shopify | shopify_order (guest checkout) | crm | analytics")
    external_id: str = Field(index=True)
    email: str | None = Field(default=None, index=True)
    phone: str | None = Field(default=None, index=True)
    seen_at: datetime = Field(default_factory=utcnow)


class Product(SQLModel, table=True):
    __tablename__ = "products"
    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(unique=True, index=True)
    handle: str = Field(index=True)
    title: str
    product_type: str | None = None
    vendor: str | None = None
    tags: str | None = Field(default=None, description="comma-separated, as in Shopify")
    price: float = 0.0
    image_url: str | None = None
    flavour_notes: str | None = Field(default=None, description="'|'-separated")
    roast: str | None = None
    origin: str | None = None
    consumable: bool = False
    replenish_days: int | None = Field(default=None, description="typical days one unit lasts")
    active: bool = True
    inventory_quantity: int | None = Field(
        default=None,
        description="units in stock (Variant Inventory Qty); None = not tracked or sold when out: counts as in stock",
    )
    published: bool = Field(
        default=True,
        sa_column_kwargs={"server_default": sa_true()},
        description="visible on the online store (Published); unpublished products are never recommended",
    )
    gift_card: bool = Field(
        default=False,
        sa_column_kwargs={"server_default": sa_false()},
        description="a gift card (Gift Card): sold, never recommended nor replenished",
    )


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(unique=True, index=True, description="Shopify order Name, e.g. #1001")
    customer_id: int | None = Field(default=None, foreign_key="customers.id", index=True)
    email: str | None = None
    created_at: datetime = Field(index=True)
    currency: str | None = None
    total: float = 0.0
    financial_status: str | None = None
    refunded_amount: float = 0.0
    cancelled_at: datetime | None = None


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_lines"
    __table_args__ = (UniqueConstraint("order_id", "line_number", name="uq_order_line"),)
    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    line_number: int
    product_id: int | None = Field(default=None, foreign_key="products.id", index=True)
    sku: str | None = None
    name: str | None = None
    quantity: int = 1
    price: float = 0.0


class Event(SQLModel, table=True):
    """One analytics event, one row per item it names (GA4 ``items[]`` flattened)."""

    __tablename__ = "events"
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int | None = Field(default=None, foreign_key="customers.id", index=True)
    user_pseudo_id: str = Field(index=True)
    event_name: str = Field(index=True)
    occurred_at: datetime = Field(index=True)
    product_id: int | None = Field(default=None, foreign_key="products.id")
    sku: str | None = None
    quantity: int | None = None
    value: float | None = None
    transaction_id: str | None = None
    traffic_source: str | None = None


class Consent(SQLModel, table=True):
    """The latest statement each source made about a customer's consent on a channel.

    The consent gate reads all statements for (customer, channel): the most recent wins, denial wins ties.
    A source's ``recorded_at`` only moves when its state changes, so a daily re-export cannot overrule a
    newer unsubscribe.
    """

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("customer_id", "channel", "source", name="uq_consent_statement"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    channel: str = Field(description="email | sms | ads | inapp")
    state: str = Field(description="granted | denied")
    source: str = Field(description="shopify | shopify_order | crm | unsubscribe | erasure | ...")
    recorded_at: datetime = Field(default_factory=utcnow)


class Recommendation(SQLModel, table=True):
    __tablename__ = "recommendations"
    __table_args__ = (UniqueConstraint("customer_id", "rank", name="uq_recommendation_rank"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    product_id: int = Field(foreign_key="products.id")
    rank: int = Field(description="1 = best")
    score: float
    model: str = Field(description="hybrid | popularity | pin (put there by a marketer rule)")
    explanation: str = Field(description="human-readable reason shown next to the item")
    rules: str = Field(
        default="",
        sa_column_kwargs={"server_default": ""},
        description="marketer-only: the rules that moved or placed it (pin:NAME, boost:NAME, bury:NAME)",
    )
    trained_at: datetime = Field(default_factory=utcnow)


class RelatedProduct(SQLModel, table=True):
    """Products to show next to a product (product page) or a cart ("Pairs with …"), best first; replaced as a whole
    by each training (``models/recommend/related.py``)."""

    __tablename__ = "related_products"
    product_id: int = Field(foreign_key="products.id", primary_key=True)
    rank: int = Field(primary_key=True, description="1 = best")
    related_product_id: int = Field(foreign_key="products.id")
    score: float
    kind: str = Field(description="co_purchase | content | blend: what the score mostly rests on")
    explanation: str = Field(description="e.g. 'Pairs with Ethiopia Guji', 'Similar to Kenya AA'")
    trained_at: datetime = Field(default_factory=utcnow)


class TriggerOccurrence(SQLModel, table=True):
    """A moment worth reaching a customer for. ``occurrence_key`` is its business identity:
    the same moment detected twice is the same row (and so at most one message per channel)."""

    __tablename__ = "trigger_occurrences"
    id: int | None = Field(default=None, primary_key=True)
    occurrence_key: str = Field(unique=True, index=True, description="e.g. birthday:2026:42")
    kind: str = Field(index=True, description="churn_risk | replenishment | birthday | abandoned_cart")
    customer_id: int = Field(foreign_key="customers.id", index=True)
    due_on: date
    detected_at: datetime = Field(default_factory=utcnow)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Campaign(SQLModel, table=True):
    __tablename__ = "campaigns"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    kind: str = Field(description="triggered | broadcast | audience")
    trigger_kind: str | None = None
    template: str | None = None
    channels: str = Field(description="comma-separated channel names")
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class Experiment(SQLModel, table=True):
    __tablename__ = "experiments"
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    name: str = Field(unique=True)
    variants: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    holdout_percent: int = 10
    created_at: datetime = Field(default_factory=utcnow)


class Assignment(SQLModel, table=True):
    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("experiment_id", "customer_id", name="uq_assignment"),)
    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(foreign_key="experiments.id", index=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    variant: str = Field(description="a variant name or 'holdout'")
    assigned_at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    """The send ledger. One row per (occurrence, customer, channel), ever: the unique key is the guarantee."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("occurrence_key", "customer_id", "channel", name="uq_message_ledger_key"),
    )
    id: int | None = Field(default=None, primary_key=True)
    occurrence_key: str = Field(index=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    channel: str = Field(index=True, description="email | meta | google | inapp")
    campaign: str | None = Field(default=None, index=True)
    variant: str | None = None
    template: str | None = None
    state: str = Field(index=True, description="pending | sending | sent | suppressed | failed")
    reason: str | None = Field(default=None, description="why suppressed / failed")
    attempts: int = 0
    provider_id: str | None = Field(default=None, description="Message-ID, file name or provider's id")
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    marketing: bool = Field(
        default=True,
        sa_column_kwargs={"server_default": sa_true()},
        description="counts against the marketing frequency cap (transactional messages do not)",
    )
    not_before: datetime | None = Field(
        default=None,
        description="a message deferred by quiet hours (or a frequency cap window) is not handed over before this",
    )
    payload: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="what the planner decided (template context, audience) while the message is unfinished, so a "
        "later run can finish it without planning it again; cleared once the message reaches its outcome",
    )


class QuarantineRow(SQLModel, table=True):
    """An input row that could not be loaded, kept whole with the reason, for a human to fix."""

    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    source: str = Field(index=True, description="products | customers | orders | crm | analytics")
    file: str
    row_number: int = Field(description="1-based data row (header excluded); JSONL: line number")
    column: str | None = None
    reason: str
    scope: str = Field(
        default="row",
        sa_column_kwargs={"server_default": "row"},
        description="row: the whole row was set aside | field: the row was loaded without this column's value",
    )
    raw: str = Field(description="the row as read, JSON-encoded")
    created_at: datetime = Field(default_factory=utcnow)


class SourceLoad(SQLModel, table=True):
    """Per source and sync run: rows read = loaded + quarantined + duplicates skipped."""

    __tablename__ = "source_loads"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    source: str
    file: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    duplicates_skipped: int = 0
    fields_quarantined: int = Field(
        default=0,
        sa_column_kwargs={"server_default": "0"},
        description="cells set aside in rows that were still loaded (a bad birthday in a contact's row, ...)",
    )
    forgotten_skipped: int = Field(
        default=0,
        sa_column_kwargs={"server_default": "0"},
        description="rows of people erased by `omnicast forget`, left out (never loaded, never quarantined)",
    )
    platform: str = Field(
        default="",
        sa_column_kwargs={"server_default": ""},
        description="where the rows came from: shopify-export, shopify, woocommerce, hubspot-export, hubspot, ga4",
    )
    watermark: str | None = Field(
        default=None, description="how far an incremental read of this resource got (None: a file, read whole)"
    )
    loaded_at: datetime = Field(default_factory=utcnow)


class SourceWatermark(SQLModel, table=True):
    """How far the last committed read of one resource of one source got: the next run asks only for what changed
    since (inclusive). ``source`` is the role and location (``store shopify://shop.myshopify.com``): pointing a role
    at another store starts afresh."""

    __tablename__ = "source_watermarks"
    source: str = Field(primary_key=True)
    resource: str = Field(primary_key=True)
    watermark: str
    run_id: str
    updated_at: datetime = Field(default_factory=utcnow)


class Suppression(SQLModel, table=True):
    """Addresses never to be mailed again, whoever imports them: hard bounces, spam complaints, SMTP permanent
    failures, erasures. Keyed by a salted hash of the normalized address (``models.suppression.address_hash``), so
    an erased person's address is not kept in clear, yet a later import of it is still recognised."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("channel", "address_hash", name="uq_suppression_address"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(description="email | sms | ...")
    address_hash: str = Field(index=True, description="HMAC-SHA256 of the normalized address (hex)")
    customer_id: int | None = Field(default=None, index=True, description="no foreign key: kept after erasure")
    reason: str = Field(description="hard_bounce | spam_complaint | smtp_permanent | erased | manual")
    source: str = Field(description="postmark | smtp | forget | ...")
    detail: str | None = Field(default=None, description="provider's bounce type or SMTP code; never PII")
    recorded_at: datetime = Field(default_factory=utcnow)


class Click(SQLModel, table=True):
    """One click on a tracked link (``/c/TOKEN``) in a message."""

    __tablename__ = "clicks"
    id: int | None = Field(default=None, primary_key=True)
    message_id: int | None = Field(default=None, index=True, description="the ledger row (messages.id)")
    customer_id: int | None = Field(default=None, index=True)
    campaign: str | None = Field(default=None, index=True)
    variant: str | None = None
    url: str = Field(description="the target, without our UTM parameters")
    clicked_at: datetime = Field(default_factory=utcnow)


class WebhookEvent(SQLModel, table=True):
    """Provider events already handled (bounce, complaint): a retried webhook changes nothing the second time."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("provider", "event_id", name="uq_webhook_event"),)
    id: int | None = Field(default=None, primary_key=True)
    provider: str
    event_id: str
    kind: str = Field(description="HardBounce | SpamComplaint | ...")
    received_at: datetime = Field(default_factory=utcnow)


class InstallSecret(SQLModel, table=True):
    """Per-database random values made once (the suppression list's hash salt): kept apart from settings so a rotated
    ``OMNICAST_SECRET_KEY`` does not forget who must never be mailed."""

    __tablename__ = "install_secrets"
    name: str = Field(primary_key=True)
    value: str
    created_at: datetime = Field(default_factory=utcnow)


class OfferCode(SQLModel, table=True):
    """A code from a campaign's code pool (a CSV of single-use codes), given to one recipient of one occurrence.

    A code is handed out once per pool (``uq_offer_code``), a recipient gets one code per campaign occurrence
    (``uq_offer_code_recipient``): planning the same day again finds the same code, never a second one. ``pool`` is
    the CSV's name as the campaign file writes it (``codes/birthday.csv``), so two campaigns sharing a file share its
    codes. Static codes (``offer.code``) are not recorded here: everyone gets the same one."""

    __tablename__ = "offer_codes"
    __table_args__ = (
        UniqueConstraint("pool", "code", name="uq_offer_code"),
        UniqueConstraint("campaign", "occurrence_key", "customer_id", name="uq_offer_code_recipient"),
    )
    id: int | None = Field(default=None, primary_key=True)
    pool: str = Field(index=True, description="the pool CSV as named in the campaign file")
    code: str
    campaign: str = Field(index=True)
    occurrence_key: str
    customer_id: int = Field(index=True, description="no foreign key: the record of a used code outlives erasure")
    assigned_at: datetime = Field(default_factory=utcnow)


class AudienceMember(SQLModel, table=True):
    """Who omnicast last put into an ad audience on a platform, with the hashed identifiers it uploaded.

    The sync compares this with who should be there today (the segment, ads consent, not erased, not suppressed)
    and plans the additions and removals; a removal uploads the hashes stored here, so a person who changed their
    email or was erased is still taken out. ``state`` is ``adding`` or ``removing`` while that message is in the ledger
    and not yet sent (a crashed sync is reconciled from the ledger on the next one), ``member`` after. Hashes only,
    never a plaintext identifier (except what a platform requires unhashed: Google's country and zip)."""

    __tablename__ = "audience_members"
    audience: str = Field(primary_key=True)
    platform: str = Field(primary_key=True)
    customer_id: int = Field(primary_key=True, description="no foreign key: a removal must outlive erasure")
    state: str = Field(description="adding | member | removing")
    identifiers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    occurrence_key: str = Field(description="the ledger key of the addition or removal in flight (or the last one)")
    updated_at: datetime = Field(default_factory=utcnow)


class InAppCard(SQLModel, table=True):
    """A content card held for apps that fetch (``OMNICAST_INAPP_URL=pull://``), read by ``GET /v1/customers/…/cards``.

    ``id`` is the card's id (the ledger hash of the message that made it), so a retried message is stored once.
    A retraction sets ``retracted_at``; a retracted or expired card is no longer served (the row stays: the channel
    answers ``already_delivered`` from it)."""

    __tablename__ = "inapp_cards"
    id: str = Field(primary_key=True, description="the card id: 32 hex digits, the ledger hash")
    customer_id: int = Field(index=True, description="no foreign key, like the ledger's other copies of it")
    card: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    campaign: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    retracted_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class ModelVersion(SQLModel, table=True):
    """One trained recommender (``models/registry.py``): its configuration, the data it saw and how it did.

    A version *is* its ``parameters`` (model kind and hyperparameters) run by ``code_version`` on the data window:
    the day's picks are re-fitted on all the data every run, so no fitted model file is kept (the registry's
    docstring says why). ``status``: ``serving`` (one at a time: the parameters the picks are fitted with),
    ``retired`` (served before), ``rejected`` (lost to the serving model on the holdout), ``candidate`` (recorded,
    not judged: a pinned version was serving). No customer data: counts and figures only."""

    __tablename__ = "model_versions"
    version: int = Field(primary_key=True, description="1, 2, 3 … in training order")
    trained_at: datetime = Field(default_factory=utcnow)
    status: str = Field(description="candidate | serving | retired | rejected")
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    code_version: str = Field(description="the omnicast release that trained it")
    first_interaction_at: datetime | None = Field(default=None, description="earliest signal the fit read")
    last_interaction_at: datetime | None = Field(default=None, description="latest signal the fit read")
    holdout_start: datetime | None = Field(default=None, description="None: too little data to evaluate")
    holdout_end: datetime | None = None
    evaluation: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reason: str = Field(description="why it was promoted or not, with the figures")
    promoted_at: datetime | None = None
    retired_at: datetime | None = None
    pinned: bool = Field(default=False, description="promoted by hand: the train flow does not replace it")
