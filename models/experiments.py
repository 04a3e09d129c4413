"""Experiments: which arm of a campaign's experiment each customer is in, deterministically; and the global holdout.

A customer's arm comes from a hash of (experiment, customer), so it is the same on every run and machine, and the
holdout (recorded, never contacted) is the first ``holdout_percent`` of the hash space; the rest is split between
the variants in proportion to their weights, from other bits of the same hash.

The **global holdout** (``OMNICAST_GLOBAL_HOLDOUT_PERCENT``, default 0) is a share of all customers who hear no
marketing at all: planning marks them ``holdout`` in every campaign (:func:`apply_global_holdout`), so dispatch
records them suppressed ``holdout`` and never contacts them. Its hash (``global-holdout:<customer>``) names no
campaign, so membership is the same for every campaign and independent of every campaign's own arms; changing a
campaign (its name, variants or weights) never moves anyone in or out of it. Raising the percentage only adds
members (those already in stay in), lowering it only releases some.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from models.campaigns import HOLDOUT

__all__ = [
    "GLOBAL_HOLDOUT_KEY",
    "HOLDOUT",
    "apply_global_holdout",
    "arm_shares",
    "assign_variant",
    "in_global_holdout",
]

GLOBAL_HOLDOUT_KEY = "global-holdout"
"""The global holdout's hash input prefix. Even a campaign named ``global-holdout`` stays independent of it: campaign
arms read bytes 0–16 of the digest, the global holdout bytes 16–24."""

_BUCKETS = 1_000_000  # hash buckets: a percentage has four decimals of resolution


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def assign_variant(
    experiment: str,
    customer_id: int,
    variants: Sequence[str],
    holdout_percent: float,
    weights: Sequence[float] | None = None,
) -> str:
    """Deterministic arm from a hash of (experiment, customer): stable across runs and machines.

    The first ``holdout_percent`` of the hash space is the holdout; the rest is split between ``variants`` in
    proportion to ``weights`` (equal by default), from independent bits of the same hash."""
    digest = _digest(f"{experiment}:{customer_id}")
    bucket = int.from_bytes(digest[:8], "big") % _BUCKETS
    if bucket < holdout_percent * (_BUCKETS // 100):
        return HOLDOUT
    shares = list(weights) if weights else [1.0] * len(variants)
    point = int.from_bytes(digest[8:16], "big") / 2**64 * sum(shares)
    for variant, share in zip(variants, shares, strict=True):
        if point < share:
            return variant
        point -= share
    return variants[-1]


def in_global_holdout(customer_id: int, percent: float) -> bool:
    """Whether ``customer_id`` is in the global holdout of ``percent`` % (0 = nobody, 100 = everyone).

    From a hash that names no campaign (bytes 16–24 of ``sha256("global-holdout:<customer>")``, bits no campaign
    assignment reads), so it is independent of every campaign's arms and the same in every campaign."""
    if percent <= 0:
        return False
    digest = _digest(f"{GLOBAL_HOLDOUT_KEY}:{customer_id}")
    return int.from_bytes(digest[16:24], "big") % _BUCKETS < percent * (_BUCKETS // 100)


def apply_global_holdout(variants: Mapping[int, str], percent: float) -> dict[int, str]:
    """``variants`` (customer id → arm, as planning assigned them) with every global-holdout member set to
    ``holdout``. The campaign's own assignments (the ``assignments`` table) are left as they are: only the planned
    message (and so the ledger row) says ``holdout``, so lowering the percentage later gives people their arm back."""
    if percent <= 0:
        return dict(variants)
    return {cid: HOLDOUT if in_global_holdout(cid, percent) else arm for cid, arm in variants.items()}


def arm_shares(
    variants: Sequence[str],
    holdout_percent: float,
    weights: Sequence[float] | None = None,
    global_holdout_percent: float = 0.0,
) -> dict[str, float]:
    """The expected share of customers in each arm (``holdout`` included), for balance checks: the global
    holdout takes its share first, the campaign's holdout its share of the rest, the variants split what is left by
    weight."""
    shares = list(weights) if weights else [1.0] * len(variants)
    total = sum(shares)
    outside_global = 1 - global_holdout_percent / 100
    contacted = outside_global * (1 - holdout_percent / 100)
    expected = {HOLDOUT: 1 - contacted}
    for variant, share in zip(variants, shares, strict=True):
        expected[variant] = expected.get(variant, 0.0) + contacted * share / total
    return expected
