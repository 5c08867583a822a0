"""Run by the system Python that has LibreOffice's `uno` module (not by sheetgpt's Python).

    python3 lo_uno.py BOOK.xlsx OUT_DIR PROFILE_DIR SHEETS.json [RUNS.json]

Starts LibreOffice headless with its own profile (set to always recalculate OOXML files
on load, so cached values are never used), loads BOOK, recalculates everything (then,
if OUT_DIR/edits.json exists, types its [[sheet, row, col, value], ...] into the cells
and recalculates what they change, as after a person's edit), and
writes for each sheet named in SHEETS.json the used area as float64 (OUT_DIR/<i>.bin,
NaN where not a number) plus OUT_DIR/<i>.json: shape, texts and error codes by cell.
With RUNS.json ({"runs": [[[sheet, row, col, value], ...], ...], "read": [[sheet, row,
col, n_rows, n_cols], ...]}, 0-based): for each run, types its values into the cells
(as a person would), recalculates, and writes OUT_DIR/run<i>.json: the read rectangles'
values, row by row.
Standard library only: this Python has no NumPy.
"""
import array
import json
import os
import subprocess
import sys
import time

try:
    import uno
    from com.sun.star.beans import PropertyValue
except ImportError:  # imported by a Python without LibreOffice's bridge, for RECALC_ALWAYS only
    uno = PropertyValue = None

RECALC_SETTING = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse">\
<value>%d</value></prop></item>
</oor:items>
"""
RECALC_ALWAYS = RECALC_SETTING % 0  # recalculate on load (for conversions that print values)
# load without computing: calculateAll() below computes once (with ALWAYS it computed twice,
# ~98 s more on the GPT-2 small book)
RECALC_NEVER = RECALC_SETTING % 1
FORMULA_ERROR = 4  # com.sun.star.sheet.FormulaResult.ERROR


def prop(name, value):
    p = PropertyValue()
    p.Name, p.Value = name, value
    return p


def start_office(profile, settings, **popen):
    """LibreOffice headless with its own profile (`settings`: its registrymodifications.xcu),
    listening on a pipe: (the process, its Desktop)."""
    os.makedirs(os.path.join(profile, "user"), exist_ok=True)
    with open(os.path.join(profile, "user", "registrymodifications.xcu"), "w") as f:
        f.write(settings)
    pipe = "sheetgpt_%d" % os.getpid()
    office = subprocess.Popen(["soffice", "-env:UserInstallation=" + uno.systemPathToFileUrl(profile),
                               "--headless", "--invisible", "--nologo", "--norestore", "--nodefault",
                               "--accept=pipe,name=%s;urp;" % pipe],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
    for _ in range(600):
        try:
            ctx = resolver.resolve("uno:pipe,name=%s;urp;StarOffice.ComponentContext" % pipe)
            break
        except Exception:
            if office.poll() is not None:
                raise SystemExit("LibreOffice exited while starting (code %s)" % office.returncode)
            time.sleep(0.1)
    else:
        office.kill()
        raise SystemExit("LibreOffice did not start within 60 s")
    return office, ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)


def stop_office(office, desktop, kill, wait_s):
    """Ask LibreOffice to quit; `kill` it if it has not within wait_s seconds."""
    try:
        desktop.terminate()
    except Exception:  # already gone, or the bridge broke with it
        pass
    try:
        office.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        kill()


def main():
    book, out_dir, profile, sheets_file = sys.argv[1:5]
    office, desktop = start_office(profile, RECALC_NEVER)
    try:
        doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(os.path.abspath(book)), "_blank", 0,
                                           (prop("Hidden", True), prop("ReadOnly", True)))
        if doc is None:
            raise SystemExit("LibreOffice could not open the workbook")
        doc.calculateAll()
        edits_file = os.path.join(out_dir, "edits.json")
        if os.path.exists(edits_file):  # typed in after the fresh open, then recalculated as a person sees it
            with open(edits_file) as f:
                type_in(doc, json.load(f))
            doc.calculate()
        with open(sheets_file) as f:
            names = json.load(f)
        for i, name in enumerate(names):
            dump(doc.Sheets.getByName(name), os.path.join(out_dir, str(i)))
        if len(sys.argv) > 5:
            with open(sys.argv[5]) as f:
                runs = json.load(f)
            for i, edits in enumerate(runs["runs"]):
                type_in(doc, edits)
                doc.calculateAll()
                with open(os.path.join(out_dir, "run%d.json" % i), "w") as f:
                    json.dump([read(doc.Sheets.getByName(s).getCellRangeByPosition(c, r, c + w - 1, r + h - 1))
                               for s, r, c, h, w in runs["read"]], f)
        doc.close(True)
    finally:
        stop_office(office, desktop, office.kill, 20)


def type_in(doc, edits):
    """[[sheet, row, col, value], ...] (0-based) typed into the cells."""
    for sheet, row, col, value in edits:
        cell = doc.Sheets.getByName(sheet).getCellByPosition(col, row)
        if isinstance(value, str):
            cell.setString(value)
        else:
            cell.setValue(value)


def read(cells):
    """A rectangle's values row by row: numbers, texts, or the error's text."""
    return [list(row) for row in cells.getDataArray()]


def dump(sheet, base):
    cursor = sheet.createCursor()
    cursor.gotoEndOfUsedArea(False)
    n_rows, n_cols = cursor.RangeAddress.EndRow + 1, cursor.RangeAddress.EndColumn + 1
    data = sheet.getCellRangeByPosition(0, 0, n_cols - 1, n_rows - 1).getDataArray()
    values = array.array("d")
    texts = {}
    nan = float("nan")
    for r, row in enumerate(data):
        for c, v in enumerate(row):
            if isinstance(v, float):
                values.append(v)
            else:
                values.append(nan)
                if v != "":
                    texts["%d,%d" % (r, c)] = v
    errors = {}
    ranges = sheet.getCellRangeByPosition(0, 0, n_cols - 1, n_rows - 1).queryFormulaCells(FORMULA_ERROR)
    for address in ranges.getRangeAddresses():
        for r in range(address.StartRow, address.EndRow + 1):
            for c in range(address.StartColumn, address.EndColumn + 1):
                errors["%d,%d" % (r, c)] = sheet.getCellByPosition(c, r).getString()
    with open(base + ".bin", "wb") as f:
        values.tofile(f)
    with open(base + ".json", "w") as f:
        json.dump({"shape": [n_rows, n_cols], "texts": texts, "errors": errors}, f)


if __name__ == "__main__":
    main()
