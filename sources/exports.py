"""Export files as sources: a folder of Shopify admin exports (the store) and a HubSpot contacts CSV (the CRM).

A file is read whole every run (no watermark): the sync replaces what the file covers, so reading the same file twice
changes nothing. The checks are the ``read_*`` functions of ``sources.shopify`` and ``sources.crm``.
"""

from __future__ import annotations

from typing import ClassVar

from sources.base import ReadContext, SourceConfig, SourceRead, path_of
from sources.crm import HUBSPOT, CrmMapping, read_contacts
from sources.shopify import CUSTOMERS_FILE, ORDERS_FILE, PRODUCTS_FILE, read_customers, read_orders, read_products
from sources.validate import Intake, SourceFileError

__all__ = ["HubSpotExport", "ShopifyExport"]

EXPORT_STORE = (
    "it must be the folder holding products_export.csv, customers_export.csv and orders_export.csv from "
    "Shopify admin → Products/Customers/Orders → Export"
)


class ShopifyExport:
    """The store from Shopify admin's CSV exports: ``products_export.csv``, ``customers_export.csv``,
    ``orders_export.csv`` in one folder."""

    role: ClassVar[str] = "store"
    platform: ClassVar[str] = "shopify-export"

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.folder = path_of(config.url)

    @property
    def location(self) -> str:
        return str(self.folder)

    def check(self) -> None:
        """The folder exists and holds the three exports: else one line naming the setting, what was found there
        and how to export the right thing."""
        setting, folder = self.config.setting, self.folder
        if folder.is_file():
            raise SourceFileError(f"{setting} is a file ({folder}), not a folder — {EXPORT_STORE}")
        if not folder.is_dir():
            raise SourceFileError(f"{setting}: nothing at {folder} — {EXPORT_STORE}")
        missing = [folder / name for name in (PRODUCTS_FILE, CUSTOMERS_FILE, ORDERS_FILE)]
        missing = [path for path in missing if not path.is_file()]
        if missing:
            names = ", ".join(f"{path.name} (looked at {path})" for path in missing)
            raise SourceFileError(f"{setting}: missing source file(s) {names} — {EXPORT_STORE}")

    def read(self, context: ReadContext) -> SourceRead:
        intakes = {
            "products": Intake("products", PRODUCTS_FILE),
            "customers": Intake("customers", CUSTOMERS_FILE),
            "orders": Intake("orders", ORDERS_FILE),
        }
        products = read_products(self.folder / PRODUCTS_FILE, intakes["products"])
        intakes["products"].release()
        context.say(f"products: {len(products)} read")
        customers = read_customers(self.folder / CUSTOMERS_FILE, intakes["customers"], context.default_country)
        intakes["customers"].release()
        context.say(f"customers: {len(customers)} read")
        known = context.known_skus | set(products["sku"])
        orders = read_orders(self.folder / ORDERS_FILE, intakes["orders"], known, context.now)
        intakes["orders"].release()
        context.say(f"orders: {len(orders.orders)} orders, {len(orders.lines)} lines read")
        frames = {"products": products, "customers": customers, "orders": orders.orders, "lines": orders.lines}
        return SourceRead(self.role, self.platform, self.location, frames, intakes)


class HubSpotExport:
    """The CRM from a contacts CSV (HubSpot's export by default; another CRM's columns via a :class:`CrmMapping`)."""

    role: ClassVar[str] = "crm"
    platform: ClassVar[str] = "hubspot-export"

    def __init__(self, config: SourceConfig, mapping: CrmMapping = HUBSPOT) -> None:
        self.config = config
        self.file = path_of(config.url)
        self.mapping = mapping

    @property
    def location(self) -> str:
        return str(self.file)

    def check(self) -> None:
        if self.file.is_file():
            return
        found = "a directory" if self.file.is_dir() else "nothing"
        raise SourceFileError(
            f"{self.config.setting} points at {found} ({self.file}), not a file — give the contacts CSV file itself: "
            f"{self.mapping.how_to_export}"
        )

    def read(self, context: ReadContext) -> SourceRead:
        intake = Intake("crm", self.file.name)
        contacts = read_contacts(self.file, intake, context.default_country, self.mapping, context.now)
        intake.release()
        context.say(f"crm: {len(contacts)} contacts read")
        return SourceRead(self.role, self.platform, self.location, {"contacts": contacts}, {"crm": intake})

