"""Read an .xlsx into dense per-sheet arrays plus its formulas, never its cached values.

Big sheets of plain numbers take a vectorised path: complete rows are cut from the
streamed XML, and the text inside every <v> element is parsed by NumPy in one call; rows
whose every cell carries its address (the default book) lose their markup to two
bytes.translate calls, the column letters checked against the expected ones.
Rows with formulas, strings, gaps or errors take the general (regex, per cell) path.
Files are untrusted: DTDs are refused (no entity expansion), the decompressed size and
the sheet dimensions are capped.
"""
from __future__ import annotations

import functools
import multiprocessing
import warnings
import os
import re
import struct
import zipfile
import zlib
from xml.parsers import expat
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

try:  # ISA-L's inflate: the same deflate, several times faster (pip install isal)
    from isal import isal_zlib as _isal_zlib
    _ISAL_ERRORS: tuple = (_isal_zlib.error,)
except ImportError:  # pragma: no cover - zlib does the same, slower
    _isal_zlib, _ISAL_ERRORS = None, ()

from ...a1 import MAX_COLS, MAX_ROWS, cell_name, col_letter, col_number
from ...errors import UserError
from ...workers import worker_init

EMPTY, NUM, STR, BOOL, ERR = 0, 1, 2, 3, 4
ERROR_CODES = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A")
MAX_CELLS = 400_000_000  # per sheet: beyond this a dense float64 copy would not fit
MAX_UNPACKED = 16 << 30  # bytes of XML we are willing to inflate
READ_CHUNK = 16 << 20
PARALLEL_BYTES = 64 << 20  # read sheets in parallel above this much XML
MAX_ROW_BYTES = 256 << 20  # 16,384 cells of formulas fit many times over
BOMB_RATIO, BOMB_MIN_BYTES = 200, 64 << 20  # sheetgpt's own sheets compress 4x-30x
VALIDATE_BYTES = 32 << 20  # sheets up to this size are also checked by a real XML parser
NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


class FileError(UserError):
    """The file is not a workbook this engine can read."""


@dataclass
class SharedFormula:
    row: int  # 0-based master cell
    col: int
    text: str
    rows: list[int] = field(default_factory=list)  # 0-based cells that share it (master included)
    cols: list[int] = field(default_factory=list)


@dataclass
class Sheet:
    name: str
    num: np.ndarray  # float64 [n_rows, n_cols], 0-based; NaN where not a number
    kind: np.ndarray  # uint8, EMPTY/NUM/STR/BOOL/ERR
    text: dict[tuple[int, int], str]  # strings and error codes by (row, col)
    formulas: list[tuple[int, int, str]]  # plain formulas (0-based row, col, text without '=')
    shared: dict[str, SharedFormula]
    array_formulas: list[tuple[int, int, str]] = field(default_factory=list)  # {=...}: 0-based master, text
    array_extents: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # master -> (rows, cols)

    @property
    def shape(self) -> tuple[int, int]:
        return self.num.shape

    def array_around(self, row: int, col: int) -> str | None:
        """The range (A1) of the multi-cell array formula that holds a cell (0-based), if any."""
        for (r, c), (h, w) in self.array_extents.items():
            if r <= row < r + h and c <= col < c + w:
                return f"{cell_name(r + 1, c + 1)}:{cell_name(r + h, c + w)}"
        return None

    def put(self, row: int, col: int, value: float | str) -> None:
        """Type a value into a cell (0-based), replacing what it held, formula included."""
        if row >= self.num.shape[0] or col >= self.num.shape[1]:
            shape = (max(row + 1, self.num.shape[0]), max(col + 1, self.num.shape[1]))
            num, kind = np.full(shape, np.nan), np.zeros(shape, np.uint8)
            num[:self.num.shape[0], :self.num.shape[1]], kind[:self.kind.shape[0], :self.kind.shape[1]] = \
                self.num, self.kind
            self.num, self.kind = num, kind
        inside = self.array_around(row, col)
        if inside is not None:
            raise ValueError(f"the cell is part of the array formula at {inside}: an array is edited as a whole")
        self.formulas = [f for f in self.formulas if f[:2] != (row, col)]
        self.array_formulas = [f for f in self.array_formulas if f[:2] != (row, col)]
        for si, g in list(self.shared.items()):
            kept = [(r, c) for r, c in zip(g.rows, g.cols) if (r, c) != (row, col)]
            if len(kept) < len(g.rows):
                g.rows, g.cols = [r for r, _ in kept], [c for _, c in kept]
            if not g.rows:
                del self.shared[si]
        self.text.pop((row, col), None)
        if isinstance(value, str):
            self.num[row, col], self.kind[row, col], self.text[(row, col)] = np.nan, STR, value
        else:
            self.num[row, col], self.kind[row, col] = float(value), NUM


@dataclass
class Workbook:
    sheets: dict[str, Sheet]  # in workbook order
    names: dict[str, str]  # workbook-level defined names -> reference text


_CELL_REF = re.compile(rb"([A-Za-z]{1,3})([0-9]+)")
_CELL_ATTR = re.compile(rb' r="[A-Za-z]{1,3}[0-9]+"')  # a cell's address (a row's has no letters)
_ATTR = re.compile(rb'([\w:]+)\s*=\s*"([^"]*)"')
_ENTITY = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|amp|lt|gt|quot|apos);")
_OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}

# a row of addressed number cells, <c r="B5"><v>0.8</v></c>..., read as " 0.8 ...": with the
# row number gone, quotes become spaces, the markup and the column letters go
# (see _SheetBuilder._named_row)
_NAMED_TABLE = bytes.maketrans(b'"', b" ")
_NAMED_DELETE = b"<>/=cvr" + bytes(range(ord("A"), ord("Z") + 1))
_NOT_LETTERS = bytes(b for b in range(256) if not (b == ord('"') or ord("A") <= b <= ord("Z")))


@functools.lru_cache(maxsize=256)
def _quoted_letters(first_col: int, n: int) -> bytes:
    """What the addresses of n cells from first_col (1-based) leave when all but the
    quotes and capitals go: b'"B""C""D"' (an exponent such as 1E5 would show as an extra E)."""
    return b"".join(b'"%s"' % col_letter(c).encode() for c in range(first_col, first_col + n))


def _named_in_order(body: bytes, first_col: int, n: int, row: int) -> bool:
    """Whether all n cells of a row carry their addresses, and those are exactly the
    columns from first_col on, in order, on this row (0-based)."""
    found = _CELL_ATTR.findall(body)
    return len(found) == n and b"".join(found) == b"".join(
        b' r="%s%d"' % (col_letter(c).encode(), row + 1) for c in range(first_col + 1, first_col + n + 1))


def unescape(raw: bytes, ooxml: bool = False) -> str:
    """XML character data to text; with ooxml, also decode _xHHHH_ escapes."""
    text = raw.decode("utf-8")
    if "&" in text:
        text = _ENTITY.sub(lambda m: _ENTITIES.get(m.group(1)) or chr(
            int(m.group(1)[2:], 16) if m.group(1)[1] == "x" else int(m.group(1)[1:])), text)
    if ooxml and "_x" in text:
        text = _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text


def _parse_small_xml(z: zipfile.ZipFile, name: str) -> ElementTree.Element:
    data = z.read(name)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise FileError(f"{name} declares a DTD or entities, which workbooks never need; refusing it")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as e:
        raise FileError(f"{name} is not well-formed XML ({e})") from None


def read_workbook(path: str | Path, progress=None, workers: int | None = None, cached: bool = False,
                  only: set[str] | None = None) -> Workbook:
    """Read every sheet (or those named in `only`); big workbooks are read by `workers`
    processes (default: one per core). With `cached`, a formula cell holds the value the
    program that wrote the file stored for it, not its formula (for other engines' output)."""
    path = Path(path)
    try:
        z = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise FileError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise FileError(f"{path} is not an .xlsx file (not a readable zip: {e})") from None
    with z:
        total = sum(i.file_size for i in z.infolist())
        if total > MAX_UNPACKED:
            raise FileError(f"{path} unpacks to {total / 1e9:.1f} GB, more than the {MAX_UNPACKED / 2**30:.0f} GiB "
                            "this reader accepts")
        for info in z.infolist():  # deflate tops out near 1000:1; real sheets stay far below
            if info.file_size > BOMB_MIN_BYTES and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
                raise FileError(f"{path}: part {info.filename} would inflate {info.compress_size:,} bytes to "
                                f"{info.file_size:,} (a zip bomb?); refusing it")
        if "xl/workbook.xml" not in z.namelist():
            raise FileError(f"{path} is a zip but not an .xlsx workbook (no xl/workbook.xml)")
        wb = _parse_small_xml(z, "xl/workbook.xml")
        rels = {}
        if "xl/_rels/workbook.xml.rels" in z.namelist():
            for rel in _parse_small_xml(z, "xl/_rels/workbook.xml.rels"):
                target = rel.get("Target", "")
                target = target.lstrip("/") if target.startswith("/") else "xl/" + target
                rels[rel.get("Id")] = target
        shared_strings = _read_shared_strings(z) if "xl/sharedStrings.xml" in z.namelist() else []
        entries = [(s.get("name", ""), rels.get(s.get(f"{{{NS_REL}}}id"))) for s in wb.iter(f"{{{NS_MAIN}}}sheet")
                   if only is None or s.get("name", "") in only]
        for name, part in entries:
            if part is None or part not in z.namelist():
                raise FileError(f"{path}: sheet {name!r} has no worksheet part")
        if workers is None:
            workers = min(2, os.cpu_count() or 1) if total > PARALLEL_BYTES else 0
        if workers > 1:
            sheets = _read_parallel(path, z, entries, shared_strings, workers, progress, cached)
        else:
            sheets = {}
            for name, part in entries:
                sheets[name] = _read_sheet(z, part, name, shared_strings, cached)
                if progress:
                    progress(name)
        names = {n.get("name", ""): (n.text or "") for n in wb.iter(f"{{{NS_MAIN}}}definedName")
                 if n.get("localSheetId") is None}
    return Workbook(sheets, names)


def _read_parallel(path: Path, z: zipfile.ZipFile, entries, sst: list[str], workers: int,
                   progress, cached: bool) -> dict[str, Sheet]:
    """Sheets read by forked workers, biggest first so the work stays balanced."""
    order = sorted(entries, key=lambda e: -z.getinfo(e[1]).file_size)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=worker_init) as pool:
        futures = {name: pool.submit(_read_sheet_file, path, part, name, sst, cached) for name, part in order}
        for future in as_completed(futures.values()):
            future.result()  # raise the first failure early
            if progress:
                progress("")
        return {name: futures[name].result() for name, _ in entries}


def _read_sheet_file(path: Path, part: str, name: str, sst: list[str], cached: bool) -> Sheet:
    with zipfile.ZipFile(path) as z:
        return _read_sheet(z, part, name, sst, cached)


def _read_shared_strings(z: zipfile.ZipFile) -> list[str]:
    root = _parse_small_xml(z, "xl/sharedStrings.xml")
    out = []
    for si in root.iter(f"{{{NS_MAIN}}}si"):
        # rich text runs are concatenated; phonetic runs (rPh) are not part of the value
        phonetic = {id(t) for r in si.iter(f"{{{NS_MAIN}}}rPh") for t in r.iter(f"{{{NS_MAIN}}}t")}
        parts = [t.text or "" for t in si.iter(f"{{{NS_MAIN}}}t") if id(t) not in phonetic]
        out.append(_OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), "".join(parts)))
    return out


class _SheetBuilder:
    """Collects a sheet's cells while its XML streams by."""

    def __init__(self, name: str, sst: list[str], prefix: bytes, cached: bool = False):
        self.name, self.sst, self.cached, self.prefix = name, sst, cached, prefix
        p = re.escape(prefix)
        self.cell_re = re.compile(rb"<" + p + rb"c(\s[^>]*?)?(?:/>|>(.*?)</" + p + rb"c>)", re.S)
        self.row_re = re.compile(rb"<" + p + rb"row(\s[^>]*?)?/>")
        self.row_open, self.row_close = b"<" + prefix + b"row", b"</" + prefix + b"row>"
        self.f_open = b"<" + prefix + b"f"
        self.simple_sep = b"</" + prefix + b"v></" + prefix + b"c><" + prefix + b"c><" + prefix + b"v>"
        self.simple_tail = b"</" + prefix + b"v></" + prefix + b"c>"
        self.f_re = re.compile(rb"<" + p + rb"f(\s[^>]*?)?(?:/>|>(.*?)</" + p + rb"f>)", re.S)
        # a shared formula's other cells exactly as sheetgpt writes them: read by one regex
        self.follower_re = re.compile(rb'<' + p + rb'c r="([A-Z]{1,3})([0-9]+)"(?: s="[0-9]+")?><' + p
                                      + rb'f t="shared" si="([0-9]+)"/></' + p + rb'c>')
        self.v_re = re.compile(rb"<" + p + rb"v>(.*?)</" + p + rb"v>", re.S)
        self.t_re = re.compile(rb"<" + p + rb"t(?:\s[^>]*)?>(.*?)</" + p + rb"t>", re.S)
        self.rph_re = re.compile(rb"<" + p + rb"rPh\b.*?</" + p + rb"rPh>", re.S)
        self.v_open, self.v_close = b"<" + prefix + b"v>", b"</" + prefix + b"v>"
        self.c_open = b"<" + prefix + b"c"
        self.runs: list[tuple[int, int, np.ndarray]] = []  # (row, first col, values) numeric runs
        self.cells: list[tuple[int, int, int, object]] = []  # (row, col, kind, value) other cells
        self.formulas: list[tuple[int, int, str]] = []
        self.array_formulas: list[tuple[int, int, str]] = []
        self.array_extents: dict[tuple[int, int], tuple[int, int]] = {}
        self.shared: dict[str, SharedFormula] = {}
        self.row = -1
        self.max_row = self.max_col = -1

    def feed(self, chunk: bytes) -> None:
        """Process a piece of sheet XML that ends just after a </row> (or at the end)."""
        fast: list[tuple[int, int, int, bytes]] = []  # (row, first col, n cells, body)
        simple: list[tuple[int, int, bytes]] = []  # (row, first col, "v1 v2 v3 ...")
        named: list[tuple] = []  # (row, first col, n cells, "row v1 row v2 ...", label cell, body)
        for piece in chunk.split(self.row_close):
            start = piece.rfind(self.row_open)
            if start < 0:
                continue
            if piece.count(self.row_open) > 1:  # empty <row .../> elements before this one
                for m in self.row_re.finditer(piece, 0, start):
                    self._row_number(m.group(1) or b"")
            end = piece.find(b">", start)
            if end < 0:
                continue
            if piece[end - 1:end] == b"/":  # the last row of the sheet may be self-closing
                self._row_number(piece[start + len(self.row_open):end - 1])
                continue
            self._row_number(piece[start + len(self.row_open):end])
            body = piece[end + 1:]
            if not body.strip():
                continue
            pairs = self._named_row(body)
            if pairs is not None:
                named.append((self.row, *pairs, body))
            else:
                self._route(body, simple, fast)
        if named and not self._named_rows(named):  # one of them was not what it seemed: row by row
            last_row = self.row
            for r, *_, body in named:
                self.row = r
                self._route(body, simple, fast)
            self.row = last_row
        if simple:
            self._simple_rows(simple)
        if fast:
            self._fast_rows(fast)

    def _route(self, body: bytes, simple: list, fast: list) -> None:
        """A row's cells read at once (general path) or queued for a vectorised path."""
        plain = self._simple_row(body)
        if plain is not None:
            simple.append((self.row, *plain))
            return
        span = self._fast_span(body)
        if span is None:
            self._general_row(body)
        else:
            fast.append((self.row, span[0], span[1], body))

    def _named_row(self, body: bytes) -> tuple[int, int, bytes, bytes] | None:
        """A row of number cells that each carry their address and nothing else, as the
        default book's weights are, after perhaps a label cell with a style: (first col,
        n, the values as space-separated text, the label cell's XML or b""). Every column
        letter is checked here; that there are exactly n values (no other row number, no
        style, type or formula left) in _named_rows."""
        if self.prefix or not body.startswith(b'<c r="'):
            return None
        label = b""
        if body.find(b'="', 6) < body.find(b">"):  # the first cell has more than its address
            label = body[:body.find(b"</c>") + 4]
            body = body[len(label):]
            if not label or not body.startswith(b'<c r="'):
                return None
        first = _CELL_REF.match(body, 6)
        letters = body.translate(None, _NOT_LETTERS)
        n = len(letters) and letters.count(b'"') // 2
        if first is None or not 0 < col_number(first.group(1)) <= MAX_COLS - n + 1:
            return None
        c0 = col_number(first.group(1))
        if letters != _quoted_letters(c0, n):  # every column, in order, once
            return None
        # this row's number goes from every address; one left behind (another row) is an extra number
        values = body.replace(b'%d"' % (self.row + 1), b'"').translate(_NAMED_TABLE, _NAMED_DELETE)
        return c0 - 1, n, values, label

    def _named_rows(self, rows: list[tuple[int, int, int, bytes, bytes, bytes]]) -> bool:
        """Parse many named rows with one NumPy call; False (nothing kept) unless every row
        held exactly its n values."""
        try:
            with warnings.catch_warnings():  # text that is not a number ends the parse early: counted below
                warnings.simplefilter("ignore", DeprecationWarning)
                values = np.fromstring(b" ".join(row[3] for row in rows), dtype=np.float64, sep=" ")
        except ValueError:  # newer NumPy: the same, raised
            return False
        counts = [row[2] for row in rows]
        if values.size != sum(counts):
            return False
        last_row = self.row
        for (r, c0, n, _, label, _), run in zip(rows, np.split(values, np.cumsum(counts)[:-1])):
            self.runs.append((r, c0, run))
            self.max_row = max(self.max_row, r)
            self.max_col = max(self.max_col, c0 + n - 1)
            if label:
                self.row = r
                self._general_row(label)
        self.row = last_row
        return True

    def _simple_row(self, body: bytes) -> tuple[int, bytes] | None:
        """A row of attribute-free number cells (as sheetgpt writes weights), except perhaps
        the first cell's style or position, or every cell's position when they follow on:
        its values as one space-separated text."""
        start = None
        if body.find(b' r="', body.find(b' r="') + 1) > 0:  # cells named (the default book): drop the names
            span = self._fast_span(body)
            if span is None:
                return None
            start, body = span[0], _CELL_ATTR.sub(b"", body)
        text = body.replace(self.simple_sep, b" ")
        i, j = text.find(self.v_open), text.rfind(self.v_close)
        if i < 0 or j < i or text[j:] != self.simple_tail:
            return None
        head, values = text[:i], text[i + len(self.v_open):j]
        if b"<" in values or head.count(b"<") != 1 or not head.startswith(self.c_open) \
                or b"t=" in head or self.f_open in head:
            return None
        if start is not None:
            return start, values
        first = _CELL_REF.search(head) if b" r=" in head else None
        if first is not None and int(first.group(2)) - 1 != self.row:
            return None
        return (col_number(first.group(1)) - 1 if first else 0), values

    def _simple_rows(self, rows: list[tuple[int, int, bytes]]) -> None:
        values = np.fromstring(b" ".join(v for _, _, v in rows), dtype=np.float64, sep=" ")
        counts = [v.count(b" ") + 1 for _, _, v in rows]
        if values.size != sum(counts):  # a value np.fromstring could not read as a number
            raise FileError(f"sheet {self.name!r}: a row from {rows[0][0] + 1} to {rows[-1][0] + 1} holds a "
                            "value that is not a plain number")
        offset = 0
        for (r, c0, _), n in zip(rows, counts):
            self.runs.append((r, c0, values[offset:offset + n]))
            offset += n
            self.max_row = max(self.max_row, r)
            self.max_col = max(self.max_col, c0 + n - 1)

    def _row_number(self, attrs: bytes) -> None:
        m = re.search(rb'\br\s*=\s*"([0-9]+)"', attrs)
        row = int(m.group(1)) - 1 if m else self.row + 1
        if row <= self.row or row >= MAX_ROWS:
            raise FileError(f"sheet {self.name!r}: row {row + 1} is out of order or beyond Excel's limit")
        self.row = row

    def _fast_span(self, body: bytes) -> tuple[int, int] | None:
        """(first col, n) when every cell of the row is a plain number and they are contiguous."""
        if self.f_open in body or b"is>" in body:
            return None
        n = body.count(self.v_open)
        if n == 0 or body.count(self.c_open) != n:
            return None
        if b't="' in body and (b't="n"' not in body or body.count(b't="') != body.count(b't="n"')):
            return None  # strings, booleans, errors, dates: per cell
        head = body[:body.index(b">", 1) + 1]
        first = _CELL_REF.search(head) if b' r="' in head else None
        first_col = col_number(first.group(1)) - 1 if first else 0
        if b' r="' in body and not _named_in_order(body, first_col, n, self.row):
            return None  # some cells unnamed, or named out of order: per cell
        return first_col, n

    def _fast_rows(self, fast: list[tuple[int, int, int, bytes]]) -> None:
        """Parse the numbers of many plain rows with one NumPy call."""
        joined = b"\x00".join(body for _, _, _, body in fast)
        a = np.frombuffer(joined, dtype=np.uint8)
        starts = _find_all(joined, self.v_open) + len(self.v_open)
        ends = _find_all(joined, self.v_close)
        if len(starts) != len(ends):
            for r, _, _, body in fast:
                self.row = r
                self._general_row(body)
            return
        marks = np.zeros(len(a) + 1, dtype=np.int8)
        marks[starts] += 1
        marks[ends] -= 1
        inside = np.cumsum(marks[:-1], dtype=np.int8).astype(bool)
        text = np.where(inside, a, np.uint8(32)).tobytes()
        values = np.fromstring(text, dtype=np.float64, sep=" ")
        counts = np.array([n for _, _, n, _ in fast])
        if values.size != counts.sum():  # a value that is not a plain number: per cell
            for r, _, _, body in fast:
                self.row = r
                self._general_row(body)
            return
        offset = 0
        for r, c0, n, _ in fast:
            self.runs.append((r, c0, values[offset:offset + n]))
            offset += n
            self.max_row = max(self.max_row, r)
            self.max_col = max(self.max_col, c0 + n - 1)

    def _general_row(self, body: bytes) -> None:
        followers = None
        if b'si="' in body and not self.cached:
            n_cells = body.count(self.c_open + b" ") + body.count(self.c_open + b">")
            if body.count(self.c_open + b' r="') == n_cells:  # every cell names itself: taking some out is safe
                followers = self.follower_re.findall(body)
                if followers:
                    body = self.follower_re.sub(b"", body)
        col = -1
        for m in self.cell_re.finditer(body):
            attrs = dict(_ATTR.findall(m.group(1) or b""))
            if b"r" in attrs:
                ref = _CELL_REF.fullmatch(attrs[b"r"])
                if not ref:
                    raise FileError(f"sheet {self.name!r}: bad cell reference {attrs[b'r'].decode(errors='replace')!r}")
                col, row = col_number(ref.group(1)) - 1, int(ref.group(2)) - 1
                if row != self.row:
                    raise FileError(f"sheet {self.name!r}: cell {attrs[b'r'].decode()} is outside its row")
            else:
                col += 1
            inner = m.group(2) or b""
            kind_attr = attrs.get(b"t", b"n")
            f = self.f_re.search(inner) if b"f" in inner and not self.cached else None
            if f is not None:
                self._formula(col, f)
            elif kind_attr == b"inlineStr":
                inner = self.rph_re.sub(b"", inner)
                self._cell(col, STR, unescape(b"".join(self.t_re.findall(inner)), ooxml=True))
            else:
                v = self.v_re.search(inner)
                if v is None:
                    continue  # empty (perhaps styled) cell
                raw = v.group(1)
                if kind_attr == b"n":
                    try:
                        self._cell(col, NUM, float(raw))
                    except ValueError:
                        raise FileError(f"sheet {self.name!r}: bad number {raw[:30]!r}") from None
                elif kind_attr == b"s":
                    try:
                        self._cell(col, STR, self.sst[int(raw)])
                    except (ValueError, IndexError):
                        raise FileError(f"sheet {self.name!r}: bad shared string index {raw[:30]!r}") from None
                elif kind_attr == b"b":
                    self._cell(col, BOOL, raw.strip() in (b"1", b"true"))
                elif kind_attr == b"e":
                    self._cell(col, ERR, unescape(raw))
                elif kind_attr == b"str":
                    self._cell(col, STR, unescape(raw, ooxml=True))
                else:
                    raise FileError(f"sheet {self.name!r}: cell type {kind_attr.decode(errors='replace')!r} "
                                    "is not supported (dates in ISO form?)")

        if followers:
            self._followers(followers)

    def _followers(self, followers: list[tuple[bytes, bytes, bytes]]) -> None:
        """Cells of shared formulas whose master came first (in this row or above)."""
        row, here = self.row, str(self.row + 1).encode()
        groups, widest = self.shared, -1
        for letters, r, si in followers:
            if r != here:
                raise FileError(f"sheet {self.name!r}: cell {(letters + r).decode()} is outside its row")
            group = groups.get(si.decode())
            if group is None:
                raise FileError(f"sheet {self.name!r}: shared formula {si.decode()} is used before it is defined")
            col = _column_of(letters)
            group.rows.append(row)
            group.cols.append(col)
            widest = max(widest, col)
        self.max_row, self.max_col = max(self.max_row, row), max(self.max_col, widest)

    def _cell(self, col: int, kind: int, value: object) -> None:
        self.cells.append((self.row, col, kind, value))
        self.max_row = max(self.max_row, self.row)
        self.max_col = max(self.max_col, col)

    def _formula(self, col: int, f: re.Match) -> None:
        attrs = dict(_ATTR.findall(f.group(1) or b""))
        text = unescape(f.group(2) or b"")
        kind = attrs.get(b"t", b"normal")
        self.max_row = max(self.max_row, self.row)
        self.max_col = max(self.max_col, col)
        if kind == b"shared":
            si = attrs.get(b"si", b"").decode()
            group = self.shared.get(si)
            if group is None:
                if not text:
                    raise FileError(f"sheet {self.name!r}: shared formula {si} is used before it is defined")
                group = self.shared[si] = SharedFormula(self.row, col, text)
            group.rows.append(self.row)
            group.cols.append(col)
        elif kind == b"normal":
            self.formulas.append((self.row, col, text))
        elif kind == b"array":
            extent = self._array_extent(attrs.get(b"ref", b"").decode(), col)
            if extent != (1, 1):
                self.array_extents[(self.row, col)] = extent
                self.max_row = max(self.max_row, self.row + extent[0] - 1)
                self.max_col = max(self.max_col, col + extent[1] - 1)
            self.array_formulas.append((self.row, col, text))
        else:
            raise FileError(f"sheet {self.name!r}: {kind.decode(errors='replace')} formulas are not supported")

    def _array_extent(self, ref: str, col: int) -> tuple[int, int]:
        """(rows, cols) of an array formula's range, which starts at its own cell."""
        if not ref or ":" not in ref:
            return 1, 1
        first, last = (_split_a1(part) for part in ref.split(":"))
        if first != (self.row, col) or last[0] < first[0] or last[1] < first[1]:
            raise FileError(f"sheet {self.name!r}: array formula at {cell_name(self.row + 1, col + 1)} has the "
                            f"range {ref}, which does not start there")
        return last[0] - first[0] + 1, last[1] - first[1] + 1

    def finish(self) -> Sheet:
        n_rows, n_cols = self.max_row + 1, self.max_col + 1
        if n_rows * n_cols > MAX_CELLS:
            raise FileError(f"sheet {self.name!r} spans {n_rows:,} x {n_cols:,} cells, more than this reader "
                            f"holds ({MAX_CELLS:,})")
        num = np.full((max(n_rows, 0), max(n_cols, 0)), np.nan)
        kind = np.zeros(num.shape, dtype=np.uint8)
        for r, c0, values in self.runs:
            num[r, c0:c0 + len(values)] = values
            kind[r, c0:c0 + len(values)] = NUM
        self.runs.clear()
        text: dict[tuple[int, int], str] = {}
        for r, c, k, v in self.cells:
            kind[r, c] = k
            if k == NUM:
                num[r, c] = v
            elif k == BOOL:
                num[r, c] = float(v)
            else:
                text[(r, c)] = v
        return Sheet(self.name, num, kind, text, self.formulas, self.shared, self.array_formulas, self.array_extents)


@functools.lru_cache(maxsize=1 << 15)
def _split_a1(address: str) -> tuple[int, int]:
    """'C12' (or '$C$12') -> 0-based (row, col)."""
    m = _CELL_REF.fullmatch(address.replace("$", "").encode())
    if m is None:
        raise FileError(f"{address!r} is not a cell address")
    return int(m.group(2)) - 1, _column_of(m.group(1))


def _column_of(letters: bytes) -> int:
    """0-based column of A1-style letters."""
    return col_number(letters.decode()) - 1


def _find_all(data: bytes, needle: bytes) -> np.ndarray:
    """Start offsets of every occurrence of a short needle (vectorised)."""
    a = np.frombuffer(data, dtype=np.uint8)
    n = len(needle)
    if len(a) < n:
        return np.zeros(0, dtype=np.int64)
    hit = a[: len(a) - n + 1] == needle[0]
    for k in range(1, n):
        hit &= a[k: len(a) - n + 1 + k] == needle[k]
    return np.flatnonzero(hit)


def _read_sheet(z: zipfile.ZipFile, part: str, name: str, sst: list[str], cached: bool = False) -> Sheet:
    try:
        return _stream_sheet(z, part, name, sst, cached)
    except (zipfile.BadZipFile, zlib.error, *_ISAL_ERRORS, EOFError, OSError) as e:  # truncated or lying archives
        raise FileError(f"sheet {name!r} cannot be unpacked: {e}") from None


def _check_well_formed(z: zipfile.ZipFile, part: str, name: str) -> None:
    """A real XML parser over the sheet (the fast path uses regexes, which forgive too much).
    Entity declarations are refused before this, so nothing can expand."""
    parser = expat.ParserCreate()
    try:
        with z.open(part) as f:
            while chunk := f.read(1 << 20):
                parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except expat.ExpatError as e:
        raise FileError(f"sheet {name!r} is not well-formed XML ({e})") from None


class _Inflated:
    """A deflated zip member read straight from the file and inflated by ISA-L (python-isal,
    about 6x faster than zlib on these sheets), its CRC and declared size checked like
    zipfile checks them."""

    def __init__(self, path: str, info: zipfile.ZipInfo):
        self.f = open(path, "rb")
        self.f.seek(info.header_offset)
        header = self.f.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            self.close()
            raise FileError(f"{path}: part {info.filename} has a damaged zip header")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        self.f.seek(info.header_offset + 30 + name_len + extra_len)
        self.left, self.info = info.compress_size, info
        self.inflate, self.crc, self.size = _isal_zlib.decompressobj(-15), 0, 0

    def read(self, n: int) -> bytes:
        """Up to n bytes of the member (fewer at times); b"" only at its end."""
        inflate, out = self.inflate, b""
        while not out:
            if inflate.unconsumed_tail:
                out = inflate.decompress(inflate.unconsumed_tail, n)
            elif self.left > 0 and not inflate.eof:
                raw = self.f.read(min(1 << 20, self.left))
                if not raw:
                    raise FileError(f"part {self.info.filename} is cut short")
                self.left -= len(raw)
                out = inflate.decompress(raw, n)
            elif not inflate.eof:  # all input in, output still held inside the inflater
                out = inflate.decompress(b"", n) or inflate.flush()
                if not out:
                    break
            else:
                break
        self.size += len(out)
        self.crc = _isal_zlib.crc32(out, self.crc)
        if self.size > self.info.file_size:
            raise FileError(f"part {self.info.filename} inflates beyond its declared {self.info.file_size:,} bytes")
        if not out and (self.size != self.info.file_size or self.crc != self.info.CRC):
            raise FileError(f"part {self.info.filename} is damaged (its size or CRC does not match)")
        return out

    def close(self) -> None:
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_part(z: zipfile.ZipFile, part: str):
    info = z.getinfo(part)
    if _isal_zlib is not None and info.compress_type == zipfile.ZIP_DEFLATED and z.filename:
        return _Inflated(z.filename, info)
    return z.open(part)


def _stream_sheet(z: zipfile.ZipFile, part: str, name: str, sst: list[str], cached: bool) -> Sheet:
    if z.getinfo(part).file_size <= VALIDATE_BYTES:
        _check_well_formed(z, part, name)
    with _open_part(z, part) as f:
        head = f.read(1 << 16)
        if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
            raise FileError(f"sheet {name!r} declares a DTD or entities; refusing it")
        m = re.search(rb"<(\w+:)?worksheet\b", head)
        if m is None:
            raise FileError(f"sheet {name!r} is not a worksheet")
        prefix = m.group(1) or b""
        builder = _SheetBuilder(name, sst, prefix, cached)
        end_tag = b"</" + prefix + b"row>"
        buffer = head
        while True:
            data = f.read(READ_CHUNK)
            buffer += data
            cut = buffer.rfind(end_tag)
            if cut < 0 and len(buffer) > MAX_ROW_BYTES:
                raise FileError(f"sheet {name!r} has a row longer than {MAX_ROW_BYTES >> 20} MB (or no rows): "
                                "not a workbook this reader accepts")
            if data and cut < 0:
                continue
            if not data:
                builder.feed(buffer)
                break
            cut += len(end_tag)
            builder.feed(buffer[:cut])
            buffer = buffer[cut:]
    return builder.finish()
