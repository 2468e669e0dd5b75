"""CXL regions (drivers/cxl/core/region.c).

The state machine, attribute semantics, errnos and ordering rules follow the
kernel; each check cites the function it comes from.  States:
IDLE < INTERLEAVE_ACTIVE < ACTIVE < RESET_PENDING < COMMIT.
"""

from __future__ import annotations

import errno
import re
import functools
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import (AttrGroup, AttrSpec, Device, KernelError, RO, RW, device_add,
                                       device_attach, device_del, device_release_driver, kstr, kstrip,
                                       kstrtobool, kstrtoull)
from cxlemu.kernel.cxl.port import (BASE_ATTRS, CXL_DEVICE_REGION, CxlDecoder, CxlDevice, CxlPort, Dport,
                                    EndpointDecoder, RegionRef, RootDecoder, SwitchDecoder)
from cxlemu.kernel.resource import Resource, alloc_free_region, insert_resource, release_resource
from cxlemu.util.lazy import lazy_module
from cxlemu.util.units import SZ_256M

il = lazy_module("cxlemu.kernel.cxl.interleave")   # interleave arithmetic: when a region is set up or translated
uuidlib = lazy_module("uuid")                      # (uuid imports `platform`): when a region's uuid is used

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.core import CxlCore
    from cxlemu.kernel.cxl.memdev import CxlMemdev

IDLE, INTERLEAVE_ACTIVE, ACTIVE, RESET_PENDING, COMMIT = range(5)
CXL_DECODER_MAX_INTERLEAVE = 16


@functools.cache
def null_uuid() -> "uuidlib.UUID":
    """uuid.UUID(int=0), the uuid of a region that has none (made once, on first use)."""
    return uuidlib.UUID(int=0)


class CxlRegion(CxlDevice):
    devtype = "cxl_region"
    cxl_id = CXL_DEVICE_REGION
    incoherent = False          # CXL_REGION_F_INCOHERENT (class default: states saved before it existed)

    # ATTR_GROUPS is built by _make_attr_groups() below (targetN and accessN need one
    # method per attribute)

    def __init__(self, mgr: "RegionManager", cxlrd: RootDecoder, region_id: int, mode: str):
        super().__init__(f"region{region_id}", cxlrd, mgr.core.bus)
        self.mgr = mgr
        self.cxlrd = cxlrd
        self.id = region_id
        self.mode = mode
        self.uuid: uuidlib.UUID = null_uuid()
        self.interleave_ways = 0
        self.interleave_granularity = 0
        self.res: Resource | None = None          # HPA in the window's private tree
        self.iomem_res: Resource | None = None    # its reflection in /proc/iomem
        self.targets: list[EndpointDecoder | None] = [None] * CXL_DECODER_MAX_INTERLEAVE
        self.nr_targets = 0
        self.state = IDLE
        self.auto = False                         # CXL_REGION_F_AUTO
        self.needs_reset = False                  # CXL_REGION_F_NEEDS_RESET
        self.coords: dict[str, dict[str, int]] = {}

    # ---- geometry -------------------------------------------------------------------
    @property
    def start(self) -> int | None:
        return self.res.start if self.res else None

    @property
    def size(self) -> int:
        return self.res.size if self.res else 0

    def members(self) -> list[EndpointDecoder]:
        return [t for t in self.targets[: self.interleave_ways] if t is not None]

    # ---- attributes -----------------------------------------------------------------
    def uuid_visible(self, _n: str) -> int:
        return 0o644 if self.mode == "pmem" else 0o444

    def uuid_show(self) -> str:
        if self.mode != "pmem":
            return "\n"
        return f"{self.uuid}\n"

    def uuid_store(self, buf: bytes) -> None:
        self.mgr.set_uuid(self, buf)

    def commit_show(self) -> str:
        return f"{int(self.state >= COMMIT)}\n"

    def commit_store(self, buf: bytes) -> None:
        self.mgr.commit_store(self, kstrtobool(buf))

    def interleave_ways_show(self) -> str:
        return f"{self.interleave_ways}\n"

    def interleave_ways_store(self, buf: bytes) -> None:
        self.mgr.set_ways(self, buf)

    def interleave_granularity_show(self) -> str:
        return f"{self.interleave_granularity}\n"

    def interleave_granularity_store(self, buf: bytes) -> None:
        self.mgr.set_granularity(self, buf)

    def resource_show(self) -> str:
        return f"{self.res.start if self.res else (1 << 64) - 1:#x}\n"

    def size_show(self) -> str:
        return f"{self.size:#x}\n"

    def size_store(self, buf: bytes) -> None:
        val = kstrtoull(buf, 0)
        if val:
            self.mgr.alloc_hpa(self, val)
        else:
            self.mgr.free_hpa(self)

    def mode_show(self) -> str:
        return f"{self.mode}\n"

    def mode_visible(self, _n: str) -> bool:
        return self.mgr.kernel.has("region_mode")

    def target_visible(self, name: str) -> bool:
        return int(name[6:]) < self.interleave_ways

    def access_visible(self, group: str) -> bool:
        return any(self.coords.get(group, {}).values())


_ACCESS_NAMES = ("read_bandwidth", "write_bandwidth", "read_latency", "write_latency")


def _make_attr_groups() -> None:
    """targetN show/store bound to their position (region.c TARGET_ATTR_RW) and
    the accessK/ coordinates, then the region's attribute groups."""
    targets = []
    for i in range(CXL_DECODER_MAX_INTERLEAVE):
        def show(self, i=i) -> str:
            t = self.targets[i]
            return f"{t.name}\n" if t is not None else "\n"

        def store(self, buf: bytes, i=i) -> None:
            self.mgr.store_target(self, i, buf)
        setattr(CxlRegion, f"target{i}_show", show)
        setattr(CxlRegion, f"target{i}_store", store)
        targets.append(AttrSpec(f"target{i}", 0o644, visible="target_visible"))
    access = []
    for grp in ("access0", "access1"):
        for n in _ACCESS_NAMES:
            def ashow(self, n=n, grp=grp) -> str:
                return f"{self.coords.get(grp, {}).get(n, 0)}\n"
            setattr(CxlRegion, f"{grp}_{n}_show", ashow)
        access.append(AttrGroup(grp, tuple(RO(n, show=f"{grp}_{n}_show") for n in _ACCESS_NAMES),
                                visible="access_visible"))
    CxlRegion.ATTR_GROUPS = (
        AttrGroup(None, BASE_ATTRS + (
            AttrSpec("uuid", 0o644, visible="uuid_visible"), RW("commit"), RW("interleave_ways"),
            RW("interleave_granularity"), RO("resource"), RW("size"), RO("mode", visible="mode_visible"),
        ) + tuple(targets)),
        *access,
    )


_make_attr_groups()


def _sscanf_region(s: str) -> int | None:
    m = re.match(r"region([+-]?\d+)", s)
    return int(m.group(1)) if m else None


class RegionManager:
    def __init__(self, core: "CxlCore"):
        self.core = core

    @property
    def kernel(self):
        return self.core.kernel

    def all(self) -> list[CxlRegion]:
        return [d for d in self.core.bus.devices.values() if isinstance(d, CxlRegion)]

    # ---- create / delete (region.c create_region_store, delete_region_store) -----------
    def create_region_show(self, rd: RootDecoder) -> str:
        return f"region{rd.region_id}\n"

    def create_region_store(self, rd: RootDecoder, buf: bytes, mode: str) -> CxlRegion:
        rid = _sscanf_region(kstr(buf))
        if rid is None:
            raise KernelError(errno.EINVAL)
        ida = self.kernel.memregion_ida
        new = ida.alloc()
        if rd.region_id != rid:
            ida.free(new)
            raise KernelError(errno.EBUSY, f"{rd.name}: region{rid} is not the next region id")
        rd.region_id = new
        return self._add_region(rd, rid, mode)

    def _add_region(self, rd: RootDecoder, rid: int, mode: str) -> CxlRegion:
        r = CxlRegion(self, rd, rid, mode)
        device_add(r)    # cxl_region probe fails (not committed) and leaves it unbound
        self.kernel.log(f"{rd.name}: {r.name}: created")
        return r

    def delete_region_store(self, rd: RootDecoder, buf: bytes) -> None:
        name = kstrip(buf)
        r = next((x for x in rd.regions if x.name == name), None)
        if r is None:
            raise KernelError(errno.ENODEV, f"{rd.name}: no {name}")
        self.unregister(r)

    def unregister(self, r: CxlRegion) -> None:
        """region.c unregister_region() + cxl_region_release()."""
        device_release_driver(r)
        for i in range(r.interleave_ways):
            self.detach_target(r, i)
        self._release_iomem(r)
        if r.res is not None:
            release_resource(r.res)
            r.res = None
        device_del(r)
        rd = r.cxlrd
        ida = self.kernel.memregion_ida
        if r.id < rd.region_id:
            ida.free(rd.region_id)
            rd.region_id = r.id
        else:
            ida.free(r.id)

    # ---- parameters ---------------------------------------------------------------------
    def set_uuid(self, r: CxlRegion, buf: bytes) -> None:
        if len(buf) != 37:
            raise KernelError(errno.EINVAL, f"{r.name}: uuid must be 36 characters and a terminator")
        try:
            u = uuidlib.UUID(kstr(buf)[:36])
        except ValueError:
            raise KernelError(errno.EINVAL) from None
        if u == null_uuid():
            raise KernelError(errno.EINVAL)
        if r.uuid == u:
            return
        if r.state >= ACTIVE:
            raise KernelError(errno.EBUSY)
        if any(x is not r and x.uuid == u for x in self.all()):
            raise KernelError(errno.EBUSY, f"{r.name}: duplicate uuid {u}")
        r.uuid = u

    def set_ways(self, r: CxlRegion, buf: bytes) -> None:
        val = kstrtoull(buf, 0)
        try:
            il.ways_to_eiw(val)
        except il.InterleaveError as e:
            raise KernelError(e.errno) from None
        root_ways = r.cxlrd.interleave_ways
        if val % root_ways or not il.is_power_of_2(val // root_ways):
            raise KernelError(errno.EINVAL, f"{r.name}: invalid interleave: {val}")
        if r.state >= INTERLEAVE_ACTIVE:
            raise KernelError(errno.EBUSY)
        r.interleave_ways = val

    def set_granularity(self, r: CxlRegion, buf: bytes) -> None:
        s = kstrip(buf)
        try:
            val = int(s, 0)
        except ValueError:
            raise KernelError(errno.EINVAL) from None
        try:
            il.granularity_to_eig(val)
        except il.InterleaveError as e:
            raise KernelError(e.errno) from None
        rd = r.cxlrd
        if rd.interleave_ways > 1 and val != rd.interleave_granularity:
            raise KernelError(errno.EINVAL, f"{r.name}: granularity {val} != root {rd.interleave_granularity}")
        if r.state >= INTERLEAVE_ACTIVE:
            raise KernelError(errno.EBUSY)
        r.interleave_granularity = val

    def alloc_hpa(self, r: CxlRegion, size: int) -> None:
        """region.c alloc_hpa()."""
        if r.res is not None and r.res.size == size:
            return
        if r.res is not None:
            raise KernelError(errno.EBUSY, f"{r.name}: free the current size first")
        if r.state >= INTERLEAVE_ACTIVE:
            raise KernelError(errno.EBUSY)
        if not r.interleave_ways or not r.interleave_granularity or \
                (r.mode == "pmem" and r.uuid == null_uuid()):
            raise KernelError(errno.ENXIO, f"{r.name}: ways, granularity and uuid must be set first")
        if size % (SZ_256M * r.interleave_ways):
            raise KernelError(errno.EINVAL, f"{r.name}: size {size:#x} not a multiple of 256M x {r.interleave_ways}")
        rd = r.cxlrd
        try:
            r.res = alloc_free_region(rd.hpa_tree, size, SZ_256M, r.name)
        except KernelError:
            raise KernelError(errno.ERANGE, f"{r.name}: HPA allocation error (-34) for size:{size:#x} "
                                            f"in {rd.name}") from None
        self._reflect_iomem(r)
        r.state = INTERLEAVE_ACTIVE

    def free_hpa(self, r: CxlRegion) -> None:
        if r.res is None:
            return
        if r.state >= ACTIVE:
            raise KernelError(errno.EBUSY)
        self._release_iomem(r)
        release_resource(r.res)
        r.res = None
        r.state = IDLE

    def _reflect_iomem(self, r: CxlRegion) -> None:
        assert r.res is not None
        pub = Resource(r.res.start, r.res.end, r.name)
        try:
            insert_resource(r.cxlrd.res, pub)     # below its "CXL Window N"
            r.iomem_res = pub
        except KernelError:
            self.kernel.log(f"{r.name}: cannot insert resource {r.res.start:#x}-{r.res.end:#x}")

    def _release_iomem(self, r: CxlRegion) -> None:
        if r.iomem_res is not None:
            release_resource(r.iomem_res)
            r.iomem_res = None

    # ---- targets ---------------------------------------------------------------------------
    def store_target(self, r: CxlRegion, pos: int, buf: bytes) -> None:
        s = kstr(buf)
        if s in ("", "\n"):
            self.detach_target(r, pos)
            return
        name = s[:-1] if s.endswith("\n") else s
        dev = self.core.bus.devices.get(name)
        if dev is None:
            raise KernelError(errno.ENODEV, f"{r.name}: {name} not found")
        if not isinstance(dev, EndpointDecoder):
            raise KernelError(errno.EINVAL, f"{r.name}: {name} is not an endpoint decoder")
        self.attach(r, dev, pos)

    def detach_target(self, r: CxlRegion, pos: int) -> None:
        if pos >= r.interleave_ways:
            raise KernelError(errno.ENXIO, f"{r.name}: position {pos} out of range {r.interleave_ways}")
        t = r.targets[pos]
        if t is None:
            return
        self.detach(t)

    def root_dport_of(self, cxled: EndpointDecoder) -> Dport | None:
        """The root's dport (host bridge) above an endpoint."""
        p = cxled.port
        while p.parent_port is not None and not p.parent_port.is_root:
            p = p.parent_port
        return p.parent_dport

    def calc_hb(self, rd: RootDecoder, pos: int) -> Dport | None:
        """The host bridge serving region position ``pos``: ``target[pos % iw]``
        for modulo and XOR windows alike (region.c cxl_region_attach_position;
        XOR is an address transform, acpi.c cxl_xor_hpa_to_spa)."""
        return rd.targets[pos % rd.interleave_ways]

    def attach(self, r: CxlRegion, cxled: EndpointDecoder, pos: int) -> None:
        """region.c cxl_region_attach(), checks in kernel order."""
        rd = r.cxlrd
        try:
            il.check_interleave_cap(self._cap(cxled.port), r.interleave_ways, r.interleave_granularity)
        except il.InterleaveError as e:
            raise KernelError(errno.ENXIO, f"{cxled.name}: {e}") from None
        if cxled.port.dead:
            raise KernelError(errno.ENODEV)
        if cxled.mode != r.mode:
            raise KernelError(errno.EINVAL, f"{r.name}: {cxled.name} mode: {cxled.mode} mismatch: {r.mode}")
        if r.state > INTERLEAVE_ACTIVE:
            raise KernelError(errno.EBUSY, f"{r.name}: region already active")
        if r.state < INTERLEAVE_ACTIVE:
            raise KernelError(errno.ENXIO, f"{r.name}: interleave config missing")
        if r.nr_targets >= r.interleave_ways:
            raise KernelError(errno.EINVAL, f"{r.name}: region already has {r.nr_targets} endpoints")
        dport = self.root_dport_of(cxled)
        if dport is None or dport.port is not rd.port or dport not in rd.targets:
            raise KernelError(errno.ENXIO, f"{r.name}: {cxled.memdev.name}:{cxled.name} invalid target for {rd.name}")
        if cxled.target_type != "expander":
            raise KernelError(errno.ENXIO)
        if cxled.dpa_start is None:
            raise KernelError(errno.ENXIO, f"{r.name}: {cxled.memdev.name}:{cxled.name}: missing DPA allocation.")
        if cxled.dpa_len * r.interleave_ways != r.size:
            raise KernelError(errno.EINVAL,
                              f"{r.name}: {cxled.memdev.name}:{cxled.name}: decoder-size-{cxled.dpa_len:#x} * "
                              f"ways-{r.interleave_ways} != region-size-{r.size:#x}")
        r.incoherent = True      # CXL_REGION_F_INCOHERENT (6.2-6.4: invalidated at probe)
        if r.auto:
            self._attach_auto(r, cxled)
            return
        self._validate_position(r, cxled, pos)
        self._attach_position(r, cxled, dport, pos)
        r.targets[pos] = cxled
        cxled.pos = pos
        r.nr_targets += 1
        cxled.interleave_ways = r.interleave_ways
        cxled.interleave_granularity = r.interleave_granularity
        cxled.start, cxled.size = r.res.start, r.res.size  # type: ignore[union-attr]
        if r.nr_targets == r.interleave_ways:
            self.setup_targets(r)
            r.state = ACTIVE

    def _cap(self, port: CxlPort) -> il.HdmCapability:
        if port.hdm is None or self.kernel.platform.flavor == "cxl_test":
            return il.HdmCapability.ALL
        c = port.hdm.caps
        return il.HdmCapability(iw_3_6_12=c.iw_3_6_12, iw_16=c.iw_16, a11to8=c.a11to8, a14to12=c.a14to12)

    def _validate_position(self, r: CxlRegion, cxled: EndpointDecoder, pos: int) -> None:
        """region.c cxl_region_validate_position()."""
        if pos < 0 or pos >= r.interleave_ways:
            raise KernelError(errno.ENXIO, f"{r.name}: position {pos} out of range {r.interleave_ways}")
        cur = r.targets[pos]
        if cur is cxled:
            return
        if cur is not None:
            raise KernelError(errno.EBUSY, f"{r.name}: {cxled.memdev.name}:{cxled.name}: position {pos} "
                                           f"already assigned to {cur.memdev.name}:{cur.name}")
        for i, t in enumerate(r.targets[: r.interleave_ways]):
            if t is not None and t.memdev is cxled.memdev:
                raise KernelError(errno.EBUSY, f"{r.name}: {cxled.memdev.name} already specified at "
                                               f"position {i} via: {t.name}")

    def _attach_position(self, r: CxlRegion, cxled: EndpointDecoder, dport: Dport, pos: int) -> None:
        """region.c cxl_region_attach_position()."""
        rd = r.cxlrd
        if self.calc_hb(rd, pos) is not dport:
            raise KernelError(errno.ENXIO, f"{r.name}: {cxled.memdev.name}:{cxled.name} invalid target "
                                           f"position for {rd.name}")
        done: list[CxlPort] = []
        try:
            for port in cxled.port.ancestry():
                self._port_attach(port, r, cxled)
                done.append(port)
        except KernelError:
            for port in done:
                self._port_detach(port, r, cxled)
            raise

    def _next_hop(self, port: CxlPort, cxled: EndpointDecoder) -> Dport | None:
        """The dport of ``port`` that leads to ``cxled`` (None for the endpoint itself)."""
        if port is cxled.port:
            return None
        p = cxled.port
        while p.parent_port is not None and p.parent_port is not port:
            p = p.parent_port
        return p.parent_dport

    def _find_decoder(self, port: CxlPort, r: CxlRegion, cxled: EndpointDecoder) -> CxlDecoder | None:
        """region.c cxl_region_find_decoder()."""
        if port is cxled.port:
            return cxled
        if r.auto:
            for d in port.decoders:
                if isinstance(d, SwitchDecoder) and d.start == r.res.start and d.size == r.res.size:  # type: ignore[union-attr]
                    return d
            return None
        for d in port.decoders:
            if not isinstance(d, SwitchDecoder) or d.id != port.commit_end + 1:
                continue
            if d.region is not None and d.has_hw_commit:
                self.kernel.log(f"{port.name}: next decoder to commit ({d.name}) is already reserved "
                                f"({d.region.name})")
                return None
            if d.enabled_flag:
                self.kernel.log(f"{port.name}: next decoder to commit ({d.name}) is already enabled")
                return None
            return d
        return None

    def _port_attach(self, port: CxlPort, r: CxlRegion, cxled: EndpointDecoder) -> None:
        """region.c cxl_port_attach_region()."""
        ref = port.regions.get(r.id)
        nxt = self._next_hop(port, cxled)
        if ref is None:
            for other in port.regions.values():
                o = other.region
                if o.res is not None and r.res is not None and o.res.start > r.res.start and not r.auto:
                    raise KernelError(errno.EBUSY, f"{port.name}: HPA order violation {o.name} vs {r.name}")
            d = self._find_decoder(port, r, cxled)
            if d is None:
                raise KernelError(errno.EBUSY, f"{port.name}: no decoder available")
            if d.region is not None and d.region is not r and d.has_hw_commit:
                raise KernelError(errno.EBUSY, f"{port.name}: {d.name} already attached to {d.region.name}")
            ref = RegionRef(region=r, decoder=d)
            port.regions[r.id] = ref
            if d.region is None:
                d.region = r
        if nxt is not None and nxt not in ref.targets:
            ref.targets.append(nxt)
        ref.nr_eps += 1
        d = ref.decoder
        if isinstance(d, SwitchDecoder) and len(ref.targets) > d.nr_targets:
            self._port_detach(port, r, cxled)
            raise KernelError(errno.ENXIO, f"{port.name}: {d.name} add: {cxled.name} overflows targets: "
                                           f"{d.nr_targets}")
        ref.eps = getattr(ref, "eps", []) + [(cxled, nxt)]

    def _port_detach(self, port: CxlPort, r: CxlRegion, cxled: EndpointDecoder) -> None:
        """region.c cxl_port_detach_region()."""
        ref = port.regions.get(r.id)
        if ref is None:
            return
        eps = [e for e in getattr(ref, "eps", []) if e[0] is not cxled]
        ref.eps = eps
        ref.nr_eps -= 1
        ref.targets = []
        for _, nxt in eps:
            if nxt is not None and nxt not in ref.targets:
                ref.targets.append(nxt)
        if ref.nr_eps <= 0:
            if ref.decoder.region is r:
                ref.decoder.region = None
            del port.regions[r.id]

    # ---- programming switch decoders (cxl_region_setup_targets) ----------------------------
    def setup_targets(self, r: CxlRegion) -> None:
        rcd = [t for t in r.members() if t.port.parent_port is not None and t.port.parent_port.is_root]
        if rcd and len(rcd) != len(r.members()):
            raise KernelError(errno.ENXIO, f"{r.name}: mismatched RCH/VH topology")
        for ref_port in self._region_ports(r):
            ref = ref_port.regions[r.id]
            ref.nr_targets_set = 0
        try:
            for pos in range(r.interleave_ways):
                cxled = r.targets[pos]
                assert cxled is not None
                for port in reversed(cxled.port.ancestry()[1:]):
                    self._port_setup_targets(port, r, cxled)
        except KernelError:
            self.teardown_targets(r)
            raise

    def _region_ports(self, r: CxlRegion) -> list[CxlPort]:
        seen: list[CxlPort] = []
        for t in r.members():
            for p in t.port.ancestry():
                if p not in seen and r.id in p.regions:
                    seen.append(p)
        return seen

    def _port_setup_targets(self, port: CxlPort, r: CxlRegion, cxled: EndpointDecoder) -> None:
        """region.c cxl_port_setup_targets()."""
        ref = port.regions[r.id]
        d = ref.decoder
        assert isinstance(d, SwitchDecoder)
        rd = r.cxlrd
        parent = port.parent_port
        assert parent is not None
        if parent.is_root:
            parent_ig = r.interleave_granularity
            parent_iw = rd.interleave_ways
            if not il.is_power_of_2(parent_iw):
                parent_iw //= 3
        else:
            pd = parent.regions[r.id].decoder
            parent_ig, parent_iw = pd.interleave_granularity, pd.interleave_ways
        nr = len(ref.targets)
        if not il.is_power_of_2(nr):
            raise KernelError(errno.EINVAL, f"{r.name}: {port.uport.name}:{port.name}: invalid target count {nr}")
        iw = nr
        ig = parent_ig * parent_iw
        try:
            il.granularity_to_eig(ig)
        except il.InterleaveError:
            raise KernelError(errno.EINVAL, f"{r.name}: {parent.name}: invalid granularity calculation "
                                            f"({parent_ig} * {parent_iw})") from None
        if iw > 8 or iw > d.nr_targets:
            raise KernelError(errno.ENXIO, f"{r.name}: {port.uport.name}:{port.name}:{d.name}: ways: {iw} "
                                           f"overflows targets: {d.nr_targets}")
        res = r.res
        assert res is not None
        if r.auto:
            if d.interleave_ways != iw or (iw > 1 and d.interleave_granularity != ig) or \
                    d.start != res.start or d.size != res.size or (d.has_hw_commit and not d.enabled_flag):
                raise KernelError(errno.ENXIO, f"{r.name}: {port.uport.name}:{port.name} expected iw: {iw} "
                                               f"ig: {ig} [{res.start:#x}-{res.end:#x}], got iw: "
                                               f"{d.interleave_ways} ig: {d.interleave_granularity}")
        else:
            try:
                il.check_interleave_cap(self._cap(port), iw, ig)
            except il.InterleaveError as e:
                raise KernelError(errno.ENXIO, f"{port.name}: {e}") from None
            d.interleave_ways, d.interleave_granularity = iw, ig
            d.start, d.size = res.start, res.size
        ep_dport = self._next_hop(port, cxled)
        if ref.nr_targets_set:
            distance = 1
            it: CxlPort | None = port
            while it is not None and not it.is_root:
                distance *= len(it.regions[r.id].targets)
                it = it.parent_port
            distance *= rd.interleave_ways
            if len(ref.targets) == 1:
                distance = 0
            if ep_dport in d.targets[: ref.nr_targets_set]:
                self._check_last_peer(r, cxled, port, ep_dport, distance)
                return
        if ref.nr_targets_set == len(ref.targets):
            raise KernelError(errno.ENXIO, f"{r.name}: {port.uport.name}:{port.name}: targets full trying to "
                                           f"add {cxled.memdev.name}:{cxled.name} at {cxled.pos}")
        if r.auto:
            if d.targets[ref.nr_targets_set] is not ep_dport:
                raise KernelError(errno.ENXIO, f"{r.name}: {port.name}: {d.name} expected "
                                               f"{ep_dport.name if ep_dport else '?'} at {ref.nr_targets_set}")
        else:
            d.targets[ref.nr_targets_set] = ep_dport
        ref.nr_targets_set += 1

    def _check_last_peer(self, r: CxlRegion, cxled: EndpointDecoder, port: CxlPort, dport: Dport | None,
                         distance: int) -> None:
        pos = cxled.pos
        if pos < distance:
            raise KernelError(errno.ENXIO, f"{r.name}: {port.uport.name}:{port.name}: cannot host "
                                           f"{cxled.memdev.name}:{cxled.name} at {pos}")
        peer = r.targets[pos - distance]
        assert peer is not None
        if self._next_hop(port, peer) is not dport:
            raise KernelError(errno.ENXIO, f"{r.name}: {port.uport.name}:{port.name}: "
                                           f"{cxled.memdev.name}:{cxled.name} pos {pos} mismatched peer "
                                           f"{peer.memdev.name}:{peer.name}")

    def teardown_targets(self, r: CxlRegion) -> None:
        """region.c cxl_region_teardown_targets(): forget switch HPA ranges (manual regions)."""
        if r.auto:
            return
        for port in self._region_ports(r):
            ref = port.regions[r.id]
            ref.nr_targets_set = 0
            if not port.is_endpoint:
                ref.decoder.reset_range()

    # ---- detach ------------------------------------------------------------------------
    def detach(self, cxled: EndpointDecoder) -> None:
        """region.c cxl_region_detach()."""
        r = cxled.region
        if r is None:
            return
        if r.state > ACTIVE:
            self.decode_reset(r, r.interleave_ways)
            r.state = ACTIVE
        for port in cxled.port.ancestry():
            self._port_detach(port, r, cxled)
        if cxled.pos < 0 or cxled.pos >= r.interleave_ways or r.targets[cxled.pos] is not cxled:
            self.kernel.log(f"{r.name}: expected {cxled.memdev.name}:{cxled.name} at position {cxled.pos}")
            cxled.region = None
            return
        if r.state == ACTIVE:
            r.state = INTERLEAVE_ACTIVE
            self.teardown_targets(r)
        r.targets[cxled.pos] = None
        r.nr_targets -= 1
        cxled.pos = -1
        cxled.reset_range()
        cxled.region = None
        device_release_driver(r)

    def kill_endpoint_decoder(self, cxled: EndpointDecoder) -> None:
        """cxl_decoder_kill_region(): an endpoint is going away."""
        self.detach(cxled)

    # ---- commit / reset -------------------------------------------------------------------
    def _invalidate(self, r: CxlRegion) -> None:
        """region.c cxl_region_invalidate_memregion(): x86's
        cpu_cache_has_invalidate_memregion() is false under a hypervisor.
        Linux 6.1 has no such check; 6.2-6.4 make it when the region is probed
        (enabled), 6.5+ when it is committed or reset (kernel/features.py)."""
        boot = self.kernel.platform.topology.boot
        if boot.hypervisor:
            if boot.region_invalidation_test:
                self.kernel.log(f"{r.name}: Bypassing cpu_cache_invalidate_memregion() for testing!")
                r.incoherent = False
                return
            self.kernel.log(f"{r.name}: Failed to synchronize CPU cache state")
            raise KernelError(errno.ENXIO, f"{r.name}: Failed to synchronize CPU cache state")
        r.incoherent = False

    def commit_store(self, r: CxlRegion, commit: bool) -> None:
        if commit and r.state >= COMMIT:
            return
        if not commit and r.state < COMMIT:
            return
        if commit and r.state < ACTIVE:
            raise KernelError(errno.ENXIO, f"{r.name}: not ready to commit")
        if self.kernel.has("region_invalidate_at_commit"):
            self._invalidate(r)
        if commit:
            self.decode_commit(r)
            r.state = COMMIT
        else:
            r.state = RESET_PENDING
            device_release_driver(r)
            if r.state == RESET_PENDING:
                self.decode_reset(r, r.interleave_ways)
                r.state = ACTIVE

    def _path_ports(self, cxled: EndpointDecoder) -> list[CxlPort]:
        """Ports from the endpoint up to (excluding) the root: the commit order."""
        return cxled.port.ancestry()

    def decode_commit(self, r: CxlRegion) -> None:
        hdm = self.core.hdm
        for i in range(r.nr_targets):
            cxled = r.targets[i]
            assert cxled is not None
            done: list[CxlDecoder] = []
            try:
                for port in self._path_ports(cxled):
                    d = port.regions[r.id].decoder
                    if d.has_hw_commit:
                        hdm.commit(d)
                    elif isinstance(d, SwitchDecoder) and len(port.regions[r.id].targets) > 1:
                        raise KernelError(errno.ENXIO, f"{d.name}: no commit operation for an interleaving decoder")
                    done.append(d)
            except KernelError:
                for d in reversed(done):
                    hdm.reset(d)
                self.decode_reset(r, i)
                raise

    def decode_reset(self, r: CxlRegion, count: int) -> None:
        hdm = self.core.hdm
        for i in range(count - 1, -1, -1):
            cxled = r.targets[i]
            if cxled is None:
                continue
            for port in reversed(self._path_ports(cxled)[1:]):
                ref = port.regions.get(r.id)
                if ref is not None and ref.decoder.has_hw_commit:
                    hdm.reset(ref.decoder)
                r.needs_reset = True
            hdm.reset(cxled)
            r.needs_reset = True
        r.needs_reset = False

    # ---- driver (cxl_region_probe / remove) ------------------------------------------------------
    def probe(self, dev: Device) -> None:
        r = dev
        assert isinstance(r, CxlRegion)
        if r.state != COMMIT:
            raise KernelError(errno.ENXIO, f"{r.name}: config state: {r.state}")
        if r.needs_reset:
            raise KernelError(errno.ENXIO, f"{r.name}: failed to activate, re-commit region and retry")
        if r.incoherent and self.kernel.has("region_invalidate_at_probe"):
            self._invalidate(r)
        self.kernel.perf.region_coordinates(r)
        if r.mode == "pmem":
            self.kernel.nvdimm.add_pmem_region(r)
        else:
            if self.kernel.mm.range_is_system_ram(r.res.start, r.res.end):  # type: ignore[union-attr]
                return
            self.kernel.dax.add_cxl_dax_region(r)

    def remove(self, dev: Device) -> None:
        r = dev
        assert isinstance(r, CxlRegion)
        for c in list(r.children):
            device_del(c)
        self.kernel.nvdimm.remove_pmem_region(r)
        self.kernel.dax.remove_cxl_dax_region(r)

    # ---- auto-assembly (cxl_add_to_region) ---------------------------------------------------
    def discover_auto(self, ep: CxlPort) -> None:
        for d in ep.decoders:
            if isinstance(d, EndpointDecoder) and d.auto and d.region is None:
                try:
                    self.add_to_region(d)
                except KernelError as e:
                    self.kernel.log(f"{ep.name}: {d.name}: auto-assembly failed: {e.log}")

    def add_to_region(self, cxled: EndpointDecoder) -> None:
        root = self.core.root
        assert root is not None
        rd = next((x for x in self.core.root_decoders() if x.contains(cxled.start, cxled.size)), None)
        if rd is None:
            raise KernelError(errno.ENXIO, f"{cxled.memdev.name}:{cxled.name} no CXL window for range "
                                           f"{cxled.start:#x}:{cxled.end:#x}")
        r = next((x for x in rd.regions if x.res is not None and x.res.start == cxled.start
                  and x.res.size == cxled.size), None)
        if r is None:
            r = self._construct(rd, cxled)
        self.attach(r, cxled, -1)
        if r.state == COMMIT:
            device_attach(r)

    def _construct(self, rd: RootDecoder, cxled: EndpointDecoder) -> CxlRegion:
        """region.c construct_region()."""
        rid = rd.region_id
        rd.region_id = self.kernel.memregion_ida.alloc()
        r = CxlRegion(self, rd, rid, cxled.mode)
        r.auto = True
        res = Resource(cxled.start, cxled.end, r.name)
        insert_resource(rd.hpa_tree, res)
        r.res = res
        self._reflect_iomem(r)
        r.interleave_ways = cxled.interleave_ways
        r.interleave_granularity = cxled.interleave_granularity
        r.state = INTERLEAVE_ACTIVE
        device_add(r)
        return r

    def _attach_auto(self, r: CxlRegion, cxled: EndpointDecoder) -> None:
        """region.c cxl_region_attach_auto() + sort by cxl_calc_interleave_pos."""
        r.targets[r.nr_targets] = cxled
        cxled.pos = r.nr_targets
        r.nr_targets += 1
        cxled.region = r
        if r.nr_targets < r.interleave_ways:
            return
        members = r.targets[: r.nr_targets]
        members.sort(key=lambda t: self.calc_interleave_pos(r, t))  # type: ignore[arg-type, return-value]
        for i, t in enumerate(members):
            r.targets[i] = t
            t.pos = i                        # type: ignore[union-attr]
            t.region = None                  # type: ignore[union-attr]
        for i, t in enumerate(members):
            dport = self.root_dport_of(t)    # type: ignore[arg-type]
            self._attach_position(r, t, dport, i)  # type: ignore[arg-type]
            t.region = r                     # type: ignore[union-attr]
        self.setup_targets(r)
        r.state = COMMIT

    def calc_interleave_pos(self, r: CxlRegion, cxled: EndpointDecoder) -> int:
        """region.c cxl_calc_interleave_pos(): walk up, pos = pos * parent_ways + parent_pos."""
        pos = 0
        port = cxled.port
        res = r.res
        assert res is not None
        while port.parent_port is not None:
            parent = port.parent_port
            dport = port.parent_dport
            if parent.is_root:
                d = r.cxlrd
                targets = d.targets
            else:
                d = next((x for x in parent.decoders if isinstance(x, SwitchDecoder)
                          and x.start == res.start and x.size == res.size), None)
                if d is None:
                    # region.c find_pos_and_ways(): a pass-through decoder has no range
                    raise KernelError(errno.ENXIO, f"{port.uport.name}: failed to find decoder mapping "
                                                   f"{res.start:#x}-{res.end:#x}")
                targets = d.targets[: d.interleave_ways]
            if dport not in targets:
                raise KernelError(errno.ENXIO, f"{parent.name}: dport not in target list")
            pos = pos * d.interleave_ways + targets.index(dport)
            port = parent
        return pos

    # ---- translation helpers ---------------------------------------------------------------
    def geometry(self, r: CxlRegion):
        from cxlemu.kernel.cxl.translate import RegionGeometry
        assert r.res is not None
        rd = r.cxlrd
        return RegionGeometry(start=r.res.start, size=r.res.size, ways=r.interleave_ways,
                              granularity=r.interleave_granularity,
                              arithmetic=rd.arithmetic, xormaps=tuple(rd.xormaps),
                              hb_ways=rd.interleave_ways)

    def dpa_to_region_hpa(self, md: "CxlMemdev", dpa: int) -> tuple[CxlRegion | None, int]:
        ep = md.endpoint
        if ep is None:
            return None, (1 << 64) - 1
        for d in ep.decoders:
            if isinstance(d, EndpointDecoder) and d.region is not None and d.dpa_start is not None \
                    and d.dpa_start <= dpa < d.dpa_start + d.dpa_len and d.region.res is not None:
                g = self.geometry(d.region)
                try:
                    return d.region, g.to_hpa(d.pos, dpa - d.dpa_start)
                except Exception:
                    return d.region, (1 << 64) - 1
        return None, (1 << 64) - 1
