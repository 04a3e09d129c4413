"""What the audience-API channels (``channels.meta``, ``channels.google``) share: the bookkeeping of one ``send_batch``.

A batch's messages are grouped by audience and operation (``add``, or ``remove`` for ``OutboundMessage.retract``);
each group is uploaded in calls of at most so many rows (``AudienceApiChannel.upload_chunks``). Every message gets one
``DeliveryResult``, in order. A ``ChannelConfigError`` (stop the run) is raised only while nothing of the
``send_batch`` call was handed over; afterwards the remaining messages are retryable and the next call stops the run.
After a call that gave up (retryable), the later calls of the same group are not tried.

The adapters implement the protocol: ``_group_of`` (a message's audience key and row, or why it cannot be sent) and
``_upload_group`` (one group of rows for one audience and operation).
"""

from __future__ import annotations

import logging
import random
import re
import time
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, NoReturn, TypeVar

import httpx

from channels.base import Channel, ChannelConfigError, ChannelError, DeliveryResult, RetryableChannelError
from channels.http import Retry, jittered_backoff, with_retries
from models.message import OutboundMessage

__all__ = [
    "HEX64", "AudienceApiChannel", "Call", "ChunkResults", "Operation", "after_stop", "check_token", "results_for",
]  # fmt: skip

Operation = Literal["add", "remove"]
Row = TypeVar("Row")
T = TypeVar("T")
HEX64 = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[\x21-\x7e]+")

ChunkResults = tuple[dict[int, DeliveryResult], DeliveryResult | None]
"""What one call of a group did: its messages' results, and what the group's later calls get when it gave up."""


@dataclass
class Call:
    """State of one ``send_batch``: whether the API may hold something of it, and the stop once one was answered."""

    handed_over: bool = False
    stop: ChannelConfigError | None = None


def check_token(token: str, token_setting: str) -> None:
    """An access token is printable ASCII without spaces: ``ChannelConfigError`` naming the setting otherwise."""
    if not token or not _TOKEN.fullmatch(token):
        raise ChannelConfigError(f"{token_setting} is empty or has spaces or control characters")


def results_for(members: Sequence[tuple[int, Any]], result: DeliveryResult) -> dict[int, DeliveryResult]:
    """``result`` for each of ``members`` (``(index, row)`` pairs)."""
    return {index: result for index, _ in members}


def after_stop(error: ChannelConfigError) -> DeliveryResult:
    """The result of a message not sent because an earlier call of the same ``send_batch`` was stopped."""
    return DeliveryResult.failed(RetryableChannelError(f"not sent: {error}"))


class AudienceApiChannel(Channel, Generic[Row]):
    """An audience kept in sync through a provider's API; ``Row`` is what one member is uploaded as.

    ``client`` is used as given (tests inject one) and then left open by ``close``; without one the channel builds
    its own and closes it. ``sleep``, ``jitter`` (a float in [0, 1)) and ``now`` (for an HTTP-date ``Retry-After``)
    are injectable so tests run without waiting. ``stats`` counts calls, rows and retries.
    """

    consent_channel = "ads"
    knows_deliveries = False
    hands_over_batches = True
    """The provider cannot be asked who an audience holds, but takes many rows per call: whole batches go over."""
    user_agent: ClassVar[str]

    def __init__(
        self,
        token: str,
        *,
        client: httpx.Client | None,
        base_url: str,
        timeout: float,
        max_retries: int,
        max_retry_wait: float,
        setting: str,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._token = token
        self.owns_client = client is None
        self.client = client if client is not None else httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False, headers={"User-Agent": self.user_agent},
        )  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.setting = setting
        self.sleep = sleep
        self.jitter = jitter
        self.now = now
        self.stats: Counter[str] = Counter()
        self._stopped: ChannelConfigError | None = None
        self._closed = False

    # the adapter's part ----------------------------------------------------------------------------------------

    @abstractmethod
    def _group_of(self, message: OutboundMessage) -> tuple[str, Row] | ChannelError:
        """The audience (as the adapter keys it) and row of one message, or why it fails without an upload."""

    @abstractmethod
    def _upload_group(
        self, call: Call, key: str, operation: Operation, members: list[tuple[int, Row]]
    ) -> dict[int, DeliveryResult]:
        """Upload one audience's rows for one operation; a result for every member (``(index, row)``)."""

    # channel ---------------------------------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> DeliveryResult:
        """One message is a one-row batch."""
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
        """Add (or, for a retraction, remove) each message's person to its audience; one result per message, in order.

        Raises ``ChannelConfigError`` (stop the run) only while nothing of this call was handed over.
        """
        if self._stopped is not None:
            raise self._stopped
        results: list[DeliveryResult | None] = [None] * len(messages)
        groups: dict[tuple[str, Operation], list[tuple[int, Row]]] = {}
        for index, message in enumerate(messages):
            found = self._group_of(message)
            if isinstance(found, ChannelError):
                results[index] = DeliveryResult.failed(found)
                continue
            key, row = found
            operation: Operation = "remove" if message.retract else "add"
            groups.setdefault((key, operation), []).append((index, row))
        call = Call()
        for (key, operation), members in groups.items():
            if call.stop is not None:
                done = results_for(members, after_stop(call.stop))
            else:
                done = self._upload_group(call, key, operation, members)
            for index, result in done.items():
                results[index] = result
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]  # every slot was filled above

    def close(self) -> None:
        """Close the HTTP client when the channel built it (an injected one is the caller's)."""
        if self.owns_client and not self._closed:
            self.client.close()
        self._closed = True

    # shared bookkeeping ----------------------------------------------------------------------------------------

    def upload_chunks(
        self,
        call: Call,
        members: list[tuple[int, Row]],
        size: int,
        upload: Callable[[int, int, list[tuple[int, Row]]], ChunkResults],
    ) -> dict[int, DeliveryResult]:
        """Calls of at most ``size`` members: ``upload(seq, count, chunk)`` with ``seq`` 1, 2, … of ``count``. After
        a stop the rest are retryable; after a call that gave up, the rest get what it returned and are not tried."""
        results: dict[int, DeliveryResult] = {}
        chunks = [members[i : i + size] for i in range(0, len(members), size)]
        given_up: DeliveryResult | None = None
        for seq, chunk in enumerate(chunks, start=1):
            if call.stop is not None:
                results.update(results_for(chunk, after_stop(call.stop)))
            elif given_up is not None:
                results.update(results_for(chunk, given_up))
            else:
                done, given_up = upload(seq, len(chunks), chunk)
                results.update(done)
        return results

    def _stopping(
        self, call: Call, error: ChannelConfigError, members: Sequence[tuple[int, Any]]
    ) -> dict[int, DeliveryResult]:
        """A configuration error: raised while nothing of the call went over, else the rest is retryable."""
        self._stopped = error
        if not call.handed_over:
            raise error
        call.stop = error
        return results_for(members, after_stop(error))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Backoff of 1, 2, 4 … s, at most 30 (``jittered_backoff``); at least what the API asked."""
        return jittered_backoff(attempt, retry_after, self.jitter, first=1.0, cap=30.0)

    def _retrying(self, attempt: Callable[[], T | Retry], *, doing: str, who: str, api: str, log: logging.Logger) -> T:
        """``with_retries`` with this channel's limits, backoff and ``sleep``; each retry logged (as ``doing``, on the
        adapter's ``log``) and counted in ``stats["retries"]``; giving up is ``RetryableChannelError`` naming ``api``
        and the wait ``who`` (the provider) asked for."""

        def on_retry(retry: Retry, delay: float, n: int) -> None:
            log.info("%s: %s; retrying in %.1f s (retry %d of %d)", doing, retry.problem, delay, n, self.max_retries)
            self.stats["retries"] += 1

        def give_up(retry: Retry, attempts: int) -> NoReturn:
            log.warning("%s failed (%s) after %d attempt(s); retry later", doing, retry.problem, attempts)
            wait = f"; {who} asked to wait {retry.retry_after:.0f} s" if retry.retry_after else ""
            raise RetryableChannelError(f"{api}: {retry.problem} after {attempts} attempt(s){wait}")

        return with_retries(attempt, max_retries=self.max_retries, max_retry_wait=self.max_retry_wait,
                            delay=self._delay, sleep=self.sleep, on_retry=on_retry, give_up=give_up)  # fmt: skip
