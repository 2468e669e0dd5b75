"""The declarative topology format (TOML) for a whole CXL platform.

A topology describes hardware and firmware policy, never kernel state:

* ``[machine]``      name, description, flavor ("acpi" for a real ACPI/PCI platform,
                     "cxl_test" for the kernel's cxl_test platform devices)
* ``[boot]``         kernel profile and boot options (hotplug policy, soft reserve, eADR ...)
* ``[[numa]]``       host DRAM per NUMA node with latency/bandwidth
* ``[[host_bridge]]`` CXL host bridges (ACPI0016) with their root ports
* ``[[switch]]``     CXL switches, nested to any depth through ``parent``
* ``[[device]]``     CXL Type 3 memory devices
* ``[[window]]``     CFMWS windows (and CXIMS xormaps for XOR windows)
* ``[[firmware_region]]`` regions the BIOS programs (committed decoders) at every boot

Elements refer to each other by ``id``.  A switch or device with ``parent = X``
takes the next free downstream port of X (a root port of a host bridge or a
downstream port of a switch) unless ``port = N`` names one.

Every validation error names the field (``device[2].persistent``) and the
reason, and raises :class:`TopologyError` before anything is created.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from cxlemu.util.lazydc import dataclass
from cxlemu.util.units import GiB, MiB, SZ_256M, is_pow2, parse_size

FLAVORS = ("acpi", "cxl_test")
ONLINE_TYPES = ("offline", "online", "online_kernel", "online_movable")
ONLINE_POLICIES = ("contig-zones", "auto-movable")
RESTRICTIONS = ("type2", "type3", "volatile", "pmem", "fixed")
ARITHMETICS = ("modulo", "xor")
KERNEL_PROFILES = ("6.1", "6.3", "6.5", "6.8", "6.9", "6.12", "6.14", "6.17")
VALID_WAYS = (1, 2, 3, 4, 6, 8, 12, 16)

# Field limits from the encodings the values end up in (a value that does not
# fit is refused here, naming the field and the limit, never deep in a codec).
U8_MAX, U16_MAX, U32_MAX, U64_MAX = 0xFF, 0xFFFF, 0xFFFF_FFFF, (1 << 64) - 1
PHYS_ADDR_BITS = 46           # x86-64 4-level paging; kernel.kernel.PHYS_ADDR_BITS (iomem_resource)
MAX_NUMNODES = 1 << 10        # x86-64 CONFIG_NODES_SHIFT=10
NR_CPUS_MAX = 8192            # x86-64 CONFIG_MAXSMP
LSA_SIZE_MAX = U32_MAX        # Identify Memory Device "LSA Size" is 4 bytes (CXL 2.0 Table 175,
                              # r3.1 Table 8-127); Get/Set LSA carry a u32 offset and length
LSA_SIZE_CXLEMU_MAX = 256 * MiB  # cxlemu keeps a label area in the machine state (docs/fidelity.md)
MEM_SIZE_FOR_LARGE_BLOCK = 64 * GiB  # arch/x86/mm/init_64.c set_memory_block_size_order() bound


class TopologyError(ValueError):
    """A topology file is invalid.  ``field`` names the offending field."""

    def __init__(self, field_path: str, reason: str):
        super().__init__(f"{field_path}: {reason}")
        self.field = field_path
        self.reason = reason


@dataclass(frozen=True)
class BootOptions:
    """The ``[boot]`` table: kernel profile and boot-time parameters of the machine."""
    kernel: str = "6.9"
    hypervisor: bool = True               # QEMU-like VM; False = bare metal
    memhp_default_state: str = "offline"  # CONFIG_MHP_DEFAULT_ONLINE_TYPE / memhp_default_state=
    online_policy: str = "contig-zones"   # memory_hotplug.online_policy
    auto_movable_ratio: int = 301
    auto_movable_numa_aware: bool = True
    movable_node: bool = False
    soft_reserve: bool = True             # honour EFI_MEMORY_SP (False = nosoftreserve)
    persistent_cpu_caches: bool = False   # FADT PERSISTENT_CPU_CACHES (eADR)
    firmware_keeps_decoders: bool = False # BIOS re-commits, at boot, decoders committed before reset
    assemble_from_region_labels: bool = False
    memory_block_size: int | None = None  # explicit override (set_memory_block_size_order)
    region_invalidation_test: bool = False  # CONFIG_CXL_REGION_INVALIDATION_TEST
    swap: int = 0                         # size of the swap device (/dev/vdb), 0: no swap
    zswap: bool = False                   # zswap.enabled at boot (CONFIG_ZSWAP_DEFAULT_ON)
    cxl_zone: str = "node"                # "exmem": SMDK's kernel, CXL memory as ZONE_EXMEM of the CPU's node
    zswap_pool_node: str = "reclaimer"    # "page": zswap keeps a page's compressed copy on its node (seed 002)
    cxl_error_native: bool = True         # _OSC grants the OS CXL error control (else firmware-first)
    cxl_pmem_badblocks: bool = True       # cxlemu extension: CXL poison -> libnvdimm badblocks, ARS/clear-error

    @property
    def kernel_version(self) -> tuple[int, int]:
        major, minor = self.kernel.split(".")[:2]
        return int(major), int(minor)


TIMING_PROFILES = ("ddr5-4800", "ddr5-remote", "cxl-asic-x8", "cxl-fpga", "cxl-pool-box")   # hw/timing.py CALIBRATION


@dataclass(frozen=True)
class Timing:
    """How the memory behaves under load (hw/timing.py); every field optional:
    ``profile`` takes a calibrated device class, a non-zero number overrides
    it, and without any the HMAT/CDAT figures of the element are used."""
    profile: str = ""
    read_latency: float = 0       # ns, idle
    write_latency: float = 0
    read_bandwidth: float = 0     # MB/s, peak
    write_bandwidth: float = 0
    total_bandwidth: float = 0    # MB/s, peak of reads + writes
    read_k: float = 0             # loaded-latency curve shape
    write_k: float = 0


@dataclass(frozen=True)
class NumaNode:
    """A ``[[numa]]`` node: CPUs and DRAM of a socket, with its HMAT figures."""
    node: int
    cpus: int = 4
    memory: int = 4 * GiB
    read_latency: int = 80        # ns
    write_latency: int = 80
    read_bandwidth: int = 20000   # MB/s
    write_bandwidth: int = 20000
    timing: Timing | None = None


@dataclass(frozen=True)
class HdmCaps:
    """HDM decoder capability bits (CXL r3.1 8.2.4.20.1)."""
    iw_3_6_12: bool = True
    iw_16: bool = True
    a11to8: bool = True
    a14to12: bool = True


@dataclass(frozen=True)
class HostBridge:
    """A ``[[host_bridge]]``: an ACPI0016 CXL host bridge (CHBS, root ports, HDM decoders)."""
    id: str
    uid: int
    root_ports: int = 1
    hdm_decoders: int | None = None  # None: 0 (pass-through) with 1 root port, else 8
    cxl_version: str = "2.0"         # CHBS version; "1.1" is an RCH
    chbs_base: int | None = None
    bus: int | None = None           # PCI root bus number (_BBN)
    segment: int = 0                 # PCI segment group (domain, _SEG)
    numa_node: int = 0               # the bridge's _PXM node; -1: no _PXM (QEMU pxb-cxl without numa_node=),
                                     # so PCI devices below it, and their memdevs, have no node (-1)
    caps: HdmCaps = HdmCaps()
    pdev_id: int | None = None       # cxl_test flavor: platform device id
    port_ids: tuple[int, ...] | None = None  # dport ids of the root ports (PCIe port numbers)

    @property
    def decoder_count(self) -> int:
        if self.hdm_decoders is not None:
            return self.hdm_decoders
        return 0 if self.root_ports == 1 else 8


@dataclass(frozen=True)
class Switch:
    """A ``[[switch]]``: a CXL switch below a root port or a switch downstream port."""
    id: str
    parent: str
    downstream_ports: int = 1
    port: int | None = None
    hdm_decoders: int | None = None  # None: 0 (pass-through) with 1 dport, else 8
    caps: HdmCaps = HdmCaps()
    pdev_id: int | None = None       # cxl_test: id of cxl_switch_uport.N
    dport_pdev_ids: tuple[int, ...] | None = None  # cxl_test: ids of cxl_switch_dport.N

    @property
    def decoder_count(self) -> int:
        if self.hdm_decoders is not None:
            return self.hdm_decoders
        return 0 if self.downstream_ports == 1 else 8


@dataclass(frozen=True)
class Cdat:
    """A device's CDAT DSLBIS figures (latency and bandwidth of its media)."""
    read_latency: int = 250     # ns (device media + internal)
    write_latency: int = 250
    read_bandwidth: int = 16000  # MB/s
    write_bandwidth: int = 16000


@dataclass(frozen=True)
class Device:
    """A ``[[device]]``: a CXL Type 3 memory device (capacity, partitions, LSA, RAS options)."""
    id: str
    parent: str
    port: int | None = None
    serial: int | None = None
    volatile: int = 0           # volatile-only capacity
    persistent: int = 0         # persistent-only capacity
    partitionable: int = 0      # capacity set-partition can move between the two
    partition_align: int = SZ_256M
    partition_volatile: int = 0  # part of the partitionable capacity that starts out volatile
    lsa: int = 0                # label storage area size
    hdm_decoders: int = 4
    payload_max: int = 2048
    firmware_version: str = "cxlemu-fw 0.1"
    fw_slots: int = 2
    numa_node: int | None = None   # PCI device node; default: the host bridge's node
    cdat: Cdat = Cdat()
    caps: HdmCaps = HdmCaps()
    pdev_id: int | None = None     # cxl_test: id of cxl_mem.N
    rcd: bool = False              # restricted CXL device (below a CXL 1.1 host bridge)
    qos_class: int | None = None   # qos_class reported for ram/pmem partitions
    timing: Timing | None = None   # loaded-latency behaviour (hw/timing.py)
    dynamic_capacity: int = 0      # CXL 3.1 DC region(s) after the static capacity (dynamic_ram_1)
    dc_block_size: int = SZ_256M   # DC region block size (extent granularity)
    appliance: str = ""            # rack: the multi-headed appliance this device is a head of
    head: int = 0                  # rack: which head of the appliance (FM API host id)
    # RAS (CXL r3.1 8.2.9.9.4, 8.2.9.2): poison list size, injection support and
    # limit, event log size, MSI/MSI-X vectors for event interrupts
    poison_max_records: int = 256
    inject_poison_limit: int = 128
    poison_inject: bool = True
    event_log_size: int = 64
    event_irq: bool = True

    @property
    def capacity(self) -> int:
        return self.volatile + self.persistent + self.partitionable


@dataclass(frozen=True)
class Window:
    """A ``[[window]]``: a CEDT CFMWS fixed memory window and its host-bridge targets."""
    size: int
    targets: tuple[str, ...]
    base: int | None = None
    granularity: int = 256
    restrictions: tuple[str, ...] = ("type3", "volatile", "pmem")
    arithmetic: str = "modulo"
    xormaps: tuple[int, ...] = ()
    qtg: int = 0
    numa_node: int | None = None   # SRAT memory affinity covering the window (else Linux makes a node)

    @property
    def ways(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class FirmwareRegion:
    """A ``[[firmware_region]]``: decoders the BIOS commits before the OS boots."""
    window: int
    devices: tuple[str, ...]     # in interleave position order
    size: int
    mode: str = "ram"
    granularity: int = 4096
    offset: int = 0              # HPA offset inside the window


@dataclass(frozen=True)
class Topology:
    """A whole machine description, as read from its TOML file."""
    name: str
    description: str = ""
    flavor: str = "acpi"
    boot: BootOptions = BootOptions()
    numa: tuple[NumaNode, ...] = (NumaNode(0),)
    host_bridges: tuple[HostBridge, ...] = ()
    switches: tuple[Switch, ...] = ()
    devices: tuple[Device, ...] = ()
    windows: tuple[Window, ...] = ()
    firmware_regions: tuple[FirmwareRegion, ...] = ()
    source: str = ""             # the TOML text it was loaded from

    # ---- lookups -------------------------------------------------------
    def element(self, ident: str) -> HostBridge | Switch | Device:
        for coll in (self.host_bridges, self.switches, self.devices):
            for e in coll:
                if e.id == ident:
                    return e
        raise KeyError(ident)

    def children_of(self, ident: str) -> list[tuple[int, Switch | Device]]:
        """(port index, child) pairs attached below ``ident``, by port index."""
        return [(p, c) for (pid, p), c in self.attachments().items() if pid == ident]

    def attachments(self) -> dict[tuple[str, int], Switch | Device]:
        """Map (parent id, downstream port index) -> child; computed in file order."""
        used: dict[tuple[str, int], Switch | Device] = {}
        nports = {hb.id: hb.root_ports for hb in self.host_bridges}
        nports.update({sw.id: sw.downstream_ports for sw in self.switches})
        for child in (*self.switches, *self.devices):
            if child.port is not None:
                used[(child.parent, child.port)] = child
        for child in (*self.switches, *self.devices):
            if child.port is None:
                free = next(i for i in range(nports[child.parent]) if (child.parent, i) not in used)
                used[(child.parent, free)] = child
        return dict(sorted(used.items(), key=lambda kv: (kv[0][0], kv[0][1])))

    @property
    def total_dram(self) -> int:
        return sum(n.memory for n in self.numa)


# ----------------------------------------------------------------------------
# loading and validation
# ----------------------------------------------------------------------------

_SIZE_FIELDS = {"memory", "volatile", "persistent", "partitionable", "partition_align", "lsa",
                "partition_volatile", "swap", "dynamic_capacity", "dc_block_size",
                "size", "granularity", "offset", "memory_block_size", "base", "chbs_base"}


def _convert(path: str, name: str, value: Any, ftype: Any) -> Any:
    t = str(ftype)
    try:
        if name in _SIZE_FIELDS:
            return None if value is None else parse_size(value)
        if "tuple[int" in t:
            if not isinstance(value, list):
                raise ValueError("expected a list of integers")
            return tuple(parse_size(v) if isinstance(v, str) else int(v) for v in value)
        if "tuple[str" in t:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("expected a list of strings")
            return tuple(value)
        if t.startswith("float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError("expected a number")
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError("expected a finite number")
            return float(value)
        if t in ("bool",):
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if t.startswith("int"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("expected an integer")
            return value
        if t.startswith("str"):
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return value
    except ValueError as e:
        raise TopologyError(f"{path}.{name}", str(e)) from None
    return value


def _build(cls, path: str, table: dict[str, Any], nested: dict[str, type] | None = None):
    if not isinstance(table, dict):
        raise TopologyError(path, "expected a table")
    nested = nested or {}
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise TopologyError(f"{path}.{key}", f"unknown field (known: {', '.join(sorted(known))})")
        if key in nested:
            kwargs[key] = _build(nested[key], f"{path}.{key}", value)
        else:
            kwargs[key] = _convert(path, key, value, known[key].type)
    missing = [f.name for f in fields(cls)
               if f.name not in kwargs and f.default is f.default_factory  # both MISSING
               and f.name != "source"]
    if missing:
        raise TopologyError(f"{path}.{missing[0]}", "required field is missing")
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - guarded above
        raise TopologyError(path, str(e)) from None


def decode_text(data: bytes, origin: str = "<toml>") -> str:
    """The text of a topology file; a file that is not UTF-8 (binary garbage,
    another encoding) is a TopologyError naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise TopologyError(origin, f"not a UTF-8 text file (byte {data[e.start]:#04x} at offset "
                                    f"{e.start}, line {line}); a topology is TOML text") from None


def loads(text: str) -> Topology:
    """Parse and validate a topology from TOML text."""
    import tomllib                  # (here: loading a saved machine parses no TOML)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TopologyError("<toml>", str(e)) from None
    return from_dict(doc, source=text)


def from_dict(doc: dict[str, Any], source: str = "") -> Topology:
    allowed = {"machine", "boot", "numa", "host_bridge", "switch", "device", "window", "firmware_region"}
    for key in doc:
        if key not in allowed:
            raise TopologyError(key, f"unknown section (known: {', '.join(sorted(allowed))})")
    machine = doc.get("machine", {})
    if not isinstance(machine, dict):
        raise TopologyError("machine", "expected a table")
    for key in machine:
        if key not in ("name", "description", "flavor"):
            raise TopologyError(f"machine.{key}", "unknown field (known: description, flavor, name)")
    name = machine.get("name")
    if not isinstance(name, str) or not name:
        raise TopologyError("machine.name", "required field is missing")
    flavor = machine.get("flavor", "acpi")
    if flavor not in FLAVORS:
        raise TopologyError("machine.flavor", f"must be one of {', '.join(FLAVORS)}")

    def arr(key: str) -> list[dict[str, Any]]:
        value = doc.get(key, [])
        if not isinstance(value, list):
            raise TopologyError(key, "expected an array of tables ([[%s]])" % key)
        return value

    boot = _build(BootOptions, "boot", doc.get("boot", {}))
    numa = tuple(_build(NumaNode, f"numa[{i}]", t, {"timing": Timing})
                 for i, t in enumerate(arr("numa"))) or (NumaNode(0),)
    hbs = tuple(_build(HostBridge, f"host_bridge[{i}]", t, {"caps": HdmCaps})
                for i, t in enumerate(arr("host_bridge")))
    sws = tuple(_build(Switch, f"switch[{i}]", t, {"caps": HdmCaps}) for i, t in enumerate(arr("switch")))
    devs = tuple(_build(Device, f"device[{i}]", t, {"cdat": Cdat, "caps": HdmCaps, "timing": Timing})
                 for i, t in enumerate(arr("device")))
    wins = tuple(_build(Window, f"window[{i}]", t) for i, t in enumerate(arr("window")))
    fwr = tuple(_build(FirmwareRegion, f"firmware_region[{i}]", t) for i, t in enumerate(arr("firmware_region")))
    topo = Topology(name=name, description=machine.get("description", ""), flavor=flavor, boot=boot,
                    numa=numa, host_bridges=hbs, switches=sws, devices=devs, windows=wins,
                    firmware_regions=fwr, source=source)
    topo = _fill_defaults(topo)
    validate(topo)
    return topo


def _fill_defaults(t: Topology) -> Topology:
    devs = tuple(d if d.serial is not None else replace(d, serial=i) for i, d in enumerate(t.devices))
    return replace(t, devices=devs)


def validate(t: Topology) -> None:
    """Check cross references and hardware constraints; raise TopologyError."""
    b = t.boot
    if b.kernel not in KERNEL_PROFILES:
        raise TopologyError("boot.kernel", f"unknown kernel profile {b.kernel!r} (known: {', '.join(KERNEL_PROFILES)})")
    if b.zswap_pool_node not in ("reclaimer", "page"):
        raise TopologyError("boot.zswap_pool_node", "must be reclaimer (Linux: the reclaiming CPU's node) or page "
                                                    "(the node the page was reclaimed from)")
    if b.cxl_zone not in ("node", "exmem"):
        raise TopologyError("boot.cxl_zone", "must be node (CXL memory as CPU-less NUMA nodes) or exmem "
                                             "(SMDK's ZONE_EXMEM of the CPU's node)")
    if b.memhp_default_state not in ONLINE_TYPES:
        raise TopologyError("boot.memhp_default_state", f"must be one of {', '.join(ONLINE_TYPES)}")
    if b.online_policy not in ONLINE_POLICIES:
        raise TopologyError("boot.online_policy", f"must be one of {', '.join(ONLINE_POLICIES)}")
    if b.auto_movable_ratio < 0:
        raise TopologyError("boot.auto_movable_ratio", "must not be negative")
    if b.memory_block_size is not None and (not is_pow2(b.memory_block_size) or b.memory_block_size < 128 * MiB):
        raise TopologyError("boot.memory_block_size", "must be a power of two of at least 128M")
    if b.memory_block_size is not None and b.memory_block_size > MEM_SIZE_FOR_LARGE_BLOCK:
        raise TopologyError("boot.memory_block_size", "at most 64G (set_memory_block_size_order, "
                                                      "MEM_SIZE_FOR_LARGE_BLOCK)")

    seen_nodes: set[int] = set()
    for i, n in enumerate(t.numa):
        if n.node in seen_nodes:
            raise TopologyError(f"numa[{i}].node", f"node {n.node} is defined twice")
        seen_nodes.add(n.node)
        if n.node < 0:
            raise TopologyError(f"numa[{i}].node", "must not be negative")
        if n.node >= MAX_NUMNODES:
            raise TopologyError(f"numa[{i}].node", f"must be below {MAX_NUMNODES} (MAX_NUMNODES)")
        if n.memory <= 0 or n.memory % (128 * MiB):
            raise TopologyError(f"numa[{i}].memory", "must be a positive multiple of 128M")
        if n.memory >= 1 << PHYS_ADDR_BITS:
            raise TopologyError(f"numa[{i}].memory", f"does not fit the {PHYS_ADDR_BITS}-bit physical "
                                                     f"address space (64T)")
        if n.cpus < 0:
            raise TopologyError(f"numa[{i}].cpus", "must not be negative")
        if n.cpus > NR_CPUS_MAX:
            raise TopologyError(f"numa[{i}].cpus", f"at most {NR_CPUS_MAX} (NR_CPUS)")
        for f in ("read_latency", "write_latency", "read_bandwidth", "write_bandwidth"):
            if getattr(n, f) <= 0:
                raise TopologyError(f"numa[{i}].{f}", "must be positive")
            if getattr(n, f) > U32_MAX:
                raise TopologyError(f"numa[{i}].{f}", "does not fit the HMAT (at most 4294967295)")
    if not any(n.cpus for n in t.numa):
        raise TopologyError("numa", "at least one node needs CPUs")
    if b.swap % 4096 or (b.swap and b.swap < 40960):
        raise TopologyError("boot.swap", "must be 0 or a multiple of 4K of at least 40K (mkswap's minimum)")
    for kind, coll in (("numa", t.numa), ("device", t.devices)):
        for i, e in enumerate(coll):
            tm = e.timing
            if tm is None:
                continue
            if tm.profile and tm.profile not in TIMING_PROFILES:
                raise TopologyError(f"{kind}[{i}].timing.profile",
                                    f"unknown profile {tm.profile!r} (known: {', '.join(TIMING_PROFILES)})")
            for f in ("read_latency", "write_latency", "read_bandwidth", "write_bandwidth", "total_bandwidth",
                      "read_k", "write_k"):
                if getattr(tm, f) < 0:
                    raise TopologyError(f"{kind}[{i}].timing.{f}", "must not be negative")

    ids: dict[str, str] = {}
    for kind, coll in (("host_bridge", t.host_bridges), ("switch", t.switches), ("device", t.devices)):
        for i, e in enumerate(coll):
            if not e.id:
                raise TopologyError(f"{kind}[{i}].id", "must not be empty")
            if e.id in ids:
                raise TopologyError(f"{kind}[{i}].id", f"{e.id!r} is already used by a {ids[e.id]}")
            ids[e.id] = kind

    uids: set[int] = set()
    for i, hb in enumerate(t.host_bridges):
        p = f"host_bridge[{i}]"
        if not 0 <= hb.uid <= U32_MAX:
            raise TopologyError(f"{p}.uid", "must fit the 32-bit _UID of CHBS/CFMWS (0..4294967295)")
        if hb.uid in uids:
            raise TopologyError(f"{p}.uid", f"UID {hb.uid} is already used")
        uids.add(hb.uid)
        if hb.cxl_version not in ("1.1", "2.0"):
            raise TopologyError(f"{p}.cxl_version", "must be \"1.1\" (RCH) or \"2.0\"")
        if hb.root_ports < 1 or hb.root_ports > 32:
            raise TopologyError(f"{p}.root_ports", "must be between 1 and 32")
        if hb.decoder_count < 0 or hb.decoder_count > 32:
            raise TopologyError(f"{p}.hdm_decoders", "must be between 0 and 32")
        if hb.decoder_count == 0 and hb.root_ports > 1:
            raise TopologyError(f"{p}.hdm_decoders",
                                "a host bridge with several root ports needs HDM decoders "
                                "(only a single-port bridge may be a pass-through)")
        if hb.port_ids is not None and len(hb.port_ids) != hb.root_ports:
            raise TopologyError(f"{p}.port_ids", "needs one id per root port")
        if hb.port_ids is not None and not all(0 <= x <= U8_MAX for x in hb.port_ids):
            raise TopologyError(f"{p}.port_ids", "a PCIe port number is 8 bits (0..255)")
        if hb.chbs_base is not None and (hb.chbs_base % 0x10000 or hb.chbs_base >= 1 << PHYS_ADDR_BITS):
            raise TopologyError(f"{p}.chbs_base", f"must be 64K aligned and below 2^{PHYS_ADDR_BITS}")
        if hb.pdev_id is not None and not 0 <= hb.pdev_id <= 0xFFFF:
            raise TopologyError(f"{p}.pdev_id", "must be 0..65535")
        if hb.numa_node not in seen_nodes and hb.numa_node != -1:
            raise TopologyError(f"{p}.numa_node", f"node {hb.numa_node} is not defined in [[numa]]")
        if hb.bus is not None and not 0 <= hb.bus <= 255:
            raise TopologyError(f"{p}.bus", "must be a PCI bus number 0..255")
        if not 0 <= hb.segment <= 0xFFFF:
            raise TopologyError(f"{p}.segment", "must be a PCI segment number 0..65535")

    nports = {hb.id: hb.root_ports for hb in t.host_bridges}
    for i, sw in enumerate(t.switches):
        p = f"switch[{i}]"
        if sw.parent not in ids or ids[sw.parent] == "device":
            raise TopologyError(f"{p}.parent", f"{sw.parent!r} is not a host bridge or switch")
        if sw.downstream_ports < 1 or sw.downstream_ports > 256:
            raise TopologyError(f"{p}.downstream_ports", "must be between 1 and 256")
        if sw.decoder_count < 0 or sw.decoder_count > 32:
            raise TopologyError(f"{p}.hdm_decoders", "must be between 0 and 32")
        if sw.decoder_count == 0 and sw.downstream_ports > 1:
            raise TopologyError(f"{p}.hdm_decoders",
                                "a switch with several downstream ports needs HDM decoders")
        if sw.dport_pdev_ids is not None and len(sw.dport_pdev_ids) != sw.downstream_ports:
            raise TopologyError(f"{p}.dport_pdev_ids", "needs one id per downstream port")
        for f in ("pdev_id",):
            if getattr(sw, f) is not None and not 0 <= getattr(sw, f) <= 0xFFFF:
                raise TopologyError(f"{p}.{f}", "must be 0..65535")
        if sw.dport_pdev_ids is not None and not all(0 <= x <= 0xFFFF for x in sw.dport_pdev_ids):
            raise TopologyError(f"{p}.dport_pdev_ids", "ids must be 0..65535")
        nports[sw.id] = sw.downstream_ports

    # attachment: ports in range, no double use, no cycles
    used: dict[tuple[str, int], str] = {}
    for kind, coll in (("switch", t.switches), ("device", t.devices)):
        for i, e in enumerate(coll):
            p = f"{kind}[{i}]"
            if e.parent not in ids or ids[e.parent] == "device":
                raise TopologyError(f"{p}.parent", f"{e.parent!r} is not a host bridge or switch")
            if e.port is not None:
                if not 0 <= e.port < nports[e.parent]:
                    raise TopologyError(f"{p}.port", f"{e.parent!r} has ports 0..{nports[e.parent] - 1}")
                if (e.parent, e.port) in used:
                    raise TopologyError(f"{p}.port", f"port {e.port} of {e.parent!r} is already used by {used[(e.parent, e.port)]!r}")
                used[(e.parent, e.port)] = e.id
    for kind, coll in (("switch", t.switches), ("device", t.devices)):
        for i, e in enumerate(coll):
            if e.port is None:
                free = [k for k in range(nports[e.parent]) if (e.parent, k) not in used]
                if not free:
                    raise TopologyError(f"{kind}[{i}].parent",
                                        f"{e.parent!r} has no free downstream port left ({nports[e.parent]} ports)")
                used[(e.parent, free[0])] = e.id
    parent_of = {sw.id: sw.parent for sw in t.switches}
    for i, sw in enumerate(t.switches):
        seen = {sw.id}
        cur = sw.parent
        while cur in parent_of:
            if cur in seen:
                raise TopologyError(f"switch[{i}].parent", "switches form a cycle")
            seen.add(cur)
            cur = parent_of[cur]

    serials: set[int] = set()
    for i, d in enumerate(t.devices):
        p = f"device[{i}]"
        if not 0 <= (d.serial or 0) <= U64_MAX:
            raise TopologyError(f"{p}.serial", "the Device Serial Number is 64 bits")
        if d.serial in serials and d.serial != 0:
            raise TopologyError(f"{p}.serial", f"serial {d.serial:#x} is already used")
        serials.add(d.serial)   # 0: no Device Serial Number capability (QEMU cxl-type3 without sn=)
        for f in ("volatile", "persistent", "partitionable"):
            if getattr(d, f) % SZ_256M:
                raise TopologyError(f"{p}.{f}", "capacity must be a multiple of 256M (CXL_CAPACITY_MULTIPLIER)")
        if d.capacity >= 1 << PHYS_ADDR_BITS:
            raise TopologyError(f"{p}", f"capacity {d.capacity:#x} cannot be mapped in the "
                                        f"{PHYS_ADDR_BITS}-bit physical address space (at most 64T - 256M)")
        if d.dynamic_capacity % SZ_256M or d.dc_block_size % SZ_256M or d.dc_block_size <= 0:
            raise TopologyError(f"{p}.dynamic_capacity", "DC capacity and block size must be multiples of 256M")
        if d.capacity == 0 and not d.dynamic_capacity:
            raise TopologyError(f"{p}", "a Type 3 device needs volatile, persistent or partitionable capacity")
        if d.partition_volatile > d.partitionable or d.partition_volatile % SZ_256M:
            raise TopologyError(f"{p}.partition_volatile", "must be a 256M multiple no larger than partitionable")
        if d.partitionable and (not d.partition_align or d.partition_align % SZ_256M):
            raise TopologyError(f"{p}.partition_align", "must be a non-zero multiple of 256M")
        if d.lsa % 256 or d.lsa < 0:
            raise TopologyError(f"{p}.lsa", "must be a multiple of 256 bytes")
        if d.lsa > LSA_SIZE_MAX:
            raise TopologyError(f"{p}.lsa", f"{d.lsa:#x} bytes does not fit the 32-bit LSA Size of Identify "
                                            f"Memory Device (CXL 2.0 Table 175; Get/Set LSA offsets are u32): "
                                            f"at most 4G - 256")
        if d.lsa > LSA_SIZE_CXLEMU_MAX:
            raise TopologyError(f"{p}.lsa", "cxlemu keeps a label storage area in the machine state: "
                                            "at most 256M (real devices have a few hundred KiB)")
        if (d.persistent or d.partitionable) and d.lsa and d.lsa < 4 * 256:
            raise TopologyError(f"{p}.lsa", "label area too small (needs room for 2 index blocks and 2 labels)")
        if not 1 <= d.hdm_decoders <= 32:
            raise TopologyError(f"{p}.hdm_decoders", "must be between 1 and 32")
        if d.payload_max < 256 or not is_pow2(d.payload_max) or d.payload_max > 1 << 20:
            raise TopologyError(f"{p}.payload_max", "must be a power of two between 256 and 1M")
        if len(d.firmware_version) > 16 or not d.firmware_version.isascii():
            raise TopologyError(f"{p}.firmware_version", "at most 16 ASCII characters (Identify FW Revision)")
        if d.partition_align >= 1 << 64 or d.partition_volatile >= 1 << 64:
            raise TopologyError(f"{p}.partition_align", "must fit in 64 bits")
        if d.pdev_id is not None and not 0 <= d.pdev_id <= 0xFFFF:
            raise TopologyError(f"{p}.pdev_id", "must be 0..65535")
        if d.qos_class is not None and not 0 <= d.qos_class <= U16_MAX:
            raise TopologyError(f"{p}.qos_class", "a QTG id is 16 bits (0..65535)")
        if not 1 <= d.poison_max_records < 1 << 24:
            raise TopologyError(f"{p}.poison_max_records", "must be between 1 and 16777215 (a 24-bit field)")
        if not 0 <= d.inject_poison_limit <= 0xFFFF:
            raise TopologyError(f"{p}.inject_poison_limit", "must be between 0 and 65535 (a 16-bit field)")
        if not 1 <= d.event_log_size <= 0xFFFF:
            raise TopologyError(f"{p}.event_log_size", "must be between 1 and 65535 (a 16-bit field)")
        if d.numa_node is not None and d.numa_node not in seen_nodes:
            raise TopologyError(f"{p}.numa_node", f"node {d.numa_node} is not defined in [[numa]]")
        if d.rcd and ids[d.parent] != "host_bridge":
            raise TopologyError(f"{p}.rcd", "a restricted CXL device attaches directly to a CXL 1.1 host bridge")
        for f in ("read_latency", "write_latency", "read_bandwidth", "write_bandwidth"):
            if getattr(d.cdat, f) <= 0:
                raise TopologyError(f"{p}.cdat.{f}", "must be positive")
            if getattr(d.cdat, f) > U32_MAX:
                raise TopologyError(f"{p}.cdat.{f}", "does not fit a CDAT DSLBIS entry (at most 4294967295)")
    for i, hb in enumerate(t.host_bridges):
        if hb.cxl_version == "1.1":
            kids = [e for e in (*t.switches, *t.devices) if e.parent == hb.id]
            if any(not isinstance(k, Device) or not k.rcd for k in kids):
                raise TopologyError(f"host_bridge[{i}].cxl_version",
                                    "a CXL 1.1 host bridge (RCH) only hosts restricted devices (rcd = true)")

    hb_ids = {hb.id for hb in t.host_bridges}
    for i, w in enumerate(t.windows):
        p = f"window[{i}]"
        if w.base is not None and w.base % SZ_256M:
            raise TopologyError(f"{p}.base", "must be 256M aligned (CXL r3.1 9.18.1.3)")
        if w.size == 0 or w.size % SZ_256M:
            raise TopologyError(f"{p}.size", "must be a non-zero multiple of 256M")
        if w.size > U64_MAX:
            raise TopologyError(f"{p}.size", f"{w.size:#x} does not fit the 64-bit Window Size of a CFMWS "
                                             f"(CXL r3.1 9.18.1.3)")
        if (w.base or 0) + w.size > 1 << PHYS_ADDR_BITS:
            raise TopologyError(f"{p}.size" if w.base is None else f"{p}.base",
                                f"the window ends beyond the {PHYS_ADDR_BITS}-bit physical address "
                                f"space (64T)")
        if not all(0 <= x <= U64_MAX for x in w.xormaps):
            raise TopologyError(f"{p}.xormaps", "a CXIMS XORMAP is 64 bits")
        if w.ways not in VALID_WAYS:
            raise TopologyError(f"{p}.targets", f"{w.ways} targets is not a valid interleave (1,2,3,4,6,8,12,16)")
        for tname in w.targets:
            if tname not in hb_ids:
                raise TopologyError(f"{p}.targets", f"{tname!r} is not a host bridge")
        if len(set(w.targets)) != len(w.targets) and w.ways > 1:
            pass  # the spec allows a host bridge to appear more than once
        if w.granularity not in (256, 512, 1024, 2048, 4096, 8192, 16384):
            raise TopologyError(f"{p}.granularity", "must be a power of two from 256 to 16384")
        for r in w.restrictions:
            if r not in RESTRICTIONS:
                raise TopologyError(f"{p}.restrictions", f"unknown restriction {r!r} (known: {', '.join(RESTRICTIONS)})")
        if w.arithmetic not in ARITHMETICS:
            raise TopologyError(f"{p}.arithmetic", "must be \"modulo\" or \"xor\"")
        if w.arithmetic == "modulo" and w.xormaps:
            raise TopologyError(f"{p}.xormaps", "only XOR windows take xormaps")
        if w.arithmetic == "xor" and w.ways not in (1, 3):
            need = (w.ways if w.ways in (2, 4, 8, 16) else w.ways // 3).bit_length() - 1
            if len(w.xormaps) < need:
                raise TopologyError(f"{p}.xormaps", f"an x{w.ways} XOR window needs {need} xormap(s) (CXIMS)")
        if not 0 <= w.qtg <= 0xFFFF:
            raise TopologyError(f"{p}.qtg", "must fit in 16 bits")
        if w.numa_node is not None and not 0 <= w.numa_node < MAX_NUMNODES:
            raise TopologyError(f"{p}.numa_node", f"must be 0..{MAX_NUMNODES - 1} (MAX_NUMNODES)")
    based = sorted((w.base, w.base + w.size, i) for i, w in enumerate(t.windows) if w.base is not None)
    for (s0, e0, i0), (s1, e1, i1) in zip(based, based[1:]):
        if s1 < e0:
            raise TopologyError(f"window[{i1}].base", f"overlaps window[{i0}]")

    dev_ids = {d.id for d in t.devices}
    for i, r in enumerate(t.firmware_regions):
        p = f"firmware_region[{i}]"
        if not 0 <= r.window < len(t.windows):
            raise TopologyError(f"{p}.window", f"no window {r.window}")
        w = t.windows[r.window]
        if r.mode not in ("ram", "pmem"):
            raise TopologyError(f"{p}.mode", "must be \"ram\" or \"pmem\"")
        for d in r.devices:
            if d not in dev_ids:
                raise TopologyError(f"{p}.devices", f"{d!r} is not a device")
        if len(set(r.devices)) != len(r.devices):
            raise TopologyError(f"{p}.devices", "a device appears twice")
        if len(r.devices) not in VALID_WAYS:
            raise TopologyError(f"{p}.devices", "number of devices is not a valid interleave")
        if r.size == 0 or r.size % (SZ_256M * len(r.devices)):
            raise TopologyError(f"{p}.size", "must be a multiple of 256M x ways")
        if r.offset % SZ_256M or r.offset + r.size > w.size:
            raise TopologyError(f"{p}.offset", "region must be 256M aligned and inside its window")
        if r.granularity not in (256, 512, 1024, 2048, 4096, 8192, 16384):
            raise TopologyError(f"{p}.granularity", "must be a power of two from 256 to 16384")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return hex(v) if v >= 1 << 32 else str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    raise TypeError(v)


def dumps(t: Topology) -> str:
    """Serialise a topology to TOML (only non-default fields)."""
    out = ["[machine]", f"name = {_fmt(t.name)}"]
    if t.description:
        out.append(f"description = {_fmt(t.description)}")
    out.append(f"flavor = {_fmt(t.flavor)}")

    def table(header: str, obj: Any, array: bool) -> None:
        lines = []
        sub = []
        for f in fields(obj):
            v = getattr(obj, f.name)
            if f.name == "source":
                continue
            dv = f.default if f.default is not f.default_factory else None
            if f.name in ("caps", "cdat", "timing"):
                if v is not None and v != type(v)():
                    sub.append((f.name, v))
                continue
            if v is None or (dv is not None and v == dv and f.name not in ("id", "parent", "node", "uid", "size", "targets", "window", "devices")):
                continue
            lines.append(f"{f.name} = {_fmt(v)}")
        out.append("")
        out.append(f"[[{header}]]" if array else f"[{header}]")
        out.extend(lines)
        for name, v in sub:
            inner = ", ".join(f"{f.name} = {_fmt(getattr(v, f.name))}" for f in fields(v))
            out.append(f"{name} = {{ {inner} }}")

    if t.boot != BootOptions():
        table("boot", t.boot, False)
    for n in t.numa:
        table("numa", n, True)
    for hb in t.host_bridges:
        table("host_bridge", hb, True)
    for sw in t.switches:
        table("switch", sw, True)
    for d in t.devices:
        table("device", d, True)
    for w in t.windows:
        table("window", w, True)
    for r in t.firmware_regions:
        table("firmware_region", r, True)
    return "\n".join(out) + "\n"
