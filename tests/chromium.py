"""Headless Chromium for the lesson tests and the README screenshots (Debian's `chromium`)."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
TIMEOUT = 90  # seconds; a cold start on a busy 2-core machine takes a few


def _run(page: Path, *args: str) -> str:
    # a fresh profile each time: nothing cached from an earlier run can make a broken page look fine
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        out = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                             capture_output=True, text=True, timeout=TIMEOUT, check=True)
    return out.stdout


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 900) -> Path:
    _run(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    return png


def dump_dom(page: Path) -> str:
    """The DOM after load (scripts run, images decoded), as HTML."""
    return _run(page, "--virtual-time-budget=5000", "--dump-dom")
