"""Beijing time and working days: the one place the business calendar is defined.

Business dates, "not in the future" and every deadline in working days are Beijing's
(Asia/Shanghai, UTC+8, no daylight saving). A working day is a weekday that is not a public
holiday, or a weekend day the State Council made a working day (调休 make-up day), and not one of
the company's own closure days. The table of holidays and make-up days comes from outside
(infrastructure reads a maintained calendar and passes it in as a `HolidayTable`): the domain
only counts. Past the years the table knows, days count Monday to Friday, and the result says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
MON_FRI = "Monday to Friday"


@dataclass(frozen=True)
class HolidayTable:
    """China's public holidays and make-up working days for the years `first_year` to
    `last_year` (both included), as published by the State Council each year. `source` names
    the table (and its version), so a recorded deadline says what it was counted with."""

    first_year: int
    last_year: int
    holidays: frozenset[date]
    workdays: frozenset[date]  # weekend days that are working days
    source: str

    def knows(self, day: date) -> bool:
        return self.first_year <= day.year <= self.last_year


NO_HOLIDAYS = HolidayTable(1, 0, frozenset(), frozenset(), MON_FRI)


@dataclass(frozen=True)
class WorkingDeadline:
    """When a deadline in working days falls, and how it was counted (shown in the case view):
    `calendar` names the table; `note` is empty unless some days were counted Monday to Friday
    because the table does not know their year."""

    due_at: datetime
    calendar: str
    note: str = ""

    @property
    def fell_back(self) -> bool:
        return bool(self.note)


@dataclass(frozen=True)
class WorkingCalendar:
    """A tenant's working days: the public calendar plus the company's closure days."""

    table: HolidayTable = NO_HOLIDAYS
    closures: frozenset[date] = field(default_factory=frozenset)

    def is_working_day(self, day: date) -> bool:
        if day in self.closures:
            return False
        if self.table.knows(day):
            if day in self.table.workdays:
                return True
            if day in self.table.holidays:
                return False
        return day.weekday() < 5

    def add_working_days(
        self, start: datetime, days: int, zone: tzinfo = SHANGHAI
    ) -> WorkingDeadline:
        """`days` working days (local to `zone`) after `start`, at the same local time."""
        local = start.astimezone(zone)
        added = 0
        unknown: set[int] = set()
        while added < days:
            local += timedelta(days=1)
            if not self.table.knows(local.date()):
                unknown.add(local.year)
            if self.is_working_day(local.date()):
                added += 1
        return WorkingDeadline(
            local.astimezone(start.tzinfo), self.describe(), self._note(sorted(unknown))
        )

    def describe(self) -> str:
        """What days count, in a line a person reads in the case view."""
        if self.table is NO_HOLIDAYS or self.table.first_year > self.table.last_year:
            text = MON_FRI
        else:
            text = (
                f"China's public holidays and make-up working days ({self.table.source}, "
                f"{self.table.first_year}-{self.table.last_year})"
            )
        if self.closures:
            n = len(self.closures)
            text += f" and {n} company closure day{'s' if n > 1 else ''}"
        return text

    def _note(self, years: Iterable[int]) -> str:
        years = list(years)
        if not years or self.table.first_year > self.table.last_year:
            return ""
        shown = ", ".join(str(y) for y in years)
        return (
            f"counted {MON_FRI} in {shown}: the holiday calendar knows "
            f"{self.table.first_year}-{self.table.last_year} only, so public holidays and "
            "make-up working days there are not taken into account"
        )
