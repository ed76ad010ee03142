"""Goal cycles such as ``2026``, ``2026-H1``, ``2026-Q1`` and ``2026-03``."""

from __future__ import annotations

import calendar
import re
from datetime import date

CYCLE_PATTERN = r"^(?!0000)[0-9]{4}(-(Q[1-4]|H[12]|0[1-9]|1[0-2]))?\Z"
_CYCLE_RE = re.compile(CYCLE_PATTERN)


def cycle_bounds(cycle: str) -> tuple[date, date]:
    """First and last day (inclusive) of a cycle; ValueError if it is not one."""
    if not _CYCLE_RE.match(cycle):
        raise ValueError(f"not a cycle: {cycle!r} (expected 2026, 2026-H1, 2026-Q1 or 2026-03)")
    year = int(cycle[:4])
    if len(cycle) == 4:
        first, last = 1, 12
    elif cycle[5] == "Q":
        quarter = int(cycle[6])
        first, last = 3 * quarter - 2, 3 * quarter
    elif cycle[5] == "H":
        half = int(cycle[6])
        first, last = 6 * half - 5, 6 * half
    else:
        first = last = int(cycle[5:7])
    return date(year, first, 1), date(year, last, calendar.monthrange(year, last)[1])
