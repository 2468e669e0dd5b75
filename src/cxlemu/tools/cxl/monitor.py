"""``cxl monitor`` (cxl/monitor.c and util/event_trace.c, ndctl v81).

``cxl monitor [-l/--log <file> | standard] [--daemon] [-u/--human] [-v/--verbose]``

* the log is "./standard" by default (``log_standard``: INFO to stdout,
  everything else -- including the events, logged as NOTICE -- to stderr),
  ``/var/log/cxl-monitor.log`` with ``--daemon``, or a file opened for
  append (``log_file``: a ``[sec.nsec] [pid]`` prefix on every line but the
  events); ``--daemon`` with a relative path or "standard":
  "relative path or 'standard' are not compatible with daemon mode" (-EINVAL);
* it creates (or reuses) the tracefs instance "cxl_monitor", opens its
  ``trace_pipe``, enables every event of the "cxl" system, turns tracing on,
  and each time ``trace_pipe`` is readable parses all buffered raw events and
  prints each as one JSON object (``-u``: pretty), in timestamp order:
  ``system``, ``event``, ``timestamp`` and every field of the event;
* the instance is never removed, so events keep being recorded while no
  monitor runs and the next monitor prints them (as on Linux).

Waiting: on a real /sys (or a running machine) the monitor waits on
``trace_pipe`` until interrupted.  A machine opened by this very command
cannot receive new events while the monitor holds it, so there the monitor
prints what is buffered and returns (docs/fidelity.md).
"""

from __future__ import annotations

import errno

from cxlemu.tools.common import tracefs as T
from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.jsonc import JSON_C_TO_STRING_PLAIN, JSON_C_TO_STRING_PRETTY, dumps
from cxlemu.tools.common.log import LOG_DEBUG, LOG_INFO, Log, file_sink, standard_sink
from cxlemu.tools.common.parse_options import (OPT_BOOLEAN, OPT_END, OPT_FILENAME, error_text, parse_options,
                                               usage_with_options)

__all__ = ["cmd_monitor", "OPTIONS", "DEFAULT_LOG"]

DEFAULT_LOG = "/var/log/cxl-monitor.log"
USAGE = "cxl monitor [<options>]"
OPTIONS = [
    OPT_FILENAME("l", "log", "log", "<file> | standard", "where to output the monitor's notification"),
    OPT_BOOLEAN(None, "daemon", "daemon", "run cxl monitor as a daemon"),
    OPT_BOOLEAN("u", "human", "human", "use human friendly output formats"),
    OPT_BOOLEAN("v", "verbose", "verbose", "emit extra debug messages to log"),
    OPT_END(),
]


def _events_to_lines(tfs: T.Tracefs, inst: T.Instance, pretty: bool) -> list[str]:
    out: list[str] = []

    def one(ev: T.EventFormat, rec: T.Record) -> None:
        if ev.system != "cxl":
            return
        flags = JSON_C_TO_STRING_PRETTY if pretty else JSON_C_TO_STRING_PLAIN
        out.append(dumps(T.record_to_json(ev, rec), flags))
    tfs.iterate_raw_events(inst, one)
    return out


def monitor_event(ctx: CommandContext, mon: Log, pretty: bool, max_rounds: int | None = None) -> int:
    backend = ctx.backend
    tfs = T.Tracefs.find(backend)
    try:
        if tfs is None:
            raise OSError(errno.ENOENT, "no tracefs")
        inst = tfs.instance_create("cxl_monitor")
    except OSError as e:
        rc = -(e.errno or errno.ENOMEM)
        mon.err("monitor_event", f"tracefs_instance_create( failed: {rc}")
        return rc
    pipe = inst.file("trace_pipe")
    if not backend.exists(pipe):
        rc = -errno.ENOENT
        mon.err("monitor_event", f"tracefs_instance_file_open() err: {rc}")
        return rc
    try:
        tfs.event_enable(inst, "cxl", None)
        if not tfs.trace_is_on(inst):
            tfs.trace_on(inst, True)
    except OSError as e:
        rc = -(e.errno or errno.EINVAL)
        mon.err("monitor_event", f"trace_event_enable() failed: {rc}")
        return rc
    can_wait = bool(getattr(backend, "can_wait", False))
    rounds = 0
    try:
        while True:
            ready = backend.poll(pipe, None if can_wait else 0)
            if ready:
                for line in _events_to_lines(tfs, inst, pretty):
                    mon.notice("monitor_event", line + "\n", raw=True)
            rounds += 1
            if not can_wait or (max_rounds is not None and rounds >= max_rounds):
                return 0
    except KeyboardInterrupt:
        return 130


def cmd_monitor(argv: list[str], ctx: CommandContext) -> int:
    parsed = parse_options(argv, OPTIONS, [USAGE], prefix="./", stderr=ctx.stderr)
    o, args = parsed.values, list(parsed.args)
    if args:
        usage_with_options([USAGE], OPTIONS, "".join(error_text(f'unknown parameter "{a}"\n') for a in args))
    log = o.get("log")
    if o.get("daemon") and log and log.startswith("./"):
        ctx.stderr.write(error_text("relative path or 'standard' are not compatible with daemon mode\n"))
        return -errno.EINVAL
    mon = Log.init("cxl/monitor", "CXL_MONITOR_LOG", ctx.env, stream=ctx.stderr, out_stream=ctx.stdout)
    if not log:
        log = DEFAULT_LOG if o.get("daemon") else "./standard"
    mon.priority = LOG_DEBUG if o.get("verbose") else LOG_INFO
    fh = None
    if log == "./standard":
        mon.sink = standard_sink
    else:
        try:
            fh = open(log, "a+")
        except OSError as e:
            ctx.stderr.write(error_text(f"open {log} failed: {-e.errno}\n"))
            return -e.errno
        mon.stream = fh
        mon.sink = file_sink
    try:
        if o.get("daemon"):
            mon.info("cmd_monitor", "cxl monitor daemon started.")
        return monitor_event(ctx, mon, bool(o.get("human")))
    finally:
        if fh is not None:
            fh.close()

