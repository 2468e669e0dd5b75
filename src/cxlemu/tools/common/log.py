"""ndctl-style logging (util/log.[ch]).

A log context has an *owner* ("cxl region", "libcxl", ...) and a syslog
priority threshold; a message of priority ``p`` is emitted when
``threshold >= p``.  The default sink writes ``"<owner>: <func>: <msg>"``
to stderr, where ``func`` is the C function name of the caller (part of the
observable contract, e.g. ``cxl region: cmd_create_region: created 1 region``).

Thresholds used by the real tools (v81, identical in v76.1):

==================  =================  ==============  ======================
owner               env override       initial         after option parsing
==================  =================  ==============  ======================
libcxl              CXL_LOG            LOG_ERR         DEBUG w/ --debug or -v
libdaxctl           DAXCTL_LOG         LOG_ERR         DEBUG w/ -v (device cmds)
libndctl            NDCTL_LOG          LOG_ERR         DEBUG w/ --debug or -v
"cxl list"          CXL_LIST_LOG       LOG_ERR         DEBUG with --debug
"cxl region"        CXL_REGION_LOG     LOG_ERR         INFO, DEBUG w/ --debug
"cxl memdev"        CXL_MEMDEV_LOG     LOG_ERR         INFO, DEBUG w/ -v
"cxl port"          CXL_PORT_LOG       LOG_ERR         INFO, DEBUG w/ --debug
"cxl bus"           CXL_PORT_LOG [sic] LOG_ERR         INFO, DEBUG w/ --debug
"cxl/monitor"       CXL_MONITOR_LOG    LOG_ERR         INFO, DEBUG w/ -v
"ndctl/monitor"     NDCTL_MONITOR_LOG  LOG_ERR         INFO, DEBUG w/ -v
==================  =================  ==============  ======================

This is why region/memdev/port/bus commands always print their
``info``-level summary ("created 1 region", "disabled 2 mem devices"):
they set INFO unconditionally after parsing options, which also overrides
any environment value.  ``cxl list`` keeps the environment value.

The environment value is parsed as ``log_priority()`` does: a number (that
may be followed by white space), or a word starting with "err", "info",
"debug" or "notice"; anything else means 0 (emergencies only).  There is
no "warn" word in ndctl; :meth:`Log.warn` exists for completeness.

Debug messages are only compiled into ndctl when built with
``-Ddebug=enabled``; the Debian binaries are (their ``cxl list`` shows
``--debug``), so :meth:`Log.dbg` emits at LOG_DEBUG.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import field
from typing import Callable, Mapping, TextIO

from cxlemu.util.lazydc import dataclass

__all__ = [
    "LOG_EMERG", "LOG_ALERT", "LOG_CRIT", "LOG_ERR", "LOG_WARNING",
    "LOG_NOTICE", "LOG_INFO", "LOG_DEBUG", "log_priority", "Log",
    "stderr_sink", "standard_sink", "file_sink",
]

LOG_EMERG = 0
LOG_ALERT = 1
LOG_CRIT = 2
LOG_ERR = 3
LOG_WARNING = 4
LOG_NOTICE = 5
LOG_INFO = 6
LOG_DEBUG = 7

_C_SPACE = " \t\n\v\f\r"


def log_priority(text: str) -> int:
    """util/log.c ``log_priority()``: parse an environment value."""
    # strtol(base 10): leading blanks, a sign, digits
    body = text.lstrip(_C_SPACE)
    i = 1 if body[:1] in ("+", "-") else 0
    j = i
    while j < len(body) and body[j].isascii() and body[j].isdigit():
        j += 1
    if j > i:
        value = int(body[:j])
        rest = body[j:]
    else:
        value, rest = 0, text  # no digits: endptr is the start
    if rest == "" or rest[0] in _C_SPACE:
        return max(-(1 << 63), min((1 << 63) - 1, value))
    for word, prio in (("err", LOG_ERR), ("info", LOG_INFO),
                       ("debug", LOG_DEBUG), ("notice", LOG_NOTICE)):
        if text.startswith(word):
            return prio
    return 0


Sink = Callable[["Log", int, str, str], None]


def stderr_sink(log: "Log", priority: int, func: str, text: str) -> None:
    """Default ``log_stderr``: ``"<owner>: <func>: <text>"`` on stderr."""
    log.stream.write(f"{log.owner}: {func}: {text}")


def standard_sink(log: "Log", priority: int, func: str, text: str) -> None:
    """``log_standard`` (monitor's "standard" log): INFO to stdout, the
    rest to stderr, no prefix."""
    (log.out_stream if priority == LOG_INFO else log.stream).write(text)


def file_sink(log: "Log", priority: int, func: str, text: str) -> None:
    """``log_file``: ``"[%10ld.%09ld] [%d] "`` prefix except for NOTICE."""
    if priority != LOG_NOTICE:
        ns = log.clock_ns()
        log.stream.write(f"[{ns // 10**9:10d}.{ns % 10**9:09d}] [{log.pid}] ")
    log.stream.write(text)
    log.stream.flush()


@dataclass
class Log:
    """A ``struct log_ctx``.

    Messages are written as given plus a newline if they do not already
    end with one (ndctl's format strings carry their own ``\\n``); pass
    ``raw=True`` to write the text exactly (for the few C messages that
    lack the newline).
    """

    owner: str
    priority: int = LOG_ERR
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    sink: Sink = stderr_sink
    out_stream: TextIO = field(default_factory=lambda: sys.stdout)
    pid: int = field(default_factory=os.getpid)
    clock_ns: Callable[[], int] = time.time_ns

    @classmethod
    def init(cls, owner: str, env_var: str | None, env: Mapping[str, str] | None,
             stream: TextIO | None = None, **kw) -> "Log":
        """``log_init(ctx, owner, env_var)``: LOG_ERR unless ``env`` sets it."""
        prio = LOG_ERR
        if env is not None and env_var and env_var in env:
            prio = log_priority(env[env_var])
        if stream is not None:
            kw["stream"] = stream
        return cls(owner, prio, **kw)

    def enabled(self, priority: int) -> bool:
        return self.priority >= priority

    def log(self, priority: int, func: str, msg: str, raw: bool = False) -> None:
        if self.priority < priority:
            return
        if not raw and not msg.endswith("\n"):
            msg += "\n"
        self.sink(self, priority, func, msg)

    def err(self, func: str, msg: str, raw: bool = False) -> None:
        self.log(LOG_ERR, func, msg, raw)

    def warn(self, func: str, msg: str, raw: bool = False) -> None:
        self.log(LOG_WARNING, func, msg, raw)

    def notice(self, func: str, msg: str, raw: bool = False) -> None:
        self.log(LOG_NOTICE, func, msg, raw)

    def info(self, func: str, msg: str, raw: bool = False) -> None:
        self.log(LOG_INFO, func, msg, raw)

    def dbg(self, func: str, msg: str, raw: bool = False) -> None:
        self.log(LOG_DEBUG, func, msg, raw)

    debug = dbg
