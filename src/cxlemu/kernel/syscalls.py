"""The system-call interface a program running on the machine sees.

:class:`Process` wraps a kernel task: ``mmap``/``munmap``, ``set_mempolicy``/
``get_mempolicy``/``mbind``, ``sched_setaffinity``, cpuset mems,
``madvise``, ``pin``/``unpin`` (FOLL_LONGTERM) and ``spawn``.  Errors are
OSError with the kernel's errno, as a C program sees them from libc.  The
emulator backend hands one out as ``backend.task()`` (sysfs/backend.py);
workload generators (userspace/) receive one from the engine.  Addresses
are virtual addresses; ``MMAP_BASE`` is where mappings start.

It sits on the kernel floor, as the system calls it wraps do
(mm/mmap.c, mm/mempolicy.c, mm/madvise.c, kernel/sched/core.c), so that
the sysfs backend, the engine (sim/) and allocators all reach the same
interface from above.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from cxlemu.kernel.mm.mmap import MMAP_BASE

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel
    from cxlemu.kernel.sched.task import Task

PAGE_SHIFT = 12
BASE_VPN = MMAP_BASE >> PAGE_SHIFT


class Process:
    def __init__(self, kernel: "Kernel", task: "Task"):
        self.kernel = kernel
        self.task = task

    @classmethod
    def new(cls, kernel: "Kernel", comm: str, parent: "Process | None" = None) -> "Process":
        t = kernel.sched.create_task(comm, parent.task if parent is not None else None)
        return cls(kernel, t)

    @property
    def pid(self) -> int:
        return self.task.pid

    @property
    def alive(self) -> bool:
        return self.task.alive

    # ---- memory ------------------------------------------------------------------------------
    def mmap(self, length: int, name: str, kind: str = "anon", compress_ratio: float = 3.0) -> int:
        return self.task.mmap(int(length), name, kind, compress_ratio=compress_ratio)

    def munmap(self, addr: int, length: int | None = None) -> None:
        self.task.munmap(int(addr), length)

    def madvise(self, addr: int, length: int, advice: int) -> None:
        self.task.madvise(int(addr), int(length), int(advice))

    def pin(self, addr: int, length: int) -> int:
        return self.task.pin(int(addr), int(length))

    def unpin(self, addr: int, length: int) -> int:
        return self.task.unpin(int(addr), int(length))

    def mlock(self, addr: int) -> None:
        self.task.mlock(int(addr))

    # ---- NUMA ----------------------------------------------------------------------------------
    def set_mempolicy(self, mode: int, nodes: Iterable[int] = ()) -> None:
        self.task.set_mempolicy(int(mode), tuple(nodes))

    def get_mempolicy(self, flags: int = 0, addr: int | None = None) -> tuple[int, tuple[int, ...]]:
        return self.task.get_mempolicy(flags, addr)

    def mbind(self, addr: int, length: int, mode: int, nodes: Iterable[int] = (), flags: int = 0) -> None:
        self.task.mbind(int(addr), int(length), int(mode), tuple(nodes), int(flags))

    def sched_setaffinity(self, cpus: Iterable[int]) -> None:
        self.task.sched_setaffinity(tuple(cpus))

    def sched_getaffinity(self) -> tuple[int, ...]:
        return self.task.cpus_allowed

    def set_cpuset_mems(self, nodes: Iterable[int]) -> None:
        self.task.set_cpuset_mems(tuple(nodes))

    def set_threads(self, n: int) -> None:
        self.task.nthreads = max(1, int(n))

    # ---- lifecycle -------------------------------------------------------------------------------
    def fork(self, comm: str) -> "Process":
        """A child inheriting policy, affinity and cpuset (fork + exec)."""
        return Process.new(self.kernel, comm, self)

    def exit(self, code: int = 0) -> None:
        self.task.exit(code)
