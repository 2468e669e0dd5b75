"""Tasks (processes) and the memory system calls they make (include/linux/
sched.h, kernel/fork.c, kernel/exit.c, mm/mmap.c, mm/mempolicy.c,
mm/gup.c, kernel/sched/core.c sched_setaffinity).

A task has an mm (its address space), a memory policy, allowed CPUs and
allowed memory nodes (its cpuset's mems; a task in the root cpuset follows
the nodes with memory as they come and go).  ``nthreads`` threads share the
mm; they run on the allowed CPUs and fault on the node of the first one.

The system calls validate their arguments as Linux does and raise
``KernelError(errno)``; the syscall front end (sysfs/backend.py
``Process``) turns them into OSError for programs.  ``pin`` is
``pin_user_pages(FOLL_LONGTERM)`` (an RDMA registration, VFIO): pages are
faulted in, pages in ZONE_MOVABLE are first migrated to a kernel zone
(``check_and_migrate_movable_folios``, mm/gup.c), then pinned; a pinned page
cannot be migrated, demoted or swapped, and blocks offlining of its block.
"""

from __future__ import annotations

import copy
import errno
from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.base.device import KernelError
from cxlemu.kernel.mm import mempolicy as mp
from cxlemu.kernel.mm.frames import PG_PINNED, PROT_NUMA, swp_slot
from cxlemu.kernel.mm.mmap import MMAP_BASE, PAGE, VM_HUGEPAGE, VM_LOCKED, VM_NOHUGEPAGE, VM_READ, VM_WRITE

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel
    from cxlemu.kernel.mm.fault import AccessOutcome
    from cxlemu.kernel.mm.mmap import MmStruct, Vma

MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED = 0, 1, 2, 3, 4
MADV_COLD, MADV_PAGEOUT = 20, 21
MADV_HUGEPAGE, MADV_NOHUGEPAGE = 14, 15


class Task:
    def __init__(self, kernel: "Kernel", pid: int, comm: str):
        self.kernel = kernel
        self.pid = pid
        self.comm = comm[:15]
        self.mm: "MmStruct | None" = None
        self.mempolicy: mp.MemPolicy | None = None
        self.il_state = [-1, 0]
        self.cpus_allowed: tuple[int, ...] = ()
        self.mems_allowed: tuple[int, ...] = ()
        self.cpuset_root = True
        self.nthreads = 1
        self.alive = True
        self.exit_signal = ""
        self.exit_reason = ""
        self.oom_killed = False
        self.in_kernel = False
        self.numa_scan_period = 1000
        self.numa_scan_period_set = False
        self.numa_scan_seq_seen = 0
        self.numa_faults_local = 0
        self.numa_faults_remote = 0
        self.stall_ns = 0.0
        self.files: list[int] = []
        self.start_ns = kernel.clock_ns

    # ---- identity ---------------------------------------------------------------------------
    @property
    def vm(self):
        return self.kernel.mm.vm

    @property
    def cpu_node(self) -> int:
        cpus = self.cpus_allowed or tuple(self.kernel.sched.all_cpus())
        return self.kernel.sched.cpu_node(cpus[0]) if cpus else 0

    def allowed_mems(self) -> tuple[int, ...]:
        """cpuset_current_mems_allowed ∩ N_MEMORY."""
        mem = set(self.kernel.mm.numa.state_nodes("memory"))
        return tuple(sorted(n for n in self.mems_allowed if n in mem))

    def inherit(self, parent: "Task") -> None:
        """fork(): policy, affinity and cpuset are inherited."""
        self.mempolicy = copy.deepcopy(parent.mempolicy)
        self.cpus_allowed = parent.cpus_allowed
        self.mems_allowed = parent.mems_allowed
        self.cpuset_root = parent.cpuset_root
        self.nthreads = 1

    def summary(self) -> dict:
        return {"pid": self.pid, "comm": self.comm, "signal": self.exit_signal, "reason": self.exit_reason,
                "oom_killed": self.oom_killed}

    def _mm(self) -> "MmStruct":
        if self.mm is None:
            self.mm = self.vm.new_mm(self.pid)
        return self.mm

    def _check_alive(self) -> None:
        if not self.alive:
            raise KernelError(errno.ESRCH, f"task {self.pid} has exited")

    # ---- mmap / munmap --------------------------------------------------------------------------
    def mmap(self, length: int, name: str, kind: str = "anon", *, flags: int = VM_READ | VM_WRITE,
             compress_ratio: float = 3.0, file=None, map_flags: int = 0) -> int:
        """mmap(): anonymous private memory, a shared anonymous (shmem) mapping,
        or a file of ``length`` bytes (created for the task, unlinked at exit).
        ``map_flags``: SMDK's MAP_EXMEM / MAP_NORMAL (kernel/mm/exmem.py)."""
        from cxlemu.kernel.mm.mmap import MAP_EXMEM, MAP_NORMAL, VM_EXMEM, VM_NORMAL
        self._check_alive()
        if map_flags & ~(MAP_EXMEM | MAP_NORMAL):
            raise KernelError(errno.EINVAL, "mmap: unknown flags")
        if map_flags & MAP_EXMEM and map_flags & MAP_NORMAL:
            raise KernelError(errno.EINVAL, "mmap: MAP_EXMEM and MAP_NORMAL together")
        if map_flags & MAP_EXMEM:
            flags |= VM_EXMEM
        elif map_flags & MAP_NORMAL:
            flags |= VM_NORMAL
        if length <= 0:
            raise KernelError(errno.EINVAL, "mmap: length must be positive")
        if kind not in ("anon", "file", "shmem"):
            raise KernelError(errno.EINVAL, f"mmap: unknown kind {kind!r}")
        npages = -(-int(length) // PAGE)
        if npages >= 1 << 31:
            raise KernelError(errno.ENOMEM, "mmap: mapping too large")
        mm = self._mm()
        vm = self.vm
        f = file
        if kind != "anon" and f is None:
            f = vm.new_file(name, npages, shmem=(kind == "shmem"))
            f.compress_ratio = compress_ratio
            self.files.append(f.id)
        v = mm.add_vma(npages, name, kind, f, 0, flags)
        v.compress_ratio = compress_ratio
        if f is not None:
            f.mappers.append((mm.id, v.id))
        return v.vm_start

    def vma_at(self, addr: int) -> "Vma":
        mm = self.mm
        v = mm.find_vma(mm.vpn_of_addr(addr)) if mm is not None else None
        if v is None:
            raise KernelError(errno.EFAULT, f"no mapping at {addr:#x}")
        return v

    def munmap(self, addr: int, length: int | None = None) -> None:
        """munmap() of a whole VMA (partial unmapping would split it: EINVAL here)."""
        self._check_alive()
        mm = self.mm
        if mm is None or addr % PAGE:
            raise KernelError(errno.EINVAL, "munmap: unaligned address")
        v = mm.find_vma(mm.vpn_of_addr(addr))
        if v is None:
            return
        if v.vm_start != addr or (length is not None and -(-length // PAGE) != v.npages):
            raise KernelError(errno.EINVAL, "munmap: cxlemu unmaps whole VMAs only")
        self._zap_vma(v)
        mm.remove_vma(v)

    def _zap_vma(self, v: "Vma") -> None:
        vm = self.vm
        mm = self.mm
        pte = mm.pt[v.start:v.end]
        if v.kind == "anon":
            present = pte >= 0
            frames = (pte[present] & np.int32(~PROT_NUMA)).astype(np.int64)
            if frames.size and vm.frames is not None:
                vm.frames.flags[frames] &= ~np.uint16(PG_PINNED)
                vm.page_alloc.free(frames)
            sw = (pte <= -2) & (pte != np.iinfo(np.int32).min)
            if sw.any() and vm.swap:
                self._free_swap(swp_slot(pte[sw].astype(np.int64)))
        else:
            f = v.file
            if (mm.id, v.id) in f.mappers:
                f.mappers.remove((mm.id, v.id))
            if f.shmem or f.unlinked:
                self._maybe_drop_file(f)
        mm.pt[v.start:v.end] = -1

    def _free_swap(self, slots: np.ndarray) -> None:
        from cxlemu.kernel.mm import zswap
        vm = self.vm
        dev = vm.swap[0]
        zswap.load(vm, dev, slots) if vm.zswap is not None else None
        dev.release(slots)

    def _maybe_drop_file(self, f) -> None:
        """The last mapping of an unlinked file (or shmem object) is gone: free its pages."""
        vm = self.vm
        if f.mappers:
            return
        if f.id in self.files or f.shmem:
            cache = f.pages
            frames = cache[cache >= 0].astype(np.int64)
            if frames.size:
                vm.frames.flags[frames] &= ~np.uint16(PG_PINNED)
                vm.page_alloc.free(frames)
            sw = cache <= -2
            if sw.any() and vm.swap:
                self._free_swap(swp_slot(cache[sw].astype(np.int64)))
            f.pages[:] = -1
            vm.spaces.pop(f.id, None)

    # ---- memory policy ----------------------------------------------------------------------------
    def set_mempolicy(self, mode_arg: int, nodes=()) -> None:
        self._check_alive()
        k = self.kernel
        pol = mp.mpol_new(mode_arg, nodes, self.allowed_mems(), k.version, k.mm.numa.possible())
        self.mempolicy = pol
        if pol is not None and pol.mode in (mp.MPOL_INTERLEAVE, mp.MPOL_WEIGHTED_INTERLEAVE):
            self.il_state = [-1, 0]

    def get_mempolicy(self, flags: int = 0, addr: int | None = None) -> tuple[int, tuple[int, ...]]:
        """(mode | mode flags, nodemask); MPOL_F_NODE|MPOL_F_ADDR: (node of the page, ())."""
        self._check_alive()
        if flags & ~(mp.MPOL_F_NODE | mp.MPOL_F_ADDR | mp.MPOL_F_MEMS_ALLOWED):
            raise KernelError(errno.EINVAL)
        if flags & mp.MPOL_F_MEMS_ALLOWED:
            if flags & (mp.MPOL_F_NODE | mp.MPOL_F_ADDR):
                raise KernelError(errno.EINVAL)
            return 0, self.allowed_mems()
        pol = self.mempolicy
        if flags & mp.MPOL_F_ADDR:
            if addr is None:
                raise KernelError(errno.EFAULT)
            v = self.vma_at(addr)
            pol = v.policy if v.policy is not None else self.mempolicy
            if flags & mp.MPOL_F_NODE:
                vpn = self.mm.vpn_of_addr(addr)
                e = int(self.mm.pt[vpn])
                if e < 0:           # not present: fault it in (get_user_pages)
                    self.access(np.array([vpn], np.int64), None)
                    e = int(self.mm.pt[vpn])
                return int(self.vm.frames.node[e & ~PROT_NUMA]), ()
        elif flags & mp.MPOL_F_NODE:
            if pol is not None and pol.mode in (mp.MPOL_INTERLEAVE, mp.MPOL_WEIGHTED_INTERLEAVE):
                nxt = pol.nodes[(pol.nodes.index(self.il_state[0]) + 1) % len(pol.nodes)] \
                    if self.il_state[0] in pol.nodes else pol.nodes[0]
                return nxt, ()
            raise KernelError(errno.EINVAL)
        if pol is None:
            return mp.MPOL_DEFAULT, ()
        mode = pol.mode | (pol.flags & mp.MPOL_MODE_FLAGS)
        if pol.mode == mp.MPOL_LOCAL:
            return mp.MPOL_LOCAL, ()
        nodes = pol.user_nodes if pol.flags & (mp.MPOL_F_STATIC_NODES | mp.MPOL_F_RELATIVE_NODES) else pol.nodes
        return mode, tuple(nodes)

    def mbind(self, addr: int, length: int, mode_arg: int, nodes=(), flags: int = 0) -> None:
        """mbind(): a policy for the VMAs of [addr, addr+len); MPOL_MF_MOVE migrates
        the pages that do not conform, MPOL_MF_STRICT alone reports them (EIO)."""
        from cxlemu.kernel.mm.migrate import MR_MEMPOLICY_MBIND, migrate_pages
        self._check_alive()
        if flags & ~mp.MPOL_MF_VALID:
            raise KernelError(errno.EINVAL, "mbind: invalid flags")
        if addr % PAGE:
            raise KernelError(errno.EINVAL, "mbind: unaligned start")
        k = self.kernel
        pol = mp.mpol_new(mode_arg, nodes, self.allowed_mems(), k.version, k.mm.numa.possible())
        mm = self.mm
        if mm is None:
            raise KernelError(errno.EFAULT, "mbind: no mapping")
        s = mm.vpn_of_addr(addr)
        e = s + -(-int(length) // PAGE)
        vmas = [v for v in mm.vmas if v.start < e and v.end > s]
        covered = sum(min(v.end, e) - max(v.start, s) for v in vmas)
        if covered != e - s:
            raise KernelError(errno.EFAULT, "mbind: range is not fully mapped")
        for v in vmas:
            if v.start < s or v.end > e:
                raise KernelError(errno.EINVAL, "mbind: cxlemu applies policies to whole VMAs")
        for v in vmas:
            v.policy = copy.deepcopy(pol)
        if pol is None or not flags & (mp.MPOL_MF_MOVE | mp.MPOL_MF_MOVE_ALL | mp.MPOL_MF_STRICT):
            return
        vm = self.vm
        bad: list[np.ndarray] = []
        for v in vmas:
            pte = mm.pt[v.start:v.end]
            fr = (pte[pte >= 0] & np.int32(~PROT_NUMA)).astype(np.int64)
            if fr.size:
                nodes_of = vm.frames.node[fr]
                ok = np.isin(nodes_of, np.asarray(pol.nodes)) if pol.mode in (mp.MPOL_BIND, mp.MPOL_INTERLEAVE,
                                                                               mp.MPOL_WEIGHTED_INTERLEAVE,
                                                                               mp.MPOL_PREFERRED,
                                                                               mp.MPOL_PREFERRED_MANY) \
                    else np.ones(fr.size, np.bool_)
                bad.append(fr[~ok])
        badf = np.concatenate(bad) if bad else np.zeros(0, np.int64)
        if not badf.size:
            return
        if flags & (mp.MPOL_MF_MOVE | mp.MPOL_MF_MOVE_ALL):
            res = migrate_pages(vm, badf, list(pol.nodes), MR_MEMPOLICY_MBIND, cpu_nid=self.cpu_node)
            self.stall_ns += res.cost_ns
            if res.failed.size and flags & mp.MPOL_MF_STRICT:
                raise KernelError(errno.EIO, "mbind: some pages could not be moved")
        elif flags & mp.MPOL_MF_STRICT:
            raise KernelError(errno.EIO, "mbind: pages outside the policy")

    def sched_setaffinity(self, cpus) -> None:
        self._check_alive()
        allcpu = set(self.kernel.sched.all_cpus())
        c = tuple(sorted(set(cpus) & allcpu))
        if not c:
            raise KernelError(errno.EINVAL, "sched_setaffinity: no online CPU in the mask")
        self.cpus_allowed = c

    def set_cpuset_mems(self, nodes) -> None:
        """Attach to a cpuset whose cpuset.mems are ``nodes`` (must have memory)."""
        self._check_alive()
        mem = set(self.kernel.mm.numa.state_nodes("memory"))
        n = tuple(sorted(set(nodes)))
        if not n or any(x not in mem for x in n):
            raise KernelError(errno.EINVAL, "cpuset.mems: nodes without memory")
        self.mems_allowed = n
        self.cpuset_root = False
        if self.mempolicy is not None:
            mp.rebind(self.mempolicy, self.allowed_mems())

    def madvise(self, addr: int, length: int, advice: int) -> None:
        self._check_alive()
        if addr % PAGE:
            raise KernelError(errno.EINVAL)
        v = self.vma_at(addr)
        if advice == MADV_HUGEPAGE:
            v.flags = (v.flags | VM_HUGEPAGE) & ~VM_NOHUGEPAGE
        elif advice == MADV_NOHUGEPAGE:
            v.flags = (v.flags | VM_NOHUGEPAGE) & ~VM_HUGEPAGE
        elif advice in (MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_COLD, MADV_PAGEOUT,
                        MADV_DONTNEED):
            if advice == MADV_DONTNEED and v.kind == "anon":
                self._zap_vma(v)
        else:
            raise KernelError(errno.EINVAL, f"madvise: unknown advice {advice}")

    def mlock(self, addr: int) -> None:
        v = self.vma_at(addr)
        v.flags |= VM_LOCKED

    # ---- pinning (mm/gup.c) ---------------------------------------------------------------------------
    def pin(self, addr: int, length: int, longterm: bool = True) -> int:
        """pin_user_pages(FOLL_LONGTERM): returns the number of pages pinned."""
        from cxlemu.kernel.mm.migrate import MR_LONGTERM_PIN, migrate_pages
        from cxlemu.kernel.mm.page_alloc import KERNEL_ZONES
        from cxlemu.kernel.mm.zones import ZONE_MOVABLE
        self._check_alive()
        mm = self.mm
        if mm is None or addr % PAGE:
            raise KernelError(errno.EINVAL)
        s = mm.vpn_of_addr(addr)
        n = -(-int(length) // PAGE)
        vpns = np.arange(s, s + n, dtype=np.int64)
        if (mm.vma_index(vpns) < 0).any():
            raise KernelError(errno.EFAULT, "pin: range is not mapped")
        out = self.access(vpns, np.ones(n, np.bool_))
        if out.stop >= 0:
            raise KernelError(errno.ENOMEM, "pin: could not fault the range in")
        vm = self.vm
        pf = vm.frames
        frames = (mm.pt[vpns] & np.int32(~PROT_NUMA)).astype(np.int64)
        if longterm:
            from cxlemu.kernel.mm.exmem import exmem_mode
            # ZONE_EXMEM (SMDK) allows pinning: its pages stay where they are
            movable = (pf.zone[frames] == ZONE_MOVABLE) & (not exmem_mode(self.kernel))
            if movable.any():
                # check_and_migrate_movable_folios(): GFP_USER, no __GFP_MOVABLE
                mv = frames[movable]
                pa = vm.page_alloc
                got = []
                need = mv.size
                for nid in sorted(set(pf.node[mv].tolist())) + self.kernel.mm.numa.state_nodes("memory"):
                    if need <= 0:
                        break
                    zl = pa.zonelist(int(nid), None, KERNEL_ZONES)
                    more = pa.take_zonelist(zl, need, 0, 2)
                    for m in more:
                        pa.account(m, int(nid), self.cpu_node, False)
                    got += more
                    need -= sum(x.size for x in more)
                dst = np.concatenate(got) if got else np.zeros(0, np.int64)
                res = migrate_pages(vm, mv, [], MR_LONGTERM_PIN, cpu_nid=self.cpu_node, dst=dst)
                self.stall_ns += res.cost_ns
                if res.failed.size:
                    raise KernelError(errno.ENOMEM, "pin: pages in ZONE_MOVABLE could not be migrated")
                frames = (mm.pt[vpns] & np.int32(~PROT_NUMA)).astype(np.int64)
        pf.flags[frames] |= np.uint16(PG_PINNED)
        for nid, c in zip(*np.unique(pf.node[frames], return_counts=True)):
            vm.vmstat.count_node(int(nid), "nr_foll_pin_acquired", int(c))
        return int(n)

    def unpin(self, addr: int, length: int) -> int:
        self._check_alive()
        mm = self.mm
        s = mm.vpn_of_addr(addr)
        n = -(-int(length) // PAGE)
        pte = mm.pt[s:s + n]
        frames = (pte[pte >= 0] & np.int32(~PROT_NUMA)).astype(np.int64)
        vm = self.vm
        pinned = frames[(vm.frames.flags[frames] & PG_PINNED) != 0]
        vm.frames.flags[pinned] &= ~np.uint16(PG_PINNED)
        for nid, c in zip(*np.unique(vm.frames.node[pinned], return_counts=True)):
            vm.vmstat.count_node(int(nid), "nr_foll_pin_released", int(c))
        return int(pinned.size)

    # ---- running ------------------------------------------------------------------------------------
    def access(self, vpns: np.ndarray, writes: np.ndarray | None, now: int | None = None) -> "AccessOutcome":
        """The MMU and the page-fault handler for a batch of accesses."""
        from cxlemu.kernel.mm.fault import handle_access
        self._check_alive()
        self._mm()
        self.in_kernel = True
        try:
            out = handle_access(self, np.asarray(vpns, np.int64), writes,
                                self.kernel.clock_ns if now is None else now)
        finally:
            self.in_kernel = False
        if not self.alive:
            self._exit_mm()
        return out

    def kill(self, signal: str, reason: str, oom: bool = False) -> None:
        if not self.alive:
            return
        self.alive = False
        self.exit_signal = signal
        self.exit_reason = reason
        self.oom_killed = self.oom_killed or oom
        if not self.in_kernel:
            self._exit_mm()

    def exit(self, code: int = 0) -> None:
        """exit(): the mm goes, with every page, swap slot and file of the task."""
        if self.alive:
            self.alive = False
            self.exit_reason = f"exit {code}"
        self._exit_mm()

    def _exit_mm(self) -> None:
        mm = self.mm
        vm = self.vm
        if mm is not None:
            for v in list(mm.vmas):
                self._zap_vma(v)
            mm.vmas.clear()
            vm.spaces.pop(mm.id, None)
            self.mm = None
        for fid in list(self.files):
            f = vm.spaces.get(fid)
            if f is not None:
                f.unlinked = True
                f.mappers.clear()
                self._maybe_drop_file(f)
        self.files.clear()
        if not getattr(self, "reaped", False):
            self.reaped = True
            self.kernel.sched.reap(self)
        vm.frames_put()
