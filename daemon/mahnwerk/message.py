"""Turn a rendered reminder into the exact bytes that go over SMTP.

Pure: the caller passes the secret, the date and the customer's earlier Message-IDs, so the
same outbox entry always yields the same message, and a resend after a crash is
indistinguishable from the first attempt. The bytes are also what the thread stores as proof
of sending, so everything that ends up in a header is decided here and nowhere else.

Customer data (names, addresses) is collapsed to one line of plain text before it gets near a
header, so that a line break in an imported name cannot start a header of its own.

Headers are encoded and folded here, not left to `email.headerregistry`, whose folder
(as of Python 3.11) leaves a doubled space where it switches from plain to encoded words,
RFC 2047-encodes a Message-ID longer than a line (no client matches References then), and in
some versions glues encoded words together (CPython gh-144156), which Yahoo rejects with a
permanent 554 - and a 5xx marks the customer's address as undeliverable. The MIME structure
is fixed, so the wire form is written out directly too.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import re
from collections.abc import Sequence
from datetime import datetime
from email.header import Header
from email.headerregistry import Address, AddressHeader, HeaderRegistry
from email.utils import format_datetime

from mahnwerk.models import UNSAFE_TEXT
from mahnwerk.plan_types import PlannedReminder
from mahnwerk.render import RenderedMail
from mahnwerk.rules import Rules

# How many earlier Message-IDs References carries besides the thread token; clients cope with
# long References, but a dozen mails to one customer is already a relationship in trouble.
MAX_REFERENCES = 10
AUTO_RESPONSE_SUPPRESS = "OOF, AutoReply"

# Bodies are quoted-printable: 8bit would need 8BITMIME, which smtplib does not negotiate.
_LINE = 78
# A word that cannot be folded still keeps its line below SMTP's hard limit of 998.
_LONGEST_PLAIN = 900
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_HEX_CHARS = 32
# printable ASCII except "<", ">" and "@" (RFC 5322 msg-id, loosely)
_ID_PART = r"[!-;=?A-~]+"
_MESSAGE_ID = re.compile(rf"<{_ID_PART}@{_ID_PART}>")
_HOSTNAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_ADDRESS_FORBIDDEN = re.compile(r"[\s<>()\[\],;:\"\\]")


def message_id(secret: bytes, key: str, domain: str) -> str:
    """The Message-ID of one outbox entry.

    Derived from the entry's key so that a resend after a crash reuses it (the receiver and
    the Sent folder lookup can then recognise the duplicate), and keyed with a secret so that
    nobody outside can predict or forge the id of a reminder.
    """
    return f"<{_digest(secret, key)}@{_domain(domain)}>"


# Every pass over the replies asks for every customer's token; they never change.
@functools.lru_cache(maxsize=65536)
def thread_token(secret: bytes, customer_id: str, domain: str) -> str:
    """One id per customer that every reminder lists first in References.

    Clients that drop In-Reply-To usually keep References, so a reply can still be matched to
    the customer even when the mail it answers is unknown.
    """
    return f"<mw-{_digest(secret, 'thread:' + customer_id)}@{_domain(domain)}>"


def sender_domain(sender: str) -> str:
    """The domain our Message-IDs live under: the one we send from, as RFC 5322 suggests."""
    return _domain(_single_address(sender, "sender").domain)


def build(
    rendered: RenderedMail,
    reminder: PlannedReminder,
    rules: Rules,
    *,
    message_id: str,
    thread_token: str,
    previous_ids: Sequence[str],
    date: datetime,
) -> bytes:
    """The reminder's wire form (CRLF, 7-bit); raises ValueError rather than send anything
    doubtful.

    `previous_ids` are the Message-IDs of earlier reminders to this customer, oldest first.
    """
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("the Date of a mail needs a time zone (got a naive datetime)")
    own_id = _checked_id(message_id, "message_id")
    token = _checked_id(thread_token, "thread_token")
    earlier = _earlier_ids(previous_ids, exclude={own_id, token})
    language = reminder.language
    if not _LANGUAGE_TAG.fullmatch(language):
        raise ValueError(f"{reminder.key}: language {language!r} is not a language tag")
    key = reminder.key
    if UNSAFE_TEXT.search(key) or not key.strip():
        raise ValueError(f"reminder key {key!r} is empty or has control characters")

    company = rules.company
    sender = _single_address(company.sender, "sender")
    reply_to = _single_address(company.reply_to, "reply_to") if company.reply_to else sender

    recipient = _recipient(reminder.customer_name, reminder.to)
    boundary = f"=_mw_{hashlib.sha256(own_id.encode('ascii')).hexdigest()[:_HEX_CHARS]}"
    # Every value is encoded and folded here (see the module docstring), and the MIME
    # structure is fixed, so the wire form is written out directly: the email package's
    # generator took two thirds of a tick's CPU per mail and added nothing.
    headers = [
        ("Message-ID", own_id),
        ("Date", format_datetime(date)),
        ("From", _mailbox("From", sender.display_name, sender.addr_spec)),
        ("Reply-To", _mailbox("Reply-To", reply_to.display_name, reply_to.addr_spec)),
        ("To", _mailbox("To", recipient.display_name, recipient.addr_spec)),
        ("Subject", _text("Subject", rendered.subject)),
    ]
    if earlier:
        headers.append(("In-Reply-To", earlier[-1]))
    # Ids are never encoded (clients would not match them then), only folded between ids.
    headers += [
        ("References", _fold("References", [token, *earlier])),
        ("Auto-Submitted", "auto-generated"),
        # Not "All": that would also suppress Exchange's non-delivery reports, which we need.
        ("X-Auto-Response-Suppress", AUTO_RESPONSE_SUPPRESS),
        ("X-Mahnwerk-Key", _text("X-Mahnwerk-Key", key)),
        ("MIME-Version", "1.0"),
        # A derived boundary keeps the bytes reproducible. "=_" cannot occur in a
        # quoted-printable body, so it never collides.
        ("Content-Type", f'multipart/alternative;\n boundary="{boundary}"'),
        ("Content-Language", language),
    ]
    out = "".join(f"{name}: {value}\n" for name, value in headers)
    for subtype, text in (("plain", rendered.text), ("html", rendered.html)):
        # The line end before a delimiter belongs to the delimiter, so each body keeps its own.
        out += (
            f"\n--{boundary}\n"
            f'Content-Type: text/{subtype}; charset="utf-8"\n'
            "Content-Transfer-Encoding: quoted-printable\n\n"
            f"{_quoted_printable(text)}"
        )
    out += f"\n--{boundary}--\n"
    return out.replace("\n", "\r\n").encode("ascii")


def _quoted_printable(text: str) -> str:
    """UTF-8 in quoted-printable lines of at most 76 characters, "\n" line ends."""
    lines = text.splitlines()
    encoded = binascii.b2a_qp(("\n".join(lines) + "\n").encode("utf-8"), istext=True)
    return encoded.decode("ascii")


def _digest(secret: bytes, text: str) -> str:
    if not secret:
        raise ValueError("an empty secret would make Message-IDs guessable")
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()[:_HEX_CHARS]


def _domain(domain: str) -> str:
    lowered = domain.strip().lower()
    if len(lowered) > 253 or not _HOSTNAME.fullmatch(lowered):
        raise ValueError(f"{domain!r} is not a host name a Message-ID can use")
    return lowered


def _one_line(text: str) -> str:
    """Collapse what could end a header line or hide text (bidi overrides) into single spaces."""
    return " ".join(UNSAFE_TEXT.sub(" ", text).split())


def _text(name: str, value: str) -> str:
    """An unstructured header value, folded with "\n " (the policy turns it into CRLF).

    Plain ASCII is folded at its single spaces, which unfolding restores exactly. Anything
    else is encoded as a whole: whitespace between adjacent encoded words is dropped when
    decoding, so the text comes back exactly, and a literal "=?utf-8?..." from a customer
    cannot be decoded into something else.
    """
    text = _one_line(value)
    words = text.split(" ")
    if text.isascii() and "=?" not in text and max(map(len, words)) <= _LONGEST_PLAIN:
        return _fold(name, words)
    return Header(text, "utf-8", header_name=name).encode(linesep="\n", maxlinelen=_LINE)


@functools.lru_cache(maxsize=1024)
def _mailbox(header: str, display_name: str, addr_spec: str) -> str:
    # Every word then fits on the first line too, after "Reply-To: ".
    width = _LINE - len(header) - 2
    tokens = [*_phrase(_one_line(display_name), width), f"<{addr_spec}>"]
    return _fold(header, tokens) if len(tokens) > 1 else addr_spec


def _phrase(name: str, width: int) -> list[str]:
    """A display name as words: plain ones as atoms or quoted, the rest as encoded words.

    RFC 2047 decoders drop the space between two encoded words, and Python's parser keeps it,
    so neighbouring words that need encoding become one encoded run (the space inside it),
    and plain words stay plain. Only a run longer than one encoded word is still split.
    """
    tokens: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            encoded = Header(" ".join(run), "utf-8").encode(linesep="\n", maxlinelen=width)
            tokens.extend(encoded.split("\n "))
            run.clear()

    for word in name.split(" ") if name else []:
        plain = word if _ATOM.fullmatch(word) else _quoted(word)
        if word.isascii() and "=?" not in word and len(plain) <= width:
            flush()
            tokens.append(plain)
        else:
            run.append(word)
    flush()
    return tokens


def _quoted(word: str) -> str:
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fold(header: str, tokens: list[str]) -> str:
    """Join with spaces, breaking lines before a token where the line would get too long."""
    lines = [f"{header}:"]
    for n, token in enumerate(tokens):
        if n and len(lines[-1]) + 1 + len(token) > _LINE:
            lines.append("")
        lines[-1] += " " + token
    return "\n".join(lines)[len(header) + 2 :]


# Parsing the configured addresses is half the cost of a build; they do not change.
@functools.lru_cache(maxsize=64)
def _single_address(value: str, what: str) -> Address:
    # A comma or an unquoted special in the configured sender would otherwise silently turn
    # into two From addresses, or one without a domain.
    header = HeaderRegistry()("From", value)
    addresses = header.addresses if isinstance(header, AddressHeader) else ()
    if len(addresses) != 1 or not addresses[0].username or not addresses[0].domain:
        raise ValueError(f"{what} {value!r} is not exactly one address like 'Name <a@b.example>'")
    return addresses[0]


def _recipient(name: str, addr: str) -> Address:
    at = addr.count("@")
    local, _, domain = addr.partition("@")
    if (
        at != 1
        or not local
        or not domain
        or not addr.isascii()
        or UNSAFE_TEXT.search(addr)
        or _ADDRESS_FORBIDDEN.search(addr)
    ):
        # Non-ASCII addresses would need SMTPUTF8, which we do not speak.
        raise ValueError(f"recipient address {addr!r} is not a plain ASCII address a@b")
    try:
        return Address(display_name=_one_line(name), addr_spec=addr)
    except ValueError as exc:  # the email package's own, stricter syntax check
        raise ValueError(f"recipient address {addr!r} is invalid: {exc}") from None


def is_message_id(value: str) -> bool:
    """Whether `value` may go into In-Reply-To/References as it is (a customer's id may not)."""
    return len(value) <= _LONGEST_PLAIN and bool(_MESSAGE_ID.fullmatch(value))


def _checked_id(value: str, what: str) -> str:
    if len(value) > _LONGEST_PLAIN or not _MESSAGE_ID.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a Message-ID like <id@domain>")
    return value


def _earlier_ids(previous_ids: Sequence[str], exclude: set[str]) -> list[str]:
    """The last earlier ids, without duplicates; a resend may find its own id in the history."""
    if isinstance(previous_ids, str):
        raise TypeError("previous_ids must be a sequence of Message-IDs, not one string")
    checked_ids = [_checked_id(value, "previous id") for value in previous_ids]
    seen: set[str] = set(exclude)
    unique: list[str] = []
    for checked in reversed(checked_ids):
        if checked not in seen:
            seen.add(checked)
            unique.append(checked)
        if len(unique) == MAX_REFERENCES:
            break
    return unique[::-1]
