"""The channel contract: every adapter (in-memory, files, SMTP, Postmark's HTTP API, in-app feed, audience files)
passes the same suite, opened the way a run opens it (its URL through the channel table) and checked at its real
peer (the folder, a local aiosmtpd, a local server that enforces Postmark's API contract).

What every channel promises dispatch: it says what the gate needs (name, consent channel, batch size, how to reach
someone); one result per message, in order; a message goes to its peer once, and a rerun through the ledger adds
nothing; a refused recipient fails alone; a channel that says it knows its deliveries answers exactly; closing twice
is harmless.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from channels.base import Channel, InMemoryChannel, PermanentChannelError
from channels.dispatch import dispatch
from channels.google import member_values
from channels.registry import open_channel
from channels.spec import BY_NAME, AdapterOptions, ChannelResources
from flows.settings import Settings
from models.message import OutboundMessage
from tests.channels.conftest import add_customers, message
from tests.peers.google_dm import GoogleDataManagerServer
from tests.peers.meta_graph import MetaGraphServer
from tests.peers.postmark_server import PostmarkServer
from tests.peers.smtp_server import SmtpPeer
from tests.peers.webhook_receiver import WebhookReceiver

IDS = [1, 2, 3, 4, 5]


@dataclass
class Case:
    """One adapter under contract: the open channel, how many messages its peer holds, and (when the peer can) a way
    to make it refuse one recipient."""

    channel: Channel
    held: Callable[[], int]
    channel_name: str
    refuse: Callable[[OutboundMessage], None] | None = None
    adapter: type | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def message(self, customer_id: int, **changes: Any) -> OutboundMessage:
        base = message(customer_id, channel=self.channel_name)
        return replace(base, **changes) if changes else base


def _settings(tmp_path: Path, **fields: Any) -> Settings:
    return Settings(secret_key="contract-secret", outbox_dir=tmp_path / "outbox", serve_url="https://mail.shop.example",
                    **fields)  # fmt: skip


def _open(name: str, url: str, settings: Settings) -> tuple[Channel, type]:
    spec = BY_NAME[name]
    adapter = spec.adapter_for(url.partition(":")[0])
    assert adapter is not None
    return open_channel(spec, url, ChannelResources(settings)), adapter.load()


def _memory(tmp_path: Path) -> Iterator[Case]:
    channel = InMemoryChannel("email")
    case = Case(channel, lambda: len(channel.delivered), "email")
    case.refuse = lambda m: channel.fail.__setitem__(m.customer_id, PermanentChannelError("refused"))
    yield case


def _eml_files(tmp_path: Path) -> Iterator[Case]:
    folder = tmp_path / "eml"
    channel, adapter = _open("email", f"file://{folder}", _settings(tmp_path))
    yield Case(channel, lambda: len(list(folder.glob("*.eml"))), "email", adapter=adapter)


def _smtp(tmp_path: Path) -> Iterator[Case]:
    with SmtpPeer() as peer:
        channel, adapter = _open("email", f"smtp://127.0.0.1:{peer.port}?pool=1", _settings(tmp_path))
        case = Case(channel, lambda: len(peer.messages), "email", adapter=adapter)
        case.refuse = lambda m: peer.handler.rcpt_replies.__setitem__(m.recipient.email, "550 5.1.1 no such user")
        yield case
        channel.close()


def _postmark(tmp_path: Path) -> Iterator[Case]:
    with PostmarkServer(token="contract-token") as server:
        settings = _settings(tmp_path, postmark_api_url=server.url)
        channel, adapter = _open("email", "postmark://contract-token?message_stream=outbound", settings)
        case = Case(channel, lambda: len(server.accepted), "email", adapter=adapter)
        case.extra["server"] = server
        yield case
        channel.close()


def _inapp(tmp_path: Path) -> Iterator[Case]:
    folder = tmp_path / "inapp"
    channel, adapter = _open("inapp", f"file://{folder}", _settings(tmp_path))

    def cards() -> int:
        return sum(len(path.read_text().splitlines()) for path in folder.glob("*.jsonl"))

    yield Case(channel, cards, "inapp", adapter=adapter)


def _meta_files(tmp_path: Path) -> Iterator[Case]:
    folder = tmp_path / "audiences"
    channel, adapter = _open("meta", f"file://{folder}", _settings(tmp_path))

    def rows() -> int:
        return sum(len(path.read_text().splitlines()) - 1 for path in folder.glob("meta-*.csv"))

    yield Case(channel, rows, "meta", adapter=adapter)


def _inapp_webhook(tmp_path: Path) -> Iterator[Case]:
    secret = "whsec_" + base64.b64encode(b"contract-webhook-secret-32-bytes").decode()
    with WebhookReceiver(secret) as receiver:
        settings = _settings(tmp_path, inapp_webhook_secret=secret)
        channel, adapter = _open("inapp", f"{receiver.url}?timeout=2&max_retries=1", settings)
        case = Case(channel, lambda: len(receiver.events), "inapp", adapter=adapter)
        case.refuse = lambda m: receiver.refuse.add(m.customer_id)
        case.extra["receiver"] = receiver  # not "server": that key means a Postmark peer to the refusal test
        yield case
        channel.close()


def _meta_api(tmp_path: Path) -> Iterator[Case]:
    with MetaGraphServer(token="contract-token", accounts=("1234567890",)) as server:
        settings = _settings(tmp_path, meta_access_token="contract-token", meta_graph_url=server.url)
        channel, adapter = _open("meta", "meta://1234567890", settings)

        def held() -> int:
            return sum(len(members) for members in server.members.values())

        yield Case(channel, held, "meta", adapter=adapter)
        channel.close()


def _google_api(tmp_path: Path) -> Iterator[Case]:
    with GoogleDataManagerServer(token="contract-token", accounts={"1234567890": {"5550001"}}) as server:
        settings = _settings(tmp_path, google_access_token="contract-token", google_datamanager_url=server.url)
        channel, adapter = _open("google", "google://1234567890?lists=loyal-regulars:5550001", settings)

        def held() -> int:
            return sum(len(members) for members in server.members.values())

        case = Case(channel, held, "google", adapter=adapter)
        case.refuse = lambda m: server.refused.add(member_values(m)["email"])
        yield case
        channel.close()


CASES: dict[str, Callable[[Path], Iterator[Case]]] = {
    "memory": _memory, "eml-files": _eml_files, "smtp": _smtp, "postmark": _postmark, "inapp-feed": _inapp,
    "meta-files": _meta_files, "inapp-webhook": _inapp_webhook, "meta-api": _meta_api,
    "google-api": _google_api,
}  # fmt: skip


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    opened = CASES[request.param](tmp_path)
    found = next(opened)
    found.label = request.param
    yield found
    next(opened, None)  # closes the peer


def _consent(engine: Engine, case: Case, ids: list[int]) -> None:
    add_customers(engine, ids, channel=case.channel.consent_channel)


def test_declares_what_the_gate_needs(case: Case) -> None:
    channel = case.channel
    assert channel.name == case.channel_name
    assert isinstance(channel.consent_channel, str) and channel.consent_channel
    assert channel.batch_size >= 1
    if case.adapter is not None:  # opened through the table: schemes and a strict options model
        assert case.adapter.schemes and all(scheme.isascii() for scheme in case.adapter.schemes)
        assert issubclass(case.adapter.Options, AdapterOptions)
        with pytest.raises(ValidationError):
            case.adapter.Options.model_validate({"no_such_option": "1"})


def test_one_result_per_message_in_order(case: Case) -> None:
    messages = [case.message(i) for i in IDS]
    results = case.channel.send_batch(messages)
    assert len(results) == len(messages)
    assert all(result.status == "sent" and result.provider_id for result in results)
    assert case.held() == len(messages)


def test_each_message_reaches_the_peer_once_and_a_rerun_adds_nothing(sqlite_engine: Engine, case: Case) -> None:
    _consent(sqlite_engine, case, IDS)
    messages = [case.message(i) for i in IDS]
    first = dispatch(sqlite_engine, messages, {case.channel_name: case.channel})
    again = dispatch(sqlite_engine, messages, {case.channel_name: case.channel})
    assert first.balanced and again.balanced
    assert first.total_sent == len(IDS) and again.total_sent == 0
    assert again.channels[case.channel_name].already_done == len(IDS)
    assert case.held() == len(IDS)


def test_a_recipient_without_an_address_is_never_handed_over(sqlite_engine: Engine, case: Case) -> None:
    _consent(sqlite_engine, case, [1, 2])
    nobody = case.message(2, recipient=replace(case.message(2).recipient, email=None, phone=None))
    if case.channel.can_reach(nobody) is None:
        pytest.skip(f"the {case.label} channel reaches a customer by id: every customer has an address")
    report = dispatch(sqlite_engine, [case.message(1), nobody], {case.channel_name: case.channel})
    assert report.channels[case.channel_name].suppressed["no_address"] == 1 and report.total_sent == 1
    assert case.held() == 1


def test_a_refused_recipient_fails_alone(sqlite_engine: Engine, case: Case) -> None:
    _consent(sqlite_engine, case, IDS)
    messages = [case.message(i) for i in IDS]
    if "server" in case.extra:  # Postmark refuses an inactive recipient (ErrorCode 406) by its address
        messages[2] = case.message(3, recipient=replace(messages[2].recipient, email="inactive3@example.com"))
    elif case.refuse is not None:
        case.refuse(messages[2])
    else:
        pytest.skip(f"the {case.label} sink has no peer that can refuse one recipient")
    report = dispatch(sqlite_engine, messages, {case.channel_name: case.channel})
    tally = report.channels[case.channel_name]
    assert tally.sent == len(IDS) - 1 and tally.failed["permanent"] == 1 and report.balanced
    assert case.held() == len(IDS) - 1


def test_a_channel_that_knows_its_deliveries_answers_exactly(case: Case) -> None:
    delivered = [case.message(i) for i in (1, 2)]
    never = [case.message(i) for i in (3, 4)]
    case.channel.send_batch(delivered)
    answer = case.channel.already_delivered(delivered + never)
    if not case.channel.knows_deliveries:
        assert answer is None  # it says it cannot tell: dispatch gives it one message at a time
        return
    assert answer is not None and set(answer) == {m.ledger_key for m in delivered}


def test_closing_twice_is_harmless(case: Case) -> None:
    case.channel.send_batch([case.message(1)])
    case.channel.close()
    case.channel.close()
    assert case.held() == 1
