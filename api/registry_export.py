"""The registry (台账) and the inspection lists as XLSX workbooks, for the county and the
half-yearly inspection (督导检查).

- ``export_registry``: one sheet per township (a village or township exports its own), the people
  in care in village and name order, with the import's Chinese headers (so an exported workbook
  imports again unchanged), the header row frozen, ID numbers and division codes as text cells
  (never a number in scientific notation), dates as date cells. The people's personal data is read
  from the event store in one query, and every person written is recorded in the access log, as
  every read of personal data is.
- ``export_inspection``: the supervision lists as sheets: 未结对 (uncovered), 逾期未访 (overdue),
  走访达标 (visit compliance by cadence in the period) and 各单位 (the basics per unit one level down).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from application.care import CareApplication
from application.registry_import import BY_FIELD, COLUMNS, KIND_LABELS, SEX_LABELS
from domain.org_unit import OrgUnit
from domain.person import Person
from domain.vocabulary import RISK_TAG_LABELS, OrgLevel, RiskTag
from infrastructure.spreadsheets import OutColumn, new_workbook, to_bytes, write_sheet
from projections.registry import RegistryView
from projections.supervision import CHINA
from projections.supervision_view import Period, SupervisionView

RecordAccess = Callable[[Sequence[UUID]], None]


def _h(field: str) -> str:
    return BY_FIELD[field].header


REGISTRY_COLUMNS = (
    OutColumn("name", _h("name"), width=10),
    OutColumn("id_number", _h("id_number"), width=21, note="文本格式"),
    OutColumn("sex", _h("sex"), width=6),
    OutColumn("birth_date", _h("birth_date"), "date", width=12),
    OutColumn("village", _h("village"), width=14),
    OutColumn("village_code", _h("village_code"), width=15),
    OutColumn("kind", _h("kind"), width=11),
    OutColumn("risk_tags", _h("risk_tags"), width=18),
    OutColumn("guardian", _h("guardian"), width=12),
    OutColumn("guardian_relation", _h("guardian_relation"), width=10),
    OutColumn("phone", _h("phone"), width=14),
    OutColumn("household", _h("household"), width=24),
    OutColumn("care_agreement_signed_on", _h("care_agreement_signed_on"), "date", width=14),
    OutColumn("pairings", "结对数", "number", width=8),
)


def _registry_row(person: Person, view: dict[str, Any]) -> dict[str, Any]:
    guardian = person.guardian or {}
    return {
        "name": person.name,
        "id_number": person.id_number or "",
        "sex": SEX_LABELS.get(person.sex, ""),
        "birth_date": person.birth_date,
        "village": view["village_name"],
        "village_code": view["village_code"],
        "kind": KIND_LABELS.get(person.kind, ""),
        "risk_tags": "、".join(RISK_TAG_LABELS[RiskTag(t)] for t in person.risk_tags),
        "guardian": guardian.get("name") or "",
        "guardian_relation": guardian.get("relation") or "" if guardian else "",
        "phone": guardian.get("phone") or "",
        "household": person.household,
        "care_agreement_signed_on": person.care_agreement_signed_on,
        "pairings": view["active_pairings"],
    }


def export_registry(
    app: CareApplication, registry: RegistryView, unit: OrgUnit, *, record_access: RecordAccess
) -> tuple[bytes, int]:
    """(workbook, people written). ``record_access`` is called with every person's id before
    their data is put in the workbook."""
    rows = registry.people_with_places(unit.id)
    record_access([r["id"] for r in rows])
    persons = app.load_many(Person, [r["id"] for r in rows])
    book = new_workbook()
    by_sheet: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        person = persons.get(r["id"])
        if person is None or person.erased:
            continue
        sheet = r["township_name"] if unit.level != OrgLevel.VILLAGE and r["township_name"] else unit.name
        by_sheet.setdefault(sheet, []).append(_registry_row(person, r))
    if not by_sheet:
        by_sheet[unit.name] = []
    for name, people in by_sheet.items():
        write_sheet(book.create_sheet(_sheet_name(name)), REGISTRY_COLUMNS, people)
    return to_bytes(book), sum(len(p) for p in by_sheet.values())


def template() -> bytes:
    """The import template: every column with its header and a note, and two example rows."""
    columns = [
        OutColumn(
            c.field,
            c.header,
            "date" if c.field.endswith(("date", "signed_on")) else "text",
            width=16,
            note=c.note + ("；也可写作：" + "、".join(c.synonyms[:4]) if c.synonyms else ""),
        )
        for c in COLUMNS
    ]
    book = new_workbook()
    write_sheet(book.create_sheet("台账"), columns, [])
    notes = book.create_sheet("填写说明")
    notes.column_dimensions["A"].width = 100
    for line in TEMPLATE_NOTES:
        notes.append([line])
    return to_bytes(book)


TEMPLATE_NOTES = (
    "农村留守老年人、留守儿童信息台账导入模板（关爱）",
    "1. 第一行是表头；表头上方可以有标题行。表头可用常见写法（如 身份证号码、出生年月、所属村）。",
    "2. 公民身份号码必填，是每个人的唯一标识；同一文件中不得重复。请把该列设为文本格式，以免末位丢失。",
    "3. 再次导入同一文件不会重复登记；有变化的行记为更正；文件中没有的人不受影响。",
    "4. 填写退出原因即表示此人退出关爱对象名单。",
    "5. 先试导入（dry run）查看逐行检查结果，再正式导入。",
)


def _sheet_name(name: str) -> str:
    """Excel's rules: at most 31 characters, none of []:*?/\\."""
    return "".join("_" if c in "[]:*?/\\" else c for c in name)[:31] or "Sheet"


# ---- inspection --------------------------------------------------------------------------------

UNCOVERED = (
    OutColumn("name", "姓名", width=10),
    OutColumn("kind", "类别", width=11),
    OutColumn("village_name", "村（社区）", width=14),
    OutColumn("village_code", "区划代码", width=15),
    OutColumn("risk_tags", "风险或困境类型", width=18),
    OutColumn("registered_at", "登记日期", "date", width=12),
)
OVERDUE = (
    *UNCOVERED[:5],
    OutColumn("cadence_days", "走访周期（天）", "number", width=10),
    OutColumn("last_visit_at", "最近走访", "date", width=12),
    OutColumn("due_at", "应访日期", "date", width=12),
    OutColumn("days_overdue", "逾期天数", "number", width=9),
)
COMPLIANCE = (
    OutColumn("cadence", "走访周期", width=10),
    OutColumn("due", "应访", "number", width=8),
    OutColumn("on_time", "按时", "number", width=8),
    OutColumn("late", "补访", "number", width=8),
    OutColumn("missed", "未访", "number", width=8),
    OutColumn("open", "进行中", "number", width=8),
    OutColumn("done_rate", "完成率", width=8),
    OutColumn("on_time_rate", "按时率", width=8),
)
UNITS = (
    OutColumn("name", "单位", width=14),
    OutColumn("code", "区划代码", width=15),
    OutColumn("elders", "留守老年人", "number", width=10),
    OutColumn("children", "留守儿童", "number", width=10),
    OutColumn("uncovered", "未结对", "number", width=8),
    OutColumn("overdue", "逾期未访", "number", width=9),
    OutColumn("agreements_signed", "确认书已签", "number", width=10),
    OutColumn("helpers", "帮扶人", "number", width=8),
)
CADENCE_ZH = {
    "weekly": "每周",
    "fortnightly": "每两周",
    "half_monthly": "每半月",
    "monthly": "每月",
    "half_yearly": "每半年",
    "yearly": "每年",
    "unplanned": "计划外",
}


def _people(rows: list[dict[str, Any]], names: dict[UUID, str]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        row = dict(r)
        row["name"] = names.get(r["id"], "")
        row["kind"] = {"elder": "留守老年人", "child": "留守儿童"}.get(r.get("kind", ""), r.get("kind"))
        row["risk_tags"] = "、".join(RISK_TAG_LABELS.get(RiskTag(t), t) for t in r.get("risk_tags") or [])
        for key in ("registered_at", "last_visit_at", "due_at"):
            if isinstance(row.get(key), datetime):
                row[key] = row[key].astimezone(CHINA).date()
        out.append(row)
    return out


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def export_inspection(
    app: CareApplication, view: SupervisionView, unit: OrgUnit, period: Period, *, record_access: RecordAccess
) -> bytes:
    uncovered = view.uncovered(unit.id, limit=None)[0]
    overdue = view.overdue(unit.id, limit=None)[0]
    summary = view.summary(unit.id, period) or {}
    ids = [r["id"] for r in uncovered] + [r["id"] for r in overdue]
    record_access(ids)
    names = app.names(ids)
    book = new_workbook()
    write_sheet(book.create_sheet("未结对"), UNCOVERED, _people(uncovered, names))
    write_sheet(book.create_sheet("逾期未访"), OVERDUE, _people(overdue, names))
    visits = summary.get("visits", {})
    compliance = [
        {
            "cadence": CADENCE_ZH.get(c, c),
            **figures,
            "done_rate": _rate(
                _ratio(figures["on_time"] + figures["late"], figures["on_time"] + figures["late"] + figures["missed"])
            ),
            "on_time_rate": _rate(_ratio(figures["on_time"], figures["on_time"] + figures["late"] + figures["missed"])),
        }
        for c, figures in sorted(visits.get("by_cadence", {}).items())
    ]
    compliance.append(
        {
            "cadence": "合计",
            **{k: visits.get(k, 0) for k in ("due", "on_time", "late", "missed", "open")},
            "done_rate": _rate(visits.get("done_rate")),
            "on_time_rate": _rate(visits.get("on_time_rate")),
        }
    )
    ws = book.create_sheet("走访达标")
    write_sheet(ws, COMPLIANCE, compliance)
    write_sheet(book.create_sheet("各单位"), UNITS, summary.get("units", []))
    return to_bytes(book)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None
