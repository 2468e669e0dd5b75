"""The device socket protocol (the C side is src/cxlemu/preload/protocol.h;
docs/devdax.md describes it): pure codecs, no I/O.

Every message is a 16-byte header -- u32 magic "CXLD", u16 op, u16 version,
u32 payload length, i32 status (0 in requests; 0 or -errno in replies) --
followed by the payload, native byte order (both ends run on one host).
"""

from __future__ import annotations

import struct

from cxlemu.util.lazydc import dataclass

MAGIC = 0x444C5843           # "CXLD"
VERSION = 1
MAX_PAYLOAD = 64 << 20

OPEN, CXL_QUERY, CXL_SEND, ND_CMD, DAX_MAP, MEM_READ, MEM_WRITE = range(1, 8)
OPS = {OPEN: "open", CXL_QUERY: "cxl_query", CXL_SEND: "cxl_send", ND_CMD: "nd_cmd",
       DAX_MAP: "dax_map", MEM_READ: "mem_read", MEM_WRITE: "mem_write"}

KIND_MEMDEV, KIND_DAX, KIND_NMEM, KIND_NDBUS, KIND_MEM = range(1, 6)

HEADER = struct.Struct("=IHHIi")
OPEN_REQ = struct.Struct("=IIII")          # major, minor, mode (S_IFCHR/S_IFBLK), open flags
OPEN_REPLY = struct.Struct("=IIQQ")        # kind, 0, size, align; then the cache dir, NUL-terminated
ND_REQ = struct.Struct("=IIII")            # cmd, offset, length, 0; SET data follows
MAP_REQ = struct.Struct("=QQII")           # offset, length, prot, flags
LAYOUT = struct.Struct("=IIQ")             # nfiles, npieces, granule
FILE = struct.Struct("=QII")               # capacity, path length, 0; path bytes padded to 8
PIECE = struct.Struct("=QQQII")            # offset, length, file offset (DPA), file, 0
RW_REQ = struct.Struct("=QII")             # address, length, 0
U32 = struct.Struct("=I")


class ProtocolError(ValueError):
    """A message that does not follow the protocol."""


@dataclass(frozen=True)
class Header:
    op: int
    length: int
    status: int = 0
    version: int = VERSION

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, self.op, self.version, self.length, self.status)

    @classmethod
    def unpack(cls, raw: bytes) -> "Header":
        if len(raw) != HEADER.size:
            raise ProtocolError("short header")
        magic, op, version, length, status = HEADER.unpack(raw)
        if magic != MAGIC:
            raise ProtocolError("bad magic")
        if version != VERSION:
            raise ProtocolError(f"protocol version {version}, expected {VERSION}")
        if length > MAX_PAYLOAD:
            raise ProtocolError("payload too large")
        return cls(op, length, status, version)


def message(op: int, payload: bytes = b"", status: int = 0) -> bytes:
    return Header(op, len(payload), status).pack() + payload


def need(payload: bytes, n: int, what: str) -> None:
    if len(payload) < n:
        raise ProtocolError(f"{what}: {len(payload)} bytes, need {n}")


def pack_layout(granule: int, files: list[tuple[str, int]], pieces) -> bytes:
    """``files``: (absolute path, capacity); ``pieces``: rows of (offset,
    length, file index, dpa)."""
    out = [LAYOUT.pack(len(files), len(pieces), granule)]
    for path, cap in files:
        raw = path.encode()
        out.append(FILE.pack(cap, len(raw), 0) + raw + bytes(-len(raw) % 8))
    out.extend(PIECE.pack(int(o), int(n), int(d), int(f), 0) for o, n, f, d in pieces)
    return b"".join(out)


def unpack_layout(raw: bytes) -> tuple[int, list[tuple[str, int]], list[tuple[int, int, int, int]]]:
    """Inverse of :func:`pack_layout` (used by tests and Python clients)."""
    need(raw, LAYOUT.size, "layout")
    nfiles, npieces, granule = LAYOUT.unpack_from(raw)
    pos = LAYOUT.size
    files = []
    for _ in range(nfiles):
        need(raw, pos + FILE.size, "layout file")
        cap, n, _z = FILE.unpack_from(raw, pos)
        pos += FILE.size
        need(raw, pos + n, "layout path")
        try:
            files.append((raw[pos:pos + n].decode(), cap))
        except UnicodeDecodeError:
            raise ProtocolError("layout path is not UTF-8") from None
        pos += n + (-n % 8)
    need(raw, pos + npieces * PIECE.size, "layout pieces")
    pieces = []
    for i in range(npieces):
        o, n, d, f, _z = PIECE.unpack_from(raw, pos + i * PIECE.size)
        if f >= nfiles:
            raise ProtocolError("piece names a file that is not there")
        pieces.append((o, n, f, d))
    return granule, files, pieces
