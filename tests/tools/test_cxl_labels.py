"""cxl read-labels / write-labels / zero-labels (cxl/memdev.c), through the
memdev mailbox GET_LSA / SET_LSA."""

import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nvdimm"))

from pmem_support import backend, fabric, lsa, pmem_region  # noqa: E402
from cxlemu.tools.common.command import CommandContext  # noqa: E402
from cxlemu.tools.common.parse_options import CommandExit  # noqa: E402
from cxlemu.tools.cxl import labels  # noqa: E402

LSA = 128 * 1024


def cxl(b, *argv):
    out, err = io.StringIO(), io.StringIO()
    ctx = CommandContext(stdout=out, stderr=err, backend=b, env={})
    fn = {"read-labels": labels.cmd_read_labels, "write-labels": labels.cmd_write_labels,
          "zero-labels": labels.cmd_zero_labels}[argv[0]]
    try:
        rc = fn(list(argv), ctx)
    except CommandExit as e:          # what make_tool does with it
        err.write(e.stderr)
        rc = e.exit_code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def ram(tmp_path):
    """Two memdevs without pmem: no nvdimm binds, user space owns the LSA."""
    return backend(tmp_path, fabric(2, pmem="", volatile="512M"))


def test_write_read_roundtrip(ram, tmp_path):
    data = bytes(range(256)) * (LSA // 256)
    f = tmp_path / "in.bin"
    f.write_bytes(data)
    rc, out, err = cxl(ram, "write-labels", "mem0", "-i", str(f))
    assert (rc, err) == (0, "cxl memdev: cmd_write_labels: wrote 1 mem\n")
    assert bytes(lsa(ram, "mem0")) == data
    o = tmp_path / "out.bin"
    rc, out, err = cxl(ram, "read-labels", "mem0", "-o", str(o))
    assert (rc, err) == (0, "cxl memdev: cmd_read_labels: read 1 mem\n")
    assert o.read_bytes() == data


def test_read_offset_size(ram, tmp_path):
    lsa(ram, "mem1")[100:110] = b"0123456789"
    o = tmp_path / "o"
    rc, _, err = cxl(ram, "read-labels", "mem1", "-O", "100", "-s", "10", "-o", str(o))
    assert rc == 0, err
    assert o.read_bytes() == b"0123456789"


def test_zero_labels_all(ram):
    for m in ("mem0", "mem1"):
        lsa(ram, m)[:] = b"\xff" * LSA
    rc, _, err = cxl(ram, "zero-labels", "all")
    assert (rc, err) == (0, "cxl memdev: cmd_zero_labels: zeroed 2 mems\n")
    assert all(bytes(lsa(ram, m)) == bytes(LSA) for m in ("mem0", "mem1"))


def test_write_file_larger_than_area_is_refused(ram, tmp_path):
    f = tmp_path / "big"
    f.write_bytes(b"\x55" * (LSA + 1))
    before = bytes(lsa(ram))
    rc, out, err = cxl(ram, "write-labels", "mem0", "-i", str(f))
    assert rc != 0
    assert f"File size ({LSA + 1}) greater than label area size ({LSA}), aborting" in err
    assert bytes(lsa(ram)) == before


def test_bad_memdev_name(ram):
    rc, _, err = cxl(ram, "read-labels", "foo")
    assert rc == 129
    assert err.startswith("cxl memdev: memdev_action: 'foo' is not a valid memdev name\n")
    assert "usage: cxl read-labels <mem0> [<mem1>..<memN>] [-o <filename>]" in err


def test_write_refused_while_nvdimm_active(tmp_path):
    b = backend(tmp_path)
    pmem_region(b)
    f = tmp_path / "z"
    f.write_bytes(bytes(4096))
    before = bytes(lsa(b))
    rc, _, err = cxl(b, "write-labels", "mem0", "-i", str(f))
    assert rc != 0 and "mem0: has active nvdimm bridge, abort label write" in err
    rc, _, err = cxl(b, "zero-labels", "mem0")
    assert rc != 0 and "mem0: has active nvdimm bridge, abort label write" in err
    assert bytes(lsa(b)) == before
    # reading is always allowed
    o = tmp_path / "o"
    assert cxl(b, "read-labels", "mem0", "-o", str(o))[0] == 0
    assert o.read_bytes() == before


def test_serial_and_bus_filters(ram, tmp_path):
    lsa(ram, "mem1")[:4] = b"abcd"
    o = tmp_path / "o"
    # fabric(2): serials 1 and 2; mem1 is the device with serial 2
    serial = ram.read("/sys/bus/cxl/devices/mem1/serial").strip()
    rc, _, err = cxl(ram, "read-labels", "-S", serial, "-s", "4", "-o", str(o))
    assert rc == 0, err
    assert o.read_bytes() == b"abcd"
    rc, _, err = cxl(ram, "read-labels", "mem1", "-b", "root9", "-o", str(o))
    assert rc == 0 and "read 0 mem" in err


def test_verbose_shows_no_extra_stdout(ram, tmp_path):
    o = tmp_path / "o"
    rc, out, err = cxl(ram, "read-labels", "mem0", "-v", "-s", "64", "-o", str(o))
    assert rc == 0 and out == ""
    assert o.stat().st_size == 64
