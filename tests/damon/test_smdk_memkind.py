"""SMDK (CXLMALLOC_CONF and libcxlmalloc's pools, the s_malloc API, MAP_EXMEM /
MAP_NORMAL), ZONE_EXMEM as a boot alternative, and memkind's kinds (their
nodes from sysfs, ENOMEM versus fallback, environment variables, PMEM
kinds over device DAX)."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.kernel.mm import mempolicy as mp
from cxlemu.kernel.mm.mmap import MMAP_BASE
from cxlemu.kernel.syscalls import Process
from cxlemu.sim.allocproc import AllocatorProcess
from cxlemu.userspace.allocator import NodeInfo
from cxlemu.userspace.memkind import KINDS, MemkindAllocator, MemkindError, create_pmem, plan
from cxlemu.userspace.smdk import MAP_EXMEM, MAP_NORMAL
from cxlemu.userspace.smdk.cxlmalloc import UNLIMITED, CxlMalloc, conf_pairs, parse_conf
from cxlemu.userspace.smdk.smalloc import SMDK_MEM_EXMEM, SMDK_MEM_NORMAL, Smalloc

from .support import MiB, machine

ZONE = "boot.cxl_zone=exmem"


def touch(p, addr: int, length: int):
    """Fault ``length`` bytes at ``addr`` in; the node of each page."""
    v0 = (addr - MMAP_BASE) >> 12
    out = p.task.access(np.arange(v0, v0 + (length >> 12)), None)
    return out.node


def zone_of(k, frames) -> set[str]:
    from cxlemu.kernel.mm.exmem import zone_name
    frames = np.asarray(frames, np.int64)
    z = k.mm.vm.frames.zone[frames[frames >= 0]]
    return {zone_name(k, int(x)) for x in np.unique(z)}


def alloc_proc(b, allocator):
    t = b.kernel.sched.create_task("app")
    return AllocatorProcess(b.kernel, t, allocator)


# ---- CXLMALLOC_CONF ------------------------------------------------------------------------------
def test_conf_defaults_and_values():
    c = parse_conf("")
    assert (c.use_exmem, c.prio, c.normal_size_mb, c.exmem_size_mb, c.maxmemory_policy) == \
        (True, ("normal", "exmem"), UNLIMITED, UNLIMITED, "oom")
    c = parse_conf("use_exmem:true,exmem_size:2g,normal_size:512m,maxmemory_policy:remain,priority:exmem,"
                   "exmem_partition_range:1,2")
    assert c.exmem_size_mb == 2048 and c.normal_size_mb == 512
    assert c.prio == ("exmem", "normal") and c.maxmemory_policy == "remain"
    assert c.exmem_partition_range == "1,2" and not c.warnings
    assert parse_conf("normal_size:-1").normal_size_mb == UNLIMITED
    assert parse_conf("maxmemory_policy:whatever").maxmemory_policy == "oom"     # SMDK: anything else is oom
    c = parse_conf("use_adaptive_interleaving:true,priority:exmem,normal_size:16,adaptive_interleaving_policy:x")
    assert c.prio == ("normal", "exmem") and c.normal_size_mb == c.exmem_size_mb == UNLIMITED
    assert "Note: invalid adaptive_interleaving_policy:x, use default policy (bw_saturation)" in c.warnings
    assert any(w.startswith("*** use_adaptive_interleaving:true") for w in c.warnings)


def test_conf_grammar_is_jemallocs():
    assert conf_pairs("a:1,b:2") == ([("a", "1"), ("b", "2")], [])
    assert conf_pairs("a:1,")[1] == ["Conf string ends with comma"]
    assert conf_pairs("a:1,b")[1] == ["Conf string ends with key"]
    assert conf_pairs("a=1") == ([], ["Malformed conf string"])
    assert parse_conf("use_exmem:yes").warnings == ["Invalid conf value: use_exmem:yes"]
    assert parse_conf("exmem_size:0").warnings == ["Out-of-range conf value: exmem_size:0"]
    assert parse_conf("exmem_size:lots").warnings == ["Invalid conf value: exmem_size:lots"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_conf_never_a_traceback(s):
    c = parse_conf(s)
    assert c.prio in (("normal", "exmem"), ("exmem", "normal"))
    assert c.maxmemory_policy in ("oom", "interleave", "remain")


# ---- libcxlmalloc's pools ---------------------------------------------------------------------------
def test_priority_flips_at_the_pool_limit_then_maxmemory_policy():
    b = machine("1G", "2G")
    a = CxlMalloc("priority:exmem,exmem_size:64,normal_size:32,maxmemory_policy:oom", b)
    p = alloc_proc(b, a)
    x = p.mmap(48 * MiB, "a")                       # exmem (48 of 64)
    assert set(touch(p, x, 48 * MiB).tolist()) == {1}
    y = p.mmap(32 * MiB, "b")                       # does not fit exmem: flips to normal for good
    assert set(touch(p, y, 32 * MiB).tolist()) == {0}
    assert a.flips == 1
    with pytest.raises(OSError) as e:               # both full: oom -> the allocation fails
        p.mmap(8 * MiB, "c")
    assert e.value.errno == errno.ENOMEM and a.failed == 1
    st_ = a.stats()
    assert st_["pools"] == {"normal": 32 * MiB, "exmem": 48 * MiB}
    # freeing frees the pool's budget (the priority stays flipped)
    p.munmap(y, 32 * MiB)
    z = p.mmap(16 * MiB, "d")
    assert set(touch(p, z, 16 * MiB).tolist()) == {0}


@pytest.mark.parametrize("policy,expect", [("remain", [1, 1]), ("interleave", [1, 0])])
def test_maxmemory_policy_after_both_limits(policy, expect):
    b = machine("1G", "2G")
    a = CxlMalloc(f"priority:normal,normal_size:16,exmem_size:16,maxmemory_policy:{policy}", b)
    p = alloc_proc(b, a)
    p.mmap(16 * MiB, "n")
    p.mmap(16 * MiB, "e")
    nodes = []
    for i in range(2):
        x = p.mmap(4 * MiB, f"x{i}")
        nodes.append(int(np.unique(touch(p, x, 4 * MiB))[0]))
    # remain: stay on the second pool (exmem, node 1); interleave: alternate the pools
    assert nodes == expect
    assert a.after_full == 2


def test_use_exmem_false_and_partition_range():
    b = machine("1G", "2G")
    a = CxlMalloc("use_exmem:false,priority:exmem", b)
    p = alloc_proc(b, a)
    x = p.mmap(8 * MiB, "a")
    assert set(touch(p, x, 8 * MiB).tolist()) == {0}       # the default policy: local DRAM
    a = CxlMalloc("priority:exmem,exmem_partition_range:7", b)   # no such node: the CXL nodes
    assert a.exmem_nodes == [1]


# ---- the optimization API ---------------------------------------------------------------------------------
def test_s_malloc_types_sizes_and_interleave():
    b = machine("1G", "2G")
    p = Process.new(b.kernel, "opt")
    s = Smalloc(p, b)
    assert s.s_get_memsize_total(SMDK_MEM_EXMEM) == NodeInfo.read(b).total[1]
    assert s.s_get_memsize_total(SMDK_MEM_NORMAL) == NodeInfo.read(b).total[0]
    x = s.s_malloc(SMDK_MEM_EXMEM, 16 * MiB)
    y = s.s_malloc(SMDK_MEM_NORMAL, 8 * MiB)
    assert set(touch(p, x, 16 * MiB).tolist()) == {1}
    assert set(touch(p, y, 8 * MiB).tolist()) == {0}
    assert s.s_get_memsize_used(SMDK_MEM_EXMEM) == 16 * MiB
    avail = s.s_get_memsize_node_available(SMDK_MEM_EXMEM, 1)
    assert avail == NodeInfo.read(b).free[1] and avail <= 2048 * MiB - 16 * MiB
    assert s.s_get_memsize_node_total(SMDK_MEM_EXMEM, 0) == 0           # node 0 is not EXMEM
    assert s.s_malloc_node(SMDK_MEM_EXMEM, MiB, 0) is None              # NULL: no EXMEM on node 0
    z = s.s_malloc_node(SMDK_MEM_EXMEM, 4 * MiB, 1)
    assert set(touch(p, z, 4 * MiB).tolist()) == {1}
    s.s_free(x)
    assert s.s_get_memsize_used(SMDK_MEM_EXMEM) == 4 * MiB
    with pytest.raises(OSError) as e:
        s.s_malloc(7, MiB)
    assert e.value.errno == errno.EINVAL
    assert s.s_enable_node_interleave("0-1") == 0
    w = s.s_malloc(SMDK_MEM_EXMEM, 8 * MiB)
    got = touch(p, w, 8 * MiB)
    assert np.bincount(got, minlength=2).tolist() == [1024, 1024]      # MPOL_INTERLEAVE over 0,1
    s.s_disable_node_interleave()
    assert s.s_enable_node_interleave("5") == -1
    assert s.s_posix_memalign(SMDK_MEM_NORMAL, 3, 64)[0] == errno.EINVAL
    assert s.s_malloc(SMDK_MEM_NORMAL, 0) is None


def test_map_exmem_and_map_normal_in_node_mode():
    """Without ZONE_EXMEM, MAP_EXMEM means the CPU-less (CXL) nodes and
    MAP_NORMAL the nodes with CPUs; neither: anywhere (the task's policy)."""
    b = machine("1G", "2G")
    p = Process.new(b.kernel, "m")
    x = p.task.mmap(8 * MiB, "e", map_flags=MAP_EXMEM)
    y = p.task.mmap(8 * MiB, "n", map_flags=MAP_NORMAL)
    assert set(touch(p, x, 8 * MiB).tolist()) == {1}
    assert set(touch(p, y, 8 * MiB).tolist()) == {0}
    with pytest.raises(OSError) as e:
        p.task.mmap(MiB, "both", map_flags=MAP_EXMEM | MAP_NORMAL)
    assert e.value.errno == errno.EINVAL
    # explicit CXL or fail: a MAP_EXMEM mapping larger than the CXL node kills the task, it never spills to DRAM
    z = p.task.mmap(3 << 30, "big", map_flags=MAP_EXMEM)
    v0 = (z - MMAP_BASE) >> 12
    out = p.task.access(np.arange(v0, v0 + (3 << 18)), None)
    assert set(np.unique(out.node).tolist()) <= {1}
    assert not p.alive or out.stop >= 0


# ---- ZONE_EXMEM ---------------------------------------------------------------------------------
def test_zone_exmem_boot_alternative_side_by_side():
    node = machine("1G", "2G")
    zone = machine("1G", "2G", ZONE)
    nh = node.read("/sys/devices/system/node/has_memory").strip()
    zh = zone.read("/sys/devices/system/node/has_memory").strip()
    assert (nh, zh) == ("0-1", "0")
    assert "Node 1, zone  Movable" in node.read("/proc/buddyinfo")
    assert "Node 0, zone    ExMem" in zone.read("/proc/buddyinfo")
    assert "Node 0, zone    ExMem" in zone.read("/proc/zoneinfo")
    # node 0 holds both: its MemTotal grows by the CXL capacity
    tz = NodeInfo.read(zone).total[0]
    tn = NodeInfo.read(node).total
    assert abs(tz - (tn[0] + tn[1])) <= 64 * MiB
    # mempolicy: there is no CXL node to bind to
    p = Process.new(zone.kernel, "app")
    with pytest.raises(OSError) as e:
        p.set_mempolicy(mp.MPOL_BIND, (1,))
    assert e.value.errno == errno.EINVAL
    # MAP_NORMAL never takes ZONE_EXMEM pages, MAP_EXMEM only those; an implicit
    # mapping goes down the zonelist (the highest zone, ExMem, first)
    x = p.task.mmap(64 * MiB, "ddr", map_flags=MAP_NORMAL)
    y = p.task.mmap(64 * MiB, "ex", map_flags=MAP_EXMEM)
    w = p.mmap(64 * MiB, "plain")
    for a in (x, y, w):
        touch(p, a, 64 * MiB)
    mm = p.task.mm

    def frames(a):
        v = (a - MMAP_BASE) >> 12
        return mm.pt[v:v + 16384] & ~(1 << 30)
    assert zone_of(zone.kernel, frames(x)) and "ExMem" not in zone_of(zone.kernel, frames(x))
    assert zone_of(zone.kernel, frames(y)) == {"ExMem"}
    assert zone_of(zone.kernel, frames(w)) == {"ExMem"}
    # unplug: the CXL memory blocks go offline like any movable memory
    blocks = [d for d in zone.listdir("/sys/devices/system/memory") if d.startswith("memory")]
    ex = [d for d in blocks if zone.read(f"/sys/devices/system/memory/{d}/valid_zones").strip() == "ExMem"]
    assert ex
    free_ex = [d for d in ex if d != ex[0]]
    zone.write(f"/sys/devices/system/memory/{free_ex[-1]}/state", "offline")
    assert zone.read(f"/sys/devices/system/memory/{free_ex[-1]}/state").strip() == "offline"


def test_zone_exmem_allocators():
    b = machine("1G", "2G", ZONE)
    a = CxlMalloc("priority:exmem", b)
    assert a.zone_mode and a.exmem_nodes == [0]
    p = alloc_proc(b, a)
    x = p.mmap(16 * MiB, "a")
    touch(p, x, 16 * MiB)
    fr = p.task.mm.pt[(x - MMAP_BASE) >> 12:((x - MMAP_BASE) >> 12) + 4096] & ~(1 << 30)
    assert zone_of(b.kernel, fr) == {"ExMem"}
    s = Smalloc(Process.new(b.kernel, "o"), b)
    assert s.zone_mode and s.s_malloc_node(SMDK_MEM_EXMEM, MiB, 0) is None


# ---- memkind ------------------------------------------------------------------------------------
def test_memkind_kinds_on_the_tiered_machine():
    b = machine("1G", "2G")
    info = NodeInfo.read(b)
    assert info.kmem == [1] and info.cpu == [0]
    want = {
        "MEMKIND_DEFAULT": (None, ()),
        "MEMKIND_REGULAR": (mp.MPOL_BIND, (0,)),
        "MEMKIND_DAX_KMEM": (mp.MPOL_BIND, (1,)),
        "MEMKIND_DAX_KMEM_ALL": (mp.MPOL_BIND, (1,)),
        "MEMKIND_DAX_KMEM_PREFERRED": (mp.MPOL_PREFERRED, (1,)),
        "MEMKIND_DAX_KMEM_INTERLEAVE": (mp.MPOL_INTERLEAVE, (1,)),
        "MEMKIND_HIGHEST_CAPACITY": (mp.MPOL_BIND, (1,)),
        "MEMKIND_LOWEST_LATENCY_LOCAL": (mp.MPOL_BIND, (0,)),
        "MEMKIND_HIGHEST_BANDWIDTH_LOCAL": (mp.MPOL_BIND, (0,)),
    }
    for kind, (mode, nodes) in want.items():
        pl = plan(kind, info, 0, env={})
        assert (pl.mode, pl.nodes) == (mode, nodes), kind
    # HBW: no node reaches the default threshold (204800 MB/s) ...
    with pytest.raises(MemkindError) as e:
        plan("MEMKIND_HBW", info, 0, env={})
    assert e.value.errno == errno.ENOMEM
    # ... until the threshold is lowered, or the nodes are named
    bw0 = info.read_bandwidth[0]
    assert plan("MEMKIND_HBW", info, 0, env={"MEMKIND_HBW_THRESHOLD": str(bw0)}).nodes == (0,)
    assert plan("MEMKIND_HBW_PREFERRED", info, 0, env={"MEMKIND_HBW_NODES": "1"}).nodes == (1,)
    assert plan("MEMKIND_DAX_KMEM", info, 0, env={"MEMKIND_DAX_KMEM_NODES": "0"}).nodes == (0,)
    with pytest.raises(MemkindError):
        plan("MEMKIND_NOPE", info, 0, env={})


def test_memkind_preferred_kind_refuses_equal_nodes():
    b = machine("1G", "2G")
    info = NodeInfo.read(b)
    info.kmem = [1]
    info.distance[0] = [10, 20, 20]
    info.memory = [0, 1, 2]
    with pytest.raises(MemkindError):
        plan("MEMKIND_DAX_KMEM_PREFERRED", info, 0, env={"MEMKIND_DAX_KMEM_NODES": "1,2"})
    assert plan("MEMKIND_DAX_KMEM_ALL", info, 0, env={"MEMKIND_DAX_KMEM_NODES": "1,2"}).nodes == (1, 2)


def test_memkind_enomem_versus_fallback():
    """A bound kind fails with ENOMEM when its node cannot hold the request;
    the preferred kind falls back to other nodes."""
    b = machine("1G", "512M")
    bound = MemkindAllocator("MEMKIND_DAX_KMEM", b, env={})
    p = alloc_proc(b, bound)
    with pytest.raises(OSError) as e:
        p.mmap(768 * MiB, "big")
    assert e.value.errno == errno.ENOMEM and bound.failed == 1
    pref = MemkindAllocator("MEMKIND_DAX_KMEM_PREFERRED", b, env={})
    q = alloc_proc(b, pref)
    x = q.mmap(768 * MiB, "big")
    nodes = touch(q, x, 768 * MiB)
    counts = np.bincount(nodes, minlength=2)
    assert counts[1] > 0 and counts[0] > 0            # the CXL node first, then DRAM


def test_pmem_kind_over_device_dax(tmp_path):
    """memkind_create_pmem() over a devdax namespace (ndctl create-namespace
    -m devdax): allocations are bytes on the device, persisted with
    pmem_persist, NULL beyond max_size, reused after free."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nvdimm"))
    from pmem_support import backend, ndctl, pmem_region
    b = backend(tmp_path)
    pmem_region(b)
    rc, _, err = ndctl(b, "create-namespace", "-m", "devdax", "-s", "64M")
    assert rc == 0, err
    kind = create_pmem(b, "/dev/dax0.0", 32 * MiB)
    buf = kind.malloc(4096)
    buf.mem[:5] = b"hello"
    kind.persist(buf)
    assert kind.usable() == 4096
    assert kind.malloc(64 * MiB) is None                 # beyond max_size: NULL (ENOMEM)
    kind.free(buf)
    again = kind.malloc(4096)
    assert again.offset == buf.offset
    # the bytes are the device's: a second mapping of dax0.0 reads them
    from cxlemu.data.dax_mapping import DaxDevice
    with DaxDevice.open(b, "/dev/dax0.0").mmap(2 * MiB) as m2:
        assert bytes(m2.view[buf.offset:buf.offset + 5]) == b"hello"
    with pytest.raises(MemkindError):
        create_pmem(b, "/dev/dax0.0", 1 * MiB)            # below MEMKIND_PMEM_MIN_SIZE
    with pytest.raises(MemkindError):
        create_pmem(b, "/dev/pmem0", 0)                   # fsdax: needs a DAX file system


def test_every_kind_plans_or_refuses_cleanly():
    b = machine("1G", "2G")
    info = NodeInfo.read(b)
    for kind in KINDS:
        try:
            pl = plan(kind, info, 0, env={})
        except MemkindError as e:
            assert e.errno in (errno.ENOMEM, errno.EINVAL)
            continue
        assert all(n in info.memory for n in pl.nodes)
