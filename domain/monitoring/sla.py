"""The acknowledgement window: time inside declared maintenance windows does not count.

Pure arithmetic on aware datetimes; the caller passes the windows it knows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta


def merged(windows: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Sorted, non-overlapping windows."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(w for w in windows if w[1] > w[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def deadline(
    start: datetime, window: timedelta, maintenance: Iterable[tuple[datetime, datetime]]
) -> datetime:
    """When `window` of time outside maintenance has passed since `start`."""
    t, left = start, window
    for a, b in merged(maintenance):
        if b <= t:
            continue
        a = max(a, t)
        if t + left <= a:
            break
        left -= a - t
        t = b
    return t + left
