"""The line a test run ends with when tests skipped: what they lacked and the command that
brings it (`pytest_unconfigure` in tests/conftest.py prints it after pytest's own summary)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

import pytest

INSTALL = "sudo bash deploy/ci/tools.sh"
# A tool a skip reason names, and the programs that must all be there for its tests to run.
TOOLS = {"promtool": ("promtool",), "wrk": ("wrk",), "chromium": ("chromium", "chromedriver")}


def skip_reason(report: pytest.TestReport) -> str:
    """A skipped report's reason, without pytest's "Skipped: " prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def skip_summary(reasons: Iterable[str], which: Callable[[str], str | None]) -> str | None:
    """One line for a run's skips, or None when nothing skipped. A skip whose reason names a
    tool with a program missing counts under the missing programs; one that mentions licensed
    data under the data; any other under "other reasons"."""
    missing: dict[str, None] = {}  # in the order found
    counts: Counter[str] = Counter()
    for reason in reasons:
        lacking = [program for tool, programs in TOOLS.items() if re.search(rf"\b{tool}\b", reason)
                   for program in programs if which(program) is None]
        missing.update(dict.fromkeys(lacking))
        counts["tools" if lacking else "data" if "licensed" in reason else "other"] += 1
    total = sum(counts.values())
    if not total:
        return None
    parts = []
    if counts["tools"]:
        verb = "is" if len(missing) == 1 else "are"
        parts.append(f"{counts['tools']} because {', '.join(missing)} {verb} missing "
                     f"(install with: {INSTALL})")
    if counts["data"]:
        parts.append(f"{counts['data']} for licensed data absent from ../shared/data (see its README)")
    if counts["other"]:
        parts.append(f"{counts['other']} for other reasons (pytest -rs lists each)")
    return f"skipped {total} test{'' if total == 1 else 's'}: " + "; ".join(parts)
