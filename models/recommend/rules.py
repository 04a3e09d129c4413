"""Marketer rules over recommendations, from ``campaigns/recommendation-rules.yaml``, applied after scoring.

The models score; the rules decide what may be shown and in which order (after Recombee's filters and boosters and
Algolia's merchandising rules)::

    exclude:                         # never shown (all on by default, even without the file)
      purchased_non_consumables: true
      out_of_stock: true             # tracked stock at 0 or below
      unpublished: true
      gift_cards: true
      items:                         # and these, by sku, handle, product_type, vendor, tag, roast, origin, flavour_note
        - name: no-wholesale
          match: {tag: wholesale}
    tiers:                           # named customer groups a rule can be limited to (all conditions must hold)
      vip: {spend_at_least: 500}
    pin:                             # first, in this order (file order, then the order listed)
      - name: holiday-box
        match: {sku: [GIFT-SET-001]}
        from: 2026-11-20             # store-local dates, both days included
        until: 2026-12-24
        tier: vip
    bury:                            # after every other candidate: out of the top k unless too few remain
      - {name: decaf-last, match: {tag: decaf}}
    boost:                           # on the customer's 0–1 scale (best candidate 1, weakest 0): score × multiply + add
      - {name: winter-teas, match: {product_type: Tea}, multiply: 1.3, add: 0.1, from: 2026-12-01, until: 2027-02-28}
    max_per_category: {field: product_type, max: 4}

Every rule may carry ``from``/``until`` and ``tier`` (a name or a list: any of them). Order of work:
exclusions (pins included: an excluded product is never pinned) → pins → boosts → bury → re-rank →
``max_per_category`` (pins count toward it and are always kept) → top k.

Explanations are shown to customers, so they are never rewritten (a pinned product the model did not propose gets
its pin's ``explanation``, default none): what the rules did to each pick goes to a separate ``rules`` column
(``pin:holiday-box, boost:winter-teas``) for the marketer. ``apply`` is vectorised: candidates are laid out as a
users × candidates matrix, and one row-wise sort of integer keys re-ranks them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.engine import Engine

from models.campaigns import RULES_FILE, SHIPPED_DIR
from models.interactions import CUSTOMERS, ORDERS, PRODUCTS, Columns, read_frame
from models.recommend.ranking import rank_within_groups
from models.yamlfile import YamlFileError, load_with_lines, located, validation_problem

RULES = "rules"
"""The column ``apply`` adds: what the rules did to each pick (marketer-only; never shown to customers)."""
MAX_RECORDED_RULES = 64
PIN_MODEL = "pin"
"""The ``model`` value of a pinned product the model did not propose (when the candidates have a ``model`` column)."""
CATEGORY_FIELDS = ("product_type", "vendor", "roast", "origin")
_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
_SCALAR_MATCH = ("sku", "handle", "product_type", "vendor", "roast", "origin")
_LIST_MATCH = {"tag": ("tags", ","), "flavour_note": ("flavour_notes", "|")}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Words = str | list[str]


def _words(value: Words | None) -> list[str]:
    values = [value] if isinstance(value, str) else (value or [])
    return [v.strip().lower() for v in values]


class Match(_Strict):
    """Which products a rule is about: every field given must hold; a list holds when any of its values does
    (case-insensitive, whole values: ``tag: decaf`` matches the tag ``Decaf``, not ``decaf-blend``)."""

    sku: Words | None = None
    handle: Words | None = None
    product_type: Words | None = None
    vendor: Words | None = None
    tag: Words | None = None
    roast: Words | None = None
    origin: Words | None = None
    flavour_note: Words | None = None

    @field_validator("*")
    @classmethod
    def _not_empty(cls, value: Words | None) -> Words | None:
        if value is not None and (not _words(value) or any(not word for word in _words(value))):
            raise ValueError("give a value or a list of values, e.g. [Coffee Beans, Tea]")
        return value

    @model_validator(mode="after")
    def _something(self) -> Match:
        if not self.given():
            raise ValueError(f"name at least one field to match on: {', '.join(type(self).model_fields)}")
        return self

    def given(self) -> dict[str, list[str]]:
        return {name: _words(value) for name, value in self if value is not None}


class _Rule(_Strict):
    name: str = Field(..., pattern=_NAME)
    match: Match
    tier: Words | None = None
    from_: date | None = Field(None, alias="from")
    until: date | None = None

    @model_validator(mode="after")
    def _dates(self) -> _Rule:
        if self.from_ is not None and self.until is not None and self.until < self.from_:
            raise ValueError(f"until ({self.until}) is before from ({self.from_}); both days are included")
        return self

    def active_on(self, today: date) -> bool:
        return (self.from_ is None or today >= self.from_) and (self.until is None or today <= self.until)

    def tiers(self) -> list[str]:
        return [self.tier] if isinstance(self.tier, str) else list(self.tier or [])


class ExcludeRule(_Rule):
    """Products never shown (to the rule's tier, between its dates)."""


class PinRule(_Rule):
    """Products put first, in the order listed, whether or not the model proposed them."""

    explanation: str = Field("", max_length=120)
    """Shown to customers next to a pinned product the model did not propose (e.g. "New this season")."""

    @field_validator("match")
    @classmethod
    def _by_product(cls, value: Match) -> Match:
        others = [name for name in value.given() if name not in ("sku", "handle")]
        if others:
            raise ValueError(f"a pin names its products by sku or handle, in the order they go first (not {others[0]})")
        return value


class BuryRule(_Rule):
    """Products moved after every other candidate."""


class BoostRule(_Rule):
    """Products whose score is lifted: on the customer's 0–1 scale, ``score × multiply + add``."""

    multiply: float = Field(1.0, gt=0, le=100)
    add: float = Field(0.0, ge=-10, le=10)

    @model_validator(mode="after")
    def _does_something(self) -> BoostRule:
        if self.multiply == 1.0 and self.add == 0.0:
            raise ValueError("give multiply (e.g. 1.3) and/or add (e.g. 0.1): as written the boost changes nothing")
        return self


class Exclude(_Strict):
    purchased_non_consumables: bool = True
    out_of_stock: bool = True
    unpublished: bool = True
    gift_cards: bool = True
    items: list[ExcludeRule] = Field(default_factory=list)


class Tier(_Strict):
    """Customers whose standing meets every condition given (spend: net of refunds, counted orders before today)."""

    spend_at_least: float | None = Field(None, ge=0)
    orders_at_least: int | None = Field(None, ge=0)
    orders_at_most: int | None = Field(None, ge=0)
    loyalty_tier: Words | None = None

    @model_validator(mode="after")
    def _something(self) -> Tier:
        if all(value is None for _, value in self):
            raise ValueError(f"give at least one condition: {', '.join(type(self).model_fields)}")
        return self


class MaxPerCategory(_Strict):
    field: Literal["product_type", "vendor", "roast", "origin"] = "product_type"
    max: int = Field(..., ge=1, le=100)


class RulesFile(_Strict):
    """The rules file as written."""

    exclude: Exclude = Field(default_factory=Exclude)
    tiers: dict[str, Tier] = Field(default_factory=dict)
    pin: list[PinRule] = Field(default_factory=list)
    bury: list[BuryRule] = Field(default_factory=list)
    boost: list[BoostRule] = Field(default_factory=list)
    max_per_category: MaxPerCategory | None = None


# ---- loading -----------------------------------------------------------------------------------------------------


def rules_path(campaigns_dir: Path | None) -> Path:
    """Where a campaigns folder keeps its rules (the shipped folder by default)."""
    return (campaigns_dir or SHIPPED_DIR) / RULES_FILE


def load_rules(path: Path) -> RuleSet:
    """The rules of ``path``; the default rules (the four exclusions) when it does not exist.

    Raises :class:`YamlFileError` (an ``InputError``) naming file, line and field of the first problem."""
    if not path.exists():
        return RuleSet(RulesFile(), None)
    data, lines = load_with_lines(path)
    if data is None:
        return RuleSet(RulesFile(), path)
    if not isinstance(data, dict):
        raise YamlFileError(
            f"{path}, line 1: a rules file is a mapping (exclude:, tiers:, pin:, bury:, boost:, max_per_category:)"
        )
    try:
        spec = RulesFile.model_validate(data)
    except ValidationError as exc:
        raise YamlFileError(validation_problem(path, lines, exc, RulesFile)) from None
    _check_names(path, lines, spec)
    return RuleSet(spec, path)


def _named_rules(spec: RulesFile) -> list[tuple[tuple[str | int, ...], str, _Rule]]:
    """Every listed rule with its location and kind, in file order per kind."""
    found: list[tuple[tuple[str | int, ...], str, _Rule]] = [
        (("exclude", "items", i), "exclude", rule) for i, rule in enumerate(spec.exclude.items)
    ]
    for kind in ("pin", "bury", "boost"):
        found += [((kind, i), kind, rule) for i, rule in enumerate(getattr(spec, kind))]
    return found


def _check_names(path: Path, lines: dict[Any, int], spec: RulesFile) -> None:
    seen: set[str] = set()
    for loc, _, rule in _named_rules(spec):
        if rule.name in seen:
            raise YamlFileError(located(path, lines, (*loc, "name"), f"{rule.name!r} is used twice; names are unique"))
        seen.add(rule.name)
        for tier in rule.tiers():
            if tier not in spec.tiers:
                known = ", ".join(sorted(spec.tiers)) or "none (add a tiers: section)"
                raise YamlFileError(located(path, lines, (*loc, "tier"), f"unknown tier {tier!r}; tiers: {known}"))
    recorded = len(spec.pin) + len(spec.bury) + len(spec.boost)
    if recorded > MAX_RECORDED_RULES:
        raise YamlFileError(
            f"{path}: {recorded} pin, bury and boost rules; at most {MAX_RECORDED_RULES} "
            "(a match takes lists: merge some)"
        )


def sellable_to_suggest() -> ColumnElement[bool]:
    """SQL condition for products a placement may suggest on its own (best sellers): published, not a gift card, in
    stock or not tracked; the SQL twin of the default exclusions, for lists not made by ``apply``."""
    stock = PRODUCTS.c.inventory_quantity
    return and_(PRODUCTS.c.published.is_(True), PRODUCTS.c.gift_card.is_(False), or_(stock.is_(None), stock > 0))


# ---- customers' standing (tiers) ---------------------------------------------------------------------------------


def customer_standing(engine: Engine, today: date) -> pd.DataFrame:
    """``user_id, orders, spend, loyalty_tier`` of every customer with orders or a loyalty tier: counted orders
    (not cancelled) created before ``today``'s start and their net spend (total − refunded), as segments count them."""
    start = datetime.combine(today, time(), UTC)
    orders = read_frame(
        engine,
        select(
            ORDERS.c.customer_id.label(Columns.USER),
            func.count().label("orders"),
            func.sum(ORDERS.c.total - ORDERS.c.refunded_amount).label("spend"),
        )
        .where(ORDERS.c.customer_id.is_not(None), ORDERS.c.cancelled_at.is_(None), ORDERS.c.created_at < start)
        .group_by(ORDERS.c.customer_id),
    )
    tiers = read_frame(
        engine,
        select(CUSTOMERS.c.id.label(Columns.USER), CUSTOMERS.c.loyalty_tier).where(
            CUSTOMERS.c.loyalty_tier.is_not(None), CUSTOMERS.c.erased_at.is_(None)
        ),
    )
    frame = orders.merge(tiers, on=Columns.USER, how="outer")
    frame["orders"] = frame["orders"].fillna(0).astype("int64")
    frame["spend"] = frame["spend"].astype(float).fillna(0.0)
    return frame[[Columns.USER, "orders", "spend", "loyalty_tier"]]


# ---- the catalogue as the rules see it ---------------------------------------------------------------------------


class _Catalog:
    """Item ids, their positions, and lower-cased values to match on (computed once per ``apply``)."""

    def __init__(self, catalog: pd.DataFrame) -> None:
        if Columns.ITEM not in catalog.columns:
            raise ValueError(f"catalog lacks column {Columns.ITEM!r}; it has {list(catalog.columns)}")
        self.frame = catalog.reset_index(drop=True)
        self.ids = self.frame[Columns.ITEM].to_numpy()
        self.index = pd.Index(self.ids)
        self._lowered: dict[str, pd.Series] = {}
        self._exploded: dict[str, pd.DataFrame] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, items: Any) -> np.ndarray:
        return np.asarray(self.index.get_indexer(items), dtype=np.int64)

    def flag(self, column: str, default: bool) -> np.ndarray:
        if column not in self.frame.columns:
            return np.full(len(self), default)
        return self.frame[column].fillna(default).astype(bool).to_numpy()

    def out_of_stock(self) -> np.ndarray:
        if "inventory_quantity" not in self.frame.columns:
            return np.zeros(len(self), dtype=bool)
        stock = pd.to_numeric(self.frame["inventory_quantity"], errors="coerce")
        return (stock.notna() & (stock <= 0)).to_numpy(dtype=bool)

    def lowered(self, column: str) -> pd.Series:
        if column not in self._lowered:
            values = self.frame[column] if column in self.frame.columns else pd.Series(None, index=self.frame.index)
            self._lowered[column] = values.astype(object).where(values.notna(), "").astype(str).str.strip().str.lower()
        return self._lowered[column]

    def exploded(self, column: str, separator: str) -> pd.DataFrame:
        if column not in self._exploded:
            parts = self.lowered(column).str.split(separator).explode().str.strip()
            self._exploded[column] = pd.DataFrame({"position": parts.index.to_numpy(), "value": parts.to_numpy()})
        return self._exploded[column]

    def matches(self, match: Match) -> np.ndarray:
        mask = np.ones(len(self), dtype=bool)
        for name, values in match.given().items():
            if name in _LIST_MATCH:
                column, separator = _LIST_MATCH[name]
                parts = self.exploded(column, separator)
                hit = np.zeros(len(self), dtype=bool)
                hit[parts["position"].to_numpy()[parts["value"].isin(values).to_numpy()]] = True
                mask &= hit
            else:
                mask &= self.lowered(name).isin(values).to_numpy()
        return mask

    def ordered(self, match: Match) -> list[int]:
        """Positions of a pin's products in the order listed (a handle: its variants in catalogue order)."""
        given = match.given()
        found: list[int] = []
        for name in ("sku", "handle"):
            column = self.lowered(name)
            for value in given.get(name, []):
                found += [int(p) for p in np.flatnonzero((column == value).to_numpy()) if int(p) not in found]
        return found

    def categories(self, column: str) -> np.ndarray:
        codes, _ = pd.factorize(self.lowered(column).replace("", None))
        return np.asarray(codes, dtype=np.int64)


# ---- the rule set --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSet:
    """Validated rules and where they came from (``file`` is None: the defaults, no file)."""

    spec: RulesFile = field(default_factory=RulesFile)
    file: Path | None = None

    @property
    def uses_tiers(self) -> bool:
        return any(rule.tier is not None for _, _, rule in _named_rules(self.spec))

    def candidates_needed(self, k: int) -> int:
        """How many candidates per customer ``apply`` needs to fill ``k`` picks after exclusions, burials and the
        category cap: ask the model for this many (pinned products come on top). Users left short are counted in
        ``attrs["rules"]["users_short_of_k"]``."""
        if self.spec.max_per_category is not None:
            return 3 * k + 10
        return 2 * k + 5

    def active(self, today: date) -> dict[str, list[str]]:
        """The names of the listed rules in force on ``today``, by kind."""
        active: dict[str, list[str]] = {}
        for _, kind, rule in _named_rules(self.spec):
            if rule.active_on(today):
                active.setdefault(kind, []).append(rule.name)
        return active

    def excluded_items(self, catalog: pd.DataFrame, today: date) -> np.ndarray:
        """Item ids excluded for every customer on ``today`` (stock, publication, gift cards and the exclusions with
        no tier): for placements that are not per customer (related products, best sellers)."""
        view = _Catalog(catalog)
        return view.ids[self._excluded_for_all(view, today)]

    def _excluded_for_all(self, view: _Catalog, today: date) -> np.ndarray:
        rules = self.spec.exclude
        mask = np.zeros(len(view), dtype=bool)
        if rules.out_of_stock:
            mask |= view.out_of_stock()
        if rules.unpublished:
            mask |= ~view.flag("published", True)
        if rules.gift_cards:
            mask |= view.flag("gift_card", False)
        for rule in rules.items:
            if rule.tier is None and rule.active_on(today):
                mask |= view.matches(rule.match)
        return mask

    def apply(
        self,
        candidates: pd.DataFrame,
        catalog: pd.DataFrame,
        purchases: pd.DataFrame | None,
        today: date,
        customers: pd.DataFrame | None = None,
        *,
        k: int = 10,
    ) -> pd.DataFrame:
        """The top ``k`` per user after the rules, ranked 1…k, with a ``rules`` column.

        ``candidates``: ``user_id, item_id, rank, score, explanation`` (any other column, e.g. ``model``, is carried
        over), each user's rows best first and at least :meth:`candidates_needed` of them; ``catalog``: as
        :func:`models.interactions.load_catalog` returns it (items not in it are never shown); ``purchases``:
        ``user_id, item_id`` pairs bought (rows with ``purchased`` False are ignored); ``today``: the store-local
        date the ``from``/``until`` dates are compared with; ``customers``: :func:`customer_standing` (needed when a
        rule names a tier). ``score`` stays the model's (a pinned product the model did not propose: 0.0; the rank
        is what the rules decide). ``attrs["rules"]`` counts what each rule did.
        """
        if k < 1:
            raise ValueError(f"k={k}: ask for at least one recommendation per user")
        missing = [c for c in (Columns.USER, Columns.ITEM, Columns.SCORE, Columns.EXPLANATION) if c not in candidates]
        if missing:
            raise ValueError(f"candidates lacks column(s) {missing}; it has {list(candidates.columns)}")
        if self.uses_tiers and customers is None:
            raise ValueError("these rules name tiers: pass customers=customer_standing(engine, today)")
        return _Application(self, candidates, _Catalog(catalog), purchases, today, customers, k).run()


def load_rule_set(campaigns_dir: Path | None) -> RuleSet:
    """The rules of a campaigns folder (``recommendation-rules.yaml``), or the defaults when it has none."""
    return load_rules(rules_path(campaigns_dir))


# ---- applying ------------------------------------------------------------------------------------------------------


class _Application:
    """One ``apply``: the candidates as users × slots matrices (slot = the user's n-th candidate, then pins)."""

    def __init__(
        self,
        rules: RuleSet,
        candidates: pd.DataFrame,
        view: _Catalog,
        purchases: pd.DataFrame | None,
        today: date,
        customers: pd.DataFrame | None,
        k: int,
    ) -> None:
        self.spec, self.candidates, self.view, self.today, self.k = rules.spec, candidates, view, today, k
        self.purchases = purchases
        self.counts: dict[str, int] = {}
        self.recorded = [(kind, rule) for _, kind, rule in _named_rules(self.spec) if kind != "exclude"]
        codes, uniques = _user_codes(candidates[Columns.USER].to_numpy())
        self.codes = codes
        self.users = pd.Index(uniques)
        self.n = len(self.users)
        self.customers = customers

    # -- tiers ---------------------------------------------------------------------------------------------------
    def _tier_masks(self) -> dict[str, np.ndarray]:
        if not self.spec.tiers or self.customers is None:
            return {}
        standing = self.customers.drop_duplicates(Columns.USER).set_index(Columns.USER).reindex(self.users)
        zero = pd.Series(0.0, index=standing.index)
        orders = pd.to_numeric(standing.get("orders", zero), errors="coerce").fillna(0).to_numpy()
        spend = pd.to_numeric(standing.get("spend", zero), errors="coerce").fillna(0.0).to_numpy()
        loyalty = standing["loyalty_tier"] if "loyalty_tier" in standing else pd.Series(None, index=standing.index)
        loyalty_text = loyalty.astype(object).where(loyalty.notna(), "").astype(str).str.strip().str.lower()
        masks = {}
        for name, tier in self.spec.tiers.items():
            mask = np.ones(self.n, dtype=bool)
            if tier.spend_at_least is not None:
                mask &= spend >= tier.spend_at_least
            if tier.orders_at_least is not None:
                mask &= orders >= tier.orders_at_least
            if tier.orders_at_most is not None:
                mask &= orders <= tier.orders_at_most
            if tier.loyalty_tier is not None:
                mask &= loyalty_text.isin(_words(tier.loyalty_tier)).to_numpy()
            masks[name] = mask
        return masks

    def _users_of(self, rule: _Rule, tiers: dict[str, np.ndarray]) -> np.ndarray | None:
        """Which users a rule applies to (None: everyone)."""
        names = rule.tiers()
        if not names:
            return None
        mask = np.zeros(self.n, dtype=bool)
        for name in names:
            mask |= tiers[name]
        return mask

    # -- the run -------------------------------------------------------------------------------------------------
    def run(self) -> pd.DataFrame:
        frame = self.candidates
        if frame.empty:
            return self._empty()
        view, n = self.view, self.n
        codes = self.codes
        source = np.arange(len(frame), dtype=np.int64)
        if len(codes) > 1 and (np.diff(codes) < 0).any():  # a user's rows are not together: gather them
            source = np.argsort(codes, kind="stable")
            codes = codes[source]
        per_user = np.bincount(codes, minlength=n)
        self.starts = np.cumsum(per_user) - per_user
        self.source = source
        width0 = int(per_user.max())
        tiers = self._tier_masks()
        pins = self._pin_slots(tiers)
        width = width0 + len(pins)
        positions = view.positions(frame[Columns.ITEM].to_numpy()[source]).astype(np.int32)
        none = len(view)  # the position of "no catalogue product": unknown items and empty slots
        positions[positions < 0] = none
        scores = pd.to_numeric(frame[Columns.SCORE], errors="coerce").to_numpy(dtype=np.float64)[source]
        item = np.full((n, width), none, dtype=np.int32)
        score = np.zeros((n, width), dtype=np.float64)
        if per_user.min() == width0:  # the usual case: as many candidates for everyone
            item[:, :width0] = positions.reshape(n, width0)
            score[:, :width0] = scores.reshape(n, width0)
        else:
            slot = np.arange(len(codes)) - np.repeat(self.starts, per_user)
            item[codes, slot] = positions
            score[codes, slot] = scores
        present = np.zeros((n, width), dtype=bool)
        present[:, :width0] = np.arange(width0)[None, :] < per_user[:, None]
        pinned = np.full((n, width), -1, dtype=np.int16) if pins else None
        bits = np.zeros((n, width), dtype=np.uint64) if self._records_today() else None
        done: dict[int, np.ndarray] = {}  # catalogue position → users it is already pinned for
        for pin_rank, (position, users, bit) in enumerate(pins):
            assert pinned is not None and bits is not None
            eligible = np.ones(n, dtype=bool) if users is None else users.copy()
            if position in done:
                eligible &= ~done[position]
            done[position] = done.get(position, np.zeros(n, dtype=bool)) | eligible
            here = (item[:, :width0] == position) & present[:, :width0] & eligible[:, None]
            pinned[:, :width0][here] = pin_rank
            bits[:, :width0][here] |= bit
            add = eligible & ~here.any(axis=1)
            column = width0 + pin_rank
            item[add, column], present[add, column], pinned[add, column] = position, True, pin_rank
            bits[add, column] |= bit
        excluded = self._excluded(item, present, tiers)
        valid = present & ~excluded
        free = valid if pinned is None else valid & (pinned < 0)
        free[:, width0:] = False  # added pins have no model score
        adjusted = self._boosted(item, score, free, bits, tiers)
        buried = self._buried(item, free, bits, tiers)
        if adjusted is None and buried is None and pinned is None:  # nothing moves: keep the model's order
            take = np.broadcast_to(np.arange(width), (n, width))
            sorted_valid, sorted_item = valid, item
        else:
            group = np.where(valid, np.int8(1), np.int8(3)).astype(np.int8)
            if buried is not None:
                group[buried] = 2
            if pinned is not None:
                group[valid & (pinned >= 0)] = 0
            take = _sort_keys(group, adjusted if adjusted is not None else score, pinned)
            sorted_valid = np.take_along_axis(group, take, axis=1) < 3
            sorted_item = np.take_along_axis(item, take, axis=1)
        picked = self._picked(
            sorted_valid, sorted_item, None if pinned is None else np.take_along_axis(pinned, take, 1)
        )
        rows, cols = np.nonzero(picked)
        chosen = take[rows, cols]
        return self._result(rows, chosen, width0, item, score, bits)

    def _records_today(self) -> bool:
        return any(kind != "exclude" and rule.active_on(self.today) for kind, rule in self.recorded)

    def _pin_slots(self, tiers: dict[str, np.ndarray]) -> list[tuple[int, np.ndarray | None, np.uint64]]:
        """(catalogue position, users or None = all, rule bit) per pinned product, in pin order."""
        slots: list[tuple[int, np.ndarray | None, np.uint64]] = []
        for bit_index, (kind, rule) in enumerate(self.recorded):
            if kind != "pin" or not rule.active_on(self.today):
                continue
            users = self._users_of(rule, tiers)
            for position in self.view.ordered(rule.match):
                slots.append((position, users, np.uint64(1) << np.uint64(bit_index)))
        return slots

    def _excluded(self, item: np.ndarray, present: np.ndarray, tiers: dict[str, np.ndarray]) -> np.ndarray:
        """Cells not to show. Item-level exclusions are decided on the catalogue and looked up once; each is
        credited with the candidates it removed that no earlier one did."""
        view, spec = self.view, self.spec.exclude
        none = len(view)
        shown = item[present]
        per_item = np.bincount(shown, minlength=none + 1)
        self.counts["exclude:not_in_catalogue"] = int(per_item[none])
        everyone = np.zeros(none + 1, dtype=bool)
        everyone[none] = True
        flags = [
            ("out_of_stock", spec.out_of_stock, view.out_of_stock),
            ("unpublished", spec.unpublished, lambda: ~view.flag("published", True)),
            ("gift_cards", spec.gift_cards, lambda: view.flag("gift_card", False)),
        ]
        for name, on, items in flags:
            if on:
                self._credit(f"exclude:{name}", items(), everyone, per_item)
        tiered = []
        for rule in spec.items:
            if not rule.active_on(self.today):
                continue
            if rule.tier is None:
                self._credit(f"exclude:{rule.name}", view.matches(rule.match), everyone, per_item)
            else:
                tiered.append(rule)
        excluded = present & everyone[item]
        for rule in tiered:
            users = self._users_of(rule, tiers)
            assert users is not None
            hit = present & _padded(view.matches(rule.match))[item] & users[:, None] & ~excluded
            self.counts[f"exclude:{rule.name}"] = int(hit.sum())
            excluded |= hit
        if spec.purchased_non_consumables and self.purchases is not None and len(self.purchases):
            hit = self._owned(item, present & ~excluded)
            self.counts["exclude:purchased_non_consumables"] = int(hit.sum())
            excluded |= hit
        return excluded

    def _credit(self, label: str, mask: np.ndarray, everyone: np.ndarray, per_item: np.ndarray) -> None:
        new = _padded(mask) & ~everyone
        self.counts[label] = int(per_item[new].sum())
        everyone |= new

    def _owned(self, item: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Cells holding a non-consumable the user bought (a sparse users × items lookup)."""
        bought = self.purchases
        assert bought is not None
        if Columns.PURCHASED in bought.columns:
            bought = bought[bought[Columns.PURCHASED].fillna(False).astype(bool)]
        rows = np.asarray(self.users.get_indexer(bought[Columns.USER].to_numpy()), dtype=np.int64)
        cols = self.view.positions(bought[Columns.ITEM].to_numpy())
        durable = ~self.view.flag("consumable", False)
        keep = (rows >= 0) & (cols >= 0)
        keep[keep] &= durable[cols[keep]]
        matrix = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.int8), (rows[keep], cols[keep])), shape=(self.n, len(self.view))
        )
        matrix.sum_duplicates()
        cell_rows, cell_cols = np.nonzero(candidates & _padded(durable)[item])
        owned = np.zeros(candidates.shape, dtype=bool)
        if len(cell_rows):
            values = np.asarray(matrix[cell_rows, item[cell_rows, cell_cols]]).ravel()
            owned[cell_rows, cell_cols] = values > 0
        return owned

    def _boosted(
        self,
        item: np.ndarray,
        score: np.ndarray,
        eligible: np.ndarray,
        bits: np.ndarray | None,
        tiers: dict[str, np.ndarray],
    ) -> np.ndarray | None:
        """Scores on each user's 0–1 scale (best eligible candidate 1, weakest 0), boosts applied; None: no boost
        in force (the model's scores order the candidates)."""
        boosts = [
            (i, rule) for i, (kind, rule) in enumerate(self.recorded) if kind == "boost" and rule.active_on(self.today)
        ]
        if not boosts:
            return None
        assert bits is not None
        # a boost works on the customer's 0–1 scale, x = (score − low) / span; ordering by low + span·(x·m + a) is the
        # same as ordering by x·m + a, so only the boosted cells are computed, in the scores' own units
        scaled = eligible & np.isfinite(score)
        low = np.where(scaled, score, np.inf).min(axis=1)
        high = np.where(scaled, score, -np.inf).max(axis=1)
        flat = ~(high > low)
        span = np.where(flat, 1.0, high - low)
        low = np.where(np.isfinite(low), low, 0.0)
        adjusted = score.copy()
        for bit_index, rule in boosts:
            assert isinstance(rule, BoostRule)
            hit = eligible & _padded(self.view.matches(rule.match))[item]
            users = self._users_of(rule, tiers)
            if users is not None:
                hit &= users[:, None]
            rows, cols = np.nonzero(hit)
            unit = np.where(flat[rows], 1.0, (adjusted[rows, cols] - low[rows]) / span[rows])
            shift = np.where(flat[rows], 1.0, 0.0)  # all scores equal: each is 1 on the scale, at `low`
            adjusted[rows, cols] = low[rows] + span[rows] * (unit * rule.multiply + rule.add - shift)
            bits[rows, cols] |= np.uint64(1) << np.uint64(bit_index)
        return adjusted

    def _buried(
        self, item: np.ndarray, eligible: np.ndarray, bits: np.ndarray | None, tiers: dict[str, np.ndarray]
    ) -> np.ndarray | None:
        burials = [
            (i, rule) for i, (kind, rule) in enumerate(self.recorded) if kind == "bury" and rule.active_on(self.today)
        ]
        if not burials:
            return None
        assert bits is not None
        buried = np.zeros(item.shape, dtype=bool)
        for bit_index, rule in burials:
            hit = eligible & _padded(self.view.matches(rule.match))[item]
            users = self._users_of(rule, tiers)
            if users is not None:
                hit &= users[:, None]
            buried |= hit
            bits[hit] |= np.uint64(1) << np.uint64(bit_index)
        return buried

    def _picked(self, valid: np.ndarray, item: np.ndarray, pinned: np.ndarray | None) -> np.ndarray:
        """Which sorted slots make each user's top k: the first k valid ones, or walking down under the cap."""
        k, cap = self.k, self.spec.max_per_category
        if cap is None:
            return valid & (np.cumsum(valid, axis=1, dtype=np.int32) <= k)
        category = np.append(self.view.categories(cap.field), -1)
        n, width = valid.shape
        counts = np.zeros((n, int(category.max(initial=-1)) + 2), dtype=np.int32)  # last column: no category
        taken = np.zeros(n, dtype=np.int64)
        picked = np.zeros((n, width), dtype=bool)
        rows = np.arange(n)
        capped = 0
        for column in range(width):
            live = valid[:, column] & (taken < k)
            if not live.any():
                break
            cat = np.where(live, category[item[:, column]], -1)
            within = counts[rows, cat]
            ok = live & ((cat < 0) | (within < cap.max))
            if pinned is not None:
                ok |= live & (pinned[:, column] >= 0)
            capped += int((live & ~ok).sum())
            counts[rows[ok], cat[ok]] += 1
            picked[:, column] = ok
            taken += ok
        self.counts["max_per_category"] = capped
        return picked

    def _result(
        self,
        rows: np.ndarray,
        chosen: np.ndarray,
        width0: int,
        item: np.ndarray,
        score: np.ndarray,
        bits: np.ndarray | None,
    ) -> pd.DataFrame:
        frame = self.candidates
        injected = chosen >= width0
        src = self.source[self.starts[rows] + np.where(injected, 0, chosen)]
        replaced = (Columns.ITEM, Columns.RANK, Columns.SCORE)
        columns: dict[str, Any] = {
            name: None if name in replaced else frame[name].array.take(src) for name in frame.columns
        }
        columns[Columns.ITEM] = self.view.ids[item[rows, chosen]]
        columns[Columns.RANK] = rank_within_groups(rows, self.n) + 1
        scores = score[rows, chosen]
        codes = bits[rows, chosen] if bits is not None else np.zeros(len(rows), dtype=np.uint64)
        if injected.any():
            scores[injected] = 0.0
            explanations = {
                1 << i: rule.explanation for i, (_, rule) in enumerate(self.recorded) if isinstance(rule, PinRule)
            }
            texts = np.asarray(columns[Columns.EXPLANATION], dtype=object)
            texts[injected] = [explanations.get(int(code), "") for code in codes[injected]]
            columns[Columns.EXPLANATION] = texts
            if Columns.MODEL in columns:
                models = np.asarray(columns[Columns.MODEL], dtype=object)
                models[injected] = PIN_MODEL
                columns[Columns.MODEL] = models
        columns[Columns.SCORE] = scores
        columns[RULES] = self._labels(codes)
        result = pd.DataFrame(columns)
        result.attrs[RULES] = self._summary(codes, rows)
        return result

    def _labels(self, codes: np.ndarray) -> np.ndarray:
        if not codes.any():
            return np.full(len(codes), "", dtype=object)
        inverse, uniques = pd.factorize(codes)
        names = [f"{kind}:{rule.name}" for kind, rule in self.recorded]
        texts = np.array(
            [", ".join(names[i] for i in range(len(names)) if int(code) >> i & 1) for code in uniques], dtype=object
        )
        return texts[inverse]

    def _summary(self, codes: np.ndarray, rows: np.ndarray) -> dict[str, int]:
        """Candidates each exclusion removed, picks each pin/boost/bury rule touched, users left with fewer than k."""
        summary = {name: count for name, count in self.counts.items() if count}
        for i, (kind, rule) in enumerate(self.recorded):
            count = int(((codes >> np.uint64(i)) & np.uint64(1)).sum())
            if count:
                summary[f"{kind}:{rule.name}"] = count
        short = int((np.bincount(rows, minlength=self.n) < self.k).sum())
        if short:
            summary["users_short_of_k"] = short
        return summary

    def _empty(self) -> pd.DataFrame:
        result = self.candidates.head(0).copy()
        result[RULES] = pd.Series(dtype=object)
        result.attrs[RULES] = {}
        return result


def _user_codes(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Users numbered in order of appearance: from run boundaries when each user's rows are together (a model's
    output; cheaper than hashing millions of ids), else by factorizing."""
    if len(users) and users.dtype.kind in "iu":
        change = np.empty(len(users), dtype=bool)
        change[0] = True
        np.not_equal(users[1:], users[:-1], out=change[1:])
        uniques = users[change]
        if len(np.unique(uniques)) == len(uniques):
            return np.cumsum(change, dtype=np.int64) - 1, uniques
    codes, found = pd.factorize(users, use_na_sentinel=False)
    return np.asarray(codes, dtype=np.int64), np.asarray(found)


def _padded(mask: np.ndarray) -> np.ndarray:
    """A per-product mask with False for the "no product" position (see ``_Application.run``)."""
    return np.append(mask, False)


def _sort_keys(group: np.ndarray, value: np.ndarray, pinned: np.ndarray | None) -> np.ndarray:
    """Each row's slots in their new order: group 0 (pinned, in pin order), 1 and 2 (not buried, buried: by ``value``,
    highest first), 3 (not shown); ties keep the candidates' order. One int64 key per slot, group | quantised value |
    slot, sorted row-wise (unique keys: the fast unstable sort is deterministic)."""
    n, width = group.shape
    slot_bits = max(1, int(width - 1).bit_length())
    value_bits = min(60 - slot_bits, 52)
    scored = (group == 1) | (group == 2)
    usable = scored & np.isfinite(value)
    high = float(value[usable].max()) if usable.any() else 0.0
    low = float(value[usable].min()) if usable.any() else 0.0
    top = 2.0**value_bits - 1
    with np.errstate(invalid="ignore", over="ignore"):
        quantised = np.subtract(high, value)
        quantised *= top / (high - low) if high > low else 0.0
        np.floor(quantised, out=quantised)
    quantised[~usable] = top  # a missing score: last of its group
    keys = quantised.astype(np.int64)
    if pinned is not None:
        first = group == 0
        keys[first] = pinned[first]
    keys[group == 3] = 0
    keys <<= slot_bits
    keys |= np.arange(width, dtype=np.int64)[None, :]
    keys |= group.astype(np.int64) << (value_bits + slot_bits)
    return np.argsort(keys, axis=1)


def rules_summary(rules: RuleSet, today: date) -> str:
    """One line for ``omnicast campaigns validate``: what the rules file holds and what is in force today."""
    spec = rules.spec
    on = [name for name in ("purchased_non_consumables", "out_of_stock", "unpublished", "gift_cards")
          if getattr(spec.exclude, name)]  # fmt: skip
    active = rules.active(today)
    parts = [f"excludes {', '.join(on) or 'nothing by default'}"]
    for kind in ("exclude", "pin", "bury", "boost"):
        listed = len(spec.exclude.items) if kind == "exclude" else len(getattr(spec, kind))
        if listed:
            parts.append(f"{listed} {kind} rule{'s' if listed != 1 else ''} ({len(active.get(kind, []))} in force)")
    if spec.tiers:
        parts.append(f"tiers {', '.join(spec.tiers)}")
    if spec.max_per_category is not None:
        parts.append(f"at most {spec.max_per_category.max} per {spec.max_per_category.field}")
    where_from = str(rules.file) if rules.file is not None else f"defaults (no {RULES_FILE})"
    return f"recommendation rules, {where_from}: {'; '.join(parts)}"
