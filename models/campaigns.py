"""Campaigns as files a marketer edits: ``campaigns/*.yaml`` (one campaign per file) and ``campaigns/segments.yaml``.

A campaign says who (a segment, or a trigger kind), what (template, products, offer, variants with weights), where
(channels), when (a cron schedule in a time zone, start and end dates) and how it is measured (holdout
share). Every file is validated on load; an error names the file, the line and the field, and how to fix it::

    campaigns/birthday.yaml, line 7, field audience.trigger: unknown trigger 'brithday'; one of: abandoned_cart,
    birthday, churn_risk, replenishment

The shipped files reproduce the five campaigns omnicast always had. ``OMNICAST_CAMPAIGNS_DIR`` points at another
folder (a store's own copy).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.errors import InputError
from models.segments import SEGMENT_FILE, AudienceDef, Segment, like_words, load_segments
from models.yamlfile import YamlFileError, field_name, load_with_lines, validation_problem, where

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "campaigns"
RULES_FILE = "recommendation-rules.yaml"
"""The recommendation rules of a campaigns folder (``models/recommend/rules.py``): not a campaign."""
TRIGGER_KINDS = ("abandoned_cart", "birthday", "churn_risk", "replenishment")
CHANNELS = ("email", "inapp")
HOLDOUT = "holdout"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_TEMPLATE = re.compile(r"^[a-z0-9_]{1,64}$")
_WINDOW = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")
DEFAULT_PRIORITY = {"abandoned_cart": 1, "replenishment": 2, "birthday": 3, "churn_risk": 4}
BROADCAST_PRIORITY = 5


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Audience(_Strict):
    """Who: a segment from segments.yaml, or everyone a trigger found (and due) in the last ``lookback_days``."""

    segment: str | None = None
    trigger: str | None = None
    lookback_days: int = Field(7, ge=0, le=60)

    @field_validator("trigger")
    @classmethod
    def _trigger(cls, value: str | None) -> str | None:
        if value is not None and value not in TRIGGER_KINDS:
            raise ValueError(f"unknown trigger {value!r}; one of: {', '.join(TRIGGER_KINDS)}")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Audience:
        if (self.segment is None) == (self.trigger is None):
            raise ValueError("give exactly one of segment (a name from segments.yaml) or trigger (a trigger kind)")
        return self


class Offer(_Strict):
    """A static code for everyone, or one code per recipient from a pool CSV (column ``code``), each used once."""

    code: str | None = Field(None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    pool: str | None = None
    description: str = Field(..., min_length=1, max_length=120)

    @model_validator(mode="after")
    def _one_of(self) -> Offer:
        if (self.code is None) == (self.pool is None):
            raise ValueError("give exactly one of code (the same code for everyone) or pool (a CSV of codes)")
        return self


class Variant(_Strict):
    """One arm of the campaign's experiment: its share of the contacted customers and what it changes."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,32}$")
    weight: float = Field(1.0, gt=0, le=1000)
    subject: str | None = Field(None, min_length=1, max_length=150)
    template: str | None = None
    offer: Offer | None = None

    @field_validator("name")
    @classmethod
    def _not_holdout(cls, value: str) -> str:
        if value == HOLDOUT:
            raise ValueError("'holdout' is the control group's name; set holdout_percent instead")
        return value


class Schedule(_Strict):
    """When a broadcast goes: a cron expression in a time zone (the daily run sends triggered campaigns)."""

    cron: str
    timezone: str = "UTC"
    active: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from models.schedules import cron_trigger

        try:
            cron_trigger(value, "UTC")
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday): {exc}") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone; e.g. America/Los_Angeles") from exc
        return value


class Topic(_Strict):
    """How the preference centre names the campaign to customers, who may opt out of it alone."""

    label: str = Field(..., min_length=1, max_length=60)
    description: str = Field("", max_length=160)


class CampaignFile(_Strict):
    """One campaign file, as written."""

    name: str
    description: str = ""
    enabled: bool = True
    audience: Audience
    template: str
    channels: list[str] = Field(..., min_length=1)
    products: int = Field(4, ge=0, le=12)
    variants: list[Variant] = Field(default_factory=lambda: [Variant(name="A")], min_length=1)
    holdout_percent: float = Field(10, ge=0, lt=100)
    offer: Offer | None = None
    priority: int | None = Field(None, ge=1, le=9)
    topic: Topic | None = None
    """The preference centre's label and line for it (default: its name, capitalized, and no line)."""
    send_window: str | None = None
    """``HH:MM-HH:MM`` local hours (the customer's zone) its messages may arrive in; outside them they wait."""
    products_like: str | list[str] | None = None
    """Picks only among products whose flavour notes or tags mention one of these words; a segment campaign whose
    segment has ``likes`` inherits its words."""
    schedule: Schedule | None = None
    start: date | None = None
    end: date | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r}: use lower-case letters, digits and hyphens, e.g. spring-sale")
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        if not _TEMPLATE.match(value):
            raise ValueError(f"{value!r}: a template name is lower-case letters, digits and _, e.g. weekly_picks")
        return value

    @field_validator("send_window")
    @classmethod
    def _send_window(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().replace(" ", "")
        if not _WINDOW.match(value):
            raise ValueError(
                f"{value!r} is not HH:MM-HH:MM; give the local hours messages may arrive, e.g. 09:00-20:00"
            )
        start, end = value.split("-")
        if start == end:
            raise ValueError(f"{value!r} starts where it ends; give the hours messages may arrive, e.g. 09:00-20:00")
        return value

    @field_validator("products_like")
    @classmethod
    def _products_like(cls, value: str | list[str] | None) -> str | list[str] | None:
        words = [value] if isinstance(value, str) else (value or [])
        if value is not None and (not words or any(not 2 <= len(word.strip()) <= 40 for word in words)):
            raise ValueError("give a word (2 to 40 letters) or a list of them, e.g. [apricot, lemon, berry]")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        unknown = [channel for channel in value if channel not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown channel {unknown[0]!r}; a campaign sends on: {', '.join(CHANNELS)}")
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CampaignFile:
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("two variants share a name")
        if self.start and self.end and self.end < self.start:
            raise ValueError("end is before start")
        if self.audience.trigger is None and self.schedule is None:
            raise ValueError("a segment campaign (a broadcast) needs a schedule: cron and timezone")
        return self


@dataclass(frozen=True)
class Campaign:
    """A validated campaign, ready to plan; ``file`` is where it came from (for messages)."""

    spec: CampaignFile
    file: Path
    segment_likes: tuple[str, ...] = ()
    """The words its segment's ``likes`` conditions name (set by the loader, which knows the segments)."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def template(self) -> str:
        return self.spec.template

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.spec.channels)

    @property
    def trigger_kind(self) -> str | None:
        return self.spec.audience.trigger

    @property
    def segment(self) -> str | None:
        return self.spec.audience.segment

    @property
    def products(self) -> int:
        return self.spec.products

    @property
    def holdout_percent(self) -> float:
        return self.spec.holdout_percent

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(variant.name for variant in self.spec.variants)

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(variant.weight for variant in self.spec.variants)

    @property
    def lookback_days(self) -> int:
        return self.spec.audience.lookback_days

    @property
    def kind(self) -> str:
        return "triggered" if self.trigger_kind else "broadcast"

    @property
    def priority(self) -> int:
        """1 = most important; a trigger's default (abandoned cart first), broadcasts last."""
        if self.spec.priority is not None:
            return self.spec.priority
        return DEFAULT_PRIORITY.get(self.trigger_kind or "", BROADCAST_PRIORITY)

    @property
    def likes(self) -> tuple[str, ...]:
        """Words a pick's flavour notes or tags must mention: ``products_like``, else its segment's; () = any."""
        if self.spec.products_like is not None:
            return tuple(dict.fromkeys(like_words(self.spec.products_like)))
        return self.segment_likes

    @property
    def topic(self) -> Topic:
        """What the preference centre shows customers for this campaign."""
        return self.spec.topic or Topic(label=topic_label(self.name))

    @property
    def send_window(self) -> str | None:
        return self.spec.send_window

    def variant(self, name: str) -> Variant | None:
        return next((variant for variant in self.spec.variants if variant.name == name), None)

    def runs_on(self, day: date) -> bool:
        """Enabled and within its start and end dates."""
        spec = self.spec
        return spec.enabled and (spec.start is None or day >= spec.start) and (spec.end is None or day <= spec.end)


@dataclass(frozen=True)
class Catalog:
    """Every campaign and segment of one folder."""

    folder: Path
    campaigns: tuple[Campaign, ...]
    segments: dict[str, Segment]
    audiences: dict[str, AudienceDef]

    def campaign(self, name: str) -> Campaign:
        for campaign in self.campaigns:
            if campaign.name == name:
                return campaign
        known = ", ".join(campaign.name for campaign in self.campaigns) or "none"
        raise InputError(f"no campaign named {name!r} in {self.folder}; known campaigns: {known}")

    @property
    def names(self) -> list[str]:
        return [campaign.name for campaign in self.campaigns]


@cache
def topic_label(name: str) -> str:
    """A campaign name as a customer may read it: ``spring-sale`` → ``Spring sale``."""
    return name.replace("-", " ").replace("_", " ").capitalize()


def shipped_campaigns() -> tuple[Campaign, ...]:
    """The campaigns shipped in ``campaigns/`` (read once), in the order of their priority."""
    return tuple(sorted(load_catalog().campaigns, key=lambda campaign: (campaign.priority, campaign.name)))


def load_catalog(folder: Path | None = None) -> Catalog:
    """Every campaign file of ``folder`` (default: the shipped campaigns) and its segments, validated.

    Raises :class:`YamlFileError` (an ``InputError``) naming the file, the line and the field of the first problem of
    each file (all files' problems at once, one per line)."""
    folder = folder or SHIPPED_DIR
    if not folder.is_dir():
        raise YamlFileError(f"{folder}: no such campaigns folder; set OMNICAST_CAMPAIGNS_DIR to the folder of *.yaml")
    problems: list[str] = []
    segments: dict[str, Segment] = {}
    audiences: dict[str, AudienceDef] = {}
    segment_file = folder / SEGMENT_FILE
    if segment_file.exists():
        try:
            segments, audiences = load_segments(segment_file)
        except YamlFileError as exc:
            problems.append(str(exc))
    campaigns: list[Campaign] = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name in (SEGMENT_FILE, RULES_FILE):
            continue
        try:
            campaigns.append(_load_campaign(path, segments))
        except YamlFileError as exc:
            problems.append(str(exc))
    names = [campaign.name for campaign in campaigns]
    for name in sorted({name for name in names if names.count(name) > 1}):
        files = ", ".join(str(c.file.name) for c in campaigns if c.name == name)
        problems.append(f"{folder}: two campaigns are named {name!r} ({files}); campaign names must be unique")
    if problems:
        raise YamlFileError("\n".join(problems))
    return Catalog(folder, tuple(campaigns), segments, audiences)


def _load_campaign(path: Path, segments: dict[str, Segment]) -> Campaign:
    data, lines = load_with_lines(path)
    if not isinstance(data, dict):
        raise YamlFileError(f"{path}, line 1: a campaign file is a mapping of fields (name:, audience:, template: …)")
    try:
        spec = CampaignFile.model_validate(data)
    except ValidationError as exc:
        raise YamlFileError(validation_problem(path, lines, exc, CampaignFile)) from None
    if spec.audience.segment is not None and spec.audience.segment not in segments:
        known = ", ".join(sorted(segments)) or f"none (no {SEGMENT_FILE})"
        line = where(lines, ("audience", "segment"))
        raise YamlFileError(
            f"{path}, line {line}, field audience.segment: unknown segment {spec.audience.segment!r}; "
            f"segments in {SEGMENT_FILE}: {known}"
        )
    for loc, offer in _offers(spec):
        if offer.pool is not None:
            _check_pool(path, lines, loc, offer.pool)
    liked = segments[spec.audience.segment].liked_words() if spec.audience.segment is not None else []
    return Campaign(spec, path, tuple(dict.fromkeys(liked)))


def _offers(spec: CampaignFile) -> list[tuple[tuple[str | int, ...], Offer]]:
    found: list[tuple[tuple[str | int, ...], Offer]] = [(("offer",), spec.offer)] if spec.offer else []
    found += [(("variants", i, "offer"), v.offer) for i, v in enumerate(spec.variants) if v.offer]
    return found


def offer_pool_path(campaign_file: Path, pool: str) -> Path:
    """A pool CSV named relative to the campaign file's folder."""
    return (campaign_file.parent / pool).resolve()


def _check_pool(path: Path, lines: dict[Any, int], loc: tuple[str | int, ...], pool: str) -> None:
    csv_path = offer_pool_path(path, pool)
    line = where(lines, (*loc, "pool"))
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except OSError as exc:
        raise YamlFileError(
            f"{path}, line {line}, field {field_name((*loc, 'pool'))}: the code pool {csv_path} cannot be read "
            f"({exc.strerror}); put a CSV with a 'code' column next to the campaign file"
        ) from None
    if "code" not in [name.strip().lower() for name in header]:
        raise YamlFileError(
            f"{path}, line {line}, field {field_name((*loc, 'pool'))}: {csv_path.name} has no 'code' column"
        )





Kind = Literal["triggered", "broadcast"]
