"""Random draws: one numpy generator per stream, seeded from the store's seed and the stream's number, so changing
what one stage draws leaves every other stage's draws (and files) alone."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """The independent random streams of one generation run. The numbers are part of the output: the same
    (seed, stream) gives the same draws, so a number is never reused or changed."""

    CATALOGUE = 1
    PEOPLE = 2
    SEGMENTS = 3
    ORDERS = 4
    ACCOUNTS = 5
    ORDER_FACTS = 6
    ORDER_DIRT = 8
    GUEST_CONSENT = 9
    ORDER_TEXT = 10
    CRM = 11
    EVENTS = 12
    UNSAFE_IMAGES = 21
    BROKEN_PHONES = 22
    BAD_CONTACT_CELLS = 23


def rng_for(seed: int, stream: Stream) -> np.random.Generator:
    """The generator of one stream."""
    return np.random.default_rng([seed, int(stream)])


def choose(options: Sequence[str], p: Sequence[float], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels drawn with the given shares, as an object array."""
    return np.array(options, dtype=object)[rng.choice(len(options), size=n, p=np.asarray(p) / np.sum(p))]
