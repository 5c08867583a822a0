"""The chart parts of an .xlsx: a sheet's drawing (where each chart sits, in cells) and each
chart (DrawingML: its kind, its title, the ranges its series read). A spreadsheet program
draws a chart from the cells its series name, and redraws it when they change; the parts
carry no cached values, so nothing in them can go stale.

Element order follows ECMA-376's dml-chart.xsd and dml-spreadsheetDrawing.xsd (the tests
validate every part against them)."""
from __future__ import annotations

import posixpath
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from xml.etree import ElementTree
from xml.sax.saxutils import escape

NS_CHART = "http://schemas.openxmlformats.org/drawingml/2006/chart"
NS_DRAWING = "http://schemas.openxmlformats.org/drawingml/2006/main"
NS_SHEET_DRAWING = "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"
NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
CHART_TYPE = "application/vnd.openxmlformats-officedocument.drawingml.chart+xml"
DRAWING_TYPE = "application/vnd.openxmlformats-officedocument.drawing+xml"
KINDS = ("bar", "column", "line")  # bar: horizontal bars, the first category on top
COLORS = ("5B9BD5", "ED7D31", "70AD47", "A5A5A5")  # the series' colours, in order (the book's blue first)


@dataclass(frozen=True)
class ChartSpec:
    """One chart as the file holds it: ranges are formula text ('Sheet'!$B$3:$B$7)."""

    title: str
    kind: str
    categories: str  # the labels along the category axis
    series: Sequence[tuple[str, str]]  # (name in the legend, the values' range)
    anchor: tuple[int, int, int, int]  # first row, first column (1-based), rows and columns it covers
    percent: bool = False  # the value axis and labels as percentages, from 0 to 100%

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"chart kind {self.kind!r}: give one of {', '.join(KINDS)}")


def drawing_xml(charts: Sequence[ChartSpec]) -> str:
    """A sheet's drawing: chart k (1-based) at its cells, through relationship rIdk."""
    anchors = []
    for k, chart in enumerate(charts, 1):
        row, col, n_rows, n_cols = chart.anchor
        corner = lambda tag, r, c: (f"<xdr:{tag}><xdr:col>{c - 1}</xdr:col><xdr:colOff>0</xdr:colOff>"
                                    f"<xdr:row>{r - 1}</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:{tag}>")
        anchors.append(
            '<xdr:twoCellAnchor editAs="oneCell">' + corner("from", row, col) + corner("to", row + n_rows, col + n_cols)
            + f'<xdr:graphicFrame macro=""><xdr:nvGraphicFramePr><xdr:cNvPr id="{k + 1}" name="Chart {k}" '
            f'descr="{_attr(chart.title)}"/><xdr:cNvGraphicFramePr/></xdr:nvGraphicFramePr>'
            '<xdr:xfrm><a:off x="0" y="0"/><a:ext cx="0" cy="0"/></xdr:xfrm>'
            f'<a:graphic><a:graphicData uri="{NS_CHART}"><c:chart xmlns:c="{NS_CHART}" r:id="rId{k}"/>'
            "</a:graphicData></a:graphic></xdr:graphicFrame><xdr:clientData/></xdr:twoCellAnchor>")
    return (f'<xdr:wsDr xmlns:xdr="{NS_SHEET_DRAWING}" xmlns:a="{NS_DRAWING}" xmlns:r="{NS_REL}">'
            + "".join(anchors) + "</xdr:wsDr>")


def chart_xml(chart: ChartSpec) -> str:
    """One chart part: a bar, column or line chart of its series over its categories."""
    series = "".join(_series(chart, k, name, values) for k, (name, values) in enumerate(chart.series))
    if chart.kind == "line":
        plot = f'<c:lineChart><c:grouping val="standard"/><c:varyColors val="0"/>{series}<c:marker val="1"/>'
    else:
        direction = "bar" if chart.kind == "bar" else "col"
        plot = (f'<c:barChart><c:barDir val="{direction}"/><c:grouping val="clustered"/><c:varyColors val="0"/>'
                f'{series}<c:gapWidth val="60"/>')
    plot += '<c:axId val="1"/><c:axId val="2"/>' + ("</c:lineChart>" if chart.kind == "line" else "</c:barChart>")
    legend = ('<c:legend><c:legendPos val="b"/><c:overlay val="0"/></c:legend>' if len(chart.series) > 1 else "")
    return (f'<c:chartSpace xmlns:c="{NS_CHART}" xmlns:a="{NS_DRAWING}" xmlns:r="{NS_REL}">'
            '<c:roundedCorners val="0"/><c:chart>'
            f'<c:title><c:tx><c:rich><a:bodyPr/><a:p><a:pPr><a:defRPr sz="1200" b="1"/></a:pPr>'
            f"<a:r><a:t>{escape(chart.title)}</a:t></a:r></a:p></c:rich></c:tx>"
            '<c:overlay val="0"/></c:title><c:autoTitleDeleted val="0"/>'
            f"<c:plotArea><c:layout/>{plot}{_axes(chart)}</c:plotArea>{legend}"
            '<c:plotVisOnly val="1"/><c:dispBlanksAs val="gap"/></c:chart></c:chartSpace>')


def _series(chart: ChartSpec, k: int, name: str, values: str) -> str:
    color = COLORS[k % len(COLORS)]
    if chart.kind == "line":
        look = (f'<c:spPr><a:ln w="28575"><a:solidFill><a:srgbClr val="{color}"/></a:solidFill></a:ln></c:spPr>'
                '<c:marker><c:symbol val="circle"/><c:size val="6"/></c:marker>')
    else:
        look = f'<c:spPr><a:solidFill><a:srgbClr val="{color}"/></a:solidFill></c:spPr><c:invertIfNegative val="0"/>'
    labels = ""
    if len(chart.series) == 1:  # one series: each bar or point says its value
        labels = ('<c:dLbls>' + (f'<c:numFmt formatCode="0.0%" sourceLinked="0"/>' if chart.percent else
                                 '<c:numFmt formatCode="0.00" sourceLinked="0"/>')
                  + '<c:showLegendKey val="0"/><c:showVal val="1"/><c:showCatName val="0"/>'
                  '<c:showSerName val="0"/><c:showPercent val="0"/><c:showBubbleSize val="0"/></c:dLbls>')
    tail = '<c:smooth val="0"/>' if chart.kind == "line" else ""
    return (f'<c:ser><c:idx val="{k}"/><c:order val="{k}"/><c:tx><c:v>{escape(name)}</c:v></c:tx>{look}{labels}'
            f"<c:cat><c:strRef><c:f>{escape(chart.categories)}</c:f></c:strRef></c:cat>"
            f"<c:val><c:numRef><c:f>{escape(values)}</c:f></c:numRef></c:val>{tail}</c:ser>")


def _axes(chart: ChartSpec) -> str:
    horizontal = chart.kind == "bar"
    cat_pos, val_pos = ("l", "b") if horizontal else ("b", "l")
    order = "maxMin" if horizontal else "minMax"  # horizontal bars: the first category on top, as in the cells
    scale = '<c:max val="1"/><c:min val="0"/>' if chart.percent else ""
    fmt = "0%" if chart.percent else "General"
    return (f'<c:catAx><c:axId val="1"/><c:scaling><c:orientation val="{order}"/></c:scaling><c:delete val="0"/>'
            f'<c:axPos val="{cat_pos}"/><c:numFmt formatCode="General" sourceLinked="0"/>'
            '<c:majorTickMark val="none"/><c:minorTickMark val="none"/><c:tickLblPos val="low"/>'
            '<c:crossAx val="2"/><c:crosses val="autoZero"/><c:auto val="1"/><c:lblAlgn val="ctr"/>'
            '<c:lblOffset val="100"/><c:noMultiLvlLbl val="1"/></c:catAx>'
            f'<c:valAx><c:axId val="2"/><c:scaling><c:orientation val="minMax"/>{scale}</c:scaling>'
            f'<c:delete val="0"/><c:axPos val="{val_pos}"/><c:majorGridlines/>'
            f'<c:numFmt formatCode="{fmt}" sourceLinked="0"/><c:majorTickMark val="out"/>'
            '<c:minorTickMark val="none"/><c:tickLblPos val="nextTo"/><c:crossAx val="1"/>'
            '<c:crosses val="autoZero"/><c:crossBetween val="between"/></c:valAx>')


def _attr(text: str) -> str:
    return escape(text, {'"': "&quot;"})


@dataclass(frozen=True)
class FoundChart:
    """A chart as a file holds it (whoever wrote it): its sheet, title and series' ranges."""

    sheet: str
    title: str
    series: Sequence[tuple[str, str, str]]  # (name, categories' range, values' range), formula text


def read_charts(path: str | Path) -> list[FoundChart]:
    """Every chart of every sheet in an .xlsx, in the order the sheets' drawings hold them
    (a part the file lacks or cannot parse: no chart there)."""
    found = []
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        workbook = ElementTree.fromstring(z.read("xl/workbook.xml"))
        targets = _relations(z, "xl/workbook.xml", names)
        for sheet in workbook.iter(f"{{{NS_MAIN}}}sheet"):
            part = targets.get(sheet.get(f"{{{NS_REL}}}id", ""), ("", None))[1]
            for drawing in _related(z, part, "drawing", names):
                for chart in _related(z, drawing, "chart", names):
                    try:
                        found.append(_found(ElementTree.fromstring(z.read(chart)), sheet.get("name", "")))
                    except ElementTree.ParseError:  # a damaged chart part: no chart there
                        continue
    return found


def _found(root: ElementTree.Element, sheet: str) -> FoundChart:
    c, a = f"{{{NS_CHART}}}", f"{{{NS_DRAWING}}}"
    title = root.find(f"{c}chart/{c}title")
    text = "" if title is None else "".join(t.text or "" for t in title.iter(f"{a}t"))
    series = []
    for ser in root.iter(f"{c}ser"):
        series.append((_text(ser.find(f"{c}tx"), f"{c}v"), _text(ser.find(f"{c}cat"), f"{c}f"),
                       _text(ser.find(f"{c}val"), f"{c}f")))
    return FoundChart(sheet, text, series)


def _text(element: ElementTree.Element | None, tag: str) -> str:
    """The text of the first `tag` inside element ('' when there is none)."""
    found = None if element is None else element.find(f".//{tag}")
    return "" if found is None else found.text or ""


def _relations(z: zipfile.ZipFile, part: str, names: set[str]) -> dict[str, tuple[str, str]]:
    """A part's relationships: id -> (type, e.g. drawing or chart; the target part's name in the zip)."""
    folder, base = posixpath.split(part)
    rels = posixpath.join(folder, "_rels", base + ".rels")
    if rels not in names:
        return {}
    out = {}
    for rel in ElementTree.fromstring(z.read(rels)):
        target = rel.get("Target", "")
        out[rel.get("Id", "")] = (rel.get("Type", "").rsplit("/", 1)[-1],
                                  target.lstrip("/") if target.startswith("/")
                                  else posixpath.normpath(posixpath.join(folder, target)))
    return out


def _related(z: zipfile.ZipFile, part: str | None, kind: str, names: set[str]) -> list[str]:
    """The parts of one relationship type (drawing, chart) of `part`, in the order the part
    names them (read only when there are several: a sheet has one drawing, and a weight
    sheet of GPT-2 small is hundreds of MB)."""
    if part is None or part not in names:
        return []
    rels = {i: target for i, (k, target) in _relations(z, part, names).items() if k == kind and target in names}
    if len(rels) < 2:
        return list(rels.values())
    order = [i.decode() for i in re.findall(rb'r:id="([^"]+)"', z.read(part))]
    return [rels[i] for i in dict.fromkeys(order) if i in rels]
