"""The in-app feed: content cards as JSON lines, one file per UTC day (``<dir>/<YYYYMMDD>.jsonl``).

Each message renders ``templates/inapp/<template>.json.j2`` into a card, the channel adds the identity fields
(``id`` from the ledger key, campaign, variant, customer, expiry), and the card must validate against
``templates/inapp/content_card.schema.json`` before it is appended. A retried message has the same card id, and a
card id already in the day's file is not appended again; after a crash, ``already_delivered`` finds the cards a
run wrote before it died in any day's file, so none is appended twice. The app (or a webhook forwarder, later)
reads the feed. A retraction (``OutboundMessage.retract``: the cart was bought, the product ordered again) appends
``{"id", "event": "card.retracted", "retracts": <card id>, "customer_id", "retracted_at"}``: the app drops that card.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from jsonschema import Draft202012Validator
from pydantic import Field

from channels.base import (
    Channel,
    ChannelConfigError,
    ChannelError,
    DeliveryResult,
    PermanentChannelError,
    RetryableChannelError,
)
from channels.outbox import ensure_writable_dir, file_folder, ledger_hash
from channels.render import TEMPLATES_DIR, CardRenderer, TemplateError, TemplateRenderError
from channels.spec import AdapterOptions, ChannelResources, ChannelTarget
from models.message import LedgerKey, OutboundMessage

MAX_TTL = timedelta(days=30)
DEFAULT_TTL = timedelta(days=14)
SCHEMA_PATH = TEMPLATES_DIR / "inapp" / "content_card.schema.json"


def build_card(renderer: CardRenderer, message: OutboundMessage, now: datetime, ttl: timedelta) -> dict[str, Any]:
    """The validated card for ``message``, with its identity fields (``id`` = the ledger hash, campaign, variant,
    customer, expiry): what the feed appends and the webhook posts. ``PermanentChannelError`` for an invalid card,
    ``ChannelConfigError`` for a missing or broken template."""
    if not message.template:
        raise PermanentChannelError("an in-app message needs a template name")
    try:
        card = renderer.render(message.template, message.context)
    except TemplateRenderError as exc:
        raise PermanentChannelError(str(exc)) from exc
    except TemplateError as exc:
        raise ChannelConfigError(str(exc)) from exc
    card.update(
        id=ledger_hash(message.ledger_key),
        campaign=message.campaign,
        variant=message.variant,
        customer_id=message.customer_id,
        user_id=message.recipient.user_id,
        created_at=now.isoformat(timespec="seconds"),
        expires_at=(now + ttl).isoformat(timespec="seconds"),
    )
    card.setdefault("dismissible", True)
    card.setdefault("pinned", False)
    card.setdefault("extras", {"campaign": message.campaign, "variant": message.variant or "",
                               "template": message.template})  # fmt: skip
    errors = card_errors(card, now=now)  # names rules and keys, never a value
    if errors:
        raise PermanentChannelError(f"template {message.template!r} made an invalid card: {'; '.join(errors)}")
    return card


_CARD_ID = re.compile(r"^[0-9a-f]{32}$")


def retracted_card_id(message: OutboundMessage) -> str:
    """The id of the card a retraction withdraws: ``context["card_id"]``, or the ledger hash of the message with
    occurrence key ``context["retracts"]`` (same customer, same channel)."""
    card_id = message.context.get("card_id")
    if card_id is not None:
        if not isinstance(card_id, str) or not _CARD_ID.fullmatch(card_id):
            raise PermanentChannelError("a retraction's card_id must be a card id (32 lowercase hex digits)")
        return card_id
    retracts = message.context.get("retracts")
    if isinstance(retracts, str) and retracts:
        return ledger_hash((retracts, message.customer_id, message.channel))
    raise PermanentChannelError(
        "a retraction must name the card it withdraws: context 'retracts' (the occurrence key of the message that "
        "delivered it) or 'card_id'"
    )


def retraction_event(message: OutboundMessage, now: datetime) -> dict[str, Any]:
    """The feed line that takes a card back: its own id (the retraction's ledger hash, so a rerun finds it), the
    card it withdraws, whose it was and when."""
    return {"id": ledger_hash(message.ledger_key), "event": "card.retracted", "retracts": retracted_card_id(message),
            "customer_id": message.customer_id, "retracted_at": now.isoformat(timespec="seconds")}  # fmt: skip


@cache
def card_validator(schema_path: Path = SCHEMA_PATH) -> Draft202012Validator:
    """The content-card JSON Schema validator (loaded once)."""
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def card_errors(card: dict[str, Any], *, now: datetime) -> list[str]:
    """Why ``card`` is not a valid content card (empty when it is): the schema, then the 30-day expiry rule."""
    errors = [  # the rule that failed, never a quoted value: values may be customer data (keys never are)
        f"{'/'.join(map(str, error.absolute_path)) or '(card)'}: {_explain(error)}"
        for error in card_validator().iter_errors(card)
    ]
    expires = card.get("expires_at")
    if isinstance(expires, str):
        try:
            expires_at = datetime.fromisoformat(expires)
        except ValueError:
            errors.append("expires_at: not an ISO 8601 date-time")
        else:
            if expires_at.tzinfo is None:
                errors.append("expires_at: needs a UTC offset")
            elif not now < expires_at <= now + MAX_TTL:
                errors.append("expires_at: must be in the future and at most 30 days away")
    return errors


_KEY_RULES = frozenset({"required", "additionalProperties"})  # their messages name keys, which templates choose


def _explain(error: Any) -> str:
    """jsonschema's message for key rules; otherwise the rule and its own value (a type, a pattern, a limit)."""
    if error.validator in _KEY_RULES:
        return str(error.message)
    value = error.validator_value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"fails {error.validator} {text if len(text) <= 60 else text[:57] + '...'}"


class InAppFeedChannel(Channel):
    """Appends validated content cards to a daily JSONL feed; idempotent per ledger key."""

    name = "inapp"
    consent_channel = "inapp"
    batch_size = 500
    knows_deliveries = True
    schemes: ClassVar[tuple[str, ...]] = ("file",)

    class Options(AdapterOptions):
        """``file:///folder?ttl_days=14``: how long a card stays in the app."""

        ttl_days: float = Field(DEFAULT_TTL.total_seconds() / 86400, gt=0, le=MAX_TTL.days)

    @classmethod
    def open_channel(cls, target: ChannelTarget, resources: ChannelResources) -> Channel:
        ttl = timedelta(days=target.options.ttl_days)
        return cls(file_folder(target), CardRenderer(resources.templates_dir), ttl=ttl)

    def __init__(
        self,
        folder: Path | str,
        renderer: CardRenderer,
        *,
        ttl: timedelta = DEFAULT_TTL,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not timedelta(0) < ttl <= MAX_TTL:
            raise ChannelConfigError(f"in-app card ttl must be between 0 and 30 days, not {ttl}")
        self.folder = ensure_writable_dir(Path(folder))
        self.renderer = renderer
        self.ttl = ttl
        self.clock = clock or (lambda: datetime.now(UTC))
        self._feeds: dict[Path, _FeedFile] = {}

    def send(self, message: OutboundMessage) -> DeliveryResult:
        """One message is a one-card batch."""
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
        """Build every card, then append the valid ones to today's feed in one locked write."""
        now = self.clock()
        feed = self._feed(now)
        built: list[dict[str, Any] | DeliveryResult] = []
        for message in messages:
            try:
                built.append(retraction_event(message, now) if message.retract else self.card(message, now))
            except ChannelConfigError:
                raise
            except ChannelError as exc:
                built.append(DeliveryResult.failed(exc))
        try:
            feed.append([card for card in built if isinstance(card, dict)])
        except OSError as exc:
            error = RetryableChannelError(f"could not append to {feed.path}: {exc.strerror}")
            return [item if isinstance(item, DeliveryResult) else DeliveryResult.failed(error) for item in built]
        return [
            item if isinstance(item, DeliveryResult) else DeliveryResult.sent(f"{feed.path.name}#{item['id']}")
            for item in built
        ]

    def already_delivered(self, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, str]:
        """The messages whose card id is in a feed file (newest day first; a torn last line holds no card)."""
        wanted = {ledger_hash(message.ledger_key): message.ledger_key for message in messages}
        found: dict[LedgerKey, str] = {}
        for path in sorted(self.folder.glob("*.jsonl"), reverse=True):
            for card_id in _FeedFile(path).card_ids():
                key = wanted.pop(card_id, None)
                if key is not None:
                    found[key] = f"{path.name}#{card_id}"
            if not wanted:
                break
        return found

    def card(self, message: OutboundMessage, now: datetime) -> dict[str, Any]:
        """The validated card for ``message``; ``PermanentChannelError`` when the template yields an invalid one."""
        return build_card(self.renderer, message, now, self.ttl)

    def _feed(self, now: datetime) -> _FeedFile:
        path = self.folder / f"{now.astimezone(UTC):%Y%m%d}.jsonl"
        feed = self._feeds.get(path)
        if feed is None:
            feed = _FeedFile(path)
            self._feeds = {path: feed}  # only today's ids stay in memory
        return feed


class _FeedFile:
    """One day's feed file and the card ids already in it.

    Under an exclusive ``flock`` it reads only the lines other writers appended since its last look, then
    appends the new cards in one ``write``: two processes never interleave lines or duplicate a card id. A torn
    last line (a crash mid-write) is closed with a newline first, so it can't swallow the next card.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids: set[str] = set()
        self.offset = 0

    def append(self, cards: Sequence[dict[str, Any]]) -> None:
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                torn = self._catch_up(handle)
                lines = [b"\n"] if torn else []
                for card in cards:
                    if card["id"] not in self.ids:
                        self.ids.add(card["id"])
                        lines.append(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
                if lines:
                    handle.write(b"".join(lines))
                    handle.flush()
                    os.fsync(handle.fileno())
                self.offset = handle.tell()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def card_ids(self) -> set[str]:
        """Every card id in the file as it is now."""
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            try:
                self._catch_up(handle)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return self.ids

    def _catch_up(self, handle: Any) -> bool:
        """Learn the ids appended since ``offset``; ``True`` when the file ends in a torn line."""
        handle.seek(self.offset)
        torn = False
        for line in handle:
            if not line.endswith(b"\n"):
                torn = True
                break
            self.offset += len(line)
            try:
                self.ids.add(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from an earlier crash: not a card
        handle.seek(0, os.SEEK_END)
        return torn
