"""The daily loop end to end on a small generated day (bench/loop.py): the served day's
clicks joined into day 2's training data, day 2's model better than day 1's on day 3's rows,
compared with it as its shadow on served traffic, and a reload under traffic that fails no
request and logs every impression under the version that scored it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.loop import Options, loop

pytestmark = pytest.mark.slow

ROWS = 12_000


def test_the_daily_loop_retrains_on_its_own_log_and_reloads_without_a_failed_request(
        tmp_path: Path) -> None:
    options = Options(rows=ROWS, epochs=2, lr=0.01, batch_size=512, reload_rows=1_500,
                      shadow_rows=3_000)
    figures = loop(tmp_path, options)
    served, join, reload = figures["day_2"], figures["join"], figures["reload"]
    assert served["requests_failed"] == 0 and served["impressions"] == ROWS
    assert join["impressions"] == join["rows"] == ROWS  # no impression lost
    assert join["events"] == join["events_matched"] == join["positives"] == served["clicks"]
    assert join["models"] == ["criteo-afm:day-1"]
    assert figures["split"]["train"] + figures["split"]["valid"] == ROWS
    shadow = figures["shadow"]
    assert shadow["requests_failed"] == 0 and shadow["impressions"] == 3_000
    assert 0 < shadow["rows"] <= 3_000 and shadow["versions"] == ["day-2"]
    assert shadow["live"] is not None and shadow["shadow"] is not None
    assert reload["requests_failed"] == 0
    assert reload["answered_day-1"] > 0 and reload["answered_day-2"] > 0
    assert reload["missing"] == 0 and reload["other_version"] == 0
    assert reload["logged_after_stop"] == reload["impressions"]
    day1, day2 = figures["day_3"]["day-1"], figures["day_3"]["day-2"]
    assert day2["auc"] > day1["auc"] and day2["logloss"] < day1["logloss"]
    assert day2["ne"] < day1["ne"]
