"""A workload consumes poison (kernel/mm/mce.py, kernel/mm/fault.py,
sim/engine.py): the first access of a batch to a page whose CXL media holds
poison is a machine check; memory_failure(pfn, MF_ACTION_REQUIRED) isolates
the page, the task gets SIGBUS (BUS_MCEERR_AR) and stops at that access,
the run reports it and the other processes go on.  With no poison the check
costs nothing and changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from cxlemu.kernel.mm import mce
from cxlemu.kernel.mm.frames import PG_HWPOISON
from cxlemu.kernel.mm.mempolicy import MPOL_BIND
from cxlemu.sim.engine import run
from cxlemu.kernel.syscalls import Process
from cxlemu.userspace import workloads as W
from cxlemu.userspace.spec import ProcSpec

from .support import tiered
from .test_engine import check_invariants

PAGE = 4096
TR = "/sys/kernel/tracing"


def machine():
    return tiered("512M", "2G")


def region_start(b) -> int:
    return int(b.read("/sys/bus/cxl/devices/region0/resource"), 0)


def inject_pfn(b, pfn: int, line: int = 1) -> None:
    """Poison one line of ``pfn`` through the kernel's debugfs (region0 is
    1-way: DPA = HPA - region start)."""
    dpa = pfn * PAGE - region_start(b) + 64 * line
    b.write(f"/sys/kernel/debug/cxl/mem0/inject_poison", hex(dpa))


def specs(write_ratio: float = 0.0):
    return [ProcSpec(W.SeqScan(rss="64M", write_ratio=write_ratio), name="scan", policy=(MPOL_BIND, (1,))),
            ProcSpec(W.SeqScan(rss="16M"), name="bystander", policy=(MPOL_BIND, (0,)))]


def hwc(b) -> int:
    return int(next(x for x in b.read("/proc/meminfo").splitlines()
                    if x.startswith("HardwareCorrupted:")).split()[1])


def first_node1_pfn(b) -> int:
    """The pfn of node 1 a seqscan bound there touches in its 17th page
    (allocation is deterministic: learnt on an identical machine)."""
    b2 = machine()
    r = run(b2.kernel, specs(), accesses=200_000, seed=1, keep=True)
    mm = r.processes_live[0].task.mm
    v = mm.vma_by_name("scan")
    f = int(mm.pt[v.start + 16])
    assert f >= 0
    return int(b2.kernel.mm.vm.frames.pfn(np.array([f]))[0])


@pytest.fixture(scope="module")
def victim_pfn():
    return first_node1_pfn(machine())


@pytest.mark.parametrize("write_ratio", [0.0, 1.0])
def test_the_toucher_gets_sigbus_and_the_others_go_on(victim_pfn, write_ratio):
    b = machine()
    k = b.kernel
    b.write(f"{TR}/events/ras/memory_failure_event/enable", "1")
    inject_pfn(b, victim_pfn)
    assert hwc(b) == 0
    r = run(k, specs(write_ratio), accesses=4_000_000, seed=1)
    mf = r.memory_failures
    assert len(mf) == 1
    f = mf[0]
    assert (f["pfn"], f["node"], f["comm"], f["page_type"], f["result"], f["killed"]) == \
        (victim_pfn, 1, "scan", "dirty LRU page", "Recovered", True)
    assert [(s["comm"], s["signal"], s["si_code"]) for s in f["signals"]] == [("scan", "SIGBUS", "BUS_MCEERR_AR")]
    procs = {p["comm"]: p for p in r.processes}
    assert procs["scan"]["exit"].startswith("SIGBUS: SIGBUS (BUS_MCEERR_AR)")
    # the victim stopped at its 17th page: 16 pages of 64 lines, nothing after
    assert procs["scan"]["accesses"] == 16 * 64
    # the bystander on node 0 ran the whole run
    assert procs["bystander"]["exit"] == "exited"
    assert procs["bystander"]["accesses"] == r.accesses - 16 * 64
    d = r.to_dict()
    assert d["memory_failures"] == mf
    assert f"memory failure: pfn {victim_pfn:#x} (node 1) touched by scan:" in r.summary()
    assert "SIGBUS (BUS_MCEERR_AR) to scan:" in r.summary()
    # the kernel side: the page is isolated and counted
    assert hwc(b) == 4
    assert k.mm.failure.is_poisoned(victim_pfn)
    pf = k.mm.vm.frames
    assert pf is None or pf.flags[pf.frame_of_pfn(victim_pfn)] & PG_HWPOISON
    assert b.read("/sys/devices/system/node/node1/memory_failure/recovered") == "1\n"
    assert b.read("/sys/devices/system/node/node0/memory_failure/total") == "0\n"
    trace = b.read(f"{TR}/trace")
    line = next(x for x in trace.splitlines() if "memory_failure_event:" in x)
    assert line.split()[0].startswith("scan-")          # recorded on behalf of the task that touched it
    assert line.endswith(f"memory_failure_event: pfn {victim_pfn:#x}: recovery action for dirty LRU page: "
                         f"Recovered")
    log = "\n".join(k.dmesg)
    assert f"Memory failure: {victim_pfn:#x}: Sending SIGBUS to scan:" in log
    assert "mce: Uncorrected hardware memory error in user-access at" in log
    check_invariants(k)


def test_the_retired_page_is_never_handed_out_again(victim_pfn):
    b = machine()
    k = b.kernel
    inject_pfn(b, victim_pfn)
    assert len(run(k, specs(), accesses=2_000_000, seed=1).memory_failures) == 1
    # the device still holds the poison, but the page is retired: a new run
    # bound to node 1 gets other pages and consumes nothing
    r = run(k, specs(), accesses=2_000_000, seed=2)
    assert r.memory_failures == [] and all(p["exit"] == "exited" for p in r.processes)
    assert hwc(b) == 4
    check_invariants(k)


def test_clean_page_cache_is_dropped_and_the_task_goes_on():
    b = machine()
    k = b.kernel
    p = Process.new(k, "reader")
    p.set_mempolicy(MPOL_BIND, (1,))
    a = p.mmap(16 * PAGE, "cache", kind="file")
    mm = p.task.mm
    v0 = mm.vpn_of_addr(a)
    vp = np.arange(v0, v0 + 16)
    p.task.access(vp, None)
    f = int(mm.pt[v0 + 5])
    pfn = int(k.mm.vm.frames.pfn(np.array([f]))[0])
    assert k.mm.blocks[pfn // k.mm.pages_per_block].nid == 1
    inject_pfn(b, pfn, line=7)
    maj = k.mm.vm.vmstat.events.get("pgmajfault", 0)
    out = p.task.access(vp, None)
    # kill_me_maybe: memory_failure returned 0 without a signal; the load
    # runs again and reads the file page into a new frame
    assert p.alive and out.stop < 0 and out.frames.size == 16
    assert [o.type_name for o in out.mce] == ["clean LRU page"] and out.mce[0].kills == ()
    assert int(out.frames[5]) != f and int(mm.pt[v0 + 5]) == int(out.frames[5])
    assert k.mm.vm.vmstat.events.get("pgmajfault", 0) == maj + 1
    assert hwc(b) == 4
    check_invariants(k)


def test_a_page_poisoned_again_after_it_was_retired_is_ehwpoison():
    """memory_failure on a page already HWPoison: -EHWPOISON, SIGBUS to the
    toucher (kill_me_maybe does nothing more)."""
    b = machine()
    k = b.kernel
    p = Process.new(k, "t")
    a = p.mmap(4 * PAGE, "d")
    v0 = p.task.mm.vpn_of_addr(a)
    p.task.access(np.arange(v0, v0 + 4), None)
    f = int(p.task.mm.pt[v0 + 1])
    pfn = int(k.mm.vm.frames.pfn(np.array([f]))[0])
    k.mm.failure._mark(pfn)                 # HWPoison already (as if soft-offlined by someone else)
    out = mce.machine_check(p.task, f, p.task.mm.vpn_addr(v0 + 1))
    assert out.ret == -133 and not p.alive and p.task.exit_signal == "SIGBUS"


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "wall_seconds"}


def test_no_poison_no_check_and_untouched_poison_changes_nothing(monkeypatch, victim_pfn):
    calls = []
    real = mce.first_poisoned

    def counting(frames, bad):
        calls.append(frames.size)
        return real(frames, bad)

    monkeypatch.setattr(mce, "first_poisoned", counting)
    # no poison anywhere: the check is skipped entirely
    clean = run(machine().kernel, specs(), accesses=3_000_000, seed=5)
    assert calls == [] and clean.memory_failures == []
    # poison on a node-1 page nobody touches: every batch is checked, and
    # the run is the same run, counter for counter
    b = machine()
    inject_pfn(b, victim_pfn + 100_000)
    checked = run(b.kernel, specs(), accesses=3_000_000, seed=5)
    assert calls and checked.memory_failures == []
    assert _strip(checked.to_dict(timeline=True)) == _strip(clean.to_dict(timeline=True))
    assert "memory_failures" not in clean.to_dict()
    assert hwc(b) == 0


def test_first_poisoned_is_the_first_access():
    bad = np.array([3, 10, 40], np.int64)
    assert mce.first_poisoned(np.array([1, 2, 40, 10, 3]), bad) == 2
    assert mce.first_poisoned(np.array([1, 2, 4]), bad) == -1
    assert mce.first_poisoned(np.zeros(0, np.int64), bad) == -1
    assert mce.first_poisoned(np.array([41, 50]), bad) == -1
