"""The region ABI under the kernel's rules.  Each test names the function in
drivers/cxl/core/region.c (or hdm.c) the rule comes from."""

from __future__ import annotations

import errno
import uuid

import pytest

from cxltest_support import SZ_256M, bind, boot, boot_text, create_region, fabric_toml, r, reserve, w


def errno_of(fn) -> int:
    with pytest.raises(OSError) as ei:
        fn()
    return ei.value.errno


@pytest.fixture
def lab():
    return boot("cxl-test")


def new_region(b, root="decoder0.3", mode="pmem"):
    attr = "create_pmem_region" if mode == "pmem" else "create_ram_region"
    name = r(b, f"{root}/{attr}")
    w(b, f"{root}/{attr}", name)
    return name


# ---- create_region_store / cxl_region_release ---------------------------------------

def test_create_region_store_requires_the_cached_next_name(lab):
    nxt = r(lab, "decoder0.3/create_pmem_region")
    other = f"region{int(nxt[6:]) + 5}"
    assert errno_of(lambda: w(lab, "decoder0.3/create_pmem_region", other)) == errno.EBUSY
    assert errno_of(lambda: w(lab, "decoder0.3/create_pmem_region", "bogus")) == errno.EINVAL
    w(lab, "decoder0.3/create_pmem_region", nxt)
    assert lab.exists(f"/sys/bus/cxl/devices/decoder0.3/{nxt}")
    assert r(lab, "decoder0.3/create_pmem_region") != nxt


def test_cxl_region_release_reuses_the_lower_deleted_id(lab):
    a = new_region(lab)
    b_ = new_region(lab)
    w(lab, "decoder0.3/delete_region", a)
    assert r(lab, "decoder0.3/create_pmem_region") == a
    assert b_ != a


def test_delete_region_store_unknown_is_enodev(lab):
    assert errno_of(lambda: w(lab, "decoder0.3/delete_region", "region99")) == errno.ENODEV


def test_create_attrs_are_visible_by_capability(lab):
    assert lab.exists("/sys/bus/cxl/devices/decoder0.0/create_ram_region")
    assert not lab.exists("/sys/bus/cxl/devices/decoder0.0/create_pmem_region")
    assert lab.exists("/sys/bus/cxl/devices/decoder0.3/create_pmem_region")
    assert not lab.exists("/sys/bus/cxl/devices/decoder0.3/create_ram_region")


# ---- uuid_store ------------------------------------------------------------------------

def test_uuid_store_rules(lab):
    name = new_region(lab)
    u = str(uuid.uuid4())
    assert errno_of(lambda: lab.write(f"/sys/bus/cxl/devices/{name}/uuid", u)) == errno.EINVAL  # 36 bytes
    assert errno_of(lambda: w(lab, f"{name}/uuid", str(uuid.UUID(int=0)))) == errno.EINVAL
    w(lab, f"{name}/uuid", u)
    assert r(lab, f"{name}/uuid") == u
    other = new_region(lab)
    assert errno_of(lambda: w(lab, f"{other}/uuid", u)) == errno.EBUSY      # is_dup


def test_ram_region_uuid_is_read_only_and_empty(lab):
    name = new_region(lab, "decoder0.1", "ram")
    assert r(lab, f"{name}/uuid") == ""
    assert errno_of(lambda: w(lab, f"{name}/uuid", str(uuid.uuid4()))) == errno.EACCES


# ---- interleave_ways_store / interleave_granularity_store ---------------------------------

@pytest.mark.parametrize("ways,err", [(0, errno.EINVAL), (5, errno.EINVAL), (3, errno.EINVAL),
                                      (6, errno.EINVAL), (2, 0), (4, 0), (16, 0)])
def test_interleave_ways_store_against_x2_root(lab, ways, err):
    name = new_region(lab)   # decoder0.3 is x2
    fn = lambda: w(lab, f"{name}/interleave_ways", f"{ways}\n")  # noqa: E731
    if err:
        assert errno_of(fn) == err
    else:
        fn()
        assert r(lab, f"{name}/interleave_ways") == str(ways)


def test_interleave_ways_store_x1_root_rejects_3(lab):
    name = new_region(lab, "decoder0.2")
    assert errno_of(lambda: w(lab, f"{name}/interleave_ways", "3")) == errno.EINVAL
    w(lab, f"{name}/interleave_ways", "8")


def test_targets_visible_below_ways(lab):
    name = new_region(lab)
    w(lab, f"{name}/interleave_ways", "4")
    names = lab.listdir(f"/sys/bus/cxl/devices/{name}")
    assert {f"target{i}" for i in range(4)} <= set(names)
    assert "target4" not in names


def test_interleave_granularity_store_rules(lab):
    name = new_region(lab)   # x2 root, HBIG 4096
    assert errno_of(lambda: w(lab, f"{name}/interleave_granularity", "300")) == errno.EINVAL
    assert errno_of(lambda: w(lab, f"{name}/interleave_granularity", "256")) == errno.EINVAL
    w(lab, f"{name}/interleave_granularity", "4096")
    x1 = new_region(lab, "decoder0.2")
    assert r(lab, "decoder0.2/interleave_granularity") == "256"   # acpi.c: x1 advertises 256
    w(lab, f"{x1}/interleave_granularity", "1024")


# ---- alloc_hpa / free_hpa --------------------------------------------------------------------

def test_alloc_hpa_preconditions_and_multiples(lab):
    name = new_region(lab)
    assert errno_of(lambda: w(lab, f"{name}/size", f"{SZ_256M * 2:#x}")) == errno.ENXIO
    w(lab, f"{name}/interleave_granularity", "4096")
    w(lab, f"{name}/interleave_ways", "2")
    assert errno_of(lambda: w(lab, f"{name}/size", f"{SZ_256M * 2:#x}")) == errno.ENXIO  # pmem: uuid first
    w(lab, f"{name}/uuid", str(uuid.uuid4()))
    assert errno_of(lambda: w(lab, f"{name}/size", f"{SZ_256M:#x}")) == errno.EINVAL
    assert r(lab, f"{name}/resource") == "0xffffffffffffffff"
    w(lab, f"{name}/size", f"{SZ_256M * 2:#x}")
    assert r(lab, f"{name}/size") == hex(SZ_256M * 2)
    w(lab, f"{name}/size", f"{SZ_256M * 2:#x}")                       # same size: no-op
    assert errno_of(lambda: w(lab, f"{name}/size", f"{SZ_256M * 4:#x}")) == errno.EBUSY
    assert errno_of(lambda: w(lab, f"{name}/interleave_ways", "4")) == errno.EBUSY
    w(lab, f"{name}/size", "0")
    assert r(lab, f"{name}/resource") == "0xffffffffffffffff"


def test_alloc_hpa_first_fit_and_erange(lab):
    root = "decoder0.3"   # 2 GiB x2 pmem window
    base = int(r(lab, f"{root}/start"), 16)
    names = []
    for _ in range(4):
        n = new_region(lab, root)
        w(lab, f"{n}/interleave_granularity", "4096")
        w(lab, f"{n}/interleave_ways", "2")
        w(lab, f"{n}/uuid", str(uuid.uuid4()))
        w(lab, f"{n}/size", f"{SZ_256M * 2:#x}")
        names.append(n)
    assert [int(r(lab, f"{n}/resource"), 16) for n in names] == [base + i * SZ_256M * 2 for i in range(4)]
    extra = new_region(lab, root)
    w(lab, f"{extra}/interleave_granularity", "4096")
    w(lab, f"{extra}/interleave_ways", "2")
    w(lab, f"{extra}/uuid", str(uuid.uuid4()))
    assert errno_of(lambda: w(lab, f"{extra}/size", f"{SZ_256M * 2:#x}")) == errno.ERANGE
    w(lab, f"{names[1]}/size", "0")                          # open a hole
    w(lab, f"{extra}/size", f"{SZ_256M * 2:#x}")
    assert int(r(lab, f"{extra}/resource"), 16) == base + SZ_256M * 2


# ---- DPA allocation (hdm.c) ---------------------------------------------------------------------

def test_dpa_size_rules(lab):
    ep = lab.kernel.cxl.memdevs[1].endpoint
    d0, d1, d2 = (d.name for d in ep.decoders[:3])
    assert errno_of(lambda: w(lab, f"{d0}/dpa_size", hex(SZ_256M))) == errno.EINVAL   # mode not set (6.9)
    w(lab, f"{d0}/mode", "ram")
    assert errno_of(lambda: w(lab, f"{d0}/dpa_size", hex(SZ_256M + 4096))) == errno.EINVAL
    assert errno_of(lambda: w(lab, f"{d0}/dpa_size", hex(4 * SZ_256M * 2))) == errno.ENOSPC
    w(lab, f"{d1}/mode", "pmem")
    assert errno_of(lambda: w(lab, f"{d1}/dpa_size", hex(SZ_256M))) == errno.EBUSY   # out of order
    w(lab, f"{d0}/dpa_size", hex(SZ_256M))
    w(lab, f"{d1}/dpa_size", hex(SZ_256M))
    assert r(lab, f"{d1}/dpa_resource") == hex(1 << 30)          # pmem starts after 1 GiB ram
    assert r(lab, f"{d1}/dpa_size") == "0x0000000010000000"      # %pa
    assert errno_of(lambda: w(lab, f"{d0}/dpa_size", "0")) == errno.EBUSY   # not the last
    assert errno_of(lambda: w(lab, f"{d2}/mode", "mixed")) == errno.EINVAL
    w(lab, f"{d1}/dpa_size", "0")
    w(lab, f"{d0}/dpa_size", "0")
    assert r(lab, f"{d0}/dpa_resource") == "0xffffffffffffffff"


def test_set_mode_without_capacity_is_enxio():
    b = boot("biscuitos-b")     # pmem-only device
    assert errno_of(lambda: w(b, "decoder3.0/mode", "ram")) == errno.ENXIO
    w(b, "decoder3.0/mode", "pmem")


# ---- cxl_region_attach ---------------------------------------------------------------------------

def sized(b, root, mode, ways, gran=4096, size=None):
    n = new_region(b, root, mode)
    w(b, f"{n}/interleave_granularity", str(gran))
    w(b, f"{n}/interleave_ways", str(ways))
    if mode == "pmem":
        w(b, f"{n}/uuid", str(uuid.uuid4()))
    w(b, f"{n}/size", hex(size or SZ_256M * ways))
    return n


def test_attach_checks(lab):
    n = new_region(lab, "decoder0.3")
    dec = reserve(lab, "mem0", "pmem", SZ_256M)
    w(lab, f"{n}/interleave_granularity", "4096")
    w(lab, f"{n}/interleave_ways", "2")
    assert errno_of(lambda: w(lab, f"{n}/target0", dec)) == errno.ENXIO        # interleave config missing
    w(lab, f"{n}/uuid", str(uuid.uuid4()))
    w(lab, f"{n}/size", hex(SZ_256M * 2))
    assert errno_of(lambda: w(lab, f"{n}/target0", "decoder99.0")) == errno.ENODEV
    assert errno_of(lambda: w(lab, f"{n}/target0", "decoder1.0")) == errno.EINVAL    # not an endpoint decoder
    ram = reserve(lab, "mem1", "ram", SZ_256M)
    assert errno_of(lambda: w(lab, f"{n}/target1", ram)) == errno.EINVAL          # mode mismatch
    assert errno_of(lambda: w(lab, f"{n}/target1", dec)) == errno.ENXIO           # mem0 is on HB0, pos 1 -> HB1
    w(lab, f"{n}/target0", dec)
    assert r(lab, f"{n}/target0") == dec
    big = reserve(lab, "mem3", "pmem", SZ_256M * 2)
    assert errno_of(lambda: w(lab, f"{n}/target1", big)) == errno.EINVAL          # dpa_size * ways != size
    dec2 = reserve(lab, "mem0", "pmem", SZ_256M)
    # cxl_region_validate_position() runs before the host-bridge check: mem0 is already at pos 0
    assert errno_of(lambda: w(lab, f"{n}/target1", dec2)) == errno.EBUSY
    assert errno_of(lambda: w(lab, f"{n}/commit", "1")) == errno.ENXIO           # not ACTIVE yet
    w(lab, f"{n}/target0", "")                                                    # detach
    assert r(lab, f"{n}/target0") == ""


def test_same_memdev_twice_is_ebusy():
    b = boot_text(fabric_toml(1, 2, 0, gran=4096, dev_size="1G"))   # x1 root, HB with 2 root ports
    n = sized(b, "decoder0.0", "ram", 2)
    a = reserve(b, "mem0", "ram", SZ_256M)
    a2 = reserve(b, "mem0", "ram", SZ_256M)
    w(b, f"{n}/target0", a)
    assert errno_of(lambda: w(b, f"{n}/target1", a2)) == errno.EBUSY


def test_commit_programs_switch_decoders_and_counts(lab):
    order = ["mem0", "mem1", "mem2", "mem3", "mem4", "mem5", "mem6", "mem7"]
    # positions: pos%2 -> HB, (pos//2)%2 -> root port, (pos//4)%2 -> switch dport
    want = {}
    for m in order:
        i = int(m[3:])
        hb, rp, sw = i % 2, (i % 4) // 2, i // 4
        want[(sw * 2 + rp) * 2 + hb] = m
    made = create_region(lab, "decoder0.3", [want[p] for p in range(8)], mode="pmem", gran=4096)
    k = lab.kernel
    hb0 = k.cxl.find("port1")
    d = next(x for x in hb0.decoders if x.region and x.region.name == made.name)
    assert (d.interleave_ways, d.interleave_granularity) == (2, 8192)       # ig = 4096 * 2
    sw = k.cxl.find("port4")
    d = next(x for x in sw.decoders if x.region and x.region.name == made.name)
    assert (d.interleave_ways, d.interleave_granularity) == (2, 16384)      # ig = 8192 * 2
    assert r(lab, "port1/decoders_committed") == "2"                      # region0 (auto) + this one
    assert r(lab, f"{made.name}/commit") == "1"
    assert b_is_enabled(lab, made.name)


def b_is_enabled(b, name):
    return b.islink(f"/sys/bus/cxl/devices/{name}/driver")


def test_commit_zero_resets_decoders_in_order(lab):
    made = create_region(lab, "decoder0.0", ["mem0"], mode="ram", gran=4096)
    ep = lab.kernel.cxl.memdevs[0].endpoint
    assert r(lab, f"{ep.name}/decoders_committed") == "2"
    w(lab, f"/sys/bus/cxl/devices/{made.name}/driver/unbind", made.name)
    w(lab, f"{made.name}/commit", "0")
    assert r(lab, f"{ep.name}/decoders_committed") == "1"
    assert r(lab, f"{made.name}/commit") == "0"


def test_hpa_order_violation(lab):
    root = "decoder0.2"   # x1 pmem window below HB0
    a = create_region(lab, root, ["mem0"], mode="pmem", gran=4096)
    b_ = create_region(lab, root, ["mem0"], mode="pmem", gran=4096)
    # tear down the lower region and ask for a new one: it gets the lower hole,
    # but mem0's ports already host b_ at a higher address
    bind_unbind = f"/sys/bus/cxl/devices/{a.name}/driver/unbind"
    w(lab, bind_unbind, a.name)
    w(lab, f"{a.name}/commit", "0")
    for i in range(1):
        w(lab, f"{a.name}/target{i}", "")
    w(lab, "decoder0.2/delete_region", a.name)
    c = sized(lab, root, "pmem", 1)
    d = next(x for x in lab.kernel.cxl.memdevs[0].endpoint.decoders if x.dpa_len and x.region is None)
    assert errno_of(lambda: w(lab, f"{c}/target0", d.name)) == errno.EBUSY
    assert f"HPA order violation {b_.name} vs {c}" in lab.kernel.dmesg[-1]


def test_region_commit_under_hypervisor_needs_invalidation_test():
    text = fabric_toml(1, 1, 0).replace("hypervisor = false", "hypervisor = true")
    b = boot_text(text)
    with pytest.raises(OSError) as ei:
        create_region(b, "decoder0.0", ["mem0"], mode="ram", gran=4096)
    assert ei.value.errno == errno.ENXIO
    assert any("Failed to synchronize CPU cache state" in m for m in b.kernel.dmesg)


# ---- auto-assembly (cxl_add_to_region) and pass-through -------------------------------------------

def test_cxl_test_auto_region_is_assembled_in_position_order(lab):
    assert r(lab, "region0/commit") == "1"
    assert r(lab, "region0/target0").startswith("decoder5.")      # mem0 first (mock_init_hdm_decoder)
    assert r(lab, "region0/interleave_ways") == "2"
    assert lab.islink("/sys/bus/cxl/devices/region0/driver")


def test_passthrough_ports_route_biscuitos_b():
    b = boot("biscuitos-b")
    assert r(b, "decoder1.0/target_list") == "0"                 # passthrough: single dport
    made = create_region(b, "decoder0.0", ["mem0"], mode="pmem", gran=4096, size=512 << 20)
    assert r(b, f"{made.name}/commit") == "1"
    assert r(b, "port1/decoders_committed") == "0"               # no hardware commit on pass-through
    assert r(b, "endpoint3/decoders_committed") == "1"
    assert r(b, "decoder2.0/size") == hex(512 << 20)             # software-programmed range


def test_region_probe_requires_commit(lab):
    n = sized(lab, "decoder0.1", "ram", 2)
    assert errno_of(lambda: bind(lab, n)) == errno.ENXIO
