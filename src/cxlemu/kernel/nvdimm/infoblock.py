"""The fsdax/devdax info block ("pfn superblock") and its sizing rules.

A namespace in fsdax or devdax mode starts with an 8 KiB reserved area; the
info block sits at offset 4 KiB inside it (drivers/nvdimm/pfn.h
``struct nd_pfn_sb``, 4096 bytes, little-endian):

====== ==== ==================================================
offset size field
====== ==== ==================================================
0x000  16   signature: ``NVDIMM_PFN_INFO\\0`` or ``NVDIMM_DAX_INFO\\0``
0x010  16   uuid (of the pfn/dax instance)
0x020  16   parent_uuid (the namespace uuid)
0x030  4    flags
0x034  2    version_major (1)
0x036  2    version_minor (4)
0x038  8    dataoff: offset of the data area from the namespace start
0x040  8    npfns: pages in the data area
0x048  4    mode: 1 = map in RAM ("mem"), 2 = map on the device ("dev")
0x04c  4    start_pad
0x050  4    end_trunc
0x054  4    align
0x058  4    page_size
0x05c  2    page_struct_size
0x05e  3994 padding (zero)
0xff8  8    checksum: Fletcher-64 of the block with this field zeroed
====== ==== ==================================================

Sizing (pfn_devs.c ``nd_pfn_init``), for a namespace at ``start`` of
``size`` bytes, alignment ``align`` (at least memremap_compat_align(),
2 MiB on x86)::

    npfns      = (size - 8K) / PAGE_SIZE
    end_trunc  = (start + size) - ALIGN_DOWN(start + size, align)
    map=dev:  dataoff = ALIGN(start + 8K + 64 * npfns, align) - start
    map=mem:  dataoff = ALIGN(start + 8K, align) - start
    npfns      = (size - dataoff - end_trunc) / PAGE_SIZE

64 is MAX_STRUCT_PAGE_SIZE: the memmap of every page of the namespace is
reserved on the device in map=dev mode.  A 512 MiB namespace with 2 MiB
alignment therefore loses 10 MiB: ``8K + 64 * 131070 = 8,396,672`` rounds up
to 10 MiB, leaving a 502 MiB dax device.

Validation follows ``nd_pfn_validate``: signature, checksum, parent uuid,
mode, supported alignment, offset inside the namespace and alignment of the
data start.  Errors are returned as errnos (ENODEV: no info block here).
"""

from __future__ import annotations

import errno
import struct
import uuid as _uuid

from cxlemu.hw.lsa import fletcher64
from cxlemu.util.lazydc import dataclass

PFN_SIG = b"NVDIMM_PFN_INFO\x00"
DAX_SIG = b"NVDIMM_DAX_INFO\x00"
PFN_SIG_LEN = 16

PFN_MODE_NONE = 0
PFN_MODE_RAM = 1
PFN_MODE_PMEM = 2

SZ_4K = 4096
SZ_8K = 8192
SZ_2M = 2 << 20
SZ_1G = 1 << 30
PAGE_SIZE = SZ_4K
INFO_BLOCK_OFFSET = SZ_4K        # nvdimm_write_bytes(ndns, SZ_4K, pfn_sb, ...)
INFO_BLOCK_SIZE = 4096
INFO_RESERVE = SZ_8K             # nd_info_block_reserve()
MAX_STRUCT_PAGE_SIZE = 64
#: memremap_compat_align() on x86: SUBSECTION_SIZE
MEMREMAP_COMPAT_ALIGN = SZ_2M
#: nd_pfn_supported_alignments() on x86-64 with THP and 1G pages.
SUPPORTED_ALIGNMENTS = (SZ_4K, SZ_2M, SZ_1G)
#: nd_pfn_default_alignment(): PMD_SIZE when transparent huge pages exist.
DEFAULT_ALIGNMENT = SZ_2M

_SB = struct.Struct("<16s16s16sIHHQQIIIIIH3994sQ")
assert _SB.size == INFO_BLOCK_SIZE


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _align_down(x: int, a: int) -> int:
    return x // a * a


@dataclass(frozen=True)
class PfnSuperblock:
    signature: bytes
    uuid: _uuid.UUID
    parent_uuid: _uuid.UUID
    dataoff: int
    npfns: int
    mode: int
    end_trunc: int = 0
    start_pad: int = 0
    align: int = DEFAULT_ALIGNMENT
    flags: int = 0
    version_major: int = 1
    version_minor: int = 4
    page_size: int = PAGE_SIZE
    page_struct_size: int = MAX_STRUCT_PAGE_SIZE
    checksum: int = 0

    def encode(self) -> bytes:
        buf = bytearray(_SB.pack(
            self.signature, self.uuid.bytes, self.parent_uuid.bytes, self.flags,
            self.version_major, self.version_minor, self.dataoff, self.npfns, self.mode,
            self.start_pad, self.end_trunc, self.align, self.page_size, self.page_struct_size,
            bytes(3994), 0))
        struct.pack_into("<Q", buf, INFO_BLOCK_SIZE - 8, fletcher64(buf))
        return bytes(buf)

    @classmethod
    def decode(cls, raw: bytes | bytearray | memoryview) -> "PfnSuperblock":
        (sig, uid, parent, flags, vmaj, vmin, dataoff, npfns, mode, start_pad, end_trunc,
         align, page_size, pss, _pad, checksum) = _SB.unpack_from(bytes(raw[:INFO_BLOCK_SIZE]), 0)
        return cls(signature=sig, uuid=_uuid.UUID(bytes=uid), parent_uuid=_uuid.UUID(bytes=parent),
                   dataoff=dataoff, npfns=npfns, mode=mode, end_trunc=end_trunc, start_pad=start_pad,
                   align=align, flags=flags, version_major=vmaj, version_minor=vmin,
                   page_size=page_size, page_struct_size=pss, checksum=checksum)

    @property
    def data_size(self) -> int:
        return self.npfns * PAGE_SIZE


def checksum_ok(raw: bytes | bytearray | memoryview) -> bool:
    """nd_sb_checksum: Fletcher-64 of the 4 KiB block with the checksum zeroed."""
    buf = bytearray(raw[:INFO_BLOCK_SIZE])
    (saved,) = struct.unpack_from("<Q", buf, INFO_BLOCK_SIZE - 8)
    buf[INFO_BLOCK_SIZE - 8:] = bytes(8)
    return fletcher64(buf) == saved


@dataclass(frozen=True)
class Layout:
    """Where the data of an fsdax/devdax namespace starts and how big it is."""
    dataoff: int
    npfns: int
    end_trunc: int

    @property
    def data_size(self) -> int:
        return self.npfns * PAGE_SIZE


def compute_layout(start: int, size: int, align: int, mode: int) -> Layout:
    """pfn_devs.c nd_pfn_init() sizing; raises OSError(errno) like the kernel."""
    if mode not in (PFN_MODE_RAM, PFN_MODE_PMEM):
        raise OSError(errno.ENXIO, "pfn mode not set")
    if size <= SZ_8K:
        raise OSError(errno.ENXIO, "namespace too small")
    npfns = (size - SZ_8K) // PAGE_SIZE
    align = max(align, MEMREMAP_COMPAT_ALIGN)
    if start % MEMREMAP_COMPAT_ALIGN:
        raise OSError(errno.EINVAL, f"start {start:#x} misaligned to {MEMREMAP_COMPAT_ALIGN:#x}")
    end_trunc = start + size - _align_down(start + size, align)
    if mode == PFN_MODE_PMEM:
        page_map_size = MAX_STRUCT_PAGE_SIZE * npfns
        offset = _align_up(start + SZ_8K + page_map_size, align) - start
    else:
        offset = _align_up(start + SZ_8K, align) - start
    if offset >= size - end_trunc:
        raise OSError(errno.ENXIO, "unable to satisfy requested alignment")
    return Layout(dataoff=offset, npfns=(size - offset - end_trunc) // PAGE_SIZE, end_trunc=end_trunc)


def make_superblock(sig: bytes, pfn_uuid: _uuid.UUID, parent_uuid: _uuid.UUID, start: int,
                    size: int, align: int, mode: int) -> PfnSuperblock:
    lay = compute_layout(start, size, align, mode)
    return PfnSuperblock(signature=sig, uuid=pfn_uuid, parent_uuid=parent_uuid,
                         dataoff=lay.dataoff, npfns=lay.npfns, mode=mode,
                         end_trunc=lay.end_trunc, align=align)


def validate(raw: bytes | bytearray | memoryview, sig: bytes, parent_uuid: _uuid.UUID,
             start: int, size: int) -> PfnSuperblock:
    """nd_pfn_validate(): the decoded block, or OSError(ENODEV | ENXIO | EOPNOTSUPP)."""
    raw = bytes(raw[:INFO_BLOCK_SIZE])
    if raw[:PFN_SIG_LEN] != sig:
        raise OSError(errno.ENODEV, "no info block")
    if not checksum_ok(raw):
        raise OSError(errno.ENODEV, "info block checksum mismatch")
    sb = PfnSuperblock.decode(raw)
    if sb.parent_uuid != parent_uuid:
        raise OSError(errno.ENODEV, "info block belongs to another namespace")
    if sb.version_minor < 1:
        sb = _replace(sb, start_pad=0, end_trunc=0)
    if sb.version_minor < 2:
        sb = _replace(sb, align=0)
    if sb.version_minor < 4:
        sb = _replace(sb, page_struct_size=64, page_size=PAGE_SIZE)
    if sb.mode not in (PFN_MODE_RAM, PFN_MODE_PMEM):
        raise OSError(errno.ENXIO, "bad pfn mode")
    align = sb.align or (1 << (sb.dataoff.bit_length() - 1) if sb.dataoff else 1)
    if sb.mode == PFN_MODE_PMEM and sb.page_size > PAGE_SIZE:
        raise OSError(errno.EOPNOTSUPP, f"init failed, page size mismatch {sb.page_size}")
    if sb.mode == PFN_MODE_PMEM and sb.page_struct_size < MAX_STRUCT_PAGE_SIZE:
        raise OSError(errno.EOPNOTSUPP, f"init failed, struct page size mismatch {sb.page_struct_size}")
    if align not in SUPPORTED_ALIGNMENTS and sig == DAX_SIG:
        raise OSError(errno.EOPNOTSUPP, "init failed, alignment mismatch")
    if align > size:
        raise OSError(errno.EOPNOTSUPP, f"alignment: {align:#x} exceeds capacity {size:#x}")
    if sb.dataoff >= size:
        raise OSError(errno.EOPNOTSUPP, "pfn array size exceeds capacity")
    if (start + sb.dataoff + sb.start_pad) % align or sb.dataoff % PAGE_SIZE:
        raise OSError(errno.EOPNOTSUPP, f"bad offset: {sb.dataoff:#x} dax disabled align: {align:#x}")
    if (start + sb.start_pad) % MEMREMAP_COMPAT_ALIGN:
        raise OSError(errno.EOPNOTSUPP, "resource start misaligned")
    if (start + size - sb.end_trunc) % MEMREMAP_COMPAT_ALIGN:
        raise OSError(errno.EOPNOTSUPP, "resource end misaligned")
    if sb.dataoff >= size - sb.start_pad - sb.end_trunc:
        raise OSError(errno.EOPNOTSUPP, "bad offset with small namespace")
    return sb


def _replace(sb: PfnSuperblock, **kw) -> PfnSuperblock:
    from dataclasses import replace
    return replace(sb, **kw)
