"""The planner: who gets which reminder stage, for which invoices, when, and why.

A pure function of (invoices, histories, rules, now). It never reads the clock
and does no I/O (tests/test_purity.py enforces the imports), so every decision
can be replayed from the thread and tested with a table of cases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

from mahnwerk.calendar import SendCalendar
from mahnwerk.models import EMPTY_HISTORY, ZERO, History, Invoice
from mahnwerk.plan_types import Deferred, Plan, PlannedItem, PlannedReminder
from mahnwerk.rules import ContactLimits, Override, Policy, Rules, Stage


class _Due(NamedTuple):
    invoice: Invoice
    policy: Policy
    stage: Stage
    rank: tuple[int, int]
    reason: str
    days_overdue: int
    promised: date | None = None


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A policy as flat tables: the planner consults it for every invoice."""

    policy: Policy
    stages: tuple[Stage, ...]
    days: tuple[int, ...]
    pre_due: tuple[bool, ...]
    names: tuple[str, ...]
    index: dict[str, int]


def _compile(policy: Policy) -> _Compiled:
    stages = tuple(policy.stages)
    return _Compiled(
        policy,
        stages,
        tuple(s.days for s in stages),
        tuple(s.is_pre_due for s in stages),
        tuple(s.name for s in stages),
        {s.name: i for i, s in enumerate(stages)},
    )


def plan(
    invoices: Iterable[Invoice],
    histories: Mapping[str, History],
    rules: Rules,
    now: datetime,
    undeliverable: Mapping[str, str] | None = None,
) -> Plan:
    """Plan one run at `now` (timezone-aware).

    All invoices go in, paid and cancelled ones too: their threads still count
    towards a customer's contact limits. `undeliverable` maps casefolded
    addresses the mail server refused for good to why; nothing more goes to
    them until the address changes or a person clears it.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    tz = rules.company.tz
    calendar = SendCalendar(rules.send_window, tz)
    status = calendar.status(now)
    if not status.open:
        return Plan(now, False, status.note, status.opens_at, (), ())
    today = now.astimezone(tz).date()
    compiled = [(p.match, _compile(p)) for p in rules.policies]
    default = compiled[-1][1]
    # Where a stage of any policy stands, for invoices that moved between policies.
    known_days = {s.name: s.days for p in reversed(rules.policies) for s in p.stages}
    specific = compiled[:-1]
    overridden = bool(rules.overrides.invoices or rules.overrides.customers)
    week_ago = _week_before(now)
    broken_promises = rules.replies.broken_promise_template

    by_customer: dict[str, list[Invoice]] = defaultdict(list)
    for inv in invoices:
        by_customer[inv.customer_id].append(inv)

    history_of = histories.get
    empty = EMPTY_HISTORY
    reminders: list[PlannedReminder] = []
    deferred: list[Deferred] = []
    for customer_id in sorted(by_customer):
        invs = by_customer[customer_id]
        due: list[_Due] = []
        for inv in invs:
            if inv.status != "open" or inv.amount <= inv.paid_amount:
                continue
            history = history_of(inv.number, empty)
            policy = default
            for match, candidate in specific:
                if match.matches(inv):
                    policy = candidate
                    break
            step = None
            if broken_promises and history is not empty and history.hold is not None:
                step = _broken_promise(inv, history, policy, broken_promises, today)
            if step is None:
                step = _next_due(inv, history, policy, known_days, today, tz)
            if step is None:
                continue
            if overridden or (
                history is not empty and (history.hold or history.stop or history.pending)
            ):
                blocker = _blocker(inv, history, rules, today)
                if blocker is not None:
                    deferred.append(Deferred(customer_id, (inv.number,), step.stage.name, blocker))
                    continue
            due.append(step)
        if not due:
            continue
        mails = [d for d in due if d.stage.action == "email"]
        handoffs = [d for d in due if d.stage.action == "escalate"]
        if mails:
            contact = _customer_contacts(invs, histories, week_ago)
            limit = _contact_limit(contact, rules.contact_limits, week_ago, today, tz)
            if limit is None:
                mail = _consolidate(customer_id, invs, mails, rules, today)
                refused = undeliverable.get(mail.to.casefold()) if undeliverable else None
                if refused is None:
                    reminders.append(mail)
                else:
                    deferred.append(
                        Deferred(
                            customer_id,
                            tuple(sorted(mail.invoice_numbers)),
                            mail.stage,
                            f"address {mail.to} is undeliverable: {refused}",
                        )
                    )
            else:
                top = max(mails, key=lambda d: d.rank)
                numbers = tuple(sorted(d.invoice.number for d in mails))
                deferred.append(Deferred(customer_id, numbers, top.stage.name, limit))
        if handoffs:
            reminders.append(_consolidate(customer_id, invs, handoffs, rules, today))
    return Plan(now, True, "", None, tuple(reminders), tuple(deferred))


def _next_due(
    inv: Invoice,
    history: History,
    policy: _Compiled,
    known_days: Mapping[str, int],
    today: date,
    tz: ZoneInfo,
) -> _Due | None:
    """Stages go strictly in order: stage k+1 needs stage k sent, and waits both
    for its own offset from the due date and for the gap between the two
    offsets counted from when stage k really went out. So a late start or a
    downtime never bursts or skips; a pre-due stage is skipped once due.

    Stage k is the most recent stage in the thread. When it is not one of this
    policy's (the invoice moved to another policy, or a stage was renamed), its
    place is found by its `days` in the policy that has it, else by how overdue
    the invoice was when it went out; the invoice goes on from there, spaced
    from that mail, and never gets a stage it already had.
    """
    last_index = -1
    previous: str | None = None
    previous_days = 0
    last_at: datetime | None = None
    moved = False
    spaced_from = ""  # when the mail spaced from is not `previous` (a broken-promise follow-up)
    if history is not EMPTY_HISTORY:
        # Read by name only: the common "nothing due today" case parses no timestamp.
        name = history.last_stage()
        if name == BROKEN_PROMISE:
            # The follow-up is outside the sequence: go on from the last regular stage,
            # spaced from the follow-up itself, so no stage (least of all the final
            # notice) is skipped because the promise took time.
            follow_up = history.last_sent()
            assert follow_up is not None
            regular = next((s for s in reversed(history.sent) if s.stage in policy.index), None)
            if regular is not None:
                name, last_at, spaced_from = regular.stage, follow_up.at, BROKEN_PROMISE
        if name is not None and name in policy.index:
            last_index = policy.index[name]
            previous, previous_days = name, policy.days[last_index]
        elif name is not None:
            last = history.last_sent()
            assert last is not None  # a history with a last stage has a last entry
            previous, last_at, moved = last.stage, last.at, True
            days = known_days.get(last.stage)
            previous_days = (
                (last.at.astimezone(tz).date() - inv.due_date).days if days is None else days
            )
            last_index = sum(1 for d in policy.days if d <= previous_days) - 1
    days_overdue = (today - inv.due_date).days
    index = last_index + 1
    count = len(policy.stages)
    sent_before = history.sent_names() if moved else frozenset()
    while index < count and (
        (policy.pre_due[index] and days_overdue >= 0) or policy.names[index] in sent_before
    ):
        index += 1
    if index == count or days_overdue < policy.days[index]:
        return None
    stage = policy.stages[index]
    ago = 0
    if previous is not None:
        if last_at is None:
            found = history.last_sent()
            assert found is not None
            last_at = found.at
        ago = (today - last_at.astimezone(tz).date()).days
        if ago < policy.days[index] - previous_days:
            return None
    if days_overdue < 0:
        reason = f"{stage.name}: due in {_days(-days_overdue)}"
    elif days_overdue == 0:
        reason = f"{stage.name}: due today"
    else:
        reason = f"{stage.name}: {_days(days_overdue)} overdue"
    if previous is not None:
        reason += f", {spaced_from or previous} sent {_days(ago)} ago"
        if spaced_from:
            reason += f" (after {previous})"
        if moved:
            reason += f" (now under policy {policy.policy.name})"
    else:
        reason += ", no reminder sent yet"
    if index > last_index + 1 and not moved:
        skipped = ", ".join(policy.names[i] for i in range(last_index + 1, index))
        reason += f" ({skipped} skipped: due date passed)"
    return _Due(inv, policy.policy, stage, (index, stage.days), reason, days_overdue)


BROKEN_PROMISE = "broken_promise"


def _broken_promise(
    inv: Invoice, history: History, policy: _Compiled, template: str, today: date
) -> _Due | None:
    """The follow-up once a promise's pause ran out with the invoice still open.

    Once per promise: a mail of this stage sent since the pause began settles it (a new
    promise is a new pause). It ranks above the regular stages, so a consolidated mail
    speaks of the promise; the regular stages go on afterwards from how overdue it is.
    """
    hold = history.hold
    if hold is None or hold.kind != "promise" or hold.until is None or today <= hold.until:
        return None
    since = hold.since
    if any(s.stage == BROKEN_PROMISE and (since is None or s.at >= since) for s in history.sent):
        return None
    days_overdue = (today - inv.due_date).days
    stage = Stage(name=BROKEN_PROMISE, days=max(days_overdue, 0), template=template)
    promised = hold.promised.isoformat() if hold.promised else "no date"
    reason = (
        f"{BROKEN_PROMISE}: promised to pay by {promised}, paused until "
        f"{hold.until.isoformat()}, still open ({_days(days_overdue)} overdue)"
    )
    rank = (len(policy.stages), stage.days)
    return _Due(inv, policy.policy, stage, rank, reason, days_overdue, hold.promised)


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"


def _paused(what: str, until: date | None, reason: str, today: date) -> str | None:
    """The note for a pause that still holds today (`until` is the last paused day)."""
    if until is not None and today > until:
        return None
    return f"{what}{f' until {until.isoformat()}' if until else ''}: {reason}"


def _override_block(override: Override | None, whose: str, today: date) -> str | None:
    if override is None:
        return None
    if override.exclude is not None:
        return f"{whose} excluded: {override.exclude.reason}"
    pause = override.pause
    return None if pause is None else _paused(f"{whose} paused", pause.until, pause.reason, today)


def _history_block(history: History, today: date) -> str | None:
    pending = history.pending
    if pending is not None:
        note = f"{pending.stage} is in the outbox ({pending.state}): {pending.mail_key}"
        if pending.state in ("failed", "unknown"):
            note += "; a person decides: see `mahnwerk outbox`"
        return note
    if history.stop is not None:
        return f"stopped: {history.stop}"
    hold = history.hold
    return None if hold is None else _paused("on hold", hold.until, hold.reason, today)


# Checked in this order; the first that applies holds the invoice back.
_BLOCKERS: tuple[Callable[[Invoice, History, Rules, date], str | None], ...] = (
    lambda inv, h, r, d: _override_block(r.overrides.invoices.get(inv.number), "invoice", d),
    lambda inv, h, r, d: _override_block(r.overrides.customers.get(inv.customer_id), "customer", d),
    lambda inv, h, r, d: _history_block(h, d),
)


def _blocker(inv: Invoice, history: History, rules: Rules, today: date) -> str | None:
    for check in _BLOCKERS:
        reason = check(inv, history, rules, today)
        if reason is not None:
            return reason
    return None


def _customer_contacts(
    invs: list[Invoice], histories: Mapping[str, History], since: datetime
) -> list[datetime]:
    """When the customer was mailed: one entry per mail, however many invoices it listed.

    Only what the limits can see: each invoice's newest mail, and the mails after
    `since`. A thread is in time order, so the walk back stops at the first
    older mail.
    """
    seen: dict[str, datetime] = {}
    for inv in invs:
        history = histories.get(inv.number, EMPTY_HISTORY)
        if history is EMPTY_HISTORY:
            continue
        for sent in history.newest_first():
            if sent.action != "email":
                continue
            if sent.mail_key not in seen:
                seen[sent.mail_key] = sent.at
            if sent.at <= since:
                break
    return list(seen.values())


def _week_before(now: datetime) -> datetime:
    # In UTC: on an aware local time, "minus 7 days" is wall-clock and off by the DST hour.
    return now.astimezone(UTC) - timedelta(days=7)


def _contact_limit(
    mails: list[datetime], limits: ContactLimits, week_ago: datetime, today: date, tz: ZoneInfo
) -> str | None:
    if not mails:
        return None
    last_day = max(mails).astimezone(tz).date()
    gap = (today - last_day).days
    if gap < limits.min_days_between:
        return (
            f"contact limit: last mail {_days(gap)} ago ({last_day.isoformat()}), "
            f"at least {_days(limits.min_days_between)} between mails"
        )
    recent = sum(1 for at in mails if at > week_ago)
    if recent >= limits.max_per_week:
        return (
            f"contact limit: {recent} mails in the last 7 days, "
            f"at most {limits.max_per_week} per week"
        )
    return None


def _by_due_date(d: _Due) -> tuple[date, str]:
    return (d.invoice.due_date, d.invoice.number)


def _by_rank(d: _Due) -> tuple[int, int]:
    return d.rank


def _by_issue_date(i: Invoice) -> tuple[date, str]:
    return (i.issue_date, i.number)


def _consolidate(
    customer_id: str, invs: list[Invoice], due: list[_Due], rules: Rules, today: date
) -> PlannedReminder:
    """One mail for the customer listing every due invoice; its stage is the highest."""
    due = sorted(due, key=_by_due_date) if len(due) > 1 else due
    top = max(due, key=_by_rank) if len(due) > 1 else due[0]
    # The newest due invoice carries the customer's current name, address and language;
    # a paid or cancelled one may hold an address the customer has given up.
    contact = max((d.invoice for d in due), key=_by_issue_date) if len(due) > 1 else due[0].invoice
    totals: dict[str, Decimal] = {}
    for d in due:
        inv = d.invoice
        totals[inv.currency] = totals.get(inv.currency, ZERO) + inv.amount - inv.paid_amount
    numbers = [d.invoice.number for d in due]
    stage = top.stage
    kind = "escalate" if stage.action == "escalate" else "mail"
    key = f"{kind}:{customer_id}:{stage.name}:{'+'.join(sorted(numbers))}:{today.isoformat()}"
    deadline = None if stage.deadline_days is None else today + timedelta(days=stage.deadline_days)
    if len(due) == 1:
        reason = f"{top.invoice.number} {top.reason}"
    else:
        reason = f"{stage.name} (highest of {len(due)} invoices): " + "; ".join(
            f"{d.invoice.number} {d.reason}" for d in due
        )
    return PlannedReminder(
        key=key,
        customer_id=customer_id,
        customer_name=contact.customer_name,
        to=contact.email,
        language=contact.language,
        policy=top.policy.name,
        stage=stage.name,
        action=stage.action,
        template=stage.template,
        items=tuple(
            PlannedItem(d.invoice, d.stage.name, d.reason, d.days_overdue, d.promised) for d in due
        ),
        totals=dict(sorted(totals.items())),
        fee=stage.fee,
        fee_currency=rules.company.currency,
        deadline=deadline,
        planned_day=today,
        reason=reason,
    )
