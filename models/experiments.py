"""Experiments: which arm of a campaign's experiment each customer is in, deterministically.

A customer's arm comes from a hash of (experiment, customer), so it is the same on every run and machine, and the
holdout (recorded, never contacted) is the first ``holdout_percent`` of the hash space.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from models.campaigns import HOLDOUT

__all__ = ["HOLDOUT", "assign_variant"]


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
    digest = hashlib.sha256(f"{experiment}:{customer_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 1_000_000
    if bucket < holdout_percent * 10_000:
        return HOLDOUT
    shares = list(weights) if weights else [1.0] * len(variants)
    point = int.from_bytes(digest[8:16], "big") / 2**64 * sum(shares)
    for variant, share in zip(variants, shares, strict=True):
        if point < share:
            return variant
        point -= share
    return variants[-1]
