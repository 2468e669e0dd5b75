"""The scheduler side of the model: the process table (tasks and their
mm), kernel threads run periodically between epochs of a workload run,
and NUMA balancing (kernel/sched/fair.c), see numa.py."""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Any

from cxlemu.kernel.sched.numa import NumaBalancing
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel
    from cxlemu.kernel.sched.task import Task

PID_START = 1000


class Sched:
    """``kernel.sched``: tasks, kernel threads, NUMA balancing state."""

    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel
        self.tasks: dict[int, "Task"] = {}
        self.next_pid = PID_START
        self.numab = NumaBalancing()
        self.kthreads: list[Any] = []       # objects with name, next_run_ns, run(kernel, now_ns)
        self.exited: list[dict] = []        # summaries of tasks that exited (last 64)

    # ---- tasks ----------------------------------------------------------------------------
    def alloc_pid(self) -> int:
        pid = self.next_pid
        self.next_pid += 1
        return pid

    def live_tasks(self) -> list["Task"]:
        return [t for t in self.tasks.values() if t.alive]

    def create_task(self, comm: str, parent: "Task | None" = None) -> "Task":
        from cxlemu.kernel.sched.task import Task
        t = Task(self.kernel, self.alloc_pid(), comm)
        if parent is not None:
            t.inherit(parent)
        else:
            t.cpus_allowed = tuple(self.all_cpus())
            t.mems_allowed = tuple(self.kernel.mm.numa.state_nodes("memory"))
        self.tasks[t.pid] = t
        return t

    def reap(self, t: "Task") -> None:
        self.tasks.pop(t.pid, None)
        self.exited.append(t.summary())
        del self.exited[:-64]

    def all_cpus(self) -> list[int]:
        numa = self.kernel.mm.numa
        return sorted(c for n in numa.state_nodes("cpu") for c in numa.cpus(n))

    def cpu_node(self, cpu: int) -> int:
        numa = self.kernel.mm.numa
        for n in numa.state_nodes("cpu"):
            if cpu in numa.cpus(n):
                return n
        return 0

    def cpu_node_of_kthread(self, nid: int) -> int:
        """Where a node's kswapd runs: on the node's CPUs, or (a CPU-less
        node) on the first CPU node."""
        numa = self.kernel.mm.numa
        if numa.cpus(nid):
            return nid
        cpu_nodes = numa.state_nodes("cpu")
        return cpu_nodes[0] if cpu_nodes else 0

    # ---- cpusets track memory hotplug --------------------------------------------------------
    def mems_changed(self) -> None:
        """cpuset_track_online_nodes(): tasks of the root cpuset follow
        N_MEMORY; their policies are rebound (mpol_rebind_task)."""
        from cxlemu.kernel.mm.mempolicy import rebind
        mem = tuple(self.kernel.mm.numa.state_nodes("memory"))
        for t in self.tasks.values():
            if t.cpuset_root:
                t.mems_allowed = mem
            if t.mempolicy is not None:
                rebind(t.mempolicy, t.allowed_mems())
            if t.mm is not None:
                for v in t.mm.vmas:
                    if v.policy is not None:
                        rebind(v.policy, t.allowed_mems())

    # ---- periodic kernel work ---------------------------------------------------------------------
    def register_kthread(self, obj: Any) -> None:
        """A periodic kernel thread (kdamond ...): ``obj.next_run_ns`` and
        ``obj.run(kernel, now_ns)``; the workload engine calls due ones
        between epochs (see docs/tiering.md)."""
        self.kthreads.append(obj)

    def unregister_kthread(self, obj: Any) -> None:
        if obj in self.kthreads:
            self.kthreads.remove(obj)

    def next_kthread_ns(self) -> int | None:
        """When the next kernel thread is due (the engine ends epochs there).
        A thread may name a later ``wake_ns`` for the epoch end than the
        ``next_run_ns`` from which it is willing to run (a kdamond takes a
        sample up to a quarter interval early rather than cost an epoch)."""
        due = [int(getattr(kt, "wake_ns", getattr(kt, "next_run_ns", 0))) for kt in self.kthreads]
        return min(due) if due else None

    def run_kthreads(self, now_ns: int) -> None:
        for kt in list(self.kthreads):
            if getattr(kt, "next_run_ns", 0) <= now_ns:
                kt.run(self.kernel, now_ns)
