"""The page-allocation model (mm/page_alloc.c zonelists and GFP zone limits,
mm/memory_hotplug.c do_migrate_range)."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.kernel.base.device import KernelError
from cxlemu.kernel.mm.alloc import memmap_pages, take, zonelist_nodes
from cxlemu.kernel.mm.numa import default_distance
from cxlemu.kernel.mm.zones import ZONE_MOVABLE

from .support import MiB, boot_text, ram_region, topo

M = "/sys/devices/system/memory/"


def test_zonelist_nearest_node_first():
    assert zonelist_nodes(2, [0, 1, 2], default_distance) == [2, 0, 1]
    assert zonelist_nodes(1, [0, 2], default_distance) == [0, 2]
    assert zonelist_nodes(-1, [2, 0], default_distance) == [0, 2]


def test_take_is_greedy_and_all_or_nothing():
    assert take(5, iter([(1, 3), (2, 0), (3, 4)])) == {1: 3, 3: 2}
    assert take(10, iter([(1, 3), (3, 4)])) == {}


def test_memmap_is_64_bytes_per_page():
    assert memmap_pages(1 << 15) == 512            # 128 MiB -> 2 MiB of struct pages


def test_enomem_places_nothing():
    b = boot_text(topo(nodes=1, dram="1G"))
    mm = b.kernel.mm
    before = {i: (x.kernel, x.user) for i, x in mm.blocks.items()}
    with pytest.raises(KernelError) as e:
        mm.pages.alloc("kernel", 1 << 20, 0)
    assert e.value.errno == errno.ENOMEM
    assert {i: (x.kernel, x.user) for i, x in mm.blocks.items()} == before


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["kernel", "user", "free", "online_movable", "online_kernel",
                                            "offline"]),
                          st.integers(1, 6), st.integers(-1, 2)), max_size=14))
def test_allocation_invariants(ops):
    b = boot_text(topo(nodes=1, dram="1G"))
    dev = ram_region(b, 768 * MiB)
    mm = b.kernel.mm
    cxl_blocks = sorted(x.id for x in mm.blocks.values() if not x.early)
    for op, n, node in ops:
        try:
            if op in ("kernel", "user"):
                mm.pages.alloc(op, n * 8192, node)
            elif op == "free" and mm.pages.allocs:
                mm.pages.free(sorted(mm.pages.allocs)[n % len(mm.pages.allocs)])
            elif op.startswith("online") or op == "offline":
                blk = mm.blocks[cxl_blocks[n % len(cxl_blocks)]]
                b.write(M + blk.name + "/state", op + "\0")
        except (KernelError, OSError):
            pass
        for blk in mm.blocks.values():
            owners_k = sum(a.pieces.get(blk.id, 0) for a in mm.pages.allocs.values() if not a.movable)
            owners_u = sum(a.pieces.get(blk.id, 0) for a in mm.pages.allocs.values() if a.movable)
            assert (blk.kernel, blk.user) == (owners_k, owners_u)
            assert blk.free >= 0
            if blk.zone == ZONE_MOVABLE:
                assert blk.kernel == 0                   # never unmovable pages in ZONE_MOVABLE
            if not blk.online:
                assert blk.kernel == blk.user == 0
    assert dev
