"""Reading a county's registry sheet (台账): headers, cells and rows, checked, before anything is written.

A sheet arrives as rows of cell values (``infrastructure/spreadsheets.py`` reads XLSX and CSV into
them). This module finds the header row (county sheets put a title above it), maps the Chinese
headers and the synonyms seen in real sheets to fields, and turns every row into a ``PersonRow``
or a list of problems, each naming the row, the column and the reason. It does no I/O and knows
no store: ``application/registry_importer.py`` writes what passes.

Cells are taken as a person would read them: full-width digits and letters are made half-width
(NFKC), stray spaces dropped, dates accepted as dates, as Excel serial numbers and as text
(2015-03-08, 2015/3/8, 2015.3.8, 20150308, 2015年3月8日). An ID number stored as a number has lost
its last digits (Excel keeps 15): it is refused with the reason, never guessed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from domain.person import id_number_problem
from domain.vocabulary import RISK_TAG_LABELS, Cadence, HelperRole, PairingShape, PersonKind, RiskTag, Sex

# ---- columns ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    field: str
    header: str  # the template's header, Chinese first
    synonyms: tuple[str, ...] = ()
    personal: bool = False  # values never go into a report, a log or an answer
    note: str = ""  # the template's comment on the header


COLUMNS: tuple[Column, ...] = (
    Column(
        "name",
        "姓名",
        ("名字", "对象姓名", "留守人员姓名", "老人姓名", "儿童姓名", "留守儿童姓名", "留守老人姓名"),
        personal=True,
        note="必填",
    ),
    Column(
        "id_number",
        "公民身份号码",
        ("身份证号码", "身份证号", "身份证", "证件号码", "身份证件号码", "公民身份证号码"),
        personal=True,
        note="必填；18位，末位可为X；请把本列设为文本格式",
    ),
    Column("sex", "性别", note="男 / 女；空着时按身份证号码"),
    Column("birth_date", "出生日期", ("出生年月日", "出生年月", "生日"), note="如 2015-03-08；空着时按身份证号码"),
    Column(
        "village",
        "所属村(居)委会",
        (
            "所属村（居）委会",
            "村(居)委会",
            "村（社区）",
            "村(社区)",
            "所属村",
            "所在村",
            "村委会",
            "村居",
            "村名",
            "村",
        ),
        note="与行政区划代码填一个即可",
    ),
    Column("village_code", "行政区划代码", ("区划代码", "村级区划代码", "统计用区划代码", "村代码"), note="12位"),
    Column("kind", "类别", ("人员类别", "对象类别", "类型"), note="留守老年人 / 留守儿童；空着时按年龄"),
    Column(
        "risk_tags",
        "风险或困境类型",
        ("困境类型", "风险类型", "特殊情况", "风险等级及类型", "困难类型"),
        note="可填多个，用顿号分隔：" + "、".join(RISK_TAG_LABELS.values()),
    ),
    Column(
        "guardian",
        "监护人 / 委托照护人",
        ("监护人/委托照护人", "监护人", "委托照护人", "监护人姓名", "委托照护人姓名", "实际监护人"),
        personal=True,
        note="留守儿童填写",
    ),
    Column(
        "guardian_relation",
        "与儿童关系",
        ("监护人关系", "与监护人关系", "关系", "监护人与儿童关系"),
        personal=True,
        note="如 祖父、祖母；默认 监护人",
    ),
    Column(
        "phone",
        "联系电话",
        ("电话", "手机", "手机号码", "监护人电话", "监护人联系电话", "联系方式"),
        personal=True,
        note="留守儿童：监护人的电话",
    ),
    Column("household", "家庭住址", ("住址", "户籍地址", "居住地址", "现住址", "家庭地址"), personal=True),
    Column(
        "care_agreement_signed_on",
        "委托照护确认书签订日期",
        ("确认书签订日期", "协议签订日期", "委托监护确认书签订日期"),
        note="留守儿童",
    ),
    Column(
        "left_reason", "退出原因", ("退出台账原因", "销号原因"), personal=True, note="填写即表示此人已退出关爱对象名单"
    ),
    Column(
        "helpers",
        "帮扶人",
        ("结对帮扶人", "帮扶责任人", "帮扶人姓名", "结对人"),
        personal=True,
        note="可填多人，用顿号分隔；与帮扶人电话一一对应",
    ),
    Column(
        "helper_phones",
        "帮扶人电话",
        ("帮扶人联系电话", "帮扶责任人电话", "帮扶人手机"),
        personal=True,
        note="每位帮扶人一个，顺序与帮扶人相同；同一电话即同一帮扶人",
    ),
    Column("helper_roles", "帮扶人身份", ("帮扶人类别", "帮扶人职务"), note="如 志愿者、村干部、儿童主任；默认 志愿者"),
    Column("pairing_shape", "结对方式", ("帮扶方式", "结对形式"), note="一对一 / 一对N / N对一；默认按帮扶人数"),
    Column(
        "cadence", "走访频次", ("探访频次", "走访周期"), note="每周 / 每两周 / 每半月 / 每月 / 每半年 / 每年；默认每周"
    ),
    Column("pairing_start", "结对日期", ("结对时间", "帮扶开始日期"), note="默认导入当天"),
)
BY_FIELD = {c.field: c for c in COLUMNS}
REQUIRED = ("name", "id_number")
HEADER_SEARCH_ROWS = 10  # a title and notes above the header row, as county sheets have


def header_key(text: str) -> str:
    """Headers compare without spaces, stars, width or the kind of brackets."""
    key = unicodedata.normalize("NFKC", text)
    return re.sub(r"[\s*:]", "", key).lower()


HEADER_INDEX: dict[str, str] = {}
for _column in COLUMNS:
    for _name in (_column.header, *_column.synonyms):
        HEADER_INDEX[header_key(_name)] = _column.field


KIND_VALUES = {
    "留守老年人": PersonKind.ELDER,
    "留守老人": PersonKind.ELDER,
    "老年人": PersonKind.ELDER,
    "老人": PersonKind.ELDER,
    "elder": PersonKind.ELDER,
    "留守儿童": PersonKind.CHILD,
    "儿童": PersonKind.CHILD,
    "child": PersonKind.CHILD,
}
KIND_LABELS = {PersonKind.ELDER: "留守老年人", PersonKind.CHILD: "留守儿童"}
SEX_VALUES = {
    "男": Sex.MALE,
    "男性": Sex.MALE,
    "male": Sex.MALE,
    "m": Sex.MALE,
    "女": Sex.FEMALE,
    "女性": Sex.FEMALE,
    "female": Sex.FEMALE,
    "f": Sex.FEMALE,
}
SEX_LABELS = {Sex.MALE: "男", Sex.FEMALE: "女"}
TAG_VALUES: dict[str, RiskTag] = {label: tag for tag, label in RISK_TAG_LABELS.items()}
TAG_VALUES.update(
    {
        "低保户": RiskTag.DIBAO,
        "低保对象": RiskTag.DIBAO,
        "特困供养": RiskTag.TEKUN,
        "特困人员": RiskTag.TEKUN,
        "失能老人": RiskTag.DISABLED,
        "半失能老人": RiskTag.SEMI_DISABLED,
        "独居老人": RiskTag.LIVING_ALONE,
        "空巢老人": RiskTag.EMPTY_NEST,
        "高龄老人": RiskTag.ADVANCED_AGE,
        "事实无人抚养": RiskTag.DE_FACTO_UNSUPPORTED,
        "困境": RiskTag.CHILD_IN_DIFFICULTY,
    }
)
TAG_VALUES.update({tag.value: tag for tag in RiskTag})
NO_TAGS = {"无", "否", "/", "-", "—", "无风险"}
ROLE_VALUES = {
    "志愿者": HelperRole.VOLUNTEER,
    "村干部": HelperRole.VILLAGE_CADRE,
    "儿童主任": HelperRole.CHILD_DIRECTOR,
    "儿童督导员": HelperRole.CHILD_SUPERVISOR,
    "教师": HelperRole.TEACHER,
    "老师": HelperRole.TEACHER,
    "家庭医生": HelperRole.FAMILY_DOCTOR,
    "村医": HelperRole.FAMILY_DOCTOR,
    "民警": HelperRole.POLICE,
    "社工": HelperRole.SOCIAL_WORKER,
    "帮扶干部": HelperRole.ASSISTING_CADRE,
    "包村干部": HelperRole.ASSISTING_CADRE,
    "爱心妈妈": HelperRole.CARING_MOTHER,
    "老老互助": HelperRole.PEER_ELDER,
}
ROLE_VALUES.update({r.value: r for r in HelperRole})
SHAPE_VALUES = {
    "一对一": PairingShape.ONE_TO_ONE,
    "1对1": PairingShape.ONE_TO_ONE,
    "一对n": PairingShape.ONE_TO_MANY,
    "一对多": PairingShape.ONE_TO_MANY,
    "1对n": PairingShape.ONE_TO_MANY,
    "n对一": PairingShape.MANY_TO_ONE,
    "多对一": PairingShape.MANY_TO_ONE,
    "n对1": PairingShape.MANY_TO_ONE,
    "四包一": PairingShape.MANY_TO_ONE,
}
SHAPE_VALUES.update({s.value: s for s in PairingShape})
CADENCE_VALUES = {
    "每周": Cadence.WEEKLY,
    "每周一次": Cadence.WEEKLY,
    "每两周": Cadence.FORTNIGHTLY,
    "每半月": Cadence.HALF_MONTHLY,
    "半月": Cadence.HALF_MONTHLY,
    "每月": Cadence.MONTHLY,
    "每月一次": Cadence.MONTHLY,
    "每半年": Cadence.HALF_YEARLY,
    "每年": Cadence.YEARLY,
}
CADENCE_VALUES.update({c.value: c for c in Cadence})


@dataclass(frozen=True)
class HelperCell:
    """A helper named on a row: the phone is the natural key (the same phone: the same helper)."""

    name: str
    phone: str
    role: HelperRole


# ---- problems and rows ------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Why a cell (or a whole row, column None) cannot be imported. ``value`` is shown only for
    columns that are not personal data."""

    row: int  # the sheet's row number, as the spreadsheet program shows it (1-based)
    column: str | None  # the header as written in the sheet
    reason: str
    value: str | None = None
    cell: str | None = None  # A1-style reference, for marking the workbook
    sheet: str = ""  # the sheet's name ("" for a CSV)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "cell": self.cell,
            "value": self.value,
            "reason": self.reason,
        }


class SheetError(ValueError):
    """The sheet as a whole cannot be read: no header row, required columns missing, ..."""

    def __init__(self, reason: str, *, missing: list[str] | None = None, field: str = "file") -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = missing or []
        self.field = field


@dataclass
class PersonRow:
    row: int
    id_number: str
    name: str
    sex: Sex
    birth_date: date
    kind: PersonKind
    village: str | None
    village_code: str | None
    risk_tags: list[RiskTag]
    guardian: dict[str, Any] | None
    household: str
    care_agreement_signed_on: date | None
    left_reason: str | None
    helpers: list[HelperCell] = field(default_factory=list)
    pairing_shape: PairingShape | None = None
    cadence: Cadence = Cadence.WEEKLY
    pairing_start: date | None = None
    cells: dict[str, str] = field(default_factory=dict)  # field -> A1 reference, for problems found later
    sheet: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # field -> header as written

    def problem(self, field_name: str | None, reason: str) -> Problem:
        """A problem found after reading (in the store): named by column, never by value."""
        if field_name is None or field_name not in BY_FIELD:
            return Problem(self.row, None, reason, sheet=self.sheet)
        header = self.headers.get(field_name, BY_FIELD[field_name].header)
        return Problem(self.row, header, reason, None, self.cells.get(field_name), self.sheet)


@dataclass
class Sheet:
    """The header row found, which field each column holds, and the data rows below it."""

    name: str  # the sheet's name ("" for a CSV)
    header_row: int  # 1-based
    columns: dict[int, str]  # column index -> field
    headers: dict[str, str]  # field -> header as written
    ignored: list[str]  # headers that name no field
    rows: list[tuple[int, list[Any]]]  # (1-based row number, cells)


def column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def find_header(rows: list[list[Any]], name: str = "") -> Sheet:
    best: tuple[int, dict[int, str]] | None = None
    for i, cells in enumerate(rows[:HEADER_SEARCH_ROWS]):
        found = {
            j: HEADER_INDEX[k]
            for j, c in enumerate(cells)
            if isinstance(c, str) and (k := header_key(c)) in HEADER_INDEX
        }
        if len(found) >= 2 and (best is None or len(found) > len(best[1])):
            best = (i, found)
    if best is None:
        raise SheetError(
            f"no header row in the first {HEADER_SEARCH_ROWS} rows: a header row names at least 姓名 and 公民身份号码",
            missing=[BY_FIELD[f].header for f in REQUIRED],
        )
    index, found = best
    header_cells = rows[index]
    seen: dict[str, int] = {}
    for j, f in sorted(found.items()):
        if f in seen:
            raise SheetError(
                f"two columns hold {BY_FIELD[f].header}: {column_letter(seen[f])} ({header_cells[seen[f]]}) and "
                f"{column_letter(j)} ({header_cells[j]}); keep one",
                field=f"header {column_letter(j)}",
            )
        seen[f] = j
    missing = [BY_FIELD[f].header for f in REQUIRED if f not in seen]
    if "village" not in seen and "village_code" not in seen:
        missing.append(f"{BY_FIELD['village'].header} 或 {BY_FIELD['village_code'].header}")
    if missing:
        raise SheetError("required columns missing: " + "、".join(missing), missing=missing)
    ignored = [str(c).strip() for j, c in enumerate(header_cells) if j not in found and str(c or "").strip()]
    data = [(index + 2 + n, cells) for n, cells in enumerate(rows[index + 1 :])]
    data = [(n, cells) for n, cells in data if any(_text(c) for c in cells)]
    return Sheet(
        name=name,
        header_row=index + 1,
        columns=found,
        headers={f: str(header_cells[j]).strip() for j, f in found.items()},
        ignored=ignored,
        rows=data,
    )


# ---- cells --------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return unicodedata.normalize("NFKC", str(value)).strip()


def _compact(value: Any) -> str:
    """Text without any whitespace: names, numbers and codes (a name padded as 张  三 is 张三)."""
    return re.sub(r"\s+", "", _text(value))


EXCEL_EPOCH = date(1899, 12, 30)  # serial 1 is 1900-01-01 in the 1900 date system (with its leap-year bug)
DATE_PATTERNS = (
    re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
)


class CellError(ValueError):
    pass


def parse_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 1 <= value < 2_958_466:
            raise CellError("not a date")
        return EXCEL_EPOCH + timedelta(days=int(value))  # an Excel serial number (a date cell read as a number)
    text = _compact(value)
    if not text:
        return None
    if text.isdigit() and 4 < len(text) < 8:  # a serial number typed or saved as text
        return parse_date(int(text))
    for pattern in DATE_PATTERNS:
        if m := pattern.match(text):
            try:
                return date(int(m[1]), int(m[2]), int(m[3]))
            except ValueError:
                raise CellError("no such day") from None
    raise CellError("not a date: write it as 2015-03-08")


def id_number_from_cell(value: Any) -> str:
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        raise CellError(
            "stored as a number, so Excel has lost its last digits: format the column as text and type it again"
        )
    text = _compact(value).upper()
    if re.fullmatch(r"\d(\.\d+)?E\+?\d+", text):
        raise CellError(
            "in scientific notation, so its last digits are lost: format the column as text and type it again"
        )
    if not text:
        raise CellError("required")
    if problem := id_number_problem(text):
        raise CellError(problem)
    return text


def id_birth_date(id_number: str) -> date | None:
    try:
        return date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return None


def id_sex(id_number: str) -> Sex:
    return Sex.MALE if int(id_number[16]) % 2 else Sex.FEMALE


def parse_tags(value: Any) -> list[RiskTag]:
    text = _text(value)
    if not text or text in NO_TAGS:
        return []
    tags: list[RiskTag] = []
    for part in re.split(r"[、,，;；/\s]+", text):
        if not part or part in NO_TAGS:
            continue
        tag = TAG_VALUES.get(part)
        if tag is None:
            raise CellError(f"unknown type {part!r}: use " + "、".join(RISK_TAG_LABELS.values()))
        if tag not in tags:
            tags.append(tag)
    return tags


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


# ---- rows ----------------------------------------------------------------------------------------


def read_row(sheet: Sheet, number: int, cells: list[Any], today: date) -> PersonRow | list[Problem]:
    """A row as a PersonRow, or every problem found in it."""
    values: dict[str, Any] = {}
    refs: dict[str, str] = {}
    for j, f in sheet.columns.items():
        values[f] = cells[j] if j < len(cells) else None
        refs[f] = f"{column_letter(j)}{number}"
    problems: list[Problem] = []

    def problem(f: str, reason: str) -> None:
        column = BY_FIELD[f]
        shown = None if column.personal else (_text(values.get(f)) or None)
        problems.append(Problem(number, sheet.headers.get(f, column.header), reason, shown, refs.get(f), sheet.name))

    def get(f: str, parse: Any) -> Any:
        try:
            return parse(values.get(f))
        except CellError as e:
            problem(f, str(e))
            return None

    name = _compact(values.get("name"))
    if not name:
        problem("name", "required")
    elif len(name) > 50:
        problem("name", "longer than 50 characters")
    id_number = get("id_number", id_number_from_cell)
    from_id = id_birth_date(id_number) if id_number else None
    birth = get("birth_date", parse_date)
    if birth is None and from_id is not None and "birth_date" not in {p.column for p in problems}:
        birth = from_id
    elif birth is not None and from_id is not None and birth != from_id:
        problem("birth_date", f"does not match the ID number's birth date ({from_id.isoformat()})")
        birth = None
    sex_text = _compact(values.get("sex")).lower()
    sex: Sex | None = None
    if sex_text:
        sex = SEX_VALUES.get(sex_text)
        if sex is None:
            problem("sex", "write 男 or 女")
        elif id_number and sex != id_sex(id_number):
            problem("sex", f"does not match the ID number ({SEX_LABELS[id_sex(id_number)]})")
            sex = None
    elif id_number:
        sex = id_sex(id_number)
    kind_text = _compact(values.get("kind"))
    kind: PersonKind | None = None
    if kind_text:
        kind = KIND_VALUES.get(kind_text.lower())
        if kind is None:
            problem("kind", "write 留守老年人 or 留守儿童")
    elif birth is not None:
        age = age_on(birth, today)
        kind = PersonKind.ELDER if age >= 60 else PersonKind.CHILD if age < 18 else None
        if kind is None:
            problem("kind", f"required: aged {age}, neither an elder nor a child")
    village = _compact(values.get("village")) or None
    village_code = _compact(values.get("village_code")) or None
    if village_code and not re.fullmatch(r"\d{12}", village_code):
        problem("village_code", "a division code has 12 digits")
    if not village and not village_code:
        problem(
            "village" if "village" in sheet.columns.values() else "village_code", "required: the village or its code"
        )
    tags = get("risk_tags", parse_tags) or []
    guardian_name = _compact(values.get("guardian"))
    relation = _compact(values.get("guardian_relation")) or "监护人"
    phone = _compact(values.get("phone")).replace("-", "")
    if phone and not re.fullmatch(r"\+?\d{5,20}", phone):
        problem("phone", "not a phone number")
    guardian: dict[str, Any] | None = None
    if guardian_name:
        guardian = {"name": guardian_name, "relation": relation[:32], "phone": phone or None}
    agreement = get("care_agreement_signed_on", parse_date)
    household = _text(values.get("household"))[:200]
    left_reason = _text(values.get("left_reason")) or None
    helpers, shape, cadence, start = _pairing_cells(values, problem, get)
    if problems:
        return problems
    assert id_number is not None and birth is not None and sex is not None and kind is not None
    if kind == PersonKind.ELDER and guardian is not None:
        return [
            Problem(
                number,
                sheet.headers["guardian"],
                "a guardian is recorded for children only",
                None,
                refs["guardian"],
                sheet.name,
            )
        ]
    return PersonRow(
        row=number,
        id_number=id_number,
        name=name,
        sex=sex,
        birth_date=birth,
        kind=kind,
        village=village,
        village_code=village_code,
        risk_tags=tags,
        guardian=guardian,
        household=household,
        care_agreement_signed_on=agreement,
        left_reason=left_reason,
        helpers=helpers,
        pairing_shape=shape,
        cadence=cadence,
        pairing_start=start,
        cells=refs,
        sheet=sheet.name,
        headers=sheet.headers,
    )


def _split(value: Any) -> list[str]:
    return [part for part in re.split(r"[、,，;；/\s]+", _text(value)) if part]


def _pairing_cells(
    values: dict[str, Any], problem: Any, get: Any
) -> tuple[list[HelperCell], PairingShape | None, Cadence, date | None]:
    """The row's helpers (帮扶人 with 帮扶人电话 and 帮扶人身份), pairing shape, cadence and start."""
    names, phones = _split(values.get("helpers")), [p.replace("-", "") for p in _split(values.get("helper_phones"))]
    roles_text = _split(values.get("helper_roles"))
    if not names:
        if phones:
            problem("helpers", "a helper's phone without their name")
        return [], None, Cadence.WEEKLY, None
    if len(phones) != len(names):
        problem("helper_phones", f"one phone per helper, in the same order: {len(names)} helpers, {len(phones)} phones")
        return [], None, Cadence.WEEKLY, None
    bad = [p for p in phones if not re.fullmatch(r"\+?\d{5,20}", p)]
    if bad:
        problem("helper_phones", "not a phone number")
    roles: list[HelperRole] = []
    for text in roles_text or ["志愿者"]:
        role = ROLE_VALUES.get(text.lower())
        if role is None:
            problem("helper_roles", "unknown role: use " + "、".join(list(ROLE_VALUES)[:14]))
            return [], None, Cadence.WEEKLY, None
        roles.append(role)
    if len(roles) not in (1, len(names)):
        problem("helper_roles", "one role for every helper, or one per helper in the same order")
        return [], None, Cadence.WEEKLY, None
    helpers = [
        HelperCell(n, p, roles[i] if len(roles) > 1 else roles[0]) for i, (n, p) in enumerate(zip(names, phones))
    ]
    shape_text = _compact(values.get("pairing_shape")).lower()
    shape = (
        SHAPE_VALUES.get(shape_text)
        if shape_text
        else (PairingShape.ONE_TO_ONE if len(helpers) == 1 else PairingShape.MANY_TO_ONE)
    )
    if shape is None:
        problem("pairing_shape", "write 一对一, 一对N or N对一")
    elif shape == PairingShape.MANY_TO_ONE and len(helpers) < 2:
        problem("pairing_shape", "N对一 needs two or more helpers on the row")
    elif shape != PairingShape.MANY_TO_ONE and len(helpers) > 1:
        problem("pairing_shape", f"{shape_text or '一对一'} has one helper; several helpers are N对一")
    cadence_text = _compact(values.get("cadence")).lower()
    cadence = CADENCE_VALUES.get(cadence_text, Cadence.WEEKLY) if cadence_text else Cadence.WEEKLY
    if cadence_text and cadence_text not in CADENCE_VALUES:
        problem("cadence", "write 每周, 每两周, 每半月, 每月, 每半年 or 每年")
    start = get("pairing_start", parse_date)
    return (helpers if not bad else []), shape, cadence, start


def read_rows(sheets: list[Sheet], today: date) -> tuple[list[PersonRow], list[Problem]]:
    """Every row of every sheet, with the same ID number twice in one file refused (every such
    row names the others)."""
    read: list[PersonRow] = []
    problems: list[Problem] = []
    by_number: dict[str, list[tuple[str, int]]] = {}
    for sheet in sheets:
        for number, cells in sheet.rows:
            got = read_row(sheet, number, cells, today)
            if isinstance(got, list):
                problems.extend(got)
                continue
            by_number.setdefault(got.id_number, []).append((sheet.name, number))
            read.append(got)
    rows: list[PersonRow] = []
    for row in read:
        same = by_number[row.id_number]
        if len(same) == 1:
            rows.append(row)
            continue
        # Which of the rows is right is for the county to say: neither is imported.
        others = "、".join(str(n) if s == row.sheet else f"{s}!{n}" for s, n in same if (s, n) != (row.sheet, row.row))
        problems.append(row.problem("id_number", f"the same ID number as row {others}: one row per person"))
    problems.sort(key=lambda p: (p.sheet, p.row))
    return rows, problems
