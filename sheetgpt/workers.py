"""Set-up for forked worker processes, shared by the writer and the engine's reader.

A leaf module (standard library only), so that the engine can use it without importing
anything of the writer's.
"""
from __future__ import annotations

import ctypes
import os
import signal


def worker_init() -> None:
    """In a forked worker: die with the parent (even on SIGKILL) and leave Ctrl-C to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's (perhaps deferring) handler
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: workers still end with the pool
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
