"""The emulated platform: physical CXL topology, PCI enumeration, the memory
map and firmware.

:func:`build_platform` turns a :class:`~cxlemu.topology.schema.Topology` into
hardware objects:

* host bridges (ACPI0016, with a CHBS register block and optional HDM decoders),
* downstream ports (root ports and switch downstream ports) with the PCIe port
  numbers Linux uses as dport ids,
* switches (upstream port + HDM decoders) and Type 3 devices,
* PCI bus numbers assigned depth first, exactly as Linux enumerates bridges
  (every bridge consumes a bus number, empty ones too),
* the e820 map and the ACPI tables (CEDT, SRAT, HMAT, FACP) as binary blobs.

"Firmware" (:meth:`Platform.firmware_boot`) then programs and commits the HDM
decoders of the topology's ``[[firmware_region]]`` entries, which the kernel
later finds committed and auto-assembles, and marks them soft reserved.
"""

from __future__ import annotations

from dataclasses import field
from typing import Union

from cxlemu.hw.hdm import HdmDecoderUnit
from cxlemu.hw.type3 import Type3Device
from cxlemu.topology.schema import FirmwareRegion, HostBridge, Switch, Topology, TopologyError, Window
from cxlemu.util.lazydc import dataclass
from cxlemu.util.units import GiB, MiB, SZ_256M, align_up

CHBS_LEN_CXL20 = 0x10000
CHBS_LEN_CXL11 = 0x2000
LOW_RAM_LIMIT = 2 * GiB          # RAM below the 32-bit PCI hole
FOUR_GIB = 4 * GiB


@dataclass(eq=False)
class DownstreamPort:
    """A root port (below a host bridge) or a switch downstream port."""
    name: str                    # device name: PCI BDF or cxl_test platform device
    port_id: int                 # the dport id Linux uses (PCIe port number / pdev id)
    index: int                   # index among the parent's downstream ports
    kind: str                    # "root_port" | "dsp"
    parent: "Upstream"
    secondary_bus: int | None = None
    child: "Union[SwitchHw, Type3Device, None]" = None
    acpi_companion: str | None = None   # e.g. "device:02" on bare-metal root ports


@dataclass(eq=False)
class HostBridgeHw:
    """A host bridge as enumerated: its PCI root bus, root ports and HDM decoders."""
    topo: HostBridge
    index: int
    name: str                    # "pci0000:0c" or "cxl_host_bridge.0"
    acpi_name: str               # "ACPI0016:00" (acpi) / same as name (cxl_test)
    bus: int | None
    chbs_base: int
    hdm: HdmDecoderUnit | None
    ports: list[DownstreamPort] = field(default_factory=list)

    @property
    def uid(self) -> int:
        return self.topo.uid

    @property
    def is_rch(self) -> bool:
        return self.topo.cxl_version == "1.1"

    @property
    def chbs_len(self) -> int:
        return CHBS_LEN_CXL11 if self.is_rch else CHBS_LEN_CXL20


@dataclass(eq=False)
class SwitchHw:
    """A switch as enumerated: upstream port, internal bus, downstream ports, HDM decoders."""
    topo: Switch
    name: str                    # upstream port: PCI BDF or "cxl_switch_uport.N"
    upstream: DownstreamPort
    hdm: HdmDecoderUnit | None
    internal_bus: int | None = None
    ports: list[DownstreamPort] = field(default_factory=list)


Upstream = Union[HostBridgeHw, SwitchHw]


@dataclass(eq=False)
class WindowHw:
    """A CFMWS window placed in the host physical address space."""
    index: int
    topo: Window
    base: int
    host_bridges: list[HostBridgeHw]

    @property
    def size(self) -> int:
        return self.topo.size

    @property
    def end(self) -> int:
        return self.base + self.topo.size


@dataclass
class E820Entry:
    """One entry of the firmware memory map (e820), end inclusive."""
    start: int
    end: int                     # inclusive
    type: str                    # "usable" | "reserved" | "soft reserved" | "ACPI data"


@dataclass(eq=False)
class Platform:
    """The hardware of a machine: enumerated bridges, switches, devices, windows and e820."""
    topology: Topology
    host_bridges: list[HostBridgeHw]
    switches: list[SwitchHw]
    devices: list[Type3Device]   # in PCI enumeration (probe) order
    windows: list[WindowHw]
    e820: list[E820Entry]
    dram_ranges: list[tuple[int, int, int]]   # (start, end inclusive, node)
    tables: dict[str, bytes] = field(default_factory=dict)
    boot_count: int = 0
    saved_decoders: dict[str, list] = field(default_factory=dict)

    # ---- lookups ----------------------------------------------------------
    @property
    def flavor(self) -> str:
        return self.topology.flavor

    def device(self, name: str) -> Type3Device:
        for d in self.devices:
            if d.name == name or d.topo.id == name:
                return d
        raise KeyError(name)

    def host_bridge_by_uid(self, uid: int) -> HostBridgeHw:
        for hb in self.host_bridges:
            if hb.uid == uid:
                return hb
        raise KeyError(uid)

    def path_to(self, dev: Type3Device) -> list[DownstreamPort]:
        """Downstream ports from the host bridge down to ``dev`` (top first)."""
        path: list[DownstreamPort] = []
        port = self.upstream_port_of(dev)
        while port is not None:
            path.append(port)
            parent = port.parent
            port = parent.upstream if isinstance(parent, SwitchHw) else None
        return path[::-1]

    def upstream_port_of(self, dev: Type3Device) -> DownstreamPort:
        p = self._upstream_index().get(id(dev))
        if p is None or p.child is not dev:
            raise KeyError(dev.name)
        return p

    def _upstream_index(self) -> dict[int, DownstreamPort]:
        """id(child) -> the downstream port it hangs from; the port tree never
        changes after :func:`build_platform`, so the index is built once per
        process (it is transient: dropped by ``__getstate__``)."""
        idx = self.__dict__.get("_upstream")
        if idx is None:
            idx = {id(p.child): p for p in self.all_ports() if p.child is not None}
            self.__dict__["_upstream"] = idx
        return idx

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_upstream", None)
        return state

    def host_bridge_of(self, dev: Type3Device) -> HostBridgeHw:
        top = self.path_to(dev)[0].parent
        assert isinstance(top, HostBridgeHw)
        return top

    def all_ports(self) -> list[DownstreamPort]:
        out: list[DownstreamPort] = []
        for hb in self.host_bridges:
            out.extend(hb.ports)
        for sw in self.switches:
            out.extend(sw.ports)
        return out

    def hdm_units(self) -> dict[str, HdmDecoderUnit]:
        units: dict[str, HdmDecoderUnit] = {}
        for hb in self.host_bridges:
            if hb.hdm:
                units[hb.name] = hb.hdm
        for sw in self.switches:
            if sw.hdm:
                units[sw.name] = sw.hdm
        for d in self.devices:
            if d.hdm:
                units[d.name] = d.hdm
        return units

    @property
    def boot_ram_end(self) -> int:
        """max_pfn << PAGE_SHIFT: end of the highest boot System RAM range."""
        return max(e for _, e, _ in self.dram_ranges) + 1

    # ---- firmware -----------------------------------------------------------
    def firmware_boot(self) -> None:
        """What the BIOS does at every boot: program firmware regions."""
        from cxlemu.hw.firmware import program_firmware_regions, restore_decoders
        self.boot_count += 1
        program_firmware_regions(self)
        if self.topology.boot.firmware_keeps_decoders and self.saved_decoders:
            restore_decoders(self)

    def reset(self, *, power_loss: bool) -> None:
        """Conventional reset of every component (reboot or power failure)."""
        from cxlemu.hw.firmware import save_decoders
        if self.topology.boot.firmware_keeps_decoders:
            save_decoders(self)
        for hb in self.host_bridges:
            if hb.hdm:
                hb.hdm.reset_all()
        for sw in self.switches:
            if sw.hdm:
                sw.hdm.reset_all()
        for d in self.devices:
            d.conventional_reset()
            if power_loss and d.pmem_size:
                # No GPF flush acknowledgement from the host: the device counts
                # a dirty shutdown (CXL r3.1 8.2.9.9.3.1, Get Health Info).
                d.health.dirty_shutdowns += 1


# ----------------------------------------------------------------------------
# construction
# ----------------------------------------------------------------------------

def _dram_layout(t: Topology) -> list[tuple[int, int, int]]:
    """Place each node's DRAM: low memory below 2 GiB, the rest above 4 GiB."""
    ranges: list[tuple[int, int, int]] = []
    low_cursor = 0
    high_cursor = FOUR_GIB
    for n in t.numa:
        remaining = n.memory
        if low_cursor < LOW_RAM_LIMIT:
            take = min(remaining, LOW_RAM_LIMIT - low_cursor)
            ranges.append((low_cursor, low_cursor + take - 1, n.node))
            low_cursor += take
            remaining -= take
        if remaining:
            ranges.append((high_cursor, high_cursor + remaining - 1, n.node))
            high_cursor += remaining
    return ranges


def build_platform(t: Topology) -> Platform:
    """The platform firmware enumerates for topology ``t`` (see the module docstring)."""
    from cxlemu.util.gcpause import collector_paused
    with collector_paused():          # a graph that lives as long as the machine
        return _build_platform(t)


def _build_platform(t: Topology) -> Platform:
    from cxlemu.hw.firmware import build_tables

    dram = _dram_layout(t)
    ram_top = max(e for _, e, _ in dram) + 1
    mmio_cursor = align_up(max(ram_top, FOUR_GIB), GiB)

    cxl_test = t.flavor == "cxl_test"
    hbs: list[HostBridgeHw] = []
    next_bus: dict[int, int] = {}
    used_buses = {(hb.segment, hb.bus) for hb in t.host_bridges if hb.bus is not None}
    switches: list[SwitchHw] = []
    devices: list[Type3Device] = []
    attach = t.attachments()
    children: dict[str, list[tuple[int, object]]] = {}
    for (pid, port), child in attach.items():
        children.setdefault(pid, []).append((port, child))

    cursor = {"bus": 0, "seg": 0}
    counters = {"root_port": 0, "dsp": 0, "usp": 0, "mem": 0}

    def alloc_bus() -> int:
        cursor["bus"] += 1
        if cursor["bus"] > 0xFF:
            raise TopologyError("host_bridge", f"PCI segment {cursor['seg']:04x} ran out of bus numbers "
                                               "(give host bridges their own segment)")
        return cursor["bus"]

    def bdf(bus: int, dev: int) -> str:
        return f"{cursor['seg']:04x}:{bus:02x}:{dev:02x}.0"

    def make_device(d, upstream_name_parent: DownstreamPort | HostBridgeHw, bus: int | None) -> Type3Device:
        if cxl_test:
            prefix = "cxl_rcd" if d.rcd else "cxl_mem"
            name = f"{prefix}.{d.pdev_id if d.pdev_id is not None else counters['mem']}"
        else:
            name = bdf(bus, 0)
        counters["mem"] += 1
        dev = Type3Device.from_topology(d, name)
        devices.append(dev)
        return dev

    def build_below(owner: HostBridgeHw | SwitchHw, topo_id: str, nports: int,
                    kind: str, bus: int | None, port_ids: tuple[int, ...] | None) -> None:
        kids = dict(children.get(topo_id, []))
        for k in range(nports):
            if cxl_test:
                pid = port_ids[k] if port_ids else counters[kind]
                name = f"cxl_root_port.{pid}" if kind == "root_port" else f"cxl_switch_dport.{pid}"
                port_id = pid
            else:
                name = bdf(bus, k)
                port_id = port_ids[k] if port_ids else k
            counters[kind] += 1
            dp = DownstreamPort(name=name, port_id=port_id, index=k, kind=kind, parent=owner)
            owner.ports.append(dp)
            if not cxl_test:
                dp.secondary_bus = alloc_bus()
            child = kids.get(k)
            if child is None:
                continue
            if isinstance(child, Switch):
                if cxl_test:
                    sname = f"cxl_switch_uport.{child.pdev_id if child.pdev_id is not None else counters['usp']}"
                    internal = None
                else:
                    sname = bdf(dp.secondary_bus, 0)
                    internal = alloc_bus()
                counters["usp"] += 1
                hdm = None
                if child.decoder_count:
                    tc = 2 if cxl_test else min(8, child.downstream_ports)
                    hdm = HdmDecoderUnit(count=child.decoder_count, target_count=tc, caps=child.caps)
                sw = SwitchHw(topo=child, name=sname, upstream=dp, hdm=hdm, internal_bus=internal)
                switches.append(sw)
                dp.child = sw
                build_below(sw, child.id, child.downstream_ports, "dsp", internal, child.dport_pdev_ids)
            else:
                dp.child = make_device(child, dp, dp.secondary_bus)

    acpi_base = 0
    for i, hbt in enumerate(t.host_bridges):
        if cxl_test:
            name = f"cxl_host_bridge.{hbt.pdev_id if hbt.pdev_id is not None else i}"
            acpi_name = name
            bus = None
        else:
            seg = hbt.segment
            cursor["seg"] = seg
            if hbt.bus is not None:
                bus = hbt.bus
            else:
                bus = next_bus.get(seg, 0x0C)
                while (seg, bus) in used_buses:
                    bus += 1
            used_buses.add((seg, bus))
            name = f"pci{seg:04x}:{bus:02x}"
            acpi_name = f"ACPI0016:{i:02x}"
        if hbt.chbs_base is not None:
            chbs = hbt.chbs_base
        else:
            chbs = mmio_cursor
            mmio_cursor += CHBS_LEN_CXL20
        hdm = None
        if hbt.decoder_count and hbt.cxl_version == "2.0":
            tc = 2 if cxl_test else min(8, hbt.root_ports)
            hdm = HdmDecoderUnit(count=hbt.decoder_count, target_count=tc, caps=hbt.caps)
        hb = HostBridgeHw(topo=hbt, index=i, name=name, acpi_name=acpi_name, bus=bus,
                          chbs_base=chbs, hdm=hdm)
        hbs.append(hb)
        if hbt.cxl_version == "1.1":
            # RCH: the restricted device sits directly on the root bus (RCiEP).
            for _, child in children.get(hbt.id, []):
                dev = make_device(child, hb, bus)
                dp = DownstreamPort(name=dev.name, port_id=hbt.uid, index=0, kind="rch", parent=hb,
                                    child=dev)
                hb.ports.append(dp)
            continue
        cursor["bus"] = bus if bus is not None else 0
        build_below(hb, hbt.id, hbt.root_ports, "root_port", bus, hbt.port_ids)
        if not cxl_test:
            next_bus[cursor["seg"]] = cursor["bus"] + 1
            if not t.boot.hypervisor:
                # ACPI names companions "device:%02x" from one instance counter:
                # 16 per host bridge as on the bare-metal machines we mirror, more
                # when a bridge has more root ports (names never collide)
                for k, dp in enumerate(hb.ports):
                    dp.acpi_companion = f"device:{(acpi_base + k + 2):02x}"
                acpi_base += max(16, len(hb.ports))

    # windows: explicit bases, else packed after the CHBS blocks, 256M aligned
    win_cursor = align_up(mmio_cursor, SZ_256M)
    hb_by_id = {hb.topo.id: hb for hb in hbs}
    windows: list[WindowHw] = []
    for i, w in enumerate(t.windows):
        base = w.base if w.base is not None else win_cursor
        if w.base is None:
            win_cursor = base + w.size
        windows.append(WindowHw(index=i, topo=w, base=base, host_bridges=[hb_by_id[x] for x in w.targets]))
    from cxlemu.topology.schema import PHYS_ADDR_BITS
    for w in windows:          # packed windows may still run past the physical address space
        if w.end > 1 << PHYS_ADDR_BITS:
            raise TopologyError(f"window[{w.index}].size", f"the window would end at {w.end - 1:#x}, beyond the "
                                                           f"{PHYS_ADDR_BITS}-bit physical address space (64T)")
    if ram_top > 1 << PHYS_ADDR_BITS:
        raise TopologyError("numa", f"{ram_top:#x} bytes of DRAM do not fit the {PHYS_ADDR_BITS}-bit "
                                    f"physical address space")

    # probe order: PCI devices probe in bus order; cxl_test platform devices by id
    if cxl_test:
        devices.sort(key=lambda d: (d.topo.rcd, int(d.name.rsplit(".", 1)[1])))
    else:
        devices.sort(key=lambda d: d.name)

    seen_names: dict[str, str] = {}     # cxl_test pdev ids (explicit or counted) must name distinct devices
    for kind, items in (("host_bridge", hbs), ("switch", switches), ("device", devices)):
        for x in items:
            other = seen_names.setdefault(x.name, x.topo.id)
            if other != x.topo.id:
                raise TopologyError(f"{kind}:{x.topo.id}.pdev_id", f"device name {x.name} is already used by "
                                                                   f"{other!r}")
    for owner in (*hbs, *switches):
        for dp in owner.ports:
            if dp.kind == "rch":
                continue
            label = f"port {dp.index} of {owner.topo.id}"
            other = seen_names.setdefault(dp.name, label)
            if other != label:
                raise TopologyError(f"{owner.topo.id}.dport_pdev_ids", f"port name {dp.name} is already used by "
                                                                        f"{other!r}")
    e820 = _e820(dram, windows, t)
    for w in windows:          # an explicit base must not land on DRAM, firmware ranges or CHBS blocks
        if w.topo.base is None:
            continue
        busy = [(e.start, e.end, f"e820 {e.type} range") for e in e820 if e.type != "soft reserved"]
        busy += [(hb.chbs_base, hb.chbs_base + CHBS_LEN_CXL20 - 1, f"the CHBS of {hb.topo.id}") for hb in hbs]
        for start, end, what in busy:
            if w.base <= end and start <= w.end - 1:
                raise TopologyError(f"window[{w.index}].base", f"[{w.base:#x}-{w.end - 1:#x}] overlaps {what} "
                                                               f"[{start:#x}-{end:#x}]")
    plat = Platform(topology=t, host_bridges=hbs, switches=switches, devices=devices,
                    windows=windows, e820=e820, dram_ranges=dram)
    plat.tables = build_tables(plat)
    return plat


def _e820(dram, windows: list[WindowHw], t: Topology) -> list[E820Entry]:
    out = [E820Entry(0, 0xFFF, "reserved"), E820Entry(0x1000, 0x9FBFF, "usable"),
           E820Entry(0x9FC00, 0xFFFFF, "reserved")]
    for s, e, _ in dram:
        out.append(E820Entry(max(s, 0x100000), e, "usable"))
    out.append(E820Entry(0xB0000000, 0xBFFFFFFF, "reserved"))   # PCIe ECAM
    out.append(E820Entry(0xFED1C000, 0xFED1FFFF, "reserved"))
    out.append(E820Entry(0xFEFFC000, 0xFEFFFFFF, "reserved"))
    out.append(E820Entry(0xFFFC0000, 0xFFFFFFFF, "reserved"))
    for r in t.firmware_regions:
        if r.mode == "ram":
            w = windows[r.window]
            start = w.base + r.offset
            out.append(E820Entry(start, start + r.size - 1, "soft reserved"))
    out.sort(key=lambda e: e.start)
    return out


def firmware_region_range(p: Platform, r: FirmwareRegion) -> tuple[int, int]:
    w = p.windows[r.window]
    return w.base + r.offset, r.size
