"""Dynamic Capacity on the host, as the Linux DCD series (v11, Anisa Su,
June 2026, on Ira Weiny's v9) defines it: ``drivers/cxl/core/extent.c``,
``drivers/cxl/core/mbox.c`` (the DC event handler), ``drivers/cxl/core/region.c``
(DC regions) and ``drivers/dax/`` (DC dax regions).

* The memdev reports its DC partition as ``dynamic_ram_1`` (``memN/dynamic_ram_1/size``);
  an endpoint decoder in mode ``dynamic_ram_1`` and a region created with
  ``create_dynamic_ram_1_region`` map the whole partition.  The region's
  ``cxl_dax_region`` makes a *sparse* dax region: no capacity until extents come.
* DC event records are read from the Dynamic Capacity event log (Get Event
  Records, log 4) when the device interrupts -- here, whenever the machine runs
  (:func:`service`).  Add Capacity records are *staged* while the More chain is
  open; only when a record with More = 0 arrives is the chain surfaced.  An open
  chain older than 20 s (simulated time, ``kernel.clock_ns``) is dropped and
  answered with an empty Add DC Response; at most 100 extents may be pending
  (further records are refused) so that a device cannot keep the timer alive.
* ``cxl list -N`` (ndctl's DCD series) lists them under each region as
  ``extents: [{offset, length, uuid}]``.
* Extents are untrusted input: each must lie inside the DC partition, be
  block aligned, have a non-zero length and not overlap an accepted or
  pending extent.  A record for an extent already accepted is tolerated
  (duplicate), not re-acknowledged.
* The chain's extents are grouped by tag.  Tags are unique on the host; a
  shared group must carry dense sequence numbers 0..n-1; non-shared extents
  are ordered by arrival.  Each group becomes **one DAX device** (one range per
  extent, in sequence order), atomically: a group that fails any check is
  rejected as a whole.  The accepted extents go back in one Add DC Response.
* Release Capacity records name extents; the whole tag group must be named
  (the series releases per group).  The DAX device goes first: a device in
  System RAM mode has its memory blocks offlined, and unmovable (pinned or
  kernel) pages make that fail with -EBUSY as real hotplug does; the group
  then stays and no Release DC is sent.  Forced Capacity Release records are
  logged and otherwise ignored (the device has already revoked access).
* When a DC region is probed (at boot or after a crash), the extents the
  device already lists as accepted (Get DC Extent List) are taken back without
  a new response ("region probe re-reads already-accepted extents").

The mailbox is reached through ``kernel.fabric`` (attached by the machine, not
persisted); without it no DC command can run and DC capacity is not usable.
"""

from __future__ import annotations

import errno
import uuid as uuidlib
from dataclasses import field
from typing import TYPE_CHECKING

from cxlemu.hw.mailbox import dcd_payloads as D
from cxlemu.hw.mailbox.opcodes import Opcode, ReturnCode
from cxlemu.kernel.base.device import RO, AttrGroup, Device, KernelError, device_add, device_del
from cxlemu.kernel.cxl.port import MODE_DC
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.memdev import CxlMemdev
    from cxlemu.kernel.dax.bus import DaxRegion, DevDax
    from cxlemu.kernel.kernel import Kernel

MORE_CHAIN_TIMEOUT_NS = 20 * 10**9
MAX_PENDING_EXTENTS = 100
NULL_TAG = str(uuidlib.UUID(int=0))


@dataclass
class DcExtentRec:
    dpa: int
    length: int
    tag: str
    seq: int

    @property
    def end(self) -> int:
        return self.dpa + self.length


class RegionExtent(Device):
    """``dax_regionX/extentX.Y`` (DCD series, "cxl/region: Expose region extent
    information in sysfs"): one per accepted extent, so that a host can see
    which parts of the (shared) window are usable now."""

    devtype = "region_extent"
    ATTR_GROUPS = (AttrGroup(None, (RO("offset"), RO("length"), RO("uuid"))),)

    def __init__(self, name: str, parent: Device, offset: int, length: int, tag: str):
        super().__init__(name, parent, None)
        self.offset, self.length, self.tag = offset, length, tag

    def offset_show(self) -> str:
        return f"{self.offset:#x}\n"

    def length_show(self) -> str:
        return f"{self.length:#x}\n"

    def uuid_show(self) -> str:
        return f"{self.tag}\n"


@dataclass
class TagGroup:
    tag: str
    extents: list[DcExtentRec]
    dax: str = ""               # the DAX device name (daxR.N)
    sysfs: list = field(default_factory=list)    # RegionExtent devices

    @property
    def size(self) -> int:
        return sum(e.length for e in self.extents)


@dataclass
class MemdevDc:
    """Per memdev DC state (struct cxl_memdev_state's DC part + the pending list)."""
    memdev: str
    regions: list[tuple[int, int, int]] = field(default_factory=list)   # (base, length, block size)
    pending: list[DcExtentRec] = field(default_factory=list)
    chain_start_ns: int | None = None
    releasing: list[tuple[int, int]] = field(default_factory=list)
    groups: dict[str, TagGroup] = field(default_factory=dict)
    region: str = ""            # the DC region (regionN) once created
    next_extent: int = 0
    refused: list[str] = field(default_factory=list)   # tags whose release the host refused (last service)


class DcdError(Exception):
    pass


def _state(kernel: "Kernel") -> dict[str, MemdevDc]:
    st = kernel.__dict__.get("dcd")
    if st is None:
        st = {}
        kernel.__dict__["dcd"] = st
    return st


def memdev_state(kernel: "Kernel", md: "CxlMemdev") -> MemdevDc:
    st = _state(kernel)
    s = st.get(md.name)
    if s is None:
        s = st[md.name] = MemdevDc(md.name)
    return s


def dc_memdevs(kernel: "Kernel") -> list["CxlMemdev"]:
    return [md for md in kernel.cxl.memdevs if md.hw.dc_size]


# ---- the mailbox ---------------------------------------------------------------------------------------
def mbox(kernel: "Kernel", md: "CxlMemdev", opcode: int, payload: bytes) -> bytes:
    fabric = getattr(kernel, "fabric", None)
    if fabric is None:
        raise KernelError(errno.ENXIO, f"{md.name}: Dynamic Capacity device not reachable")
    rc, out = fabric.mailbox(md.hw, opcode, payload)
    if rc != ReturnCode.SUCCESS:
        raise KernelError(errno.ENXIO, f"{md.name}: mailbox {opcode:#06x} failed: rc {rc:#x} "
                                       f"{out.decode(errors='replace')}")
    return out


def read_config(kernel: "Kernel", md: "CxlMemdev") -> MemdevDc:
    """cxl_dev_dc_identify(): Get DC Config."""
    s = memdev_state(kernel, md)
    out = D.GetDcConfigOutput.decode(mbox(kernel, md, Opcode.GET_DC_CONFIG, D.GetDcConfigInput(8, 0).encode()))
    s.regions = [(r.base, r.length, r.block_size) for r in out.regions]
    return s


def _accepted_list(kernel: "Kernel", md: "CxlMemdev") -> list[D.DcExtent]:
    out: list[D.DcExtent] = []
    start = 0
    while True:
        res = D.GetDcExtentListOutput.decode(
            mbox(kernel, md, Opcode.GET_DC_EXTENT_LIST, D.GetDcExtentListInput(64, start).encode()))
        out.extend(res.extents)
        start += len(res.extents)
        if not res.extents or start >= res.total:
            return out


# ---- the DC region and its dax region -------------------------------------------------------------------
def dc_region_of(kernel: "Kernel", md: "CxlMemdev"):
    s = memdev_state(kernel, md)
    r = next((x for x in kernel.cxl.regions.all() if x.name == s.region), None)
    if r is not None and r.mode == MODE_DC:
        return r
    return None


def dax_region_of(kernel: "Kernel", md: "CxlMemdev") -> "DaxRegion | None":
    r = dc_region_of(kernel, md)
    if r is None:
        return None
    for c in r.children:
        reg = c.__dict__.get("dax_region")
        if reg is not None:
            return reg
    return None


def create_dc_region(kernel: "Kernel", md: "CxlMemdev"):
    """What ``cxl create-region -m dynamic_ram_1 -d decoderX.Y memN`` does:
    a 1-way region over the whole DC partition, committed and enabled."""
    from cxlemu.kernel.base.device import device_attach
    core = kernel.cxl
    if md.endpoint is None:
        raise KernelError(errno.ENXIO, f"{md.name}: no endpoint")
    hw = md.hw
    rd = next((x for x in core.root_decoders() if x.cap_ram and x.interleave_ways == 1 and x.size >= hw.dc_size
               and not x.regions), None)
    if rd is None:
        raise KernelError(errno.ENXIO, f"{md.name}: no CXL window for {hw.dc_size:#x} of dynamic_ram_1")
    mgr = core.regions
    r = mgr.create_region_store(rd, f"region{rd.region_id}".encode(), MODE_DC)
    try:
        mgr.set_granularity(r, str(rd.interleave_granularity).encode())
        mgr.set_ways(r, b"1")
        ed = next(d for d in md.endpoint.decoders if getattr(d, "dpa_start", 0) is None and d.region is None)
        core.hdm.set_mode(ed, MODE_DC.encode())
        core.hdm.set_dpa_size(ed, hex(hw.dc_size).encode())
        mgr.alloc_hpa(r, hw.dc_size)
        mgr.store_target(r, 0, (ed.name + "\n").encode())
        mgr.commit_store(r, True)
    except (KernelError, StopIteration):
        mgr.unregister(r)
        raise
    memdev_state(kernel, md).region = r.name
    device_attach(r)
    return r


def dax_probe(kernel: "Kernel", region: "DaxRegion") -> None:
    """The cxl_dax_region of a DC region was probed: take back the extents the
    device already lists as accepted (no Add DC Response for them)."""
    region.dc = True                              # type: ignore[attr-defined]
    r = region.host.region                        # the CxlRegion
    md = r.members()[0].memdev if r.members() else None
    if md is None or getattr(kernel, "fabric", None) is None:
        return
    s = memdev_state(kernel, md)
    s.region = r.name
    try:
        read_config(kernel, md)
        exts = _accepted_list(kernel, md)
    except KernelError as e:
        kernel.log(f"{md.name}: DC extent scan failed: {e.log}")
        return
    s.groups.clear()
    _surface_by_tag(kernel, md, s, exts, "{dev}: recovered tag {tag} not surfaced: {err}")
    kernel.dirty = True


# ---- event handling (cxl_handle_dcd_event_records) --------------------------------------------------------
def _dpa_to_hpa(kernel: "Kernel", md: "CxlMemdev", dpa: int) -> int:
    r = dc_region_of(kernel, md)
    ed = r.members()[0]
    return r.res.start + (dpa - ed.dpa_start)


def _valid(kernel: "Kernel", md: "CxlMemdev", s: MemdevDc, x: D.DcExtent) -> str | None:
    hw = md.hw
    if x.length <= 0 or x.start_dpa + x.length > 1 << 64:
        return "bad length"
    if not (hw.dc_base <= x.start_dpa and x.start_dpa + x.length <= hw.dc_base + hw.dc_size):
        return "outside the DC partition"
    bs = next((b for base, ln, b in s.regions if base <= x.start_dpa < base + ln), hw.dc_block_size or 1)
    if x.start_dpa % bs or x.length % bs:
        return f"not aligned to the block size {bs:#x}"
    for e in s.pending:
        if e.dpa < x.start_dpa + x.length and x.start_dpa < e.end:
            return "overlaps a pending extent"
    return None


def _accepted_exact(s: MemdevDc, x: D.DcExtent) -> bool:
    return any(e.dpa == x.start_dpa and e.length == x.length for g in s.groups.values() for e in g.extents)


def _overlaps_accepted(s: MemdevDc, x: D.DcExtent) -> bool:
    return any(e.dpa < x.start_dpa + x.length and x.start_dpa < e.end for g in s.groups.values() for e in g.extents)


def _surface(kernel: "Kernel", md: "CxlMemdev", g: TagGroup) -> None:
    """One tag group -> one DAX device with a range per extent (atomic)."""
    dax_region = dax_region_of(kernel, md)
    if dax_region is None:
        raise KernelError(errno.ENXIO, f"{md.name}: no DC region to surface {g.tag}")
    dax = kernel.dax
    dev = dax.create_dev_dax_ranges(dax_region, [(_dpa_to_hpa(kernel, md, e.dpa), e.length) for e in g.extents],
                                    uuid=g.tag)
    g.dax = dev.name
    s = memdev_state(kernel, md)
    r = dc_region_of(kernel, md)
    host = dax_region.host
    for e in g.extents:
        x = RegionExtent(f"extent{r.id}.{s.next_extent}", host, _dpa_to_hpa(kernel, md, e.dpa) - r.res.start,
                         e.length, g.tag)
        s.next_extent += 1
        device_add(x)
        g.sysfs.append(x)


def _close_chain(kernel: "Kernel", md: "CxlMemdev", s: MemdevDc) -> None:
    """The More chain closed: group, check, surface, respond."""
    pend, s.pending, s.chain_start_ns = s.pending, [], None
    by_tag: dict[str, list[DcExtentRec]] = {}
    for e in pend:
        by_tag.setdefault(e.tag, []).append(e)
    accepted: list[DcExtentRec] = []
    for tag, lst in by_tag.items():
        why = None
        if tag in s.groups:
            why = "tag already in use on this host"
        # the appliance's region is sharable: the device stamps sequence
        # numbers, which must be dense 0..n-1 (v11)
        lst.sort(key=lambda e: e.seq)
        if why is None and [e.seq for e in lst] != list(range(len(lst))):
            why = "sequence numbers are not dense 0..n-1"
        g = TagGroup(tag, lst)
        if why is None:
            try:
                _surface(kernel, md, g)
            except KernelError as err:
                why = err.log or "dax device creation failed"
        if why is not None:
            kernel.log(f"{md.name}: DC tag {tag}: {len(lst)} extent(s) rejected: {why}")
            continue
        s.groups[tag] = g
        accepted.extend(lst)
        kernel.log(f"{md.name}: DC tag {tag}: {len(lst)} extent(s) added as {g.dax}")
    upd = D.DcExtentListUpdate(tuple((e.dpa, e.length) for e in accepted))
    try:
        mbox(kernel, md, Opcode.ADD_DC_RESPONSE, upd.encode())
    except KernelError as err:
        # the device refused the response (the offer was withdrawn): undo
        kernel.log(f"{md.name}: Add DC Response failed: {err.log}")
        for tag in {e.tag for e in accepted}:
            g = s.groups.pop(tag, None)
            if g is not None:
                _unsurface(kernel, g, force=True)


def _unsurface(kernel: "Kernel", g: TagGroup, force: bool = False) -> None:
    """Remove the group's DAX device: System RAM is offlined first (-EBUSY on
    unmovable pages unless ``force``)."""
    dev = kernel.dax.find(g.dax) if g.dax else None
    if dev is not None:
        if dev.driver is not None and dev.driver.name == "kmem" and not force:
            offline_dax_memory(kernel, dev)
        kernel.dax.unregister_dev_dax(dev)
    g.dax = ""
    for x in g.sysfs:
        if x.registered:
            device_del(x)
    g.sysfs = []


def offline_dax_memory(kernel: "Kernel", dev: "DevDax") -> None:
    """Offline every online memory block of a kmem device, all or nothing."""
    mm = kernel.mm
    bs = mm.block_size
    blocks = []
    for r in dev.ranges:
        for start in range(r.start - r.start % bs, r.end + 1, bs):
            blk = mm.blocks.get(start // bs)
            if blk is not None and blk.online:
                blocks.append(blk)
    done = []
    try:
        for blk in blocks:
            kind = blk.zone
            mm.hotplug.offline_block(blk)
            done.append((blk, kind))
    except KernelError:
        from cxlemu.kernel.mm.zones import MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE, ZONE_MOVABLE
        for blk, zone in reversed(done):
            mm.hotplug.online_block(blk, MMOP_ONLINE_MOVABLE if zone == ZONE_MOVABLE else MMOP_ONLINE_KERNEL)
        raise KernelError(errno.EBUSY, f"{dev.name}: memory in use (pinned or kernel pages): offline failed")


def _handle_release(kernel: "Kernel", md: "CxlMemdev", s: MemdevDc, named: list[tuple[int, int]]) -> None:
    want = set(named)
    released: list[tuple[int, int]] = []
    for tag, g in list(s.groups.items()):
        mine = {(e.dpa, e.length) for e in g.extents}
        if not mine & want:
            continue
        if not mine <= want:
            kernel.log(f"{md.name}: DC release of part of tag {tag} ignored (whole-group release only)")
            continue
        try:
            _unsurface(kernel, g)
        except KernelError as err:
            kernel.log(f"{md.name}: DC release of tag {tag} refused: {err.log}")
            s.refused.append(tag)
            continue
        del s.groups[tag]
        released.extend(sorted(mine))
        kernel.log(f"{md.name}: DC tag {tag}: released {len(mine)} extent(s)")
    if released:
        mbox(kernel, md, Opcode.RELEASE_DC, D.DcExtentListUpdate(tuple(released)).encode())


def service(kernel: "Kernel") -> int:
    """The DC event interrupt: read and handle every DC event record of every
    DC memdev; returns how many records were handled."""
    n = 0
    for md in dc_memdevs(kernel):
        if md.driver is None:
            continue
        s = memdev_state(kernel, md)
        s.refused = []
        if not s.regions:
            try:
                read_config(kernel, md)
            except KernelError:
                continue
        release: list[tuple[int, int]] = []
        while True:
            out = D.GetEventRecordsOutput.decode(
                mbox(kernel, md, Opcode.GET_EVENT_RECORDS, D.GetEventRecordsInput(D.EVENT_LOG_DCD).encode()))
            if not out.records:
                break
            for rec in out.records:
                n += 1
                _record(kernel, md, s, rec, release)
            mbox(kernel, md, Opcode.CLEAR_EVENT_RECORDS,
                 D.ClearEventRecordsInput(D.EVENT_LOG_DCD, tuple(r.handle for r in out.records)).encode())
            if not out.more:
                break
        if s.pending and s.chain_start_ns is not None and \
                kernel.clock_ns - s.chain_start_ns > MORE_CHAIN_TIMEOUT_NS:
            kernel.log(f"{md.name}: DC More chain timed out: {len(s.pending)} extent(s) dropped")
            s.pending, s.chain_start_ns = [], None
            mbox(kernel, md, Opcode.ADD_DC_RESPONSE, D.DcExtentListUpdate(()).encode())
        if release:
            _handle_release(kernel, md, s, release)
        if _resync(kernel, md, s):
            n += 1
        if n:
            kernel.dirty = True
    return n


def _resync(kernel: "Kernel", md: "CxlMemdev", s: MemdevDc) -> bool:
    """After a crash of this host the device may list extents the host's saved
    state does not know (accepted, then killed before the state was saved)
    or the reverse: take the device's list as the truth, as region probe does."""
    if dax_region_of(kernel, md) is None:
        return False
    try:
        exts = _accepted_list(kernel, md)
    except KernelError:
        return False
    dev = {(e.start_dpa, e.length): e for e in exts}
    mine = {(e.dpa, e.length) for g in s.groups.values() for e in g.extents}
    if set(dev) == mine:
        return False
    for tag, g in list(s.groups.items()):
        if not all((e.dpa, e.length) in dev for e in g.extents):
            kernel.log(f"{md.name}: DC tag {tag}: no longer held by the device, removed")
            _unsurface(kernel, g, force=True)
            del s.groups[tag]
    mine = {(e.dpa, e.length) for g in s.groups.values() for e in g.extents}
    _surface_by_tag(kernel, md, s, [e for key, e in dev.items() if key not in mine],
                    "{dev}: DC tag {tag}: cannot recover: {err}",
                    "{dev}: DC tag {tag}: {n} accepted extent(s) recovered as {dax}")
    return True


def _surface_by_tag(kernel, md, s, exts, failed: str, done: str | None = None) -> None:
    """Group device extents by tag (in sequence order) and surface each group as
    one allocation; a group the kernel cannot surface is logged (``failed``) and
    left out, a surfaced one is logged with ``done`` when given."""
    by_tag: dict[str, list[DcExtentRec]] = {}
    for e in exts:
        t = str(e.tag_uuid)
        by_tag.setdefault(t, []).append(DcExtentRec(e.start_dpa, e.length, t, e.shared_seq))
    for t, lst in by_tag.items():
        lst.sort(key=lambda x: x.seq)
        g = TagGroup(t, lst)
        try:
            _surface(kernel, md, g)
        except KernelError as err:
            kernel.log(failed.format(dev=md.name, tag=t, err=err.log))
            continue
        s.groups[t] = g
        if done:
            kernel.log(done.format(dev=md.name, tag=t, n=len(lst), dax=g.dax))


def _record(kernel: "Kernel", md: "CxlMemdev", s: MemdevDc, rec: D.DcEventRecord,
            release: list[tuple[int, int]]) -> None:
    x = rec.extent
    if rec.event_type == D.DcEventType.ADD_CAPACITY:
        if _accepted_exact(s, x):
            kernel.log(f"{md.name}: DC extent {x.start_dpa:#x}+{x.length:#x} already accepted")
        else:
            why = _valid(kernel, md, s, x) or ("overlaps an accepted extent" if _overlaps_accepted(s, x) else None)
            if why is None and len(s.pending) >= MAX_PENDING_EXTENTS:
                why = f"more than {MAX_PENDING_EXTENTS} pending extents"
            if why is not None:
                kernel.log(f"{md.name}: DC extent {x.start_dpa:#x}+{x.length:#x} rejected: {why}")
            else:
                if not s.pending:
                    s.chain_start_ns = kernel.clock_ns
                s.pending.append(DcExtentRec(x.start_dpa, x.length, str(x.tag_uuid), x.shared_seq))
        if not rec.more:
            _close_chain(kernel, md, s)
    elif rec.event_type == D.DcEventType.RELEASE_CAPACITY:
        release.append((x.start_dpa, x.length))
    elif rec.event_type == D.DcEventType.FORCED_CAPACITY_RELEASE:
        kernel.log(f"{md.name}: DC forced release of {x.start_dpa:#x}+{x.length:#x} (ignored: the device "
                   f"has revoked access)")
    elif rec.event_type == D.DcEventType.REGION_CONFIGURATION_UPDATED:
        kernel.log(f"{md.name}: DC region configuration updated: {rec.extents_available} extent(s), "
                   f"{rec.tags_available} tag(s) available (pool capacity notice)")
    else:
        kernel.log(f"{md.name}: DC event type {rec.event_type} ignored")


# ---- views ---------------------------------------------------------------------------------------------
def allocations(kernel: "Kernel") -> list[dict]:
    """Per tag group: what the host reports to the FM (tag, bytes, dax, hpa)."""
    out = []
    for md in dc_memdevs(kernel):
        s = memdev_state(kernel, md)
        r = dc_region_of(kernel, md)
        for tag, g in s.groups.items():
            hpa = _dpa_to_hpa(kernel, md, g.extents[0].dpa) if r is not None and g.extents else None
            dev = kernel.dax.find(g.dax) if g.dax else None
            mode = None
            if dev is not None:
                mode = "system-ram" if dev.driver is not None and dev.driver.name == "kmem" else "devdax"
            out.append({"memdev": md.name, "tag": tag, "bytes": g.size, "dax": g.dax or None, "hpa": hpa,
                        "mode": mode,
                        "extents": [[e.dpa, e.length] for e in g.extents]})
    return out
