"""A multi-headed Dynamic Capacity Device: the memory appliance of a rack.

One device, several heads (an MH-SLD: one head per host port, each head one
logical device, LD id = head index = the FM API "host id"), one or more
Dynamic Capacity regions (CXL r3.1 §9.13.3), and the extents the fabric
manager hands out of them.  The model follows CXL r3.1:

* **Add** (FM API Initiate Dynamic Capacity Add, 5604h, §7.6.7.6.5): the device
  picks extents under the selection policy (free, contiguous, prescriptive,
  enable-shared-access), marks them *offered* to the head and posts one Add
  Capacity event record per extent to that head's Dynamic Capacity event log,
  chained with the More flag (the last record has More = 0).
* The host answers with **Add Dynamic Capacity Response** (4802h): the extents it
  accepts (a subset, possibly none).  A response settles the oldest open offer
  of that head; offered extents it does not list go back to the pool.
* **Release** (5605h, §7.6.7.6.6): tag-based or prescriptive.  The device posts
  Release Capacity records; the host gives the capacity back with **Release
  Dynamic Capacity** (4803h), or does not (it may refuse: pinned pages).
  *Forced* removal revokes access at once and posts Forced Capacity Release
  records, which the host only logs.
* **Sanitize on release**: capacity that no host holds any more is scrubbed
  (the caller zeroes the media, :attr:`DcdAppliance.scrub_queue`) before the
  state that returns it to the pool is committed.
* **Access control** ("trust the switch"): a head reads and writes only the
  extents it accepted; any other access returns all-ones and is counted
  (:meth:`access_mask`).
* **Sharing**: extents allocated with ``shared=True`` carry dense sequence
  numbers 0..n-1 (the v11 host rule) and may be accepted by several heads at
  once, each through its own HPA.

The object is plain data (lists, dicts, ints, strings) so that it serialises
to JSON: it lives in the rack's directory, never inside a host's state.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import asdict, field

from cxlemu.hw.mailbox import dcd_payloads as D
from cxlemu.hw.mailbox.opcodes import ReturnCode
from cxlemu.util.lazydc import dataclass

#: Linux (DCD series v11) accepts at most this many extents pending on a head.
MAX_EXTENTS = 1024
MAX_TAGS = 256

FREE, OFFERED, ACCEPTED = "free", "offered", "accepted"


class DcdError(Exception):
    """A refused device or FM API command: ``rc`` is the mailbox return code."""

    def __init__(self, rc: int, msg: str):
        super().__init__(msg)
        self.rc = int(rc)


@dataclass
class DcRegion:
    index: int
    base: int                   # DPA
    length: int
    block_size: int
    sanitize_on_release: bool = True
    sharable: bool = True

    @property
    def end(self) -> int:
        return self.base + self.length


@dataclass
class Extent:
    id: int
    region: int
    dpa: int
    length: int
    tag: str                    # uuid string ("00000000-..." = untagged)
    seq: int = 0                # shared extent sequence number (0..n-1 within the tag)
    shared: bool = False
    hosts: list[int] = field(default_factory=list)      # heads that accepted it (have access)
    offered: list[int] = field(default_factory=list)    # heads with an open offer
    releasing: list[int] = field(default_factory=list)  # heads asked to release it

    @property
    def end(self) -> int:
        return self.dpa + self.length

    @property
    def state(self) -> str:
        return ACCEPTED if self.hosts else OFFERED if self.offered else FREE

    def wire(self) -> D.DcExtent:
        return D.DcExtent(self.dpa, self.length, uuidlib.UUID(self.tag).bytes, self.seq)


@dataclass
class Offer:
    id: int
    head: int
    tag: str
    extents: list[int]


@dataclass
class Head:
    index: int
    host: str                   # the rack host cabled to this head
    port: str = ""              # "<topology id of the host's port parent>:<port>"
    ld: int = 0                 # logical device assigned to the head (MLD LD-ID)
    events: list[dict] = field(default_factory=list)     # DC event log: {"handle", "record" (hex)}
    next_handle: int = 1
    offers: list[Offer] = field(default_factory=list)    # open offers, oldest first
    denied_reads: int = 0
    denied_writes: int = 0
    generation: int = 0


@dataclass
class DcdAppliance:
    name: str
    serial: int
    regions: list[DcRegion]
    heads: list[Head]
    extents: list[Extent] = field(default_factory=list)
    next_extent: int = 0
    next_offer: int = 0
    clock: int = 0              # device timestamp (a counter, never the wall clock)
    scrub_queue: list[list[int]] = field(default_factory=list)   # [dpa, length] to zero before commit
    scrubbed_bytes: int = 0

    # ---- construction / serialisation ---------------------------------------------------------
    @classmethod
    def create(cls, name: str, serial: int, capacity: int, hosts: list[tuple[str, str]],
               block_size: int = 256 << 20, regions: int = 1) -> "DcdAppliance":
        if capacity <= 0 or capacity % (block_size * regions):
            raise ValueError(f"{name}: capacity {capacity:#x} is not a multiple of {regions} x block size")
        per = capacity // regions
        regs = [DcRegion(i, i * per, per, block_size) for i in range(regions)]
        heads = [Head(i, h, p, ld=i) for i, (h, p) in enumerate(hosts)]
        return cls(name, serial, regs, heads)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DcdAppliance":
        regions = [DcRegion(**r) for r in d["regions"]]
        heads = []
        for h in d["heads"]:
            h = dict(h)
            h["offers"] = [Offer(**o) for o in h.get("offers", [])]
            heads.append(Head(**h))
        extents = [Extent(**e) for e in d.get("extents", [])]
        rest = {k: v for k, v in d.items() if k not in ("regions", "heads", "extents")}
        return cls(regions=regions, heads=heads, extents=extents, **rest)

    # ---- queries ----------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return sum(r.length for r in self.regions)

    def head(self, host_id: int) -> Head:
        if not 0 <= host_id < len(self.heads):
            raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: no head {host_id}")
        return self.heads[host_id]

    def head_of(self, host: str) -> Head:
        for h in self.heads:
            if h.host == host:
                return h
        raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: no head cabled to {host!r}")

    def free_ranges(self, region: int) -> list[tuple[int, int]]:
        """Free [start, end) ranges of a region, ascending."""
        reg = self.regions[region]
        used = sorted((e.dpa, e.end) for e in self.extents if e.region == region)
        out, cur = [], reg.base
        for s, e in used:
            if s > cur:
                out.append((cur, s))
            cur = max(cur, e)
        if cur < reg.end:
            out.append((cur, reg.end))
        return out

    def free_bytes(self) -> int:
        return sum(e - s for r in self.regions for s, e in self.free_ranges(r.index))

    def tag_extents(self, tag: str) -> list[Extent]:
        return sorted((e for e in self.extents if e.tag == tag), key=lambda e: e.seq)

    def accepted(self, head: int) -> list[Extent]:
        return sorted((e for e in self.extents if head in e.hosts), key=lambda e: e.dpa)

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    # ---- events -----------------------------------------------------------------------------------
    def _post(self, head: Head, etype: int, ext: Extent, more: bool) -> None:
        rec = D.DcEventRecord(
            event_type=etype, extent=ext.wire(), handle=head.next_handle & 0xFFFF, timestamp=self._tick(),
            host_id=head.index, region_index=ext.region, more=more,
            extents_available=max(MAX_EXTENTS - len(self.extents), 0),
            tags_available=max(MAX_TAGS - len({e.tag for e in self.extents}), 0))
        head.events.append({"handle": rec.handle, "record": rec.encode().hex()})
        head.next_handle = head.next_handle % 0xFFFF + 1

    def get_event_records(self, host_id: int, max_records: int = 64) -> list[D.DcEventRecord]:
        h = self.head(host_id)
        return [D.DcEventRecord.decode(bytes.fromhex(e["record"])) for e in h.events[:max_records]]

    def clear_event_records(self, host_id: int, handles: list[int]) -> None:
        h = self.head(host_id)
        known = {e["handle"] for e in h.events}
        bad = [x for x in handles if x not in known]
        if bad:
            raise DcdError(ReturnCode.INVALID_HANDLE, f"{self.name}: unknown event handle {bad[0]}")
        hs = set(handles)
        h.events = [e for e in h.events if e["handle"] not in hs]

    # ---- FM API: Initiate Dynamic Capacity Add (5604h) ---------------------------------------------------
    def initiate_add(self, req: D.FmInitiateDcAdd, shared: bool = False) -> list[Extent]:
        head = self.head(req.host_id)
        if not 0 <= req.region < len(self.regions):
            raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: no DC region {req.region}")
        reg = self.regions[req.region]
        tag = str(uuidlib.UUID(bytes=req.tag))
        pol = req.policy
        if pol == D.SelectionPolicy.ENABLE_SHARED_ACCESS:
            exts = [e for e in self.tag_extents(tag) if e.shared]
            if not exts:
                raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: no sharable capacity tagged {tag}")
            if any(head.index in e.hosts or head.index in e.offered for e in exts):
                raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: head {head.index} already has {tag}")
            for e in exts:
                e.offered.append(head.index)
            self._offer(head, tag, exts)
            return exts
        if tag != str(uuidlib.UUID(int=0)) and self.tag_extents(tag):
            raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: tag {tag} is in use")
        bs = reg.block_size
        if req.length <= 0 or req.length % bs:
            raise DcdError(ReturnCode.INVALID_INPUT,
                           f"{self.name}: length {req.length:#x} is not a positive multiple of the block size {bs:#x}")
        if shared and not reg.sharable:
            raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: region {reg.index} is not sharable")
        free = self.free_ranges(reg.index)
        picks: list[tuple[int, int]] = []
        if pol == D.SelectionPolicy.FREE:
            need = req.length
            for s, e in free:
                take = min(e - s, need)
                picks.append((s, take))
                need -= take
                if not need:
                    break
            if need:
                raise DcdError(ReturnCode.RESOURCES_EXHAUSTED,
                               f"{self.name}: {req.length:#x} requested, {sum(e - s for s, e in free):#x} free")
        elif pol == D.SelectionPolicy.CONTIGUOUS:
            hit = next(((s, req.length) for s, e in free if e - s >= req.length), None)
            if hit is None:
                raise DcdError(ReturnCode.RESOURCES_EXHAUSTED,
                               f"{self.name}: no contiguous {req.length:#x} free")
            picks.append(hit)
        elif pol == D.SelectionPolicy.PRESCRIPTIVE:
            if not req.extents or sum(x.length for x in req.extents) != req.length:
                raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: prescriptive extents do not add up to length")
            for x in sorted(req.extents, key=lambda x: x.start_dpa):
                if x.length <= 0 or x.start_dpa % bs or x.length % bs:
                    raise DcdError(ReturnCode.INVALID_EXTENT_LIST, f"{self.name}: extent not block aligned")
                if not any(s <= x.start_dpa and x.end <= e for s, e in free):
                    raise DcdError(ReturnCode.INVALID_EXTENT_LIST,
                                   f"{self.name}: extent {x.start_dpa:#x}+{x.length:#x} is not free")
                if picks and picks[-1][0] + picks[-1][1] > x.start_dpa:
                    raise DcdError(ReturnCode.INVALID_EXTENT_LIST, f"{self.name}: extents overlap")
                picks.append((x.start_dpa, x.length))
        else:
            raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: selection policy {pol}")
        if len(self.extents) + len(picks) > MAX_EXTENTS:
            raise DcdError(ReturnCode.RESOURCES_EXHAUSTED, f"{self.name}: extent table full")
        exts = []
        for seq, (s, ln) in enumerate(picks):
            e = Extent(self.next_extent, reg.index, s, ln, tag, seq=seq, shared=shared, offered=[head.index])
            self.next_extent += 1
            self.extents.append(e)
            exts.append(e)
        self._offer(head, tag, exts)
        return exts

    def _offer(self, head: Head, tag: str, exts: list[Extent]) -> None:
        head.offers.append(Offer(self.next_offer, head.index, tag, [e.id for e in exts]))
        self.next_offer += 1
        for i, e in enumerate(exts):
            self._post(head, D.DcEventType.ADD_CAPACITY, e, more=i < len(exts) - 1)

    def cancel_offers(self, host_id: int, tag: str | None = None) -> list[Extent]:
        """The FM withdraws open offers (a host that did not answer): the
        extents go back to the pool and their event records are dropped."""
        head = self.head(host_id)
        gone: list[Extent] = []
        keep = []
        for o in head.offers:
            if tag is not None and o.tag != tag:
                keep.append(o)
                continue
            for eid in o.extents:
                e = self._extent(eid)
                if e is not None and head.index in e.offered:
                    e.offered.remove(head.index)
                    gone.append(e)
        head.offers = keep
        dpas = {(e.dpa, e.length) for e in gone}
        head.events = [ev for ev in head.events
                       if not self._record_matches(ev, dpas, D.DcEventType.ADD_CAPACITY)]
        self._collect()
        return gone

    @staticmethod
    def _record_matches(ev: dict, dpas: set[tuple[int, int]], etype: int) -> bool:
        rec = D.DcEventRecord.decode(bytes.fromhex(ev["record"]))
        return rec.event_type == etype and (rec.extent.start_dpa, rec.extent.length) in dpas

    def _extent(self, eid: int) -> Extent | None:
        return next((e for e in self.extents if e.id == eid), None)

    def _collect(self) -> None:
        """Extents nobody holds or is offered return to the pool (scrubbed)."""
        keep = []
        for e in self.extents:
            if e.hosts or e.offered:
                keep.append(e)
                continue
            if self.regions[e.region].sanitize_on_release:
                self.scrub_queue.append([e.dpa, e.length])
                self.scrubbed_bytes += e.length
        self.extents = keep

    def post_capacity_notice(self) -> None:
        """Tell every head the pool changed (a Region Configuration Updated
        record, whose extents/tags-available fields the host logs)."""
        zero = Extent(-1, 0, 0, 0, str(uuidlib.UUID(int=0)))
        for h in self.heads:
            self._post(h, D.DcEventType.REGION_CONFIGURATION_UPDATED, zero, more=False)

    # ---- mailbox: Add Dynamic Capacity Response (4802h) -------------------------------------------------
    def add_response(self, host_id: int, upd: D.DcExtentListUpdate) -> list[Extent]:
        head = self.head(host_id)
        if not head.offers:
            if upd.extents:
                raise DcdError(ReturnCode.INVALID_EXTENT_LIST, f"{self.name}: head {host_id}: no open offer")
            return []
        offer = head.offers[0]
        members = {(e.dpa, e.length): e for eid in offer.extents if (e := self._extent(eid)) is not None}
        take: list[Extent] = []
        for dpa, ln in upd.extents:
            e = members.get((dpa, ln))
            if e is None or head.index not in e.offered:
                raise DcdError(ReturnCode.INVALID_EXTENT_LIST,
                               f"{self.name}: head {host_id}: {dpa:#x}+{ln:#x} was not offered")
            take.append(e)
        head.offers.pop(0)
        for e in members.values():
            if head.index in e.offered:
                e.offered.remove(head.index)
            if e in take and head.index not in e.hosts:
                e.hosts.append(head.index)
        head.generation += 1
        self._collect()
        return take

    # ---- FM API: Initiate Dynamic Capacity Release (5605h) -------------------------------------------------
    def initiate_release(self, req: D.FmInitiateDcRelease) -> list[Extent]:
        head = self.head(req.host_id)
        tag = str(uuidlib.UUID(bytes=req.tag))
        held = self.accepted(head.index)
        if req.policy == D.RemovalPolicy.TAG_BASED:
            exts = [e for e in held if e.tag == tag]
            if not exts:
                raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: head {head.index} holds nothing tagged {tag}")
        elif req.policy == D.RemovalPolicy.PRESCRIPTIVE:
            by = {(e.dpa, e.length): e for e in held}
            exts = []
            for x in req.extents:
                e = by.get((x.start_dpa, x.length))
                if e is None:
                    raise DcdError(ReturnCode.INVALID_EXTENT_LIST,
                                   f"{self.name}: head {head.index} never accepted {x.start_dpa:#x}+{x.length:#x}")
                exts.append(e)
            if not exts:
                raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: empty release")
        else:
            raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: removal policy {req.policy}")
        if req.sanitize:
            for e in exts:
                self.regions[e.region].sanitize_on_release = True
        if req.forced:
            for i, e in enumerate(exts):
                e.hosts.remove(head.index)
                if head.index in e.releasing:
                    e.releasing.remove(head.index)
                self._post(head, D.DcEventType.FORCED_CAPACITY_RELEASE, e, more=i < len(exts) - 1)
            head.generation += 1
            self._collect()
            return exts
        for i, e in enumerate(exts):
            if head.index not in e.releasing:
                e.releasing.append(head.index)
            self._post(head, D.DcEventType.RELEASE_CAPACITY, e, more=i < len(exts) - 1)
        return exts

    def cancel_release(self, host_id: int, tag: str) -> None:
        """The FM gives up a release the host refused."""
        head = self.head(host_id)
        dpas = set()
        for e in self.tag_extents(tag):
            if head.index in e.releasing:
                e.releasing.remove(head.index)
                dpas.add((e.dpa, e.length))
        head.events = [ev for ev in head.events
                       if not self._record_matches(ev, dpas, D.DcEventType.RELEASE_CAPACITY)]

    # ---- mailbox: Release Dynamic Capacity (4803h) --------------------------------------------------------
    def release(self, host_id: int, upd: D.DcExtentListUpdate) -> list[Extent]:
        head = self.head(host_id)
        by = {(e.dpa, e.length): e for e in self.accepted(head.index)}
        exts = []
        for dpa, ln in upd.extents:
            e = by.get((dpa, ln))
            if e is None:
                raise DcdError(ReturnCode.INVALID_EXTENT_LIST,
                               f"{self.name}: head {host_id} does not hold {dpa:#x}+{ln:#x}")
            exts.append(e)
        for e in exts:
            e.hosts.remove(head.index)
            if head.index in e.releasing:
                e.releasing.remove(head.index)
        if exts:
            head.generation += 1
        self._collect()
        return exts

    # ---- mailbox: Get DC Config (4800h), Get DC Extent List (4801h) -------------------------------------
    def get_config(self, req: D.GetDcConfigInput) -> D.GetDcConfigOutput:
        regs = self.regions[req.start_region: req.start_region + req.region_count]
        return D.GetDcConfigOutput(
            total_regions=len(self.regions),
            regions=tuple(D.DcRegionConfig(r.base, r.length, r.length, r.block_size, 0,
                                           1 if r.sanitize_on_release else 0) for r in regs),
            extents_supported=MAX_EXTENTS, extents_available=max(MAX_EXTENTS - len(self.extents), 0),
            tags_supported=MAX_TAGS, tags_available=max(MAX_TAGS - len({e.tag for e in self.extents}), 0))

    def get_extent_list(self, host_id: int, req: D.GetDcExtentListInput) -> D.GetDcExtentListOutput:
        head = self.head(host_id)
        acc = self.accepted(head.index)
        if req.start_index > len(acc):
            raise DcdError(ReturnCode.INVALID_INPUT, f"{self.name}: start index {req.start_index}")
        part = acc[req.start_index: req.start_index + req.count]
        return D.GetDcExtentListOutput(len(acc), head.generation, tuple(e.wire() for e in part))

    # ---- access control -------------------------------------------------------------------------------------
    def access_ranges(self, host_id: int) -> list[tuple[int, int]]:
        """[start, end) DPA ranges head ``host_id`` may access, merged, ascending."""
        out: list[tuple[int, int]] = []
        for e in self.accepted(host_id):
            if out and out[-1][1] == e.dpa:
                out[-1] = (out[-1][0], e.end)
            else:
                out.append((e.dpa, e.end))
        return out

    def count_denied(self, host_id: int, write: bool, n: int = 1) -> None:
        h = self.head(host_id)
        if write:
            h.denied_writes += n
        else:
            h.denied_reads += n

    # ---- invariants (used by tests and the FM's reconciliation) ------------------------------------------------
    def check(self) -> list[str]:
        errs = []
        spans = sorted((e.dpa, e.end, e.id) for e in self.extents)
        for (s0, e0, i0), (s1, e1, i1) in zip(spans, spans[1:]):
            if s1 < e0:
                errs.append(f"extents {i0} and {i1} overlap")
        for e in self.extents:
            reg = self.regions[e.region]
            if not (reg.base <= e.dpa and e.end <= reg.end):
                errs.append(f"extent {e.id} outside region {reg.index}")
            if not e.shared and len(e.hosts) + len([o for o in e.offered if o not in e.hosts]) > 1:
                errs.append(f"extent {e.id} is not sharable but held by {e.hosts} offered to {e.offered}")
        return errs


def access_mask(ranges: list[tuple[int, int]], dpas, length: int):
    """Vectorised check: which of the accesses [dpa, dpa+length) fall wholly
    inside one of ``ranges`` (sorted, merged)."""
    import numpy as np
    d = np.asarray(dpas, dtype=np.int64)
    if not ranges:
        return np.zeros(d.shape, dtype=bool)
    starts = np.array([s for s, _ in ranges], dtype=np.int64)
    ends = np.array([e for _, e in ranges], dtype=np.int64)
    i = np.searchsorted(starts, d, side="right") - 1
    ok = i >= 0
    ic = np.clip(i, 0, None)
    return ok & (d + length <= ends[ic])


# ---- the head's mailbox (what a host's driver sends to its memdev) ------------------------------------------
def handle(app: DcdAppliance, host_id: int, opcode: int, payload: bytes) -> tuple[int, bytes]:
    """Execute a mailbox command on head ``host_id``; (return code, output)."""
    from cxlemu.hw.mailbox.opcodes import Opcode
    from cxlemu.hw.mailbox.payloads import PayloadError
    try:
        if opcode == Opcode.GET_DC_CONFIG:
            return ReturnCode.SUCCESS, app.get_config(D.GetDcConfigInput.decode(payload)).encode()
        if opcode == Opcode.GET_DC_EXTENT_LIST:
            return ReturnCode.SUCCESS, app.get_extent_list(host_id, D.GetDcExtentListInput.decode(payload)).encode()
        if opcode == Opcode.ADD_DC_RESPONSE:
            app.add_response(host_id, D.DcExtentListUpdate.decode(payload))
            return ReturnCode.SUCCESS, b""
        if opcode == Opcode.RELEASE_DC:
            app.release(host_id, D.DcExtentListUpdate.decode(payload))
            return ReturnCode.SUCCESS, b""
        if opcode == Opcode.GET_EVENT_RECORDS:
            req = D.GetEventRecordsInput.decode(payload)
            if req.log != D.EVENT_LOG_DCD:
                return ReturnCode.SUCCESS, D.GetEventRecordsOutput(()).encode()
            recs = app.get_event_records(host_id, D.EVENT_RECORDS_MAX)
            more = len(app.head(host_id).events) > len(recs)
            return ReturnCode.SUCCESS, D.GetEventRecordsOutput(tuple(recs), more=more).encode()
        if opcode == Opcode.CLEAR_EVENT_RECORDS:
            req = D.ClearEventRecordsInput.decode(payload)
            if req.log == D.EVENT_LOG_DCD:
                app.clear_event_records(host_id, list(req.handles))
            return ReturnCode.SUCCESS, b""
    except PayloadError:
        return ReturnCode.INVALID_PAYLOAD_LENGTH, b""
    except DcdError as e:
        return e.rc, str(e).encode()
    return ReturnCode.UNSUPPORTED, b""
