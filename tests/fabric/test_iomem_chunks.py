"""/proc/iomem with memory that comes and goes in chunks: adds and releases
in random order leave a tree with no overlaps and no leaks."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.fabric import rack
from cxlemu.hw.dcd import DcdError
from cxlemu.hw.mailbox import dcd_payloads as D
from cxlemu.kernel.cxl import dcd
from cxlemu.kernel.resource import Resource
from cxlemu.machine import rackhost
from cxlemu.machine.store import Store

from .rackutil import make_rack

M256 = 256 << 20


def merge(spans) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def check_tree(res: Resource) -> None:
    prev_end = None
    for c in res.children:
        assert res.start <= c.start <= c.end <= res.end, (res.name, c.name)
        if prev_end is not None:
            assert c.start > prev_end, f"{c.name} overlaps its sibling"
        prev_end = c.end
        check_tree(c)


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5), st.integers(1, 4)), min_size=1, max_size=14),
       st.integers(0, 10**6))
def test_random_adds_and_releases(ops, salt):
    import os
    os.environ["CXLEMU_HOME"] = os.environ["CXLEMU_HOME"].rsplit("/iomem-", 1)[0] + f"/iomem-{salt}-{len(ops)}"
    name = "io"
    try:
        make_rack(name, hosts=1, cap="4G")
    except Exception:
        rack.remove(name)
        make_rack(name, hosts=1, cap="4G")
    st_ = rack.appliance_store(name, "pool0")
    with Store().open(f"{name}/host0") as m:
        k = m.kernel
        held: dict[str, int] = {}
        for add, t, blocks in ops:
            tg = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"t{t}"))
            with st_.transaction() as d:
                try:
                    if add:
                        d.initiate_add(D.FmInitiateDcAdd(0, D.SelectionPolicy.FREE, 0, blocks * M256,
                                                         uuid.UUID(tg).bytes))
                    elif tg in held:
                        d.initiate_release(D.FmInitiateDcRelease(0, 0, 0, 0, uuid.UUID(tg).bytes))
                except DcdError:
                    pass
            rackhost.service(m)
            held = {a["tag"]: a["bytes"] for a in dcd.allocations(k)}
            check_tree(k.iomem)
            dax_res = [r for _, r in k.iomem.walk() if r.name.startswith("dax0.") and r.busy]
            dev = st_.read()
            assert len(dax_res) == sum(len(dev.tag_extents(tg2)) for tg2 in held)      # one sibling per chunk
            assert sum(r.size for r in dax_res) == sum(held.values())
            base = k.cxl.regions.all()[0].res.start
            assert merge((r.start, r.end + 1) for r in dax_res) == [(base + a, base + b) for a, b in dev.access_ranges(0)]
    # release everything: nothing left behind
    for tg in list(held):
        with st_.transaction() as d:
            d.initiate_release(D.FmInitiateDcRelease(0, 0, 0, 0, uuid.UUID(tg).bytes))
    with Store().open(f"{name}/host0") as m:
        assert dcd.allocations(m.kernel) == []
        assert not [r for _, r in m.kernel.iomem.walk() if r.name.startswith("dax0.")]
        check_tree(m.kernel.iomem)
    assert st_.read().extents == []
    rack.remove(name)
