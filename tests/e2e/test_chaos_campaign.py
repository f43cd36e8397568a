"""The fault campaign (bench/chaos.py) at CI size: one trial per target and a control.

A real campaign run, as a separate program: its own PostgreSQL and nats-server on free ports
(never the machine's shared ones, which it kills), the six Guanai parts as processes, each
trial SIGKILLing one of them (or a server) while reports, claims and visit logs flow. Every
report the API accepted must be routed once and escalated once, no task may have two
winners, no visit log may be stored twice or lost.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.chaos import CONTROL, TARGETS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_a_campaign_of_one_kill_per_part_loses_and_doubles_nothing(tmp_path: Path) -> None:
    out = tmp_path / "campaign.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--trials", str(len(TARGETS) + 1), "--load-seconds", "2",
         "--settle-timeout", "90", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    result = json.loads(out.read_text())
    trials = result["trials"]
    assert sorted(t["target"] for t in trials) == sorted([*TARGETS, CONTROL]), "every part killed once"
    assert all(t["settled"] and not t["error"] for t in trials), [t for t in trials if not t["settled"] or t["error"]]
    assert all(t["requests_before_kill"] > 0 for t in trials), "every kill came while requests flowed"
    totals = dict(zip(result["headers"], result["rows"][-1], strict=True))
    assert totals["reports accepted"] > 0 and totals["routed once"] == totals["reports accepted"]
    for column in ("lost", "routed twice", "escalated twice", "unsettled", "claim winners > 1", "duplicated logs",
                   "lost claims/logs"):  # fmt: skip
        assert totals[column] == 0, (column, run.stdout)
    assert sum(t["claim_tasks"] for t in trials) > 0 and sum(t["logs_accepted"] for t in trials) > 0
    assert result["failures"] == 0
