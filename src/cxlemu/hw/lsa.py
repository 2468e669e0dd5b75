"""Label Storage Area (LSA) format: the codec and the two-index update protocol.

This is the on-device format of a memory device's label area, so it sits on
the hardware floor, like the CDAT and mailbox codecs: the kernel model's
nvdimm label cache (kernel/nvdimm/dimm.py) and ndctl's label commands
(tools/ndctl/labels.py, which reach the area only through the nvdimm
config-data ioctls) both use it.

A label area is two *index blocks* followed by ``nslot`` fixed-size label
slots (CXL r3.1 §9.13.2; UEFI 2.7 / NVDIMM namespace spec for the 1.x
formats).  Everything here is re-written from the on-media format and the
behaviour of Linux ``drivers/nvdimm/label.c`` / ``label.h`` / ``core.c``
(``nd_fletcher64``) and of ndctl's ``ndctl/lib/dimm.c`` (``init-labels``);
no code is taken from either.

Layers:

* :func:`fletcher64` — the checksum used by index blocks and labels.
* :func:`nslot_for` / :func:`nslot_legacy` — slot count and index size.
* :class:`IndexBlock`, :class:`NamespaceLabel` (CXL),
  :class:`RegionLabel` (CXL), :class:`EfiNamespaceLabel` (UEFI v1.1/v1.2)
  — little-endian codecs, checksum at 0x40 (index) / 0xF8 (labels).
* :func:`validate_index`, :func:`best_seq`, :func:`next_seq`,
  :func:`current_index` — how the kernel picks the current index.
* :class:`LabelArea` — a whole area with ``init`` / ``labels`` /
  ``write_label`` / ``delete_labels``, emitting its byte writes through a
  ``writer(offset, data)`` callback in the kernel's order.

Crash consistency (why the write order matters): labels are never updated in
place.  An update writes the new label into a slot that is free in the
current index, then writes the *other* index block with ``seq =
next_seq(current seq)`` and the new free bitmap.  Until that index write is
complete the old index stays current (the new slot is free in it, a torn
index fails its checksum); once it is complete the sequence rule selects it.
So every prefix of the write stream decodes to the state before or after the
operation.
"""

from __future__ import annotations

import struct
import uuid as _uuid
from dataclasses import field, replace
from typing import Callable, Iterable, Literal, Union

from cxlemu.util.lazy import lazy_module
from cxlemu.util.lazydc import dataclass

np = lazy_module("numpy")  # imported on first use: only the data path pays for numpy

# ---------------------------------------------------------------------------
# Constants (label.h, CXL r3.1 §9.13.2, UEFI 2.7 §13.19)
# ---------------------------------------------------------------------------

NSINDEX_SIGNATURE = b"NAMESPACE_INDEX\x00"
NSINDEX_SIG_LEN = 16
NSINDEX_ALIGN = 256
NSINDEX_SEQ_MASK = 0x3
#: Fixed part of an index block before the free bitmap (sig .. checksum).
NSINDEX_HEADER_SIZE = 72
NSINDEX_CHECKSUM_OFFSET = 0x40
NSINDEX_FREE_OFFSET = 0x48

NSLABEL_UUID_LEN = 16
NSLABEL_NAME_LEN = 64
LABEL_CHECKSUM_OFFSET = 0xF8

NSLABEL_FLAG_ROLABEL = 0x1
NSLABEL_FLAG_LOCAL = 0x2
NSLABEL_FLAG_BTT = 0x4
NSLABEL_FLAG_UPDATING = 0x8

#: Label sizes the kernel probes, in probe order (label.c nd_label_validate).
LABEL_SIZES = (128, 256)
#: Smallest area the kernel accepts (label.h ND_LABEL_MIN_SIZE): 2 index
#: blocks of 256 bytes and 2 labels of 256 bytes.
ND_LABEL_MIN_SIZE = 256 * 4

#: Index block versions (major, minor).
LSA_VERSION_1_1 = (1, 1)   # UEFI/NVDIMM, 128-byte labels
LSA_VERSION_1_2 = (1, 2)   # UEFI 2.7, 256-byte labels; also what kernels <= 6.18 wrote for CXL
LSA_VERSION_2_1 = (2, 1)   # CXL r3.2 Table 9-9 (the 2025 "CXL LSA 2.1" kernel series)

#: Type UUIDs in the first 16 bytes of CXL labels (label.h).
CXL_NAMESPACE_TYPE_UUID = _uuid.UUID("68bb2c0a-5a77-4937-9f85-3caf41a0f93c")
CXL_REGION_TYPE_UUID = _uuid.UUID("529d7c61-da07-47c4-a93f-ecdf2c06f444")

#: Abstraction ("claim class") GUIDs (label.h NVDIMM_*_GUID).
NVDIMM_BTT_GUID = _uuid.UUID("8aed63a2-29a2-4c66-8b12-f05d15d3922a")
NVDIMM_BTT2_GUID = _uuid.UUID("18633bfc-1735-4217-8ac9-17239282d3f8")
NVDIMM_PFN_GUID = _uuid.UUID("266400ba-fb9f-4677-bcb0-968f11d0d225")
NVDIMM_DAX_GUID = _uuid.UUID("97a86d9c-3cdd-4eda-986f-5068b4f80088")
NULL_UUID = _uuid.UUID(int=0)

#: claim class name -> abstraction GUID (label.c to_abstraction_guid/uuid).
ABSTRACTION_BY_CLAIM_CLASS: dict[str, _uuid.UUID] = {
    "btt": NVDIMM_BTT_GUID,
    "btt2": NVDIMM_BTT2_GUID,
    "pfn": NVDIMM_PFN_GUID,
    "dax": NVDIMM_DAX_GUID,
    "none": NULL_UUID,
}

_U32 = 0xFFFF_FFFF


class LabelAreaError(Exception):
    """Base class for label-area errors."""


class LabelAreaTooSmall(LabelAreaError, ValueError):
    """The area cannot hold two index blocks and two labels."""


class LabelAreaFull(LabelAreaError):
    """No free slot in the staging index (the kernel returns -ENXIO)."""


class LabelAreaUninitialized(LabelAreaError):
    """Neither index block is valid."""


# ---------------------------------------------------------------------------
# Fletcher-64 (drivers/nvdimm/core.c nd_fletcher64, le=1)
# ---------------------------------------------------------------------------

def fletcher64(data: bytes | bytearray | memoryview) -> int:
    """Fletcher-64 over 32-bit little-endian words (trailing bytes ignored).

    Running sums: ``lo`` wraps at 2**32 and ``hi`` accumulates every
    intermediate ``lo``; the result is ``(hi mod 2**32) << 32 | lo``.  Computed
    with a cumulative sum: the n-th ``lo`` is the n-th prefix sum mod 2**32.
    uint64 arithmetic wraps mod 2**64, a multiple of 2**32, so reducing the
    wrapped sums mod 2**32 is exact for any length.
    """
    nwords = len(data) // 4
    if nwords == 0:
        return 0
    words = np.frombuffer(data, dtype="<u4", count=nwords).astype(np.uint64)
    lo_run = np.cumsum(words, dtype=np.uint64) & np.uint64(_U32)
    lo = int(lo_run[-1])
    hi = int(lo_run.sum(dtype=np.uint64)) & _U32
    return (hi << 32) | lo


def _checksummed(buf: bytearray, offset: int, length: int | None = None) -> bytearray:
    """Zero the 8-byte checksum at ``offset``, checksum ``buf[:length]``, store it."""
    buf[offset:offset + 8] = bytes(8)
    end = len(buf) if length is None else length
    struct.pack_into("<Q", buf, offset, fletcher64(memoryview(buf)[:end]))
    return buf


def checksum_ok(raw: bytes | bytearray | memoryview, offset: int) -> bool:
    """True if the little-endian u64 at ``offset`` is the Fletcher-64 of ``raw``
    computed with that field zeroed (label.c ``__nd_label_validate`` and
    ``nsl_validate_checksum``)."""
    buf = bytearray(raw)
    (saved,) = struct.unpack_from("<Q", buf, offset)
    buf[offset:offset + 8] = bytes(8)
    return fletcher64(buf) == saved


# ---------------------------------------------------------------------------
# Geometry (label.c sizeof_namespace_index / nvdimm_num_label_slots)
# ---------------------------------------------------------------------------

def _align(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def index_size_for(nslot: int) -> int:
    """Bytes of one index block describing ``nslot`` slots: the 72-byte header
    plus one bit per slot, rounded up to 256 (label.c ``__sizeof_namespace_index``)."""
    return _align(NSINDEX_HEADER_SIZE + (nslot + 7) // 8, NSINDEX_ALIGN)


def _too_small(config_size: int, label_size: int) -> LabelAreaTooSmall:
    return LabelAreaTooSmall(
        f"label area ({config_size}) too small to host ({label_size} byte) labels")


def _check_fits(config_size: int, label_size: int, nslot: int, isize: int) -> None:
    # Two index blocks plus the slots must fit and there must be >= 2 slots.
    if nslot < 2 or 2 * isize > config_size - nslot * label_size:
        raise _too_small(config_size, label_size)


def nslot_for(config_size: int, label_size: int) -> tuple[int, int]:
    """(nslot, index_size) per the newest label.c rule.

    A first guess of the index size assumes every byte holds labels
    (``config_size // label_size`` slots); the slots are what is left after
    two such index blocks; the index size is then recomputed for that slot
    count.  128 KiB / 256 B -> (510, 256), labels at 0x200.
    """
    if label_size <= 0:
        raise ValueError("label_size must be positive")
    guess = index_size_for(config_size // label_size)
    nslot = (config_size - 2 * guess) // label_size
    if nslot < 2:
        raise _too_small(config_size, label_size)
    isize = index_size_for(nslot)
    _check_fits(config_size, label_size, nslot, isize)
    return nslot, isize


def nslot_legacy(config_size: int, label_size: int) -> tuple[int, int]:
    """(nslot, index_size) per the pre-UEFI-2.7 rule (≈ v4.10–v4.19 label.c):
    budget one byte of bitmap overhead per label, ``config_size // (label_size + 1)``."""
    if label_size <= 0:
        raise ValueError("label_size must be positive")
    nslot = config_size // (label_size + 1)
    isize = index_size_for(nslot)
    _check_fits(config_size, label_size, nslot, isize)
    return nslot, isize


# ---------------------------------------------------------------------------
# Sequence numbers (nd.h nd_inc_seq, label.c best_seq)
# ---------------------------------------------------------------------------

_NEXT_SEQ = (0, 2, 3, 1)


def next_seq(seq: int) -> int:
    """Next sequence number in the cycle 1 -> 2 -> 3 -> 1 (0 stays 0: invalid)."""
    return _NEXT_SEQ[seq & NSINDEX_SEQ_MASK]


def best_seq(a: int, b: int) -> int:
    """The newer of two sequence numbers (low two bits only).

    0 means invalid; equal values prefer ``b``; otherwise ``b`` wins only if it
    directly follows ``a``.
    """
    a &= NSINDEX_SEQ_MASK
    b &= NSINDEX_SEQ_MASK
    if a == 0 or a == b:
        return b
    if b == 0:
        return a
    return b if next_seq(a) == b else a


def select_index(seq0: int, seq1: int) -> int:
    """Which of two *valid* index blocks is current: 1 iff ``best_seq`` equals
    block 1's sequence (so ties choose index 1)."""
    return 1 if best_seq(seq0, seq1) == (seq1 & NSINDEX_SEQ_MASK) else 0


# ---------------------------------------------------------------------------
# Index block codec
# ---------------------------------------------------------------------------

_INDEX_HDR = struct.Struct("<16s3sBIQQQQIHHQ")
assert _INDEX_HDR.size == NSINDEX_HEADER_SIZE


def labelsize_field(label_size: int) -> int:
    """The byte the kernel and ndctl store in ``labelsize``: ``label_size >> 8``
    (128 -> 0, 256 -> 1).  Read back as ``1 << (7 + field)`` for versions >= 1.2."""
    return label_size >> 8


@dataclass(kw_only=True)
class IndexBlock:
    """One index block.  ``free`` is the slot bitmap as an int: bit ``i`` set
    means slot ``i`` is free (little-endian bit order on media).  The bitmap
    field spans the whole block after the header, so padding bits/bytes are
    carried through a decode/encode round trip."""

    sig: bytes = NSINDEX_SIGNATURE
    flags: int = 0             # 3 bytes, written as 0
    labelsize: int             # raw field, see labelsize_field()
    seq: int
    myoff: int
    mysize: int
    otheroff: int
    labeloff: int
    nslot: int
    major: int
    minor: int
    checksum: int = 0
    free: int = field(default=0, repr=False)

    @property
    def version(self) -> int:
        """major * 100 + minor (label.c)."""
        return self.major * 100 + self.minor

    @property
    def label_size(self) -> int:
        """Label size implied by this block: ``1 << (7 + labelsize)`` from v1.2 on,
        always 128 before."""
        return 1 << (7 + self.labelsize) if self.version >= 102 else 128

    def is_free(self, slot: int) -> bool:
        return bool((self.free >> slot) & 1)

    def encode(self, size: int | None = None) -> bytes:
        """Encode into ``size`` bytes (default ``mysize``) with a fresh checksum."""
        size = self.mysize if size is None else size
        if size < NSINDEX_HEADER_SIZE:
            raise ValueError(f"index block size {size} < {NSINDEX_HEADER_SIZE}")
        nbits = (size - NSINDEX_HEADER_SIZE) * 8
        if self.free < 0 or self.free >> nbits:
            raise ValueError("free bitmap does not fit the index block")
        if len(self.sig) != NSINDEX_SIG_LEN:
            raise ValueError("signature must be 16 bytes")
        buf = bytearray(size)
        _INDEX_HDR.pack_into(
            buf, 0, self.sig, self.flags.to_bytes(3, "little"), self.labelsize,
            self.seq, self.myoff, self.mysize, self.otheroff, self.labeloff,
            self.nslot, self.major, self.minor, 0)
        buf[NSINDEX_FREE_OFFSET:] = self.free.to_bytes(size - NSINDEX_HEADER_SIZE, "little")
        return bytes(_checksummed(buf, NSINDEX_CHECKSUM_OFFSET))

    @classmethod
    def decode(cls, raw: bytes | bytearray | memoryview) -> "IndexBlock":
        """Decode a whole block (its length is the block size)."""
        raw = bytes(raw)
        if len(raw) < NSINDEX_HEADER_SIZE:
            raise ValueError(f"index block needs >= {NSINDEX_HEADER_SIZE} bytes")
        (sig, flags, labelsize, seq, myoff, mysize, otheroff, labeloff, nslot,
         major, minor, checksum) = _INDEX_HDR.unpack_from(raw, 0)
        return cls(sig=sig, flags=int.from_bytes(flags, "little"), labelsize=labelsize,
                   seq=seq, myoff=myoff, mysize=mysize, otheroff=otheroff,
                   labeloff=labeloff, nslot=nslot, major=major, minor=minor,
                   checksum=checksum,
                   free=int.from_bytes(raw[NSINDEX_FREE_OFFSET:], "little"))


# ---------------------------------------------------------------------------
# Label codecs (all 256 bytes, checksum at 0xF8; EFI v1.1 is 128 bytes)
# ---------------------------------------------------------------------------

def _name_bytes(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > NSLABEL_NAME_LEN or b"\x00" in raw:
        raise ValueError(f"label name must be <= {NSLABEL_NAME_LEN} bytes without NUL")
    return raw.ljust(NSLABEL_NAME_LEN, b"\x00")


def _name_str(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def label_id(ns_uuid: _uuid.UUID) -> str:
    """DPA-allocation id of a namespace (label.c nd_label_gen_id): "pmem-<uuid>"."""
    return f"pmem-{ns_uuid}"


def claim_class_of(abstraction: _uuid.UUID) -> str:
    """Claim class name of an abstraction GUID ("unknown" if unrecognised)."""
    for name, guid in ABSTRACTION_BY_CLAIM_CLASS.items():
        if guid == abstraction:
            return name
    return "unknown"


_CXL_NS = struct.Struct("<16s16s64sIHHQQII16s16sH86sQ")
_CXL_RG = struct.Struct("<16s16sIHHQQQIII172sQ")
_EFI = struct.Struct("<16s64sIHHQQQQIB3s16s16s88sQ")
assert _CXL_NS.size == _CXL_RG.size == _EFI.size == 256


@dataclass(kw_only=True)
class NamespaceLabel:
    """CXL namespace label (CXL r3.1 Table 9-11; label.h ``nvdimm_cxl_label``).
    UUID fields are stored in RFC 4122 byte order (``uuid.bytes``)."""

    type_uuid: _uuid.UUID = CXL_NAMESPACE_TYPE_UUID
    uuid: _uuid.UUID
    name: str = ""
    flags: int = 0
    nrange: int = 1
    position: int = 0
    dpa: int = 0
    rawsize: int = 0
    slot: int = 0
    align: int = 0             # in 256 MiB units
    region_uuid: _uuid.UUID = NULL_UUID
    abstraction_uuid: _uuid.UUID = NULL_UUID
    lbasize: int = 0
    checksum: int = 0

    SIZE = 256

    def encode(self) -> bytes:
        buf = bytearray(_CXL_NS.pack(
            self.type_uuid.bytes, self.uuid.bytes, _name_bytes(self.name), self.flags,
            self.nrange, self.position, self.dpa, self.rawsize, self.slot, self.align,
            self.region_uuid.bytes, self.abstraction_uuid.bytes, self.lbasize,
            bytes(0x56), 0))
        return bytes(_checksummed(buf, LABEL_CHECKSUM_OFFSET))

    @classmethod
    def decode(cls, raw: bytes | bytearray | memoryview) -> "NamespaceLabel":
        (typ, uid, name, flags, nrange, position, dpa, rawsize, slot, align, region,
         abstraction, lbasize, _res, checksum) = _CXL_NS.unpack_from(bytes(raw), 0)
        return cls(type_uuid=_uuid.UUID(bytes=typ), uuid=_uuid.UUID(bytes=uid),
                   name=_name_str(name), flags=flags, nrange=nrange, position=position,
                   dpa=dpa, rawsize=rawsize, slot=slot, align=align,
                   region_uuid=_uuid.UUID(bytes=region),
                   abstraction_uuid=_uuid.UUID(bytes=abstraction), lbasize=lbasize,
                   checksum=checksum)


@dataclass(kw_only=True)
class RegionLabel:
    """CXL region label (CXL r3.1 Table 9-10; label.h ``cxl_region_label``).

    ``ig`` is stored raw.  label.h documents it as an encoding (granularity =
    256 << ig) while the 2025 series' ``region_label_update`` stores the
    granularity itself; callers choose.
    """

    type_uuid: _uuid.UUID = CXL_REGION_TYPE_UUID
    uuid: _uuid.UUID
    flags: int = 0
    nlabel: int = 1
    position: int = 0
    dpa: int = 0
    rawsize: int = 0
    hpa: int = 0
    slot: int = 0
    ig: int = 0
    align: int = 0             # in 256 MiB units
    checksum: int = 0

    SIZE = 256

    def encode(self) -> bytes:
        buf = bytearray(_CXL_RG.pack(
            self.type_uuid.bytes, self.uuid.bytes, self.flags, self.nlabel, self.position,
            self.dpa, self.rawsize, self.hpa, self.slot, self.ig, self.align,
            bytes(0xAC), 0))
        return bytes(_checksummed(buf, LABEL_CHECKSUM_OFFSET))

    @classmethod
    def decode(cls, raw: bytes | bytearray | memoryview) -> "RegionLabel":
        (typ, uid, flags, nlabel, position, dpa, rawsize, hpa, slot, ig, align, _res,
         checksum) = _CXL_RG.unpack_from(bytes(raw), 0)
        return cls(type_uuid=_uuid.UUID(bytes=typ), uuid=_uuid.UUID(bytes=uid),
                   flags=flags, nlabel=nlabel, position=position, dpa=dpa,
                   rawsize=rawsize, hpa=hpa, slot=slot, ig=ig, align=align,
                   checksum=checksum)


@dataclass(kw_only=True)
class EfiNamespaceLabel:
    """UEFI/NVDIMM namespace label (label.h ``nvdimm_efi_label``).

    v1.2 labels are 256 bytes with a checksum; v1.1 labels are the first 128
    bytes (up to and including ``slot`` and ``align``), without checksum.
    ``uuid`` is stored in RFC 4122 byte order; ``type_guid`` and
    ``abstraction_guid`` are EFI GUIDs (mixed-endian, ``uuid.bytes_le``).
    """

    uuid: _uuid.UUID
    name: str = ""
    flags: int = 0
    nlabel: int = 1
    position: int = 0
    isetcookie: int = 0
    lbasize: int = 0
    dpa: int = 0
    rawsize: int = 0
    slot: int = 0
    align: int = 0             # 1 byte
    type_guid: _uuid.UUID = NULL_UUID
    abstraction_guid: _uuid.UUID = NULL_UUID
    checksum: int = 0

    SIZE = 256

    def encode(self, label_size: int = 256) -> bytes:
        if label_size not in LABEL_SIZES:
            raise ValueError("EFI labels are 128 (v1.1) or 256 (v1.2) bytes")
        buf = bytearray(_EFI.pack(
            self.uuid.bytes, _name_bytes(self.name), self.flags, self.nlabel,
            self.position, self.isetcookie, self.lbasize, self.dpa, self.rawsize,
            self.slot, self.align, bytes(3), self.type_guid.bytes_le,
            self.abstraction_guid.bytes_le, bytes(88), 0))
        if label_size == 128:
            return bytes(buf[:128])
        return bytes(_checksummed(buf, LABEL_CHECKSUM_OFFSET))

    @classmethod
    def decode(cls, raw: bytes | bytearray | memoryview) -> "EfiNamespaceLabel":
        raw = bytes(raw)
        if len(raw) not in LABEL_SIZES:
            raise ValueError("EFI labels are 128 or 256 bytes")
        (uid, name, flags, nlabel, position, isetcookie, lbasize, dpa, rawsize, slot,
         align, _r1, type_guid, abstraction, _r2, checksum) = _EFI.unpack_from(
            raw.ljust(256, b"\x00"), 0)
        return cls(uuid=_uuid.UUID(bytes=uid), name=_name_str(name), flags=flags,
                   nlabel=nlabel, position=position, isetcookie=isetcookie,
                   lbasize=lbasize, dpa=dpa, rawsize=rawsize, slot=slot, align=align,
                   type_guid=_uuid.UUID(bytes_le=type_guid),
                   abstraction_guid=_uuid.UUID(bytes_le=abstraction), checksum=checksum)


Label = Union[NamespaceLabel, RegionLabel, EfiNamespaceLabel]


def is_region_label(raw: bytes | bytearray | memoryview) -> bool:
    """A CXL slot holds a region label iff its type UUID says so (nd.h is_region_label)."""
    return bytes(raw[:16]) == CXL_REGION_TYPE_UUID.bytes


def decode_label(raw: bytes | bytearray | memoryview, *, cxl: bool = True) -> Label:
    """Decode one slot.  CXL slots are region labels when the type matches,
    otherwise namespace labels (as the kernel treats them); non-CXL slots are
    EFI labels."""
    if cxl:
        return RegionLabel.decode(raw) if is_region_label(raw) else NamespaceLabel.decode(raw)
    return EfiNamespaceLabel.decode(raw)


def encode_label(label: Label, label_size: int = 256) -> bytes:
    if isinstance(label, EfiNamespaceLabel):
        return label.encode(label_size)
    if label_size != 256:
        raise ValueError("CXL labels are 256 bytes")
    return label.encode()


def slot_valid(raw: bytes | bytearray | memoryview, slot: int, *, cxl: bool = True) -> bool:
    """label.c ``slot_valid``: the label's own ``slot`` field must equal the
    slot it sits in, and its Fletcher-64 must match (128-byte v1.1 labels have
    no checksum).  Newer kernels dropped the old 4 KiB dpa/rawsize check."""
    raw = bytes(raw)
    slot_off = 0x40 if cxl and is_region_label(raw) else 0x78
    (own,) = struct.unpack_from("<I", raw, slot_off)
    if own != slot:
        return False
    if len(raw) < 256:
        return True
    return checksum_ok(raw, LABEL_CHECKSUM_OFFSET)


# ---------------------------------------------------------------------------
# Index validation and selection (label.c __nd_label_validate / nd_label_validate)
# ---------------------------------------------------------------------------

def validate_index(area: bytes | bytearray | memoryview, i: int, label_size: int) -> bool:
    """Run the kernel's per-block checks on index ``i`` assuming ``label_size``:
    signature, implied label size, checksum over the whole block, non-zero
    sequence, myoff/otheroff/labeloff at their expected places, mysize in
    [72, block size] and the slots fitting the area."""
    config_size = len(area)
    try:
        _nslot, isize = nslot_for(config_size, label_size)
    except LabelAreaTooSmall:
        return False
    raw = bytes(area[i * isize:(i + 1) * isize])
    if len(raw) != isize or raw[:NSINDEX_SIG_LEN] != NSINDEX_SIGNATURE:
        return False
    blk = IndexBlock.decode(raw)
    if blk.label_size != label_size:
        return False
    if not checksum_ok(raw, NSINDEX_CHECKSUM_OFFSET):
        return False
    if blk.seq & NSINDEX_SEQ_MASK == 0:
        return False
    if blk.myoff != i * isize or blk.otheroff != (1 - i) * isize:
        return False
    if blk.labeloff != 2 * isize:      # newest kernels only
        return False
    if not NSINDEX_HEADER_SIZE <= blk.mysize <= isize:
        return False
    # The kernel multiplies in u32 here; exact arithmetic is stricter.
    return blk.nslot * label_size + 2 * isize <= config_size


def _current_for(area: bytes | bytearray | memoryview, label_size: int) -> int:
    valid = [validate_index(area, i, label_size) for i in (0, 1)]
    if valid[0] and valid[1]:
        _n, isize = nslot_for(len(area), label_size)
        (seq0,) = struct.unpack_from("<I", area, 0x14)
        (seq1,) = struct.unpack_from("<I", area, isize + 0x14)
        return select_index(seq0, seq1)
    if valid[0]:
        return 0
    if valid[1]:
        return 1
    return -1


def probe_label_area(area: bytes | bytearray | memoryview,
                     label_size: int | None = None) -> tuple[int, int | None]:
    """(current index, label size).  Without ``label_size`` the sizes are tried
    in the kernel's order, 128 then 256; (-1, None) when nothing validates."""
    sizes = LABEL_SIZES if label_size is None else (label_size,)
    for size in sizes:
        idx = _current_for(area, size)
        if idx >= 0:
            return idx, size
    return -1, None


def current_index(area: bytes | bytearray | memoryview, label_size: int | None = None) -> int:
    """Index of the current block, -1 if none is valid (ties choose index 1)."""
    return probe_label_area(area, label_size)[0]


# ---------------------------------------------------------------------------
# A whole label area
# ---------------------------------------------------------------------------

Writer = Callable[[int, bytes], None]
LabelPredicate = Callable[[Label], bool]


def _bits_clear(free: int, nslot: int) -> np.ndarray:
    """Slot numbers < nslot whose free bit is clear (in-use), ascending."""
    if nslot <= 0:
        return np.zeros(0, dtype=np.int64)
    nbytes = (nslot + 7) // 8
    bits = np.unpackbits(np.frombuffer((free & ((1 << (nbytes * 8)) - 1)).to_bytes(
        nbytes, "little"), dtype=np.uint8), bitorder="little")[:nslot]
    return np.flatnonzero(bits == 0)


class LabelArea:
    """A label area held in a writable buffer.

    Reads always decode ``data``; nothing is cached, so ``data`` is the single
    source of truth.  Every mutation is a sequence of ``(offset, bytes)``
    writes, each first passed to ``writer`` (if any: e.g. the device model's
    SET_LSA path, or a crash-test recorder; if it raises, that write and the
    rest of the operation do not happen) and then stored into ``data``.

    ``version`` is the index version written by updates: CXL r3.2 2.1 by
    default, 1.2 as kernels up to ~6.18 wrote for CXL, or 1.1 for 128-byte
    EFI labels.  ``cxl`` selects the CXL label layouts (namespace/region) over
    the EFI one.  ``label_size`` defaults to what a valid index implies (probed
    like the kernel does), else 128 for v1.1 and 256 otherwise.
    """

    def __init__(self, data: bytearray | memoryview | int, *, label_size: int | None = None,
                 version: tuple[int, int] = LSA_VERSION_2_1, cxl: bool = True,
                 writer: Writer | None = None) -> None:
        if isinstance(data, int):
            data = bytearray(data)
        elif isinstance(data, bytes) or (isinstance(data, memoryview) and data.readonly):
            raise TypeError("a label area needs a writable buffer (bytearray, memoryview)")
        self.data = data
        version = tuple(version)
        if version not in (LSA_VERSION_1_1, LSA_VERSION_1_2, LSA_VERSION_2_1):
            raise ValueError(f"unsupported label area version {version}")
        if label_size is None:
            _idx, label_size = probe_label_area(self.data)
            if label_size is None:
                label_size = 128 if version == LSA_VERSION_1_1 else 256
        if label_size not in LABEL_SIZES:
            raise ValueError("label size must be 128 or 256")
        if cxl and (label_size != 256 or version == LSA_VERSION_1_1):
            raise ValueError("CXL label areas use 256-byte labels and version 1.2 or 2.1")
        if not cxl and version == LSA_VERSION_2_1:
            raise ValueError("version 2.1 is the CXL format")
        if not cxl and (label_size == 128) != (version == LSA_VERSION_1_1):
            raise ValueError("EFI v1.1 means 128-byte labels, v1.2 256-byte labels")
        self.label_size = label_size
        self.version: tuple[int, int] = version  # type: ignore[assignment]
        self.cxl = cxl
        self.writer = writer
        self._nslot, self.index_size = nslot_for(len(self.data), label_size)

    # -- geometry ---------------------------------------------------------

    @property
    def config_size(self) -> int:
        return len(self.data)

    @property
    def label_base(self) -> int:
        """Offset of slot 0: right after the two index blocks."""
        return 2 * self.index_size

    @property
    def nslot(self) -> int:
        """Slots described by the current index (computed when uninitialized)."""
        cur = self.current()
        return self.index_block(cur).nslot if cur >= 0 else self._nslot

    def slot_offset(self, slot: int) -> int:
        return self.label_base + slot * self.label_size

    # -- reading ----------------------------------------------------------

    def current(self) -> int:
        return _current_for(self.data, self.label_size)

    def is_initialized(self) -> bool:
        return self.current() >= 0

    def index_block(self, i: int) -> IndexBlock:
        return IndexBlock.decode(self.data[i * self.index_size:(i + 1) * self.index_size])

    def raw_slot(self, slot: int) -> bytes:
        off = self.slot_offset(slot)
        return bytes(self.data[off:off + self.label_size])

    def active_slots(self) -> list[int]:
        """Slots marked in use by the current index (valid or not)."""
        cur = self.current()
        if cur < 0:
            return []
        blk = self.index_block(cur)
        return [int(s) for s in _bits_clear(blk.free, blk.nslot)]

    def nfree(self) -> int:
        """Free slots available to the next update (label.c nd_label_nfree)."""
        cur = self.current()
        if cur < 0:
            return self._nslot
        blk = self.index_block(cur)
        return blk.nslot - len(_bits_clear(blk.free, blk.nslot))

    def labels(self) -> list[tuple[int, Label]]:
        """(slot, label) for the in-use slots of the current index whose label
        passes ``slot_valid`` (own slot field and checksum), ascending."""
        out: list[tuple[int, Label]] = []
        for slot in self.active_slots():
            raw = self.raw_slot(slot)
            if slot_valid(raw, slot, cxl=self.cxl):
                out.append((slot, decode_label(raw, cxl=self.cxl)))
        return out

    # -- writing ----------------------------------------------------------

    def _emit(self, offset: int, payload: bytes) -> None:
        if self.writer is not None:
            self.writer(offset, payload)
        self.data[offset:offset + len(payload)] = payload

    def _index_bytes(self, i: int, seq: int, nslot: int, free: int,
                     version: tuple[int, int]) -> bytes:
        isize = self.index_size
        blk = IndexBlock(labelsize=labelsize_field(self.label_size), seq=seq,
                         myoff=i * isize, mysize=isize, otheroff=(1 - i) * isize,
                         labeloff=2 * isize, nslot=nslot, major=version[0],
                         minor=version[1], free=free)
        return blk.encode(isize)

    def init(self, *, style: Literal["kernel", "ndctl"] = "kernel") -> None:
        """Write both index blocks: block 0 with seq 3, block 1 with seq 2, all
        slots free (label.c init_labels, ndctl_dimm_init_labels).  Label slots
        are not touched.

        ``style="kernel"``: padding bits past ``nslot`` are 0, version is
        ``self.version``.  ``style="ndctl"``: as ndctl's write_label_index,
        the bitmap is set up to a 64-bit boundary, version is 1.1/1.2 by label
        size, and bitmap bytes past that boundary keep their old contents.

        Order: with no valid index (the only case the kernel initialises) block
        0 is written first, as both do.  Re-initialising a valid area (ndctl
        ``init-labels --force``) writes the *non-current* block first so that a
        crash in between still selects either the old current block or a new
        one (ndctl always starts with block 0, which can resurrect a stale
        block).
        """
        nslot, isize = self._nslot, self.index_size
        old_cur, _size = probe_label_area(self.data)
        order = (1, 0) if old_cur == 0 else (0, 1)
        if style == "kernel":
            version, free = self.version, (1 << nslot) - 1
        elif style == "ndctl":
            version = LSA_VERSION_1_1 if self.label_size < 256 else LSA_VERSION_1_2
            set_bits = min(_align(nslot, 64), (isize - NSINDEX_HEADER_SIZE) * 8)
            free = (1 << set_bits) - 1
        else:
            raise ValueError(f"unknown init style {style!r}")
        for i in order:
            bits = free
            if style == "ndctl":
                old = IndexBlock.decode(self.data[i * isize:(i + 1) * isize])
                bits |= (old.free >> set_bits) << set_bits
            self._emit(i * isize, self._index_bytes(i, 3 - i, nslot, bits, version))

    def _require_current(self) -> tuple[int, IndexBlock]:
        cur = self.current()
        if cur < 0:
            raise LabelAreaUninitialized("label area has no valid index block")
        return cur, self.index_block(cur)

    def _commit(self, cur: int, blk: IndexBlock, free: int) -> None:
        """Write the staging (other) index with the next sequence number;
        from then on it is current (label.c nd_label_write_index)."""
        nxt = 1 - cur
        self._emit(nxt * self.index_size,
                   self._index_bytes(nxt, next_seq(blk.seq), blk.nslot, free, self.version))

    def _victims(self, reap: LabelPredicate | Iterable[int] | None) -> list[int]:
        if reap is None:
            return []
        if callable(reap):
            return [slot for slot, label in self.labels() if reap(label)]
        active = set(self.active_slots())
        return [s for s in reap if s in active]

    def write_label(self, label: Label, *,
                    reap: LabelPredicate | Iterable[int] | None = None) -> int:
        """Store ``label`` in the lowest free slot and commit, returning the slot.

        The label's ``slot`` field is set to that slot and its checksum
        computed.  ``reap`` (a predicate over the current valid labels, or slot
        numbers) names labels freed by the same index commit, the way the
        kernel garbage-collects the label a new one replaces.  Writes: the
        label, then the staging index.  Raises :class:`LabelAreaFull` (nothing
        written) when no slot is free.
        """
        if self.cxl == isinstance(label, EfiNamespaceLabel):
            raise TypeError(f"{type(label).__name__} does not belong in a "
                            f"{'CXL' if self.cxl else 'EFI'} label area")
        cur, blk = self._require_current()
        victims = self._victims(reap)
        avail = blk.free & ((1 << blk.nslot) - 1)
        if avail == 0:
            raise LabelAreaFull("no free label slot")
        slot = (avail & -avail).bit_length() - 1
        free = blk.free & ~(1 << slot)
        self._emit(self.slot_offset(slot),
                   encode_label(replace(label, slot=slot), self.label_size))
        for victim in victims:
            free |= 1 << victim
        self._commit(cur, blk, free)
        return slot

    def delete_labels(self, predicate: LabelPredicate) -> list[int]:
        """Free every valid label matching ``predicate`` with one index commit
        (label.c del_labels, which commits even when nothing matched).
        Returns the freed slots; does nothing on an uninitialized area."""
        cur = self.current()
        if cur < 0:
            return []
        blk = self.index_block(cur)
        victims = self._victims(predicate)
        free = blk.free
        for victim in victims:
            free |= 1 << victim
        self._commit(cur, blk, free)
        return victims

    def zero(self) -> None:
        """Overwrite the whole area with zeros in one write (``zero-labels``)."""
        self._emit(0, bytes(self.config_size))
