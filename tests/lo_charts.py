"""Run by the system Python that has LibreOffice's `uno` module:

    python3 lo_charts.py BOOK.xlsx PROFILE_DIR OUT.json [SHEET ROW COL TEXT]...

Opens BOOK in LibreOffice (headless, its default settings but for recalculating on load),
and writes OUT.json: for the fresh open, then after each edit typed into a cell (0-based
row and column) and a recalculation, every chart LibreOffice holds on each sheet, as its
chart objects report it through UNO: its title, and per series the range of its values
and of its labels and the values it plots.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sheetgpt", "engines"))
import uno  # noqa: E402
from lo_uno import RECALC_ALWAYS, prop, start_office, stop_office, type_in  # noqa: E402


def charts(doc):
    out = []
    for sheet in doc.Sheets:
        tables = sheet.getCharts()
        for i in range(tables.getCount()):
            chart = tables.getByIndex(i).getEmbeddedObject()
            title = chart.getTitleObject()
            system = chart.getFirstDiagram().getCoordinateSystems()[0]
            categories = system.getAxisByDimension(0, 0).getScaleData().Categories
            series = []
            for kind in system.getChartTypes():
                for s in kind.getDataSeries():
                    for seq in s.getDataSequences():
                        values = seq.getValues()
                        series.append({"values_range": values.getSourceRangeRepresentation(),
                                       "values": [v if isinstance(v, float) else None for v in values.getData()]})
            out.append({"sheet": sheet.Name,
                        "title": "".join(t.getString() for t in title.getText()) if title is not None else "",
                        "labels_range": categories.getValues().getSourceRangeRepresentation() if categories else "",
                        "labels": [str(v) for v in categories.getValues().getData()] if categories else [],
                        "series": series})
    return out


def main():
    book, profile, out_file = sys.argv[1:4]
    edits = sys.argv[4:]
    office, desktop = start_office(profile, RECALC_ALWAYS)
    try:
        doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(os.path.abspath(book)), "_blank", 0,
                                           (prop("Hidden", True),))
        runs = [charts(doc)]
        for k in range(0, len(edits), 4):
            sheet, row, col, text = edits[k:k + 4]
            type_in(doc, [[sheet, int(row), int(col), text]])
            doc.calculateAll()
            runs.append(charts(doc))
        doc.close(True)
    finally:
        stop_office(office, desktop, office.kill, 20)
    with open(out_file, "w") as f:
        json.dump(runs, f)


if __name__ == "__main__":
    main()
