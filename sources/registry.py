"""Which reader reads a source: chosen once, from the role and the scheme of the source's URL.

A plain path (or ``file://``) is an export file or folder; ``shopify://SHOP.myshopify.com``, ``woocommerce://HOST``
and ``hubspot://`` are the platforms' APIs. A new platform is one reader module (following ``sources.base.Reader``)
plus one line in :data:`READERS`.
"""

from __future__ import annotations

import re
from importlib import import_module
from typing import Any

from sources.base import Reader, SourceConfig, SourceRefused

__all__ = ["READERS", "reader_for", "scheme_of"]

READERS: dict[tuple[str, str], str] = {
    ("store", "file"): "sources.exports:ShopifyExport",
    ("store", "shopify"): "sources.shopify_api:ShopifyApi",
    ("store", "woocommerce"): "sources.woocommerce:WooCommerceApi",
    ("crm", "file"): "sources.exports:HubSpotExport",
    ("crm", "hubspot"): "sources.hubspot_api:HubSpotApi",
    ("analytics", "file"): "sources.analytics:Ga4File",
}
"""(role, URL scheme) → ``module:Class`` of the reader (imported when chosen: an unused platform costs nothing)."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(url: str) -> str:
    """``file`` for a plain path or a ``file://`` URL, else the URL's scheme in lower case."""
    match = _SCHEME.match(url.strip())
    if match is None or len(match.group(1)) == 1:  # C://… is a Windows path, not a scheme
        return "file"
    return match.group(1).lower()


def reader_for(config: SourceConfig, **options: Any) -> Reader:
    """The reader for ``config``; :class:`SourceRefused` naming the setting and the schemes it takes otherwise."""
    scheme = scheme_of(config.url)
    target = READERS.get((config.role, scheme))
    if target is None:
        schemes = sorted(s for role, s in READERS if role == config.role)
        takes = ", ".join("a path" if s == "file" else f"{s}://…" for s in schemes)
        raise SourceRefused(
            f"{config.setting}={config.url!r}: no {config.role} source reads {scheme}:// — it takes {takes}"
        )
    module, name = target.split(":")
    reader: Reader = getattr(import_module(module), name)(config, **options)
    return reader
