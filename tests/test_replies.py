"""What a classified reply does: the gates, then the table, every event with its reason."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from mahnwerk import ledger
from mahnwerk.inbound_types import Classification, Facts, Label
from mahnwerk.matching import Match
from mahnwerk.replies import (
    ACTIONS,
    PROCESSED,
    REVIEW,
    Received,
    auth_problem,
    by_person,
    decide,
)
from mahnwerk.rules import Replies

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TODAY = date(2026, 11, 26)
RULES = Replies()
RECEIVED = Received(
    "<r@kunde.example>", "ab" * 32, "<r@kunde.example>", "a@kunde.example", "AW", NOW, "text"
)
MATCHED = Match("K-1", ("RE-1", "RE-2"), "message_id", "replies to our mail <m@us>", True)


def result(label: Label, confidence: float = 0.9, **facts: object) -> Classification:
    return Classification(label, confidence, Facts(**facts), ("why",), "rules-1")  # type: ignore[arg-type]


def types(events: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(e.invoice, e.type) for e in events]


# (id, classification, state, extra event type on each invoice or None, notify)
TABLE = [
    ("paid holds", result("paid", paid_date=date(2026, 11, 25)), PROCESSED, ledger.PAUSED, False),
    (
        "promise pauses",
        result("promise", promised_date=date(2026, 12, 10)),
        PROCESSED,
        ledger.PAUSED,
        False,
    ),
    ("dispute stops and tells", result("dispute"), PROCESSED, ledger.STOPPED, True),
    ("question waits and tells", result("question"), REVIEW, None, True),
    ("auto-reply without a date changes nothing", result("auto_reply"), PROCESSED, None, False),
    (
        "auto-reply with a return date pauses",
        result("auto_reply", return_date=date(2026, 12, 4)),
        PROCESSED,
        ledger.PAUSED,
        False,
    ),
    ("other waits", result("other"), REVIEW, None, False),
]


@pytest.mark.parametrize(
    ("classified", "state", "event", "notify"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE]
)
def test_the_table(classified: Classification, state: str, event: str | None, notify: bool) -> None:
    d = decide(RECEIVED, MATCHED, classified, trust_problem=None, rules=RULES, now=NOW, today=TODAY)
    assert d.state == state
    assert d.notify is notify
    expected = [(n, ledger.REPLY_RECEIVED) for n in MATCHED.invoices]
    if event is not None:
        expected += [(n, event) for n in MATCHED.invoices]
    assert types(d.events) == expected
    assert all(e.reason for e in d.events)


def test_every_label_has_a_row() -> None:
    assert set(ACTIONS) == {
        "paid",
        "promise",
        "dispute",
        "question",
        "auto_reply",
        "bounce",
        "other",
    }


def test_pause_lengths() -> None:
    promise = decide(
        RECEIVED,
        MATCHED,
        result("promise", promised_date=date(2026, 12, 10)),
        trust_problem=None,
        rules=RULES,
        now=NOW,
        today=TODAY,
    )
    paused = [e for e in promise.events if e.type == ledger.PAUSED]
    assert paused[0].data == {
        "until": "2026-12-13",
        "kind": "promise",
        "reply": RECEIVED.key,
        "promised": "2026-12-10",
    }
    undated = decide(
        RECEIVED, MATCHED, result("promise"), trust_problem=None, rules=RULES, now=NOW, today=TODAY
    )
    assert next(e.data["until"] for e in undated.events if e.type == ledger.PAUSED) == "2026-12-10"
    paid = decide(
        RECEIVED, MATCHED, result("paid"), trust_problem=None, rules=RULES, now=NOW, today=TODAY
    )
    assert next(e.data["until"] for e in paid.events if e.type == ledger.PAUSED) == "2026-12-03"


GATES = [
    ("unmatched", Match(None, (), "none", "nothing", False), None, 0.9, "not matched"),
    ("a stranger", Match("K-1", ("RE-1",), "message_id", "x", False), None, 0.9, "does not belong"),
    ("forged", MATCHED, "DMARC failed at mx.us.example: the sender may be forged", 0.9, "DMARC"),
    ("unsure", MATCHED, None, 0.4, "below the threshold"),
]


@pytest.mark.parametrize(
    ("found", "trust", "confidence", "why"), [g[1:] for g in GATES], ids=[g[0] for g in GATES]
)
def test_gates_send_to_review_and_change_nothing(
    found: Match, trust: str | None, confidence: float, why: str
) -> None:
    d = decide(
        RECEIVED,
        found,
        result("dispute", confidence),
        trust_problem=trust,
        rules=RULES,
        now=NOW,
        today=TODAY,
    )
    assert d.state == REVIEW
    assert why in d.reason
    assert {e.type for e in d.events} <= {ledger.REPLY_RECEIVED}
    assert d.block_address is None


def test_a_bounce_blocks_the_address_it_returned() -> None:
    d = decide(
        RECEIVED,
        Match("K-1", ("RE-1",), "bounce", "returns our mail", True),
        result("bounce", 0.97),
        trust_problem=None,
        rules=RULES,
        now=NOW,
        today=TODAY,
        bounced_to="a@kunde.example",
    )
    assert (d.state, d.block_address, d.notify) == (PROCESSED, "a@kunde.example", True)


AUTH = [
    ("no trusted server configured", ["mx.us; dmarc=fail"], None, None),
    ("pass", ["mx.us; dkim=pass header.d=kunde.example; dmarc=pass"], "mx.us", None),
    ("dmarc fail", ["mx.us; dkim=pass; dmarc=fail (p=reject)"], "mx.us", "DMARC"),
    ("dkim fail, no pass", ["mx.us 1; dkim=fail reason=bad"], "mx.us", "DKIM"),
    ("one failing of two signatures", ["mx.us; dkim=fail; dkim=pass"], "mx.us", None),
    ("someone else's header is not believed", ["evil.example; dmarc=pass"], "mx.us", None),
    ("forged pass before ours", ["mx.us; dmarc=fail", "evil; dmarc=pass"], "mx.us", "DMARC"),
]


@pytest.mark.parametrize(
    ("values", "authserv", "problem"), [a[1:] for a in AUTH], ids=[a[0] for a in AUTH]
)
def test_auth_problem(values: list[str], authserv: str | None, problem: str | None) -> None:
    found = auth_problem({"authentication-results": tuple(values)}, authserv)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_person_resolves_through_the_same_table() -> None:
    events = by_person(
        "RE-1",
        "promise",
        promised=date(2026, 12, 20),
        note="per Telefon",
        rules=RULES,
        now=NOW,
        today=TODAY,
    )
    assert [e.type for e in events] == [ledger.REPLY_RESOLVED, ledger.PAUSED]
    assert events[1].data["until"] == "2026-12-23"
    assert "per Telefon" in events[1].reason
    stop = by_person("RE-1", "dispute", promised=None, note="", rules=RULES, now=NOW, today=TODAY)
    assert [e.type for e in stop] == [ledger.REPLY_RESOLVED, ledger.STOPPED]
