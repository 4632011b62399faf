"""China's public holidays and make-up working days, from the maintained `chinese-calendar`
package (updated each year when the State Council publishes the next year's arrangement), as
the domain's `HolidayTable`. Upgrade the package to extend the years it knows."""

from __future__ import annotations

from functools import cache

from domain.calendar import HolidayTable


@cache
def china_holidays() -> HolidayTable:
    """The package's whole table, read once per process."""
    import chinese_calendar
    from chinese_calendar import constants

    holidays = frozenset(constants.holidays)
    years = [d.year for d in holidays]
    return HolidayTable(
        first_year=min(years),
        last_year=max(years),
        holidays=holidays,
        workdays=frozenset(constants.workdays),
        source=f"chinese-calendar {chinese_calendar.__version__}",
    )
