"""File names and header columns of the exports omnicast reads (docs/SOURCE_FORMATS.md), in one place for the
readers in ``sources/`` and the sample store generator in ``sample/``: the generator writes what the readers
require, and a renamed column changes both.

A store directory holds the three Shopify exports in :data:`SHOPIFY_FOLDER`, the HubSpot contacts export and the
GA4 events next to it (the layout of ``omnicast sample`` and ``omnicast demo``); the readers take the Shopify
folder, the contacts file and the events file each on their own.
"""

from __future__ import annotations

SHOPIFY_FOLDER = "shopify"
PRODUCTS_FILE = "products_export.csv"
CUSTOMERS_FILE = "customers_export.csv"
ORDERS_FILE = "orders_export.csv"
CRM_FILE = "hubspot_contacts.csv"
ANALYTICS_FILE = "ga4_events.jsonl"

PRODUCT_COLUMNS = (
    "Handle",
    "Title",
    "Body (HTML)",
    "Vendor",
    "Product Category",
    "Type",
    "Tags",
    "Published",
    "Option1 Name",
    "Option1 Value",
    "Variant SKU",
    "Variant Grams",
    "Variant Inventory Qty",
    "Variant Price",
    "Variant Compare At Price",
    "Variant Requires Shipping",
    "Variant Taxable",
    "Image Src",
    "Image Position",
    "Image Alt Text",
    "Gift Card",
    "SEO Title",
    "SEO Description",
    "Flavour notes (product.metafields.custom.flavour_notes)",
    "Roast level (product.metafields.custom.roast_level)",
    "Origin (product.metafields.custom.origin)",
    "Replenishment days (product.metafields.custom.replenishment_days)",
    "Status",
)
"""The Shopify products export's header, in the order the sample store writes it (one variant per product)."""

CUSTOMER_COLUMNS = (
    "Customer ID",
    "First Name",
    "Last Name",
    "Email",
    "Accepts Email Marketing",
    "Default Address Company",
    "Default Address Address1",
    "Default Address Address2",
    "Default Address City",
    "Default Address Province Code",
    "Default Address Country Code",
    "Default Address Zip",
    "Default Address Phone",
    "Phone",
    "Accepts SMS Marketing",
    "Total Spent",
    "Total Orders",
    "Note",
    "Tax Exempt",
    "Tags",
)
"""The Shopify customers export's header."""

ORDER_COLUMNS = (
    "Name",
    "Email",
    "Financial Status",
    "Paid at",
    "Fulfillment Status",
    "Fulfilled at",
    "Accepts Marketing",
    "Currency",
    "Subtotal",
    "Shipping",
    "Taxes",
    "Total",
    "Discount Code",
    "Discount Amount",
    "Shipping Method",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem compare at price",
    "Lineitem sku",
    "Lineitem requires shipping",
    "Lineitem taxable",
    "Lineitem fulfillment status",
    "Billing Name",
    "Billing City",
    "Billing Zip",
    "Billing Province",
    "Billing Country",
    "Billing Phone",
    "Shipping Name",
    "Shipping City",
    "Shipping Zip",
    "Shipping Province",
    "Shipping Country",
    "Notes",
    "Cancelled at",
    "Payment Method",
    "Refunded Amount",
    "Vendor",
    "Id",
    "Tags",
    "Source",
    "Phone",
)
"""The Shopify orders export's header (a row per line item; order-level fields on an order's first row)."""

CRM_COLUMNS = (
    "Record ID",
    "First Name",
    "Last Name",
    "Email",
    "Phone Number",
    "Date of Birth",
    "Loyalty Tier",
    "Marketing contact status",
    "Email Marketing Consent",
    "Ads Personalization Consent",
    "In-App Messaging Consent",
    "Time Zone",
    "City",
    "State/Region",
    "Country/Region",
    "Postal Code",
    "Create Date",
    "Last Modified Date",
)
"""The HubSpot contacts export's header (the default :class:`sources.crm.CrmMapping` names these columns)."""

PRODUCT_REQUIRED = ["Handle", "Title", "Type", "Variant SKU", "Variant Price"]
CUSTOMER_REQUIRED = ["Customer ID", "First Name", "Last Name", "Email", "Accepts Email Marketing", "Phone"]
ORDER_REQUIRED = [
    "Name", "Email", "Financial Status", "Created at", "Currency", "Total",
    "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku",
]  # fmt: skip
"""Columns without which a Shopify export cannot be read at all (the file is refused, naming them)."""
