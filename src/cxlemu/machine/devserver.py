"""The device socket: /dev/cxl/memN, /dev/nmemN, /dev/daxX.Y and /dev/mem of
a machine, for programs run under the LD_PRELOAD interposer
(src/cxlemu/preload/interpose.c; protocol: machine/devproto.py and
docs/devdax.md).

``serve(machine, lock, sock_path)`` listens on a Unix stream socket (mode
0600; a peer of another user is turned away) and answers each connection in
its own thread.  A connection is one open file of the program: OPEN binds it
to the device node's major:minor; the requests that follow are that file's
ioctls, mmaps and reads/writes.  Every request runs under ``lock`` (the
machine's lock) and goes through the machine's sysfs backend --
``machine.backend().open_memdev()`` for the mailbox, the nvdimm ioctl
entry points of the kernel model for labels -- so a change is handled (and,
in the machine process, persisted) exactly like one made by our own tools.

What a device-DAX mmap gets is the layout of the mapping on the media files
(``DaxDevice.layout``); the program maps the files itself and holds no lock
while it uses them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import struct
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from cxlemu.machine import devproto as P

MEM_MAJOR, MEM_MINOR = 1, 1          # /dev/mem


class _Error(Exception):
    def __init__(self, err: int):
        super().__init__(os.strerror(err))
        self.errno = err


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except (ConnectionError, OSError):
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class _Connection:
    """One open file of a client program."""

    def __init__(self, server: "DevServer", sock: socket.socket):
        self.server = server
        self.sock = sock
        self.kind = 0
        self.devt: tuple[int, int] | None = None
        self.dax: tuple[str, str] | None = None       # (name, sysfs path)

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.server.closing:
                raw = _recv_exact(self.sock, P.HEADER.size)
                if raw is None:
                    return
                try:
                    h = P.Header.unpack(raw)
                except P.ProtocolError:
                    return                          # not our protocol: hang up
                payload = _recv_exact(self.sock, h.length) if h.length else b""
                if payload is None:
                    return
                status, reply = self.dispatch(h.op, payload)
                try:
                    self.sock.sendall(P.message(h.op, reply if status == 0 else b"", status))
                except OSError:
                    return
        finally:
            self.server.forget(self)
            try:
                self.sock.close()
            except OSError:
                pass

    def dispatch(self, op: int, payload: bytes) -> tuple[int, bytes]:
        from cxlemu.kernel.base.device import KernelError
        handler = {P.OPEN: self.op_open, P.CXL_QUERY: self.op_cxl_query, P.CXL_SEND: self.op_cxl_send,
                   P.ND_CMD: self.op_nd, P.DAX_MAP: self.op_dax_map, P.MEM_READ: self.op_mem_read,
                   P.MEM_WRITE: self.op_mem_write}.get(op)
        if handler is None:
            return -errno.EINVAL, b""
        if op != P.OPEN and self.devt is None:
            return -errno.EBADF, b""
        try:
            with self.server.lock:
                return 0, handler(payload)
        except _Error as e:
            return -e.errno, b""
        except KernelError as e:
            return -(e.errno or errno.EIO), b""
        except P.ProtocolError:
            return -errno.EINVAL, b""
        except OSError as e:
            return -(e.errno or errno.EIO), b""
        except Exception:                           # noqa: BLE001 - a client never kills the server
            return -errno.EIO, b""

    # ---- helpers -----------------------------------------------------------------------------
    @property
    def machine(self):
        return self.server.machine

    def device(self):
        """The kernel device behind this connection's major:minor (ENXIO
        when it went away, as a stale device node would)."""
        for d in self.machine.kernel.char_devices():
            if d.devt == self.devt:
                return d
        raise _Error(errno.ENXIO)

    def need_kind(self, kind: int) -> None:
        if self.kind != kind:
            raise _Error(errno.ENOTTY)

    # ---- requests -----------------------------------------------------------------------------
    def op_open(self, payload: bytes) -> bytes:
        from cxlemu.data.cpucache import cache_dir
        from cxlemu.kernel.cxl.memdev import CXL_MEM_MAJOR
        from cxlemu.kernel.dax.bus import DAX_MAJOR
        from cxlemu.kernel.nvdimm.bus import NVDIMM_BUS_MAJOR, NVDIMM_MAJOR
        P.need(payload, P.OPEN_REQ.size, "open")
        major, minor, mode, _flags = P.OPEN_REQ.unpack_from(payload)
        if self.devt is not None:
            raise _Error(errno.EBUSY)
        if mode != stat.S_IFCHR:
            raise _Error(errno.ENXIO)              # the model has no block devices
        size = align = 0
        if (major, minor) == (MEM_MAJOR, MEM_MINOR):
            kind = P.KIND_MEM
        else:
            kind = {CXL_MEM_MAJOR: P.KIND_MEMDEV, DAX_MAJOR: P.KIND_DAX, NVDIMM_BUS_MAJOR: P.KIND_NDBUS,
                    NVDIMM_MAJOR: P.KIND_NMEM}.get(major, 0)
            if not kind:
                raise _Error(errno.ENXIO)
            self.devt = (major, minor)
            dev = self.device()
            if kind == P.KIND_DAX:
                from cxlemu.data.dax_mapping import DaxDevice
                d = DaxDevice.from_sysfs(self.machine.backend(), dev.name, dev.sysfs_path, f"/dev/{dev.devnode}")
                size, align = d.size, d.align
                self.dax = (dev.name, dev.sysfs_path)
        self.devt = (major, minor)
        self.kind = kind
        cdir = str(cache_dir(self.machine.path)).encode()
        return P.OPEN_REPLY.pack(kind, 0, size, align) + cdir + b"\0"

    def op_cxl_query(self, payload: bytes) -> bytes:
        self.need_kind(P.KIND_MEMDEV)
        ch = self.machine.backend().open_memdev(f"/dev/{self.device().devnode}")
        entries = ch.query()
        body = b"".join(struct.pack("=IIii", e.id, e.flags, e.size_in, e.size_out) for e in entries)
        return struct.pack("=II", len(entries), 0) + body

    def op_cxl_send(self, payload: bytes) -> bytes:
        from cxlemu.hw.mailbox.opcodes import CxlMemCommandId
        from cxlemu.hw.mailbox.uapi import SendCommand
        from cxlemu.kernel.cxl.mbox import check_send_reserved
        self.need_kind(P.KIND_MEMDEV)
        P.need(payload, SendCommand.SIZE, "cxl_send_command")
        cmd = SendCommand.unpack(payload[:SendCommand.SIZE])
        data = payload[SendCommand.SIZE:]
        if len(data) != cmd.in_size:
            raise _Error(errno.EFAULT)
        # cxl_validate_cmd_from_user(): the id, then flags, then reserved fields
        if cmd.id == 0 or cmd.id >= CxlMemCommandId.MAX:
            raise _Error(errno.ENOTTY)
        if cmd.flags:
            raise _Error(errno.EINVAL)
        if cmd.id != CxlMemCommandId.RAW:
            check_send_reserved(cmd.rsvd, cmd.in_rsvd, cmd.out_rsvd)
        ch = self.machine.backend().open_memdev(f"/dev/{self.device().devnode}")
        retval, out = ch.send(cmd.id, data, cmd.out_size)
        return struct.pack("=II", retval, len(out)) + out

    def op_nd(self, payload: bytes) -> bytes:
        from cxlemu.kernel.nvdimm.bus import (ND_CMD_GET_CONFIG_DATA, ND_CMD_GET_CONFIG_SIZE,
                                              ND_CMD_SET_CONFIG_DATA)
        self.need_kind(P.KIND_NMEM)
        P.need(payload, P.ND_REQ.size, "nd command")
        cmd, offset, length, _z = P.ND_REQ.unpack_from(payload)
        nv = self.device()
        if cmd >= 64 or not nv.cmd_mask & (1 << cmd):
            raise _Error(errno.ENOTTY)             # __nd_ioctl: not in the dimm's command mask
        ch = self.nmem_channel(nv)
        if cmd == ND_CMD_GET_CONFIG_SIZE:
            size, max_xfer = ch.config_size()
            return struct.pack("=III", 0, size, max_xfer)
        if cmd == ND_CMD_GET_CONFIG_DATA:
            return struct.pack("=I", 0) + ch.get_config_data(offset, length)
        if cmd == ND_CMD_SET_CONFIG_DATA:
            data = payload[P.ND_REQ.size:]
            if len(data) != length:
                raise _Error(errno.EFAULT)
            ch.set_config_data(offset, data)
            return struct.pack("=I", 0)
        raise _Error(errno.ENOTTY)

    def nmem_channel(self, nv):
        """The backend's nvdimm ioctl channel when it has one, else the
        kernel model's ND_IOCTL entry points (drivers/nvdimm/bus.c)."""
        backend = self.machine.backend()
        opener = getattr(backend, "open_nmem", None)
        if opener is not None:
            return opener(f"/dev/{nv.devnode}")
        return _KernelNmemChannel(nv)

    def op_dax_map(self, payload: bytes) -> bytes:
        from cxlemu.data.dax_mapping import DaxDevice
        self.need_kind(P.KIND_DAX)
        P.need(payload, P.MAP_REQ.size, "dax map")
        offset, length, _prot, _flags = P.MAP_REQ.unpack_from(payload)
        dev = self.device()
        d = DaxDevice.from_sysfs(self.machine.backend(), dev.name, dev.sysfs_path, f"/dev/{dev.devnode}")
        d.check_mmap(length, offset, shared=True)
        lay = d.layout(offset, length)
        return P.pack_layout(lay.granule, list(zip(lay.paths, lay.capacities)), lay.pieces.tolist())

    def op_mem_read(self, payload: bytes) -> bytes:
        self.need_kind(P.KIND_MEM)
        P.need(payload, P.RW_REQ.size, "mem read")
        addr, n, _z = P.RW_REQ.unpack_from(payload)
        if n > P.MAX_PAYLOAD // 2:
            raise _Error(errno.EINVAL)
        return self.machine.backend().hpa_space().read(addr, n)

    def op_mem_write(self, payload: bytes) -> bytes:
        self.need_kind(P.KIND_MEM)
        P.need(payload, P.RW_REQ.size, "mem write")
        addr, n, _z = P.RW_REQ.unpack_from(payload)
        data = payload[P.RW_REQ.size:]
        if len(data) != n:
            raise _Error(errno.EFAULT)
        self.machine.backend().hpa_space().write(addr, data)
        return struct.pack("=I", n)


class _KernelNmemChannel:
    """ND_IOCTL_{GET_CONFIG_SIZE,GET_CONFIG_DATA,SET_CONFIG_DATA} on the
    kernel model's nvdimm (kernel/nvdimm/dimm.py)."""

    def __init__(self, nv: Any):
        self.nv = nv

    def config_size(self) -> tuple[int, int]:
        return self.nv.ioctl_config_size()

    def get_config_data(self, offset: int, length: int) -> bytes:
        return self.nv.ioctl_get_config_data(offset, length)

    def set_config_data(self, offset: int, data: bytes) -> None:
        self.nv.ioctl_set_config_data(offset, data)


SUN_PATH_MAX = 107            # sizeof(sockaddr_un.sun_path) - 1


@contextlib.contextmanager
def _short_path(path: Path):
    """A name for ``path`` that fits a sockaddr_un: the path itself, or
    /proc/self/fd/N/NAME through an O_PATH descriptor of its directory (the
    interposer connects the same way)."""
    if len(os.fsencode(str(path))) <= SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class DevServer(AbstractContextManager):
    """A running device socket; ``close()`` stops it and removes the socket."""

    def __init__(self, machine, lock, sock_path: str | os.PathLike[str]):
        self.machine = machine
        self.lock = lock
        self.path = Path(sock_path)
        self.closing = False
        self._conns: set[_Connection] = set()
        self._mu = threading.Lock()
        if self.path.is_socket() or self.path.exists():
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            with _short_path(self.path) as p:
                self.sock.bind(p)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.sock.listen(64)
        self._thread = threading.Thread(target=self._accept, name=f"devserver {self.path}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            if not self._peer_ok(s):
                s.close()
                continue
            c = _Connection(self, s)
            with self._mu:
                self._conns.add(c)
            threading.Thread(target=c.run, name="devserver conn", daemon=True).start()

    @staticmethod
    def _peer_ok(s: socket.socket) -> bool:
        """SO_PEERCRED: the owner (or root) only."""
        try:
            raw = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return False
        _pid, uid, _gid = struct.unpack("3i", raw)
        return uid in (os.getuid(), 0)

    def forget(self, c: _Connection) -> None:
        with self._mu:
            self._conns.discard(c)

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self._mu:
            conns = list(self._conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __exit__(self, *exc) -> None:
        self.close()


def serve(machine, lock, sock_path: str | os.PathLike[str]) -> DevServer:
    """Serve ``machine``'s device files on ``sock_path`` (call ``close()``
    on the result to stop)."""
    return DevServer(machine, lock, sock_path)
