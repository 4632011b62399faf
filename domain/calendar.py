"""Beijing time and working days: the one place the business calendar is defined.

Business dates, "not in the future" and every deadline in working days are Beijing's
(Asia/Shanghai, UTC+8, no daylight saving). Pure arithmetic on aware datetimes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def add_working_days(start: datetime, days: int, zone: tzinfo) -> datetime:
    """`days` working days (Monday to Friday, local to `zone`) after `start`, same local time.
    Public holidays and make-up working days are not modelled yet."""
    local = start.astimezone(zone)
    added = 0
    while added < days:
        local += timedelta(days=1)
        if local.weekday() < 5:
            added += 1
    return local.astimezone(start.tzinfo)
