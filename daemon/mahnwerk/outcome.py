"""What the mail server said, reduced to what the outbox acts on, and when to try again.

Pure, so the outbox's decisions (outbox.py) can be tested without a server;
smtp.py produces these values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mahnwerk.rules import Smtp

OutcomeKind = Literal["accepted", "temporary", "permanent"]
SmtpCommand = Literal["MAIL", "RCPT", "DATA"]

BACKOFF_BASE_SECONDS = 60.0
BACKOFF_CAP_SECONDS = 3600.0


@dataclass(frozen=True)
class Outcome:
    """What the server said about one mail, in the terms the outbox acts on.

    `response` is the server's own text (for an accepted mail, the reply to the
    end of DATA, usually carrying its queue id): the thread keeps it as proof of
    sending. `command` names the step whose reply decided (None when the
    connection failed): only a refusal at RCPT says the address itself is bad,
    while 5xx at MAIL means our account or sender address is. `maybe_delivered`
    marks the dangerous case of a lost reply after the whole message was
    transmitted: the server may have queued it, so a blind resend could deliver
    it twice.
    """

    kind: OutcomeKind
    code: int | None
    response: str
    refused: tuple[tuple[str, int, str], ...] = ()
    maybe_delivered: bool = False
    command: SmtpCommand | None = None


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (0 = the first retry).

    Deterministic, so tests and the outbox's schedule are exact; capped because a
    mail server that is down for hours should still be retried hourly.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    # Stop doubling early: 2**attempt for a huge attempt is pointless work.
    return min(BACKOFF_BASE_SECONDS * (1 << min(attempt, 32)), BACKOFF_CAP_SECONDS)


def gives_up(first_failure_at: float, now: float, settings: Smtp) -> bool:
    """Whether a mail that keeps failing temporarily should go to a person instead.

    Both times are wall-clock seconds (time.time()), as the outbox keeps them
    across restarts; a monotonic clock would restart from zero.
    """
    return now - first_failure_at >= settings.retry_for_hours * 3600
