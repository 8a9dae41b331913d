"""Where mahnwerk finds its config and state, and how `--as-of` becomes a moment."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

from mahnwerk.calendar import SendCalendar
from mahnwerk.rules import Rules


def default_state_dir() -> Path:
    # systemd sets STATE_DIRECTORY (colon-separated when several are configured).
    env = os.environ.get("STATE_DIRECTORY", "")
    return Path(env.split(":")[0]) if env else Path("state")


def resolve_as_of(text: str | None, rules: Rules) -> datetime:
    """A date means that day at the opening of the send window; a datetime is taken as given.

    A datetime without an offset is read in the company's time zone. Without
    --as-of, the real clock: the only place the shell reads it for planning.
    """
    tz = rules.company.tz
    if text is None:
        return datetime.now(tz)
    try:
        if len(text) == 10:
            return SendCalendar(rules.send_window, tz).opening(date.fromisoformat(text))
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--as-of {text!r}: give a date (2026-11-25) or an ISO datetime (2026-11-25T10:30)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
