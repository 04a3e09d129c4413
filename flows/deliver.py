"""Delivery: every planned message goes through ``channels.dispatch`` and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.engine import Engine

from channels.base import OutboundMessage
from channels.dispatch import DispatchReport, dispatch
from flows.runtime import open_channels
from flows.settings import Settings


@dataclass
class Planned:
    """What a sending flow planned, and what dispatch did with it (``None`` when delivery was left to the caller).

    Messages carry PII, so they travel only in-process between tasks, never as flow parameters (which Prefect stores).
    """

    messages: list[OutboundMessage]
    report: DispatchReport | None = None


@task(name="dispatch", cache_policy=NO_CACHE)
def deliver(engine: Engine, settings: Settings, messages: Sequence[OutboundMessage]) -> DispatchReport:
    """Consent gate → ledger → adapter for each message; the report reconciles per channel."""
    channels = open_channels(settings)
    try:
        return dispatch(engine, messages, channels)
    finally:
        for channel in channels.values():
            channel.close()
