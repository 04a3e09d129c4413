"""Ad audiences as hashed CSV files: Meta custom audiences, Google Customer Match and TikTok custom audiences.

Identifiers are normalized the way each platform normalizes them, then SHA-256 hashed (lowercase hex), so the
platform's own hash of the same person matches ours. No plaintext identifier is ever written (DESIGN invariant
5). The normalizers are pure functions, one per field, so they can be property-tested.

File per batch: ``<platform>-<audience>-<YYYYMMDD>-<n>.csv`` (additions) or ``<platform>-<audience>-remove-…``
(removals, ``OutboundMessage.retract``: the rows to upload in the platform's "remove customers" flow, built from the
hashes the addition uploaded, ``context["identifiers"]``), at most 10,000 rows (the platforms' per-request limit),
published atomically under the first free ``n`` with mode 0600: a rerun the same day adds files, it never
overwrites. Google wants Country and Zip unhashed (its template); they are the only plaintext cells written.
Before a CSV is published, ``.ledger/<same name>.keys`` lists the ledger hashes of its rows (no identifier, hashed or
not): after a crash, the channel can tell which messages a published file already holds, so none is added twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import ClassVar, Literal

import phonenumbers

from channels.base import Channel, DeliveryResult, PermanentChannelError, RetryableChannelError
from channels.outbox import ensure_writable_dir, file_folder, ledger_hash, remove_stale_temp_files, write_new_file
from channels.spec import AdapterOptions, ChannelResources, ChannelTarget
from models.message import LedgerKey, OutboundMessage

Platform = Literal["meta", "google", "tiktok"]

META_COLUMNS = ("email", "phone", "fn", "ln", "ct", "st", "zip", "country", "doby", "dobm", "dobd")
GOOGLE_COLUMNS = ("Email", "Phone", "First Name", "Last Name", "Country", "Zip")
TIKTOK_COLUMNS = ("Email_SHA256", "Phone_SHA256")
GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
LEDGER_DIR = ".ledger"


# normalizers ---------------------------------------------------------------------------------------------------


def sha256_hex(value: str) -> str:
    """SHA-256 of the UTF-8 bytes, lowercase hex: the hash both platforms expect."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _lower(value: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).lower())


def normalize_email(value: str | None) -> str | None:
    """Trimmed and lowercased; ``None`` unless it looks like ``local@domain``."""
    if not value:
        return None
    email = _lower("".join(value.split()))
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        return None
    return email


def normalize_email_google(value: str | None) -> str | None:
    """``normalize_email`` plus Google's rule for gmail.com/googlemail.com: no dots, no ``+tag`` in the local part."""
    email = normalize_email(value)
    if email is None:
        return None
    local, _, domain = email.rpartition("@")
    if domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            return None
    return f"{local}@{domain}"


def normalize_phone(value: str | None, region: str | None = None) -> str | None:
    """E.164 with the ``+`` (``+15035550100``); ``region`` (ISO alpha-2) reads national numbers.

    ``None`` when the number is unusable.
    """
    if not value or not value.strip():
        return None
    try:
        number = phonenumbers.parse(value, (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # Some malformed numbers lose a digit every time they are read (``+49000000``): unusable, not stable.
    reread = phonenumbers.format_number(phonenumbers.parse(e164, None), phonenumbers.PhoneNumberFormat.E164)
    return e164 if reread == e164 else None


def normalize_phone_meta(value: str | None, region: str | None = None) -> str | None:
    """Meta's phone: digits only, country code first, no ``+`` and no leading zeros (``15035550100``)."""
    e164 = normalize_phone(value, region)
    return e164.lstrip("+") if e164 else None


def _letters(value: str, *, keep_spaces: bool) -> str:
    kept = (c if unicodedata.category(c)[0] in "LMN" else " " for c in _lower(value))
    words = "".join(kept).split()
    return " ".join(words) if keep_spaces else "".join(words)


def normalize_name_meta(value: str | None) -> str | None:
    """Meta's FN/LN: lowercase, no punctuation or spaces, letters of any script kept (``"Zoë-Ann"`` → ``zoëann``)."""
    name = _letters(value or "", keep_spaces=False)
    return name or None


def normalize_name_google(value: str | None) -> str | None:
    """Google's first/last name: lowercase, no punctuation, single inner spaces (``" Mary  Ann "`` → ``mary ann``)."""
    name = _letters(value or "", keep_spaces=True)
    return name or None


def normalize_city(value: str | None) -> str | None:
    """Meta's CT: lowercase, letters only, no spaces (``"New York"`` → ``newyork``)."""
    return normalize_name_meta(value)


def normalize_state(value: str | None) -> str | None:
    """Meta's ST: lowercase, no punctuation or spaces (a 2-letter code when the source has one)."""
    return normalize_name_meta(value)


US_STATES: dict[str, str] = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca", "colorado": "co",
    "connecticut": "ct", "delaware": "de", "districtofcolumbia": "dc", "florida": "fl", "georgia": "ga",
    "hawaii": "hi", "idaho": "id", "illinois": "il", "indiana": "in", "iowa": "ia", "kansas": "ks", "kentucky": "ky",
    "louisiana": "la", "maine": "me", "maryland": "md", "massachusetts": "ma", "michigan": "mi", "minnesota": "mn",
    "mississippi": "ms", "missouri": "mo", "montana": "mt", "nebraska": "ne", "nevada": "nv", "newhampshire": "nh",
    "newjersey": "nj", "newmexico": "nm", "newyork": "ny", "northcarolina": "nc", "northdakota": "nd", "ohio": "oh",
    "oklahoma": "ok", "oregon": "or", "pennsylvania": "pa", "rhodeisland": "ri", "southcarolina": "sc",
    "southdakota": "sd", "tennessee": "tn", "texas": "tx", "utah": "ut", "vermont": "vt", "virginia": "va",
    "washington": "wa", "westvirginia": "wv", "wisconsin": "wi", "wyoming": "wy", "puertorico": "pr", "guam": "gu",
    "americansamoa": "as", "northernmarianaislands": "mp", "usvirginislands": "vi", "virginislands": "vi",
}  # fmt: skip
"""US state and territory names (lowercase, letters only) → their 2-letter USPS/ANSI codes."""


def normalize_state_meta(value: str | None, country: str | None = None) -> str | None:
    """Meta's ST: a US state as its 2-letter code, lowercase (``"California"`` and ``"CA"`` → ``ca``); elsewhere
    lowercase letters without punctuation or spaces. A state is read as American when the country is US or unknown."""
    state = normalize_state(value)
    if state is None:
        return None
    if (country or "US").strip().upper() == "US":
        return US_STATES.get(state, state)
    return state


def normalize_zip(value: str | None, country: str | None = None) -> str | None:
    """Meta's ZIP: lowercase, no spaces or dashes; US codes keep their first 5 digits (``97201-1234`` → ``97201``)."""
    if not value:
        return None
    code = "".join(c for c in _lower(value) if c.isalnum())
    if (country or "").upper() == "US" and code[:5].isdigit():
        code = code[:5]
    return code or None


def normalize_country(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2, lowercase (``"US"`` → ``us``); ``None`` for anything else."""
    code = (value or "").strip().lower()
    return code if re.fullmatch(r"[a-z]{2}", code) else None


def birth_parts(birthday: date | None) -> tuple[str | None, str | None, str | None]:
    """Meta's DOBY, DOBM, DOBD: ``YYYY``, ``MM``, ``DD``."""
    if birthday is None:
        return None, None, None
    return f"{birthday.year:04d}", f"{birthday.month:02d}", f"{birthday.day:02d}"


def hashed(value: str | None) -> str:
    """The CSV cell: the hash of a normalized value, or empty when there is none."""
    return sha256_hex(value) if value else ""


# rows ----------------------------------------------------------------------------------------------------------


def meta_row(message: OutboundMessage) -> list[str]:
    """One Meta row, every cell normalized then hashed, in ``META_COLUMNS`` order."""
    r = message.recipient
    doby, dobm, dobd = birth_parts(r.birthday)
    values = [
        normalize_email(r.email),
        normalize_phone_meta(r.phone, r.country),
        normalize_name_meta(r.first_name),
        normalize_name_meta(r.last_name),
        normalize_city(r.city),
        normalize_state_meta(r.region, r.country),
        normalize_zip(r.zip, r.country),
        normalize_country(r.country),
        doby,
        dobm,
        dobd,
    ]
    return [hashed(value) for value in values]


def google_zip(value: str | None, country: str | None) -> str | None:
    """Customer Match's Zip, unhashed as its template asks: US codes as their 5 digits, others as their ASCII
    letters, digits, spaces and dashes (upper case, at most 12), anything else in the cell dropped."""
    if (country or "").upper() == "US":
        digits = "".join(c for c in (value or "") if c in "0123456789")
        return digits[:5] if len(digits) >= 5 else None
    code = " ".join(re.sub(r"[^0-9A-Za-z -]", "", value or "").split()).upper()
    return code[:12].strip() or None


def google_row(message: OutboundMessage) -> list[str]:
    """One Customer Match row in ``GOOGLE_COLUMNS`` order: email, phone and names normalized then hashed, Country
    (ISO alpha-2, upper case) and Zip in plain text, as Google's template requires for address matching."""
    r = message.recipient
    values = [
        normalize_email_google(r.email),
        normalize_phone(r.phone, r.country),
        normalize_name_google(r.first_name),
        normalize_name_google(r.last_name),
    ]
    country = normalize_country(r.country)
    return [hashed(value) for value in values] + [(country or "").upper(), google_zip(r.zip, r.country) or ""]


def normalize_email_tiktok(value: str | None) -> str | None:
    """TikTok's email: lowercase, and no ``+tag`` before the ``@`` (any domain)."""
    email = normalize_email(value)
    if email is None:
        return None
    local, _, domain = email.rpartition("@")
    local = local.split("+", 1)[0]
    return f"{local}@{domain}" if local else None


def tiktok_row(message: OutboundMessage) -> list[str]:
    """One TikTok customer-file row in ``TIKTOK_COLUMNS`` order: email and phone (country code first, digits only,
    as Meta's) normalized then hashed."""
    r = message.recipient
    return [hashed(normalize_email_tiktok(r.email)), hashed(normalize_phone_meta(r.phone, r.country))]


_PLATFORMS: dict[str, tuple[tuple[str, ...], Callable[[OutboundMessage], list[str]]]] = {
    "meta": (META_COLUMNS, meta_row),
    "google": (GOOGLE_COLUMNS, google_row),
    "tiktok": (TIKTOK_COLUMNS, tiktok_row),
}


def identifiers(platform: str, message: OutboundMessage) -> dict[str, str]:
    """The cells an addition uploads for ``platform`` (column → value, empty cells left out): what the audience
    member table keeps so that the removal can upload the same hashes later, whatever became of the profile."""
    columns, row = _PLATFORMS[platform]
    return {column: value for column, value in zip(columns, row(message), strict=True) if value}


class AudienceFileChannel(Channel):
    """Hashed audience files for one ad platform (``meta``, ``google`` or ``tiktok``), one CSV per audience, kind
    (additions or removals) and batch. Google's Country and Zip are the only plaintext cells (its template)."""

    consent_channel = "ads"
    batch_size = 10_000
    knows_deliveries = True

    def __init__(self, platform: Platform, folder: Path | str, *, clock: Callable[[], datetime] | None = None) -> None:
        if platform not in _PLATFORMS:
            raise ValueError(f"platform must be one of {', '.join(_PLATFORMS)}, not {platform!r}")
        self.name = platform  # type: ignore[misc]
        self.platform = platform
        self.folder = ensure_writable_dir(Path(folder))
        self.index = ensure_writable_dir(self.folder / LEDGER_DIR)
        for folder in (self.folder, self.index):
            remove_stale_temp_files(folder)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.columns, self._row = _PLATFORMS[platform]

    def can_reach(self, message: OutboundMessage) -> str | None:
        """An audience member needs an email or a phone number to be matched."""
        return None if message.recipient.email or message.recipient.phone else "no_address"

    def send(self, message: OutboundMessage) -> DeliveryResult:
        """One message is a one-row batch."""
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
        """Write one file per audience in the batch; every row in a file gets the file name as provider id."""
        results: dict[int, DeliveryResult] = {}
        for audience, members in _by_audience(messages):
            rows: list[tuple[int, LedgerKey, list[str]]] = []
            for index, message in members:
                row = self.row(message)
                if row[0] or row[1]:
                    rows.append((index, message.ledger_key, row))
                else:
                    results[index] = DeliveryResult.failed(PermanentChannelError("no usable email or phone"))
            results.update(self._write(audience, rows))
        return [results[index] for index in range(len(messages))]

    def row(self, message: OutboundMessage) -> list[str]:
        """The CSV row: for a removal, the cells its addition uploaded (``context["identifiers"]``) when known."""
        stored = message.context.get("identifiers") if message.retract else None
        if isinstance(stored, dict) and stored:
            return [str(stored.get(column, "")) for column in self.columns]
        return self._row(message)

    def already_delivered(self, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, str]:
        """Messages whose hash is listed in a ``.keys`` file whose CSV was published, with that CSV's name."""
        wanted = {ledger_hash(message.ledger_key): message.ledger_key for message in messages}
        found: dict[LedgerKey, str] = {}
        for keys_file in sorted(self.index.glob(f"{self.platform}-*.keys")):
            csv_name = keys_file.name.removesuffix(".keys") + ".csv"
            if not (self.folder / csv_name).is_file():
                continue  # the run died between the two writes: nothing of that batch was published
            for digest in keys_file.read_text(encoding="ascii").split():
                if digest in wanted:
                    found[wanted[digest]] = csv_name
        return found

    def _write(self, audience: str, rows: list[tuple[int, LedgerKey, list[str]]]) -> dict[int, DeliveryResult]:
        if not rows:
            return {}
        prefix = f"{self.platform}-{audience}-{self.clock():%Y%m%d}"
        data = _csv([self.columns, *(row for _, _, row in rows)])
        keys = "".join(ledger_hash(key) + "\n" for _, key, _ in rows).encode("ascii")
        try:
            path = self._publish(prefix, keys, data)
        except OSError as exc:
            error = RetryableChannelError(f"could not write {prefix}-*.csv in {self.folder}: {exc}")
            return {index: DeliveryResult.failed(error) for index, _, _ in rows}
        return {index: DeliveryResult.sent(path.name) for index, _, _ in rows}

    def _publish(self, prefix: str, keys: bytes, data: bytes) -> Path:
        """Reserve the first free number with the keys file, then publish the CSV under it."""
        for _ in range(1_000):
            start = self._next_number(prefix)
            keys_path = write_new_file(self.index, (f"{prefix}-{n}.keys" for n in itertools.count(start)), keys)
            csv_name = keys_path.name.removesuffix(".keys") + ".csv"
            try:
                return write_new_file(self.folder, [csv_name], data)
            except FileExistsError:  # a CSV from before the keys files took that number: try the next one
                keys_path.unlink(missing_ok=True)
        raise FileExistsError(f"no free file name for {prefix}-*.csv in {self.folder}")

    def _next_number(self, prefix: str) -> int:
        taken = [*self.folder.glob(f"{prefix}-*.csv"), *self.index.glob(f"{prefix}-*.keys")]
        numbers = [int(m.group(1)) for p in taken if (m := re.search(r"-(\d+)\.(?:csv|keys)$", p.name))]
        return max(numbers, default=0) + 1


def audience_slug(message: OutboundMessage) -> str:
    """The audience's file-name part: ``message.audience`` (else the campaign), lowercase ``[a-z0-9_-]``."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", (message.audience or message.campaign or "audience").lower()).strip("-")
    return slug or "audience"


def _by_audience(messages: Sequence[OutboundMessage]) -> list[tuple[str, list[tuple[int, OutboundMessage]]]]:
    """Messages by file-name part: the audience, with ``-remove`` for removals (they go in files of their own)."""
    groups: dict[str, list[tuple[int, OutboundMessage]]] = {}
    for index, message in enumerate(messages):
        part = audience_slug(message) + ("-remove" if message.retract else "")
        groups.setdefault(part, []).append((index, message))
    return list(groups.items())


def _csv(rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


class _AudienceFiles:
    """The adapter half of an audience file sink: ``file:///folder`` with no options."""

    platform: ClassVar[Platform]
    schemes: ClassVar[tuple[str, ...]] = ("file",)

    class Options(AdapterOptions):
        """No options."""

    @classmethod
    def open_channel(cls, target: ChannelTarget, resources: ChannelResources) -> Channel:
        return AudienceFileChannel(cls.platform, file_folder(target))


class MetaAudienceFiles(_AudienceFiles):
    """``OMNICAST_META_AUDIENCE_URL=file:///folder``: Meta customer-list files."""

    platform = "meta"


class GoogleAudienceFiles(_AudienceFiles):
    """``OMNICAST_GOOGLE_AUDIENCE_URL=file:///folder``: Google Customer Match files."""

    platform = "google"


class TiktokAudienceFiles(_AudienceFiles):
    """``OMNICAST_TIKTOK_AUDIENCE_URL=file:///folder``: TikTok customer files (hashed email and phone)."""

    platform = "tiktok"
