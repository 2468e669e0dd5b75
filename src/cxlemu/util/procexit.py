"""Ending a process that was started for one short command, without
CPython's teardown.

At a normal exit ``Py_FinalizeEx`` joins the non-daemon threads, runs the
``atexit`` handlers, flushes ``sys.stdout`` and ``sys.stderr`` and then
clears every module and frees every object one by one.  For a command that
loaded a machine model (thousands of objects, ~90 modules) that last part is
about 15 ms of a ~120 ms ``cxlemu exec b -- cxl list`` with the machine
stopped (issue 13), and nothing outside the process can observe it: the
kernel reclaims the memory at ``_exit``.  :func:`exit_now` does the
observable parts and skips the rest.

Only for a process whose command has finished and closed (or flushed) every
file it wrote other than stdout and stderr: a buffered Python file object
left open is not flushed.  The bundled tools close what they open (label
files, the monitor log) and the machine store saves its state atomically
before the command returns (machine/store.py).
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

#: CPython's exit status when flushing stdout fails at exit (Py_FinalizeEx)
FLUSH_FAILED = 120


def _join_threads() -> None:
    threading = sys.modules.get("threading")
    if threading is None:
        return
    main = threading.main_thread()
    for t in threading.enumerate():
        if t is not main and not t.daemon:
            t.join()


def _run_atexit() -> None:
    import atexit
    run = getattr(atexit, "_run_exitfuncs", None)
    if run is not None:
        run()


def flushed_status(status: int) -> int:
    """Flush stdout and stderr; ``status``, or FLUSH_FAILED when stdout could
    not be written (a closed pipe, a full disk) and the command had succeeded,
    as CPython reports it."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError) as e:
            if stream is sys.stdout:
                _report_unraisable(stream, e)
                if status == 0:
                    status = FLUSH_FAILED
    return status


def _report_unraisable(stream: object, e: BaseException) -> None:
    """What CPython prints for a failed flush at exit."""
    try:
        sys.stderr.write(f"Exception ignored in: {stream!r}\n{type(e).__name__}: {e}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def exit_now(status: int) -> NoReturn:
    """Leave the process with ``status`` (0..255) after what a normal exit
    does that anyone can see: non-daemon threads joined, atexit handlers run,
    stdout and stderr flushed.  Never returns."""
    _join_threads()
    _run_atexit()
    os._exit(flushed_status(status) & 0xFF)
