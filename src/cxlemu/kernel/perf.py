"""Performance coordinates: CDAT + links -> region access0/access1, and the
node performance attributes of CXL memory (drivers/cxl/core/cdat.c,
drivers/cxl/core/pci.c, drivers/cxl/core/region.c, drivers/acpi/numa/hmat.c).

Per endpoint (``cxl_endpoint_get_perf_coordinates`` + cdat.c): the device's
CDAT DSLBIS figures for its volatile DSMAS (ps, MB/s) combined with every
link on the path to the host bridge: each hop adds the flit latency
``flit_size * 10^6 / (link speed in MB/s)`` (``cxl_pci_get_latency``: 68-byte
flits up to 32 GT/s) and caps bandwidth at the link bandwidth
(``pcie_bandwidth_available``); latencies add, bandwidth is the minimum.

Per region (``cxl_region_perf_data_calculate`` +
``cxl_region_shared_upstream_bandwidth_update``): latency is the worst
member's (converted ps -> ns, rounded up), bandwidth is the sum of the
members' capped at every link they share (a switch's upstream link, a root
port) and summed over host bridges.  Restricted devices (RCDs) get no
coordinates (the kernel leaves them to HMAT).

cxlemu's assumptions where the platform has no data: every CXL link is
PCIe 5 (32 GT/s) x16, switches add no latency of their own (an SSLBIS of 0)
and the host bridge's generic port adds none and does not cap bandwidth
(the emulated SRAT has no Generic Port entries).

When a CXL window's node first gets memory (MEM_ONLINE), the lowest region
of that node with coordinates gives the node its access0/access1 attributes
(``cxl_region_perf_attrs_callback``); a region's access1 coordinates also
answer the memory-tier abstract distance chain for its node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.kernel.mm.tiers import Perf as NodePerf
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.hw.platform import DownstreamPort
    from cxlemu.hw.type3 import Type3Device
    from cxlemu.kernel.cxl.region import CxlRegion
    from cxlemu.kernel.kernel import Kernel

LINK_GT_S = 32
LINK_WIDTH = 16
ACCESS_CLASSES = ("access0", "access1")


def pcie_lane_mbps(gts: int) -> int:
    """PCIE_SPEED2MBS_ENC(): Mb/s per lane after line encoding."""
    if gts >= 64:
        return 64000
    if gts >= 8:
        return gts * 1000 * 128 // 130
    return gts * 1000 * 8 // 10


def link_bandwidth(gts: int = LINK_GT_S, width: int = LINK_WIDTH) -> int:
    """MB/s of a link (pcie_bandwidth_available() / BITS_PER_BYTE)."""
    return pcie_lane_mbps(gts) * width // 8


def link_latency_ps(gts: int = LINK_GT_S) -> int:
    """cxl_pci_get_latency(): flit size over the link speed (per lane), in ps."""
    flit = 256 if gts > 32 else 68
    return flit * 1_000_000 // (gts * 1000 // 8)        # pcie_link_speed_mbps(): raw Mb/s


@dataclass(frozen=True)
class Coord:
    """An access coordinate in ps / MB/s."""
    read_latency: int
    write_latency: int
    read_bandwidth: int
    write_bandwidth: int

    def add_latency(self, ps: int) -> "Coord":
        return Coord(self.read_latency + ps, self.write_latency + ps, self.read_bandwidth, self.write_bandwidth)

    def cap(self, bw: int) -> "Coord":
        return Coord(self.read_latency, self.write_latency, min(self.read_bandwidth, bw),
                     min(self.write_bandwidth, bw))


def device_cdat_coord(hw: "Type3Device") -> Coord:
    """The device's volatile DSMAS figures, through a CDAT built from the
    topology (hw.cdat.cdat_for_device, read back as cdat.c does)."""
    from cxlemu.hw.cdat import cdat_for_device, device_coordinates
    c = hw.topo.cdat
    ram = max(hw.ram_size, 1)
    table = cdat_for_device([(0, ram)], c.read_latency * 1000, c.write_latency * 1000,
                            c.read_bandwidth, c.write_bandwidth)
    co = device_coordinates(table)[0]
    return Coord(co.read_latency, co.write_latency, co.read_bandwidth, co.write_bandwidth)


def endpoint_coord(plat, hw: "Type3Device") -> Coord:
    """cxl_endpoint_get_perf_coordinates() combined with the CDAT figures."""
    c = device_cdat_coord(hw)
    bw = link_bandwidth()
    for _dp in plat.path_to(hw):
        c = c.add_latency(link_latency_ps()).cap(bw)
    return c


def _ns(ps: int) -> int:
    return -(-ps // 1000)


def region_coord(plat, devices: list["Type3Device"]) -> Coord | None:
    """Worst latency, summed bandwidth capped by shared links."""
    eps = {d.name: endpoint_coord(plat, d) for d in devices}
    if not eps:
        return None
    lat_r = max(c.read_latency for c in eps.values())
    lat_w = max(c.write_latency for c in eps.values())
    link_bw = link_bandwidth()
    # the tree of downstream ports the members hang from, from the host bridges down
    children: dict[int, list] = {}
    roots: dict[int, "DownstreamPort"] = {}
    leaf: dict[int, "Type3Device"] = {}
    for d in devices:
        path = plat.path_to(d)
        roots[id(path[0])] = path[0]
        for up, down in zip(path, path[1:]):
            lst = children.setdefault(id(up), [])
            if all(x is not down for x in lst):
                lst.append(down)
        leaf[id(path[-1])] = d

    def bw(dp, attr: str) -> int:
        if id(dp) in leaf:
            total = getattr(eps[leaf[id(dp)].name], attr)
        else:
            total = sum(bw(x, attr) for x in children.get(id(dp), []))
        return min(total, link_bw)

    rbw = sum(bw(dp, "read_bandwidth") for dp in roots.values())
    wbw = sum(bw(dp, "write_bandwidth") for dp in roots.values())
    return Coord(lat_r, lat_w, rbw, wbw)


class Perf:
    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel

    # ---- regions ------------------------------------------------------------------------
    def region_coordinates(self, r: "CxlRegion") -> None:
        """Fill r.coords (access0/access1; ns and MB/s) at region probe."""
        members = [t.memdev.hw for t in r.members()]
        if not self.kernel.has("region_access_coordinates"):
            r.coords = {}
            return
        if not members or r.mode != "ram" and r.mode != "pmem":
            r.coords = {}
            return
        if any(getattr(hw.topo, "rcd", False) for hw in members):
            r.coords = {}
            return
        c = region_coord(self.kernel.platform, members)
        if c is None:
            r.coords = {}
            return
        vals = {"read_bandwidth": c.read_bandwidth, "write_bandwidth": c.write_bandwidth,
                "read_latency": _ns(c.read_latency), "write_latency": _ns(c.write_latency)}
        r.coords = {a: dict(vals) for a in ACCESS_CLASSES}

    def regions_on_node(self, nid: int) -> list["CxlRegion"]:
        from cxlemu.kernel.cxl.region import COMMIT
        out = []
        for r in self.kernel.cxl.regions.all():
            if r.res is None or r.state != COMMIT or not r.coords or r.mode != "ram":
                continue
            if self.kernel.mm.region_node(r.res.start) == nid:
                out.append(r)
        return sorted(out, key=lambda x: x.id)

    @staticmethod
    def node_perf_of(r: "CxlRegion", access: str = "access1") -> NodePerf:
        v = r.coords[access]
        return NodePerf(v["read_latency"], v["write_latency"], v["read_bandwidth"], v["write_bandwidth"])

    def node_region_perfs(self, nid: int) -> list[NodePerf]:
        """Answers of the CXL adistance notifiers for ``nid`` (access1)."""
        return [self.node_perf_of(r) for r in self.regions_on_node(nid)]

    def node_memory_online(self, nid: int) -> None:
        """cxl_region_perf_attrs_callback(): the node got its first memory."""
        regions = self.regions_on_node(nid)
        if not regions or not self.kernel.has("region_access_coordinates"):
            return
        r = regions[0]
        numa = self.kernel.mm.numa
        for i, access in enumerate(ACCESS_CLASSES):
            numa.set_perf_attrs(nid, i, self.node_perf_of(r, access))
