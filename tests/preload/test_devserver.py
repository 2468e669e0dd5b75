"""The device socket (machine/devserver.py) driven by a Python client: the
protocol codecs, every request type, errors as the kernel returns them,
and bad input that never takes the server down."""

import errno
import os
import socket
import stat
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from preload_support import MiB, P, Client, served
from cxlemu.data.dax_mapping import DaxDevice
from cxlemu.hw.mailbox.opcodes import CxlMemCommandId
from cxlemu.hw.mailbox.uapi import SendCommand
from cxlemu.kernel.cxl.memdev import CXL_MEM_MAJOR
from cxlemu.kernel.dax.bus import DAX_MAJOR
from cxlemu.kernel.nvdimm.bus import NVDIMM_BUS_MAJOR, NVDIMM_MAJOR


def opened(srv, major, minor, mode=stat.S_IFCHR):
    c = Client(srv.path)
    status, reply = c.call(P.OPEN, P.OPEN_REQ.pack(major, minor, mode, os.O_RDWR))
    return c, status, reply


# ---- codecs -------------------------------------------------------------------------------------

@given(st.integers(0, 1 << 20), st.lists(st.tuples(st.text(min_size=1, max_size=40).filter(lambda s: "\0" not in s),
                                                   st.integers(0, 1 << 50)), min_size=1, max_size=5),
       st.data())
def test_layout_round_trip(granule, files, data):
    pieces = data.draw(st.lists(st.tuples(st.integers(0, 1 << 40), st.integers(1, 1 << 30),
                                          st.integers(0, len(files) - 1), st.integers(0, 1 << 40)), max_size=20))
    g, f, p = P.unpack_layout(P.pack_layout(granule, files, pieces))
    assert (g, f, p) == (granule, files, pieces)


@given(st.binary(max_size=300))
def test_decoders_never_a_traceback(raw):
    for fn in (P.unpack_layout, P.Header.unpack):
        try:
            fn(raw)
        except P.ProtocolError:
            pass


def test_header_rejects_bad_magic_version_and_size():
    good = P.Header(P.OPEN, 16).pack()
    assert P.Header.unpack(good) == P.Header(P.OPEN, 16)
    for bad in (b"XXXX" + good[4:], good[:6] + b"\x09\x00" + good[8:],
                P.HEADER.pack(P.MAGIC, 1, 1, P.MAX_PAYLOAD + 1, 0), good[:10]):
        with pytest.raises(P.ProtocolError):
            P.Header.unpack(bad)


# ---- the server ---------------------------------------------------------------------------------

def test_socket_is_private_and_removed_on_close():
    with served(namespace=None) as (m, srv, _lock):
        mode = os.stat(srv.path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        path = srv.path
    assert not path.exists()


def test_open_errors():
    with served(namespace=None) as (m, srv, _lock):
        assert opened(srv, 250, 0)[1] == -errno.ENXIO                     # not an emulated major
        assert opened(srv, CXL_MEM_MAJOR, 7)[1] == -errno.ENXIO           # no such minor
        assert opened(srv, CXL_MEM_MAJOR, 0, stat.S_IFBLK)[1] == -errno.ENXIO
        assert opened(srv, DAX_MAJOR, 0)[1] == -errno.ENXIO               # no dax device yet
        c, status, reply = opened(srv, CXL_MEM_MAJOR, 0)
        assert status == 0
        kind, _z, _size, _align = P.OPEN_REPLY.unpack_from(reply)
        assert kind == P.KIND_MEMDEV
        assert reply[P.OPEN_REPLY.size:].rstrip(b"\0").decode() == str(m.path / "cpu_cache")
        assert c.call(P.OPEN, P.OPEN_REQ.pack(CXL_MEM_MAJOR, 0, stat.S_IFCHR, 0))[0] == -errno.EBUSY
        assert c.call(P.DAX_MAP, P.MAP_REQ.pack(0, 2 * MiB, 3, 1))[0] == -errno.ENOTTY
        c2 = Client(srv.path)
        assert c2.call(P.CXL_QUERY)[0] == -errno.EBADF                     # nothing opened yet
        assert c2.call(99)[0] == -errno.EINVAL


def test_cxl_query_and_send_match_the_kernel():
    with served(namespace=None) as (m, srv, _lock):
        c, status, _ = opened(srv, CXL_MEM_MAJOR, 0)
        status, raw = c.call(P.CXL_QUERY)
        n, _z = struct.unpack_from("=II", raw)
        got = [struct.unpack_from("=IIii", raw, 8 + 16 * i) for i in range(n)]
        ch = m.backend().open_memdev("/dev/cxl/mem0")
        assert got == [(e.id, e.flags, e.size_in, e.size_out) for e in ch.query()]
        cmd = SendCommand(id=CxlMemCommandId.IDENTIFY, out_size=256)
        status, raw = c.call(P.CXL_SEND, cmd.pack())
        assert status == 0
        retval, n = struct.unpack_from("=II", raw)
        assert retval == 0 and raw[8:] == ch.send(CxlMemCommandId.IDENTIFY, b"", 256)[1] and n == len(raw) - 8
        # the kernel's validation: reserved fields, flags, unknown ids, in size
        for bad, err in ((SendCommand(id=CxlMemCommandId.IDENTIFY, raw_opcode=1, out_size=256), errno.EINVAL),
                         (SendCommand(id=CxlMemCommandId.IDENTIFY, flags=1, out_size=256), errno.EINVAL),
                         (SendCommand(id=CxlMemCommandId.IDENTIFY, in_rsvd=1, out_size=256), errno.EINVAL),
                         (SendCommand(id=0), errno.ENOTTY), (SendCommand(id=1000), errno.ENOTTY),
                         (SendCommand(id=CxlMemCommandId.RAW, out_size=8), errno.EPERM),
                         (SendCommand(id=CxlMemCommandId.IDENTIFY, out_size=4), errno.ENOMEM)):
            assert c.call(P.CXL_SEND, bad.pack())[0] == -err, bad
        assert c.call(P.CXL_SEND, SendCommand(id=CxlMemCommandId.IDENTIFY, in_size=4).pack())[0] == -errno.EFAULT


def test_nvdimm_label_commands():
    with served(namespace=None) as (m, srv, _lock):
        c, status, _ = opened(srv, NVDIMM_MAJOR, 0)
        assert status == 0
        status, raw = c.call(P.ND_CMD, P.ND_REQ.pack(4, 0, 0, 0))
        st_, size, max_xfer = struct.unpack("=III", raw)
        hw = m.kernel.cxl.memdevs[0].hw
        assert (st_, size) == (0, hw.lsa_size) and max_xfer > 0
        status, raw = c.call(P.ND_CMD, P.ND_REQ.pack(6, 256, 4, 0) + b"abcd")
        assert (status, raw) == (0, b"\0\0\0\0")
        assert bytes(hw.lsa[256:260]) == b"abcd"
        status, raw = c.call(P.ND_CMD, P.ND_REQ.pack(5, 254, 8, 0))
        assert status == 0 and raw[4:] == b"\0\0abcd\0\0"
        assert c.call(P.ND_CMD, P.ND_REQ.pack(5, size - 2, 8, 0))[0] == -errno.EINVAL
        assert c.call(P.ND_CMD, P.ND_REQ.pack(7, 0, 0, 0))[0] == -errno.ENOTTY
        assert c.call(P.ND_CMD, P.ND_REQ.pack(6, 0, 4, 0) + b"ab")[0] == -errno.EFAULT
        b = opened(srv, NVDIMM_BUS_MAJOR, 0)
        assert b[1] == 0 and b[0].call(P.ND_CMD, P.ND_REQ.pack(4, 0, 0, 0))[0] == -errno.ENOTTY


def test_label_writes_refused_while_the_region_holds_them():
    with served() as (m, srv, _lock):
        c, status, _ = opened(srv, NVDIMM_MAJOR, 0)
        assert c.call(P.ND_CMD, P.ND_REQ.pack(6, 0, 4, 0) + b"abcd")[0] == -errno.EBUSY


def test_dax_map_layout_and_rules():
    with served() as (m, srv, _lock):
        c, status, reply = opened(srv, DAX_MAJOR, 0)
        kind, _z, size, align = P.OPEN_REPLY.unpack_from(reply)
        assert (status, kind, size, align) == (0, P.KIND_DAX, 62 * MiB, 2 * MiB)
        status, raw = c.call(P.DAX_MAP, P.MAP_REQ.pack(2 * MiB, 4 * MiB, 3, 1))
        assert status == 0
        g, files, pieces = P.unpack_layout(raw)
        lay = DaxDevice.open(m.backend(), "dax0.0").layout(2 * MiB, 4 * MiB)
        assert files == list(zip(lay.paths, lay.capacities)) and pieces == [tuple(p) for p in lay.pieces.tolist()]
        hw = m.kernel.cxl.memdevs[0].hw
        assert files[0][0] == str(m.media.path(hw)) and len(pieces) == 1
        for off, n, err in ((MiB, 2 * MiB, errno.EINVAL), (0, MiB, errno.EINVAL), (0, 64 * MiB, errno.ENXIO)):
            assert c.call(P.DAX_MAP, P.MAP_REQ.pack(off, n, 3, 1))[0] == -err


def test_dev_mem_reads_and_writes_hpa():
    with served() as (m, srv, _lock):
        c, status, _ = opened(srv, 1, 1)
        assert status == 0
        hpa = DaxDevice.open(m.backend(), "dax0.0").ranges[0].hpa
        assert c.call(P.MEM_WRITE, P.RW_REQ.pack(hpa, 5, 0) + b"hello")[0] == 0
        status, data = c.call(P.MEM_READ, P.RW_REQ.pack(hpa, 5, 0))
        assert (status, data) == (0, b"hello")
        assert m.backend().hpa_space().read(hpa, 5) == b"hello"
        assert c.call(P.MEM_READ, P.RW_REQ.pack(0x10, 4, 0))[0] == -errno.EFAULT     # nothing there


def test_bad_clients_do_not_hurt_the_server():
    with served(namespace=None) as (m, srv, _lock):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(srv.path))
        s.sendall(b"garbage that is not a header at all")
        try:
            assert s.recv(16) == b""                       # hung up
        except ConnectionResetError:
            pass
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(srv.path))
        s.sendall(P.Header(P.OPEN, 100).pack() + b"x")     # disconnects mid-request
        s.close()
        c, status, _ = opened(srv, CXL_MEM_MAJOR, 0)       # still serving
        assert status == 0 and c.call(P.CXL_QUERY)[0] == 0


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    with served(namespace=None, name="fuzz", root=tmp_path_factory.mktemp("fuzz") / "machines") as got:
        yield got


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.integers(1, 7), payload=st.binary(max_size=80))
def test_fuzz_requests_get_an_errno_not_a_crash(fuzz_server, op, payload):
    m, srv, _lock = fuzz_server
    c = Client(srv.path)
    c.call(P.OPEN, P.OPEN_REQ.pack(CXL_MEM_MAJOR, 0, stat.S_IFCHR, 0))
    status, _ = c.call(op, payload)
    assert status <= 0
    assert opened(srv, CXL_MEM_MAJOR, 0)[1] == 0
    c.close()


def test_lock_is_held_while_serving():
    with served(namespace=None) as (m, srv, lock):
        c, status, _ = opened(srv, CXL_MEM_MAJOR, 0)
        import threading
        got = []
        with lock:
            t = threading.Thread(target=lambda: got.append(c.call(P.CXL_QUERY)[0]))
            t.start()
            t.join(0.5)
            assert got == []                                # waits for the machine's lock
        t.join(5)
        assert got == [0]


def test_layout_of_interleaved_mapping():
    with served(2, namespace="128M") as (m, srv, _lock):
        c, status, _ = opened(srv, DAX_MAJOR, 0)
        status, raw = c.call(P.DAX_MAP, P.MAP_REQ.pack(0, 2 * MiB, 3, 1))
        g, files, pieces = P.unpack_layout(raw)
        assert g == 4096 and len(files) == 2 and len(pieces) == 512
        arr = np.array(pieces)
        assert (arr[:, 1] == 4096).all() and set(arr[:, 2]) == {0, 1}


def test_a_reset_machine_answers_for_its_new_kernel():
    """An open file of a device that went away with a reboot gets ENXIO, as
    a stale device node would; the new kernel's devices open normally."""
    with served() as (m, srv, lock):
        c, status, _ = opened(srv, DAX_MAJOR, 0)
        assert status == 0
        with lock:
            m.reboot()
        assert c.call(P.DAX_MAP, P.MAP_REQ.pack(0, 2 * MiB, 3, 1))[0] == -errno.ENXIO
        assert opened(srv, DAX_MAJOR, 0)[1] == -errno.ENXIO          # no region after the reset
        c2, status, _ = opened(srv, CXL_MEM_MAJOR, 0)
        assert status == 0 and c2.call(P.CXL_QUERY)[0] == 0
