"""A small streaming .xlsx (OOXML SpreadsheetML) writer.

Sheets are streamed row by row into the zip, so a sheet's XML is never held whole in
memory. Every cell carries its `r=` address unless the book is compact: ECMA-376 makes it
optional, but Gnumeric misplaces cells without it and IronCalc refuses them. A compact
book has it only after a gap and on shared formulas (openpyxl needs it to place those). Strings are inline, so each
sheet is self-contained. The file is deterministic: fixed zip timestamps, fixed order.
Formula cells carry no cached value: the workbook asks to be fully recalculated on load.
"""
from __future__ import annotations

import functools
import os
import re
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .a1 import col_letter
from .xlsx_chart import CHART_TYPE, DRAWING_TYPE, ChartSpec, chart_xml, drawing_xml

NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP64_LIMIT = 2**31 - 1


class Style:
    """Indexes into cellXfs of STYLES_XML."""

    DEFAULT, TITLE, HEADER, INPUT, NUMBER, PERCENT, MASKED, WEIGHT, LINK, INTEGER = range(10)


STYLES_XML = XML_HEAD + f"""<styleSheet xmlns="{NS_MAIN}">
<numFmts count="2"><numFmt numFmtId="164" formatCode="0.0000"/><numFmt numFmtId="165" formatCode="0.0000%"/></numFmts>
<fonts count="5"><font><sz val="11"/><name val="Calibri"/></font><font><b/><sz val="14"/><name val="Calibri"/></font><font><b/><sz val="11"/><name val="Calibri"/></font><font><i/><sz val="11"/><color rgb="FF808080"/><name val="Calibri"/></font><font><u/><sz val="11"/><color rgb="FF0563C1"/><name val="Calibri"/></font></fonts>
<fills count="4"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill><fill><patternFill patternType="solid"><fgColor rgb="FFFFF2CC"/><bgColor indexed="64"/></patternFill></fill><fill><patternFill patternType="solid"><fgColor rgb="FFEDEDED"/><bgColor indexed="64"/></patternFill></fill></fills>
<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="10">
<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>
<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>
<xf numFmtId="0" fontId="2" fillId="0" borderId="0" xfId="0" applyFont="1"/>
<xf numFmtId="0" fontId="2" fillId="2" borderId="0" xfId="0" applyFont="1" applyFill="1"/>
<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
<xf numFmtId="0" fontId="3" fillId="3" borderId="0" xfId="0" applyFont="1" applyFill="1"/>
<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>
<xf numFmtId="0" fontId="4" fillId="0" borderId="0" xfId="0" applyFont="1"/>
<xf numFmtId="1" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
</cellXfs>
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>
</styleSheet>
"""

# XML 1.0 cannot hold most control characters (and turns a literal \r into \n); OOXML escapes
# them as _xHHHH_, and a literal
# "_xHHHH_" in text must then have its underscore escaped so it is not decoded.
_NEEDS_OOXML_ESCAPE = re.compile(r"[\x00-\x08\x0b-\x1f\ufffe\uffff]|_(?=x[0-9A-Fa-f]{4}_)")


def escape_text(text: str) -> str:
    """Escape text for an XML text node, including OOXML's _xHHHH_ escapes."""
    text = _NEEDS_OOXML_ESCAPE.sub(lambda m: "_x%04X_" % ord(m.group()), text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(text: str) -> str:
    return escape_text(text).replace('"', "&quot;")


def string_cell(text: str, style: int = 0) -> bytes:
    s = f' s="{style}"' if style else ""
    return f'<c{s} t="inlineStr"><is><t xml:space="preserve">{escape_text(text)}</t></is></c>'.encode()


def number_cells(values: np.ndarray | Sequence[float], style: int = 0, fmt: str = "%.17g") -> bytes:
    """Consecutive number cells. '%.9g' is enough to round-trip float32 exactly."""
    values = np.asarray(values, dtype=np.float64).ravel()
    s = f' s="{style}"' if style else ""
    template = f"<c{s}><v>{fmt}</v></c>".encode() * len(values)
    return template % tuple(values.tolist())


def formula_cell(formula: str, style: int = 0) -> bytes:
    """One formula (without the leading '=') with no cached value."""
    s = f' s="{style}"' if style else ""
    return f"<c{s}><f>{escape_text(formula)}</f></c>".encode()


def array_formula_cell(formula: str, ref: str, style: int = 0) -> bytes:
    """The top-left cell of an array formula over `ref` (e.g. B3:Q12); the range's other
    cells are written empty (with the style): the formula fills them."""
    s = f' s="{style}"' if style else ""
    return f'<c{s}><f t="array" ref="{ref}">{escape_text(formula)}</f></c>'.encode()


def empty_cells(n: int, style: int = 0) -> bytes:
    s = f' s="{style}"' if style else ""
    return f"<c{s}/>".encode() * n


def shared_formula_master(formula: str, ref: str, si: int, style: int, col: int, row: int) -> bytes:
    """The top-left cell of a shared formula group covering `ref` (e.g. B3:Q12)."""
    s = f' s="{style}"' if style else ""
    return f'<c r="{col_letter(col)}{row}"{s}><f t="shared" ref="{ref}" si="{si}">{escape_text(formula)}</f></c>'.encode()


def shared_formula_cells(col: int, n: int, row: int, si: int, style: int = 0) -> bytes:
    """n consecutive cells from `col` that follow shared formula group si.

    They carry r= (openpyxl needs it to translate a shared formula to its cell).
    """
    return _shared_template(col, n, si, style) % ((row,) * n)


@functools.lru_cache(maxsize=4096)
def _shared_template(col: int, n: int, si: int, style: int) -> bytes:
    s = f' s="{style}"' if style else ""
    return b"".join(f'<c r="{col_letter(c)}%d"{s}><f t="shared" si="{si}"/></c>'.encode()
                    for c in range(col, col + n))


Run = tuple[int, int, bytes]  # first column (1-based), number of cells, their XML


def row_xml(row: int, runs: Iterable[Run], cell_refs: bool = True) -> bytes:
    """A <row> from runs of consecutive cells. With cell_refs every cell names itself (r=);
    without, only a cell that does not follow on from the previous one does."""
    parts = [b'<row r="%d">' % row]
    next_col = 1
    for col, n, xml in sorted(runs, key=lambda run: run[0]):
        if n == 0:
            continue
        if col < next_col:
            raise ValueError(f"overlapping cells in row {row} at column {col}")
        if cell_refs:
            xml = _name_cells(xml, col, row)
        elif col != next_col and not xml.startswith(b"<c r="):  # name the first cell after a gap: <c r="D7" ...
            xml = xml[:2] + f' r="{col_letter(col)}{row}"'.encode() + xml[2:]
        parts.append(xml)
        next_col = col + n
    parts.append(b"</row>")
    return b"".join(parts)


def _name_cells(xml: bytes, col: int, row: int) -> bytes:
    """Give every cell of a run its r= (cell XML never holds a literal '<c': text is escaped)."""
    cells = xml.split(b"<c")[1:]
    return b"".join(b"<c" + cell if cell.startswith(b' r="') else b'<c r="%s%d"' % (_letters(col + k), row) + cell
                    for k, cell in enumerate(cells))


@functools.lru_cache(maxsize=1 << 15)
def _letters(col: int) -> bytes:
    return col_letter(col).encode()


@dataclass
class SheetOptions:
    tab_color: str | None = None  # RRGGBB
    freeze: tuple[int, int] | None = None  # first unfrozen (row, col), e.g. (3, 2)
    col_widths: Sequence[tuple[int, int, float]] = ()  # (first col, last col, width)
    hyperlinks: Sequence[tuple[str, str, str]] = ()  # (cell, location like 'Sheet'!A1, tooltip)
    hidden: bool = False
    color_scales: Sequence[str] = ()  # ranges (e.g. B3:K12) shaded white -> blue by value
    signed_scales: Sequence[str] = ()  # ranges shaded blue (lowest) -> white (0) -> orange (highest)
    notes: Sequence[tuple[int, int, str]] = ()  # (row, col, text): cell notes (comments)
    fit_width: bool = False  # print (and export to PDF) one page wide, landscape
    charts: Sequence[ChartSpec] = ()  # native charts drawn on the sheet from live ranges


try:  # ISA-L's deflate (python-isal): zipfile's zlib compressor took 50 of 63 s building GPT-2 small
    from isal import isal_zlib as _FAST_DEFLATE
    if not hasattr(zipfile, "_ZipWriteFile"):
        _FAST_DEFLATE = None
except ImportError:
    _FAST_DEFLATE = None


class WorkbookWriter:
    """Write an .xlsx to `path` atomically: into a temporary file beside it, renamed at the end.

    Use as a context manager; on any exception the temporary file is removed and an
    existing file at `path` is left untouched.
    """

    def __init__(self, path: str | Path, compresslevel: int = 1):
        self.path = Path(path)
        self.compresslevel = compresslevel
        self.sheets: list[tuple[str, SheetOptions]] = []
        self.names: list[tuple[str, str]] = []
        self.n_charts = 0  # chart parts written so far (they are numbered across the workbook)

    def __enter__(self) -> "WorkbookWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.{os.getpid()}.", suffix=".tmp", dir=self.path.parent)
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        self._zip = zipfile.ZipFile(self._file, "w", compression=zipfile.ZIP_DEFLATED,
                                    compresslevel=self.compresslevel)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._finish()
                self._zip.close()
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                os.chmod(self._tmp, _new_file_mode(self.path))
                os.replace(self._tmp, self.path)
                return
            except BaseException:
                self._discard()
                raise
        self._discard()

    def _discard(self) -> None:
        """Remove the temporary file, whatever closing it raises (a full disk raises again)."""
        for close in (self._zip.close, self._file.close):
            try:
                close()
            except BaseException:
                pass
        self._zip.fp = None  # the file is closed: ZipFile.__del__ must not try again (and print)
        self._tmp.unlink(missing_ok=True)

    def _part(self, name: str, force_zip64: bool = False):
        info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        level_attr = "compress_level" if hasattr(info, "compress_level") else "_compresslevel"  # 3.13 renamed it
        setattr(info, level_attr, self.compresslevel)
        info.external_attr = 0o600 << 16
        f = self._zip.open(info, "w", force_zip64=force_zip64)
        if _FAST_DEFLATE is not None:  # the same deflate format, about 5x faster than zlib (see BENCHMARKS.md)
            level = min(self.compresslevel, _FAST_DEFLATE.ISAL_BEST_COMPRESSION)  # ISA-L's levels are 0-3
            f._compressor = _FAST_DEFLATE.compressobj(level, _FAST_DEFLATE.DEFLATED, -15)
        return f

    def _write_part(self, name: str, text: str) -> None:
        with self._part(name) as f:
            f.write(text.encode())

    @contextmanager
    def sheet(self, name: str, options: SheetOptions = SheetOptions(),
              size_hint: int = 0) -> Iterator:
        """Stream one worksheet: yields `write(bytes)` for consecutive <row> elements.

        size_hint: expected uncompressed bytes; above 2 GiB the part is written as ZIP64.
        """
        self.sheets.append((name, options))
        index = len(self.sheets)
        with self._part(f"xl/worksheets/sheet{index}.xml", size_hint > ZIP64_LIMIT) as f:
            f.write(_sheet_head(options).encode())
            buffer: list[bytes] = []
            size = 0

            def write(xml: bytes) -> None:
                nonlocal size
                buffer.append(xml)
                size += len(xml)
                if size > 1 << 20:  # flush in ~1 MB pieces: bounded memory
                    f.write(b"".join(buffer))
                    buffer.clear()
                    size = 0

            yield write
            f.write(b"".join(buffer))
            f.write(_sheet_tail(options).encode())
        rels = []  # the sheet's relationships, in the order _sheet_tail names them (rId1, rId2, ...)
        if options.charts:
            rels.append(("drawing", f"../drawings/drawing{index}.xml"))
            self._write_drawing(index, options.charts)
        if options.notes:
            self._write_part(f"xl/comments{index}.xml", _comments_xml(options.notes))
            self._write_part(f"xl/drawings/vmlDrawing{index}.vml", _notes_vml(options.notes, index))
            rels += [("vmlDrawing", f"../drawings/vmlDrawing{index}.vml"), ("comments", f"../comments{index}.xml")]
        if rels:
            self._write_part(f"xl/worksheets/_rels/sheet{index}.xml.rels", _rels_xml(rels))

    def _write_drawing(self, index: int, charts: Sequence[ChartSpec]) -> None:
        """Sheet `index`'s drawing and its charts, numbered on from the workbook's earlier ones."""
        first = self.n_charts + 1
        self.n_charts += len(charts)
        self._write_part(f"xl/drawings/drawing{index}.xml", XML_HEAD + drawing_xml(charts))
        self._write_part(f"xl/drawings/_rels/drawing{index}.xml.rels",
                         _rels_xml([("chart", f"../charts/chart{k}.xml") for k in range(first, self.n_charts + 1)]))
        for k, chart in enumerate(charts, first):
            self._write_part(f"xl/charts/chart{k}.xml", XML_HEAD + chart_xml(chart))

    def define_name(self, name: str, ref: str) -> None:
        self.names.append((name, ref))

    def _finish(self) -> None:
        n = len(self.sheets)
        hidden = ' state="hidden"'
        sheets = "".join(
            f'<sheet name="{escape_attr(name)}" sheetId="{i}"{hidden if opt.hidden else ""} r:id="rId{i}"/>'
            for i, (name, opt) in enumerate(self.sheets, 1))
        names = "".join(f'<definedName name="{escape_attr(name)}">{escape_text(ref)}</definedName>'
                        for name, ref in sorted(self.names, key=lambda x: x[0].lower()))
        first_visible = next(i for i, (_, opt) in enumerate(self.sheets) if not opt.hidden)
        self._write_part("xl/workbook.xml", XML_HEAD + (
            f'<workbook xmlns="{NS_MAIN}" xmlns:r="{NS_REL}">'
            f'<bookViews><workbookView activeTab="{first_visible}"/></bookViews>'
            f"<sheets>{sheets}</sheets>"
            + (f"<definedNames>{names}</definedNames>" if names else "")
            + '<calcPr calcId="191029" fullCalcOnLoad="1"/></workbook>'))
        self._write_part("xl/_rels/workbook.xml.rels", _rels_xml(
            [("worksheet", f"worksheets/sheet{i}.xml") for i in range(1, n + 1)] + [("styles", "styles.xml")]))
        self._write_part("xl/styles.xml", STYLES_XML)
        self._write_part("_rels/.rels", _rels_xml([("officeDocument", "xl/workbook.xml")]))
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            for i in range(1, n + 1))
        overrides += "".join(
            f'<Override PartName="/xl/comments{i}.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.comments+xml"/>'
            for i, (_, opt) in enumerate(self.sheets, 1) if opt.notes)
        overrides += "".join(f'<Override PartName="/xl/drawings/drawing{i}.xml" ContentType="{DRAWING_TYPE}"/>'
                             for i, (_, opt) in enumerate(self.sheets, 1) if opt.charts)
        overrides += "".join(f'<Override PartName="/xl/charts/chart{k}.xml" ContentType="{CHART_TYPE}"/>'
                             for k in range(1, self.n_charts + 1))
        self._write_part("[Content_Types].xml", XML_HEAD + (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Default Extension="vml" ContentType="application/vnd.openxmlformats-officedocument.vmlDrawing"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            f"{overrides}</Types>"))


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files that killed earlier builds of `path` left beside it: only
    names of this writer's pattern (.NAME.PID.XXXX.tmp), only when process PID is gone."""
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.([0-9]+)\.[A-Za-z0-9_]+\.tmp$")
    removed = []
    for candidate in path.parent.iterdir():
        m = pattern.match(candidate.name)
        if m and not _process_alive(int(m.group(1))) and candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _new_file_mode(path: Path) -> int:
    """The mode a plainly created file would get (mkstemp's is 0600), or the replaced file's."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _sheet_head(opt: SheetOptions) -> str:
    head = XML_HEAD + f'<worksheet xmlns="{NS_MAIN}" xmlns:r="{NS_REL}">'
    if opt.tab_color or opt.fit_width:
        head += ("<sheetPr>" + (f'<tabColor rgb="FF{opt.tab_color}"/>' if opt.tab_color else "")
                 + ('<pageSetUpPr fitToPage="1"/>' if opt.fit_width else "") + "</sheetPr>")
    if opt.freeze:
        row, col = opt.freeze
        pane = ""
        if col > 1:
            pane += f' xSplit="{col - 1}"'
        if row > 1:
            pane += f' ySplit="{row - 1}"'
        active = "bottomRight" if row > 1 and col > 1 else ("bottomLeft" if row > 1 else "topRight")
        head += (f'<sheetViews><sheetView workbookViewId="0"><pane{pane} topLeftCell="{col_letter(col)}{row}" '
                 f'activePane="{active}" state="frozen"/></sheetView></sheetViews>')
    head += '<sheetFormatPr defaultRowHeight="15"/>'
    if opt.col_widths:
        head += "<cols>" + "".join(f'<col min="{a}" max="{b}" width="{w}" customWidth="1"/>'
                                   for a, b, w in opt.col_widths) + "</cols>"
    return head + "<sheetData>"


def _sheet_tail(opt: SheetOptions) -> str:
    tail = "</sheetData>"
    for priority, ref in enumerate(opt.color_scales, 1):
        tail += (f'<conditionalFormatting sqref="{ref}"><cfRule type="colorScale" priority="{priority}">'
                 '<colorScale><cfvo type="min"/><cfvo type="max"/><color rgb="FFFFFFFF"/><color rgb="FF5B9BD5"/>'
                 "</colorScale></cfRule></conditionalFormatting>")
    for priority, ref in enumerate(opt.signed_scales, len(opt.color_scales) + 1):
        tail += (f'<conditionalFormatting sqref="{ref}"><cfRule type="colorScale" priority="{priority}">'
                 '<colorScale><cfvo type="min"/><cfvo type="num" val="0"/><cfvo type="max"/><color rgb="FF5B9BD5"/>'
                 '<color rgb="FFFFFFFF"/><color rgb="FFED7D31"/></colorScale></cfRule></conditionalFormatting>')
    if opt.hyperlinks:
        tail += "<hyperlinks>" + "".join(
            f'<hyperlink ref="{cell}" location="{escape_attr(loc)}" display="{escape_attr(tip)}"/>'
            for cell, loc, tip in opt.hyperlinks) + "</hyperlinks>"
    if opt.fit_width:
        tail += '<pageSetup orientation="landscape" fitToWidth="1" fitToHeight="0"/>'
    if opt.charts:
        tail += '<drawing r:id="rId1"/>'
    if opt.notes:  # the notes' drawing: the relationship after the charts' drawing
        tail += f'<legacyDrawing r:id="rId{2 if opt.charts else 1}"/>'
    return tail + "</worksheet>"


def _rels_xml(targets: Sequence[tuple[str, str]]) -> str:
    """A part's relationships rId1, rId2, ... of these (type, target) pairs."""
    return XML_HEAD + f'<Relationships xmlns="{NS_PKG_REL}">' + "".join(
        f'<Relationship Id="rId{k}" Type="{NS_REL}/{kind}" Target="{target}"/>'
        for k, (kind, target) in enumerate(targets, 1)) + "</Relationships>"


def _comments_xml(notes: Sequence[tuple[int, int, str]]) -> str:
    items = "".join(f'<comment ref="{col_letter(c)}{r}" authorId="0"><text><t xml:space="preserve">'
                    f"{escape_text(text)}</t></text></comment>" for r, c, text in notes)
    return XML_HEAD + (f'<comments xmlns="{NS_MAIN}"><authors><author>sheetgpt</author></authors>'
                       f"<commentList>{items}</commentList></comments>")


def _notes_vml(notes: Sequence[tuple[int, int, str]], drawing: int) -> str:
    """The legacy drawing Excel needs to show notes (hidden until the cell is hovered)."""
    shapes = []
    for k, (r, c, _) in enumerate(notes):
        anchor = f"{c}, 15, {max(r - 2, 0)}, 10, {c + 3}, 15, {max(r - 2, 0) + 5}, 4"
        shapes.append(
            f'<v:shape id="_x0000_s{drawing * 1024 + k + 1}" type="#_x0000_t202" style="position:absolute;'
            'margin-left:80pt;margin-top:2pt;width:260pt;height:90pt;z-index:1;visibility:hidden" '
            'fillcolor="#ffffe1" o:insetmode="auto"><v:fill color2="#ffffe1"/>'
            '<v:shadow on="t" color="black" obscured="t"/><v:path o:connecttype="none"/>'
            '<v:textbox style="mso-direction-alt:auto"><div style="text-align:left"></div></v:textbox>'
            f'<x:ClientData ObjectType="Note"><x:MoveWithCells/><x:SizeWithCells/><x:Anchor>{anchor}</x:Anchor>'
            f"<x:AutoFill>False</x:AutoFill><x:Row>{r - 1}</x:Row><x:Column>{c - 1}</x:Column></x:ClientData>"
            "</v:shape>")
    return ('<xml xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" '
            'xmlns:x="urn:schemas-microsoft-com:office:excel">'
            f'<o:shapelayout v:ext="edit"><o:idmap v:ext="edit" data="{drawing}"/></o:shapelayout>'
            '<v:shapetype id="_x0000_t202" coordsize="21600,21600" o:spt="202" path="m,l,21600r21600,l21600,xe">'
            '<v:stroke joinstyle="miter"/><v:path gradientshapeok="t" o:connecttype="rect"/></v:shapetype>'
            + "".join(shapes) + "</xml>")


def float32_rows(values: np.ndarray, first_row: int, first_label: int = 0, label_style: int = 0,
                 cell_refs: bool = True) -> bytes:
    """<row> elements for a float32 matrix: column A holds the row index (counting from
    first_label), data from column B; with cell_refs every cell carries its r=.

    Each value gets the shorter of %.8g and %.9g that reads back as exactly the same
    float32 (8 digits suffice for ~99% of values; 9 always do).
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    n_rows, n_cols = values.shape
    flat = values.ravel()
    as_float = flat.tolist()
    text = (b"%.8g " * flat.size) % tuple(as_float)
    tokens = text.split()
    back = np.fromstring(text, dtype=np.float64, sep=" ").astype(np.float32)
    for i in np.flatnonzero(back != flat).tolist():
        tokens[i] = b"%.9g" % as_float[i]
    s = f' s="{label_style}"' if label_style else ""
    out = []
    if cell_refs:  # one template per sheet: the row number is the only thing that changes
        row_template = (f'<row r="@"><c r="A@"{s}><v>%d</v></c>'.encode()
                        + b"".join(b'<c r="%s@"><v>%%s</v></c>' % _letters(2 + j) for j in range(n_cols))
                        + b"</row>")
        for r in range(n_rows):
            out.append(row_template.replace(b"@", b"%d" % (first_row + r))
                       % (first_label + r, *tokens[r * n_cols:(r + 1) * n_cols]))
        return b"".join(out)
    head = f'<row r="%d"><c{s}><v>%d</v></c><c><v>'.encode()
    for r in range(n_rows):
        out.append(head % (first_row + r, first_label + r))
        out.append(b"</v></c><c><v>".join(tokens[r * n_cols:(r + 1) * n_cols]))
        out.append(b"</v></c></row>")
    return b"".join(out)
