"""The protocol every source reader follows: a reader turns one configured source into checked frames in standard
columns plus their accounting; it never writes. ``models.sync`` does every write.

A source has a *role* (``store``: products, customers, orders; ``crm``: contacts; ``analytics``: events) and a
*platform* (Shopify export files, the Shopify Admin API, WooCommerce, a HubSpot CSV, the HubSpot API, GA4 export
files). The role fixes the frames and their columns; the platform is one reader class, found in
``sources.registry`` from the source's URL.

Standard columns are the ones the file readers have always produced: an API reader puts each record it fetched in the
export's own columns (:func:`sources.validate.raw_frame`) and runs the file reader's ``check_*`` function, so one bad
record is quarantined for the same reason whichever way it came in, and the bad-input rules live in one place.

Incremental reading: ``ReadContext.watermarks`` holds, per resource (``products``, ``customers``, ``orders``,
``contacts``, ``events``), the watermark the last successful read of this source reached (empty on a first or a
``--full`` run). A reader asks the platform only for what changed since (inclusive: reading a record twice changes
nothing) and returns in ``SourceRead.watermarks`` how far it got. An API that fails part-way returns what it read up
to the last complete page, the watermarks that page reached, and ``error`` saying what failed: the sync writes that
much, keeps the watermark, and the run shows the source as failed; the next run resumes there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Protocol
from urllib.parse import unquote, urlsplit

import pandas as pd

from models.errors import InputError
from sources.validate import Intake

ROLES = ("store", "crm", "analytics")

FRAMES = {
    "store": ("products", "customers", "orders", "lines"),
    "crm": ("contacts",),
    "analytics": ("events",),
}
"""The frames each role's read holds (their columns: what ``sources.shopify.check_*``, ``sources.crm.check_contacts``
and ``sources.analytics.read_events`` return)."""

INTAKES = {
    "store": ("products", "customers", "orders"),
    "crm": ("crm",),
    "analytics": ("analytics",),
}
"""The ``Intake`` names (reconciliation rows of ``SourceCount``) each role's read holds; the names stay as they were
when every source was a file, so ``omnicast sync --json`` keeps its ``sources`` list."""


class SourceRefused(InputError):
    """A source refused as a whole (credentials rejected, shop or host unknown, an answer that breaks the API's
    contract, retries exhausted): one line naming the source's setting, what happened and how to fix it. The CLI
    prints it as ``error: ...`` and exits 2."""


@dataclass(frozen=True)
class SourceConfig:
    """How one source is configured: its role, its URL (a plain path is a file source), its credential (a token;
    WooCommerce: ``ck_...:cs_...``), and an optional API base URL that stands in for the platform's own host (a
    local server in tests and demos). ``setting`` is the settings name to quote in errors, e.g.
    ``OMNICAST_STORE_URL``."""

    role: str
    url: str
    setting: str
    token: str | None = None
    api_base: str | None = None


@dataclass
class ReadContext:
    """What a reader needs to know of the world: the SKUs the store sells (stored + read in this run, for order lines
    and events), the country for phone numbers written without one, the sync's clock, the stored watermarks of this
    source, and a progress callback that takes count-only lines (never PII)."""

    known_skus: set[str]
    default_country: str
    now: datetime
    watermarks: dict[str, str] = field(default_factory=dict)
    say: Callable[[str], None] = lambda _line: None


@dataclass
class SourceRead:
    """One source's read: checked frames, their intakes, and how far the read got.

    ``frames``: see :data:`FRAMES` for the role. ``intakes``: see :data:`INTAKES`. ``watermarks``: resource →
    watermark reached (ISO-8601 text, compared as the platform compares them; empty for files, which are read whole).
    ``incremental``: the read asked only for changes since stored watermarks (a file read, or a first API load, is
    complete: ``False``). ``deleted``: external ids (Customer ID / Record ID) the platform says no longer exist.
    ``present``: the external ids of every person record (customer, contact) the platform holds now, when this read
    listed them all (``None`` otherwise): a stored record of this source missing from it was deleted on the platform.
    ``error``: set when the read stopped part-way (what it read before is in the frames; see the module docstring).
    """

    role: str
    platform: str
    location: str
    frames: dict[str, pd.DataFrame]
    intakes: dict[str, Intake]
    watermarks: dict[str, str] = field(default_factory=dict)
    incremental: bool = False
    deleted: list[str] = field(default_factory=list)
    present: set[str] | None = None
    error: str | None = None


class Reader(Protocol):
    """A configured source. ``check`` is cheap (a file exists, a URL and its credentials are well formed) and raises
    ``sources.validate.SourceFileError`` (files) or ``sources.base.SourceRefused`` naming the setting and how to fix
    it; ``read`` fetches and checks everything."""

    role: ClassVar[str]
    platform: ClassVar[str]

    @property
    def location(self) -> str:
        """Where the data comes from, safe to print and log (a path, or a URL without credentials)."""
        ...

    def check(self) -> None: ...

    def read(self, context: ReadContext) -> SourceRead: ...


def path_of(url: str) -> Path:
    """The path a file source's URL names: a plain path, or ``file://`` (``file:///srv/exports``)."""
    if url.startswith("file:"):
        return Path(unquote(urlsplit(url).path))
    return Path(url).expanduser()
