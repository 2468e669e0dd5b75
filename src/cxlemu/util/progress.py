"""Progress bars for operations that can exceed a second.

One API for every long operation (render of a large machine, create of a
large fabric, a workload run, a rack simulation)::

    with progress("rendering /sys", total=n) as bar:
        for ...:
            bar.advance()          # or bar.advance(k), bar.update(completed=x)

A bar is drawn (with rich, on stderr) only when stderr is a terminal and
``CXLEMU_PROGRESS`` is not ``0``; otherwise the object does nothing, so piped
output and tests stay clean.  ``CXLEMU_PROGRESS=1`` forces a bar (for demos
recorded through a pipe).  rich is imported only when a bar is drawn.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, TextIO


class _Null:
    def advance(self, n: float = 1) -> None:
        pass

    def update(self, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        pass


class _Bar:
    def __init__(self, prog, task):
        self._p, self._t = prog, task

    def advance(self, n: float = 1) -> None:
        self._p.advance(self._t, n)

    def update(self, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        kw = {}
        if completed is not None:
            kw["completed"] = completed
        if total is not None:
            kw["total"] = total
        if description is not None:
            kw["description"] = description
        self._p.update(self._t, **kw)


def enabled(stream: TextIO | None = None) -> bool:
    """Would a bar be drawn on ``stream`` (default: stderr)?"""
    env = os.environ.get("CXLEMU_PROGRESS", "")
    if env == "0":
        return False
    if env == "1":
        return True
    s = stream or sys.stderr
    try:
        return s.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def progress(description: str, total: float | None = None, stream: TextIO | None = None,
             transient: bool = True) -> Iterator[_Bar | _Null]:
    """A progress bar over ``total`` steps (None: indeterminate)."""
    if not enabled(stream):
        yield _Null()
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
    # CXLEMU_PROGRESS=1 draws the bar even through a pipe (rich would stay silent)
    forced = os.environ.get("CXLEMU_PROGRESS") == "1"
    console = Console(file=stream or sys.stderr, force_terminal=True if forced else None)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  TaskProgressColumn(), TimeRemainingColumn(), console=console,
                  transient=transient) as prog:
        yield _Bar(prog, prog.add_task(description, total=total))
