"""The ``/dev/cxl/memN`` ioctl ABI (include/uapi/linux/cxl_mem.h).

Structures (all naturally aligned, no padding, native byte order):

* ``struct cxl_command_info`` (16 bytes): u32 id, u32 flags, u32 size_in,
  u32 size_out.  ``~0`` sizes mean "variable"; libcxl declares them ``__s32``
  so they read as -1, which is what :class:`CommandInfo` exposes.
* ``struct cxl_mem_query_commands`` (8-byte header): u32 n_commands, u32 rsvd,
  then ``n_commands`` ``cxl_command_info`` entries.  n_commands == 0 asks
  for the count only.
* ``struct cxl_send_command`` (48 bytes): u32 id, u32 flags, a 4-byte union
  of {u16 raw.opcode, u16 raw.rsvd} / u32 rsvd, u32 retval, then ``in`` and
  ``out`` = {u32 size, u32 rsvd, u64 payload pointer}.

Ioctl numbers use the asm-generic _IOC encoding (x86, arm, arm64, riscv, ...):
nr bits 0-7, type bits 8-15, size bits 16-29, direction bits 30-31 with
WRITE = 1 and READ = 2.  ``CXL_MEM_QUERY_COMMANDS = _IOR(0xCE, 1, 8)`` and
``CXL_MEM_SEND_COMMAND = _IOWR(0xCE, 2, 48)`` = 0xC030CE02.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import struct
from typing import ClassVar, Self

from .opcodes import VARIABLE

from cxlemu.util.lazydc import dataclass

# ---------------------------------------------------------------------------
# ioctl number encoding (include/uapi/asm-generic/ioctl.h)
# ---------------------------------------------------------------------------

IOC_NRBITS = 8
IOC_TYPEBITS = 8
IOC_SIZEBITS = 14
IOC_DIRBITS = 2
IOC_NRSHIFT = 0
IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS
IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS
IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS
IOC_NONE = 0
IOC_WRITE = 1
IOC_READ = 2


def ioc(direction: int, type_: int, nr: int, size: int) -> int:
    """Compose an ioctl request number like the kernel's _IOC()."""
    if not 0 <= size < 1 << IOC_SIZEBITS:
        raise ValueError(f"ioctl argument size {size} does not fit {IOC_SIZEBITS} bits")
    if not (0 <= type_ < 1 << IOC_TYPEBITS and 0 <= nr < 1 << IOC_NRBITS
            and 0 <= direction < 1 << IOC_DIRBITS):
        raise ValueError("ioctl type/nr/direction out of range")
    return (direction << IOC_DIRSHIFT) | (type_ << IOC_TYPESHIFT) | (nr << IOC_NRSHIFT) \
        | (size << IOC_SIZESHIFT)


def io_r(type_: int, nr: int, size: int) -> int:
    return ioc(IOC_READ, type_, nr, size)


def io_w(type_: int, nr: int, size: int) -> int:
    return ioc(IOC_WRITE, type_, nr, size)


def io_wr(type_: int, nr: int, size: int) -> int:
    return ioc(IOC_READ | IOC_WRITE, type_, nr, size)


def ioc_decode(request: int) -> tuple[int, int, int, int]:
    """Split a request number into (direction, type, nr, size)."""
    return (
        (request >> IOC_DIRSHIFT) & ((1 << IOC_DIRBITS) - 1),
        (request >> IOC_TYPESHIFT) & ((1 << IOC_TYPEBITS) - 1),
        (request >> IOC_NRSHIFT) & ((1 << IOC_NRBITS) - 1),
        (request >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1),
    )


CXL_MEM_IOCTL_TYPE = 0xCE

# ---------------------------------------------------------------------------
# ctypes mirrors of the C structures (used for the real ioctl and to check the
# struct-module layouts below against the C ABI)
# ---------------------------------------------------------------------------


class CCommandInfo(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("size_in", ctypes.c_int32),
        ("size_out", ctypes.c_int32),
    ]


class CMemQueryCommands(ctypes.Structure):
    """Header only; the flexible ``commands[]`` array follows in memory."""

    _fields_ = [("n_commands", ctypes.c_uint32), ("rsvd", ctypes.c_uint32)]


class _CRaw(ctypes.Structure):
    _fields_ = [("opcode", ctypes.c_uint16), ("rsvd", ctypes.c_uint16)]


class _CRawUnion(ctypes.Union):
    _fields_ = [("raw", _CRaw), ("rsvd", ctypes.c_uint32)]


class _CPayload(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("rsvd", ctypes.c_uint32),
                ("payload", ctypes.c_uint64)]


class CSendCommand(ctypes.Structure):
    _anonymous_ = ("u",)
    _fields_ = [
        ("id", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("u", _CRawUnion),
        ("retval", ctypes.c_uint32),
        ("in_", _CPayload),
        ("out", _CPayload),
    ]


#: _IOR(0xCE, 1, struct cxl_mem_query_commands)
CXL_MEM_QUERY_COMMANDS = io_r(CXL_MEM_IOCTL_TYPE, 1, ctypes.sizeof(CMemQueryCommands))
#: _IOWR(0xCE, 2, struct cxl_send_command)
CXL_MEM_SEND_COMMAND = io_wr(CXL_MEM_IOCTL_TYPE, 2, ctypes.sizeof(CSendCommand))

#: cxl_command_info.flags bits (newer kernels report them in QUERY).
COMMAND_FLAG_ENABLED = 1 << 0
COMMAND_FLAG_EXCLUSIVE = 1 << 1
COMMAND_FLAG_MASK = COMMAND_FLAG_ENABLED | COMMAND_FLAG_EXCLUSIVE

# ---------------------------------------------------------------------------
# struct-module codecs
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """One ``struct cxl_command_info``; sizes are bytes or -1 (variable)."""

    id: int
    flags: int = 0
    size_in: int = 0
    size_out: int = 0

    _FMT: ClassVar[str] = "=IIii"
    SIZE: ClassVar[int] = 16

    @property
    def variable_in(self) -> bool:
        return self.size_in == VARIABLE

    @property
    def variable_out(self) -> bool:
        return self.size_out == VARIABLE

    def pack(self) -> bytes:
        return struct.pack(self._FMT, self.id, self.flags, self.size_in, self.size_out)

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        if len(raw) != cls.SIZE:
            raise ValueError(f"cxl_command_info is {cls.SIZE} bytes, got {len(raw)}")
        return cls(*struct.unpack(cls._FMT, raw))


QUERY_HEADER_FMT = "=II"
QUERY_HEADER_SIZE = 8


def pack_query(n_commands: int, commands: list[CommandInfo] | None = None) -> bytes:
    """A ``cxl_mem_query_commands`` buffer: header plus ``commands`` (or
    ``n_commands`` zeroed slots for the kernel to fill)."""
    body = b"".join(c.pack() for c in commands) if commands is not None \
        else bytes(CommandInfo.SIZE * n_commands)
    return struct.pack(QUERY_HEADER_FMT, n_commands, 0) + body


def unpack_query(raw: bytes) -> tuple[int, list[CommandInfo]]:
    """(n_commands, entries) from a query buffer; reads min(n, room) entries."""
    if len(raw) < QUERY_HEADER_SIZE:
        raise ValueError("cxl_mem_query_commands buffer shorter than its header")
    n, _rsvd = struct.unpack_from(QUERY_HEADER_FMT, raw)
    room = (len(raw) - QUERY_HEADER_SIZE) // CommandInfo.SIZE
    entries = [
        CommandInfo(*t)
        for t in struct.iter_unpack(
            CommandInfo._FMT,
            raw[QUERY_HEADER_SIZE:QUERY_HEADER_SIZE + min(n, room) * CommandInfo.SIZE],
        )
    ]
    return n, entries


@dataclass(frozen=True, slots=True)
class SendCommand:
    """``struct cxl_send_command`` with the union split into its RAW halves."""

    id: int
    flags: int = 0
    raw_opcode: int = 0
    raw_rsvd: int = 0
    retval: int = 0
    in_size: int = 0
    in_rsvd: int = 0
    in_payload: int = 0
    out_size: int = 0
    out_rsvd: int = 0
    out_payload: int = 0

    _FMT: ClassVar[str] = "=IIHHIIIQIIQ"
    SIZE: ClassVar[int] = 48

    @property
    def rsvd(self) -> int:
        """The union viewed as its plain ``__u32 rsvd`` member."""
        return self.raw_opcode | self.raw_rsvd << 16 if _NATIVE_LITTLE \
            else self.raw_opcode << 16 | self.raw_rsvd

    def pack(self) -> bytes:
        return struct.pack(
            self._FMT, self.id, self.flags, self.raw_opcode, self.raw_rsvd, self.retval,
            self.in_size, self.in_rsvd, self.in_payload,
            self.out_size, self.out_rsvd, self.out_payload,
        )

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        if len(raw) != cls.SIZE:
            raise ValueError(f"cxl_send_command is {cls.SIZE} bytes, got {len(raw)}")
        return cls(*struct.unpack(cls._FMT, raw))


_NATIVE_LITTLE = struct.pack("=H", 1) == b"\x01\x00"

# ---------------------------------------------------------------------------
# a channel to a real kernel memdev
# ---------------------------------------------------------------------------


class RealMemdevChannel:
    """Issue CXL_MEM_QUERY_COMMANDS / CXL_MEM_SEND_COMMAND on a real memdev.

    Like libcxl's do_cmd() the node is opened O_RDWR for each ioctl and must
    be a character device; when ``expect_rdev=(major, minor)`` is given the
    node must also carry that device number (else ENXIO, libcxl's "failed to
    validate ... as a CXL memdev node").  Ioctl failures surface as OSError
    with the kernel's errno.  Not exercisable without a CXL device.
    """

    def __init__(self, path: str | os.PathLike[str],
                 expect_rdev: tuple[int, int] | None = None) -> None:
        self.path = os.fspath(path)
        self.expect_rdev = expect_rdev

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            ok = stat.S_ISCHR(st.st_mode)
            if ok and self.expect_rdev is not None:
                ok = (os.major(st.st_rdev), os.minor(st.st_rdev)) == self.expect_rdev
            if not ok:
                raise OSError(errno.ENXIO, "not a CXL memdev node", self.path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _ioctl(self, request: int, buf: bytearray | ctypes.Array[ctypes.c_char]) -> None:
        fd = self._open()
        try:
            fcntl.ioctl(fd, request, buf, True)
        finally:
            os.close(fd)

    def query(self) -> list[CommandInfo]:
        """All command infos the driver reports (count first, then the array)."""
        head = bytearray(pack_query(0))
        self._ioctl(CXL_MEM_QUERY_COMMANDS, head)
        n, _ = unpack_query(bytes(head))
        # A ctypes buffer keeps a stable address whatever its size.
        buf = ctypes.create_string_buffer(pack_query(n), QUERY_HEADER_SIZE + n * CommandInfo.SIZE)
        self._ioctl(CXL_MEM_QUERY_COMMANDS, buf)
        _, entries = unpack_query(buf.raw)
        return entries

    def send(self, cmd_id: int, payload_in: bytes, out_size: int, *,
             raw_opcode: int = 0) -> tuple[int, bytes]:
        """Send one command; returns (mailbox return code, output payload)."""
        in_buf = ctypes.create_string_buffer(bytes(payload_in), max(len(payload_in), 1))
        out_buf = ctypes.create_string_buffer(max(out_size, 1))
        cmd = SendCommand(
            id=cmd_id,
            raw_opcode=raw_opcode,
            in_size=len(payload_in),
            in_payload=ctypes.addressof(in_buf) if payload_in else 0,
            out_size=out_size,
            out_payload=ctypes.addressof(out_buf) if out_size else 0,
        )
        arg = bytearray(cmd.pack())
        self._ioctl(CXL_MEM_SEND_COMMAND, arg)
        done = SendCommand.unpack(bytes(arg))
        got = min(done.out_size, out_size)
        return done.retval, out_buf.raw[:got]
