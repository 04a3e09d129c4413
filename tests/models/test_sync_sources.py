"""The sync on readers: watermarks kept per source, one JSON key per configured source, a source that stopped
part-way, records a platform deleted, and incremental reads that bring only some of a person's records.

The readers here are the export readers with their read trimmed or annotated the way an API reader's would be
(only what changed, a watermark, an error, deleted ids): what the write side does with each is what is tested. The
API readers themselves are tested against local servers in tests/sources/.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from sqlalchemy import Engine, func, select

from models.identity import CRM, GUEST, SHOPIFY
from models.schema import Consent, Customer, Identity, Order, SourceLoad
from models.sync import stored_watermarks, sync_sources
from sources.base import ReadContext, SourceConfig, SourceRead
from sources.exports import HubSpotExport, ShopifyExport

DATA = Path(__file__).resolve().parents[1] / "data" / "sources"
T1 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
JANE = "7012345678901"
JANE_CRM = "501"


def store() -> ShopifyExport:
    return ShopifyExport(SourceConfig("store", str(DATA / "store"), "OMNICAST_STORE_URL"))


def crm() -> HubSpotExport:
    return HubSpotExport(SourceConfig("crm", str(DATA / "hubspot_contacts.csv"), "OMNICAST_CRM_URL"))


@dataclass
class AsApi:
    """An export reader whose read is changed the way an API reader's would be; it records the context it got."""

    inner: Any
    change: Any = None
    platform: ClassVar[str] = "test-api"
    seen: list[ReadContext] = field(default_factory=list)

    @property
    def role(self) -> str:
        return str(self.inner.role)

    @property
    def location(self) -> str:
        return f"test://{self.inner.role}"

    def check(self) -> None:
        self.inner.check()

    def read(self, context: ReadContext) -> SourceRead:
        self.seen.append(context)
        read = replace(self.inner.read(context), platform=self.platform, location=self.location)
        return self.change(read) if self.change is not None else read


def count(engine: Engine, query: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def test_watermarks_are_stored_per_source_and_handed_back_next_run(engine: Engine) -> None:
    marks = {"products": "2026-11-20T10:00:00Z", "orders": "2026-11-24T18:00:00Z"}
    reader = AsApi(store(), lambda read: replace(read, watermarks=marks, incremental=True))
    report = sync_sources(engine, [reader], run_id="r1", now=T1)
    with engine.connect() as conn:
        assert stored_watermarks(conn) == {"store test://store": marks}
        loads = {row.source: row for row in conn.execute(select(SourceLoad)).all()}
    assert loads["orders"].watermark == marks["orders"] and loads["orders"].platform == "test-api"
    assert loads["customers"].watermark is None  # this read reached no watermark for customers
    assert reader.seen[0].watermarks == {}
    sync_sources(engine, [reader], run_id="r2", now=T2)
    assert reader.seen[1].watermarks == marks
    sync_sources(engine, [reader], run_id="r3", now=T2, full=True)
    assert reader.seen[2].watermarks == {}, "--full reads everything whatever is stored"
    assert report.configured["store"].mode == "incremental"


def test_the_json_report_keeps_its_keys_and_adds_one_per_configured_source(engine: Engine) -> None:
    report = sync_sources(engine, [store(), crm()], run_id="r1", now=T1).as_dict()
    for key in ("run_id", "sources", "profiles", "identities", "consents", "quarantined", "fields_quarantined",
                "orders", "order_lines", "events", "seconds"):  # fmt: skip
        assert key in report
    assert "analytics" not in report, "only configured sources get a key"
    for role, platform in (("store", "shopify-export"), ("crm", "hubspot-export")):
        summary = report[role]
        assert summary["platform"] == platform and summary["mode"] == "full" and summary["error"] is None
        accounted = summary["loaded"] + summary["quarantined"] + summary["duplicates_skipped"]
        assert summary["read"] == accounted + summary["forgotten_skipped"] and summary["read"] > 0
    by_name = {s["source"]: s for s in report["sources"]}
    assert report["crm"]["read"] == by_name["crm"]["rows_read"]
    assert report["store"]["read"] == sum(by_name[n]["rows_read"] for n in ("products", "customers", "orders"))


def test_a_source_that_stopped_part_way_keeps_what_it_read_and_its_watermark(engine: Engine) -> None:
    def first_order_only(read: SourceRead) -> SourceRead:
        orders = read.frames["orders"].head(1)
        lines = read.frames["lines"][read.frames["lines"]["order_external_id"].isin(orders["external_id"])]
        intake = read.intakes["orders"]
        intake.rows_read = len(lines)  # the pages that arrived complete
        frames = {**read.frames, "orders": orders, "lines": lines}
        return replace(read, frames=frames, watermarks={"orders": "2026-10-02T16:15:00Z"}, incremental=True,
                       error="OMNICAST_STORE_URL: the server stopped answering after page 1")  # fmt: skip

    report = sync_sources(engine, [AsApi(store(), first_order_only)], run_id="r1", now=T1)
    assert report.errors == {"store": "OMNICAST_STORE_URL: the server stopped answering after page 1"}
    assert report.as_dict()["store"]["error"].endswith("after page 1")
    assert count(engine, select(func.count()).select_from(Order)) == 1
    with engine.connect() as conn:
        assert stored_watermarks(conn)["store test://store"] == {"orders": "2026-10-02T16:15:00Z"}
    assert report.reconciles


def test_an_order_read_alone_joins_its_stored_customer_without_a_guest_record_or_a_new_statement(
    engine: Engine,
) -> None:
    sync_sources(engine, [store(), crm()], run_id="r1", now=T1)
    jane = _customer(engine, SHOPIFY, JANE)
    with engine.connect() as conn:
        before = conn.execute(select(Customer).where(Customer.id == jane)).one()._asdict()
        consents = conn.execute(select(func.count()).select_from(Consent)).scalar_one()
        identities = conn.execute(select(func.count()).select_from(Identity)).scalar_one()
        profiles = conn.execute(select(func.count()).select_from(Customer)).scalar_one()

    def janes_orders_only(read: SourceRead) -> SourceRead:
        frames = read.frames
        orders = frames["orders"][frames["orders"]["email"] == "jane.doe@example.com"].assign(
            accepts_marketing=True  # a checkout tick box never outranks her customer record's consent
        )
        lines = frames["lines"][frames["lines"]["order_external_id"].isin(orders["external_id"])]
        empty = frames["customers"].iloc[0:0]
        for intake, kept in (("customers", 0), ("orders", len(lines))):
            read.intakes[intake].rows_read, read.intakes[intake].rejected = kept, []
            read.intakes[intake].duplicates_skipped = 0
            read.intakes[intake].set_aside_cells, read.intakes[intake].denials = [], []
        return replace(read, frames={**frames, "customers": empty, "orders": orders, "lines": lines},
                       incremental=True)  # fmt: skip

    sync_sources(engine, [AsApi(store(), janes_orders_only)], run_id="r2", now=T2)
    with engine.connect() as conn:
        after = conn.execute(select(Customer).where(Customer.id == jane)).one()._asdict()
        guests = conn.execute(select(Identity).where(Identity.source == GUEST,
                                                     Identity.external_id == "jane.doe@example.com")).all()  # fmt: skip
        linked = conn.execute(select(Order.customer_id).where(Order.email == "jane.doe@example.com")).scalars().all()
        assert conn.execute(select(func.count()).select_from(Consent)).scalar_one() == consents
        assert conn.execute(select(func.count()).select_from(Identity)).scalar_one() == identities
        assert conn.execute(select(func.count()).select_from(Customer)).scalar_one() == profiles
    assert guests == [] and linked and set(linked) == {jane}
    before.pop("updated_at"), after.pop("updated_at")
    assert after == before


def test_a_contact_read_alone_fills_but_never_overwrites_what_the_store_said(engine: Engine) -> None:
    sync_sources(engine, [store(), crm()], run_id="r1", now=T1)
    jane = _customer(engine, SHOPIFY, JANE)

    def renamed_contact(read: SourceRead) -> SourceRead:
        contacts = read.frames["contacts"]
        contacts = contacts[contacts["external_id"] == JANE_CRM].assign(first_name="Janet", loyalty_tier="Platinum")
        read.intakes["crm"].rows_read, read.intakes["crm"].duplicates_skipped = 1, 0
        read.intakes["crm"].rejected, read.intakes["crm"].set_aside_cells, read.intakes["crm"].denials = [], [], []
        return replace(read, frames={"contacts": contacts}, incremental=True)

    thin_store = AsApi(store(), _nothing_changed)
    sync_sources(engine, [thin_store, AsApi(crm(), renamed_contact)], run_id="r2", now=T2)
    with engine.connect() as conn:
        profile = conn.execute(select(Customer).where(Customer.id == jane)).one()
    assert profile.first_name == "Jane", "the CRM ranks below the store for names: it cannot overwrite one"
    assert profile.loyalty_tier == "Platinum", "the CRM is the source of loyalty tiers: its change lands"


def test_a_deleted_contact_is_unlinked_and_takes_back_its_grants_but_not_its_denials(engine: Engine) -> None:
    sync_sources(engine, [store(), crm()], run_id="r1", now=T1)
    jane = _customer(engine, CRM, JANE_CRM)
    with engine.connect() as conn:
        crm_states = dict(conn.execute(select(Consent.channel, Consent.state).where(
            Consent.customer_id == jane, Consent.source == CRM)).all())  # fmt: skip
    assert "granted" in crm_states.values()
    with engine.begin() as conn:  # a denial the CRM made on a channel of hers: it must survive the deletion
        conn.execute(Consent.__table__.update().where(  # type: ignore[attr-defined]
            Consent.customer_id == jane, Consent.source == CRM, Consent.channel == "ads").values(state="denied"))

    def deleted(read: SourceRead) -> SourceRead:
        contacts = read.frames["contacts"].iloc[0:0]
        intake = read.intakes["crm"]
        intake.rows_read, intake.duplicates_skipped, intake.rejected, intake.set_aside_cells = 0, 0, [], []
        intake.denials = []
        return replace(read, frames={"contacts": contacts}, deleted=[JANE_CRM], incremental=True)

    report = sync_sources(engine, [AsApi(store(), _nothing_changed), AsApi(crm(), deleted)], run_id="r2", now=T2)
    assert report.deleted == 1 and report.as_dict()["crm"]["deleted"] == 1
    with engine.connect() as conn:
        left = dict(conn.execute(select(Consent.channel, Consent.state).where(
            Consent.customer_id == jane, Consent.source == CRM)).all())  # fmt: skip
        linked = conn.execute(select(Identity).where(Identity.source == CRM, Identity.external_id == JANE_CRM)).all()
        still = conn.execute(select(Customer.id).where(Customer.id == jane)).scalar_one_or_none()
    assert linked == [] and still == jane, "the profile stays: the store still knows her"
    assert left == {"ads": "denied"}


def test_store_consent_dated_by_the_platform_beats_an_older_crm_statement(engine: Engine) -> None:
    def dated(read: SourceRead) -> SourceRead:
        customers = read.frames["customers"].assign(
            accepts_email=False, accepts_email_at=pd.Timestamp("2026-11-20 08:00", tz="UTC"), accepts_sms_at=pd.NaT
        )
        return replace(read, frames={**read.frames, "customers": customers})

    sync_sources(engine, [AsApi(store(), dated), crm()], run_id="r1", now=T1)
    jane = _customer(engine, SHOPIFY, JANE)
    with engine.connect() as conn:
        row = conn.execute(select(Consent.state, Consent.recorded_at).where(
            Consent.customer_id == jane, Consent.source == SHOPIFY, Consent.channel == "email")).one()  # fmt: skip
    assert row.state == "denied" and row.recorded_at == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def _nothing_changed(read: SourceRead) -> SourceRead:
    """An incremental store read that found nothing new."""
    frames = {name: frame.iloc[0:0].copy() for name, frame in read.frames.items()}
    frames["products"].attrs.pop("image_rows", None)
    for intake in read.intakes.values():
        intake.rows_read, intake.duplicates_skipped, intake.rejected, intake.set_aside_cells = 0, 0, [], []
        intake.denials = []
    return replace(read, frames=frames, incremental=True)


def _customer(engine: Engine, source: str, external_id: str) -> int:
    with engine.connect() as conn:
        query = select(Identity.customer_id).where(Identity.source == source, Identity.external_id == external_id)
        return int(conn.execute(query).scalar_one())
