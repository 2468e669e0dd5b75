"""Every bad input of issue 14 #1, and a sweep of wrong arguments to every
``cxlemu`` subcommand and bundled tool: a clean one-line error and a non-zero
exit, never a traceback, and nothing changed."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cxlemu.cli.main import main

CXLEMU = [sys.executable, "-m", "cxlemu"]


def run(*args):
    return subprocess.run(CXLEMU + list(args), capture_output=True, text=True, env=os.environ.copy())


def call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:          # argparse usage errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def clean_failure(p, status: int | None = None) -> str:
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
    assert p.returncode != 0
    if status is not None:
        assert p.returncode == status, (p.returncode, p.stderr)
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("cxlemu: "), p.stderr
    return lines[0]


def machines() -> list[str]:
    return run("ls").stdout.split()


# ---- the list ------------------------------------------------------------------------

def test_topology_not_utf8_or_garbage(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[machine]\nname = "caf\xe9"\n'.encode("latin-1"))
    msg = clean_failure(run("create", "x", "-t", str(bad)), 2)
    assert "not a UTF-8 text file" in msg and "0xe9" in msg
    garbage = tmp_path / "garbage.toml"
    garbage.write_bytes(bytes(range(256)) * 3)
    clean_failure(run("create", "x", "-t", str(garbage)), 2)
    text = tmp_path / "text-garbage.toml"
    text.write_text("\x00\x01 = = [[[ \n")
    assert "topology error: <toml>" in clean_failure(run("create", "x", "-t", str(text)), 2)
    assert machines() == []


def test_window_that_does_not_fit_cfmws(tmp_path):
    t = tmp_path / "big.toml"
    t.write_text(run("topology", "biscuitos-b").stdout.replace('size = "4G"', 'size = "99999999999T"'))
    msg = clean_failure(run("create", "x", "-t", str(t)), 2)
    assert "window[0].size" in msg and "64-bit Window Size" in msg
    assert machines() == []


def test_absurd_lsa_is_bounded_by_the_identify_field(tmp_path):
    t = tmp_path / "lsa.toml"
    t.write_text(run("topology", "biscuitos-b").stdout.replace('lsa = "128K"', 'lsa = "64G"'))
    msg = clean_failure(run("create", "x", "-t", str(t)), 2)
    assert "device[0].lsa" in msg and "32-bit LSA Size of Identify Memory Device" in msg
    assert machines() == []


@pytest.fixture
def box():
    assert call(["create", "box", "-t", "biscuitos-b"])[0] == 0
    return "box"


def test_sysfs_read_of_missing_path_reports_errno(box):
    msg = clean_failure(run("sysfs", box, "read", "/sys/bus/cxl/devices/nope"), 1)
    assert msg == "cxlemu: sysfs read: /sys/bus/cxl/devices/nope: No such file or directory"
    msg = clean_failure(run("sysfs", box, "read", "/sys/bus/cxl/devices"), 1)
    assert msg.endswith("Is a directory")
    msg = clean_failure(run("sysfs", box, "ls", "/sys/nope"), 1)
    assert msg.endswith("No such file or directory")


def test_sysfs_render_onto_regular_file(box, tmp_path):
    f = tmp_path / "afile"
    f.write_text("keep me\n")
    msg = clean_failure(run("sysfs", box, "render", str(f)), 1)
    assert "exists and is not a directory" in msg
    assert f.read_text() == "keep me\n"


def test_create_region_size_zero_rejection_matches_linux(box):
    """``cxl create-region ... -s 0`` means "the default size" (ndctl: a zero
    size is not a size), so it is refused only when that size does not fit.
    libcxl's order is: set_size on the region, then per memdev the first free
    endpoint decoder gets dpa_size 0, mode, dpa_size (cxl/region.c
    create_region); the failure path only deletes the region.  The endpoint
    decoder's mode therefore stays set, as on Linux (hdm.c cxl_dpa_set_mode
    is not undone by region deletion); its DPA is not allocated."""
    assert call(["exec", box, "--", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0",
                 "-s", "256M", "-t", "pmem"])[0] == 0
    rc, out, err = call(["exec", box, "--", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0",
                         "-s", "0", "-t", "pmem"])
    assert rc == 1 and "decoder3.1: set_dpa_size failed: No space left on device" in err
    rd = lambda p: call(["sysfs", box, "read", p])[1]   # noqa: E731
    assert rd("/sys/bus/cxl/devices/decoder3.1/mode") == "pmem\n"
    assert int(rd("/sys/bus/cxl/devices/decoder3.1/dpa_size"), 16) == 0
    assert call(["sysfs", box, "read", "/sys/bus/cxl/devices/region1/size"])[0] == 1   # deleted
    # the leftover mode does not block the next, fitting, request
    rc, out, err = call(["exec", box, "--", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0",
                         "-s", "256M", "-t", "pmem"])
    assert rc == 0, err


# ---- a sweep of wrong arguments ----------------------------------------------------------------

BAD = [
    'topology',
    'topology nope',
    'create',
    'create x',
    'create x -t',
    "create 'a b' -t biscuitos-b",
    'create box -t biscuitos-b',
    'create ../x -t biscuitos-b',
    'create a/b/c -t biscuitos-b',
    "create '' -t biscuitos-b",
    'rm',
    'rm nope',
    'show nope',
    'show',
    'show box extra',
    'exec',
    'exec box',
    'exec box --',
    'exec box -- nope',
    'exec nope -- cxl list',
    'exec box -- cxl',
    'exec box -- cxl list --zz',
    'exec box -- cxl list -m',
    'exec box -- cxl create-region',
    'exec box -- cxl create-region -d decoder0.0 -m mem0 -s -1',
    'exec box -- cxl create-region -d decoder0.0 -m mem0 -s 99999999999999999999999',
    'exec box -- cxl create-region -d decoder0.0 -m mem0 -w -1',
    'exec box -- cxl create-region -d decoder0.0 -m mem0 -g -1',
    'exec box -- cxl create-region -d decoder0.0 -m mem0 -g 99999999999999999999',
    'exec box -- cxl create-region -d decoder0.0 -m mem0 -U zz',
    'exec box -- cxl create-region -d decoder0.0 -m mem0 -t zz',
    'exec box -- cxl create-region -d decoder0.0 -m mem9 mem10',
    'exec box -- cxl destroy-region zz',
    'exec box -- cxl enable-region -d zz region0',
    'exec box -- cxl disable-memdev zz',
    'exec box -- cxl enable-memdev mem99',
    'exec box -- cxl read-labels mem0 -s -1',
    'exec box -- cxl read-labels mem0 -s 99999999999 -O 0',
    'exec box -- cxl read-labels mem0 -O 99999999999',
    'exec box -- cxl read-labels mem0 -o /nonexist/x',
    'exec box -- cxl write-labels mem0 -i /etc',
    'exec box -- cxl write-labels mem0 -i /dev/null -O -5',
    'exec box -- cxl zero-labels mem0 -s 0 -O 131072',
    'exec box -- cxl set-partition mem0 -t zz',
    'exec box -- cxl set-partition mem0 -s 99999999999999999999999',
    'exec box -- cxl reserve-dpa mem0 -s 99999999999999999999999',
    'exec box -- cxl reserve-dpa mem0 -t zz',
    'exec box -- cxl free-dpa mem0 -d zz',
    'exec box -- cxl update-firmware mem0 -F /nonexist',
    'exec box -- cxl sanitize-memdev mem0 -e zz',
    'exec box -- cxl wait-sanitize mem0 -t zz',
    'exec box -- cxl set-alert-config mem0 --life-used-threshold=999',
    'exec box -- cxl set-alert-config mem0 --life-used-threshold=zz',
    'exec box -- cxl inject-media-poison mem0 -a zz',
    'exec box -- cxl inject-media-poison mem0 -a 0x99999999999999999',
    'exec box -- cxl clear-media-poison mem0 -a -1',
    'exec box -- cxl list -L -m mem0',
    'exec box -- cxl monitor',
    'exec box -- cxl disable-port zz',
    'exec box -- cxl enable-port -e port99',
    'exec box -- cxl disable-bus zz',
    'exec box -- ndctl',
    'exec box -- ndctl list -r zz -N',
    'exec box -- ndctl create-namespace -s zz',
    'exec box -- ndctl create-namespace -s 99999999999999999999999',
    'exec box -- ndctl create-namespace -m zz',
    'exec box -- ndctl create-namespace -a zz',
    'exec box -- ndctl create-namespace -a 3',
    'exec box -- ndctl create-namespace -r region99',
    'exec box -- ndctl create-namespace -l 9999',
    'exec box -- ndctl create-namespace -u zz',
    'exec box -- ndctl destroy-namespace zz',
    'exec box -- ndctl destroy-namespace',
    'exec box -- ndctl enable-region zz',
    'exec box -- ndctl read-labels nmem0 -s -1',
    'exec box -- ndctl read-labels nmem99',
    'exec box -- ndctl write-labels nmem0 -i /nonexist',
    'exec box -- ndctl init-labels nmem0 -V 9',
    'exec box -- ndctl check-labels zz',
    'exec box -- ndctl disable-dimm',
    'exec box -- ndctl enable-dimm zz',
    'exec box -- ndctl sanitize-dimm nmem0',
    'exec box -- ndctl start-scrub',
    'exec box -- ndctl inject-error zz',
    'exec box -- ndctl reconfigure-namespace zz',
    'exec box -- daxctl',
    'exec box -- daxctl list -r zz',
    'exec box -- daxctl create-device -s 99999999999999999999999',
    'exec box -- daxctl create-device -a zz',
    'exec box -- daxctl reconfigure-device -m zz dax0.0',
    'exec box -- daxctl reconfigure-device -m system-ram zz',
    'exec box -- daxctl online-memory zz',
    'exec box -- daxctl offline-memory dax99.0',
    'exec box -- daxctl destroy-device zz',
    'exec box -- daxctl disable-device',
    'exec box -- daxctl migrate-device-model',
    'exec box -- numactl',
    'exec box -- numactl -H -H',
    'exec box -- numactl --zz',
    'exec box -- lspci -s',
    'exec box -- lspci -k',
    'exec box -- lspci -vvvvvvv',
    'exec box -- dd',
    'exec box -- dd if=/dev/mem',
    'exec box -- dd if=/dev/mem of=/dev/null bs=0 count=1',
    'exec box -- dd if=/dev/mem of=/dev/null bs=-1 count=1',
    'exec box -- dd if=/dev/mem of=/dev/null bs=1G count=1 skip=999999999999999999999',
    'exec box -- dd if=/dev/mem of=/dev/null bs=1 count=1 skip=1',
    'exec box -- dd if=/dev/dax9.9 of=/dev/null',
    'exec box -- dd if=/dev/zero of=/dev/mem bs=4096 count=1 seek=1',
    'exec box -- dd if=/dev/zero of=/dev/dax0.0 bs=4096 count=1',
    'exec box -- dd if=/etc of=/dev/null',
    'exec box -- dd if=/dev/null of=/nonexist/x',
    'exec box -- dd if=/dev/zero of=/dev/mem bs=4096 count=1 seek=99999999999999',
    'exec box -- dd if=/dev/mem of=/dev/null conv=zz',
    'exec box -- dd zz',
    'exec box -- cat',
    'exec box -- cat /sys/bus/cxl/devices/mem0/security/sanitize',
    'exec box -- cat /dev/cxl/mem0',
    'exec box -- cat /proc/nope',
    'exec box -- ls -l /sys/bus/cxl/devices/mem0/nope',
    'exec box -- readlink',
    'exec box -- readlink -f /sys/nope',
    'exec box -- tree /sys/bus/cxl/devices/mem0/serial',
    'exec box -- tree /nope',
    'shell',
    'shell nope',
    'iomem',
    'iomem nope',
    'dmesg nope',
    'acpi box NOPE',
    'acpi box srat',
    'acpi box CEDT --raw /nonexist/x',
    'acpi box CEDT --raw /',
    'acpi nope CEDT',
    'sysfs box zz',
    'sysfs box read relative/path',
    'sysfs box read /sys/bus/cxl/devices/mem0/security/sanitize',
    'sysfs box read /dev/cxl/mem0',
    'sysfs box write /sys/bus/cxl/devices/mem0/serial 1',
    'sysfs box write /sys/nope 1',
    'sysfs box write /sys/bus/cxl/devices/decoder0.0/create_pmem_region zz',
    'sysfs box write /sys/bus/cxl/devices 1',
    'sysfs box ls /sys/bus/cxl/devices/mem0/serial',
    'sysfs box render /proc/zz',
    'sysfs box render /',
    'reboot nope',
    'reboot',
    'power-fail nope',
    'translate box',
    'translate box hpa',
    'translate box hpa -1',
    'translate box hpa 0x99999999999999999999',
    'translate box dpa',
    'translate box dpa mem0 -5',
    'translate box dpa mem0 0x99999999999999999',
    'translate box dpa mem0 0x1 extra',
    'translate box zz 1',
    'labels box mem99',
    'labels box --json zz',
    'labels nope',
    'cpu-cache nope',
    'blocks nope',
    'nodes nope',
    'mem',
    'mem box',
    'mem box zz',
    'mem box alloc',
    'mem box alloc --kernel',
    'mem box alloc --kernel 1M --user 1M',
    'mem box alloc --kernel 0',
    'mem box alloc --kernel 99999999999999999999999T',
    'mem box alloc --user 1M --node -5',
    'mem box alloc --user 1M --node zz',
    'mem box free zz',
    'mem box free -1',
    'mem box free 99999999999999999999',
    'demo --zz',
    'draw',
    'draw nope',
    'draw box -o /nonexist/x.svg',
    'draw box -o /nonexist/x.dot',
    'draw box -o x.jpeg',
    'draw --sysfs-root /nonexist',
    'draw box --sysfs-root /proc',
    'shell box -c',
    'shell nope -c true',
    'blocks box --json extra',
    'nodes box --zz',
    'mem box stat --json extra',
    'show box --json --json',
    'exec box -- ls -d /sys/nope /tmp/nope',
    'exec box -- cat /dev/cxl/nope',
    'exec box -- tree -L',
    'exec box -- readlink -f',
]


def test_no_traceback_for_any_wrong_argument(box, tmp_path):
    """Each of these is wrong in some way; none may raise out of main() or
    print a Python traceback (argparse's SystemExit is the usage error)."""
    bad = []
    for line in BAD:
        rc, out, err = call(shlex.split(line))
        if "Traceback" in err or "internal error" in err:
            bad.append((line, err))
    assert not bad, bad
