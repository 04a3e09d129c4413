"""The .eml outbox: one file per ledger key, never replaced, and it knows what it holds."""

from __future__ import annotations

from pathlib import Path

from channels.outbox import EmlOutboxTransport
from tests.channels.conftest import message


def test_a_message_handed_over_twice_is_written_once(tmp_path: Path) -> None:
    outbox = EmlOutboxTransport(tmp_path)
    first = outbox.deliver(b"From: a@b.example\r\n\r\nfirst\r\n", message(1))
    second = outbox.deliver(b"From: a@b.example\r\n\r\nsecond\r\n", message(1))
    assert first == second
    assert (tmp_path / first).read_bytes().endswith(b"first\r\n")  # the delivered copy is never replaced
    assert [p.name for p in tmp_path.iterdir()] == [first]


def test_the_outbox_tells_which_messages_it_holds(tmp_path: Path) -> None:
    outbox = EmlOutboxTransport(tmp_path)
    name = outbox.deliver(b"x\r\n", message(1))
    assert EmlOutboxTransport(tmp_path).already_delivered([message(1), message(2)]) == {message(1).ledger_key: name}


def test_a_batch_writes_every_file_once(tmp_path: Path) -> None:
    outbox = EmlOutboxTransport(tmp_path, writers=4)
    items = [(f"m{i}\r\n".encode(), message(i)) for i in range(1, 21)]
    names = outbox.deliver_batch(items)
    outbox.deliver_batch(items)
    outbox.close()
    assert len(set(names)) == 20 and len(list(tmp_path.glob("*.eml"))) == 20
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_the_email_channel_hands_whole_batches_to_an_outbox_that_knows_its_files(tmp_path: Path) -> None:
    from channels.email import EmailChannel
    from channels.render import EmailRenderer
    from channels.tokens import UnsubscribeSigner

    channel = EmailChannel(
        EmlOutboxTransport(tmp_path), EmailRenderer(), sender="Shop <hi@shop.example>",
        public_url="https://shop.example", unsubscribe_mailto="u@shop.example", signer=UnsubscribeSigner("k" * 32),
    )  # fmt: skip
    assert channel.knows_deliveries
    (result,) = channel.send_batch([message(1)])
    assert channel.already_delivered([message(1), message(2)]) == {message(1).ledger_key: result.provider_id}


def test_temporary_files_a_killed_writer_left_are_tidied_but_fresh_ones_kept(tmp_path: Path) -> None:
    import os
    import time

    stale, fresh = tmp_path / "..new.abc.tmp", tmp_path / "..new.def.tmp"
    stale.write_bytes(b"half a message")
    fresh.write_bytes(b"being written right now")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    EmlOutboxTransport(tmp_path)
    assert not stale.exists() and fresh.exists()
