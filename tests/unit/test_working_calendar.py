"""Deadlines in working days: China's public holidays and make-up working days (the maintained
table the product reads), company closure days, and Monday-Friday past the table's years."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from domain.calendar import SHANGHAI, HolidayTable, WorkingCalendar
from infrastructure.holiday_calendar import china_holidays


def at(day: str, hour: int = 10) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), SHANGHAI).replace(
        hour=hour
    )


def due(calendar: WorkingCalendar, start: str, days: int) -> str:
    return calendar.add_working_days(at(start), days).due_at.astimezone(SHANGHAI).date().isoformat()


CHINA = WorkingCalendar(china_holidays())


def test_the_table_knows_2026() -> None:
    table = china_holidays()
    assert table.first_year == 2004 and table.last_year >= 2026
    assert table.source.startswith("chinese-calendar ")


def test_monday_to_friday_alone_lands_inside_national_day() -> None:
    # The bug this calendar fixes: three weekdays after Wednesday 2026-09-30 is 10-05.
    assert due(WorkingCalendar(), "2026-09-30", 3) == "2026-10-05"


@pytest.mark.parametrize(
    "start,days,expected",
    [
        # National Day 2026: 10-01..10-07 off; Sunday 09-20 and Saturday 10-10 are working days.
        ("2026-09-30", 1, "2026-10-08"),
        ("2026-09-30", 3, "2026-10-10"),  # the make-up Saturday counts
        ("2026-09-30", 4, "2026-10-12"),
        ("2026-09-18", 1, "2026-09-20"),  # make-up Sunday before the holiday
        # Spring Festival 2026: 02-15..02-23 off; Saturdays 02-14 and 02-28 are working days.
        ("2026-02-13", 1, "2026-02-14"),
        ("2026-02-13", 2, "2026-02-24"),
        ("2026-02-26", 2, "2026-02-28"),
        ("2026-02-26", 3, "2026-03-02"),
        # An ordinary week: weekends off.
        ("2026-11-20", 1, "2026-11-23"),
    ],
)
def test_deadlines_across_the_2026_holidays(start: str, days: int, expected: str) -> None:
    deadline = CHINA.add_working_days(at(start), days)
    assert deadline.due_at.astimezone(SHANGHAI).date().isoformat() == expected
    assert deadline.due_at.astimezone(SHANGHAI).hour == 10  # the same local time
    assert deadline.due_at.tzinfo == SHANGHAI and not deadline.fell_back
    assert "chinese-calendar" in deadline.calendar


def test_the_deadline_keeps_the_starts_zone() -> None:
    start = datetime(2026, 9, 30, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
    deadline = CHINA.add_working_days(start, 3)
    assert deadline.due_at == datetime(2026, 10, 10, 2, 0, tzinfo=UTC)
    assert deadline.due_at.tzinfo == UTC


def test_company_closure_days_are_not_working_days() -> None:
    closed = WorkingCalendar(china_holidays(), frozenset({date(2026, 10, 8), date(2026, 10, 10)}))
    assert due(closed, "2026-09-30", 3) == "2026-10-13"
    assert not closed.is_working_day(date(2026, 10, 10))  # closed even on a make-up day
    assert closed.add_working_days(at("2026-09-30"), 3).calendar.endswith(
        "and 2 company closure days"
    )


def test_past_the_tables_years_it_counts_monday_to_friday_and_says_so() -> None:
    table = china_holidays()
    last = table.last_year
    deadline = CHINA.add_working_days(at(f"{last}-12-30"), 3)
    # {last+1}-01-01 is New Year's Day, but the table cannot know it: it is counted.
    assert deadline.fell_back and str(last + 1) in deadline.note
    assert f"knows {table.first_year}-{last} only" in deadline.note
    inside = CHINA.add_working_days(at(f"{last}-11-02"), 3)
    assert not inside.fell_back and inside.note == ""


def test_a_hand_made_table_is_enough_for_the_domain() -> None:
    table = HolidayTable(
        2030,
        2030,
        holidays=frozenset({date(2030, 5, 1)}),
        workdays=frozenset({date(2030, 5, 4)}),
        source="test table",
    )
    calendar = WorkingCalendar(table)
    assert not calendar.is_working_day(date(2030, 5, 1))  # a Wednesday holiday
    assert calendar.is_working_day(date(2030, 5, 4))  # a make-up Saturday
    assert calendar.describe() == (
        "China's public holidays and make-up working days (test table, 2030-2030)"
    )
    assert WorkingCalendar().describe() == "Monday to Friday"
