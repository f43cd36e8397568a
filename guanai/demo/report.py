"""The county's supervision summary as ``guanai demo`` prints it, read from the supervision view:
base numbers by risk tag, coverage, people overdue for a visit, agreement signing, helper load,
visit compliance and emergency response over the half-year, and the same basics per township."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import IO, Any
from uuid import UUID

from domain.vocabulary import RISK_TAG_LABELS, RiskTag
from projections.supervision import CHINA
from projections.supervision_view import Period, SupervisionView


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cell(text: Any, width: int, right: bool = False) -> str:
    s = str(text)
    pad = " " * max(0, width - _width(s))
    return pad + s if right else s + pad


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds < 3 * 3600 else f"{seconds / 3600:.1f} h"


def print_supervision(view: SupervisionView, county_id: UUID, file: IO[str], *, now: datetime | None = None) -> None:
    """Print the supervision summary of ``county_id`` for the current half-year."""
    now = now or datetime.now(CHINA)
    s = view.summary(county_id, Period.named("half_year", now.date()), now=now)
    if s is None:
        print(f"\nno org unit {county_id} in the supervision view", file=file)
        return
    unit, base, cov, g, h = s["unit"], s["base"], s["coverage"], s["guardianship"], s["helpers"]
    v, e, period = s["visits"], s["emergencies"], s["period"]
    print(f"\n{unit['name']} ({unit['code']}): supervision, {period['from']} to {period['to']}", file=file)
    print(
        f"  People on the registry      {base['people']:>6}  ({base['elders']} elders, {base['children']} children)",
        file=file,
    )
    tags = [f"{RISK_TAG_LABELS[RiskTag(t)]} {n}" for t, n in base["by_risk_tag"].items() if n]
    print(f"  By risk tag                 {', '.join(tags) or '-'}", file=file)
    print(
        f"  Covered by a pairing        {cov['covered']:>6}  ({_pct(cov['covered_rate'])}); uncovered {cov['uncovered']}",
        file=file,
    )
    print(f"  Overdue for a visit         {cov['overdue']:>6}  of {cov['with_cadence']} with a cadence", file=file)
    print(
        f"  Care agreements signed      {g['agreements_signed']:>6}  of {g['children']} children ({_pct(g['signed_rate'])})",
        file=file,
    )
    print(
        f"  Helpers active              {h['active']:>6}  ({h['people_per_helper'] or '-'} people each on average;"
        f" {h['at_capacity']} at capacity, {h['over_capacity']} over)",
        file=file,
    )
    print(
        f"  Visits due this half-year   {v['due']:>6}  on time {v['on_time']}, late {v['late']}, missed {v['missed']},"
        f" open {v['open']} (done {_pct(v['done_rate'])})",
        file=file,
    )
    print(
        f"  Emergencies reported        {e['reported']:>6}  escalated {e['escalated']}, resolved {e['resolved']},"
        f" open past deadline {e['open_past_deadline']}",
        file=file,
    )
    print(
        f"  Time to acknowledge         median {_duration(e['acknowledge_median_s'])}, p90 {_duration(e['acknowledge_p90_s'])};"
        f" to resolve median {_duration(e['resolve_median_s'])}, p90 {_duration(e['resolve_p90_s'])}",
        file=file,
    )
    cols = [
        ("Township", 14, False),
        ("Elders", 7, True),
        ("Children", 9, True),
        ("Uncovered", 10, True),
        ("Overdue", 8, True),
        ("Signed", 7, True),
        ("Helpers", 8, True),
    ]

    def line(values: Sequence[Any]) -> str:
        return "  ".join(_cell(x, w, r) for x, (_, w, r) in zip(values, cols, strict=True)).rstrip()

    print("\n" + line([c[0] for c in cols]), file=file)
    print(line(["-" * c[1] for c in cols]), file=file)
    for u in s["units"]:
        print(
            line(
                [
                    u["name"],
                    u["elders"],
                    u["children"],
                    u["uncovered"],
                    u["overdue"],
                    _pct(u["signed_rate"]),
                    u["helpers"],
                ]
            ),
            file=file,
        )
