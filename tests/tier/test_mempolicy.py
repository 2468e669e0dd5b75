"""Memory policies (mm/mempolicy.c): validation and errnos, STATIC/RELATIVE
nodes and rebinding, weighted-interleave weights, placement of pages, and
the seed's "bind to all possible nodes" case."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.kernel.base.device import KernelError
from cxlemu.kernel.mm import mempolicy as mp
from cxlemu.kernel.syscalls import Process

from .support import tiered


def _err(fn, *a):
    with pytest.raises(KernelError) as e:
        fn(*a)
    return e.value.errno


def test_mpol_new_rejects_what_the_kernel_rejects():
    allowed = (0, 1)
    assert _err(mp.mpol_new, 7, (0,), allowed) == errno.EINVAL                      # mode >= MPOL_MAX
    assert _err(mp.mpol_new, mp.MPOL_BIND | mp.MPOL_F_STATIC_NODES | mp.MPOL_F_RELATIVE_NODES, (0,),
                allowed) == errno.EINVAL
    assert _err(mp.mpol_new, mp.MPOL_INTERLEAVE | mp.MPOL_F_NUMA_BALANCING, (0,), allowed) == errno.EINVAL
    assert _err(mp.mpol_new, mp.MPOL_DEFAULT, (0,), allowed) == errno.EINVAL            # default with nodes
    assert _err(mp.mpol_new, mp.MPOL_BIND, (), allowed) == errno.EINVAL                 # empty nodemask
    assert _err(mp.mpol_new, mp.MPOL_LOCAL, (1,), allowed) == errno.EINVAL
    assert _err(mp.mpol_new, mp.MPOL_PREFERRED | mp.MPOL_F_STATIC_NODES, (), allowed) == errno.EINVAL
    assert _err(mp.mpol_new, mp.MPOL_BIND, (5,), allowed) == errno.EINVAL               # no allowed node left
    assert _err(mp.mpol_new, mp.MPOL_WEIGHTED_INTERLEAVE, (0,), allowed, (6, 8)) == errno.EINVAL  # before 6.9
    assert mp.mpol_new(mp.MPOL_DEFAULT, (), allowed) is None
    assert mp.mpol_new(mp.MPOL_PREFERRED, (), allowed).mode == mp.MPOL_LOCAL           # empty preferred = local
    p = mp.mpol_new(mp.MPOL_BIND, (1, 5), allowed)
    assert p.nodes == (1,)                                                              # intersected
    assert mp.mpol_new(mp.MPOL_PREFERRED, (1, 0), allowed).nodes == (0,)               # first node


def test_relative_nodes_and_remap():
    assert mp.relative_nodemask((0, 1), (2, 5, 7)) == (2, 5)
    assert mp.relative_nodemask((3,), (2, 5, 7)) == (2,)          # folded modulo the weight
    p = mp.mpol_new(mp.MPOL_BIND | mp.MPOL_F_RELATIVE_NODES, (1,), (0, 1))
    assert p.nodes == (1,)
    mp.rebind(p, (0, 2, 3))
    assert p.nodes == (2,)
    assert mp.nodes_remap((0, 1), (0, 1), (0, 1, 2)) == (0, 1)


def test_static_nodes_follow_new_nodes_and_plain_bind_does_not():
    """LSF/MM 2023: bind to all *possible* nodes so a node onlined later is used."""
    static = mp.mpol_new(mp.MPOL_BIND | mp.MPOL_F_STATIC_NODES, (0, 1, 2, 3), (0,))
    plain = mp.mpol_new(mp.MPOL_BIND, (0, 1, 2, 3), (0,))
    assert static.nodes == plain.nodes == (0,)
    mp.rebind(static, (0, 2))
    mp.rebind(plain, (0, 2))
    assert static.nodes == (0, 2)
    assert plain.nodes == (0,)


def test_auto_weights_are_bandwidth_shares_scaled_to_32_and_gcd_reduced():
    assert mp.auto_weights({0: 100, 1: 50}) == {0: 21, 1: 10}      # 32*100//150, 32*50//150
    assert mp.auto_weights({0: 300, 1: 100}) == {0: 3, 1: 1}        # 24:8, divided by the GCD
    w = mp.auto_weights({0: 26880, 1: 17664})
    assert w == {0: 19, 1: 12}                        # 32*26880//44544, 32*17664//44544
    assert mp.auto_weights({0: 100, 1: 0}) == {0: 32, 1: 1}     # no bandwidth data: weight 1
    assert mp.auto_weights({0: 1000, 1: 1000, 2: 1000}) == {0: 1, 1: 1, 2: 1}


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.integers(0, 8), st.integers(0, 10 ** 7), min_size=1, max_size=8))
def test_auto_weights_range(bw):
    w = mp.auto_weights(bw)
    assert set(w) == set(bw)
    assert all(1 <= x <= 32 for x in w.values())


def test_placement_interleave_and_weighted():
    wi = mp.WeightedInterleave({0: 3, 1: 1}, False)
    pol = mp.mpol_new(mp.MPOL_WEIGHTED_INTERLEAVE, (0, 1), (0, 1))
    st_ = [-1, 0]
    a = mp.placement(pol, 8, 0, None, st_, wi).nid.tolist()
    assert a == [0, 0, 0, 1, 0, 0, 0, 1]
    b = mp.placement(pol, 3, 0, None, st_, wi).nid.tolist()     # continues where it stopped
    assert b == [0, 0, 0]
    v = mp.placement(pol, 4, 0, np.arange(4, 8), None, wi).nid.tolist()   # VMA policy: by offset
    assert v == [0, 0, 0, 1]
    il = mp.mpol_new(mp.MPOL_INTERLEAVE, (0, 1), (0, 1))
    assert mp.placement(il, 4, 0, None, [-1, 0], None).nid.tolist() == [0, 1, 0, 1]


def test_set_mempolicy_through_a_process_and_numastat_events():
    b = tiered("2G", "8G")
    k = b.kernel
    p = Process.new(k, "t")
    with pytest.raises(OSError) as e:
        p.set_mempolicy(mp.MPOL_BIND, (7,))            # a node that does not exist
    assert e.value.errno == errno.EINVAL
    p.set_mempolicy(mp.MPOL_BIND, (1,))
    assert p.get_mempolicy() == (mp.MPOL_BIND, (1,))
    addr = p.mmap(64 << 20, "buf")
    v = p.task.mm.vmas[0]
    p.task.access(np.arange(v.start, v.end), None)
    assert p.get_mempolicy(mp.MPOL_F_NODE | mp.MPOL_F_ADDR, addr) == (1, ())
    nodes = np.bincount(k.mm.vm.frames.node[p.task.mm.pt[v.start:v.end].astype(np.int64)])
    assert nodes.tolist() == [0, 16384]
    ns1 = b.read("/sys/devices/system/node/node1/numastat")
    assert "numa_hit 16384" in ns1 and "other_node 16384" in ns1
    p.set_mempolicy(mp.MPOL_WEIGHTED_INTERLEAVE, (0, 1))
    b.write("/sys/kernel/mm/mempolicy/weighted_interleave/node0", "3")
    b.write("/sys/kernel/mm/mempolicy/weighted_interleave/node1", "1")
    p.mmap(16 << 20, "wi")
    w = p.task.mm.vmas[1]
    p.task.access(np.arange(w.start, w.end), None)
    got = np.bincount(k.mm.vm.frames.node[p.task.mm.pt[w.start:w.end].astype(np.int64)])
    assert got.tolist() == [3072, 1024]
    p.exit()


def test_weighted_interleave_sysfs_abi():
    b = tiered()
    d = "/sys/kernel/mm/mempolicy/weighted_interleave/"
    assert sorted(b.listdir(d)) == ["node0", "node1"]            # profile 6.9: no auto file
    assert b.read(d + "node0") == "1\n"
    for bad in ("0", "256", "", "abc", "-1"):
        with pytest.raises(OSError) as e:
            b.write(d + "node0", bad)
        assert e.value.errno == errno.EINVAL
    b.write(d + "node1", "0x10")
    assert b.read(d + "node1") == "16\n"


def test_weighted_interleave_auto_mode_on_6_17():
    b = tiered("2G", "8G", "boot.kernel=6.17")
    d = "/sys/kernel/mm/mempolicy/weighted_interleave/"
    assert b.read(d + "auto") == "true\n"
    w0, w1 = int(b.read(d + "node0")), int(b.read(d + "node1"))
    assert (w0, w1) == (19, 12)                  # 26880 vs 17664 MB/s (HMAT / CDAT)
    b.write(d + "node1", "5")                    # a manual weight switches auto off
    assert b.read(d + "auto") == "false\n"
    assert int(b.read(d + "node0")) == 19 and b.read(d + "node1") == "5\n"
    b.write(d + "auto", "1")
    assert b.read(d + "node1") == "12\n"


def test_bind_to_all_possible_nodes_uses_a_node_onlined_later():
    """The seed's case: a task binds (MPOL_F_STATIC_NODES) to every possible
    node; CXL memory is onlined afterwards; new pages go there."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cxltest_support import boot_text
    from mm.support import daxctl, ram_region, topo
    b = boot_text(topo(nodes=1, dram="2G", dev_size="1G", devices=1, window="4G"))
    k = b.kernel
    possible = k.mm.numa.possible()
    assert possible == [0, 1] and k.mm.numa.state_nodes("memory") == [0]
    static = Process.new(k, "static")
    plain = Process.new(k, "plain")
    static.set_mempolicy(mp.MPOL_BIND | mp.MPOL_F_STATIC_NODES, possible)
    plain.set_mempolicy(mp.MPOL_BIND, possible)
    assert static.task.mempolicy.nodes == plain.task.mempolicy.nodes == (0,)
    dev = ram_region(b, 1 << 30)
    assert daxctl(b, "reconfigure-device", "--mode=system-ram", "--force", dev).rc == 0
    assert k.mm.numa.state_nodes("memory") == [0, 1]
    assert static.task.mempolicy.nodes == (0, 1)          # rebound by the cpuset update
    assert plain.task.mempolicy.nodes == (0,)
    # weighted interleave over the static policy's nodes now reaches node 1
    static.set_mempolicy(mp.MPOL_INTERLEAVE | mp.MPOL_F_STATIC_NODES, possible)
    static.mmap(8 << 20, "x")
    v = static.task.mm.vmas[0]
    static.task.access(np.arange(v.start, v.end), None)
    nodes = np.bincount(k.mm.vm.frames.node[static.task.mm.pt[v.start:v.end].astype(np.int64)])
    assert nodes.tolist() == [1024, 1024]


def test_mbind_move_and_strict():
    b = tiered()
    k = b.kernel
    p = Process.new(k, "m")
    addr = p.mmap(32 << 20, "data")
    v = p.task.mm.vmas[0]
    p.task.access(np.arange(v.start, v.end), None)
    with pytest.raises(OSError) as e:
        p.mbind(addr, 32 << 20, mp.MPOL_BIND, (1,), mp.MPOL_MF_STRICT)
    assert e.value.errno == errno.EIO
    with pytest.raises(OSError) as e:
        p.mbind(addr + 4096 * 10 ** 6, 4096, mp.MPOL_BIND, (1,))
    assert e.value.errno == errno.EFAULT
    with pytest.raises(OSError) as e:
        p.mbind(addr + 1, 4096, mp.MPOL_BIND, (1,))
    assert e.value.errno == errno.EINVAL
    before = k.mm.vm.vmstat.events["pgmigrate_success"]
    p.mbind(addr, 32 << 20, mp.MPOL_BIND, (1,), mp.MPOL_MF_MOVE)
    assert k.mm.vm.vmstat.events["pgmigrate_success"] - before == 8192
    fr = p.task.mm.pt[v.start:v.end].astype(np.int64)
    assert set(k.mm.vm.frames.node[fr].tolist()) == {1}
    assert "bind:1" in b.read(f"/proc/{p.pid}/numa_maps")
