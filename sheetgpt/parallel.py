"""Format weight sheets in worker processes while the main process compresses and writes.

Workers are forked after the weights are in memory, so they share them without copying
or pickling; only the formatted XML travels back, in order, a bounded number of chunks
ahead of the writer.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Iterator

import numpy as np

from .workers import worker_init
from .xlsx import float32_rows

CHUNK_CELLS = 1 << 18  # ~6 MB of XML per task
_ARRAYS: dict[str, np.ndarray] = {}  # set in the parent before forking


def _format(name: str, r0: int, r1: int, first_row: int, label_style: int, cell_refs: bool) -> bytes:
    return float32_rows(_ARRAYS[name][r0:r1], first_row + r0, r0, label_style, cell_refs)


class WeightFormatter:
    """Ordered stream of <row> XML chunks for 2-D float32 arrays, made by `workers` processes."""

    def __init__(self, arrays: dict[str, np.ndarray], first_row: int, label_style: int, workers: int,
                 cell_refs: bool = True):
        self.arrays, self.first_row, self.label_style, self.cell_refs = arrays, first_row, label_style, cell_refs
        self.tasks = [(name, r0, min(r0 + max(1, CHUNK_CELLS // max(1, a.shape[1])), a.shape[0]))
                      for name, a in arrays.items()
                      for r0 in range(0, a.shape[0], max(1, CHUNK_CELLS // max(1, a.shape[1])))]
        self.pool: Executor | None = None
        if workers > 0:
            _ARRAYS.clear()
            _ARRAYS.update(arrays)
            with _signals_held():
                self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                                initializer=worker_init)
        self._pending: deque[Future] = deque()
        self._next = 0
        self._window = 2 * workers + 2

    def _fill(self) -> None:
        while self.pool and self._next < len(self.tasks) and len(self._pending) < self._window:
            name, r0, r1 = self.tasks[self._next]
            with _signals_held():  # a submit may fork a worker: no interrupt halfway through
                self._pending.append(self.pool.submit(_format, name, r0, r1, self.first_row, self.label_style,
                                                      self.cell_refs))
            self._next += 1

    def start(self) -> None:
        """Begin formatting ahead (call before writing other sheets, to overlap the work)."""
        self._fill()

    def chunks(self, name: str) -> Iterator[tuple[bytes, int]]:
        """XML chunks of one array, in order, with the number of cells each holds."""
        for task_name, r0, r1 in [t for t in self.tasks if t[0] == name]:
            cells = (r1 - r0) * self.arrays[name].shape[1]
            if self.pool is None:
                yield float32_rows(self.arrays[name][r0:r1], self.first_row + r0, r0, self.label_style,
                                   self.cell_refs), cells
                continue
            self._fill()
            yield self._pending.popleft().result(), cells
            self._fill()

    def close(self) -> None:
        if self.pool:
            for f in self._pending:
                f.cancel()
            with _signals_held():  # a second Ctrl-C must not leave workers waiting for a sentinel
                self.pool.shutdown(wait=True, cancel_futures=True)
            _ARRAYS.clear()


@contextmanager
def _signals_held():
    """Hold Ctrl-C and SIGTERM back for a moment: an interrupt inside a fork or the pool's
    shutdown leaves a worker the pool does not know, which then waits forever for its exit
    sentinel (and the process with it). Blocking the signal is not enough, as another
    thread may take it; the handlers themselves wait. Held signals arrive when this ends."""
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])


def default_workers(n_cells: int) -> int:
    """Worker processes worth starting: none for small books, else one per core."""
    if n_cells < 2_000_000:  # the bundled model (3.4M) builds 20% faster with two
        return 0
    return max(1, min(2, os.cpu_count() or 1))
