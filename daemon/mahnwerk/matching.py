"""Which invoices a received mail is about, and how sure that is.

Pure: the shell builds a `MatchIndex` from the store once per pass and hands in each
parsed mail. Evidence is tried strongest first, and the result says which rule matched,
because the thread must show why a reply was attached to an invoice:

1. In-Reply-To / References naming one of our Message-IDs (the reminder's invoices), or
   our per-customer thread token (the customer's open invoices); a bounce's returned
   Message-ID counts the same;
2. invoice numbers in the subject or the customer's own text;
3. the sender's address, then the sender's domain, when it belongs to exactly one
   customer with open invoices (never a free-mail domain: many customers share it).

Invoice numbers named in the text narrow a header match down to those invoices.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mahnwerk.inbound_types import InboundMail
from mahnwerk.invoicerefs import find_invoice_refs
from mahnwerk.models import Invoice

# Domains many unrelated customers share: a match by domain would be a guess.
FREEMAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.de",
        "live.com",
        "live.de",
        "msn.com",
        "yahoo.com",
        "yahoo.de",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "gmx.de",
        "gmx.net",
        "gmx.at",
        "gmx.ch",
        "web.de",
        "t-online.de",
        "freenet.de",
        "posteo.de",
        "mailbox.org",
        "proton.me",
        "protonmail.com",
        "mail.de",
        "arcor.de",
        "1und1.de",
        "online.de",
        "bluewin.ch",
        "aon.at",
        "a1.net",
        "btinternet.com",
        "sky.com",
        "virginmedia.com",
    }
)

# The strength of each rule, strongest first; the thread records the name.
HOW = ("message_id", "thread_token", "bounce", "invoice_number", "sender_address", "sender_domain")


@dataclass(frozen=True, slots=True)
class Sent:
    """One of our mails, as the outbox knows it."""

    customer_id: str
    invoices: tuple[str, ...]
    to: str


@dataclass(frozen=True, slots=True)
class MatchIndex:
    """What the store knows, arranged for lookups; built once per ingestion pass."""

    sent: Mapping[str, Sent] = field(default_factory=dict)  # Message-ID -> mail
    tokens: Mapping[str, str] = field(default_factory=dict)  # thread token -> customer
    invoice_customer: Mapping[str, str] = field(default_factory=dict)  # every known invoice
    open_invoices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per customer
    addresses: Mapping[str, frozenset[str]] = field(default_factory=dict)  # casefolded email
    domains: Mapping[str, frozenset[str]] = field(default_factory=dict)  # customers per domain
    known: frozenset[str] = frozenset()  # every invoice number, for find_invoice_refs


@dataclass(frozen=True, slots=True)
class Match:
    customer_id: str | None
    invoices: tuple[str, ...]
    how: str  # one of HOW, or "none"
    detail: str
    # The sender's address or domain belongs to the matched customer (or the mail is a
    # bounce, which comes from a mail server): only then may a reply act on its own.
    sender_related: bool

    @property
    def matched(self) -> bool:
        return bool(self.invoices)


def build_index(
    invoices: Iterable[Invoice],
    sent: Mapping[str, Sent],
    tokens: Mapping[str, str],
) -> MatchIndex:
    invoice_customer: dict[str, str] = {}
    open_by: dict[str, list[str]] = defaultdict(list)
    by_address: dict[str, set[str]] = defaultdict(set)
    by_domain: dict[str, set[str]] = defaultdict(set)
    for inv in invoices:
        invoice_customer[inv.number] = inv.customer_id
        if inv.status != "open":
            continue
        open_by[inv.customer_id].append(inv.number)
        address = inv.email.strip().casefold()
        if address:
            by_address[address].add(inv.customer_id)
            by_domain[_domain(address)].add(inv.customer_id)
    return MatchIndex(
        sent=dict(sent),
        tokens=dict(tokens),
        invoice_customer=invoice_customer,
        open_invoices={c: tuple(sorted(n)) for c, n in open_by.items()},
        addresses={a: frozenset(c) for a, c in by_address.items()},
        domains={d: frozenset(c) for d, c in by_domain.items()},
        known=frozenset(invoice_customer),
    )


def match(mail: InboundMail, index: MatchIndex) -> Match:
    refs = _named_invoices(mail, index)
    for how, found in (
        ("message_id", _by_message_id(mail, index)),
        ("thread_token", _by_token(mail, index)),
        ("bounce", _by_bounce(mail, index)),
    ):
        if found is not None:
            customer, invoices, detail = found
            named = tuple(n for n in refs if index.invoice_customer.get(n) == customer)
            if named:
                invoices, detail = (
                    named,
                    f"{detail}; narrowed to {', '.join(named)} named in the text",
                )
            return Match(customer, invoices, how, detail, _related(mail, index, customer, how))
    if refs:
        customers = {index.invoice_customer[n] for n in refs}
        if len(customers) == 1:
            (customer,) = customers
            return Match(
                customer,
                refs,
                "invoice_number",
                f"invoice number(s) {', '.join(refs)} in the mail",
                _related(mail, index, customer, "invoice_number"),
            )
        return Match(
            None,
            refs,
            "invoice_number",
            f"invoice numbers of {len(customers)} customers named: {', '.join(refs)}",
            False,
        )
    sender = mail.from_address.casefold()
    by_sender: tuple[tuple[str, frozenset[str]], ...] = (
        ("sender_address", index.addresses.get(sender, frozenset())),
        ("sender_domain", _domain_customers(sender, index)),
    )
    for how, candidates in by_sender:
        if len(candidates) == 1:
            (customer,) = candidates
            invoices = index.open_invoices.get(customer, ())
            if invoices:
                what = sender if how == "sender_address" else f"@{_domain(sender)}"
                return Match(customer, invoices, how, f"sender {what} is customer {customer}", True)
        elif len(candidates) > 1:
            return Match(
                None, (), "none", f"sender {sender} belongs to {len(candidates)} customers", False
            )
    return Match(None, (), "none", "no reference, invoice number or known sender", False)


def _named_invoices(mail: InboundMail, index: MatchIndex) -> tuple[str, ...]:
    text = f"{mail.subject}\n{mail.own_text}"
    found = find_invoice_refs(text, index.known)
    return tuple(n for n in found if n in index.invoice_customer)


def _open_of(index: MatchIndex, customer: str, invoices: Iterable[str]) -> tuple[str, ...]:
    open_now = set(index.open_invoices.get(customer, ()))
    listed = tuple(invoices)
    still = tuple(n for n in listed if n in open_now)
    # A reply to a reminder whose invoices were all paid since is still about them.
    return still or listed


def _by_message_id(mail: InboundMail, index: MatchIndex) -> tuple[str, tuple[str, ...], str] | None:
    # In-Reply-To first: it names the mail answered; References may hold older ones.
    for mid in (*mail.in_reply_to, *reversed(mail.references)):
        sent = index.sent.get(mid)
        if sent is not None:
            invoices = _open_of(index, sent.customer_id, sent.invoices)
            return sent.customer_id, invoices, f"replies to our mail {mid}"
    return None


def _by_token(mail: InboundMail, index: MatchIndex) -> tuple[str, tuple[str, ...], str] | None:
    for mid in (*mail.references, *mail.in_reply_to):
        customer = index.tokens.get(mid)
        if customer is not None:
            invoices = index.open_invoices.get(customer, ())
            return customer, invoices, f"carries customer {customer}'s thread token"
    return None


def _by_bounce(mail: InboundMail, index: MatchIndex) -> tuple[str, tuple[str, ...], str] | None:
    if mail.bounce is None or not mail.bounce.original_message_id:
        return None
    mid = mail.bounce.original_message_id
    sent = index.sent.get(mid)
    if sent is None:
        return None
    return sent.customer_id, sent.invoices, f"returns our mail {mid}"


def _related(mail: InboundMail, index: MatchIndex, customer: str, how: str) -> bool:
    if how == "bounce" or mail.bounce is not None:
        return True
    sender = mail.from_address.casefold()
    if customer in index.addresses.get(sender, frozenset()):
        return True
    domain = _domain(sender)
    return domain not in FREEMAIL and customer in index.domains.get(domain, frozenset())


def _domain_customers(sender: str, index: MatchIndex) -> frozenset[str]:
    domain = _domain(sender)
    if not domain or domain in FREEMAIL:
        return frozenset()
    return index.domains.get(domain, frozenset())


def _domain(address: str) -> str:
    return address.rpartition("@")[2].casefold()
