"""Working days and the same-day rule.

Decree 30/2020 wants a receiver to tell the sender on the day a document reaches it that it has it (status
01 or 03). "The day" is a working day of the receiving agency: a document delivered after the cut-off time,
on a weekend or on a holiday counts for the next working day. :meth:`WorkingCalendar.deadline` gives the
moment an answer is due.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_days(text: str) -> frozenset[int]:
    """``mon-fri``, ``mon,tue,sat`` or ``mon-fri,sat`` → weekday numbers (Monday 0). ValueError if bad."""
    days: set[int] = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        first, _, last = part.partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ValueError(f"unknown day in {text!r}: use mon, tue, wed, thu, fri, sat, sun and ranges")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        if b < a:
            raise ValueError(f"day range {part!r} runs backwards")
        days.update(range(a, b + 1))
    if not days:
        raise ValueError("at least one working day is needed")
    return frozenset(days)


@dataclasses.dataclass(frozen=True)
class WorkingCalendar:
    """Working days, the daily cut-off and holidays, in the agencies' time zone."""

    timezone: str = "Asia/Ho_Chi_Minh"
    days: frozenset[int] = frozenset(range(5))
    cutoff: dt.time = dt.time(17, 0)
    holidays: frozenset[dt.date] = frozenset()

    def is_working_day(self, day: dt.date) -> bool:
        return day.weekday() in self.days and day not in self.holidays

    def deadline(self, delivered: dt.datetime) -> dt.datetime:
        """The end of the working day on which something delivered at ``delivered`` counts (UTC)."""
        tz = ZoneInfo(self.timezone)
        local = delivered.astimezone(tz)
        day = local.date()
        if local.time() >= self.cutoff:
            day += dt.timedelta(days=1)
        for _ in range(400):  # a year of holidays at most
            if self.is_working_day(day):
                return dt.datetime.combine(day, self.cutoff, tz).astimezone(dt.timezone.utc)
            day += dt.timedelta(days=1)
        raise ValueError("no working day within 400 days: check the working days and holidays")
