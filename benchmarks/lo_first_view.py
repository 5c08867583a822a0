"""Run by the system Python that has LibreOffice's `uno` module:

    /usr/bin/python3 benchmarks/lo_first_view.py BOOK.xlsx PROFILE_DIR

How long a learner waits for a fresh book's first view: LibreOffice opens it (its default
settings, except that nothing is forced to recalculate on load, as in lo_latency.py), then
the Guide's prediction is read (B8, C8 and C11), which computes what those cells need, as
the screen does when it shows them. Prints one JSON line: load, show_prediction,
first_view (seconds) and the cells shown. Standard library only.
"""
import json
import os
import sys
import time

import uno

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sheetgpt", "engines"))
from lo_uno import RECALC_NEVER, prop, start_office, stop_office  # noqa: E402


def main():
    book, profile = sys.argv[1:3]
    office, desktop = start_office(profile, RECALC_NEVER)
    try:
        t0 = time.time()
        doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(os.path.abspath(book)), "_blank", 0,
                                           (prop("Hidden", True),))
        t1 = time.time()
        guide = doc.Sheets.getByName("Guide")
        shown = [guide.getCellByPosition(c, r).getString() for r, c in ((7, 1), (7, 2), (10, 2))]
        t2 = time.time()
        print(json.dumps({"book": book, "load": round(t1 - t0, 1), "show_prediction": round(t2 - t1, 1),
                          "first_view": round(t2 - t0, 1), "shown": shown}))
        doc.close(True)
    finally:
        stop_office(office, desktop, office.kill, 30)


if __name__ == "__main__":
    main()
