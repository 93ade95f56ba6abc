"""benchmarks.drift_estimates: the summary counts each estimator's reports, and the match's
drift is the first estimator that gives one."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.drift_estimates import summary


def test_the_summary_counts_reports_and_takes_the_first_estimator(tmp_path: Path) -> None:
    rows = [
        {"variant": "ramp", "track": "a", "sections": 1.07, "bend": None, "curve": 1.06},
        {"variant": "ramp", "track": "b", "sections": None, "bend": None, "curve": 1.08},
        {"variant": "ramp", "track": "c", "sections": None, "bend": None, "curve": None},
        {"variant": "steady", "track": "a"},  # no hash line at all
    ]
    path = tmp_path / "estimates.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = summary(path).splitlines()
    ramp = [c.strip() for c in next(r for r in table if r.startswith("| ramp")).split("|")[1:-1]]
    assert ramp[1:6] == ["3", "2", "0", "1", "2"]  # curve, bend, sections, the match's
    assert ramp[6].startswith("1.070 ")  # the median of 1.06 (the curve first) and 1.08
    steady = [c.strip() for c in next(r for r in table if r.startswith("| steady")).split("|")]
    assert steady[2:7] == ["1", "0", "0", "0", "0"] and steady[7] == "-"
