"""ndctl's label commands over sysfs and the /dev/nmemN ioctls alone
(sysfs/nd_ioctl.py, Backend.open_nmem): the emulated kernel, a rendered
tree (no ioctl possible: the libndctl message, exactly as the real binary
prints it) and the live mount."""

from __future__ import annotations

import io
import json
import os
import struct

import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nvdimm"))

from cxltest_support import mounted, render_machine, require_real_tools, run_real
from cxlemu.sysfs import nd_ioctl
from cxlemu.sysfs.backend import DirectoryBackend
from cxlemu.tools.runner import run_tool

from pmem_support import backend, pmem_region  # noqa: E402


def ndctl(b, *argv):
    out, err = io.StringIO(), io.StringIO()
    rc = run_tool("ndctl", list(argv), b, stdout=out, stderr=err, isatty=False)
    return rc, out.getvalue(), err.getvalue()


def test_ioctl_numbers_are_ndctl_h():
    # _IOWR('N', nr, size): include/uapi/linux/ndctl.h
    assert nd_ioctl.ND_IOCTL_GET_CONFIG_SIZE == 0xC00C4E04
    assert nd_ioctl.ND_IOCTL_GET_CONFIG_DATA == 0xC00C4E05
    assert nd_ioctl.ND_IOCTL_SET_CONFIG_DATA == 0xC0084E06


@given(st.integers(0, 2**32 - 1), st.binary(max_size=300))
def test_envelopes(offset, data):
    env = nd_ioctl.pack_set_config_data(offset, data)
    assert len(env) == 8 + len(data) + 4
    assert struct.unpack_from("=II", env) == (offset, len(data)) and bytes(env[8:8 + len(data)]) == data
    env = nd_ioctl.pack_get_config_data(offset, len(data))
    assert struct.unpack_from("=III", env) == (offset, len(data), 0) and len(env) == 12 + len(data)


class _Recorder:
    """A channel that records the transfers a tool asks for."""

    def __init__(self, data: bytes, max_xfer: int):
        self.data, self.max_xfer, self.calls = bytearray(data), max_xfer, []

    def config_size(self):
        return len(self.data), self.max_xfer

    def get_config_data(self, off, n):
        assert n <= self.max_xfer
        self.calls.append(("get", off, n))
        return bytes(self.data[off:off + n])

    def set_config_data(self, off, data):
        assert len(data) <= self.max_xfer
        self.calls.append(("set", off, len(data)))
        self.data[off:off + len(data)] = data


@given(st.integers(1, 700), st.integers(0, 2000), st.integers(0, 2000))
def test_transfers_are_split_at_max_xfer(max_xfer, off, n):
    rec = _Recorder(bytes(range(256)) * 16, max_xfer)
    off, n = min(off, 4096), min(n, 4096 - min(off, 4096))
    assert nd_ioctl.read_in_chunks(rec, off, n) == bytes(rec.data[off:off + n])
    assert all(c[2] <= max_xfer for c in rec.calls)
    nd_ioctl.write_in_chunks(rec, off, b"\xaa" * n)
    assert bytes(rec.data[off:off + n]) == b"\xaa" * n


def test_emulated_channel_reads_the_whole_area_in_pieces(tmp_path):
    b = backend(tmp_path)
    chan = b.open_nmem("/dev/nmem0")
    size, max_xfer = chan.config_size()
    assert size == 128 << 10 and 0 < max_xfer < size       # 128K LSA, a 1M mailbox minus the header
    rc, out, err = ndctl(b, "read-labels", "nmem0", "-o", str(tmp_path / "lsa.bin"))
    assert (rc, err) == (0, "read 1 nmem\n")
    assert (tmp_path / "lsa.bin").read_bytes() == nd_ioctl.read_in_chunks(chan, 0, size)
    with pytest.raises(OSError):
        chan.get_config_data(size - 8, 16)                    # past the end: EINVAL
    with pytest.raises(nd_ioctl.NodeError) as e:
        b.open_nmem("/dev/cxl/mem0")
    assert e.value.validate


def test_label_commands_after_init_over_the_channel(tmp_path):
    b = backend(tmp_path)
    assert ndctl(b, "init-labels", "-f", "nmem0")[0] == 0
    rc, out, err = ndctl(b, "read-labels", "-j", "nmem0")
    assert rc == 0 and json.loads(out)[0]["index"][0]["signature"] == "NAMESPACE_INDEX"
    assert ndctl(b, "check-labels", "nmem0") == (0, "", "successfully verified 1 nmem label\n")


def test_rendered_tree_says_what_libndctl_says(tmp_path):
    """No ioctl on a rendered tree: the same message and exit code as Debian's ndctl."""
    require_real_tools("ndctl")
    b = backend(tmp_path / "m")
    pmem_region(b)
    tree = render_machine(b, tmp_path / "render")
    ours = ndctl(DirectoryBackend(tree), "read-labels", "nmem0", "-j")
    real = run_real(tree, "ndctl", "read-labels", "nmem0", "-j", mknod=False)
    assert ours == (real.returncode, real.stdout, real.stderr) == (
        1, "", "libndctl: ndctl_cmd_submit: failed to validate /dev/nmem0 as a control node\nread 0 nmem\n")


def test_over_the_mount_without_interposer(tmp_path):
    """The mount serves /dev/nmem0 as a character device (major 63) the host
    has no driver for: opening it fails, as for the real ndctl."""
    with mounted("b", "biscuitos-b", tmp_path) as (m, lock, mnt):
        rc, out, err = ndctl(DirectoryBackend(mnt), "read-labels", "nmem0")
        assert rc == 1 and err == ("libndctl: ndctl_cmd_submit: failed to open /dev/nmem0: "
                                   f"{os.strerror(6)}\nread 0 nmem\n")
