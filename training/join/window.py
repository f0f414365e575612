"""Attribution windows as people write them: `1h`, `30m`, `1h30m`, `90s`, `2d`, `0.5h`."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1),
         "s": timedelta(seconds=1)}
PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_window(text: str) -> timedelta:
    """A positive duration: numbers each followed by d, h, m or s, largest unit first."""
    spec = text.strip().lower()
    parts = PART.findall(spec)
    units = [unit for _, unit in parts]
    if not parts or "".join(n + u for n, u in parts) != spec or len(set(units)) != len(units) \
            or units != sorted(units, key=list(UNITS).index):
        raise ValueError(f"a window is a duration such as 1h, 30m, 1h30m or 90s, got {text!r}")
    window = sum((float(n) * UNITS[u] for n, u in parts), timedelta())
    if window <= timedelta():
        raise ValueError(f"a window must be longer than 0, got {text!r}")
    return window
