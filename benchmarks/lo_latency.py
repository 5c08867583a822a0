"""Run by the system Python that has LibreOffice's `uno` module (bench_libreoffice.py starts it).

    /usr/bin/python3 lo_latency.py BOOK.xlsx OUT.json PROMPT [TIMEOUT_S]

Starts LibreOffice headless as the libreoffice engine does (lo_uno.start_office), with its
own profile and its default calculation settings (threaded group calculation on; only
recalculation on load is set to never, so that the full recalculation is timed on its own), then times, as a learner meets them:
- load: opening the file;
- recalc: calculateAll(), every formula once (what a fresh open computes);
- prompt: typing PROMPT into Guide!B5, then calculate() (what automatic recalculation
  does after an edit), both timed, and the prediction read back (Guide!B8);
- head: a head switch (controls!B3, layer 0 head 0) set to 0, then calculate().
Wall seconds per phase and soffice.bin's peak resident memory (VmHWM) go to OUT.json; a
phase past TIMEOUT_S stops the run and is recorded as not finished, one during which
LibreOffice dies as "error". Standard library only.
"""
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import uno

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sheetgpt", "engines"))
from lo_uno import RECALC_NEVER, prop, start_office, stop_office  # noqa: E402  (the engine's own way to start it)


def soffice_bin(root_pid):
    """soffice.bin: the root process itself or one of its descendants."""
    for _ in range(600):
        parents = {}
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/stat" % entry) as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), stat.split("(", 1)[1].split(")")[0])
        for pid, (_, comm) in parents.items():
            p = pid
            while comm == "soffice.bin" and p > 1:
                if p == root_pid:
                    return pid
                p = parents.get(p, (1, ""))[0]
        time.sleep(0.1)
    raise SystemExit("soffice.bin did not start")


def peak_gib(pid):
    with open("/proc/%d/status" % pid) as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1048576.0


def main():
    book, out_json, prompt = sys.argv[1:4]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 1800.0
    profile = tempfile.mkdtemp(prefix="sheetgpt-lo-bench-")
    office, desktop = start_office(profile, RECALC_NEVER, start_new_session=True)
    result = {"book": book, "phases": {}, "finished": False}

    def save():
        with open(out_json, "w") as f:
            json.dump(result, f)

    phase_deadline = [time.time() + timeout]

    def watchdog():
        while office.poll() is None:
            if time.time() > phase_deadline[0]:
                save()
                os.killpg(office.pid, 9)
                os._exit(3)
            time.sleep(1)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        pid = soffice_bin(office.pid)

        def timed(name, fn):
            phase_deadline[0] = time.time() + timeout
            result["phases"][name] = None  # started, not finished
            t0 = time.time()
            value = fn()
            result["phases"][name] = round(time.time() - t0, 2)
            result["peak_gib"] = round(peak_gib(pid), 2)
            save()
            return value

        url = uno.systemPathToFileUrl(os.path.abspath(book))
        doc = timed("load", lambda: desktop.loadComponentFromURL(url, "_blank", 0, (prop("Hidden", True),)))
        timed("recalc", doc.calculateAll)
        guide = doc.Sheets.getByName("Guide")
        result["prediction"] = guide.getCellByPosition(1, 7).getString()
        timed("prompt_type", lambda: guide.getCellByPosition(1, 4).setString(prompt))
        timed("prompt_recalc", doc.calculate)
        result["prediction_after_prompt"] = guide.getCellByPosition(1, 7).getString()
        switch = doc.Sheets.getByName("controls").getCellByPosition(1, 2)
        timed("head_set", lambda: switch.setValue(0))
        timed("head_recalc", doc.calculate)
        result["finished"] = True
        doc.close(True)
    except Exception as e:  # LibreOffice died under a phase: record it, do not hide it
        result["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        save()
        stop_office(office, desktop, lambda: os.killpg(office.pid, 9), 60)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
