"""Platform firmware: ACPI tables, and HDM decoders the BIOS commits at boot.

Firmware programs ``[[firmware_region]]`` entries the way a BIOS that sets up
CXL memory does, and the way Linux would have programmed them, so that the
kernel's auto-assembly (drivers/cxl/core/region.c ``cxl_add_to_region``)
validates them:

* every port on the path gets the lowest uncommitted decoder (in order),
* a port's decoder interleaves over the distinct downstream ports used,
  ``ig = parent_ig * parent_iw`` (root: region granularity, host-bridge ways),
* the device for region position ``p`` is target ``(p // F) % iw`` of a port
  whose ancestors fan out ``F`` ways (host-bridge ways included),
* endpoint decoders claim DPA contiguously per partition, with a DPA skip when
  a pmem decoder follows unallocated ram.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.hw.hdm import HdmDecoderRegs, HdmDecoderUnit

if TYPE_CHECKING:
    from cxlemu.hw.platform import DownstreamPort, Platform


class FirmwareError(ValueError):
    pass


def _eiw(ways: int) -> int:
    if ways & (ways - 1) == 0:
        return ways.bit_length() - 1
    return (ways // 3).bit_length() - 1 + 8


def _eig(gran: int) -> int:
    return gran.bit_length() - 1 - 8


def _next_free(unit: HdmDecoderUnit, what: str) -> int:
    n = sum(1 for d in unit.decoders if d.committed)
    if n >= unit.count:
        raise FirmwareError(f"{what}: no free HDM decoder left ({unit.count} in use)")
    return n


def program_firmware_regions(p: "Platform") -> None:
    dpa_end: dict[str, int] = {}
    for d in p.devices:
        if d.hdm:
            dpa_end[d.name] = sum(regs.dpa_skip + regs.size // _ways(regs.iw)
                                  for _, regs in d.hdm.committed_decoders())
    for r in p.topology.firmware_regions:
        _program_region(p, r, dpa_end)


def _program_region(p: "Platform", r, dpa_end: dict[str, int]) -> None:
    w = p.windows[r.window]
    hpa = w.base + r.offset
    ways = len(r.devices)
    hbiw = w.topo.ways
    gran = r.granularity
    devs = [p.device(x) for x in r.devices]
    paths = [p.path_to(d) for d in devs]
    if ways % hbiw:
        raise FirmwareError("firmware_region: ways must be a multiple of the window's ways")
    for pos, path in enumerate(paths):
        if path[0].parent is not w.host_bridges[pos % hbiw]:
            raise FirmwareError(
                f"firmware_region: {r.devices[pos]} at position {pos} is not below host bridge "
                f"{w.host_bridges[pos % hbiw].topo.id} (window target {pos % hbiw})")

    # Each port owner (host bridge or switch) on the paths, top-down: its
    # downstream ports in use decide iw; ig = parent_ig * parent_iw.
    owners: dict[int, dict] = {}
    for depth in range(max(len(x) for x in paths)):
        for pos, path in enumerate(paths):
            if depth >= len(path):
                continue
            owner = path[depth].parent
            o = owners.setdefault(id(owner), {"owner": owner, "depth": depth, "dports": [], "pos": []})
            if path[depth] not in o["dports"]:
                o["dports"].append(path[depth])
            o["pos"].append((pos, path[depth]))
    for o in sorted(owners.values(), key=lambda o: o["depth"]):
        if o["depth"] == 0:
            parent_ig, parent_iw = gran, (hbiw if hbiw & (hbiw - 1) == 0 else hbiw // 3)
        else:
            up = owners[id(o["owner"].upstream.parent)]
            parent_ig, parent_iw = up["ig"], up["iw"]
        o["iw"] = len(o["dports"])
        o["ig"] = parent_ig * parent_iw
        targets: dict[int, "DownstreamPort"] = {}
        for pos, dport in o["pos"]:
            # hardware routing at this port: target = (hpa_offset / ig) mod iw,
            # and position pos receives granules c == pos (mod ways)
            t = (pos * gran // o["ig"]) % o["iw"]
            if targets.setdefault(t, dport) is not dport:
                raise FirmwareError(f"firmware_region: position {pos} does not fit the interleave "
                                    f"below {o['owner'].name}")
        o["targets"] = targets
    for o in owners.values():
        unit = o["owner"].hdm
        if unit is None:
            if o["iw"] > 1:
                raise FirmwareError(f"{o['owner'].name}: a pass-through port cannot interleave")
            continue
        idx = _next_free(unit, o["owner"].name)
        unit.program(idx, base=hpa, size=r.size, iw=_eiw(o["iw"]), ig=_eig(o["ig"]),
                     targets=[o["targets"][i].port_id for i in range(o["iw"])])
        if not unit.set_commit(idx, True):
            raise FirmwareError(f"{o['owner'].name}: decoder {idx} failed to commit")
    for d in devs:
        assert d.hdm is not None
        idx = _next_free(d.hdm, d.name)
        per_dev = r.size // ways
        end = dpa_end.get(d.name, 0)
        if r.mode == "ram":
            start = end
            if start + per_dev > d.ram_size:
                raise FirmwareError(f"{d.topo.id}: not enough volatile capacity for firmware region")
        else:
            start = max(end, d.ram_size)
            if start + per_dev > d.total_capacity:
                raise FirmwareError(f"{d.topo.id}: not enough persistent capacity for firmware region")
        d.hdm.program(idx, base=hpa, size=r.size, iw=_eiw(ways), ig=_eig(gran), dpa_skip=start - end)
        if not d.hdm.set_commit(idx, True):
            raise FirmwareError(f"{d.topo.id}: endpoint decoder {idx} failed to commit")
        dpa_end[d.name] = start + per_dev


def _ways(eiw: int) -> int:
    return 1 << eiw if eiw < 8 else 3 << (eiw - 8)


def save_decoders(p: "Platform") -> None:
    """Remember committed decoders so a BIOS with firmware_keeps_decoders replays them."""
    from dataclasses import asdict
    p.saved_decoders = {
        name: [(i, asdict(d)) for i, d in unit.committed_decoders()]
        for name, unit in p.hdm_units().items()
    }


def restore_decoders(p: "Platform") -> None:
    units = p.hdm_units()
    for name, decs in p.saved_decoders.items():
        unit = units.get(name)
        if unit is None:
            continue
        for i, regs in decs:
            if unit.decoders[i].committed:
                continue
            unit.decoders[i] = HdmDecoderRegs(**{**regs, "commit": False, "committed": False, "error": False})
            unit.set_commit(i, True)


# ----------------------------------------------------------------------------
# ACPI tables
# ----------------------------------------------------------------------------

def build_tables(p: "Platform") -> dict[str, bytes]:
    from cxlemu.hw.acpi import cedt, fadt, hmat, srat

    t = p.topology
    subs: list = []
    for hb in p.host_bridges:
        subs.append(cedt.Chbs(uid=hb.uid, cxl_version=0 if hb.is_rch else 1,
                              base=hb.chbs_base, length=hb.chbs_len))
    cxims_maps: dict[int, tuple[int, ...]] = {}
    for w in p.windows:
        restr = 0
        for r in w.topo.restrictions:
            restr |= {"type2": 1, "type3": 2, "volatile": 4, "pmem": 8, "fixed": 16}[r]
        subs.append(cedt.Cfmws(base_hpa=w.base, window_size=w.size, eniw=_eiw(w.topo.ways),
                               interleave_arithmetic=1 if w.topo.arithmetic == "xor" else 0,
                               hbig=_eig(w.topo.granularity), restrictions=restr, qtg_id=w.topo.qtg,
                               targets=tuple(hb.uid for hb in w.host_bridges)))
        if w.topo.arithmetic == "xor" and w.topo.xormaps:
            g = _eig(w.topo.granularity)
            if len(w.topo.xormaps) > len(cxims_maps.get(g, ())):
                cxims_maps[g] = w.topo.xormaps
    for g, maps in sorted(cxims_maps.items()):
        subs.append(cedt.Cxims(hbig=g, xormaps=tuple(maps)))
    tables = {"CEDT": cedt.encode_cedt(subs)}

    # SRAT: CPUs and DRAM per node; windows that firmware describes
    cpu = 0
    srat_subs: list = []
    for n in t.numa:
        for _ in range(n.cpus):
            srat_subs.append(srat.X2ApicAffinity(proximity_domain=n.node, x2apic_id=cpu, flags=1))
            cpu += 1
    for s, e, node in p.dram_ranges:
        srat_subs.append(srat.MemoryAffinity(proximity_domain=node, base=s, length=e - s + 1, flags=1))
    for w in p.windows:
        if w.topo.numa_node is not None:
            srat_subs.append(srat.MemoryAffinity(proximity_domain=w.topo.numa_node, base=w.base,
                                                 length=w.size, flags=1 | 2))
    tables["SRAT"] = srat.encode_srat(srat_subs)

    initiators = [n.node for n in t.numa if n.cpus]
    targets = [n.node for n in t.numa]
    by_node = {n.node: n for n in t.numa}
    rl, wl, rb, wb = [], [], [], []
    for i in initiators:
        rl.append([by_node[x].read_latency * (1 if x == i else 2) for x in targets])
        wl.append([by_node[x].write_latency * (1 if x == i else 2) for x in targets])
        rb.append([by_node[x].read_bandwidth // (1 if x == i else 2) for x in targets])
        wb.append([by_node[x].write_bandwidth // (1 if x == i else 2) for x in targets])
    tables["HMAT"] = hmat.encode_hmat(hmat.hmat_from_matrix(initiators, targets, rl, wl, rb, wb))
    pcc = fadt.PersistentCpuCaches.PERSISTENT if t.boot.persistent_cpu_caches else \
        fadt.PersistentCpuCaches.NOT_PERSISTENT
    tables["FACP"] = fadt.encode_fadt(fadt.Fadt().with_persistent_cpu_caches(pcc))
    return tables
