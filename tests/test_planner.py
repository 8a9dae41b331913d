"""The planner, table-driven: one invoice in, the stage (or nothing) out."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal

import pytest

from _factory import TODAY, at, inv, sent, shipped_rules
from mahnwerk.models import EMPTY_HISTORY, History, Hold, Invoice, SentStage
from mahnwerk.planner import plan
from mahnwerk.rules import Rules

RULES = shipped_rules()
NOW = at(TODAY)

# (case, invoice, history, expected stage or None, reason fragment)
SINGLE = [
    ("due in 8 days: too early", inv(overdue=-8), EMPTY_HISTORY, None, None),
    ("due in 7 days: pre_due", inv(overdue=-7), EMPTY_HISTORY, "pre_due", "pre_due: due in 7 days"),
    ("due in 1 day: pre_due", inv(overdue=-1), EMPTY_HISTORY, "pre_due", "due in 1 day"),
    ("due today: pre_due skipped", inv(overdue=0), EMPTY_HISTORY, None, None),
    ("3 days overdue: nothing yet", inv(overdue=3), EMPTY_HISTORY, None, None),
    ("7 days overdue", inv(overdue=7), EMPTY_HISTORY, "reminder_1", "pre_due skipped"),
    ("60 days overdue starts at 1", inv(overdue=60), EMPTY_HISTORY, "reminder_1", "60 days"),
    ("reminder_1 10 days ago", inv(overdue=60), sent(("reminder_1", 10)), None, None),
    (
        "reminder_1 14 days ago",
        inv(overdue=22),
        sent(("reminder_1", 14)),
        "reminder_2",
        "reminder_2: 22 days overdue, reminder_1 sent 14 days ago",
    ),
    (
        "reminder_2 at its own offset",
        inv(overdue=20),
        sent(("reminder_1", 14)),
        None,
        None,
    ),
    (
        "final after reminder_2",
        inv(overdue=40),
        sent(("reminder_1", 28), ("reminder_2", 14)),
        "final_notice",
        "final_notice: 40 days overdue",
    ),
    (
        "escalate after final",
        inv(overdue=60),
        sent(("reminder_1", 42), ("reminder_2", 28), ("final_notice", 14)),
        "escalate",
        "final_notice sent 14 days ago",
    ),
    (
        "all done",
        inv(overdue=90),
        sent(("reminder_1", 60), ("reminder_2", 40), ("final_notice", 20), ("escalate", 5)),
        None,
        None,
    ),
    (
        "pre_due sent, spacing to reminder_1 is 14 days",
        inv(overdue=7),
        sent(("pre_due", 10)),
        None,
        None,
    ),
    (
        "pre_due sent 14 days ago",
        inv(overdue=7),
        sent(("pre_due", 14)),
        "reminder_1",
        "pre_due sent 14 days ago",
    ),
    ("pre_due never twice", inv(overdue=-3), sent(("pre_due", 2)), None, None),
    ("paid", inv(overdue=30, status="paid"), EMPTY_HISTORY, None, None),
    ("cancelled", inv(overdue=30, status="cancelled"), EMPTY_HISTORY, None, None),
    ("fully paid by amount", inv(overdue=30, paid="100.00"), EMPTY_HISTORY, None, None),
    ("partly paid", inv(overdue=30, paid="40.00"), EMPTY_HISTORY, "reminder_1", None),
]


@pytest.mark.parametrize(
    ("invoice", "history", "stage", "fragment"),
    [c[1:] for c in SINGLE],
    ids=[c[0] for c in SINGLE],
)
def test_single_invoice(
    invoice: Invoice, history: History, stage: str | None, fragment: str | None
) -> None:
    result = plan([invoice], {invoice.number: history}, RULES, NOW)
    assert result.window_open
    stages = [r.stage for r in result.reminders]
    assert stages == ([stage] if stage else [])
    if fragment:
        assert fragment in result.reminders[0].reason


def test_partly_paid_is_reminded_for_the_remainder() -> None:
    result = plan([inv(overdue=30, amount="1234.56", paid="234.56")], {}, RULES, NOW)
    assert result.reminders[0].totals == {"EUR": Decimal("1000.00")}


def test_one_mail_per_customer_with_the_highest_stage_and_totals_per_currency() -> None:
    invoices = [
        inv("A", overdue=-3),
        inv("B", overdue=10, amount="200.00"),
        inv("C", overdue=40, amount="50.00", currency="USD"),
        inv("D", overdue=3),  # not due for anything
        inv("E", customer="K-2", overdue=10),
    ]
    histories = {"C": sent(("reminder_1", 20))}
    result = plan(invoices, histories, RULES, NOW)
    by_customer = {r.customer_id: r for r in result.reminders}
    assert set(by_customer) == {"K-1", "K-2"}
    mail = by_customer["K-1"]
    assert mail.stage == "reminder_2"
    assert mail.template == "reminder_2"
    assert mail.invoice_numbers == ["C", "B", "A"]  # by due date
    assert [i.stage for i in mail.items] == ["reminder_2", "reminder_1", "pre_due"]
    assert mail.totals == {"EUR": Decimal("300.00"), "USD": Decimal("50.00")}
    assert "highest of 3 invoices" in mail.reason


def test_escalation_is_separate_from_the_customer_mail_and_goes_to_a_person() -> None:
    done = sent(("reminder_1", 42), ("reminder_2", 28), ("final_notice", 14))
    result = plan([inv("A", overdue=60), inv("B", overdue=10)], {"A": done}, RULES, NOW)
    actions = sorted((r.action, r.stage) for r in result.reminders)
    assert actions == [("email", "reminder_1"), ("escalate", "escalate")]


@pytest.mark.parametrize(
    ("history", "fragment"),
    [
        (sent(("reminder_1", 2)), "last mail 2 days ago"),
        (
            History(
                sent=(
                    SentStage("pre_due", at(TODAY - timedelta(days=6)), "m1"),
                    SentStage("reminder_1", at(TODAY - timedelta(days=3)), "m2"),
                )
            ),
            "2 mails in the last 7 days",
        ),
    ],
)
def test_contact_limits_hold_back_and_say_why(history: History, fragment: str) -> None:
    rules = RULES.model_copy(
        update={"contact_limits": RULES.contact_limits.model_copy(update={"min_days_between": 3})}
    )
    # Another invoice of the same customer carries the recent mails.
    invoices = [inv("OLD", overdue=100, status="paid"), inv("NEW", overdue=10)]
    result = plan(invoices, {"OLD": history}, rules, NOW)
    assert result.reminders == ()
    assert len(result.deferred) == 1
    assert fragment in result.deferred[0].reason


def test_one_mail_listing_several_invoices_counts_once() -> None:
    shared = History(sent=(SentStage("reminder_1", at(TODAY - timedelta(days=5)), "same"),))
    invoices = [inv("A", overdue=40), inv("B", overdue=40), inv("C", overdue=10)]
    result = plan(invoices, {"A": shared, "B": shared}, RULES, NOW)
    # One mail 5 days ago: neither limit applies, C is due.
    assert [r.invoice_numbers for r in result.reminders] == [["C"]]


def _with_overrides(customers: dict[str, object], invoices: dict[str, object]) -> Rules:
    data = RULES.model_dump(by_alias=True)
    data["overrides"] = {"customers": customers, "invoices": invoices}
    return Rules.model_validate(data)


@pytest.mark.parametrize(
    ("rules", "history", "planned", "fragment"),
    [
        (
            _with_overrides({"K-1": {"pause": {"reason": "Ratenzahlung"}}}, {}),
            None,
            False,
            "customer paused: Ratenzahlung",
        ),
        (
            _with_overrides({"K-1": {"pause": {"reason": "x", "until": TODAY}}}, {}),
            None,
            False,
            "until 2026-11-25",
        ),
        (
            _with_overrides(
                {"K-1": {"pause": {"reason": "x", "until": TODAY - timedelta(days=1)}}}, {}
            ),
            None,
            True,
            None,
        ),
        (
            _with_overrides({}, {"R-1": {"exclude": {"reason": "Gutschrift"}}}),
            None,
            False,
            "invoice excluded: Gutschrift",
        ),
        (RULES, History(stop="dispute: Ware fehlt"), False, "stopped: dispute"),
        (RULES, History(hold=Hold("promise", TODAY + timedelta(days=3))), False, "on hold until"),
        (RULES, History(hold=Hold("promise", TODAY - timedelta(days=1))), True, None),
    ],
)
def test_pauses_exclusions_and_stops(
    rules: Rules, history: History | None, planned: bool, fragment: str | None
) -> None:
    invoice = inv(overdue=10)
    result = plan([invoice], {} if history is None else {"R-1": history}, rules, NOW)
    assert bool(result.reminders) is planned
    if fragment:
        assert fragment in result.deferred[0].reason


@pytest.mark.parametrize(
    ("now", "note", "opens"),
    [
        (at(date(2026, 11, 28)), "is a Saturday", at(date(2026, 11, 30))),
        (at(date(2026, 12, 25)), "holiday", at(date(2026, 12, 28))),
        (at(TODAY, 8, 59), "before the send window", at(TODAY)),
        (at(TODAY, 16, 0), "after the send window", at(date(2026, 11, 26))),
        (at(date(2026, 12, 31), 12), None, None),
    ],
)
def test_send_window(now: object, note: str | None, opens: object) -> None:
    result = plan([inv(overdue=10)], {}, RULES, now)  # type: ignore[arg-type]
    if note is None:
        assert result.window_open and result.reminders
        return
    assert not result.window_open
    assert result.reminders == ()
    assert note in result.window_note
    assert result.opens_at == opens


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan([], {}, RULES, NOW.replace(tzinfo=None))


def test_plan_is_deterministic() -> None:
    invoices = [inv(f"R-{i}", customer=f"K-{i % 7}", overdue=i) for i in range(-8, 80)]
    first = plan(invoices, {}, RULES, NOW)
    second = plan(list(reversed(invoices)), {}, RULES, NOW)
    assert [r.to_json() for r in first.reminders] == [r.to_json() for r in second.reminders]


def _simulate(invoice: Invoice, run_days: list[date]) -> list[tuple[str, date]]:
    """Run the planner on each day, recording what it sends as the shell would."""
    history = EMPTY_HISTORY
    sent_log: list[tuple[str, date]] = []
    for day in run_days:
        result = plan([invoice], {invoice.number: history}, RULES, at(day, 10))
        for r in result.reminders:
            sent_log.append((r.stage, day))
            history = History(
                sent=(*history.sent, SentStage(r.stage, at(day, 10), r.key, r.action))
            )
    return sent_log


def test_daily_runs_send_every_stage_once_in_order_with_spacing() -> None:
    due = date(2026, 9, 30)
    invoice = inv(overdue=(TODAY - due).days)
    days = [due - timedelta(days=10) + timedelta(days=n) for n in range(130)]
    log = _simulate(invoice, days)
    assert [s for s, _ in log] == [
        "pre_due",
        "reminder_1",
        "reminder_2",
        "final_notice",
        "escalate",
    ]
    stage_days = {s.name: s.days for s in RULES.policies[0].stages}
    for (a, day_a), (b, day_b) in itertools.pairwise(log):
        assert (day_b - day_a).days >= stage_days[b] - stage_days[a]
        assert (day_b - due).days >= stage_days[b]


def test_downtime_never_bursts_or_skips() -> None:
    # Imported 60 days overdue: reminder_1 first, reminder_2 14 days after it.
    due = TODAY - timedelta(days=60)
    invoice = inv(overdue=60)
    log = _simulate(invoice, [TODAY + timedelta(days=n) for n in range(40)])
    assert [s for s, _ in log][:2] == ["reminder_1", "reminder_2"]
    assert log[0][1] == TODAY
    assert (log[1][1] - log[0][1]).days == 14
    assert due < log[0][1]


def _two_policies() -> Rules:
    """`big` for open amounts from 1000 (its own stage names), the shipped default after it."""
    data = RULES.model_dump(by_alias=True)
    big = {
        "name": "big",
        "match": {"min_amount": "1000.00"},
        "stages": [
            {"name": "big_r1", "days": 5, "template": "reminder_1"},
            {"name": "big_r2", "days": 15, "template": "reminder_2"},
            {"name": "big_final", "days": 30, "template": "final_notice"},
            {"name": "big_escalate", "days": 40, "action": "escalate"},
        ],
    }
    data["policies"] = [big, *data["policies"]]
    return Rules.model_validate(data)


@pytest.mark.parametrize(
    ("paid", "history", "expected", "fragment"),
    [
        # Still under `big`: its own sequence.
        ("0", sent(("big_r1", 30), ("big_r2", 20)), "big_final", "big_r2 sent 20 days ago"),
        # A part payment moves it to `standard`: it goes on after big_r2 (day 15), so
        # reminder_2 (day 21) is next, 6 days after big_r2 at the earliest; never reminder_1.
        ("600.00", sent(("big_r1", 30), ("big_r2", 20)), "reminder_2", "now under policy standard"),
        ("600.00", sent(("big_r1", 30), ("big_r2", 3)), None, None),
        # A stage no policy knows any more: placed by how overdue the invoice was then
        # (25 days, so after big_r2 at 15): big_final (30) is next.
        ("0", sent(("old_name", 20)), "big_final", "old_name sent 20 days ago"),
        ("0", sent(("old_name", 2)), None, None),  # 43 days overdue then: past every stage
    ],
)
def test_an_invoice_that_changes_policy_goes_on_where_it_stood(
    paid: str, history: History, expected: str | None, fragment: str | None
) -> None:
    invoice = inv(overdue=45, amount="1500.00", paid=paid)
    result = plan([invoice], {invoice.number: history}, _two_policies(), NOW)
    stages = [r.stage for r in result.reminders]
    assert stages == ([expected] if expected else [])
    if fragment:
        assert fragment in result.reminders[0].reason


def test_a_moved_invoice_never_gets_a_stage_it_already_had() -> None:
    # Sent reminder_2 under `standard`, then big_r2; back under `standard` it must not
    # get reminder_2 again, but final_notice.
    invoice = inv(overdue=60, amount="500.00")
    history = sent(("reminder_1", 50), ("reminder_2", 36), ("big_r2", 20))
    result = plan([invoice], {invoice.number: history}, _two_policies(), NOW)
    assert [r.stage for r in result.reminders] == ["final_notice"]


def test_the_mail_goes_to_the_address_of_the_due_invoices_not_a_paid_one() -> None:
    invoices = [
        inv("A", overdue=10, email="old@kunde.example"),
        # Newer, but paid: its address and language must not steer the reminder.
        inv("C", overdue=-20, status="paid", email="new@kunde.example", language="en"),
    ]
    (mail,) = plan(invoices, {}, RULES, NOW).reminders
    assert (mail.to, mail.language) == ("old@kunde.example", "de")


def test_the_weekly_limit_counts_seven_days_across_a_dst_change() -> None:
    # 2026-10-25 is the autumn DST change in Berlin. A mail on Tue 10-20 at 10:30
    # local (08:30 UTC) is more than 7 x 24 h before Tue 10-27 at 09:45 local
    # (08:45 UTC), though only 6 d 23 h 15 min of wall-clock time apart.
    rules = RULES.model_copy(
        update={
            "contact_limits": RULES.contact_limits.model_copy(
                update={"min_days_between": 0, "max_per_week": 2}
            )
        }
    )
    day = date(2026, 10, 27)
    history = History(
        sent=(
            SentStage("pre_due", at(date(2026, 10, 20), 10, 30), "m1"),
            SentStage("reminder_1", at(date(2026, 10, 23), 10, 0), "m2"),
        )
    )
    invoices = [inv("OLD", overdue=40, status="paid", today=day), inv("NEW", overdue=10, today=day)]
    result = plan(invoices, {"OLD": history}, rules, at(day, 9, 45))
    assert [r.invoice_numbers for r in result.reminders] == [["NEW"]]
