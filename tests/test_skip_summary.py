"""The run's last line names what skipped tests lacked, from their own reasons."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests import conftest
from tests.helpers.skips import INSTALL, skip_summary

WRK = "wrk is not installed (Debian: apt-get install wrk); load tests need it"
PROMTOOL = "promtool not installed (Debian package prometheus)"
CHROMIUM = "needs Debian's chromium and chromium-driver (deploy/ci/tools.sh installs them as root)"
FRAPPE = "Frappe reference data not found at /x (licensed; CI has it)"


def absent(*programs: str) -> Callable[[str], str | None]:
    """A `shutil.which` for a machine lacking `programs`."""
    return lambda program: None if program in programs else f"/usr/bin/{program}"


def test_nothing_skipped_gives_no_line() -> None:
    assert skip_summary([], absent("wrk")) is None


def test_missing_tools_are_named_once_with_the_command_that_installs_them() -> None:
    reasons = [WRK, WRK, PROMTOOL, CHROMIUM, CHROMIUM, CHROMIUM]
    line = skip_summary(reasons, absent("wrk", "promtool", "chromium", "chromedriver"))
    assert line == (f"skipped 6 tests: 6 because wrk, promtool, chromium, chromedriver are "
                    f"missing (install with: {INSTALL})")


def test_only_the_programs_actually_missing_are_named() -> None:
    line = skip_summary([CHROMIUM], absent("chromedriver"))
    assert line == f"skipped 1 test: 1 because chromedriver is missing (install with: {INSTALL})"


def test_a_tool_that_is_there_does_not_explain_a_skip() -> None:
    reason = "needs chromium, unshare and root (a network namespace)"
    assert skip_summary([reason], absent()) == (
        "skipped 1 test: 1 for other reasons (pytest -rs lists each)")


def test_data_and_other_reasons_are_counted_apart() -> None:
    line = skip_summary([WRK, FRAPPE, FRAPPE, "glibc's malloc_trim"], absent("wrk"))
    assert line == (f"skipped 4 tests: 1 because wrk is missing (install with: {INSTALL}); "
                    "2 for licensed data absent from ../shared/data (see its README); "
                    "1 for other reasons (pytest -rs lists each)")


class Reporter:
    """What pytest_unconfigure reads of pytest's terminal reporter, recording what it writes."""

    def __init__(self, reasons: list[str]) -> None:
        self.stats = {"skipped": [pytest.TestReport("t.py::t", ("t.py", 1, "t"), {}, "skipped",
                                                    ("t.py", 1, f"Skipped: {r}"), "call")
                                  for r in reasons]}
        self.lines: list[str] = []

    def write_line(self, line: str, **markup: bool) -> None:
        self.lines.append(line)


def test_the_run_ends_with_the_line_from_its_skipped_reports(pytestconfig: pytest.Config,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    reporter = Reporter([FRAPPE, FRAPPE])
    monkeypatch.setattr(pytestconfig.pluginmanager, "get_plugin", lambda name: reporter)
    conftest.pytest_unconfigure(pytestconfig)
    assert reporter.lines == [
        "skipped 2 tests: 2 for licensed data absent from ../shared/data (see its README)"]
