"""Rendering of the shipped templates, and the safety rules every template relies on."""

from __future__ import annotations

import html
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from mahnwerk.config import load_rules
from mahnwerk.models import Invoice, Language
from mahnwerk.plan_types import PlannedItem, PlannedReminder
from mahnwerk.render import (
    RenderedMail,
    Renderer,
    RenderError,
    TemplateBroken,
    TemplateMissing,
    format_long_date,
    format_money,
    format_short_date,
    one_line,
    sample_reminder,
)
from mahnwerk.rules import Rules

ROOT = Path(__file__).parents[1]
RULES: Rules = load_rules(ROOT / "rules.yaml").rules
TEMPLATES = ROOT / RULES.templates_dir
TODAY = date(2026, 10, 5)
DEADLINE = date(2026, 10, 15)
STAGES = ("pre_due", "reminder_1", "reminder_2", "final_notice")
LANGS: tuple[Language, ...] = ("de", "en")
# CLDR puts a no-break space between a German amount and its currency sign.
NBSP = "\u00a0"
REPLY_HINT = {
    "de": "Antworten Sie einfach auf diese E-Mail, falls Sie bereits bezahlt haben "
    "oder etwas nicht stimmt.",
    "en": "Just reply to this email if you have already paid or if something is wrong.",
}


def item(
    number: str,
    due: date,
    *,
    amount: str = "1234.56",
    paid: str = "0",
    currency: str = "EUR",
    stage: str = "reminder_1",
    language: Language = "de",
) -> PlannedItem:
    inv = Invoice(
        number=number,
        customer_id="K-1",
        customer_name="Müller & Söhne GmbH",
        email="ap@mueller.example",
        amount=Decimal(amount),
        currency=currency,
        issue_date=date(2026, 8, 1),
        due_date=due,
        language=language,
        paid_amount=Decimal(paid),
    )
    return PlannedItem(inv, stage, "test", (TODAY - due).days)


def reminder(
    template: str | None,
    language: Language,
    items: list[PlannedItem],
    *,
    customer_name: str = "Müller & Söhne GmbH",
    fee: Decimal | None = None,
    deadline: date | None = None,
) -> PlannedReminder:
    totals: dict[str, Decimal] = {}
    for i in items:
        totals[i.invoice.currency] = totals.get(i.invoice.currency, Decimal(0)) + (
            i.invoice.open_amount
        )
    return PlannedReminder(
        key="k",
        customer_id="K-1",
        customer_name=customer_name,
        to="ap@mueller.example",
        language=language,
        policy="standard",
        stage=template or "escalate",
        action="email" if template else "escalate",
        template=template,
        items=tuple(items),
        totals=totals,
        fee=fee,
        fee_currency="EUR",
        deadline=deadline,
        planned_day=TODAY,
        reason="test",
    )


def stage_mail(template: str, language: Language) -> PlannedReminder:
    """pre_due: one invoice due 15 Oct 2026; later stages: two overdue invoices (one partly
    paid), a 5.00 EUR fee and a deadline of 15 Oct 2026."""
    if template == "pre_due":
        return reminder(template, language, [item("RE-2026-0042", DEADLINE, stage=template)])
    items = [
        item("RE-2026-0042", date(2026, 9, 15), stage=template),
        item("RE-2026-0057", date(2026, 9, 20), amount="500.00", paid="200.00", stage=template),
    ]
    return reminder(template, language, items, fee=Decimal("5.00"), deadline=DEADLINE)


def renderer(rules: Rules = RULES, templates: Path = TEMPLATES) -> Renderer:
    return Renderer(templates, rules)


def flat(text: str) -> str:
    """Line breaks and indentation do not matter for wording; the no-break space does."""
    return re.sub(r"[ \t\r\n]+", " ", text).strip()


def visible(markup: str) -> str:
    """What a reader of the HTML part sees, roughly."""
    return flat(html.unescape(re.sub(r"<[^>]+>", " ", markup)))


def in_both(mail: RenderedMail, phrase: str) -> None:
    assert phrase in flat(mail.text), f"{phrase!r} missing in text part:\n{mail.text}"
    assert phrase in visible(mail.html), f"{phrase!r} missing in HTML part:\n{mail.html}"


# --- formatting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("de_DE", f"1.234,56{NBSP}€"), ("en_GB", "€1,234.56")],
)
def test_money_is_formatted_in_the_mail_locale(locale: str, expected: str) -> None:
    assert format_money(Decimal("1234.56"), "EUR", locale) == expected


@pytest.mark.parametrize(
    ("locale", "long", "short"),
    [
        ("de_DE", "15. Oktober 2026", "15.10.2026"),
        ("en_GB", "15 October 2026", "15 Oct 2026"),
    ],
)
def test_dates_are_formatted_in_the_mail_locale(locale: str, long: str, short: str) -> None:
    assert format_long_date(DEADLINE, locale) == long
    assert format_short_date(DEADLINE, locale) == short


@pytest.mark.parametrize("amount", [1234.56, True, "1234.56", None])
def test_money_refuses_anything_but_decimal(amount: object) -> None:
    with pytest.raises(TypeError, match="Decimal"):
        format_money(amount, "EUR", "de_DE")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Zahlungserinnerung: RE-1", "Zahlungserinnerung: RE-1"),
        ("  RE-1\r\nBcc: evil@example.com\n", "RE-1 Bcc: evil@example.com"),
        ("a\rb\nc\tdu\u2028e\x00f", "a b c du e f"),
        ("\n\n", ""),
    ],
)
def test_one_line(raw: str, expected: str) -> None:
    assert one_line(raw) == expected


# --- the shipped templates ----------------------------------------------------------------

STAGE_CASES = [
    (
        "de",
        "pre_due",
        "Ihre Rechnung RE-2026-0042 wird am 15.10.2026 fällig",
        [
            f"Ihre Rechnung RE-2026-0042 über 1.234,56{NBSP}€ wird am 15. Oktober 2026 fällig",
            "in 10 Tagen",
        ],
    ),
    (
        "de",
        "reminder_1",
        "Zahlungserinnerung: Rechnungen RE-2026-0042 und RE-2026-0057",
        ["entgangen", "bis zum 15. Oktober 2026", "seit 20 Tagen überfällig"],
    ),
    (
        "de",
        "reminder_2",
        "1. Mahnung: Rechnungen RE-2026-0042 und RE-2026-0057",
        [
            f"Bitte überweisen Sie 1.539,56{NBSP}€ bis spätestens 15. Oktober 2026",
            "seit 15 Tagen überfällig",
        ],
    ),
    (
        "de",
        "final_notice",
        "Letzte Mahnung: Rechnungen RE-2026-0042 und RE-2026-0057",
        [
            "letzte Mahnung",
            "bis spätestens 15. Oktober 2026",
            "Inkassounternehmen",
            "gerichtliche Mahnverfahren",
            "weitere Kosten",
        ],
    ),
    (
        "en",
        "pre_due",
        "Your invoice RE-2026-0042 is due on 15 Oct 2026",
        ["your invoice RE-2026-0042 for €1,234.56 is due on 15 October 2026", "in 10 days"],
    ),
    (
        "en",
        "reminder_1",
        "Payment reminder for invoices RE-2026-0042 and RE-2026-0057",
        ["slipped your attention", "by 15 October 2026", "20 days overdue"],
    ),
    (
        "en",
        "reminder_2",
        "Overdue notice for invoices RE-2026-0042 and RE-2026-0057",
        ["by 15 October 2026 at the latest", "15 days overdue"],
    ),
    (
        "en",
        "final_notice",
        "Final notice for invoices RE-2026-0042 and RE-2026-0057",
        [
            "final reminder",
            "by 15 October 2026 at the latest",
            "debt collection agency",
            "additional costs",
        ],
    ),
]

COMMON = {
    "de": [
        "Guten Tag Müller & Söhne GmbH,",
        "RE-2026-0042",
        f"1.234,56{NBSP}€",
        "Kontoinhaber",
        "IBAN",
        "DE89 3704 0044 0532 0130 00",
        "COBADEFFXXX",
        "Commerzbank",
        REPLY_HINT["de"],
        "Muster Handel GmbH",
        "+49 89 1234567",
    ],
    "en": [
        "Dear Müller & Söhne GmbH,",
        "RE-2026-0042",
        "€1,234.56",
        "Account holder",
        "DE89 3704 0044 0532 0130 00",
        "COBADEFFXXX",
        "Commerzbank",
        REPLY_HINT["en"],
        "Muster Handel GmbH",
        "+49 89 1234567",
    ],
}

OVERDUE_EXTRAS = {
    "de": [
        "RE-2026-0057",
        f"davon bereits bezahlt 200,00{NBSP}€",
        f"300,00{NBSP}€",
        "Mahngebühr",
        f"5,00{NBSP}€",
        f"1.534,56{NBSP}€",
        f"1.539,56{NBSP}€",
    ],
    "en": [
        "RE-2026-0057",
        "of which €200.00 already paid",
        "€300.00",
        "Reminder fee",
        "€5.00",
        "€1,534.56",
        "transfer €1,539.56",
    ],
}


@pytest.mark.parametrize(("language", "template", "subject", "phrases"), STAGE_CASES)
def test_shipped_stage(language: Language, template: str, subject: str, phrases: list[str]) -> None:
    mail = renderer().render(stage_mail(template, language), TODAY)
    assert mail.subject == subject
    extras = OVERDUE_EXTRAS[language] if template != "pre_due" else []
    for phrase in [*phrases, *COMMON[language], *extras]:
        in_both(mail, phrase)
    for part in (mail.text, mail.html):
        assert "None" not in part
        assert part.endswith("\n")
    assert mail.html.lstrip().startswith("<!DOCTYPE html>")
    assert f'<html lang="{language}">' in mail.html


def test_every_stage_in_the_shipped_rules_is_covered() -> None:
    shipped = {
        t
        for pi, si, t in RULES.referenced_templates()
        if RULES.policies[pi].stages[si].action == "email"
    }
    assert shipped == {t for _, t, _, _ in STAGE_CASES} == set(STAGES)


@pytest.mark.parametrize("language", LANGS)
def test_the_escalation_notice_names_customer_invoices_and_totals(language: Language) -> None:
    mail = renderer().render(stage_mail("escalate", language), TODAY)
    for part in (mail.text, mail.html):
        assert "None" not in part
        for item in stage_mail("escalate", language).items:
            assert item.invoice.number in part
    assert "mahnwerk thread" in mail.text


@pytest.mark.parametrize(("language", "template"), [(lang, t) for lang in LANGS for t in STAGES])
def test_text_and_html_use_the_same_words(language: Language, template: str) -> None:
    """A sentence changed in one part only would make the two parts disagree."""
    mail = renderer().render(stage_mail(template, language), TODAY)
    text_words = set(re.findall(r"\w+", mail.text))
    html_words = set(re.findall(r"\w+", visible(mail.html)))
    assert text_words == html_words


@pytest.mark.parametrize(("language", "template"), [(lang, t) for lang in LANGS for t in STAGES])
def test_check_finds_no_problem_in_shipped_templates(language: str, template: str) -> None:
    assert renderer().check(template, language) == []


@pytest.mark.parametrize("language", LANGS)
def test_sample_reminder_renders(language: Language) -> None:
    sample = sample_reminder(RULES, "reminder_2", "reminder_2", language, TODAY)
    assert len(sample.items) == 2
    assert sample.fee is not None and sample.deadline is not None
    mail = renderer().render(sample, TODAY)
    assert all(n in mail.subject for n in sample.invoice_numbers)


def test_pre_due_sample_is_not_yet_due() -> None:
    sample = sample_reminder(RULES, "pre_due", "pre_due", "de", TODAY)
    assert all(i.days_overdue < 0 for i in sample.items)


@pytest.mark.parametrize(
    ("language", "count", "expected"),
    [
        ("de", 1, "Zahlungserinnerung: Rechnung RE-1"),
        ("de", 2, "Zahlungserinnerung: Rechnungen RE-1 und RE-2"),
        ("de", 4, "Zahlungserinnerung: Rechnungen RE-1 und 3 weitere"),
        ("en", 1, "Payment reminder for invoice RE-1"),
        ("en", 2, "Payment reminder for invoices RE-1 and RE-2"),
        ("en", 4, "Payment reminder for invoices RE-1 and 3 more"),
    ],
)
def test_subject_names_the_invoices(language: Language, count: int, expected: str) -> None:
    items = [item(f"RE-{n}", date(2026, 9, 15)) for n in range(1, count + 1)]
    assert renderer().render(reminder("reminder_1", language, items), TODAY).subject == expected


@pytest.mark.parametrize(
    ("language", "due", "shown", "state"),
    [
        ("de", date(2026, 9, 14), "14.09.2026", "seit 21 Tagen überfällig"),
        ("de", date(2026, 10, 4), "04.10.2026", "seit 1 Tag überfällig"),
        ("de", date(2026, 10, 5), "05.10.2026", "heute"),
        ("de", date(2026, 10, 6), "06.10.2026", "morgen"),
        ("de", date(2026, 10, 8), "08.10.2026", "in 3 Tagen"),
        ("en", date(2026, 9, 14), "14 Sept 2026", "21 days overdue"),
        ("en", date(2026, 10, 4), "4 Oct 2026", "1 day overdue"),
        ("en", date(2026, 10, 5), "5 Oct 2026", "today"),
        ("en", date(2026, 10, 6), "6 Oct 2026", "tomorrow"),
        ("en", date(2026, 10, 8), "8 Oct 2026", "in 3 days"),
    ],
)
def test_each_invoice_says_how_late_it_is(
    language: Language, due: date, shown: str, state: str
) -> None:
    mail = renderer().render(reminder("reminder_1", language, [item("RE-1", due)]), TODAY)
    due_on = {"de": "fällig am", "en": "due on"}[language]
    assert f"{due_on} {shown} ({state})" in flat(mail.text)
    # The HTML table has the date and its state in one cell, on two lines.
    assert f"{shown} {state}" in visible(mail.html)


@pytest.mark.parametrize("language", LANGS)
def test_not_yet_due_invoices_are_not_demanded(language: Language) -> None:
    items = [
        item("RE-1", date(2026, 9, 15), stage="reminder_2"),
        item("RE-2", date(2026, 10, 8), amount="100.00", stage="pre_due"),
    ]
    mail = renderer().render(reminder("reminder_2", language, items, deadline=DEADLINE), TODAY)
    due_now, everything = {
        "de": (f"Bitte überweisen Sie 1.234,56{NBSP}€", f"1.334,56{NBSP}€"),
        "en": ("Please transfer €1,234.56", "€1,334.56"),
    }[language]
    in_both(mail, due_now)
    in_both(mail, everything)
    in_both(mail, {"de": "noch nicht fällig", "en": "not yet due"}[language])


@pytest.mark.parametrize("language", LANGS)
def test_no_fee_and_no_partial_payment_means_no_such_lines(language: Language) -> None:
    mail = renderer().render(
        reminder("reminder_1", language, [item("RE-1", date(2026, 9, 15))]), TODAY
    )
    for word in ("Mahngebühr", "davon bereits bezahlt", "Reminder fee", "of which"):
        assert word not in mail.text
        assert word not in visible(mail.html)


@pytest.mark.parametrize("language", LANGS)
def test_optional_bank_and_company_fields_may_be_missing(language: Language) -> None:
    company = RULES.company.model_copy(
        update={
            "phone": None,
            "bank": RULES.company.bank.model_copy(
                update={"holder": None, "bic": None, "bank_name": None}
            ),
        }
    )
    rules = RULES.model_copy(update={"company": company})
    mail = renderer(rules).render(stage_mail("final_notice", language), TODAY)
    in_both(mail, "DE89 3704 0044 0532 0130 00")
    for gone in ("BIC", "COBADEFFXXX", "Commerzbank", "+49 89", "None"):
        assert gone not in mail.text
        assert gone not in visible(mail.html)


def test_a_different_locale_for_a_language_is_used() -> None:
    rules = RULES.model_copy(update={"languages": {"de": "de_CH", "en": "en_US"}})
    mail = renderer(rules).render(stage_mail("reminder_1", "de"), TODAY)
    assert format_money(Decimal("1234.56"), "EUR", "de_CH") in mail.text
    assert f"1.234,56{NBSP}€" not in mail.text


# --- safety -------------------------------------------------------------------------------

NASTY = "<script>alert(1)</script> & Co"


@pytest.mark.parametrize(("language", "template"), [(lang, t) for lang in LANGS for t in STAGES])
def test_html_escapes_customer_data_and_text_keeps_it(language: Language, template: str) -> None:
    items = [item("<b>RE-1</b>", date(2026, 9, 15), stage=template)]
    mail = renderer().render(reminder(template, language, items, customer_name=NASTY), TODAY)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in mail.html
    assert "&lt;b&gt;RE-1&lt;/b&gt;" in mail.html
    assert "<script>" not in mail.html
    assert "<b>RE-1" not in mail.html
    assert "&amp;lt;" not in mail.html  # escaped once, not twice
    assert NASTY in mail.text
    assert "<b>RE-1</b>" in mail.text


@pytest.mark.parametrize("language", LANGS)
def test_line_breaks_in_customer_data_do_not_reach_the_subject(language: Language) -> None:
    items = [item("RE-1\r\nBcc: victim@example.com", date(2026, 9, 15))]
    mail = renderer().render(reminder("reminder_1", language, items), TODAY)
    assert "\r" not in mail.subject and "\n" not in mail.subject
    assert "RE-1 Bcc: victim@example.com" in mail.subject


def write(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return root


def test_a_custom_subject_with_customer_data_stays_one_line(tmp_path: Path) -> None:
    tpl = write(
        tmp_path,
        {
            "de/x.subject.j2": "Hallo\n{{ customer_name }}\n",
            "de/x.txt.j2": "{{ customer_name }}\n",
            "de/x.html.j2": "<p>{{ customer_name }}</p>\n",
        },
    )
    rem = reminder("x", "de", [item("RE-1", date(2026, 9, 15))], customer_name="A\r\n\tB\nTo: x")
    mail = renderer(templates=tpl).render(rem, TODAY)
    assert mail.subject == "Hallo A B To: x"
    assert mail.text == "A\r\n\tB\nTo: x\n"  # the body is not the place to rewrite data


def test_autoescape_follows_the_file_name(tmp_path: Path) -> None:
    tpl = write(
        tmp_path,
        {
            "en/x.subject.j2": "{{ customer_name }}",
            "en/x.txt.j2": "{{ customer_name }}",
            "en/x.html.j2": "{{ customer_name }}",
        },
    )
    rem = reminder("x", "en", [item("RE-1", date(2026, 9, 15))], customer_name="a<b>&c")
    mail = renderer(templates=tpl).render(rem, TODAY)
    assert (mail.subject, mail.text, mail.html) == ("a<b>&c", "a<b>&c", "a&lt;b&gt;&amp;c")


TYPO = {
    "de/x.subject.j2": "Zahlungserinnerung\n",
    "de/x.txt.j2": "Guten Tag,\n{{ custmer_name }}\n",
    "de/x.html.j2": "<p>{{ customer_name }}</p>\n",
}


def test_an_undefined_variable_fails_at_render_with_file_and_line(tmp_path: Path) -> None:
    tpl = write(tmp_path, TYPO)
    with pytest.raises(TemplateBroken) as caught:
        renderer(templates=tpl).render(reminder("x", "de", [item("RE-1", DEADLINE)]), TODAY)
    assert caught.value.file is not None and caught.value.file.endswith("x.txt.j2")
    assert caught.value.line == 2
    assert "custmer_name" in str(caught.value)


def test_check_reports_an_undefined_variable(tmp_path: Path) -> None:
    tpl = write(tmp_path, TYPO)
    problems = renderer(templates=tpl).check("x", "de")
    assert len(problems) == 1
    assert problems[0].startswith(str(tpl / "de" / "x.txt.j2") + ":2:")
    assert "'custmer_name' is undefined" in problems[0]


def test_check_reports_a_typo_in_an_attribute_and_in_a_shared_file(tmp_path: Path) -> None:
    tpl = write(
        tmp_path,
        {
            "de/_layout.txt.j2": "Kopf\n{% for i in items %}{{ i.nubmer }}{% endfor %}\n",
            "de/x.subject.j2": "Betreff\n",
            "de/x.txt.j2": '{% extends "de/_layout.txt.j2" %}\n',
            "de/x.html.j2": "<p>{{ company.nmae }}</p>\n",
        },
    )
    problems = renderer(templates=tpl).check("x", "de")
    assert len(problems) == 2
    assert problems[0].startswith(str(tpl / "de" / "_layout.txt.j2") + ":2:")
    assert "nubmer" in problems[0]
    assert problems[1].startswith(str(tpl / "de" / "x.html.j2") + ":1:")
    assert "nmae" in problems[1]


def test_check_reports_a_syntax_error_with_its_line(tmp_path: Path) -> None:
    tpl = write(
        tmp_path,
        {**TYPO, "de/x.txt.j2": "Guten Tag,\n\n{% if fee %}Gebühr\n", "de/x.html.j2": "ok\n"},
    )
    problems = renderer(templates=tpl).check("x", "de")
    assert len(problems) == 1
    assert "syntax error" in problems[0]
    assert problems[0].startswith(str(tpl / "de" / "x.txt.j2") + ":")


def test_check_reports_an_empty_subject(tmp_path: Path) -> None:
    tpl = write(tmp_path, {**TYPO, "de/x.subject.j2": "{{ '' }}\n", "de/x.txt.j2": "ok\n"})
    assert renderer(templates=tpl).check("x", "de") == [
        f"{tpl / 'de' / 'x.subject.j2'}: renders an empty subject"
    ]


def test_a_missing_template_is_named(tmp_path: Path) -> None:
    tpl = write(tmp_path, {"de/x.subject.j2": "s", "de/x.txt.j2": "t"})
    with pytest.raises(TemplateMissing) as caught:
        renderer(templates=tpl).render(reminder("x", "de", [item("RE-1", DEADLINE)]), TODAY)
    assert caught.value.path == tpl / "de" / "x.html.j2"
    assert (caught.value.template, caught.value.language) == ("x", "de")
    assert renderer(templates=tpl).check("x", "de") == [f"{tpl / 'de' / 'x.html.j2'}: missing"]
    assert renderer(templates=tpl).check("x", "en") == [
        f"{tpl / 'en' / f'x.{part}.j2'}: missing" for part in ("subject", "txt", "html")
    ]


def test_a_missing_layout_is_named(tmp_path: Path) -> None:
    tpl = write(
        tmp_path,
        {**TYPO, "de/x.txt.j2": '{% extends "de/_layout.txt.j2" %}\n'},
    )
    with pytest.raises(TemplateMissing) as caught:
        renderer(templates=tpl).render(reminder("x", "de", [item("RE-1", DEADLINE)]), TODAY)
    assert caught.value.path == tpl / "de" / "_layout.txt.j2"


def test_an_escalation_has_no_mail() -> None:
    with pytest.raises(RenderError, match="sends no mail"):
        renderer().render(reminder(None, "de", [item("RE-1", DEADLINE)]), TODAY)


# --- umlauts ------------------------------------------------------------------------------


@pytest.mark.parametrize("template", STAGES)
def test_umlauts_survive(template: str) -> None:
    mail = renderer().render(stage_mail(template, "de"), TODAY)
    for part in (mail.text, mail.html):
        assert "Müller & Söhne" in html.unescape(part)
        assert "Grüße" in part
        assert "&uuml;" not in part and "Ã" not in part
    assert "ü" in mail.text and "ä" in mail.text
    mail.text.encode("utf-8")  # no lone surrogates from a wrong decode
