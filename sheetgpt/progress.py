"""Progress on stderr for long work (a tqdm bar when stderr is a terminal)."""
from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, desc: str, enabled: bool | None = None, unit: str = "cell"):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr,
                         disable=not enabled, leave=False, dynamic_ncols=True)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
