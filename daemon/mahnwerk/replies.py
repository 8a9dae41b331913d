"""What a classified reply does to its invoices: the state machine, as a table.

Pure: given the matched invoices, the classification, whether the sender can be
trusted and the rules, `decide` returns the thread events to write, the people to
tell and whether the mail waits in the review queue. Every event carries its reason,
because the thread is the record a person (or a lawyer) reads later.

Gates come before the table, in this order, and each sends the reply to review with
no automatic state change: not matched to any invoice; the sender does not belong to
the customer, or our receiving server saw DKIM or DMARC fail; confidence below
`replies.confidence_threshold`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from mahnwerk import ledger
from mahnwerk.inbound_types import Classification, Facts, Label
from mahnwerk.matching import Match
from mahnwerk.models import Event
from mahnwerk.rules import Replies

PROCESSED = "processed"
REVIEW = "review"


@dataclass(frozen=True, slots=True)
class Action:
    """One row of the table: what a label does once it passed the gates."""

    event: str | None  # the ledger event on each invoice (besides reply_received)
    notify: bool  # a person is mailed the customer's text
    review: bool  # the mail also waits in the review queue
    acknowledge: str | None  # template of the optional acknowledgement to the customer
    block_address: bool = False


ACTIONS: dict[Label, Action] = {
    # Hold until the payment shows in an import; the pause ends on its own after that.
    "paid": Action(ledger.PAUSED, notify=False, review=False, acknowledge=None),
    # Pause until the promised date plus grace; a broken promise is followed up after.
    "promise": Action(ledger.PAUSED, notify=False, review=False, acknowledge="ack_promise"),
    # Mahnstopp: nothing more goes out until a person lifts it.
    "dispute": Action(ledger.STOPPED, notify=True, review=False, acknowledge="ack_dispute"),
    "question": Action(None, notify=True, review=True, acknowledge=None),
    # No state change; a stated return date may postpone (replies.pause_on_auto_reply).
    "auto_reply": Action(None, notify=False, review=False, acknowledge=None),
    # The reminder had no legal receipt; the address is blocked until fixed.
    "bounce": Action(None, notify=True, review=False, acknowledge=None, block_address=True),
    "other": Action(None, notify=False, review=True, acknowledge=None),
}


@dataclass(frozen=True, slots=True)
class Received:
    """The parts of a received mail the thread keeps (the raw bytes are stored by hash)."""

    key: str  # the Message-ID, or "sha256:<hash>" without one
    sha256: str
    message_id: str
    from_address: str
    subject: str
    date: datetime | None
    own_text: str
    defects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    state: str  # PROCESSED or REVIEW
    reason: str
    events: list[Event] = field(default_factory=list)
    notify: bool = False
    acknowledge: str | None = None
    block_address: str | None = None  # the customer address a bounce marks undeliverable


def decide(
    received: Received,
    match: Match,
    result: Classification,
    *,
    trust_problem: str | None,
    rules: Replies,
    now: datetime,
    today: date,
    bounced_to: str | None = None,
) -> Decision:
    """The decision for one reply; `today` is the company's calendar day of `now`."""
    label = result.label
    gate = _gate(match, result, trust_problem, rules)
    action = ACTIONS[label]
    if gate is not None:
        reason = f"review: {gate}"
        return Decision(REVIEW, reason, _received_events(received, match, result, reason, now))
    events: list[Event] = []
    reason = f"{label}: {_summary(result)}"
    until = _until(label, result.facts, rules, today)
    if label == "auto_reply" and until is None:
        reason += "; no state change"
    events += _received_events(received, match, result, reason, now)
    if action.event == ledger.PAUSED or (label == "auto_reply" and until is not None):
        hold_reason = _hold_reason(label, result.facts, until, rules)
        data: dict[str, Any] = {
            "until": until.isoformat() if until else None,
            "kind": label,
            "reply": received.key,
        }
        if result.facts.promised_date is not None:
            data["promised"] = result.facts.promised_date.isoformat()
        events += [Event(n, ledger.PAUSED, now, hold_reason, data) for n in match.invoices]
    elif action.event == ledger.STOPPED:
        stop = f"Mahnstopp: the customer disputes the claim (reply {received.key})"
        events += [
            Event(n, ledger.STOPPED, now, stop, {"kind": label, "reply": received.key})
            for n in match.invoices
        ]
    state = REVIEW if action.review else PROCESSED
    if action.review:
        reason += "; a person answers (review queue)"
    block = bounced_to if action.block_address and bounced_to else None
    return Decision(
        state,
        reason,
        events,
        notify=action.notify,
        acknowledge=action.acknowledge if rules.acknowledge else None,
        block_address=block,
    )


_AUTH_RESULT = re.compile(r"\b(dkim|dmarc)\s*=\s*([a-z]+)", re.IGNORECASE)


def auth_problem(headers: Mapping[str, Sequence[str]], authserv_id: str | None) -> str | None:
    """Why the sender cannot be believed, per our own server's Authentication-Results.

    Only headers naming `authserv_id` count: anyone can add such a header before the
    mail reaches us (RFC 8601 section 5). DMARC fail, or DKIM fail with no passing
    signature, is a problem; a missing verdict is not (many small servers add none).
    """
    if not authserv_id:
        return None
    for value in headers.get("authentication-results", ()):
        head, _, rest = value.partition(";")
        words = head.split()
        if not words or words[0].casefold() != authserv_id.casefold():
            continue
        verdicts: dict[str, set[str]] = defaultdict(set)
        for method, result in _AUTH_RESULT.findall(rest):
            verdicts[method.lower()].add(result.lower())
        if "fail" in verdicts["dmarc"]:
            return f"DMARC failed at {authserv_id}: the sender may be forged"
        if "fail" in verdicts["dkim"] and "pass" not in verdicts["dkim"]:
            return f"DKIM failed at {authserv_id}: the mail may have been altered or forged"
    return None


def _gate(
    match: Match, result: Classification, trust_problem: str | None, rules: Replies
) -> str | None:
    if not match.matched:
        return f"not matched to an invoice ({match.detail})"
    if result.label == "bounce":
        return None  # bounces come from mail servers, not the customer
    if not match.sender_related:
        return f"the sender does not belong to customer {match.customer_id} ({match.detail})"
    if trust_problem is not None:
        return trust_problem
    if result.confidence < rules.confidence_threshold:
        return (
            f"{result.label} with confidence {result.confidence:.2f}, below the threshold "
            f"{rules.confidence_threshold:.2f}"
        )
    return None


def _until(label: Label, facts: Facts, rules: Replies, today: date) -> date | None:
    """The last paused day, or None for no pause."""
    if label == "paid":
        return today + timedelta(days=rules.paid_hold_days)
    if label == "promise":
        if facts.promised_date is not None:
            return max(facts.promised_date, today) + timedelta(days=rules.promise_grace_days)
        return today + timedelta(days=rules.promise_default_days)
    back = facts.return_date  # the first day they are back: the pause ends the day before
    if label == "auto_reply" and rules.pause_on_auto_reply and back is not None and back > today:
        return back - timedelta(days=1)
    return None


def _hold_reason(label: Label, facts: Facts, until: date | None, rules: Replies) -> str:
    if label == "paid":
        said = f" on {facts.paid_date.isoformat()}" if facts.paid_date else ""
        return (
            f"paid: the customer says it was paid{said}; held {rules.paid_hold_days} days "
            "for the payment to show in an import"
        )
    if label == "promise":
        if facts.promised_date is not None:
            return (
                f"promise: to pay by {facts.promised_date.isoformat()}, "
                f"plus {rules.promise_grace_days} days' grace"
            )
        return f"promise: to pay, no date given; paused {rules.promise_default_days} days"
    return f"auto_reply: away until {until.isoformat() if until else '?'}"


def _summary(result: Classification) -> str:
    parts = [f"confidence {result.confidence:.2f}"]
    facts = result.facts
    for name, value in (
        ("promised", facts.promised_date),
        ("paid", facts.paid_date),
        ("amount", facts.amount),
        ("back", facts.return_date),
    ):
        if value is not None:
            parts.append(f"{name} {value}")
    if result.reasons:
        parts.append(result.reasons[0])
    return ", ".join(parts)


def facts_json(facts: Facts) -> dict[str, Any]:
    return {
        "promised_date": facts.promised_date.isoformat() if facts.promised_date else None,
        "paid_date": facts.paid_date.isoformat() if facts.paid_date else None,
        "amount": str(facts.amount) if facts.amount is not None else None,
        "invoice_refs": list(facts.invoice_refs),
        "return_date": facts.return_date.isoformat() if facts.return_date else None,
        "installments": facts.installments,
    }


def _received_events(
    received: Received, match: Match, result: Classification, reason: str, now: datetime
) -> list[Event]:
    data = received_json(received, match, result)
    return [Event(n, ledger.REPLY_RECEIVED, now, reason, data) for n in match.invoices]


# The customer's words kept in the thread; the whole mail is stored by hash.
EXCERPT_CHARS = 2000


def received_json(received: Received, match: Match, result: Classification) -> dict[str, Any]:
    return {
        "key": received.key,
        "sha256": received.sha256,
        "message_id": received.message_id,
        "from": received.from_address,
        "subject": received.subject,
        "date": received.date.isoformat() if received.date else None,
        "text": received.own_text[:EXCERPT_CHARS],
        "defects": list(received.defects),
        "match": {"how": match.how, "detail": match.detail, "invoices": list(match.invoices)},
        "label": result.label,
        "confidence": round(result.confidence, 3),
        "facts": facts_json(result.facts),
        "reasons": list(result.reasons),
        "classifier": result.version,
    }


def invoices_in(decisions: Sequence[Decision]) -> set[str]:
    return {e.invoice for d in decisions for e in d.events}


def by_person(
    invoice: str,
    label: Label,
    *,
    promised: date | None,
    note: str,
    rules: Replies,
    now: datetime,
    today: date,
) -> list[Event]:
    """`mahnwerk resolve`: a person's reading of the customer's reply, acted on through the
    same table as the classifier's, without its gates (a person is the gate)."""
    facts = Facts(promised_date=promised, paid_date=today if label == "paid" else None)
    said = f" ({note})" if note else ""
    events = [
        Event(
            invoice,
            ledger.REPLY_RESOLVED,
            now,
            f"resolved by a person as {label}{said}",
            {"label": label, "note": note, "promised": promised.isoformat() if promised else None},
        )
    ]
    action = ACTIONS[label]
    until = _until(label, facts, rules, today)
    if action.event == ledger.PAUSED or (label == "auto_reply" and until is not None):
        data: dict[str, Any] = {"until": until.isoformat() if until else None, "kind": label}
        if promised is not None:
            data["promised"] = promised.isoformat()
        reason = f"{_hold_reason(label, facts, until, rules)} (a person decided{said})"
        events.append(Event(invoice, ledger.PAUSED, now, reason, data))
    elif action.event == ledger.STOPPED:
        reason = f"Mahnstopp: disputed (a person decided{said})"
        events.append(Event(invoice, ledger.STOPPED, now, reason, {"kind": label}))
    return events
