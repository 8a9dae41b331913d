"""The customer's own words in a reply: quoted history, signatures and footers removed.

Why this matters: a reply usually carries our whole reminder below the customer's line, with
its invoice numbers, amounts and due dates. The classifier must read only what the customer
wrote, or "fällig am 18.11.2026" from our own text turns into a payment promise. So the rules
below err on the side of cutting: losing a customer's postscript is cheap, reading our
reminder as the customer's words is not.

The work is line based and done in this order:

1. quoted lines (">") are dropped, and so is an attribution ("Am … schrieb X:", "On … wrote:")
   that introduces them; text between or below quotes (interleaved or bottom posting) stays;
2. an unquoted history (Outlook header block, "-----Original Message-----", an attribution
   followed by unquoted text, a forwarded message) ends the customer's text;
3. mail-parser-reply's header patterns get a second look at what is left;
4. our own reminder, pasted without any marker, is recognised by its fixed phrases;
5. signatures: "-- ", sign-offs ("Mit freundlichen Grüßen", "Best regards", …) with the
   name block below, "Sent from my iPhone" and legal footers ("Geschäftsführer:", "HRB").

Pure functions; `html_to_text` also lives here since HTML-only replies need it, and it marks
`<blockquote>` and the clients' quote containers with ">" so that step 1 sees them as quotes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from html.parser import HTMLParser

from mailparser_reply.parser import EmailMessage

# Customer text worth reading is at the top; a longer body is (or holds) history, and the
# line regexes below should never see megabytes.
MAX_CHARS = 100_000
# How many lines one attribution ("On …, X <x@y> wrote:") may be wrapped over.
_WRAPPED = 3
# How far (non-blank lines) an Outlook header block's fields may be spread.
_HEADER_WINDOW = 6
_LANGUAGES = ("de", "en")
# What mail-parser-reply's header patterns get to see (see _cut_library_headers).
_LIBRARY_LINE = 200
_LIBRARY_CHARS = 20_000

# Characters that end or hide a line: turned into line breaks or dropped before anything else.
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_INVISIBLE = re.compile(
    r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)
_SPACES = re.compile(r"[\t\xa0\u2000-\u200a\u202f\u205f\u3000]")

_QUOTED = re.compile(r"^\s*>")
# Warnings mail servers put above the text of mail from outside; never the customer's words.
_BANNER = re.compile(
    r"^\W{0,4}(?:CAUTION|WARNING|EXTERNAL(?: EMAIL| SENDER| MESSAGE)?|ACHTUNG|VORSICHT|WARNUNG"
    r"|EXTERN|HINWEIS)\b.{0,60}?(?:\b(?:originated|came|comes|was sent|is)\s+from\s+"
    r"(?:outside|an? external)|\b(?:stammt|kommt|wurde \w+)\s+von\s+(?:au(?:ß|ss)erhalb"
    r"|extern|eine[mr] externen))"
    r"|^\W{0,4}\[?(?:EXTERNAL|EXTERN)\]?\W{0,4}$",
    re.IGNORECASE,
)
# A quoted line at least this long that does not end a sentence was wrapped by the client.
_WRAP_WIDTH = 40
_SENTENCE_END = (".", "!", "?", ":", ";", ")", '"', "»", "«")

# Attributions that introduce a quote. The "strong" ones end the customer's text even when no
# ">" follows (clients that quote without markers); the weak ones only when a quote follows.
_STRONG_ATTRIBUTIONS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^\s*Am\s.{4,160}?\sschrieb\b.{0,160}?:$",  # Am 24.11.2026 um 10:15 schrieb X:
        r"^\s*Am\s.{4,160}?\shat\s.{1,160}?\sgeschrieben\s*:$",
        r"^\s*On\s.{4,160}?\b(?:wrote|writes)\s*:$",  # On Tue, 24 Nov 2026 at 10:15, X wrote:
        r"^.{1,160}?\bschrieb am\s.{4,80}:$",  # X <x@y> schrieb am Di., 24. Nov. 2026, 10:15:
        r"^.{1,160}?\bwrote on\s.{4,80}:$",
        r"^\s*Le\s.{4,160}?\ba écrit\s*:$",
        r"^\s*Op\s.{4,160}?\bschreef\b.{0,160}?:$",
        r"^\s*(?:Il|El)\s.{4,160}?\b(?:ha scritto|escribió)\s*:$",
        r"^\s*\d{1,4}[./-]\d{1,2}[./-]\d{1,4}.{0,40}?,\s.{1,160}\s(?:wrote|schrieb)\s*:$",
        # Any language: a time, an address, a colon at the end ("2016-10-24 15:36 GMT+02:00
        # Foo <foo@bar>:", "30 серп. 2016 р. 20:45 "Arpit" <a@b> пише:").
        r"^(?=.*\b\d{1,2}[:.]\d{2}\b).{0,160}<?[\w.+-]+@[\w.-]+>+\s*[^\s:<>]{0,20}\s*:$",
    )
)
_WEAK_ATTRIBUTION = re.compile(
    r"^\S.{0,160}?\b(?:wrote|schrieb|writes|schreibt)\s*:$", re.IGNORECASE
)
_ATTRIBUTION_HEAD = re.compile(r"^\s*(?:Am|On)\s", re.IGNORECASE)
# Words an attribution may start with or contain; only such a line may begin a wrapped one.
_ATTRIBUTION_START = re.compile(
    r"^\s*(?:Am|On|Le|Op|Il|El|Em|Den)\s|\b(?:schrieb|wrote)\b|\b\d{1,2}[:.]\d{2}\b", re.IGNORECASE
)

# Lines after which nothing is the customer's any more.
_SEPARATORS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^[\s*]*-{2,}\s*(?:Original(?:\s|-)?(?:Message|Nachricht)"
        r"|Urspr(?:ü|ue)ngliche Nachricht|Weitergeleitete Nachricht|Forwarded message"
        r"|Nachricht weitergeleitet)\s*-{2,}[\s*]*$",
        # the same in any language: "-----Mensaje original-----", "-------- Message d'origine"
        r"^[\s*]*-{4,}\s*[^-\s][^-]{2,40}-{4,}[\s*]*$",
        r"^\s*_{10,}\s*$",  # Outlook's line above the header block
        r"^\s*(?:Begin forwarded message|Anfang der weitergeleiteten (?:E-Mail|Nachricht)"
        r"|Start of forwarded message)\s*:?\s*$",
        r"^[\s*]*(?:Von|From)\s*:\**\s.{0,200}?\b(?:Gesendet|Sent|Datum|Date)\s*:\**\s.{0,400}?"
        r"\b(?:An|To|Betreff|Subject)\s*:",  # an Outlook header block flattened to one line
    )
)

# Outlook/Apple/webmail header blocks: "Von: …", "Gesendet: …", "An: …", "Betreff: …".
# The other languages (fr, es, it, nl) cost nothing and catch forwarded chains.
_HEADER_FIELD = re.compile(
    r"^[\s*]*(Von|From|Gesendet|Sent|Datum|Date|An|To|Betreff|Subject|Cc|Kopie|Antwort an"
    r"|Reply-To|De|Envoyé|À|Objet|Enviado|Para|Asunto|Da|Inviato|Oggetto|Van|Verzonden|Aan"
    r"|Onderwerp)[\s*]*:",
    re.IGNORECASE,
)
_FROM_FIELDS = frozenset({"von", "from", "de", "da", "van"})

# Sign-offs: a line that is only the closing phrase, maybe with a comma and a name.
_SIGN_OFF_PHRASES = (
    r"(?:Mit\s)?(?:freundliche[nm]?|beste[nm]?|herzliche[nm]?|liebe[nm]?|viele[nm]?|schöne[nm]?"
    r"|sonnige[nm]?|kollegiale[nm]?|besten|vielen Dank und (?:viele|beste|freundliche)"
    r"|danke und (?:viele|beste)?)?\s*Gr(?:ü|ue)(?:ß|ss)(?:en|e)?",
    r"(?:Mit\s)?(?:freundliche[nm]|beste[nm]|herzliche[nm]|liebe[nm]|viele[nm])?\s*Gru(?:ß|ss)",
    r"MfG|VG|LG|BG|Freundlichst|Hochachtungsvoll|Tschüss|Ciao|Bis bald",
    r"(?:Best|Kind|Warm|Warmest|Kindest|With kind|With best|Many)\s+regards|Regards|Rgds|BR|KR",
    r"Best(?: wishes)?|All the best|Cheers|Greetings|Sincerely",
    r"Yours (?:sincerely|faithfully|truly)",
    r"(?:Thanks|Thank you|Many thanks|Danke|Vielen Dank)(?:\s(?:and|&|und)\s[\w ]{1,20})?",
)
_SIGN_OFF = re.compile(rf"^\s*(?:{'|'.join(_SIGN_OFF_PHRASES)})", re.IGNORECASE)
# What may follow a sign-off on its line: a place and a name, capitalised (checked without
# IGNORECASE, so that "Grüße aus dem Urlaub, wir zahlen morgen" is not a sign-off).
_SIGN_OFF_REST = re.compile(
    r"^\s*[,.]?(?:\s+(?:aus|from|nach|in)\s+[A-ZÄÖÜ][\w.-]*)?"
    r"(?:\s*[,.]?\s*[A-ZÄÖÜ][\w.'-]*(?:\s+[A-ZÄÖÜ][\w.'-]*){0,3})?\s*[,.]?$"
)

_SIG_DELIMITER = re.compile(r"^\s*(?:--|—|-- -)\s*$")
# "Sent from my iPhone" and kin; specific enough that "Sent from our bank account today."
# or "Gesendet von unserer Buchhaltung" stay.
_MOBILE = re.compile(
    r"^\s*[(<]*(?:"
    r"Sent (?:from|with|via|using) (?:my|Mail for|Outlook|Yahoo|Samsung|Windows|mobile|iPhone"
    r"|iPad|Android|BlackBerry|AOL|Proton|Spark|Airmail|Mailbox|Gmail|GMX)\b"
    r"|Get Outlook for|Holen Sie sich Outlook|Von meinem .{1,60}? gesendet"
    r"|Gesendet (?:von|mit|vom) (?:meinem|mein|Mail für|Outlook|iPhone|iPad|Samsung|Android"
    r"|BlackBerry|Yahoo|GMX|WEB\.DE|einem|unterwegs)\b"
    r"|Diese Nachricht wurde von meinem|Von unterwegs gesendet"
    r"|Envoyé de(?:puis)? mon|Verzonden (?:met|vanaf)|Inviato da|Sendt fra|Skickat från)"
    r".{0,160}$",
    re.IGNORECASE,
)
# Legal footer lines start a signature block on their own; contact lines only in pairs, so that
# "bitte an E-Mail: buchhaltung@kunde.example" in a sentence block stays.
_LEGAL = re.compile(
    r"^\s*(?:Geschäftsführ(?:er|erin|ung)|Gesch\.-?Führer|GF\s*:|Vorstand\s*:|Aufsichtsrat"
    r"|Amtsgericht|Registergericht|Handelsregister|Registernummer|HRB\b|HRA\b|USt\.?[\s-]?Id"
    r"|UStID|Umsatzsteuer-?Id|Steuer-?(?:nummer|Nr)|St\.?-?Nr|Sitz(?: der Gesellschaft)?\s*:"
    r"|Managing Directors?\b|CEO\s*:|Registered (?:office|in)\b|Company (?:number|registration)"
    r"|VAT(?: ID| No| number| reg)?\b|Tax ID|Commercial register|Court of registration)",
    re.IGNORECASE,
)
_CONTACT = re.compile(
    r"^\s*(?:Tel(?:efon)?\.?\s*:?|Phone\s*:|Fon\s*:|Fax\.?\s*:?|Mobil(?:e|telefon)?\.?\s*:?"
    r"|Handy\s*:|Cell\s*:|E-?Mail\s*:|Web(?:site)?\s*:|Internet\s*:|www\.)",
    re.IGNORECASE,
)

# Our own reminders (templates/*/*.txt.j2) without any quote marker: what no customer writes.
# Two different ones mean the rest is our mail; it starts at the nearest greeting above.
# Line starts as one alternation (a named group each), sentences as plain lower-case strings:
# one regex pass and a few str.find calls instead of twenty searches.
_OUR_LINE_STARTS = (
    r"Rechnung\s\S+\svom\s\d",
    r"fällig am\s.*\((?:seit|heute|morgen|in\s)",
    r"offener Betrag:",
    r"Offener Betrag insgesamt:",
    r"Zu zahlen:",
    r"Mahngebühr:",
    r"Verwendungszweck:",
    r"Invoice\s\S+\sdated\s",
    r"due on\s.*\(",
    r"outstanding:",
    r"Total outstanding:",
    r"Amount to pay:",
    r"Reminder fee:",
    r"Payment reference:",
)
_OUR_LINE = re.compile(
    "^[ \t]*(?:" + "|".join(f"(?P<p{n}>{p})" for n, p in enumerate(_OUR_LINE_STARTS)) + ")",
    re.IGNORECASE | re.MULTILINE,
)
_OUR_SENTENCES = (
    "antworten sie einfach auf diese e-mail",
    "konnten wir bisher noch keinen zahlungseingang",
    "dies ist unsere letzte mahnung",
    "just reply to this email if you have already paid",
    "we have not yet received payment",
    "this is our final reminder",
)
_OUR_GREETING = re.compile(r"^\s*(?:Guten Tag|Dear|Sehr geehrte)\b", re.IGNORECASE)


def own_text(text: str, language: str = "") -> str:
    """The customer's own words from a plain-text reply body.

    `language` ("de", "en" or "") is taken for callers that know it, but changes nothing
    today: every rule applies in both languages, since customers answer German reminders in
    English and the other way round, and their mail clients write headers in their own.
    """
    lines = _normalise(text[:MAX_CHARS]).split("\n")
    lines = _drop_quotes(lines)
    lines = _cut_library_headers(lines)
    lines = _cut_our_reminder(lines)
    lines = _cut_signature(lines)
    return _tidy(lines)


def html_to_text(html: str) -> str:
    """Readable text from HTML: no tags, no script/style, entities decoded, a line per block.

    Quotes (`<blockquote>`, Gmail's/Yahoo's quote containers) come out with "> " in front of
    every line, so that `own_text` treats them like quotes in a plain-text mail.
    """
    converter = _HtmlText()
    try:
        converter.feed(html)
        converter.close()
    except Exception:  # html.parser asserts on some broken markup; keep what was read
        pass
    converter.flush_line()
    return _tidy(converter.lines, keep_indent=True)


def _normalise(text: str) -> str:
    text = _SPACES.sub(" ", _INVISIBLE.sub("", _LINE_BREAKS.sub("\n", text)))
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _drop_quotes(lines: list[str]) -> list[str]:
    """Drop ">" lines and the attributions above them; stop at an unquoted history."""
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _QUOTED.match(line) or _spilled(lines, i) or _BANNER.search(line):
            i += 1
            continue
        if any(p.match(line) for p in _SEPARATORS):
            break
        strong, length = _attribution(lines, i)
        if not length:
            length = _header_block(lines, i)
            strong = length > 0
        if length:
            after = _next_content(lines, i + length)
            if after < len(lines) and _QUOTED.match(lines[after]):
                i = after  # a quote follows: skip the attribution, keep reading below it
                continue
            if strong:
                break  # unquoted history: the rest is not the customer's
        kept.append(line)
        i += 1
    return kept


def _spilled(lines: Sequence[str], i: int) -> bool:
    """A quoted line re-wrapped without its ">": it follows a long quoted line cut mid-sentence.

    Some clients wrap quoted text and forget the marker on the continuation; our reminder's
    long lines ("… 1.539,56 € bis zum 5. Dezember 2026 auf …") would then leak dates and amounts.
    """
    if i == 0 or not lines[i].strip() or not _QUOTED.match(lines[i - 1]):
        return False
    previous = lines[i - 1].lstrip(" >").rstrip()
    return len(previous) >= _WRAP_WIDTH and not previous.endswith(_SENTENCE_END)


def _attribution(lines: Sequence[str], i: int) -> tuple[bool, int]:
    """(strong, number of lines) of an attribution starting at line i, or (False, 0)."""
    if not _ATTRIBUTION_START.search(lines[i]):
        return False, 0
    joined = ""
    for n in range(_WRAPPED):
        if i + n >= len(lines) or (n and not lines[i + n].strip()):
            break
        if n and _ATTRIBUTION_HEAD.match(lines[i + n]):
            break  # "Am heutigen Tage" above "Am So., 1. Jan. … schrieb X:" is text
        joined = f"{joined} {lines[i + n].strip()}".strip()
        if any(p.match(joined) for p in _STRONG_ATTRIBUTIONS):
            return True, n + 1
        if _WEAK_ATTRIBUTION.match(joined):
            return "@" in joined, n + 1  # "X <x@y> wrote:" is as clear as "On … wrote:"
    return False, 0


def _header_block(lines: Sequence[str], i: int) -> int:
    """Length of an Outlook-style header block starting at line i, or 0.

    It needs "Von:"/"From:" and one more field, or three different fields, so that a
    customer's "An: Buchhaltung" alone does not end the text.
    """
    first = _HEADER_FIELD.match(lines[i])
    if not first:
        return 0
    fields = {first.group(1).lower()}
    end = i + 1
    seen = 0
    j = i + 1
    while j < len(lines) and seen < _HEADER_WINDOW:
        if lines[j].strip():
            seen += 1
            field = _HEADER_FIELD.match(lines[j])
            if field:
                fields.add(field.group(1).lower())
                end = j + 1
        j += 1
    enough = 2 if fields & _FROM_FIELDS else 3
    return end - i if len(fields) >= enough else 0


def _next_content(lines: Sequence[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _library_header_pattern() -> re.Pattern[str]:
    """mail-parser-reply's reply-header patterns for German and English, compiled once.

    Taken from a throwaway EmailMessage, whose constructor calls re.sub with `count` given
    positionally: a DeprecationWarning from Python 3.13 on (alfonsrv/mail-parser-reply#29),
    which pytest's `filterwarnings = error` turns into an exception. Building the pattern once,
    with just that warning silenced, also saves constructing it for every message. The order
    of the languages does not matter: only where the first header starts is used.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="'count' is passed as positional argument",
            category=DeprecationWarning,
        )
        message = EmailMessage(text="", languages=list(_LANGUAGES))
    pattern: re.Pattern[str] = message.HEADER_REGEX
    return pattern


_LIBRARY_HEADERS = _library_header_pattern()


def _cut_library_headers(lines: list[str]) -> list[str]:
    """Cut at the first reply header mail-parser-reply knows and the rules above missed.

    Only its header patterns are used: its signature and disclaimer rules also remove
    sentences like "Thanks, we paid yesterday." or "Hinweis: …", which the classifier needs.
    Its "On … wrote:" pattern takes quadratic time in the length of a line, so it sees each
    line cut short and only the start of the text; headers are short and come early.
    """
    probe = "\n".join(line[:_LIBRARY_LINE] for line in lines)[:_LIBRARY_CHARS]
    match = _LIBRARY_HEADERS.search(probe)
    if match is None:
        return lines
    start = match.start() + (probe[match.start()] == "\n")  # some patterns start at the "\n"
    return lines[: probe.count("\n", 0, start)]


def _cut_our_reminder(lines: list[str]) -> list[str]:
    """Cut our reminder when it was pasted below the reply without any marker.

    Two different fixed phrases of ours are needed, so that a customer who copies one line
    ("Verwendungszweck: RE-2026-0042") keeps it. The cut goes to the nearest greeting above
    the first phrase ("Guten Tag …", "Dear …"), or else to the start of its paragraph.
    """
    lowered = "\n".join(lines).lower()
    first_at: dict[str, int] = {}  # phrase -> where it first occurs
    for match in _OUR_LINE.finditer(lowered):
        first_at.setdefault(match.lastgroup or "", match.start())
    for sentence in _OUR_SENTENCES:
        if (found := lowered.find(sentence)) >= 0:
            first_at[sentence] = found
    if len(first_at) < 2:
        return lines
    at = lowered.count("\n", 0, min(first_at.values()))
    start = next((n for n in range(at, -1, -1) if _OUR_GREETING.match(lines[n])), None)
    if start is None:
        start = at
        while start > 0 and lines[start - 1].strip():
            start -= 1
    return lines[:start]


def _cut_signature(lines: list[str]) -> list[str]:
    """Cut at the first line that starts a signature; the first line of text always stays."""
    first = _next_content(lines, 0)
    for n in range(first, len(lines)):
        line = lines[n]
        if _SIG_DELIMITER.match(line) or _MOBILE.match(line):
            return lines[:n]
        if n > first and _is_sign_off(line):
            return lines[:n]
        if n > first and (_LEGAL.match(line) or _contact_pair(lines, n)):
            return lines[: _block_start(lines, n, first)]
    return lines


def _is_sign_off(line: str) -> bool:
    head = _SIGN_OFF.match(line)
    return bool(head and _SIGN_OFF_REST.match(line[head.end() :]))


def _contact_pair(lines: Sequence[str], n: int) -> bool:
    """Line n is a contact line, and so is a neighbour: a contact block."""
    if not _CONTACT.match(lines[n]):
        return False
    near = (lines[m] for m in (n - 1, n + 1) if 0 <= m < len(lines))
    return any(_CONTACT.match(line) or _LEGAL.match(line) for line in near)


def _block_start(lines: Sequence[str], n: int, first: int) -> int:
    """Start of the paragraph holding line n, unless that is the customer's first paragraph."""
    start = n
    while start > first and lines[start - 1].strip():
        start -= 1
    return n if start == first else start


def _tidy(lines: Sequence[str], *, keep_indent: bool = False) -> str:
    """Join lines: trailing spaces off, at most one blank line in a row, no blank ends.

    Trailing lines without a letter or digit (a rule of dashes left over from a cut) go too.
    """
    out: list[str] = []
    for line in lines:
        line = line.rstrip() if keep_indent else line.strip()
        if line or (out and out[-1]):
            out.append(line)
    while out and not any(c.isalnum() for c in out[-1]):
        out.pop()
    return "\n".join(out)


# -- HTML ------------------------------------------------------------------------------------

# Elements whose text is not shown. Not <head>: an unclosed one would swallow the whole body.
_SKIP = frozenset({"script", "style", "title", "template", "noscript", "xml", "svg"})
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody",
        "thead", "tfoot", "tr", "ul", "body", "html",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_VOID = frozenset(
    {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr",
    }
)  # fmt: skip
# Containers clients put quoted history in, besides <blockquote>.
_QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted", "protonmail_quote", "moz-cite-prefix")
_OUTLOOK_RULE = "_" * 32
_WHITESPACE = re.compile(r"[ \t\r\n\f\xa0]+")
_MAX_OPEN = 10_000


class _HtmlText(HTMLParser):
    """Collects text lines with their quote depth; tolerant of unclosed and stray tags.

    A block element ends a line; a blank line comes only from markup that shows one
    (`<br>` on an empty line, a paragraph holding just `&nbsp;`), as clients write them.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._blank = False  # the current (empty) line is shown as a blank line
        self._depth = 0
        self._line_depth = 0
        self._skip = 0
        self._pre = 0
        # Open elements: (tag, quotes, skips), so a closing tag can undo what its start did.
        self._open: list[tuple[str, bool, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._blank = not self._line
            self.flush_line()
            return
        if tag == "hr":
            self.flush_line()
            self._add(_OUTLOOK_RULE)
            self.flush_line()
            return
        if tag in _VOID:
            return
        skips = tag in _SKIP
        classes = " ".join(value or "" for name, value in attrs if name in ("class", "id"))
        quotes = tag == "blockquote" or any(c in classes for c in _QUOTE_CLASSES)
        if tag in _BLOCK or quotes:
            self.flush_line()
        if len(self._open) < _MAX_OPEN:
            self._open.append((tag, quotes, skips))
            self._depth += quotes
            self._skip += skips
            self._pre += tag == "pre"
        if tag == "li":
            self._add("- ")
        elif tag in _CELLS:
            self._add(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or all(entry[0] != tag for entry in self._open):
            return
        while self._open:
            name, quotes, skips = self._open.pop()
            if name in _BLOCK or quotes:
                self.flush_line()
            self._depth -= quotes
            self._skip -= skips
            self._pre -= name == "pre"
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._skip > 0:
            return
        if self._pre > 0:
            head, *rest = data.split("\n")
            self._add(head)
            for part in rest:
                self.flush_line()
                self._add(part)
            return
        if "\xa0" in data and not data.strip():
            self._blank = not self._line
        self._add(_WHITESPACE.sub(" ", data))

    def _add(self, text: str) -> None:
        if not text:
            return
        if not self._line:
            if self._pre <= 0:
                text = text.lstrip()
                if not text:
                    return
            self._line_depth = self._depth
        elif text.startswith(" ") and self._line[-1].endswith(" "):
            text = text[1:]
        self._line.append(text)

    def flush_line(self) -> None:
        """End the current line (a no-op on an empty one, unless it shows as blank)."""
        line = "".join(self._line).rstrip()
        if line:
            self.lines.append("> " * max(self._line_depth, 0) + line)
        elif self._blank and self.lines and self.lines[-1]:
            self.lines.append("")
        self._line = []
        self._blank = False
