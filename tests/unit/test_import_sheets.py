"""Reading registry sheets (no store): headers and synonyms, messy cells, and every bad input of
issue 15 that is refused before anything is looked up, with workbooks made here."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date

import openpyxl
import pytest

from application.registry_import import Sheet, SheetError, find_header, parse_date, read_rows
from domain.vocabulary import PersonKind, RiskTag, Sex
from infrastructure.spreadsheets import (
    Limits,
    UploadNotReadable,
    UploadRefused,
    UploadTooLarge,
    mark_cells,
    read_upload,
)
from tests.imports_support import HEADERS, child_row, elder_row, id_number, xlsx

TODAY = date(2026, 12, 3)


def sheets(data: bytes, filename: str = "台账.xlsx", limits: Limits | None = None) -> list[Sheet]:
    _, tables = read_upload(data, filename, limits or Limits())
    return [find_header(t.rows, t.name) for t in tables]


def test_a_messy_county_sheet_reads_as_a_person_reads_it() -> None:
    """Title rows above the header, headers with spaces and full-width brackets, a village merged
    down its rows, full-width digits, stray spaces, dates as text, as serials and as date cells,
    an ID number typed with a lower-case x, a formula (its value only: never evaluated)."""
    idn = [
        id_number(date(2015, 3, 8), 1),
        id_number(date(2014, 11, 30), 2, male=False),
        id_number(date(1948, 2, 29), 3),
        id_number(date(1950, 1, 1), 4),
    ]
    rows = [
        ["一镇留守儿童和农村留守老年人信息台账（2026年9月）", None, None, None, None, None, None, None],
        ["填报单位：一镇民政办", None, None, None, None, None, None, None],
        ["序号", " 姓  名 ", "身份证号码", "性别", "出生年月", "所属村（居）委会", "人员类别", "困境类型", "备注"],
        [
            1,
            "王  小一",
            " " + idn[0].translate(str.maketrans("0123456789", "０１２３４５６７８９")) + " ",
            "男",
            "2015年3月8日",
            "一镇一村",
            "留守儿童",
            "困境儿童",
            "=1+1",
        ],
        [2, "王小二 ", idn[1].lower(), "女", 41973, None, "留守儿童", "无", ""],
        [3, "李老三", idn[2], " 男 ", date(1948, 2, 29), "一镇二村", "留守老人", "低保户、独居，高龄", ""],
        [4, "李老四", idn[3], "", "", "一镇二村", "", "", ""],
    ]
    data = xlsx(rows, merges=["A1:I1", "A2:I2", "F4:F5"], text_columns=[3])
    [sheet] = sheets(data)
    assert sheet.header_row == 3 and sheet.ignored == ["序号", "备注"]
    got, problems = read_rows([sheet], TODAY)
    assert problems == []
    one, two, three, four = got
    assert (one.name, one.id_number, one.birth_date, one.village, one.risk_tags) == (
        "王小一",
        idn[0],
        date(2015, 3, 8),
        "一镇一村",
        [RiskTag.CHILD_IN_DIFFICULTY],
    )
    assert two.village == "一镇一村", "a village merged down its rows belongs to each of them"
    assert (two.id_number, two.birth_date, two.sex, two.risk_tags) == (
        idn[1].upper(),
        date(2014, 11, 30),
        Sex.FEMALE,
        [],
    )
    assert three.risk_tags == [RiskTag.DIBAO, RiskTag.LIVING_ALONE, RiskTag.ADVANCED_AGE]
    assert (four.birth_date, four.sex, four.kind) == (date(1950, 1, 1), Sex.MALE, PersonKind.ELDER), (
        "birth date, sex and kind come from the ID number and the age when their cells are empty"
    )


def test_a_formula_is_never_evaluated() -> None:
    """The name cell holds a formula without a saved value: it reads as empty, not as its result."""
    data = xlsx([HEADERS, child_row("一村", 1, 姓名='="王"&"五"')])
    got, problems = read_rows(sheets(data), TODAY)
    assert got == [] and [(p.column, p.reason) for p in problems] == [("姓名", "required")]


def test_wrong_and_missing_headers_are_named() -> None:
    with pytest.raises(SheetError) as e:
        sheets(xlsx([["名称", "号码", "地址"], ["x", "y", "z"]]))
    assert "姓名" in e.value.reason and "公民身份号码" in e.value.missing
    with pytest.raises(SheetError) as e:
        sheets(xlsx([["姓名", "性别", "出生日期"], ["王五", "男", "2015-01-01"]]))
    assert e.value.missing == ["公民身份号码", "所属村(居)委会 或 行政区划代码"]
    with pytest.raises(SheetError) as e:
        sheets(xlsx([["姓名", "身份证号", "公民身份号码", "村"], ["王五", "1", "1", "一村"]]))
    assert "two columns hold 公民身份号码" in e.value.reason


def test_bad_cells_are_named_by_row_and_column_never_by_personal_value() -> None:
    good = id_number(date(2015, 3, 8), 7)
    rows = [
        HEADERS,
        child_row("一村", 1, 公民身份号码=good[:-1] + ("0" if good[-1] != "0" else "1")),
        child_row("一村", 2, 出生日期="2015-02-30"),
        child_row("一村", 3, 公民身份号码=4.30428201503080e17),
        child_row("一村", 4, 性别="未知", 类别="留守妇女"),
        child_row("一村", 5, 风险或困境类型="孤儿"),
        child_row("一村", 6, 出生日期=date(2015, 3, 9)),
    ]
    got, problems = read_rows(sheets(xlsx(rows)), TODAY)
    assert got == []
    found = {(p.row, p.column): p for p in problems}
    assert found[(2, "公民身份号码")].reason == "the ID number's check character does not match"
    assert found[(2, "公民身份号码")].value is None, "an ID number is never repeated in a report"
    assert found[(3, "出生日期")].reason == "no such day" and found[(3, "出生日期")].value == "2015-02-30"
    assert "stored as a number" in found[(4, "公民身份号码")].reason
    assert found[(5, "性别")].reason == "write 男 or 女" and found[(5, "类别")].value == "留守妇女"
    assert "unknown type '孤儿'" in found[(6, "风险或困境类型")].reason
    assert "does not match the ID number's birth date" in found[(7, "出生日期")].reason
    assert found[(7, "出生日期")].cell == "D7"


def test_the_same_id_number_twice_in_one_file_refuses_both_rows() -> None:
    twin = child_row("一村", 1)
    other = child_row("一村", 2)
    again = child_row("一村", 3, 公民身份号码=twin[1], 姓名="王小一改")
    got, problems = read_rows(sheets(xlsx([HEADERS, twin, other, again])), TODAY)
    assert [r.row for r in got] == [3]
    assert [(p.row, p.reason) for p in problems] == [
        (2, "the same ID number as row 4: one row per person"),
        (4, "the same ID number as row 2: one row per person"),
    ]


def test_dates_as_text_serials_and_cells() -> None:
    for value in (
        "2015-03-08",
        "2015/3/8",
        "2015.3.8",
        "20150308",
        "2015年3月8日",
        " ２０１５－０３－０８ ",
        42071,
        42071.0,
        "42071",
    ):
        assert parse_date(value) == date(2015, 3, 8), value


def test_csv_in_gbk_gb18030_and_utf8_with_bom() -> None:
    rows = [HEADERS, child_row("一村", 1, 出生日期="2015-03-08"), elder_row("二村", 2, 出生日期="1950-06-01")]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    text = out.getvalue()
    for data in (text.encode("gbk"), text.encode("gb18030"), b"\xef\xbb\xbf" + text.encode(), text.encode()):
        got, problems = read_rows(sheets(data, "台账.csv"), TODAY)
        assert problems == [] and [r.name for r in got] == ["王小1", "李老2"]
        assert got[0].village == "一村"


def test_macro_enabled_workbooks_are_refused() -> None:
    data = xlsx([HEADERS, child_row("一村", 1)])
    with pytest.raises(UploadNotReadable):
        read_upload(data, "台账.xlsm", Limits())
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("xl/vbaProject.bin", b"\0" * 100)
    with pytest.raises(UploadNotReadable) as e:
        read_upload(buf.getvalue(), "renamed.xlsx", Limits())
    assert "macros" in e.value.reason


def test_files_over_the_size_limit_are_refused() -> None:
    data = xlsx([HEADERS] + [child_row("一村", n) for n in range(200)])
    with pytest.raises(UploadTooLarge) as e:
        read_upload(data, "台账.xlsx", Limits(max_bytes=len(data) - 1))
    assert f"{len(data):,} bytes" in e.value.reason


def test_a_zip_bomb_is_refused_before_it_is_parsed() -> None:
    """A part of 300 MB of zeros packs into a few hundred KB: refused from the ZIP's directory."""
    data = xlsx([HEADERS, child_row("一村", 1)])
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        with dst.open("xl/media/padding.bin", "w") as part:
            chunk = b"\0" * (1 << 20)
            for _ in range(300):
                part.write(chunk)
    bomb = buf.getvalue()
    assert len(bomb) < 1_000_000
    with pytest.raises(UploadTooLarge) as e:
        read_upload(bomb, "台账.xlsx", Limits(max_unpacked_bytes=200 * 1024 * 1024))
    assert "unpacks to" in e.value.reason


def test_a_zip_whose_directory_lies_about_sizes_is_cut_off_while_reading() -> None:
    data = xlsx([HEADERS, child_row("一村", 1)])
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("xl/media/padding.bin", b"\0" * (5 << 20))
    raw = bytearray(buf.getvalue())
    # Rewrite the central directory's uncompressed size of the padding to 1 byte.
    name = b"xl/media/padding.bin"
    at = raw.rfind(b"PK\x01\x02", 0, raw.rfind(name))
    raw[at + 24 : at + 28] = (1).to_bytes(4, "little")
    with pytest.raises(UploadRefused):
        read_upload(bytes(raw), "台账.xlsx", Limits(max_unpacked_bytes=2 << 20))


def test_old_xls_and_binary_files_are_refused() -> None:
    with pytest.raises(UploadNotReadable) as e:
        read_upload(b"\xd0\xcf\x11\xe0" + b"\0" * 600, "台账.xls", Limits())
    assert ".xlsx" in e.value.reason
    with pytest.raises(UploadNotReadable):
        read_upload(b"\x00\x01\x02binary", "x.dat", Limits())


def test_the_report_workbook_marks_and_comments_the_bad_cells() -> None:
    data = xlsx([HEADERS, child_row("一村", 1, 性别="未知")], merges=[])
    marked = mark_cells(data, {("台账", "C2"): ["性别: write 男 or 女"]})
    ws = openpyxl.load_workbook(io.BytesIO(marked))["台账"]
    assert ws["C2"].fill.fgColor.rgb.endswith("FFC7CE")
    assert "write 男 or 女" in ws["C2"].comment.text
    assert ws["A2"].comment is None


def test_a_bad_cell_inside_merged_cells_is_marked_on_the_merged_range() -> None:
    data = xlsx([HEADERS, child_row("不存在村", 1), child_row(None, 2)], merges=["E2:E3"])
    marked = mark_cells(
        data, {("台账", "E2"): ["所属村(居)委会: no village"], ("台账", "E3"): ["所属村(居)委会: no village"]}
    )
    ws = openpyxl.load_workbook(io.BytesIO(marked))["台账"]
    assert ws["E2"].comment.text == "所属村(居)委会: no village"
