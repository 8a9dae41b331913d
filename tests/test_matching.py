"""Which invoices a reply is about: strongest evidence first, and the rule that matched."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from _factory import inv
from mahnwerk.inbound_types import Bounce, InboundMail
from mahnwerk.matching import Sent, build_index, match

INVOICES = [
    inv("RE-1", customer="K-1", email="buchhaltung@mueller.example"),
    inv("RE-2", customer="K-1", email="buchhaltung@mueller.example"),
    inv("RE-3", customer="K-2", email="info@schroeder.example"),
    inv("RE-4", customer="K-3", email="anna@gmail.com"),
    inv("RE-5", customer="K-4", email="ben@gmail.com"),
    inv("RE-9", customer="K-2", email="info@schroeder.example", status="paid"),
]
SENT = {
    "<m1@us.example>": Sent("K-1", ("RE-1",), "buchhaltung@mueller.example"),
    "<m9@us.example>": Sent("K-2", ("RE-9",), "info@schroeder.example"),
}
TOKENS = {"<mw-k1@us.example>": "K-1", "<mw-k2@us.example>": "K-2"}
INDEX = build_index(INVOICES, SENT, TOKENS)
WHEN = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def mail(sender: str, **kw: object) -> InboundMail:
    return InboundMail(from_address=sender, date=WHEN, **kw)  # type: ignore[arg-type]


# (id, mail, customer, invoices, how, sender related)
CASES = [
    (
        "in-reply-to our reminder",
        mail("buchhaltung@mueller.example", in_reply_to=("<m1@us.example>",)),
        "K-1",
        ("RE-1",),
        "message_id",
        True,
    ),
    (
        "references only, newest counts",
        mail("buchhaltung@mueller.example", references=("<x@y>", "<m1@us.example>")),
        "K-1",
        ("RE-1",),
        "message_id",
        True,
    ),
    (
        "thread token when the client dropped In-Reply-To",
        mail("kollege@mueller.example", references=("<mw-k1@us.example>",)),
        "K-1",
        ("RE-1", "RE-2"),
        "thread_token",
        True,
    ),
    (
        "thread token narrowed by an invoice number in the text",
        mail(
            "buchhaltung@mueller.example",
            references=("<mw-k1@us.example>",),
            own_text="RE-2 ist bezahlt",
        ),
        "K-1",
        ("RE-2",),
        "thread_token",
        True,
    ),
    (
        "a reminder whose invoices were all paid since is still about them",
        mail("info@schroeder.example", in_reply_to=("<m9@us.example>",)),
        "K-2",
        ("RE-9",),
        "message_id",
        True,
    ),
    (
        "invoice number in the subject",
        mail("info@schroeder.example", subject="Frage zu RE-3"),
        "K-2",
        ("RE-3",),
        "invoice_number",
        True,
    ),
    (
        "invoice numbers of two customers: no customer",
        mail("x@other.example", own_text="RE-1 und RE-3"),
        None,
        ("RE-1", "RE-3"),
        "invoice_number",
        False,
    ),
    (
        "sender address",
        mail("anna@gmail.com", own_text="Ich zahle morgen"),
        "K-3",
        ("RE-4",),
        "sender_address",
        True,
    ),
    (
        "sender domain of a company",
        mail("chef@mueller.example", own_text="Wir zahlen morgen"),
        "K-1",
        ("RE-1", "RE-2"),
        "sender_domain",
        True,
    ),
    (
        "never a free-mail domain",
        mail("someone@gmail.com", own_text="Wir zahlen morgen"),
        None,
        (),
        "none",
        False,
    ),
    (
        "a stranger replying to our mail is not the customer",
        mail("attacker@evil.example", in_reply_to=("<m1@us.example>",)),
        "K-1",
        ("RE-1",),
        "message_id",
        False,
    ),
    (
        "a bounce by the Message-ID it returns",
        mail(
            "mailer-daemon@mx.example",
            bounce=Bounce(
                recipients=("info@schroeder.example",), original_message_id="<m9@us.example>"
            ),
        ),
        "K-2",
        ("RE-9",),
        "bounce",
        True,
    ),
    ("nothing to go by", mail("x@nowhere.example"), None, (), "none", False),
]


@pytest.mark.parametrize(
    ("received", "customer", "invoices", "how", "related"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_match(
    received: InboundMail,
    customer: str | None,
    invoices: tuple[str, ...],
    how: str,
    related: bool,
) -> None:
    found = match(received, INDEX)
    assert (found.customer_id, found.invoices, found.how, found.sender_related) == (
        customer,
        invoices,
        how,
        related,
    ), found.detail
    assert found.detail
