"""Pieces the cxl object commands share (cxl/memdev.c, port.c, bus.c):
the ``-b/-v/-S`` options of the memdev commands, the log levels a
``--debug``/``--verbose`` run sets, library calls turned into -errno
results, the "hosts N memdevs" refusal and the closing summary line."""

from __future__ import annotations

import errno
from typing import Callable

from cxlemu.tools.common.log import LOG_DEBUG, LOG_INFO, Log
from cxlemu.tools.common.parse_options import OPT_BOOLEAN, OPT_STRING
from cxlemu.tools.libcxl import CxlContext

__all__ = ["memdev_base_options", "set_debug", "rc_of", "refuse_active_memdevs", "finish"]


def memdev_base_options() -> list:
    """``BASE_OPTIONS()`` of cxl/memdev.c."""
    return [OPT_STRING("b", "bus", "bus", "bus name", "Limit operation to the specified bus"),
            OPT_BOOLEAN("v", "verbose", "verbose", "turn on debug"),
            OPT_BOOLEAN("S", "serial", "serial", "use serial numbers to id memdevs")]


def set_debug(lib: CxlContext, log: Log, debug: bool) -> None:
    """``--debug`` / ``--verbose``: libcxl and the command log at DEBUG;
    otherwise the command log at INFO (so its summary line prints)."""
    if debug:
        lib.set_log_priority(LOG_DEBUG)
        log.priority = LOG_DEBUG
    else:
        log.priority = LOG_INFO


def rc_of(call: Callable[[], object]) -> int:
    """0, or the -errno of the ``OSError`` a libcxl action raised."""
    try:
        call()
    except OSError as e:
        return -(e.errno or errno.EIO)
    return 0


def refuse_active_memdevs(log: Log, devname: str, active: int, list_option: str) -> int:
    """``action_disable()`` of port.c / bus.c without ``--force``: -EBUSY."""
    s = "s" if active > 1 else ""
    log.err("action_disable", f"{devname} hosts {active} memdev{s} which "
                              f"{'are' if active > 1 else 'is'} part of an active region")
    log.err("action_disable", f"See 'cxl list -M {list_option} {devname}' to see impacted device{s}")
    return -errno.EBUSY


def finish(count: int, log: Log, func: str, text: Callable[[int, str], str]) -> int:
    """The summary (``text(n, plural)``, plural only above 1) and the exit
    status: 1 when the result is an error (nothing succeeded)."""
    n = count if count >= 0 else 0
    log.info(func, text(n, "s" if count > 1 else ""))
    return 0 if count >= 0 else 1
