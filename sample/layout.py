"""Where each file of a sample store goes (docs/SOURCE_FORMATS.md): paths relative to the store folder, as
manifest.json names them; the file names are the readers' own (``sources/formats.py``)."""

from __future__ import annotations

from sources.formats import ANALYTICS_FILE, CRM_FILE, CUSTOMERS_FILE, ORDERS_FILE, PRODUCTS_FILE, SHOPIFY_FOLDER

PRODUCTS_PATH = f"{SHOPIFY_FOLDER}/{PRODUCTS_FILE}"
CUSTOMERS_PATH = f"{SHOPIFY_FOLDER}/{CUSTOMERS_FILE}"
ORDERS_PATH = f"{SHOPIFY_FOLDER}/{ORDERS_FILE}"
CRM_PATH = CRM_FILE
EVENTS_PATH = ANALYTICS_FILE
MANIFEST_PATH = "manifest.json"
DATA_PATHS = (PRODUCTS_PATH, CUSTOMERS_PATH, ORDERS_PATH, CRM_PATH, EVENTS_PATH)
"""The data files, in the order the generator writes them and manifest.json lists them."""
