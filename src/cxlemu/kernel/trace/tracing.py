"""The tracing subsystem behind tracefs (kernel/trace/trace.c,
trace_events.c): trace instances, per-event enable switches, per-CPU ring
buffers and the ``trace`` / ``trace_pipe`` / ``trace_pipe_raw`` readers.

* The top-level instance always exists; ``mkdir instances/NAME`` creates
  another one with its own buffers and switches (all events off,
  ``tracing_on`` 1), ``rmdir`` removes it.  Instances are kernel memory:
  they survive between commands but not a reboot.
* An event is recorded into every instance that has it enabled while its
  ``tracing_on`` is 1, into the buffer of the CPU the task runs on, stamped
  with the trace clock (``local``: ns since boot, the kernel's clock_ns)
  and the task's pid.
* A buffer holds ``buffer_size_kb`` of events; when full the oldest are
  overwritten and counted as lost (overwrite mode, the default).
* ``trace`` shows what is buffered without consuming it; ``trace_pipe`` and
  ``trace_pipe_raw`` consume what they return; writing to ``trace`` (an
  ``O_TRUNC`` open) clears the buffers.
"""

from __future__ import annotations

import errno
from dataclasses import field
from typing import TYPE_CHECKING, Mapping

from cxlemu.kernel.base.device import KernelError
from cxlemu.kernel.trace import ring
from cxlemu.util.lazy import lazy_module
from cxlemu.util.lazydc import dataclass

catalog = lazy_module("cxlemu.kernel.trace.catalog")   # the event catalogue: when tracing is used

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel

DEFAULT_BUFFER_KB = 1408
TRACE_CLOCKS = ("local", "global", "counter", "uptime", "perf", "mono", "mono_raw", "boot", "tai", "x86-tsc")


@dataclass
class CpuBuffer:
    """One per-CPU ring buffer of a tracing instance."""
    records: list[tuple[int, bytes, int]] = field(default_factory=list)   # (ts, payload, pid)
    bytes_used: int = 0
    entries_written: int = 0
    overrun: int = 0
    missed: bool = False        # events were lost since the last raw read

    def add(self, ts: int, payload: bytes, pid: int, limit: int) -> None:
        self.records.append((ts, payload, pid))
        self.bytes_used += len(payload) + 8
        self.entries_written += 1
        while self.bytes_used > limit and len(self.records) > 1:
            _, p, _ = self.records.pop(0)
            self.bytes_used -= len(p) + 8
            self.overrun += 1
            self.missed = True

    def consume(self, n: int) -> list[tuple[int, bytes, int]]:
        out, self.records = self.records[:n], self.records[n:]
        self.bytes_used -= sum(len(p) + 8 for _, p, _ in out)
        return out

    def clear(self) -> None:
        self.records.clear()
        self.bytes_used = 0


@dataclass
class Instance:
    """A tracefs instance (``/sys/kernel/tracing/instances/NAME``): events and buffers."""
    name: str
    ncpus: int
    tracing_on: bool = True
    enabled: set[tuple[str, str]] = field(default_factory=set)
    buffer_size_kb: int = DEFAULT_BUFFER_KB
    trace_clock: str = "local"
    buffers: list[CpuBuffer] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.buffers:
            self.buffers = [CpuBuffer() for _ in range(self.ncpus)]

    def has_data(self) -> bool:
        return any(b.records for b in self.buffers)


class Tracing:
    def __init__(self, kernel: "Kernel", ncpus: int):
        self.kernel = kernel
        self.ncpus = max(1, ncpus)
        self.top = Instance("", self.ncpus)
        self.instances: dict[str, Instance] = {}
        self.cmdlines: dict[int, str] = {}
        self.generation = 0           # bumped on every recorded event (pollers compare it)

    # ---- catalogue ----------------------------------------------------------------------
    @staticmethod
    def registry():
        return catalog.registry()

    def systems(self) -> list[str]:
        return catalog.registry().systems()

    # ---- instances ------------------------------------------------------------------------
    def instance(self, name: str | None) -> Instance:
        if not name:
            return self.top
        inst = self.instances.get(name)
        if inst is None:
            raise KernelError(errno.ENOENT)
        return inst

    def mkdir(self, name: str) -> Instance:
        if not name or "/" in name or name in (".", ".."):
            raise KernelError(errno.EINVAL)
        if name in self.instances:
            raise KernelError(errno.EEXIST)
        inst = Instance(name, self.ncpus)
        self.instances[name] = inst
        self.kernel.dirty = True
        return inst

    def rmdir(self, name: str) -> None:
        if name not in self.instances:
            raise KernelError(errno.ENOENT)
        del self.instances[name]
        self.kernel.dirty = True

    def all_instances(self) -> list[Instance]:
        return [self.top, *self.instances.values()]

    # ---- enable switches ----------------------------------------------------------------------
    def event_enabled(self, inst: Instance, system: str, name: str) -> bool:
        return (system, name) in inst.enabled

    def set_event(self, inst: Instance, system: str | None, name: str | None, on: bool) -> None:
        reg = catalog.registry()
        targets = [(e.system, e.name) for s in ([system] if system else reg.systems()) for e in reg.events(s)
                   if name is None or e.name == name]
        for t in targets:
            if on:
                inst.enabled.add(t)
            else:
                inst.enabled.discard(t)
        self.kernel.dirty = True

    def enable_state(self, inst: Instance, system: str | None) -> str:
        """"1", "0" or "X" (mixed) for a system's or all events' enable file."""
        reg = catalog.registry()
        evs = [(e.system, e.name) for s in ([system] if system else reg.systems()) for e in reg.events(s)]
        on = sum(1 for t in evs if t in inst.enabled)
        return "1" if on == len(evs) and evs else "0" if on == 0 else "X"

    # ---- recording ---------------------------------------------------------------------------------
    def emit(self, system: str, name: str, values: Mapping[str, object]) -> None:
        """trace_<name>(): record the event in every instance that wants it."""
        ev = catalog.registry().get(system, name)
        if ev is None:
            raise KeyError(f"{system}:{name}")
        k = self.kernel
        targets = [i for i in self.all_instances() if i.tracing_on and (system, name) in i.enabled]
        if not targets:
            return
        pid = int(getattr(k, "current_pid", 0) or 0)
        cpu = int(getattr(k, "current_cpu", 0) or 0) % self.ncpus
        comm = str(getattr(k, "current_comm", "") or "")
        if pid and comm:
            self.cmdlines[pid] = comm[:15]
            if len(self.cmdlines) > 128:
                self.cmdlines.pop(next(iter(self.cmdlines)))
        payload = ev.encode(values, pid)
        for inst in targets:
            inst.buffers[cpu].add(k.clock_ns, payload, pid, inst.buffer_size_kb * 1024)
        self.generation += 1
        k.dirty = True

    # ---- readers ---------------------------------------------------------------------------------------
    def read_raw(self, inst: Instance, cpu: int) -> bytes:
        """trace_pipe_raw of one CPU: the next page of events (consumed), or b""."""
        buf = inst.buffers[cpu]
        if not buf.records:
            return b""
        recs = [(ts, p) for ts, p, _ in buf.records]
        page, used = ring.build_page(recs, buf.missed)
        buf.consume(used)
        buf.missed = False
        self.kernel.dirty = True
        return page

    def _merged(self, inst: Instance) -> list[tuple[int, int, bytes, int]]:
        out = [(ts, cpu, p, pid) for cpu, b in enumerate(inst.buffers) for ts, p, pid in b.records]
        out.sort(key=lambda x: (x[0], x[1]))
        return out

    def format_line(self, ts: int, cpu: int, payload: bytes, pid: int) -> str:
        reg = catalog.registry()
        etype = int.from_bytes(payload[:2], "little")
        ev = reg.by_id.get(etype)
        comm = self.cmdlines.get(pid, "<idle>" if pid == 0 else "<...>")
        secs, usecs = divmod(ts // 1000, 1_000_000)
        head = f"{comm:>16}-{pid:<7} [{cpu:03d}] ..... {secs:5d}.{usecs:06d}: "
        if ev is None:
            return head + f"UNKNOWN EVENT {etype}\n"
        return head + f"{ev.name}: {ev.text(ev.decode(payload))}\n"

    def read_trace(self, inst: Instance) -> str:
        recs = self._merged(inst)
        written = sum(b.entries_written for b in inst.buffers)
        lost = sum(b.overrun for b in inst.buffers)
        head = ("# tracer: nop\n#\n"
                f"# entries-in-buffer/entries-written: {len(recs)}/{written}   #P:{self.ncpus}\n#\n"
                "#                                _-----=> irqs-off/BH-disabled\n"
                "#                               / _----=> need-resched\n"
                "#                              | / _---=> hardirq/softirq\n"
                "#                              || / _--=> preempt-depth\n"
                "#                              ||| / _-=> migrate-disable\n"
                "#                              |||| /     delay\n"
                "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
                "#              | |         |   |||||     |         |\n")
        del lost
        return head + "".join(self.format_line(ts, cpu, p, pid) for ts, cpu, p, pid in recs)

    def read_pipe(self, inst: Instance, cpu: int | None = None) -> str:
        """trace_pipe (all CPUs or one): consumed text lines."""
        recs = self._merged(inst)
        if cpu is not None:
            recs = [r for r in recs if r[1] == cpu]
        for b_cpu, b in enumerate(inst.buffers):
            if cpu is None or b_cpu == cpu:
                b.clear()
        if recs:
            self.kernel.dirty = True
        return "".join(self.format_line(ts, c, p, pid) for ts, c, p, pid in recs)

    def clear(self, inst: Instance, cpu: int | None = None) -> None:
        for i, b in enumerate(inst.buffers):
            if cpu is None or i == cpu:
                b.clear()
        self.kernel.dirty = True

    def set_event_list(self, inst: Instance) -> str:
        return "".join(f"{s}:{n}\n" for s, n in sorted(inst.enabled))

    def write_set_event(self, inst: Instance, text: str, append: bool) -> None:
        """set_event: "system:event", "system:*", "event", "!system:event" (disable)."""
        if not append:
            inst.enabled.clear()
        for word in text.split():
            off = word.startswith("!")
            word = word.lstrip("!")
            sysname, _, ev = word.rpartition(":")
            system = sysname or None
            name = None if ev in ("*", "") else ev
            if system and system not in catalog.registry().systems():
                raise KernelError(errno.EINVAL)
            if name and not any(e.name == name for s in ([system] if system else catalog.registry().systems())
                                for e in catalog.registry().events(s)):
                raise KernelError(errno.EINVAL)
            self.set_event(inst, system, name, not off)
