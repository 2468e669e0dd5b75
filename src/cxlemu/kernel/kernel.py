"""The kernel model: one object holding the device model, the resource tree
and the subsystems, booted from a :class:`~cxlemu.hw.platform.Platform`.

The whole kernel (with the platform it drives) is what a machine persists
between commands; a reboot throws it away and boots a new one.
"""

from __future__ import annotations

from typing import Any, Callable

from cxlemu.hw.platform import Platform
from cxlemu.kernel.base.device import Bus, Device, Driver, Ida, PlainDir, device_add
from cxlemu.kernel.features import table as feature_table
from cxlemu.kernel.resource import IORES_DESC_SOFT_RESERVED, Resource, format_iomem, insert_resource

PHYS_ADDR_BITS = 46
TRACE_LIMIT = 10000


class Kernel:
    def __init__(self, platform: Platform):
        from cxlemu.kernel.cxl.core import CxlCore
        from cxlemu.kernel.dax.subsys import Dax
        from cxlemu.kernel.mm.subsys import Mm
        from cxlemu.kernel.nvdimm.subsys import Nvdimm
        from cxlemu.kernel.perf import Perf

        self.platform = platform
        self.buses: dict[str, Bus] = {}
        self.root = PlainDir("")
        self.devmap: dict[str, Device] = {}
        self.iomem = Resource(0, (1 << PHYS_ADDR_BITS) - 1, "PCI mem")
        self.memregion_ida = Ida()
        self.dmesg: list[str] = []
        self.chrdevs: list[Device] = []
        self.dirty = False
        self.sysfs_events: dict[str, int] = {}     # attribute path -> sysfs_notify count
        self.uptime_ticks = 0
        self.clock_ns = 0        # simulated time since boot (advanced by runs and timed operations)
        for name in ("platform", "pci", "acpi", "cpu"):
            self.buses[name] = Bus(name)
        self.cxl = CxlCore(self)
        self.nvdimm = Nvdimm(self)
        self.dax = Dax(self)
        self.mm = Mm(self)
        self.perf = Perf(self)
        from cxlemu.kernel.trace.tracing import Tracing
        self.tracing = Tracing(self, sum(n.cpus for n in platform.topology.numa))

    #: CLOCK_REALTIME at boot: a fixed date (2025-01-01T00:00:00Z), so that model state
    #: never depends on the host's wall clock; realtime = this + clock_ns
    BOOT_REALTIME_NS = 1_735_689_600 * 10**9

    def realtime_ns(self) -> int:
        return self.BOOT_REALTIME_NS + self.clock_ns

    # ---- the scheduler side (tasks, kernel threads, NUMA balancing), created on first use ----
    _sched: Any = None

    @property
    def sched(self):
        if self._sched is None:
            from cxlemu.kernel.sched import Sched
            self._sched = Sched(self)
        return self._sched

    # ---- profile -------------------------------------------------------------------------
    @property
    def version(self) -> tuple[int, int]:
        return self.platform.topology.boot.kernel_version

    def profile_at_least(self, major: int, minor: int) -> bool:
        return self.version >= (major, minor)

    def has(self, feature: str) -> bool:
        """Does this kernel profile have ``feature`` (kernel/features.py)?
        Asked on every sysfs lookup: the profile's table is computed once
        (a transient cache, not saved with the state)."""
        t = self.__dict__.get("_features")
        if t is None:
            t = self._features = feature_table(self.version)
        return t[feature]

    @property
    def acpi_tables(self) -> dict[str, bytes]:
        return self.platform.tables

    # ---- logging / tracing ------------------------------------------------------------------
    def log(self, msg: str) -> None:
        self.uptime_ticks += 1
        self.dmesg.append(msg)
        if len(self.dmesg) > TRACE_LIMIT:
            del self.dmesg[: len(self.dmesg) - TRACE_LIMIT]

    def trace(self, system: str, event: str, values: dict) -> None:
        """trace_<event>(): record into every tracefs instance that enabled it."""
        self.tracing.emit(system, event, values)

    # ---- the current task (who is writing to sysfs / running): set per request -----------------
    current_pid: int = 0
    current_cpu: int = 0
    current_comm: str = ""

    def set_current(self, pid: int, comm: str = "", cpu: int = 0) -> None:
        """The task on whose behalf the kernel runs now (a VFS writer, a workload
        process): trace records carry its pid.  Transient, not saved."""
        self.current_pid, self.current_comm, self.current_cpu = pid, comm, cpu

    # ---- change notification -------------------------------------------------------------
    # ``dirty`` is set by every change of the model (a sysfs store, a mailbox
    # command, a boot); watchers (the FUSE mount: kernel caches to drop) are
    # told at once.  Watchers are transient: never saved with the kernel.
    _dirty = False
    _watchers: tuple = ()

    @property
    def dirty(self) -> bool:
        return self._dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self._dirty = value
        if value:
            for w in self._watchers:
                w.kernel_changed(self)

    def add_watcher(self, watcher: Any) -> None:
        """``watcher.kernel_changed(kernel)`` after every change, and
        ``watcher.sysfs_notified(path)`` on :meth:`sysfs_notify`."""
        if watcher not in self._watchers:
            self._watchers = (*self._watchers, watcher)

    def remove_watcher(self, watcher: Any) -> None:
        self._watchers = tuple(w for w in self._watchers if w is not watcher)

    def sysfs_notify(self, dev: Device, group: str | None, attr: str) -> None:
        """sysfs_notify() (fs/sysfs/file.c): wake pollers of an attribute."""
        path = f"{dev.sysfs_path}/{group}/{attr}" if group else f"{dev.sysfs_path}/{attr}"
        events = self.__dict__.setdefault("sysfs_events", {})
        events[path] = events.get(path, 0) + 1
        for w in self._watchers:
            w.sysfs_notified(path)

    # ---- char devices ------------------------------------------------------------------------
    def register_chrdev(self, dev: Device) -> None:
        self.chrdevs.append(dev)

    def char_devices(self) -> list[Device]:
        return [d for d in self.chrdevs if d.registered and d.devt]

    def classes(self) -> dict[str, Callable[[], list[Device]]]:
        """/sys/class/<name>: each subsystem may contribute ``classes()``."""
        out: dict[str, Callable[[], list[Device]]] = {}
        for sub in (self.nvdimm, self.dax, self.mm):
            fn = getattr(sub, "classes", None)
            if callable(fn):
                out.update(fn())
        return out

    # ---- proc / sysfs extras -----------------------------------------------------------------
    def proc_files(self) -> dict[str, Callable[[], str | bytes]]:
        files: dict[str, Callable[[], str | bytes]] = {
            "iomem": lambda: format_iomem(self.iomem),
            "cmdline": lambda: self.cmdline() + "\n",
            "version": lambda: f"Linux version {self.platform.topology.boot.kernel}.0-cxlemu "
                               f"(cxlemu) #1 SMP PREEMPT_DYNAMIC\n",
        }
        files["mounts"] = self.mounts
        files.update(self.mm.proc_files())
        return files

    def mounts(self) -> str:
        """/proc/mounts of the machine: sysfs, procfs, tracefs and debugfs where Linux
        mounts them (libtracefs finds the tracing directory here)."""
        return ("sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
                "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
                "devtmpfs /dev devtmpfs rw,nosuid,size=4096k,mode=755 0 0\n"
                "debugfs /sys/kernel/debug debugfs rw,nosuid,nodev,noexec,relatime 0 0\n"
                "tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec,relatime 0 0\n")

    def cmdline(self) -> str:
        b = self.platform.topology.boot
        parts = ["BOOT_IMAGE=/boot/vmlinuz", "root=/dev/vda", "console=ttyS0"]
        parts.append(f"memhp_default_state={b.memhp_default_state}")
        if b.online_policy != "contig-zones":
            parts.append(f"memory_hotplug.online_policy={b.online_policy}")
        if not b.soft_reserve:
            parts.append("nosoftreserve")
        if b.movable_node:
            parts.append("movable_node")
        return " ".join(parts)

    def ktree(self, prefix: str) -> dict:
        """Knob directories (/proc/sys, /sys/kernel, /sys/module) as nested
        dicts of ``(show, store, mode)`` tuples, for the VFS (kernel/sysctl.py)."""
        from cxlemu.kernel import sysctl
        out = sysctl.tree(self, prefix)
        if prefix == "/sys/kernel":
            from cxlemu.kernel.mm.damon import sysfs as damon_sysfs
            out.setdefault("mm", {})["damon"] = lambda: damon_sysfs.tree(self)
        elif prefix == "/sys/module":
            from cxlemu.kernel.mm.damon import sysfs as damon_sysfs
            out.update(damon_sysfs.module_tree(self))
        return out

    def proc_tree(self) -> dict:
        """/proc directories: ``sys`` and one per live task (``<pid>/status``,
        ``numa_maps``); each value a nested dict or a (show, store, mode) tuple."""
        out: dict = {"sys": self.ktree("/proc/sys")}
        sched = self._sched
        if sched is not None:
            from cxlemu.kernel.mm.procfs import task_files
            for pid, t in sched.tasks.items():
                if t.alive:
                    out[str(pid)] = task_files(self, t)
        return out

    def debugfs_tree(self) -> dict:
        """/sys/kernel/debug as nested dicts, leaves (show, store, mode)."""
        return {"cxl": self.cxl.debugfs_tree()}

    # ---- media (attached by the machine; not persisted) -----------------------------------------
    media_store: Any = None      # device-side access to each device's media (mailbox, poison)
    physmem: Any = None          # CPU-side reads and flushed writes at HPAs (data/physmem.py)

    def media_access(self, hw):
        if self.media_store is None:
            return None
        return self.media_store.access(hw)

    # ---- fabric (rack hosts: the appliances' mailboxes, attached by the machine; not persisted) ----
    fabric: Any = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for transient in ("media_store", "physmem", "_watchers", "current_pid", "current_cpu", "current_comm",
                          "_features", "fabric"):
            state.pop(transient, None)
        return state

    # ---- boot --------------------------------------------------------------------------------------
    def boot(self) -> None:
        from cxlemu.kernel import boot
        from cxlemu.util.gcpause import collector_paused
        with collector_paused():          # a graph that lives as long as the machine
            boot.boot(self)
