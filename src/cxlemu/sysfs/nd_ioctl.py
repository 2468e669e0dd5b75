"""The /dev/nmemN label ioctls (include/uapi/linux/ndctl.h) and the channel
a tool reads and writes a dimm's label area through.

Structures (native byte order, no padding):

* ``struct nd_cmd_get_config_size`` (12 bytes): u32 status, u32 config_size,
  u32 max_xfer;
* ``struct nd_cmd_get_config_data_hdr`` (12 bytes + data): u32 in_offset,
  u32 in_length, u32 status, then ``in_length`` bytes out;
* ``struct nd_cmd_set_config_hdr`` (8 bytes + data + u32 status): u32
  in_offset, u32 in_length, ``in_length`` bytes in, then the u32 status the
  kernel writes back.

``ND_IOCTL_GET_CONFIG_SIZE = _IOWR('N', 4, 12)``, ``ND_IOCTL_GET_CONFIG_DATA
= _IOWR('N', 5, 12)``, ``ND_IOCTL_SET_CONFIG_DATA = _IOWR('N', 6, 8)``: the
size in the number is the header's; the kernel copies the whole envelope
(drivers/nvdimm/bus.c __nd_ioctl).  Transfers longer than ``max_xfer`` are
split by the caller, as libndctl's label readers do.

Channels (what ``Backend.open_nmem()`` returns) have ``config_size() ->
(size, max_xfer)``, ``get_config_data(offset, length) -> bytes`` and
``set_config_data(offset, data)``; failures are OSError with the errno the
ioctl returns.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

from cxlemu.hw.mailbox.uapi import io_wr

ND_IOCTL = ord("N")
ND_CMD_GET_CONFIG_SIZE = 4
ND_CMD_GET_CONFIG_DATA = 5
ND_CMD_SET_CONFIG_DATA = 6

GET_CONFIG_SIZE = struct.Struct("=III")        # status, config_size, max_xfer
GET_CONFIG_DATA_HDR = struct.Struct("=III")    # in_offset, in_length, status
SET_CONFIG_HDR = struct.Struct("=II")          # in_offset, in_length

ND_IOCTL_GET_CONFIG_SIZE = io_wr(ND_IOCTL, ND_CMD_GET_CONFIG_SIZE, GET_CONFIG_SIZE.size)
ND_IOCTL_GET_CONFIG_DATA = io_wr(ND_IOCTL, ND_CMD_GET_CONFIG_DATA, GET_CONFIG_DATA_HDR.size)
ND_IOCTL_SET_CONFIG_DATA = io_wr(ND_IOCTL, ND_CMD_SET_CONFIG_DATA, SET_CONFIG_HDR.size)


def pack_get_config_data(offset: int, length: int) -> bytearray:
    return bytearray(GET_CONFIG_DATA_HDR.pack(offset, length, 0) + bytes(length))


def pack_set_config_data(offset: int, data: bytes) -> bytearray:
    return bytearray(SET_CONFIG_HDR.pack(offset, len(data)) + bytes(data) + bytes(4))


def read_in_chunks(chan, offset: int, length: int) -> bytes:
    """``length`` bytes from ``offset`` in ``max_xfer`` pieces (libndctl)."""
    _size, max_xfer = chan.config_size()
    step = max_xfer if max_xfer > 0 else length or 1
    out = bytearray()
    pos, end = offset, offset + length
    while pos < end:
        n = min(step, end - pos)
        out += chan.get_config_data(pos, n)
        pos += n
    return bytes(out)


def write_in_chunks(chan, offset: int, data: bytes) -> None:
    _size, max_xfer = chan.config_size()
    step = max_xfer if max_xfer > 0 else len(data) or 1
    for start in range(0, len(data), step):
        chan.set_config_data(offset + start, data[start:start + step])


class NodeError(OSError):
    """The node could not be used: ``validate`` is False when open(2)
    failed, True when it opened but is not an nvdimm control node (libndctl
    ndctl_cmd_submit's two messages)."""

    def __init__(self, err: int, path: str, validate: bool):
        super().__init__(err, os.strerror(err), path)
        self.validate = validate

    def message(self) -> str:
        if self.validate:
            return f"failed to validate {self.filename} as a control node"
        return f"failed to open {self.filename}: {self.strerror}"


class RealNmemChannel:
    """The label ioctls on a real /dev/nmemN (a character device)."""

    def __init__(self, path: str | os.PathLike[str], devname: str | None = None):
        self.path = os.fspath(path)
        self.devname = devname or self.path      # the name messages use (/dev/nmemN)

    def _ioctl(self, request: int, buf: bytearray) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise NodeError(e.errno or errno.ENXIO, self.devname, validate=False) from None
        try:
            if not stat.S_ISCHR(os.fstat(fd).st_mode):
                raise NodeError(errno.ENXIO, self.devname, validate=True)
            fcntl.ioctl(fd, request, buf, True)
        finally:
            os.close(fd)

    @staticmethod
    def _status(status: int) -> None:
        if status:
            raise OSError(errno.EIO, f"nvdimm command status {status:#x}")

    def config_size(self) -> tuple[int, int]:
        buf = bytearray(GET_CONFIG_SIZE.size)
        self._ioctl(ND_IOCTL_GET_CONFIG_SIZE, buf)
        status, size, max_xfer = GET_CONFIG_SIZE.unpack(buf)
        self._status(status)
        return size, max_xfer

    def get_config_data(self, offset: int, length: int) -> bytes:
        buf = pack_get_config_data(offset, length)
        self._ioctl(ND_IOCTL_GET_CONFIG_DATA, buf)
        self._status(GET_CONFIG_DATA_HDR.unpack_from(buf)[2])
        return bytes(buf[GET_CONFIG_DATA_HDR.size:GET_CONFIG_DATA_HDR.size + length])

    def set_config_data(self, offset: int, data: bytes) -> None:
        buf = pack_set_config_data(offset, data)
        self._ioctl(ND_IOCTL_SET_CONFIG_DATA, buf)
        self._status(struct.unpack_from("=I", buf, SET_CONFIG_HDR.size + len(data))[0])

    def close(self) -> None:
        pass
