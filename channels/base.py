"""The channel interface every sink implements, the message every sink receives, and the error tree.

::

    ChannelError (models.errors.DeliveryError → OmnicastError)
     ├── ChannelConfigError      a setting is wrong; nothing was sent (stop the run); also a ConfigurationError
     ├── RetryableChannelError   try again later (timeouts, 429, 4xx SMTP replies, full disk)
     ├── PermanentChannelError   this message will never go (bad address, 5xx SMTP reply, schema rejected)
     └── InDoubtChannelError     handed over, answer lost (connection dropped after DATA): never resent

Adapters map their vendor's errors onto this tree at the boundary (``raise ... from exc``); dispatch records
the reason per recipient and never lets one recipient's failure stop the others.

A channel that can tell which messages it already holds (a file sink sees its files) implements
``already_delivered``: after a crash between hand-over and outcome, dispatch asks it instead of guessing, so a
message is never delivered twice. A channel that cannot tell gets its messages one at a time, so at most one
message is ever in doubt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from models.errors import ConfigurationError, DeliveryError
from models.message import LedgerKey, OutboundMessage, Recipient

__all__ = [
    "Channel", "ChannelConfigError", "ChannelError", "DeliveryResult", "InDoubtChannelError", "InMemoryChannel",
    "LedgerKey", "OutboundMessage", "PermanentChannelError", "Recipient", "RetryableChannelError",
]  # fmt: skip


class ChannelError(DeliveryError):
    """Base of every channel failure."""


class ChannelConfigError(ChannelError, ConfigurationError):
    """A channel URL or setting is unusable; the message names it and says how to fix it."""


class RetryableChannelError(ChannelError):
    """The message may go through on a later attempt."""


class PermanentChannelError(ChannelError):
    """The message will never go through as it is.

    ``suppress`` names a suppression-list reason (``smtp_permanent``, ``hard_bounce``) when the failure says the
    *address* is dead (SMTP 550/551/553 to RCPT TO, a provider's inactive recipient): dispatch then puts the address
    on the suppression list, so it is never tried again.
    """

    def __init__(self, message: str, *, suppress: str | None = None) -> None:
        super().__init__(message)
        self.suppress = suppress


class InDoubtChannelError(ChannelError):
    """The message may or may not have been accepted (the connection dropped after the message was handed over and
    before the answer came). Dispatch records it ``failed``/``in_doubt`` and never sends it again."""


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to one message at the adapter. ``provider_id`` is what a human would look up
    (Message-ID, file name, provider's id)."""

    status: Literal["sent", "failed"]
    provider_id: str | None = None
    error: str | None = None
    retryable: bool = False
    in_doubt: bool = False
    suppress: str | None = None
    """A suppression-list reason when the failure says the address is dead (see ``PermanentChannelError``)."""

    @classmethod
    def sent(cls, provider_id: str | None = None) -> DeliveryResult:
        return cls("sent", provider_id=provider_id)

    @classmethod
    def failed(cls, error: ChannelError) -> DeliveryResult:
        return cls(
            "failed",
            error=f"{type(error).__name__}: {error}",
            retryable=isinstance(error, RetryableChannelError),
            in_doubt=isinstance(error, InDoubtChannelError),
            suppress=error.suppress if isinstance(error, PermanentChannelError) else None,
        )


class Channel(ABC):
    """A sink for one channel. ``send`` delivers one message; ``send_batch`` may group (files, API batches).

    Class attributes say what the gate needs: ``name`` is the ledger's channel value, ``consent_channel`` the
    consent a recipient must have given, ``batch_size`` how many messages ``send_batch`` takes at once.
    """

    name: ClassVar[str]
    consent_channel: ClassVar[str]
    batch_size: ClassVar[int] = 100
    knows_deliveries: ClassVar[bool] = False
    """True when ``already_delivered`` can tell what this channel holds (then whole batches are handed over)."""
    hands_over_batches: ClassVar[bool] = False
    """True for a channel that cannot tell what it delivered but whose provider takes a batch per call (an ESP's
    batch API): whole batches are handed over, so a crash leaves at most one call's messages in doubt (never
    resent), instead of one call per message."""

    @abstractmethod
    def send(self, message: OutboundMessage) -> DeliveryResult:
        """Deliver one message; return its result (never raise for a per-message failure)."""

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[DeliveryResult]:
        """Deliver several; one result per message, in order."""
        return [self.send(message) for message in messages]

    def can_reach(self, message: OutboundMessage) -> str | None:
        """``None`` when the recipient has an address for this channel, else the suppression reason."""
        return None

    def already_delivered(self, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, str] | None:
        """Which of ``messages`` this channel already holds, with their provider ids; ``None`` when it cannot tell.

        Dispatch asks after a run died between handing messages over and recording what happened to them. The
        messages absent from the answer were never delivered and are sent again; with ``None`` they are in doubt.
        """
        return None

    def close(self) -> None:  # noqa: B027  (optional hook: most channels hold nothing to release)
        """Flush and release resources."""


class InMemoryChannel(Channel):
    """Keeps every delivered message in ``delivered``; for tests and dry runs.

    ``fail`` maps a customer id to the error its message should fail with.
    """

    consent_channel = "email"
    knows_deliveries = True

    def __init__(
        self,
        name: str = "memory",
        consent_channel: str = "email",
        fail: dict[int, ChannelError] | None = None,
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.consent_channel = consent_channel  # type: ignore[misc]
        self.fail = dict(fail or {})
        self.delivered: list[OutboundMessage] = []
        self.closed = False

    def send(self, message: OutboundMessage) -> DeliveryResult:
        error = self.fail.get(message.customer_id)
        if error is not None:
            return DeliveryResult.failed(error)
        self.delivered.append(message)
        return DeliveryResult.sent(f"memory-{len(self.delivered)}")

    def already_delivered(self, messages: Sequence[OutboundMessage]) -> dict[LedgerKey, str] | None:
        """The messages of ``messages`` in ``delivered`` (what this channel holds)."""
        held = {m.ledger_key: f"memory-{i}" for i, m in enumerate(self.delivered, start=1)}
        return {m.ledger_key: held[m.ledger_key] for m in messages if m.ledger_key in held}

    def close(self) -> None:
        self.closed = True
