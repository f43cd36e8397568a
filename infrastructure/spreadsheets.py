"""Spreadsheets in and out: an upload read safely into rows of cells, and workbooks written.

Reading (python-calamine: fast, and it never evaluates a formula; a formula cell gives the value
Excel saved with it, or nothing): XLSX and CSV only. Before anything is parsed, an upload is
refused when it is larger than the limit, is a macro-enabled workbook (.xlsm, or any workbook
carrying a VBA project), an old binary .xls, or a ZIP whose parts would unpack to more than the
uncompressed limit (a zip bomb: the sizes come from the ZIP's directory, and a part that unpacks
to more than its directory says is cut off while reading). CSV is UTF-8 (with or without BOM) or,
as county PCs save it, GB18030 (a superset of GBK). Merged cells in the data give their value to
every cell they cover, as a reader of the sheet sees it.

Writing (openpyxl): header rows frozen, ID numbers and other codes as text cells (never a number
in scientific notation), dates as date cells.
"""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from python_calamine import CalamineWorkbook

from domain.base import DomainError

XLSX_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # .xls (and password-protected .xlsx)
MACRO_PARTS = ("xl/vbaProject.bin",)
MACRO_CONTENT = b"macroEnabled"


class UploadRefused(DomainError, ValueError):
    """The file cannot be read at all (a damaged workbook, an empty file). Like every refusal
    it carries no HTTP: api/problems.py says how each kind below is answered."""

    def __init__(self, reason: str, **extra: Any) -> None:
        super().__init__(reason, field="file", **extra)
        self.reason = reason


class UploadTooLarge(UploadRefused):
    """The file, its unpacked parts or its rows exceed the limits."""


class UploadNotReadable(UploadRefused):
    """Not a kind of file the import reads: an old .xls, a macro-enabled workbook, binary data, a
    CSV in neither UTF-8 nor GB18030."""


class UploadGone(UploadRefused):
    """The uploaded file was deleted after its days were up."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 1024 * 1024
    max_unpacked_bytes: int = 200 * 1024 * 1024
    max_rows: int = 100_000


@dataclass
class Table:
    name: str  # the sheet's name ("" for CSV)
    rows: list[list[Any]]


def file_kind(data: bytes, filename: str | None) -> str:
    """'xlsx' or 'csv', or refused with the reason."""
    suffix = (filename or "").rsplit(".", 1)[-1].lower() if filename and "." in filename else ""
    if suffix in {"xlsm", "xltm", "xlsb"}:
        raise UploadNotReadable("macro-enabled workbooks are refused: save it as .xlsx (Excel 工作簿)")
    if data.startswith(OLE_MAGIC) or suffix == "xls":
        raise UploadNotReadable("old .xls workbooks are not read: save it as .xlsx (Excel 工作簿)")
    if data.startswith(XLSX_MAGIC):
        return "xlsx"
    if suffix in {"xlsx", "zip"}:
        raise UploadNotReadable("not an XLSX workbook (it does not start as one)")
    if b"\0" in data[:4096]:
        raise UploadNotReadable("neither an XLSX workbook nor a CSV text file")
    return "csv"


def check_size(data: bytes, limits: Limits) -> None:
    if len(data) > limits.max_bytes:
        raise UploadTooLarge(f"the file has {len(data):,} bytes; at most {limits.max_bytes:,} are accepted")


def _check_zip(data: bytes, limits: Limits) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as e:
        raise UploadRefused(f"not a readable XLSX workbook ({e})") from None
    names = {i.filename for i in infos}
    if names & set(MACRO_PARTS):
        raise UploadNotReadable("the workbook carries macros (a VBA project): macro-enabled workbooks are refused")
    total = sum(i.file_size for i in infos)
    if total > limits.max_unpacked_bytes:
        raise UploadTooLarge(
            f"the workbook unpacks to {total:,} bytes; at most {limits.max_unpacked_bytes:,} are accepted"
        )
    if "[Content_Types].xml" in names:
        with archive.open("[Content_Types].xml") as f:
            if MACRO_CONTENT in f.read(1_000_000):
                raise UploadNotReadable("macro-enabled workbooks are refused: save it as .xlsx")
    return archive


def _check_parts_unpack_as_declared(archive: zipfile.ZipFile, limits: Limits) -> None:
    """The directory's sizes can lie: unpack every part, counting, and stop at the limit."""
    budget = limits.max_unpacked_bytes
    try:
        for info in archive.infolist():
            with archive.open(info) as part:
                # zipfile reads a part up to the size the directory declares, then checks its CRC:
                # a part that would unpack to more fails here, before calamine sees it.
                while chunk := part.read(1 << 20):
                    budget -= len(chunk)
                    if budget < 0:
                        raise UploadTooLarge(f"the workbook unpacks to more than {limits.max_unpacked_bytes:,} bytes")
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise UploadRefused(f"the workbook is damaged ({e})") from None


def _fill_merged(rows: list[list[Any]], merged: Iterable[tuple[tuple[int, int], tuple[int, int]]]) -> None:
    for (r0, c0), (r1, c1) in merged:
        if r0 >= len(rows):
            continue
        value = rows[r0][c0] if c0 < len(rows[r0]) else ""
        for r in range(r0, min(r1, len(rows) - 1) + 1):
            for c in range(c0, c1 + 1):
                if c < len(rows[r]):
                    rows[r][c] = value


def read_xlsx(data: bytes, limits: Limits) -> list[Table]:
    archive = _check_zip(data, limits)
    _check_parts_unpack_as_declared(archive, limits)
    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - calamine raises its own errors for every kind of damage
        raise UploadRefused(f"not a readable XLSX workbook ({type(e).__name__})") from None
    tables = []
    for name in book.sheet_names:
        sheet = book.get_sheet_by_name(name)
        start_row, start_col = sheet.start or (0, 0)
        read: list[list[Any]] = [list(r) for r in sheet.to_python(skip_empty_area=False, nrows=limits.max_rows + 20)]
        # to_python starts at the first used row and column: keep the sheet's own row numbers.
        rows = [[""] * start_col + r for r in [[]] * start_row + read] if (start_row or start_col) else read
        _fill_merged(rows, sheet.merged_cell_ranges or [])
        if len(rows) > limits.max_rows + 10:
            raise UploadTooLarge(f"sheet {name} has more than {limits.max_rows:,} rows; split the file")
        tables.append(Table(name, rows))
    return tables


def decode_csv(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise UploadNotReadable("the CSV is neither UTF-8 nor GBK/GB18030 text: save it as CSV UTF-8") from None


def read_csv(data: bytes, limits: Limits) -> list[Table]:
    text = decode_csv(data)
    sample = text[:4096]
    delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
    rows = [list(r) for r in csv.reader(io.StringIO(text), delimiter=delimiter)]
    if len(rows) > limits.max_rows + 10:
        raise UploadTooLarge(f"the file has more than {limits.max_rows:,} rows; split it")
    return [Table("", rows)]


def check_upload(data: bytes, filename: str | None, limits: Limits) -> str:
    """What can be refused before the rows are read (size, kind, macros, zip bomb, encoding): the
    kind, or UploadRefused. Cheap next to reading the rows, which the import does later."""
    check_size(data, limits)
    if not data:
        raise UploadRefused("the file is empty")
    kind = file_kind(data, filename)
    if kind == "xlsx":
        _check_parts_unpack_as_declared(_check_zip(data, limits), limits)
    else:
        decode_csv(data)
    return kind


def read_upload(data: bytes, filename: str | None, limits: Limits) -> tuple[str, list[Table]]:
    """(kind, tables) of an upload, or UploadRefused saying why not."""
    check_size(data, limits)
    if not data:
        raise UploadRefused("the file is empty")
    kind = file_kind(data, filename)
    return kind, read_xlsx(data, limits) if kind == "xlsx" else read_csv(data, limits)


# ---- writing ---------------------------------------------------------------------------------------

HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
BAD_FILL = PatternFill("solid", fgColor="FFC7CE")
DATE_FORMAT = "yyyy-mm-dd"
TEXT_FORMAT = "@"


@dataclass(frozen=True)
class OutColumn:
    key: str
    header: str
    kind: str = "text"  # text | date | number
    width: int = 14
    note: str = ""


def write_sheet(ws: Any, columns: Sequence[OutColumn], rows: Iterable[dict[str, Any]]) -> int:
    """Header row (frozen, bold, commented), then the rows: text cells for text (so an ID number
    stays as typed), date cells for dates. Streams the rows (a write-only sheet of
    ``new_workbook``): a county's registry is tens of thousands of cells. Returns the rows written."""
    ws.freeze_panes = "A2"
    header = []
    for j, col in enumerate(columns, start=1):
        cell = WriteOnlyCell(ws, value=col.header)
        cell.font, cell.fill = HEADER_FONT, HEADER_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        if col.note:
            cell.comment = Comment(col.note, "关爱")
        ws.column_dimensions[get_column_letter(j)].width = col.width
        header.append(cell)
    ws.append(header)
    n = 0
    for n, row in enumerate(rows, start=1):
        cells = []
        for col in columns:
            value = row.get(col.key)
            if col.kind == "date" and isinstance(value, date):
                cell = WriteOnlyCell(ws, value=value)
                cell.number_format = DATE_FORMAT
            elif col.kind == "number" and isinstance(value, int | float):
                cell = WriteOnlyCell(ws, value=value)
            else:
                text = "" if value is None else str(value)
                cell = WriteOnlyCell(ws, value=text)
                cell.number_format = TEXT_FORMAT
                # Text a spreadsheet would run as a formula is kept as text (openpyxl would write it as one).
                cell.data_type = "s"
            cells.append(cell)
        ws.append(cells)
    return n


def new_workbook() -> Workbook:
    """A write-only workbook (rows streamed to the file); add sheets with ``create_sheet``."""
    return Workbook(write_only=True)


def to_bytes(book: Workbook) -> bytes:
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def mark_cells(data: bytes, marks: dict[tuple[str, str], list[str]]) -> bytes:
    """The uploaded workbook with each bad cell filled red and commented with its reasons.
    ``marks`` maps (sheet name, A1 reference) to reasons; a CSV is first made a workbook."""
    if data.startswith(XLSX_MAGIC):
        book = load_workbook(io.BytesIO(data), data_only=True)
    else:
        book = Workbook()
        ws = book.active
        ws.title = "Sheet1"
        for row in csv.reader(io.StringIO(decode_csv(data))):
            ws.append(row)
    by_cell: dict[tuple[str, str], list[str]] = {}
    for (sheet, ref), reasons in marks.items():
        ws = book[sheet] if sheet in book.sheetnames else book.worksheets[0]
        # A cell inside a merged range takes no fill or comment: the range's first cell does.
        merged = next((r for r in ws.merged_cells.ranges if ref in r), None)
        by_cell.setdefault((ws.title, merged.start_cell.coordinate if merged else ref), []).extend(reasons)
    for (sheet, ref), reasons in by_cell.items():
        cell = book[sheet][ref]
        cell.fill = BAD_FILL
        cell.comment = Comment("\n".join(dict.fromkeys(reasons)), "关爱导入检查", width=320, height=120)
    return to_bytes(book)
