"""The schema of rules.yaml: what a user may write, checked strictly.

Every model forbids unknown keys, so a typo is an error rather than a silently
ignored setting. This module is pure (no file access); `config.py` reads the
file and turns validation errors into file:line:column messages.
"""

from __future__ import annotations

import re
from datetime import date, time
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from babel import Locale, UnknownLocaleError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mahnwerk.models import UNSAFE_TEXT, Invoice

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]


class LocatedError(ValueError):
    """A model-level error that knows which key below the model it is about.

    pydantic reports a model validator's error at the model; config.py appends
    `where` so the user is pointed at the stage or policy at fault.
    """

    def __init__(self, message: str, where: tuple[int | str, ...]) -> None:
        super().__init__(message)
        self.where = where


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_newlines(value: str) -> str:
    if UNSAFE_TEXT.search(value):
        raise ValueError(
            "must be a single line of plain text (no line breaks or control characters)"
        )
    return value


class Bank(Strict):
    holder: str | None = None
    iban: str
    bic: str | None = None
    bank_name: str | None = None

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str) -> str:
        compact = value.replace(" ", "").upper()
        if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", compact):
            raise ValueError("is not an IBAN (two letters, two digits, then 11-30 characters)")
        # ISO 13616 mod-97 check: catches a mistyped digit before a customer pays to nowhere.
        rearranged = compact[4:] + compact[:4]
        digits = "".join(str(int(ch, 36)) for ch in rearranged)
        if int(digits) % 97 != 1:
            raise ValueError("has a wrong check sum (a typo in the IBAN?)")
        return value


class Company(Strict):
    name: str
    sender: str = Field(description='From header, e.g. "Acme GmbH <forderungen@acme.example>"')
    reply_to: str | None = None
    locale: str = "de_DE"
    timezone: str = "Europe/Berlin"
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    bank: Bank
    phone: str | None = None
    website: str | None = None

    @field_validator("name", "sender", "reply_to")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        return value if value is None else _no_newlines(value)

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        try:
            Locale.parse(value)
        except (UnknownLocaleError, ValueError) as exc:
            raise ValueError(f"unknown locale {value!r} (e.g. de_DE, en_GB)") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Berlin)") from exc
        return value

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class SendWindow(Strict):
    days: list[Weekday] = Field(default=["mon", "tue", "wed", "thu", "fri"], min_length=1)
    from_: time = Field(default=time(9, 0), alias="from")
    to: time = time(16, 0)
    holidays: str | None = Field(
        default="DE", description="ISO country, optionally with subdivision: DE, DE-BY, AT"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _quoted_time(cls, value: object) -> object:
        # Unquoted 09:00 is the integer 540 in YAML 1.1; a silent 00:09 would be worse.
        if isinstance(value, int):
            raise ValueError('write the time in quotes, e.g. "09:00"')
        return value

    @field_validator("holidays")
    @classmethod
    def _holidays(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().upper()
        country, _, subdiv = value.partition("-")
        supported: dict[str, list[str]] = holidays.list_supported_countries()
        if country not in supported:
            raise ValueError(f"no holiday calendar for country {country!r} (e.g. DE, AT, CH)")
        if subdiv and subdiv not in supported[country]:
            known = ", ".join(f"{country}-{s}" for s in supported[country])
            raise ValueError(f"{country} has no subdivision {subdiv!r}; known: {known}")
        return value

    @model_validator(mode="after")
    def _order(self) -> SendWindow:
        if self.from_ >= self.to:
            raise ValueError("'from' must be earlier than 'to'")
        return self


class ContactLimits(Strict):
    min_days_between: int = Field(default=3, ge=0, le=365, strict=True)
    max_per_week: int = Field(default=2, ge=1, le=50, strict=True)


class Match(Strict):
    tags: list[str] = Field(default_factory=list, description="any of these tags")

    @field_validator("tags")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        # Tags from the CSV are lower-cased too: `Key_Account` matches `key_account`.
        return [t.casefold() for t in value]

    customer_type: Literal["b2b", "b2c"] | None = None
    min_amount: Money | None = None
    max_amount: Money | None = None

    @property
    def is_catch_all(self) -> bool:
        return (
            not self.tags
            and self.customer_type is None
            and (self.min_amount is None and self.max_amount is None)
        )

    def matches(self, inv: Invoice) -> bool:
        if self.tags and not set(self.tags).intersection(inv.tags):
            return False
        if self.customer_type is not None and inv.customer_type != self.customer_type:
            return False
        if self.min_amount is not None and inv.open_amount < self.min_amount:
            return False
        return not (self.max_amount is not None and inv.open_amount > self.max_amount)


class Stage(Strict):
    name: Name
    description: str = ""
    days: int = Field(ge=-365, le=3650, strict=True, description="relative to the due date")
    template: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]+$")
    action: Literal["email", "escalate"] = "email"
    fee: Money | None = None
    deadline_days: int | None = Field(default=None, ge=1, le=90, strict=True)

    @model_validator(mode="after")
    def _template_for_email(self) -> Stage:
        if self.action == "email" and self.template is None:
            raise ValueError("an email stage needs a 'template'")
        return self

    @property
    def is_pre_due(self) -> bool:
        return self.days < 0


class Policy(Strict):
    name: Name
    description: str = ""
    match: Match = Field(default_factory=Match)
    stages: list[Stage] = Field(min_length=1)

    @model_validator(mode="after")
    def _stages_ordered(self) -> Policy:
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique, repeated: {', '.join(dupes)}")
        for i, (a, b) in enumerate(zip(self.stages, self.stages[1:], strict=False)):
            if b.days <= a.days:
                raise LocatedError(
                    f"stages must be in order of 'days': {b.name} ({b.days}) "
                    f"comes after {a.name} ({a.days})",
                    ("stages", i + 1, "days"),
                )
        return self

    def index(self, stage: str) -> int | None:
        for i, s in enumerate(self.stages):
            if s.name == stage:
                return i
        return None


class Pause(Strict):
    reason: str = Field(min_length=1)
    until: date | None = None


class Exclude(Strict):
    reason: str = Field(min_length=1)


class Override(Strict):
    pause: Pause | None = None
    exclude: Exclude | None = None

    @model_validator(mode="after")
    def _something(self) -> Override:
        if self.pause is None and self.exclude is None:
            raise ValueError("an override needs 'pause' or 'exclude'")
        return self


class Overrides(Strict):
    customers: dict[str, Override] = Field(default_factory=dict)
    invoices: dict[str, Override] = Field(default_factory=dict)


class Server(Strict):
    """A mail server login. The password never lives here: see password_env and credential."""

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535, strict=True)
    security: Literal["ssl", "starttls", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the password",
    )
    credential: str = Field(
        default="smtp-password",
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="file in $CREDENTIALS_DIRECTORY holding the password (systemd)",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)


def _port_for(security_ports: dict[str, int], data: object) -> object:
    """Fill in the port the chosen security implies: starttls on 993 would only time out."""
    if isinstance(data, dict) and "port" not in data:
        security = data.get("security")
        if isinstance(security, str) and security in security_ports:
            return {**data, "port": security_ports[security]}
    return data


class Smtp(Server):
    """The outgoing mail server."""

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: object) -> object:
        return _port_for({"ssl": 465, "starttls": 587, "none": 25}, data)

    rate_per_minute: int = Field(default=30, ge=1, le=10_000, strict=True)
    retry_for_hours: int = Field(
        default=24, ge=1, le=24 * 14, strict=True, description="4xx and timeouts, then give up"
    )


class Imap(Server):
    """The mailbox the replies arrive in (and, optionally, the Sent folder)."""

    port: int = Field(default=993, ge=1, le=65535, strict=True)
    security: Literal["ssl", "starttls", "none"] = "ssl"
    credential: str = Field(
        default="imap-password",
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="file in $CREDENTIALS_DIRECTORY holding the password (systemd)",
    )
    folder: str = Field(default="INBOX", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: object) -> object:
        return _port_for({"ssl": 993, "starttls": 143, "none": 143}, data)

    # Where sent reminders are looked up after a crash left their outcome unknown.
    sent_folder: str | None = Field(default=None, min_length=1)
    # APPEND a copy of each sent reminder to sent_folder (off: Gmail and M365 keep their own).
    append_sent: bool = False
    # Where a reply goes once its result is committed; created when missing.
    processed_folder: str | None = Field(default="Mahnwerk/Processed", min_length=1)
    review_folder: str | None = Field(default="Mahnwerk/Review", min_length=1)
    # The authserv-id of our own receiving server's Authentication-Results header: only that
    # header is believed (anyone can add one), and a reply failing DKIM or DMARC there is
    # never acted on automatically.
    trusted_authserv_id: str | None = Field(default=None, min_length=1)

    @field_validator("folder", "sent_folder", "processed_folder", "review_folder")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        return value if value is None else _no_newlines(value)

    @model_validator(mode="after")
    def _append_needs_folder(self) -> Imap:
        if self.append_sent and self.sent_folder is None:
            raise ValueError("append_sent needs a sent_folder to append to")
        return self


class Outbox(Strict):
    """What happens to a mail whose delivery cannot be told (a crash or a lost reply after DATA)."""

    # hold: a person decides (`mahnwerk outbox confirm|retry`); resend: again, same Message-ID.
    on_unknown: Literal["hold", "resend"] = "hold"


class Replies(Strict):
    """What the service does with a classified reply (`replies.py` holds the table)."""

    # Below this, a reply goes to the review queue and changes nothing by itself.
    confidence_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    # A promise pauses reminders until its date plus these days.
    promise_grace_days: int = Field(default=3, ge=0, le=90)
    # A promise without a date pauses this long.
    promise_default_days: int = Field(default=14, ge=1, le=120)
    # Once a promise's pause ends with the invoice still open, this mail goes out the next
    # send day (stage "broken_promise"); None: the regular stages simply go on.
    broken_promise_template: str | None = Field(
        default="broken_promise", pattern=r"^[A-Za-z0-9_\-]+$"
    )
    # "Paid" holds reminders this long, waiting for the payment to show in an import.
    paid_hold_days: int = Field(default=7, ge=1, le=60)
    # An out-of-office reply with a return date pauses reminders until then.
    pause_on_auto_reply: bool = True
    # Send the customer a short acknowledgement (promise noted, dispute being looked at).
    acknowledge: bool = False


class Service(Strict):
    """`mahnwerk run`: how often it ticks (replies are read as they arrive, via IDLE)."""

    # Every tick plans and sends what is due; outside the send window it sends nothing.
    tick_interval_seconds: int = Field(default=900, ge=1, le=86400, strict=True)
    # Prometheus metrics on http://metrics_address:metrics_port/metrics; off without a port.
    metrics_port: int | None = Field(default=None, ge=1, le=65535, strict=True)
    metrics_address: str = "127.0.0.1"


class Notify(Strict):
    """The person who takes over: escalations, disputes, questions and bounces are mailed here."""

    to: str = Field(min_length=3)
    language: Literal["de", "en"] = "de"

    @field_validator("to")
    @classmethod
    def _single_line(cls, value: str) -> str:
        return _no_newlines(value)


def _default_languages() -> dict[Literal["de", "en"], str]:
    return {"de": "de_DE", "en": "en_GB"}


class Rules(Strict):
    company: Company
    languages: dict[Literal["de", "en"], str] = Field(
        default_factory=_default_languages,
        description="the locale that formats amounts and dates in each mail language",
    )
    templates_dir: str = "templates"
    send_window: SendWindow = Field(default_factory=SendWindow)
    contact_limits: ContactLimits = Field(default_factory=ContactLimits)
    policies: list[Policy] = Field(min_length=1)
    overrides: Overrides = Field(default_factory=Overrides)
    smtp: Smtp | None = None
    imap: Imap | None = None
    outbox: Outbox = Field(default_factory=Outbox)
    notify: Notify | None = None
    replies: Replies = Field(default_factory=Replies)
    service: Service = Field(default_factory=Service)

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: dict[str, str]) -> dict[str, str]:
        for lang in ("de", "en"):
            if lang not in value:
                raise ValueError(f"needs a locale for {lang!r}")
        for loc in value.values():
            try:
                Locale.parse(loc)
            except (UnknownLocaleError, ValueError) as exc:
                raise ValueError(f"unknown locale {loc!r}") from exc
        return value

    @model_validator(mode="after")
    def _policies(self) -> Rules:
        names = [p.name for p in self.policies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"policy names must be unique, repeated: {', '.join(dupes)}")
        for i, p in enumerate(self.policies[:-1]):
            if p.match.is_catch_all:
                later = ", ".join(q.name for q in self.policies[i + 1 :])
                raise LocatedError(
                    f"policy {p.name!r} matches everything, so {later} can never match; "
                    "the default policy comes last",
                    ("policies", i, "match"),
                )
        if not self.policies[-1].match.is_catch_all:
            raise LocatedError(
                f"the last policy ({self.policies[-1].name!r}) must match everything "
                "(match: {}), so that every invoice has a policy",
                ("policies", len(self.policies) - 1, "match"),
            )
        return self

    def policy_for(self, inv: Invoice) -> Policy:
        for p in self.policies:
            if p.match.matches(inv):
                return p
        return self.policies[-1]

    def referenced_templates(self) -> list[tuple[int, int, str]]:
        """(policy index, stage index, template) for every stage that sends a mail."""
        return [
            (pi, si, s.template)
            for pi, p in enumerate(self.policies)
            for si, s in enumerate(p.stages)
            if s.template is not None
        ]
