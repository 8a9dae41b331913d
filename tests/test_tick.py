"""`mahnwerk tick` in-process against a real SMTP server on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

import smtp_server as loopback
from _factory import at
from _workspace import import_samples, load, smtp_section, write_rules
from mahnwerk import faults
from mahnwerk.delivery import Tick, TickReport
from mahnwerk.models import Event
from mahnwerk.outbox import Entry
from mahnwerk.store import TinyDBStore

smtp_server = loopback.smtp_server

DAY = date(2026, 11, 25)


def run(state: Path, config: Path, day: date, hour: int = 9) -> TickReport:
    store = TinyDBStore(state)
    try:
        return Tick(store, load(config), at(day, hour), environ={}).run()
    finally:
        store.close()


def test_first_tick_sends_the_planned_mails_and_a_second_sends_nothing(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp
) -> None:
    config = write_rules(tmp_path, smtp=smtp_section(smtp_server.port))
    state = tmp_path / "state"
    store = TinyDBStore(state)
    import_samples(store, at(DAY))
    store.close()
    report = run(state, config, DAY)
    assert report.errors == []
    assert report.count("sent") == 14
    assert len(smtp_server.messages) == 14
    again = run(state, config, DAY, 11)
    assert again.count("sent") == 0 and again.count("queued") == 0
    assert len(smtp_server.messages) == 14
    first = message_from_bytes(smtp_server.messages[0].data, policy=policy.default)
    assert first["Auto-Submitted"] == "auto-generated"


def _workspace(tmp_path: Path, port: int, **sections: object) -> tuple[Path, Path]:
    config = write_rules(tmp_path, smtp=smtp_section(port), **sections)
    state = tmp_path / "state"
    store = TinyDBStore(state)
    import_samples(store, at(DAY))
    store.close()
    return config, state


def test_outbox_and_addresses_are_rebuilt_from_the_journal(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp
) -> None:
    config, state = _workspace(tmp_path, smtp_server.port)
    smtp_server.handler.fail("RCPT", 550, "5.1.1 no such user")
    run(state, config, DAY)
    store = TinyDBStore(state)
    before = (sorted(store.view().entries(), key=str), store.view().addresses())
    store.checkpoint()
    store.close()
    (state / "store.json").unlink()
    again = TinyDBStore(state)
    assert (sorted(again.view().entries(), key=str), again.view().addresses()) == before
    assert len(before[1]) == 1


def test_the_secret_is_private_and_message_ids_do_not_change_with_it_kept(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp
) -> None:
    config, state = _workspace(tmp_path, smtp_server.port, outbox={"on_unknown": "resend"})
    smtp_server.handler.fail("MAIL", 451, times=1)
    run(state, config, DAY)
    assert (state / "secret").stat().st_mode & 0o777 == 0o600
    store = TinyDBStore(state)
    (retry,) = [e for e in store.view().entries() if e.state == "retry"]
    store.close()
    assert retry.next_at is not None
    run(state, config, DAY, 11)
    received = [
        message_from_bytes(m.data, policy=policy.default)
        for m in smtp_server.messages
        if retry.key.encode() in m.data
    ]
    assert [m["Message-ID"] for m in received] == [retry.message_id]


def test_without_smtp_settings_mails_stay_queued_and_the_tick_says_why(tmp_path: Path) -> None:
    config = write_rules(tmp_path, smtp=None)
    state = tmp_path / "state"
    store = TinyDBStore(state)
    import_samples(store, at(DAY))
    store.close()
    report = run(state, config, DAY)
    assert report.count("queued") == 14
    assert report.errors == ["14 mail(s) waiting, but rules.yaml has no smtp: section"]


def test_a_server_that_cannot_be_reached_defers_every_mail(tmp_path: Path) -> None:
    config, state = _workspace(tmp_path, 9)  # discard port: nothing listens on loopback
    report = run(state, config, DAY)
    assert report.count("retry") == 14
    assert any("connect failed for 127.0.0.1:9" in e for e in report.errors)
    store = TinyDBStore(state)
    assert {e.state for e in store.view().entries()} == {"retry"}


def _crash(config: Path, state: Path, point: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    env[faults.ENV] = point
    args = ["--config", str(config), "--state-dir", str(state), "tick", "--as-of", str(DAY)]
    proc = subprocess.run(
        [sys.executable, "-m", "mahnwerk", *args], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.parametrize("found", [True, False])
def test_the_sent_folder_decides_for_a_mail_a_crash_left_in_sending(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp, found: bool
) -> None:
    config, state = _workspace(tmp_path, smtp_server.port)
    _crash(config, state, "accepted")
    assert len(smtp_server.messages) == 1
    asked: list[str] = []

    def lookup(entries: Sequence[Entry]) -> dict[str, bool]:
        asked.extend(e.message_id for e in entries)
        return {e.key: found for e in entries}

    store = TinyDBStore(state)
    report = Tick(store, load(config), at(DAY), environ={}, sent_lookup=lookup).run()
    ids = [
        message_from_bytes(m.data, policy=policy.default)["Message-ID"]
        for m in smtp_server.messages
    ]
    assert asked == [ids[0]]
    assert report.count("confirmed" if found else "released") == 1
    # Found: not sent again. Not found: sent again, with the same Message-ID.
    assert len(ids) == (14 if found else 15)
    assert ids.count(ids[0]) == (1 if found else 2)
    assert {e.state for e in store.view().entries()} == {"sent"}


def test_a_failing_sent_folder_lookup_leaves_the_mail_for_the_next_tick(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp
) -> None:
    config, state = _workspace(tmp_path, smtp_server.port)
    _crash(config, state, "accepted")

    def lookup(entries: Sequence[Entry]) -> dict[str, bool]:
        raise ConnectionRefusedError("imap down")

    store = TinyDBStore(state)
    report = Tick(store, load(config), at(DAY), environ={}, sent_lookup=lookup).run()
    assert report.errors == ["Sent folder lookup failed, will try again: imap down"]
    assert [e.state for e in store.view().entries()].count("sending") == 1
    assert len(smtp_server.messages) == 14


def test_each_sent_mail_is_filed_once(tmp_path: Path, smtp_server: loopback.LoopbackSmtp) -> None:
    config, state = _workspace(tmp_path, smtp_server.port)
    filed: list[bytes] = []
    store = TinyDBStore(state)
    Tick(store, load(config), at(DAY), environ={}, filer=filed.append).run()
    assert sorted(filed) == sorted(m.data for m in smtp_server.messages)


def test_without_a_notify_address_the_hand_off_is_recorded_in_the_thread(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp
) -> None:
    config, state = _workspace(tmp_path, smtp_server.port, notify=None)
    # 2027-01-20: the sample invoices have run through all stages by then.
    day = date(2026, 11, 25)
    for _ in range(70):
        run(state, config, day)
        day += timedelta(days=1)
    store = TinyDBStore(state)
    escalated = [
        e for n in store.view().numbers() for e in store.thread(n) if e.type == "escalated"
    ]
    assert escalated
    assert all("no notify address in rules.yaml" in e.reason for e in escalated)
    assert not any(b"Handed over" in m.data or b"bergabe" in m.data for m in smtp_server.messages)


def test_a_mail_cancelled_as_out_of_date_is_queued_afresh_the_same_day(
    tmp_path: Path, smtp_server: loopback.LoopbackSmtp
) -> None:
    config, state = _workspace(tmp_path, smtp_server.port)
    smtp_server.handler.fail("MAIL", 451, times=1)
    run(state, config, DAY)
    store = TinyDBStore(state)
    (retry,) = [e for e in store.view().entries() if e.state == "retry"]
    number = retry.numbers[0]
    invoice = store.view().invoice(number)
    assert invoice is not None
    part = invoice.amount / 2
    with store.transaction() as tx:
        change = {"paid_amount": [str(invoice.paid_amount), str(part)]}
        tx.add(Event(number, "updated", at(DAY, 10), "partly paid", {"changes": change}))
    store.close()
    report = run(state, config, DAY, 12)
    assert [s.result for s in report.steps if s.key == retry.key] == ["cancelled"]
    fresh = [s for s in report.steps if s.key == f"{retry.key}~2"]
    assert [s.result for s in fresh] == ["queued", "sent"]
    (mail,) = [m for m in smtp_server.messages if f"{retry.key}~2".encode() in m.data]
    store = TinyDBStore(state)
    entry = store.view().entry(f"{retry.key}~2")
    assert entry is not None and entry.state == "sent"
    amounts = {i.number: i.open_amount for i in entry.items}
    assert amounts[number] == invoice.amount - part
    assert entry.message_id != retry.message_id
    assert mail.data.count(b"X-Mahnwerk-Key") == 1
    assert not [m for m in smtp_server.messages if f"{retry.key}\r\n".encode() in m.data]
