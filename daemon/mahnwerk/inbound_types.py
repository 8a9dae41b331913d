"""Types for the incoming side: a parsed reply and what the classifier made of it.

They sit in their own module so that parsing (`inbound.py`), reply-text extraction
(`replytext.py`), the classifier (`classify.py`) and the shell can be written and
tested apart, and so that the pure core never imports the parser library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

Label = Literal["paid", "promise", "dispute", "question", "auto_reply", "bounce", "other"]
LABELS: tuple[Label, ...] = (
    "paid",
    "promise",
    "dispute",
    "question",
    "auto_reply",
    "bounce",
    "other",
)


@dataclass(frozen=True, slots=True)
class Bounce:
    """What a delivery status notification (RFC 3464) or a non-standard bounce says.

    `original_message_id` is the Message-ID of our mail that bounced, found in the
    returned headers; it is how a bounce is matched, since bounces rarely carry
    In-Reply-To.
    """

    recipients: tuple[str, ...] = ()
    status: str = ""  # e.g. "5.1.1"; "" when the bounce does not say
    action: str = ""  # failed | delayed | delivered | relayed | expanded | ""
    diagnostic: str = ""
    original_message_id: str = ""
    permanent: bool = True


@dataclass(frozen=True, slots=True)
class InboundMail:
    """One received message, parsed.  Built by `inbound.parse`, which never raises.

    Header values are already decoded (RFC 2047) and stripped of CR/LF.  Addresses are
    lower-cased bare addresses.  `date` is the Date header with its own UTC offset
    (None when missing or unreadable).  `text` is the best plain-text body (HTML-only
    mail converted); `own_text` is the customer's own words with quoted history and
    signature removed (`replytext.own_text`).  `defects` lists what was wrong with the
    message; a message with defects is still returned as far as it could be read.
    """

    message_id: str = ""
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    subject: str = ""
    from_address: str = ""
    from_name: str = ""
    reply_to: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    date: datetime | None = None
    # Lower-cased header name -> all values, for the headers the classifier reads
    # (auto-submitted, x-autoreply, x-autorespond, precedence, auto-response-suppress,
    # x-auto-response-suppress, list-id, list-unsubscribe, return-path, content-type,
    # authentication-results, x-failed-recipients, x-mailer, feedback-type, ...).
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    content_type: str = ""
    text: str = ""
    html: str = ""
    own_text: str = ""
    language: str = ""  # "de" | "en" | "" when unsure
    attachments: tuple[str, ...] = ()  # file names
    bounce: Bounce | None = None
    defects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Facts:
    """Facts taken only from the customer's own text, never from our quoted reminder."""

    promised_date: date | None = None
    paid_date: date | None = None
    amount: Decimal | None = None
    invoice_refs: tuple[str, ...] = ()
    return_date: date | None = None  # auto-replies: "back on 2 December"
    installments: int = 0


@dataclass(frozen=True, slots=True)
class Classification:
    """Exactly one label, how sure the classifier is, the facts and why."""

    label: Label
    confidence: float
    facts: Facts = Facts()
    reasons: tuple[str, ...] = ()
    version: str = ""
