"""Turn a planned reminder into the subject, text and HTML of one mail.

Templates are Jinja2 files the user edits: <templates>/<language>/<template>.{subject,txt,html}.j2.
Amounts and dates are formatted with babel in the mail language's locale (rules.languages),
not the company's, so an English customer of a German company reads "€1,234.56".

The template context (the contract for template authors):

    company        rules.company (name, phone, website, sender, reply_to, ...)
    bank           company.bank (holder, iban, bic, bank_name; all but iban may be None)
    customer_name  str
    reminder       the PlannedReminder (stage, planned_day, invoice_numbers, ...)
    items          list of MailItem: number, issue_date, due_date, days_overdue (negative:
                   days until due), amount, paid_amount, open_amount, currency, stage
    totals         [(currency, open amount)] of all items, sorted by currency
    due_totals     the same for items that are due (days_overdue >= 0)
    payable        due_totals plus the fee: what to transfer now
    fee            Decimal or None; fee_currency its currency
    deadline       date or None
    today, language, locale

Filters: money(amount, currency), amounts(pairs), longdate, shortdate.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
from babel.dates import format_date
from babel.lists import format_list
from babel.numbers import format_currency

from mahnwerk.models import ZERO, Invoice, Language
from mahnwerk.plan_types import PlannedItem, PlannedReminder
from mahnwerk.rules import Company, Rules

PARTS: tuple[str, ...] = ("subject", "txt", "html")
_LINE_BREAKS = re.compile(r"[\s\x00-\x1f\x7f]+")

# The locale of the mail being rendered. A context variable rather than a template variable,
# so that filters also work inside macros imported without context.
_LOCALE: ContextVar[str] = ContextVar("mahnwerk_render_locale")


class RenderError(Exception):
    """A mail could not be rendered; the message says which file to fix."""


class TemplateMissing(RenderError):
    def __init__(self, template: str, language: str, path: Path) -> None:
        super().__init__(f"{path}: template {template!r} ({language}) is missing")
        self.template = template
        self.language = language
        self.path = path


class TemplateBroken(RenderError):
    """A syntax error, an undefined variable or a failing expression in a template."""

    def __init__(
        self, template: str, language: str, file: str | None, line: int | None, message: str
    ) -> None:
        where = f"{file or '?'}:{line}" if line else (file or "?")
        super().__init__(f"{where}: {message}")
        self.template = template
        self.language = language
        self.file = file
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class MailItem:
    """One invoice as templates see it: flat, so that a template never reaches into the plan."""

    number: str
    issue_date: date
    due_date: date
    days_overdue: int
    amount: Decimal
    paid_amount: Decimal
    open_amount: Decimal
    currency: str
    stage: str
    promised: date | None = None

    @classmethod
    def of(cls, item: PlannedItem) -> MailItem:
        inv = item.invoice
        return cls(
            number=inv.number,
            issue_date=inv.issue_date,
            due_date=inv.due_date,
            days_overdue=item.days_overdue,
            amount=inv.amount,
            paid_amount=inv.paid_amount,
            open_amount=inv.open_amount,
            currency=inv.currency,
            stage=item.stage,
            promised=item.promised,
        )


def format_money(amount: Decimal | int, currency: str, locale: str) -> str:
    # A float would already have lost cents; refuse it rather than print a wrong amount.
    if isinstance(amount, float | bool) or not isinstance(amount, Decimal | int):
        raise TypeError(f"amounts must be Decimal, got {type(amount).__name__}: {amount!r}")
    return _currency(amount, currency, locale)


# babel takes some 40 µs a call and a mail shows each amount and date twice (text and
# HTML); the same few values recur across a batch, so they are kept.
@functools.lru_cache(maxsize=4096)
def _currency(amount: Decimal | int, currency: str, locale: str) -> str:
    return format_currency(amount, currency, locale=locale)


@functools.lru_cache(maxsize=4096)
def format_long_date(d: date, locale: str) -> str:
    return format_date(d, format="long", locale=locale)


@functools.lru_cache(maxsize=4096)
def format_short_date(d: date, locale: str) -> str:
    # babel's "short" has a two-digit year in de_DE (15.10.26); "medium" is the usual 15.10.2026.
    return format_date(d, format="medium", locale=locale)


def one_line(text: str) -> str:
    """Subjects are headers: a line break from customer data must not start a new header."""
    return _LINE_BREAKS.sub(" ", text).strip()


def _current_locale() -> str:
    try:
        return _LOCALE.get()
    except LookupError:
        raise RuntimeError("mahnwerk filters need Renderer.render (no locale set)") from None


def _money_filter(amount: Decimal | int, currency: str) -> str:
    return format_money(amount, currency, _current_locale())


def _amounts_filter(pairs: Iterable[tuple[str, Decimal]]) -> str:
    locale = _current_locale()
    return format_list([format_money(a, c, locale) for c, a in pairs], locale=locale)


def _longdate_filter(d: date) -> str:
    return format_long_date(d, _current_locale())


def _shortdate_filter(d: date) -> str:
    return format_short_date(d, _current_locale())


@contextmanager
def _locale(locale: str) -> Iterator[None]:
    token = _LOCALE.set(locale)
    try:
        yield
    finally:
        _LOCALE.reset(token)


def _sum_by_currency(pairs: Iterable[tuple[str, Decimal]]) -> list[tuple[str, Decimal]]:
    sums: dict[str, Decimal] = {}
    for currency, amount in pairs:
        sums[currency] = sums.get(currency, ZERO) + amount
    return sorted(sums.items())


def _template_location(exc: BaseException) -> tuple[str | None, int | None]:
    """The innermost template frame: Jinja rewrites tracebacks to point into the .j2 files."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.filename or exc.name, exc.lineno
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    if not frames:
        return None, None
    return frames[-1].filename, frames[-1].lineno


class Renderer:
    def __init__(self, templates_dir: Path, rules: Rules) -> None:
        self.templates_dir = templates_dir
        self.rules = rules
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(templates_dir, encoding="utf-8"),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html.j2",), default_for_string=False, default=False
            ),
            keep_trailing_newline=True,
            # Block tags on their own line leave no blank lines behind in the text part.
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            money=_money_filter,
            amounts=_amounts_filter,
            longdate=_longdate_filter,
            shortdate=_shortdate_filter,
        )

    def path(self, template: str, language: str, part: str) -> Path:
        return self.templates_dir / language / f"{template}.{part}.j2"

    def render(
        self, reminder: PlannedReminder, today: date, extra: Mapping[str, Any] | None = None
    ) -> RenderedMail:
        """`extra` adds variables (a reply notice's `reply`) next to the usual ones."""
        return self._render(reminder, today, self.rules.company, extra)

    def check(self, template: str, language: str) -> list[str]:
        """Render with sample data so that a broken template shows before a customer's mail.

        Every part is rendered on its own, so that one broken file does not hide another.
        """
        problems: list[str] = []
        for part in PARTS:
            if not self.path(template, language, part).is_file():
                problems.append(f"{self.path(template, language, part)}: missing")
        locale = self._locale_for(language)
        if locale is None:
            problems.append(f"no locale for language {language!r} in rules (languages:)")
        if problems or locale is None:
            return problems
        stage = _stage_for(self.rules, template)
        for reminder, company in _samples(self.rules, template, stage, language, date.today()):
            context = _context(reminder, reminder.planned_day, company, locale)
            context["reply"] = _sample_reply(reminder.planned_day)
            for part in PARTS:
                where = self.path(template, language, part)
                try:
                    out = self._render_part(template, language, part, context)
                except RenderError as exc:
                    message = str(exc)
                except Exception as exc:  # a check reports everything rather than stopping
                    message = f"{where}: {type(exc).__name__}: {exc}"
                else:
                    empty = part == "subject" and not one_line(out)
                    message = f"{where}: renders an empty subject" if empty else ""
                if message and message not in problems:
                    problems.append(message)
        return problems

    def _locale_for(self, language: str) -> str | None:
        return next((loc for lang, loc in self.rules.languages.items() if lang == language), None)

    def _render(
        self,
        reminder: PlannedReminder,
        today: date,
        company: Company,
        extra: Mapping[str, Any] | None = None,
    ) -> RenderedMail:
        template, language = reminder.template, reminder.language
        if template is None:
            raise RenderError(
                f"{reminder.key}: stage {reminder.stage!r} ({reminder.action}) sends no mail"
            )
        locale = self._locale_for(language)
        if locale is None:
            raise RenderError(f"{reminder.key}: no locale for language {language!r} in rules")
        context = _context(reminder, today, company, locale)
        if extra:
            context.update(extra)
        subject, text, html = [self._render_part(template, language, p, context) for p in PARTS]
        return RenderedMail(subject=one_line(subject), text=text, html=html)

    def _render_part(self, template: str, language: str, part: str, context: dict[str, Any]) -> str:
        name = f"{language}/{template}.{part}.j2"
        try:
            with _locale(context["locale"]):
                return self.env.get_template(name).render(context)
        except jinja2.TemplateNotFound as exc:
            # The stage file itself, or a layout or macro file it extends or imports.
            missing = exc.name if isinstance(exc.name, str) else name
            raise TemplateMissing(template, language, self.templates_dir / missing) from None
        except Exception as exc:
            file, line = _template_location(exc)
            message = exc.message if isinstance(exc, jinja2.TemplateError) else None
            message = message or f"{type(exc).__name__}: {exc}"
            if isinstance(exc, jinja2.TemplateSyntaxError):
                message = f"syntax error: {message}"
            raise TemplateBroken(template, language, file or name, line, message) from exc


def _context(
    reminder: PlannedReminder, today: date, company: Company, locale: str
) -> dict[str, Any]:
    items = [MailItem.of(i) for i in reminder.items]
    due_totals = _sum_by_currency((i.currency, i.open_amount) for i in items if i.days_overdue >= 0)
    # A zero fee is no fee: "Mahngebühr: 0,00 €" would only puzzle the customer.
    fee = reminder.fee if reminder.fee else None
    fee_pair = [(reminder.fee_currency, fee)] if fee is not None else []
    return {
        "company": company,
        "bank": company.bank,
        "customer_name": reminder.customer_name,
        "reminder": reminder,
        "items": items,
        "totals": sorted(reminder.totals.items()),
        "due_totals": due_totals,
        "payable": _sum_by_currency([*due_totals, *fee_pair]),
        "fee": fee,
        "fee_currency": reminder.fee_currency,
        "deadline": reminder.deadline,
        "today": today,
        "language": reminder.language,
        "locale": locale,
    }


def _sample_reply(today: date) -> dict[str, Any]:
    """What a reply notice or acknowledgement sees (inbox.py builds the real one)."""
    return {
        "label": "promise",
        "label_name": "Zahlungszusage",
        "confidence": 0.9,
        "reasons": ["promise: 'wir zahlen bis'"],
        "decision": "promise: confidence 0.90",
        "review": False,
        "sender": "buchhaltung@kunde.example",
        "subject": "AW: Zahlungserinnerung",
        "date": None,
        "text": "Wir zahlen bis Ende nächster Woche.",
        "facts": SimpleNamespace(promised_date=today + timedelta(days=10), paid_date=None),
        "customer_name": "Muster Kunde GmbH",
        "customer_id": "K-0001",
        "key": "<sample@kunde.example>",
    }


def _stage_for(rules: Rules, template: str) -> str:
    for pi, si, name in rules.referenced_templates():
        if name == template:
            return rules.policies[pi].stages[si].name
    return template


def sample_reminder(
    rules: Rules, template: str, stage: str, language: str, today: date
) -> PlannedReminder:
    """A realistic mail for previews and checks: two invoices, one partly paid, a fee, a deadline.

    Days are taken from the stage in the rules, so that a pre-due sample is not yet due.
    """
    return _sample(rules, template, stage, language, today, count=2, fee=True, deadline=True)


def _samples(
    rules: Rules, template: str, stage: str, language: str, today: date
) -> list[tuple[PlannedReminder, Company]]:
    """Variants that take the other branches: StrictUndefined only sees branches that run.

    One invoice without fee, deadline or optional company fields; five invoices in two
    currencies, some not yet due, with every optional field filled in.
    """
    company = rules.company
    bare = company.model_copy(
        update={
            "phone": None,
            "website": None,
            "bank": company.bank.model_copy(
                update={"holder": None, "bic": None, "bank_name": None}
            ),
        }
    )
    bank = company.bank
    full = company.model_copy(
        update={
            "phone": company.phone or "+49 30 1234567",
            "website": company.website or "www.example.com",
            "bank": bank.model_copy(
                update={
                    "holder": bank.holder or company.name,
                    "bic": bank.bic or "COBADEFFXXX",
                    "bank_name": bank.bank_name or "Beispielbank",
                }
            ),
        }
    )
    one = _sample(rules, template, stage, language, today, count=1, fee=False, deadline=False)
    many = _sample(rules, template, stage, language, today, count=5, fee=True, deadline=True)
    return [
        (sample_reminder(rules, template, stage, language, today), company),
        (one, bare),
        (many, full),
    ]


def _sample(
    rules: Rules,
    template: str,
    stage: str,
    language: str,
    today: date,
    *,
    count: int,
    fee: bool,
    deadline: bool,
) -> PlannedReminder:
    policy = rules.policies[-1]
    days, fee_amount, deadline_days = 14, Decimal("5.00"), 10
    for p in rules.policies:
        s = next((s for s in p.stages if s.name == stage), None)
        if s is not None:
            policy, days = p, s.days
            fee_amount = s.fee or fee_amount
            deadline_days = s.deadline_days or deadline_days
            break
    currency = rules.company.currency
    other = "USD" if currency != "USD" else "CHF"
    # (amount, paid, currency, days overdue); the later ones make a mixed, multi-currency mail.
    shapes = [
        (Decimal("1234.56"), ZERO, currency, days),
        (Decimal("500.00"), Decimal("200.00"), currency, days - 2),
        (Decimal("89.90"), ZERO, other, -3),
        (Decimal("2000.00"), ZERO, currency, 0),
        (Decimal("10.00"), ZERO, currency, days + 14),
    ][:count]
    lang: Language = "en" if language == "en" else "de"
    items = []
    for n, (amount, paid, cur, overdue) in enumerate(shapes):
        due = today - timedelta(days=overdue)
        inv = Invoice(
            number=f"RE-2026-{42 + n * 15:04d}",
            customer_id="K-10077",
            customer_name="Müller & Söhne GmbH",
            email="buchhaltung@mueller-soehne.example",
            amount=amount,
            currency=cur,
            issue_date=due - timedelta(days=30),
            due_date=due,
            language=lang,
            paid_amount=paid,
        )
        items.append(PlannedItem(inv, stage, "sample", overdue))
    totals = dict(_sum_by_currency((i.invoice.currency, i.invoice.open_amount) for i in items))
    return PlannedReminder(
        key=f"sample-{lang}-{template}",
        customer_id="K-10077",
        customer_name="Müller & Söhne GmbH",
        to="buchhaltung@mueller-soehne.example",
        language=language,
        policy=policy.name,
        stage=stage,
        action="email",
        template=template,
        items=tuple(items),
        totals=totals,
        fee=fee_amount if fee else None,
        fee_currency=rules.company.currency,
        deadline=today + timedelta(days=deadline_days) if deadline else None,
        planned_day=today,
        reason="sample",
    )
