"""tracefs (/sys/kernel/tracing) and debugfs (/sys/kernel/debug) as VFS
directories over the kernel model (kernel/trace/tracing.py,
drivers/cxl/mem.c debugfs files).

The layout is what libtracefs and libtraceevent use (check with
``ls /sys/kernel/tracing`` on any Linux box): ``events/header_page``,
``events/header_event``, ``events/enable``, ``events/<system>/enable``,
``events/<system>/<event>/{enable,format,id,filter,trigger}``,
``tracing_on``, ``trace``, ``trace_pipe``, ``per_cpu/cpuN/trace_pipe_raw``,
``buffer_size_kb``, ``trace_clock``, ``set_event``, ``available_events``,
``saved_cmdlines``, and ``instances/`` where ``mkdir`` creates an instance
with the same files (minus ``instances``).

``trace_pipe`` and ``trace_pipe_raw`` are *stream* files: every read(2)
consumes what it returns (a FUSE server must open them non-seekable with
direct I/O and pass each read through); ``readable()`` says whether a read
would return data (for poll/epoll).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable

from cxlemu.kernel.base.device import KernelError, kstr, kstrtobool, kstrtoull
from cxlemu.kernel.trace import ring
from cxlemu.kernel.trace.tracing import TRACE_CLOCKS
from cxlemu.kernel.base.kernfs import FuncFile, StaticDir, VDir, VFile, VNode

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel
    from cxlemu.kernel.trace.tracing import Instance, Tracing

README = """tracing mini-HOWTO:

# echo 0 > tracing_on : quick way to disable tracing
# echo 1 > tracing_on : quick way to re-enable tracing

 Important files:
  trace\t\t\t- The static contents of the buffer
\t\t\t  To clear the buffer write into this file: echo > trace
  trace_pipe\t\t- A consuming read to see the contents of the buffer
  tracing_on\t\t- Enable or disable writing to the ring buffer
  buffer_size_kb\t- View and modify size of per cpu buffer
  trace_clock\t\t- Change the clock used to order events
  instances\t\t- Make sub-buffers with: mkdir instances/foo
\t\t\t  Remove sub-buffer with rmdir
  set_event\t\t- Enables events by name written into it
  events/\t\t- Directory containing all trace event subsystems:
      enable\t\t- Write 0/1 to enable/disable tracing of all events
"""


class StreamFile(VFile):
    """A consuming file: each read returns (and removes) what is there."""

    stream = True

    def __init__(self, read: Callable[[], bytes], readable: Callable[[], bool],
                 write: Callable[[bytes], None] | None = None):
        self._read, self.readable, self._write = read, readable, write
        self.mode = 0o444 | (0o200 if write else 0)

    def read(self) -> bytes:
        return self._read()

    def write(self, data: bytes) -> None:
        if self._write is None:
            raise KernelError(errno.EACCES)
        self._write(data)


class InstancesDir(VDir):
    """tracefs ``instances/``: mkdir creates a trace instance, rmdir removes it."""

    def __init__(self, tracing: "Tracing"):
        self.tracing = tracing

    def entries(self) -> dict[str, VNode]:
        return {n: instance_dir(self.tracing, inst) for n, inst in self.tracing.instances.items()}

    def lookup(self, name: str) -> VNode | None:
        inst = self.tracing.instances.get(name)
        return instance_dir(self.tracing, inst) if inst is not None else None

    def mkdir(self, name: str) -> None:
        self.tracing.mkdir(name)

    def rmdir(self, name: str) -> None:
        self.tracing.rmdir(name)


def _bool_file(get: Callable[[], bool], put: Callable[[bool], None]) -> FuncFile:
    def store(b: bytes) -> None:
        v = kstrtoull(b, 10)
        put(bool(v))
    return FuncFile(lambda: "1\n" if get() else "0\n", store, 0o644)


def _enable_file(tr: "Tracing", inst: "Instance", system: str | None, name: str | None) -> FuncFile:
    def show() -> str:
        if name is not None:
            return "1\n" if tr.event_enabled(inst, system or "", name) else "0\n"
        return tr.enable_state(inst, system) + "\n"

    def store(b: bytes) -> None:
        s = kstr(b).strip()
        if s not in ("0", "1"):
            raise KernelError(errno.EINVAL)
        tr.set_event(inst, system, name, s == "1")
    return FuncFile(show, store, 0o644)


def _events_dir(tr: "Tracing", inst: "Instance") -> StaticDir:
    reg = tr.registry()

    def event_dir(ev) -> StaticDir:
        return StaticDir(lambda: {
            "enable": _enable_file(tr, inst, ev.system, ev.name),
            "format": FuncFile(ev.format_text),
            "id": FuncFile(lambda: f"{ev.id}\n"),
            "filter": FuncFile(lambda: "none\n", lambda b: None, 0o644),
            "trigger": FuncFile(lambda: "# Available triggers:\n# traceon traceoff snapshot stacktrace "
                                        "enable_event disable_event hist\n", lambda b: None, 0o644),
        })

    def system_dir(system: str) -> StaticDir:
        def entries() -> dict[str, VNode]:
            out: dict[str, VNode] = {e.name: event_dir(e) for e in reg.events(system)}
            out["enable"] = _enable_file(tr, inst, system, None)
            out["filter"] = FuncFile(lambda: "none\n", lambda b: None, 0o644)
            return out
        return StaticDir(entries)

    def entries() -> dict[str, VNode]:
        out: dict[str, VNode] = {s: system_dir(s) for s in reg.systems()}
        out["enable"] = _enable_file(tr, inst, None, None)
        out["header_page"] = FuncFile(lambda: ring.HEADER_PAGE)
        out["header_event"] = FuncFile(lambda: ring.HEADER_EVENT)
        return out
    return StaticDir(entries)


def _per_cpu(tr: "Tracing", inst: "Instance") -> StaticDir:
    def cpu_dir(cpu: int) -> StaticDir:
        buf = inst.buffers[cpu]
        return StaticDir(lambda: {
            "trace_pipe_raw": StreamFile(lambda: tr.read_raw(inst, cpu), lambda: bool(buf.records)),
            "trace_pipe": StreamFile(lambda: tr.read_pipe(inst, cpu).encode(), lambda: bool(buf.records)),
            "trace": FuncFile(lambda: tr.read_trace(inst), lambda b: tr.clear(inst, cpu), 0o644),
            "buffer_size_kb": FuncFile(lambda: f"{inst.buffer_size_kb}\n"),
            "stats": FuncFile(lambda: (f"entries: {len(buf.records)}\noverrun: {buf.overrun}\ncommit overrun: 0\n"
                                       f"bytes: {buf.bytes_used}\noldest event ts: 0.000000\n"
                                       f"now ts: {tr.kernel.clock_ns / 1e9:.6f}\ndropped events: 0\n"
                                       f"read events: {buf.entries_written - len(buf.records) - buf.overrun}\n")),
        })
    return StaticDir(lambda: {f"cpu{i}": cpu_dir(i) for i in range(tr.ncpus)})


def instance_dir(tr: "Tracing", inst: "Instance", top: bool = False) -> StaticDir:
    def set_buffer_kb(b: bytes) -> None:
        v = kstrtoull(b, 10)
        if not v:
            raise KernelError(errno.EINVAL)
        inst.buffer_size_kb = v
        tr.kernel.dirty = True

    def set_clock(b: bytes) -> None:
        s = kstr(b).strip()
        if s not in TRACE_CLOCKS:
            raise KernelError(errno.EINVAL)
        inst.trace_clock = s

    def clock_show() -> str:
        return " ".join(f"[{c}]" if c == inst.trace_clock else c for c in TRACE_CLOCKS) + "\n"

    def set_on(v: bool) -> None:
        inst.tracing_on = v
        tr.kernel.dirty = True

    def entries() -> dict[str, VNode]:
        out: dict[str, VNode] = {
            "tracing_on": _bool_file(lambda: inst.tracing_on, set_on),
            "trace": FuncFile(lambda: tr.read_trace(inst), lambda b: tr.clear(inst), 0o644),
            "trace_pipe": StreamFile(lambda: tr.read_pipe(inst).encode(), inst.has_data),
            "per_cpu": _per_cpu(tr, inst),
            "events": _events_dir(tr, inst),
            "buffer_size_kb": FuncFile(lambda: f"{inst.buffer_size_kb}\n", set_buffer_kb, 0o644),
            "buffer_total_size_kb": FuncFile(lambda: f"{inst.buffer_size_kb * tr.ncpus}\n"),
            "trace_clock": FuncFile(clock_show, set_clock, 0o644),
            "set_event": FuncFile(lambda: tr.set_event_list(inst),
                                  lambda b: tr.write_set_event(inst, kstr(b), append=False), 0o644),
            "available_tracers": FuncFile(lambda: "nop\n"),
            "current_tracer": FuncFile(lambda: "nop\n", lambda b: _nop_tracer(b), 0o644),
            "trace_marker": FuncFile(None, lambda b: None, 0o220),
            "options": StaticDir(dict),
            "free_buffer": FuncFile(None, lambda b: None, 0o200),
            "set_event_pid": FuncFile(lambda: "", lambda b: None, 0o644),
        }
        if top:
            out.update({
                "README": FuncFile(lambda: README),
                "available_events": FuncFile(lambda: "".join(
                    f"{e.system}:{e.name}\n" for s in tr.systems() for e in tr.registry().events(s))),
                "saved_cmdlines": FuncFile(lambda: "".join(f"{p} {c}\n" for p, c in tr.cmdlines.items())),
                "saved_cmdlines_size": FuncFile(lambda: "128\n"),
                "printk_formats": FuncFile(lambda: ""),
                "instances": InstancesDir(tr),
            })
        return out
    return StaticDir(entries)


def _nop_tracer(b: bytes) -> None:
    if kstr(b).strip() not in ("nop", ""):
        raise KernelError(errno.EINVAL)


def tracefs_dir(kernel: "Kernel") -> StaticDir:
    return instance_dir(kernel.tracing, kernel.tracing.top, top=True)


def _tree(spec: dict) -> StaticDir:
    """A directory from nested dicts whose leaves are (show, store, mode)."""
    def entries() -> dict[str, VNode]:
        out: dict[str, VNode] = {}
        for name, v in spec.items():
            out[name] = _tree(v) if isinstance(v, dict) else FuncFile(v[0], v[1], v[2])
        return out
    return StaticDir(entries)


def debugfs_dir(kernel: "Kernel") -> StaticDir:
    return StaticDir(lambda: {n: _tree(v) for n, v in kernel.debugfs_tree().items()})


def kstrtobool_file(get: Callable[[], bool], put: Callable[[bool], None]) -> FuncFile:
    return FuncFile(lambda: "Y\n" if get() else "N\n", lambda b: put(kstrtobool(b)), 0o600)
