"""CSV exports of the supervision lists for the half-yearly inspection (督导检查):
``/supervision/{org_unit}/uncovered.csv``, ``/overdue.csv``, ``/emergencies-past-deadline.csv``.

Every row of the list, in the list's order. ``lang=zh`` gives Chinese column headers and
values (kinds, risk tags, categories, severities, levels) and a UTF-8 byte-order mark so that
spreadsheet programs read the file as UTF-8; ``lang=en`` (default) gives the stored values.
Times are China Standard Time. Text that a spreadsheet would run as a formula (a name starting
with ``=``, ``+``, ``-`` or ``@``) is written with a leading ``'``, so it shows as typed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.params import FromPath, QueryParameter

from api.common import MinPosition
from api.dependencies import Care, Checked, RecordAccess, Supervision, WaitForViews
from api.supervision import reports_from_level, resolve_unit, with_person_names
from domain.vocabulary import RISK_TAG_LABELS
from projections.supervision import CHINA

Lang = Annotated[str, QueryParameter(pattern="^(zh|en)$", description="zh: Chinese headers and labels")]

KIND_ZH = {"elder": "留守老人", "child": "留守儿童"}
CATEGORY_ZH = {
    "critical_illness": "危重病",
    "injury_accident": "意外伤害",
    "abuse_violence": "遭受侵害",
    "neglect": "监护缺失",
    "wandering_missing": "流浪走失",
    "mental_health_crisis": "精神障碍发作",
    "other": "其他",
}
SEVERITY_ZH = {"critical": "危急", "high": "紧急", "normal": "一般"}
LEVEL_ZH = {0: "乡镇", 1: "县", 2: "上级"}


def _time(value: datetime | None, zh: bool) -> str:
    return value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if value else ""


def _tags(tags: list[str], zh: bool) -> str:
    return "、".join(RISK_TAG_LABELS.get(t, t) for t in tags) if zh else " ".join(tags)  # type: ignore[call-overload]


def _label(labels: dict[Any, str]) -> Callable[[Any, bool], str]:
    return lambda v, zh: labels.get(v, str(v)) if zh else str(v)


def _plain(value: Any, zh: bool) -> str:
    return "" if value is None else str(value)


# (key, English header, Chinese header, formatter) per list.
Column = tuple[str, str, str, Callable[[Any, bool], str]]
PERSON: list[Column] = [
    ("id", "id", "编号", _plain),
    ("name", "name", "姓名", _plain),
    ("kind", "kind", "类别", _label(KIND_ZH)),
    ("village_name", "village", "村（社区）", _plain),
    ("village_code", "village_code", "区划代码", _plain),
    ("risk_tags", "risk_tags", "风险标签", _tags),
]
UNCOVERED: list[Column] = [*PERSON, ("registered_at", "registered_at", "登记时间", _time)]
OVERDUE: list[Column] = [
    *PERSON,
    ("cadence_days", "cadence_days", "走访周期（天）", _plain),
    ("last_visit_at", "last_visit_at", "最近走访", _time),
    ("due_at", "due_at", "应访时间", _time),
    ("days_overdue", "days_overdue", "逾期天数", _plain),
]
PAST_DEADLINE: list[Column] = [
    ("id", "id", "编号", _plain),
    ("person_name", "person", "对象", _plain),
    ("township_name", "township", "乡镇（街道）", _plain),
    ("category", "category", "类别", _label(CATEGORY_ZH)),
    ("severity", "severity", "紧急程度", _label(SEVERITY_ZH)),
    ("level", "level", "当前层级", _label(LEVEL_ZH)),
    ("reported_at", "reported_at", "报告时间", _time),
    ("deadline", "deadline", "响应时限", _time),
    ("minutes_past_deadline", "minutes_past_deadline", "超时（分钟）", _plain),
    ("escalations", "escalations", "升级次数", _plain),
]


# A spreadsheet takes a cell starting with one of these for a formula, and a formula can send
# other cells (everyone's names) to any address: text typed by a user is written as text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _as_text(value: Any, cell: str) -> str:
    return "'" + cell if isinstance(value, str) and cell.startswith(FORMULA_START) else cell


def to_csv(rows: list[dict[str, Any]], columns: list[Column], zh: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([zh_header if zh else en_header for _, en_header, zh_header, _ in columns])
    for row in rows:
        writer.writerow([_as_text(row.get(key), fmt(row.get(key), zh)) for key, _, _, fmt in columns])
    return ("\ufeff" if zh else "").encode() + out.getvalue().encode()


def _attachment(body: bytes, filename: str) -> Response[bytes]:
    return Response(
        body,
        media_type="text/csv",  # Litestar adds "; charset=utf-8" to text/* types
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


class SupervisionCsvController(Controller):
    path = "/supervision"
    tags = ["supervision"]

    @get("/{org_unit:str}/uncovered.csv", sync_to_thread=True, media_type="text/csv")
    def uncovered(
        self,
        supervision: Supervision,
        care: Care,
        record_access: RecordAccess,
        wait_for_views: WaitForViews,
        org_unit: FromPath[str],
        lang: Lang = "en",
        min_position: MinPosition = None,
    ) -> Response[bytes]:
        """Every uncovered person under the unit, as CSV."""
        wait_for_views(min_position)
        unit = resolve_unit(supervision, org_unit)
        rows = with_person_names(care, record_access, supervision.uncovered(unit["id"], limit=None)[0])
        return _attachment(to_csv(rows, UNCOVERED, lang == "zh"), f"uncovered-{unit['code']}.csv")

    @get("/{org_unit:str}/overdue.csv", sync_to_thread=True, media_type="text/csv")
    def overdue(
        self,
        supervision: Supervision,
        care: Care,
        record_access: RecordAccess,
        wait_for_views: WaitForViews,
        org_unit: FromPath[str],
        lang: Lang = "en",
        min_position: MinPosition = None,
    ) -> Response[bytes]:
        """Every person overdue for a visit under the unit, most overdue first, as CSV."""
        wait_for_views(min_position)
        unit = resolve_unit(supervision, org_unit)
        rows = with_person_names(care, record_access, supervision.overdue(unit["id"], limit=None)[0])
        return _attachment(to_csv(rows, OVERDUE, lang == "zh"), f"overdue-{unit['code']}.csv")

    @get("/{org_unit:str}/emergencies-past-deadline.csv", sync_to_thread=True, media_type="text/csv")
    def past_deadline(
        self,
        supervision: Supervision,
        care: Care,
        record_access: RecordAccess,
        access: Checked,
        wait_for_views: WaitForViews,
        org_unit: FromPath[str],
        lang: Lang = "en",
        min_position: MinPosition = None,
    ) -> Response[bytes]:
        """Every emergency report waiting past its deadline under the unit, as CSV."""
        wait_for_views(min_position)
        unit = resolve_unit(supervision, org_unit)
        rows = supervision.emergencies_past_deadline(unit["id"], limit=None, min_level=reports_from_level(access))[0]
        rows = with_person_names(care, record_access, rows, id_key="person_id", name_key="person_name")
        return _attachment(to_csv(rows, PAST_DEADLINE, lang == "zh"), f"emergencies-past-deadline-{unit['code']}.csv")
