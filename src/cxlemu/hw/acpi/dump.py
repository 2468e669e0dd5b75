"""Field-by-field dumps of ACPI tables in the style of ``iasl -d``
(``[offset decimal length]  Field : value``), decoded from the binary."""

from __future__ import annotations

import struct

from cxlemu.hw.acpi import cedt, fadt, hmat, srat
from cxlemu.hw.acpi.table import parse_table

HDR = 36
CEDT_NAMES = {0: "CXL Host Bridge Structure", 1: "CXL Fixed Memory Window Structure",
              2: "CXL XOR Interleave Math Structure", 3: "RCEC Downstream Port Association Structure"}
TITLES = {"CEDT": "CXL Early Discovery Table", "SRAT": "System Resource Affinity Table",
          "HMAT": "Heterogeneous Memory Attribute Table", "FACP": "Fixed ACPI Description Table (FADT)"}


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def field(self, off: int, size: int, name: str, value: str) -> None:
        self.lines.append(f"[{off:03X}h {off:04d} {size:3d}] {name:>32} : {value}")

    def blank(self) -> None:
        self.lines.append("")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _hex(v: int, width: int) -> str:
    return f"{v:0{width * 2}X}"


def _header(o: _Out, data: bytes, name: str) -> None:
    h, _ = parse_table(data)
    o.field(0x00, 4, "Signature", f'"{h.signature}"    [{TITLES.get(name, "")}]')
    o.field(0x04, 4, "Table Length", _hex(h.length, 4))
    o.field(0x08, 1, "Revision", _hex(h.revision, 1))
    o.field(0x09, 1, "Checksum", f"{_hex(h.checksum, 1)}")
    o.field(0x0A, 6, "Oem ID", f'"{h.oem_id.rstrip()}"')
    o.field(0x10, 8, "Oem Table ID", f'"{h.oem_table_id.rstrip()}"')
    o.field(0x18, 4, "Oem Revision", _hex(h.oem_revision, 4))
    o.field(0x1C, 4, "Asl Compiler ID", f'"{h.creator_id}"')
    o.field(0x20, 4, "Asl Compiler Revision", _hex(h.creator_revision, 4))
    o.blank()


def _restrictions(bits: int) -> list[str]:
    names = ["Type 2 (device coherent)", "Type 3 (host-only coherent)", "Volatile", "Persistent",
             "Fixed configuration"]
    return [n for i, n in enumerate(names) if bits & (1 << i)]


def dump_cedt(data: bytes) -> str:
    o = _Out()
    _header(o, data, "CEDT")
    off = HDR
    while off + 4 <= len(data):
        stype, _, length = struct.unpack_from("<BBH", data, off)
        if length == 0:
            break
        raw = data[off:off + length]
        o.field(off, 1, "Subtable Type", f"{_hex(stype, 1)} [{CEDT_NAMES.get(stype, 'Unknown')}]")
        o.field(off + 1, 1, "Reserved", "00")
        o.field(off + 2, 2, "Length", _hex(length, 2))
        if stype == 0:
            uid, ver, _r, base, blen = struct.unpack_from("<IIIQQ", raw, 4)
            o.field(off + 4, 4, "Associated host bridge", _hex(uid, 4))
            o.field(off + 8, 4, "Specification version", f"{_hex(ver, 4)} ({'CXL 2.0+' if ver else 'CXL 1.1'})")
            o.field(off + 12, 4, "Reserved", _hex(0, 4))
            o.field(off + 16, 8, "Register base", _hex(base, 8))
            o.field(off + 24, 8, "Register length", _hex(blen, 8))
        elif stype == 1:
            _r, base, size, eniw, arith, _r2, hbig, restr, qtg = struct.unpack_from("<IQQBBHIHH", raw, 4)
            o.field(off + 4, 4, "Reserved", _hex(0, 4))
            o.field(off + 8, 8, "Window base address", _hex(base, 8))
            o.field(off + 16, 8, "Window size", _hex(size, 8))
            ways = (1 << eniw) if eniw < 8 else 3 << (eniw - 8)
            o.field(off + 24, 1, "Interleave Members (2^n)", f"{_hex(eniw, 1)} ({ways} way)")
            o.field(off + 25, 1, "Interleave Arithmetic", f"{_hex(arith, 1)} ({'XOR' if arith else 'modulo'})")
            o.field(off + 26, 2, "Reserved", _hex(0, 2))
            o.field(off + 28, 4, "Granularity", f"{_hex(hbig, 4)} ({256 << hbig} bytes)")
            o.field(off + 32, 2, "Restrictions", f"{_hex(restr, 2)} ({', '.join(_restrictions(restr))})")
            o.field(off + 34, 2, "QtgId", _hex(qtg, 2))
            for i in range((length - 36) // 4):
                (t,) = struct.unpack_from("<I", raw, 36 + 4 * i)
                o.field(off + 36 + 4 * i, 4, "Target", _hex(t, 4))
        elif stype == 2:
            _r, hbig, nr = struct.unpack_from("<HBB", raw, 4)
            o.field(off + 4, 2, "Reserved", _hex(0, 2))
            o.field(off + 6, 1, "Host Bridge Granularity", f"{_hex(hbig, 1)} ({256 << hbig} bytes)")
            o.field(off + 7, 1, "Number of XOR maps", _hex(nr, 1))
            for i in range(nr):
                (m,) = struct.unpack_from("<Q", raw, 8 + 8 * i)
                o.field(off + 8 + 8 * i, 8, "XOR map", _hex(m, 8))
        o.blank()
        off += length
    return o.text()


def dump_generic(name: str, data: bytes) -> str:
    o = _Out()
    _header(o, data, name)
    if name == "SRAT":
        for s in srat.decode_srat(data):
            o.lines.append(f"  {s}")
    elif name == "HMAT":
        for s in hmat.decode_hmat(data):
            o.lines.append(f"  {s}")
    elif name == "FACP":
        f = fadt.decode_fadt(data)
        pcc = fadt.get_persistent_cpu_caches(f.flags)
        o.field(0x70, 4, "Flags (decoded below)", _hex(f.flags, 4))
        o.field(0x70, 4, "Persistent CPU Caches", f"{int(pcc)} ({pcc.description})")
    return o.text()


def dump_table(name: str, data: bytes) -> str:
    if name == "CEDT":
        return dump_cedt(data)
    return dump_generic(name, data)


__all__ = ["dump_table", "dump_cedt", "cedt"]
