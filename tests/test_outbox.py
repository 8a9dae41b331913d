"""The outbox state machine, without a server: every transition and every answer's meaning."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from _factory import TODAY, at, inv, shipped_rules
from mahnwerk import ledger, outbox
from mahnwerk.models import Event, Invoice, Pending
from mahnwerk.outbox import Entry, InvalidTransition
from mahnwerk.outcome import Outcome, backoff
from mahnwerk.planner import plan

NOW = at(TODAY, 10)
DAY = timedelta(hours=24)
ACCEPTED = Outcome("accepted", 250, "2.0.0 Ok: queued as Q1", command="DATA")
LATER = Outcome("temporary", 451, "4.3.0 try again later", command="RCPT")
NO_SUCH_USER = Outcome("permanent", 550, "5.1.1 no such user", command="RCPT")
SPAM = Outcome("permanent", 554, "5.7.1 rejected as spam", command="DATA")
LOST_REPLY = Outcome("temporary", None, "timed out", maybe_delivered=True, command="DATA")


class Box:
    """An outbox and the invoices' records, folded from events as the store does."""

    def __init__(self, invoices: Iterable[Invoice] = ()) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self.addresses: dict[str, dict[str, Any]] = {}
        self.records: dict[str, dict[str, Any] | None] = {
            i.number: ledger.new_record(_wire(i)) for i in invoices
        }
        self.log: list[Event] = []

    def add(self, events: Iterable[Event]) -> list[Event]:
        events = list(events)
        for e in events:
            self.log.append(e)
            if e.type in outbox.OUTBOX_EVENTS:
                key = e.data["key"]
                entry = outbox.apply(self.entries.get(key), e)
                assert entry is not None
                self.entries[key] = entry
            elif e.type in outbox.ADDRESS_EVENTS:
                outbox.apply_address(self.addresses, e)
            else:
                self.records[e.invoice] = ledger.apply(self.records.get(e.invoice), e)
        return events

    def entry(self, key: str = "") -> Entry:
        return Entry.from_json(self.entries[key or next(iter(self.entries))])

    def pending(self, number: str) -> Pending | None:
        record = self.records[number]
        assert record is not None
        return ledger.history_of(record).pending


def _wire(i: Invoice) -> dict[str, Any]:
    from mahnwerk.models import invoice_to_json

    return invoice_to_json(i)


def queued(*invoices: Invoice, when: datetime = NOW) -> tuple[Box, Entry]:
    invoices = invoices or (inv("R-1", overdue=10),)
    rules = shipped_rules()
    result = plan(invoices, {}, rules, when)
    assert len(result.reminders) == 1, result
    reminder = result.reminders[0]
    box = Box(invoices)
    box.add(
        outbox.queue(
            reminder,
            kind="reminder",
            to=reminder.to,
            message_id="<id@x.example>",
            eml="ab" * 32,
            subject="Zahlungserinnerung",
            now=when,
        )
    )
    return box, box.entry(reminder.key)


def sending(box: Box, entry: Entry, when: datetime = NOW) -> Entry:
    box.add(outbox.attempt(entry, when))
    return box.entry(entry.key)


def answer(box: Box, entry: Entry, outcome: Outcome, when: datetime = NOW, **kw: Any) -> Entry:
    kw.setdefault("retry_for", DAY)
    kw.setdefault("on_unknown", "hold")
    box.add(outbox.after_outcome(entry, outcome, now=when, accepted_at=when, **kw))
    return box.entry(entry.key)


# -- queueing -------------------------------------------------------------------------


def test_queue_writes_the_entry_and_marks_every_listed_invoice_as_waiting() -> None:
    box, entry = queued(inv("R-1", overdue=10), inv("R-2", overdue=12))
    assert entry.state == "queued"
    assert entry.numbers == ["R-2", "R-1"] or sorted(entry.numbers) == ["R-1", "R-2"]
    assert [i.open_amount for i in entry.items] == [Decimal("100.00")] * 2
    for number in ("R-1", "R-2"):
        assert box.pending(number) == Pending("reminder_1", entry.key, "queued")


def test_a_waiting_invoice_is_not_planned_again() -> None:
    box, entry = queued()
    record = box.records["R-1"]
    assert record is not None
    history = ledger.history_of(record)
    result = plan([inv("R-1", overdue=10)], {"R-1": history}, shipped_rules(), NOW + DAY)
    assert result.reminders == ()
    (held,) = result.deferred
    assert "in the outbox (queued)" in held.reason and entry.key in held.reason


# -- answers ---------------------------------------------------------------------------


def test_accepted_is_recorded_as_sent_on_every_invoice_with_the_proof() -> None:
    box, entry = queued(inv("R-1", overdue=10), inv("R-2", overdue=12))
    entry = answer(box, sending(box, entry), ACCEPTED)
    assert entry.state == "sent"
    assert entry.last is not None and entry.last["response"] == ACCEPTED.response
    sent = [e for e in box.log if e.type == ledger.REMINDER_SENT]
    assert sorted(e.invoice for e in sent) == ["R-1", "R-2"]
    for e in sent:
        assert e.data["message_id"] == "<id@x.example>"
        assert e.data["eml"] == "ab" * 32
        assert e.data["code"] == 250
        assert "queued as Q1" in e.reason
    assert box.pending("R-1") is None
    record = box.records["R-1"]
    assert record is not None
    assert ledger.history_of(record).last_stage() == "reminder_1"


def test_temporary_failures_back_off_and_give_up_after_the_deadline() -> None:
    box, entry = queued()
    waits = []
    when = NOW
    for _ in range(4):
        entry = answer(box, entry, LATER, when)
        assert entry.state == "retry"
        assert entry.next_at is not None
        waits.append(entry.next_at - when)
        when = entry.next_at
    assert waits == [timedelta(seconds=backoff(n)) for n in range(4)]
    assert box.pending("R-1") == Pending("reminder_1", entry.key, "retry")
    # The mirror event is written once, when the invoice's state changed.
    assert sum(1 for e in box.log if e.type == ledger.DELIVERY_DEFERRED) == 1
    entry = answer(box, entry, LATER, NOW + DAY)
    assert entry.state == "failed"
    assert "still failing after 24 hours" in box.log[-2].reason
    assert box.addresses == {}


def test_a_refused_recipient_fails_the_mail_and_blocks_the_address() -> None:
    box, entry = queued()
    entry = answer(box, entry, NO_SUCH_USER)
    assert entry.state == "failed"
    assert box.pending("R-1") == Pending("reminder_1", entry.key, "failed")
    (blocked,) = box.addresses.values()
    assert blocked["email"] == "k-1@kunde.example"
    assert "550 5.1.1 no such user" in blocked["response"]
    reasons = outbox.undeliverable_reasons(box.addresses)
    assert "mahnwerk outbox unblock k-1@kunde.example" in reasons["k-1@kunde.example"]


def test_a_refusal_of_the_content_fails_the_mail_but_not_the_address() -> None:
    box, entry = queued()
    entry = answer(box, sending(box, entry), SPAM)
    assert entry.state == "failed"
    assert box.addresses == {}


@pytest.mark.parametrize(("policy", "state"), [("hold", "unknown"), ("resend", "retry")])
def test_a_lost_reply_after_the_payload_follows_on_unknown(policy: str, state: str) -> None:
    box, entry = queued()
    entry = answer(box, sending(box, entry), LOST_REPLY, on_unknown=policy)
    assert entry.state == state
    if policy == "resend":
        assert entry.next_at == NOW  # at once, with the same Message-ID
        assert "same Message-ID" in box.log[-2].reason
    else:
        assert box.pending("R-1") == Pending("reminder_1", entry.key, "unknown")


def test_planner_defers_mail_to_an_undeliverable_address() -> None:
    rules = shipped_rules()
    result = plan([inv("R-1", overdue=10)], {}, rules, NOW, {"k-1@kunde.example": "refused (550)"})
    assert result.reminders == ()
    (held,) = result.deferred
    assert held.reason == "address k-1@kunde.example is undeliverable: refused (550)"
    # Another customer's address is not affected, and the comparison ignores case.
    result = plan(
        [inv("R-1", overdue=10, email="K-1@Kunde.example"), inv("R-2", customer="K-2")],
        {},
        rules,
        NOW,
        {"k-1@kunde.example": "refused"},
    )
    assert [r.customer_id for r in result.reminders] == ["K-2"]


# -- after a crash ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "policy", "state"),
    [
        (True, "hold", "sent"),
        (True, "resend", "sent"),
        (False, "hold", "queued"),
        (False, "resend", "queued"),
        (None, "hold", "unknown"),
        (None, "resend", "queued"),
    ],
)
def test_reconcile(found: bool | None, policy: str, state: str) -> None:
    box, entry = queued()
    entry = sending(box, entry)
    box.add(outbox.reconcile(entry, found, now=NOW, on_unknown=policy))  # type: ignore[arg-type]
    after = box.entry(entry.key)
    assert after.state == state
    sent = [e for e in box.log if e.type == ledger.REMINDER_SENT]
    assert len(sent) == (1 if found else 0)
    if found:
        assert "Sent folder" in sent[0].reason


def test_a_person_confirms_or_releases_an_unknown_mail() -> None:
    box, entry = queued()
    entry = answer(box, sending(box, entry), LOST_REPLY)
    box.add(outbox.confirm(entry, NOW, "confirmed as delivered by a person"))
    assert box.entry().state == "sent"
    assert box.pending("R-1") is None

    box, entry = queued()
    entry = answer(box, sending(box, entry), LOST_REPLY)
    box.add(outbox.release(entry, NOW, "released by a person"))
    entry = box.entry()
    assert entry.state == "queued" and entry.failures == 0
    assert outbox.due([entry], NOW) == [entry]


# -- the table -------------------------------------------------------------------------


def test_every_transition_outside_the_table_is_refused() -> None:
    box, entry = queued()
    steps = {
        outbox.ATTEMPT: lambda e: outbox.attempt(e, NOW),
        outbox.CANCELLED: lambda e: outbox.cancel(e, NOW, "x"),
        outbox.RELEASED: lambda e: outbox.release(e, NOW, "x"),
        outbox.CONFIRMED: lambda e: outbox.confirm(e, NOW, "x"),
    }
    for state in ("queued", "sending", "retry", "unknown", "failed", "sent", "cancelled"):
        fake = Entry.from_json({**box.entries[entry.key], "state": state})
        for type_, step in steps.items():
            allowed = state in outbox.TRANSITIONS[type_][0]
            if allowed:
                assert step(fake)[0].type == type_
            else:
                with pytest.raises(InvalidTransition):
                    step(fake)


def test_a_sent_mail_cannot_be_sent_again() -> None:
    box, entry = queued()
    entry = answer(box, sending(box, entry), ACCEPTED)
    with pytest.raises(InvalidTransition):
        outbox.attempt(entry, NOW)
    assert outbox.due([entry], NOW + DAY) == []


# -- housekeeping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now_invoice", "why"),
    [
        (inv("R-1", overdue=10, status="paid"), "R-1 is paid"),
        (inv("R-1", overdue=10, paid="40.00"), "R-1 now has 60.00 open, not 100.00"),
        (inv("R-1", overdue=10, email="neu@kunde.example"), "changed to neu@kunde.example"),
        (None, "R-1 is no longer in the store"),
    ],
)
def test_a_waiting_mail_that_went_stale_is_cancelled(now_invoice: Invoice | None, why: str) -> None:
    box, entry = queued()
    entry = answer(box, entry, LATER)
    current = {} if now_invoice is None else {"R-1": now_invoice}
    events = box.add(outbox.housekeeping([entry], current, NOW + DAY))
    assert box.entry().state == "cancelled"
    assert why in events[0].reason
    assert box.pending("R-1") is None
    assert [e.type for e in events] == [outbox.CANCELLED, ledger.REMINDER_CANCELLED]


def test_housekeeping_leaves_current_and_in_flight_mail_alone() -> None:
    box, entry = queued()
    current = {"R-1": inv("R-1", overdue=10)}
    assert outbox.housekeeping([entry], current, NOW) == []
    in_flight = sending(box, entry)
    assert outbox.housekeeping([in_flight], {}, NOW) == []


def test_due_is_queued_and_retries_whose_time_has_come_oldest_first() -> None:
    box, first = queued(when=NOW)
    _other, second = queued(inv("R-9", customer="K-9"), when=NOW - DAY)
    retry = answer(box, first, LATER)
    assert outbox.due([retry, second], NOW) == [second]
    assert retry.next_at is not None
    assert outbox.due([retry, second], retry.next_at) == [second, retry]
