"""Send days, hours and holidays: when a mail may go out.

Pure: the holiday tables are computed by the `holidays` package, not fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from mahnwerk.rules import WEEKDAYS, SendWindow

_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Look this far ahead for the next opening; a window that never opens is a config error.
_HORIZON_DAYS = 60


@dataclass(frozen=True, slots=True)
class WindowStatus:
    open: bool
    note: str
    opens_at: datetime | None


class SendCalendar:
    def __init__(self, window: SendWindow, tz: ZoneInfo) -> None:
        self.window = window
        self.tz = tz
        self._days = frozenset(WEEKDAYS.index(d) for d in window.days)
        self._holidays: Any = None
        if window.holidays:
            country, _, subdiv = window.holidays.partition("-")
            self._holidays = holidays.country_holidays(country, subdiv=subdiv or None)

    def holiday_name(self, day: date) -> str | None:
        if self._holidays is None:
            return None
        name = self._holidays.get(day)
        return None if name is None else str(name)

    def is_send_day(self, day: date) -> bool:
        return day.weekday() in self._days and self.holiday_name(day) is None

    def opening(self, day: date) -> datetime:
        """The moment the window opens on `day`, in the company's time zone."""
        return datetime.combine(day, self.window.from_, tzinfo=self.tz)

    def status(self, now: datetime) -> WindowStatus:
        local = now.astimezone(self.tz)
        today = local.date()
        clock = local.time().replace(tzinfo=None)
        if today.weekday() not in self._days:
            note = f"{today.isoformat()} is a {_DAY_NAMES[today.weekday()]}, not a send day"
        elif (name := self.holiday_name(today)) is not None:
            note = f"{today.isoformat()} is a holiday ({name})"
        elif clock < self.window.from_:
            return WindowStatus(
                False,
                f"before the send window ({self.window.from_:%H:%M})",
                self.opening(today),
            )
        elif clock >= self.window.to:
            note = f"after the send window (closes {self.window.to:%H:%M})"
        else:
            return WindowStatus(True, "", None)
        return WindowStatus(False, note, self.next_opening(today))

    def next_opening(self, after: date) -> datetime | None:
        day = after
        for _ in range(_HORIZON_DAYS):
            day += timedelta(days=1)
            if self.is_send_day(day):
                return self.opening(day)
        return None
