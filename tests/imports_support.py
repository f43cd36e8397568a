"""Workbooks made in the tests, ID numbers with valid check digits, and a small county to import into."""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import openpyxl

from application.care import CareApplication
from domain.base import CommandMeta
from domain.org_unit import org_unit_id
from domain.vocabulary import OrgLevel

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK = "10X98765432"
HEADERS = [
    "姓名",
    "公民身份号码",
    "性别",
    "出生日期",
    "所属村(居)委会",
    "类别",
    "风险或困境类型",
    "监护人 / 委托照护人",
    "联系电话",
]


def id_number(birth: date, seq: int, *, male: bool = True, region: str | None = None) -> str:
    """A resident ID number with a valid GB 11643 check character; distinct for each ``seq``
    below 5,000,000 (tests sharing a database use distinct ranges: ``fresh_seq``)."""
    order = seq % 500 * 2 + (1 if male else 0)
    region = region or f"53{seq // 500 % 10000:04d}"
    body = f"{region}{birth:%Y%m%d}{order:03d}"
    return body + CHECK[sum(int(c) * w for c, w in zip(body, WEIGHTS, strict=True)) % 11]


def xlsx(
    rows: Sequence[Sequence[Any]], *, title: str = "台账", merges: Sequence[str] = (), text_columns: Sequence[int] = ()
) -> bytes:
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = title
    for row in rows:
        ws.append(list(row))
    for rng in merges:
        ws.merge_cells(rng)
    for col in text_columns:
        for cells in ws.iter_cols(min_col=col, max_col=col):
            for cell in cells:
                cell.number_format = "@"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def fresh_seq() -> int:
    """A base for ``seq`` numbers no other test uses (steps of 500: one region code each)."""
    return random.randrange(20, 9000) * 500


def child_row(village: str, seq: int, **over: Any) -> list[Any]:
    birth = over.pop("birth", date(2015, 3, 8))
    values = {
        "姓名": f"王小{seq}",
        "公民身份号码": id_number(birth, seq, male=seq % 2 == 1),
        "性别": "男" if seq % 2 else "女",
        "出生日期": birth,
        "所属村(居)委会": village,
        "类别": "留守儿童",
        "风险或困境类型": "",
        "监护人 / 委托照护人": f"王奶奶{seq}",
        "联系电话": "13800001234",
    }
    values.update(over)
    return [values[h] for h in HEADERS]


def elder_row(village: str, seq: int, **over: Any) -> list[Any]:
    birth = over.pop("birth", date(1950, 6, 1))
    values = {
        "姓名": f"李老{seq}",
        "公民身份号码": id_number(birth, seq, male=seq % 2 == 1),
        "性别": "男" if seq % 2 else "女",
        "出生日期": birth,
        "所属村(居)委会": village,
        "类别": "留守老年人",
        "风险或困境类型": "独居",
        "监护人 / 委托照护人": "",
        "联系电话": "",
    }
    values.update(over)
    return [values[h] for h in HEADERS]


@dataclass
class County:
    code: str
    county: Any
    townships: list[Any]
    villages: list[Any]  # OrgUnit ids
    village_names: list[str]


def make_county(app: CareApplication, meta: CommandMeta, *, townships: int = 2, villages: int = 2) -> County:
    """A county of its own (random codes), with townships and villages named 一村, 二村, ..."""
    prefix = f"{random.randrange(100000, 999999)}"
    county_code = f"{prefix}000000"
    app.register_org_unit(code=county_code, name="测试县", level=OrgLevel.COUNTY, parent_id=None, meta=meta)
    county_id = org_unit_id(county_code)
    ts, vs, names = [], [], []
    digits = "一二三四五六七八九十"
    for t in range(townships):
        t_code = f"{prefix}{t + 1:03d}000"
        app.register_org_unit(
            code=t_code, name=f"{digits[t]}镇", level=OrgLevel.TOWNSHIP, parent_id=county_id, meta=meta
        )
        ts.append(org_unit_id(t_code))
        for v in range(villages):
            v_code = f"{prefix}{t + 1:03d}{v + 1:03d}"
            name = f"{digits[t]}镇{digits[v]}村"
            app.register_org_unit(code=v_code, name=name, level=OrgLevel.VILLAGE, parent_id=ts[-1], meta=meta)
            vs.append(org_unit_id(v_code))
            names.append(name)
    return County(county_code, county_id, ts, vs, names)
