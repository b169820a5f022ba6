"""When a Claude usage limit resets, read from the text of the message that reports it.

Apart from `forge.runtimes.claude_stream`, which uses it on a failed attempt's reason: parsing
the CLI's human-readable clock, date and zone forms is a small grammar of its own.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["parse_reset_time"]

_LEGACY_LIMIT = re.compile(r"usage limit reached\|(\d{9,11})")
_RESETS = re.compile(
    r"hit your .*?limit.*?resets\s+(?P<when>[^()]+?)\s*(?:\((?P<tz>[A-Za-z_/+-]+)\))?\s*$",
    re.IGNORECASE,
)
_CLOCK = re.compile(r"(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>am|pm)", re.IGNORECASE)
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DATE = re.compile(r"\b(?P<mon>[A-Za-z]{3})[a-z]*\.?\s+(?P<day>\d{1,2})\b")


def parse_reset_time(text: str, now: float) -> float | None:
    """The epoch time a usage-limit message says the limit resets at; None if it says none.

    Understands the legacy `Claude AI usage limit reached|<epoch>` and the current
    `You've hit your … limit · resets 3:45pm` (optionally a weekday or `Apr 17,` and a
    `(Area/City)` zone; the local zone otherwise). The next such moment after `now` is taken.
    """
    legacy = _LEGACY_LIMIT.search(text)
    if legacy:
        return float(legacy.group(1))
    match = _RESETS.search(text.strip())
    if not match:
        return None
    when = match["when"]
    clock = _CLOCK.search(when)
    if not clock:
        return None
    hour = int(clock["h"]) % 12 + (12 if clock["ampm"].lower() == "pm" else 0)
    minute = int(clock["m"] or 0)
    zone = None
    if match["tz"]:
        try:
            zone = ZoneInfo(match["tz"])
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
    current = datetime.fromtimestamp(now, zone).astimezone(zone)
    candidate = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
    date = _DATE.search(when)
    weekday = next((i for i, d in enumerate(_WEEKDAYS) if when.lower().startswith(d)), None)
    if date and date["mon"].lower()[:3] in _MONTHS:
        month = _MONTHS.index(date["mon"].lower()[:3]) + 1
        candidate = candidate.replace(month=month, day=int(date["day"]))
        if candidate.timestamp() <= now:
            candidate = candidate.replace(year=candidate.year + 1)
    elif weekday is not None:
        candidate += timedelta(days=(weekday - candidate.weekday()) % 7)
        if candidate.timestamp() <= now:
            candidate += timedelta(days=7)
    elif candidate.timestamp() <= now:
        candidate += timedelta(days=1)
    return candidate.timestamp()
