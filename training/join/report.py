"""What a join did, as one JSON object and as a few lines for a person, checked for
consistency: every event has one outcome, and every impression one row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from training.join.compare import ShadowComparison
from training.join.engine import Outcome
from training.join.selection import Selection


@dataclass
class Report:
    selection: Selection
    outcome: Outcome
    events: int
    """Event rows read."""
    window: timedelta
    seconds: float = 0.0

    def check(self) -> None:
        """Rows out = impressions in; events in = the sum of their outcomes."""
        if sum(self.outcome.events.values()) != self.events:
            raise AssertionError(f"{self.events} events read, {sum(self.outcome.events.values())} "
                                 "with an outcome")
        if self.outcome.rows != self.selection.impressions:
            raise AssertionError(f"the join wrote {self.outcome.rows} rows for "
                                 f"{self.selection.impressions} impressions")

    def counts(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "impressions": self.selection.impressions, "rows": o.rows,
            "positives": o.positives, "negatives": o.rows - o.positives,
            "events": self.events, **{f"events_{k}": v for k, v in o.events.items()},
            "duplicates": o.duplicates, "events_on_repeated_ids": o.repeated,
            "models": [f"{name}:{version}" for name, version in self.selection.models],
            "other_models": self.selection.others,
            "window_s": self.window.total_seconds(),
            "seconds": round(self.seconds, 2),
            "impressions_per_s": round(o.rows / self.seconds) if self.seconds else None,
            "shadow": o.shadow.as_dict() if o.shadow is not None else None,
        }

    def summary(self) -> str:
        o, e = self.outcome, self.outcome.events
        share = o.positives / o.rows if o.rows else 0.0
        lines = [
            f"{self.selection.impressions:,} impressions of {', '.join(self.counts()['models'])} "
            f"-> {o.rows:,} rows, {o.positives:,} positive ({share:.2%})",
            f"{self.events:,} events: {e['matched']:,} matched ({o.duplicates:,} duplicates), "
            f"{e['late']:,} late, {e['early']:,} early, {e['unmatched']:,} unmatched, "
            f"{e['other_model']:,} of other models",
        ]
        if o.repeated:
            lines.append(f"{o.repeated:,} events name an impression id the log holds more than once "
                         "(each credits the latest impression whose window holds it)")
        if self.selection.others:
            others = ", ".join(f"{m} ({n:,})" for m, n in self.selection.others.items())
            lines.append(f"not joined: impressions of {others}")
        if o.shadow is not None:
            lines.append(_shadow_line(o.shadow))
        if self.seconds:
            lines.append(f"{self.seconds:.1f} s, {o.rows / self.seconds:,.0f} impressions/s")
        return "\n".join(f"afm-join: {line}" for line in lines)


def _shadow_line(shadow: ShadowComparison) -> str:
    head = f"{shadow.rows:,} rows also scored by shadow {', '.join(shadow.versions)}"
    if shadow.live is None or shadow.shadow is None:
        return f"{head} (no metrics: their labels are not all 0 or 1, or of one class)"
    live, candidate = shadow.live, shadow.shadow
    return (f"{head}: live / shadow AUC {live.auc:.5f} / {candidate.auc:.5f}, logloss "
            f"{live.logloss:.5f} / {candidate.logloss:.5f}, NE {live.ne:.4f} / {candidate.ne:.4f}, "
            f"calibration {live.calibration:.3f} / {candidate.calibration:.3f}")
