"""The live FUSE mount (machine/mount.py, machine/fusefs.py): what a program
sees through it must be what the machine's sysfs backend serves, with
kernfs semantics (modes, sizes, errno on write, symlinks, readdir order,
poll) and live: changes show up at once, whoever makes them."""

from __future__ import annotations

import errno
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from cxltest_support import create_region, mounted, require_fuse
from cxlemu.machine.mount import MountError, check_mountpoint, clean_stale_mounts, is_stale, mount
from cxlemu.machine.store import Store

MEM0 = "/sys/bus/cxl/devices/mem0"


def _errno(fn, *a):
    try:
        fn(*a)
    except OSError as e:
        return e.errno
    return 0


def _write(path: str, data: bytes) -> int:
    fd = os.open(path, os.O_WRONLY)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def test_reads_links_and_listing_are_the_backends(tmp_path):
    with mounted("b", "biscuitos-b", tmp_path) as (m, lock, mnt):
        b = m.backend()
        for p in (f"{MEM0}/serial", f"{MEM0}/pmem/size", "/sys/bus/cxl/devices/decoder0.0/interleave_ways",
                  "/proc/iomem", "/proc/meminfo", "/proc/cmdline"):
            with open(mnt + p, "rb") as f:
                assert f.read() == b.read_bytes(p), p
        assert os.readlink(mnt + MEM0) == b.readlink(MEM0)
        assert os.readlink(mnt + MEM0).startswith("../../../devices/")
        # getdents order is the kernfs hash order the VFS produces, not sorted
        for d in ("/sys/bus/cxl/devices", b.realpath(MEM0), "/sys/devices/system/node"):
            assert os.listdir(mnt + d) == b.listdir(d), d
        assert os.path.realpath(mnt + MEM0) == mnt + b.realpath(MEM0)


def test_modes_sizes_and_device_nodes(tmp_path):
    with mounted("b", "biscuitos-b", tmp_path) as (m, lock, mnt):
        b = m.backend()
        st = os.stat(f"{mnt}{MEM0}/serial")
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444 and st.st_size == 4096
        st = os.stat(f"{mnt}/sys/bus/cxl/devices/decoder0.0/create_pmem_region")
        assert stat.S_IMODE(st.st_mode) == b.vfs.mode("/sys/bus/cxl/devices/decoder0.0/create_pmem_region") & 0o777
        assert os.stat(f"{mnt}/proc/meminfo").st_size == 0              # procfs reports 0
        assert stat.S_ISLNK(os.lstat(mnt + MEM0).st_mode)
        st = os.stat(f"{mnt}/dev/cxl/mem0")
        assert stat.S_ISCHR(st.st_mode)
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == b.chardev("/dev/cxl/mem0") == (60, 0)
        st = os.stat(f"{mnt}/dev/nmem0")
        assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 63
        # /sys/dev/char agrees with the node (libdaxctl/libcxl compare them)
        assert os.path.exists(f"{mnt}/sys/dev/char/60:0")
        # the host's essential nodes, with the host's numbers, usable (the mount is "dev")
        st = os.stat(f"{mnt}/dev/null")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat("/dev/null").st_rdev
        with open(f"{mnt}/dev/zero", "rb") as f:
            assert f.read(8) == bytes(8)
        with open(f"{mnt}/dev/null", "wb") as f:
            f.write(b"gone")
        # the machine's own nodes have no host driver: only the interposer opens them
        assert _errno(os.open, f"{mnt}/dev/cxl/mem0", os.O_RDWR) in (errno.ENXIO, errno.ENODEV)


def _page_cache_or_skip():
    from cxlemu.machine.mount import page_cache_supported
    if not page_cache_supported():
        pytest.skip("the host kernel has no FUSE_NOTIFY_INC_EPOCH (Linux 6.16+): exact layout only")


@pytest.mark.parametrize("page_cache", [False, True], ids=["exact", "page-cache"])
def test_kernfs_refusals(tmp_path, page_cache):
    if page_cache:
        _page_cache_or_skip()
    with mounted("b", "biscuitos-b", tmp_path, page_cache=page_cache) as (m, lock, mnt):
        if not page_cache:
            # kernfs_fop_open: no store -> EACCES for writing, even for root
            assert _errno(os.open, f"{mnt}{MEM0}/serial", os.O_WRONLY) == errno.EACCES
            # ... and no show -> EACCES for reading
            assert _errno(os.open, f"{mnt}/sys/bus/cxl/devices/decoder0.0/delete_region",
                          os.O_RDONLY) == errno.EACCES
        else:
            # there is no OPEN: root's open succeeds and the same EACCES comes
            # from the write(2) / read(2) instead (docs/fidelity.md)
            assert _errno(_write, f"{mnt}{MEM0}/serial", b"1\n") == errno.EACCES
            fd = os.open(f"{mnt}/sys/bus/cxl/devices/decoder0.0/delete_region", os.O_RDONLY)
            try:
                assert _errno(os.read, fd, 64) == errno.EACCES
            finally:
                os.close(fd)
            assert open(f"{mnt}{MEM0}/serial").read() == m.backend().read(f"{MEM0}/serial")
        assert _errno(os.open, f"{mnt}{MEM0}/new_file", os.O_WRONLY | os.O_CREAT, 0o644) == errno.EACCES
        assert _errno(os.mkdir, f"{mnt}/sys/bus/cxl/x") == errno.EPERM
        assert _errno(os.unlink, f"{mnt}{MEM0}/serial") == errno.EPERM
        assert _errno(os.rename, f"{mnt}{MEM0}/serial", f"{mnt}{MEM0}/s2") == errno.EPERM
        assert _errno(os.symlink, "x", f"{mnt}{MEM0}/l") == errno.EPERM
        assert _errno(os.chmod, f"{mnt}{MEM0}/serial", 0o666) == errno.EPERM
        assert _errno(os.stat, f"{mnt}/sys/bus/nope") == errno.ENOENT


def test_nonsense_writes_get_the_kernels_errno_and_change_nothing(tmp_path):
    with mounted("b", "biscuitos-b", tmp_path) as (m, lock, mnt):
        b = m.backend()
        root = "/sys/bus/cxl/devices/decoder0.0"
        cases = [(f"{root}/create_pmem_region", b"region7\n"),      # not the next region name
                 (f"{root}/create_pmem_region", b"\xff\xfe\x00garbage"),
                 ("/sys/bus/cxl/devices/decoder3.0/dpa_size", b"0x123\n"),   # not 256M aligned
                 ("/sys/bus/cxl/devices/decoder3.0/mode", b"nonsense\n"),
                 ("/sys/bus/cxl/drivers/cxl_region/bind", b"region99\n")]
        before = {p: b.read_bytes(p) for p in ("/sys/bus/cxl/devices/decoder3.0/dpa_size",
                                               "/sys/bus/cxl/devices/decoder3.0/mode", f"{root}/create_pmem_region")}
        listing = sorted(b.listdir("/sys/bus/cxl/devices"))
        for path, data in cases:
            try:
                b.write(path, data)
                want = 0
            except OSError as e:
                want = e.errno
            assert want, path
            assert _errno(_write, mnt + path, data) == want, path
        assert {p: b.read_bytes(p) for p in before} == before
        assert sorted(os.listdir(f"{mnt}/sys/bus/cxl/devices")) == listing
        assert m.backend().vfs.kernel is m.kernel


def test_changes_show_up_at_once_both_ways(tmp_path):
    with mounted("b", "biscuitos-b", tmp_path) as (m, lock, mnt):
        d = f"{mnt}/sys/bus/cxl/devices"
        assert not os.path.exists(f"{d}/region0/size")
        # a region made through the mount (libcxl's write sequence)
        name = open(f"{d}/decoder0.0/create_pmem_region").read().strip()
        assert name == "region0"
        _write(f"{d}/decoder0.0/create_pmem_region", b"region0\0")
        assert os.path.isdir(f"{d}/region0")
        with lock:
            assert m.kernel.cxl.regions.all()[0].name == "region0"
        # ... destroyed behind the mount's back, by another client of the machine
        assert os.stat(f"{d}/region0/size").st_size == 4096      # cached by the host kernel now
        with lock:
            m.backend().write("/sys/bus/cxl/devices/decoder0.0/delete_region", "region0\0")
        assert not os.path.exists(f"{d}/region0")
        assert _errno(os.stat, f"{d}/region0/size") == errno.ENOENT
        assert "region0" not in os.listdir(d)
        # and made again behind its back, with a real target this time
        with lock:
            create_region(m.backend(), "decoder0.0", ["mem0"], mode="pmem", gran=4096, size=512 << 20)
        assert open(f"{d}/region0/size").read() == "0x20000000\n"
        assert open(f"{d}/decoder3.0/region").read() == "region0\n"


def test_open_file_keeps_seq_file_semantics_and_goes_stale(tmp_path):
    with mounted("b", "cxl-test", tmp_path) as (m, lock, mnt):
        p = f"{mnt}/proc/iomem"
        fd = os.open(p, os.O_RDONLY)
        try:
            whole = os.pread(fd, 1 << 20, 0)
            assert whole == m.backend().read_bytes("/proc/iomem")
            # a read past 0 continues the buffer of the last show (seq_file)
            assert os.pread(fd, 16, 10) == whole[10:26]
        finally:
            os.close(fd)
        d = f"{mnt}/sys/bus/cxl/devices"
        create = f"{d}/decoder0.1/create_ram_region"
        name = open(create).read().strip()
        _write(create, name.encode() + b"\0")
        fd = os.open(f"{d}/{name}/size", os.O_RDONLY)
        try:
            assert os.pread(fd, 64, 0) == b"0x0\n"
            _write(f"{d}/decoder0.1/delete_region", name.encode() + b"\0")
            assert _errno(os.pread, fd, 64, 0) == errno.ENODEV
        finally:
            os.close(fd)


def test_long_writes_are_cut_to_a_page(tmp_path):
    with mounted("b", "biscuitos-b", tmp_path) as (m, lock, mnt):
        p = f"{mnt}/sys/bus/cxl/devices/decoder0.0/create_pmem_region"
        fd = os.open(p, os.O_WRONLY)
        try:
            assert _errno(os.write, fd, b"x" * 5000) == errno.EINVAL      # store saw 4096 bytes of nonsense
            assert os.write(fd, b"") == 0
        finally:
            os.close(fd)


def test_poll_wakes_on_sysfs_notify(tmp_path):
    """kernfs_generic_poll: after a read, poll blocks until sysfs_notify; libcxl's
    cxl_memdev_wait_sanitize polls security/state this way."""
    with mounted("b", "biscuitos-b", tmp_path) as (m, lock, mnt):
        fd = os.open(f"{mnt}{MEM0}/security/state", os.O_RDONLY)
        try:
            assert os.pread(fd, 16, 0) == b"disabled\n"
            p = select.poll()
            p.register(fd, select.POLLPRI | select.POLLERR)
            assert p.poll(100) == []                      # nothing notified yet
            md = m.kernel.cxl.memdevs[0]
            timer = threading.Timer(0.2, lambda: m.kernel.sysfs_notify(md, "security", "state"))
            t0 = time.monotonic()
            timer.start()
            ev = p.poll(5000)
            assert ev and ev[0][1] & select.POLLPRI and ev[0][1] & select.POLLERR
            assert 0.15 < time.monotonic() - t0 < 4
            os.pread(fd, 16, 0)                            # a read re-arms it
            assert p.poll(50) == []
        finally:
            os.close(fd)


def test_sanitize_notifies_security_state(tmp_path):
    with mounted("b", "biscuitos-b", tmp_path) as (m, lock, mnt):
        fd = os.open(f"{mnt}{MEM0}/security/state", os.O_RDONLY)
        try:
            os.pread(fd, 16, 0)
            _write(f"{mnt}{MEM0}/security/sanitize", b"1\n")
            p = select.poll()
            p.register(fd, select.POLLPRI)
            assert p.poll(1000)
        finally:
            os.close(fd)


def test_mount_follows_a_reboot(tmp_path):
    with mounted("b", "biscuitos-b", tmp_path) as (m, lock, mnt):
        d = f"{mnt}/sys/bus/cxl/devices"
        with lock:
            create_region(m.backend(), "decoder0.0", ["mem0"], mode="pmem", gran=4096, size=512 << 20)
        assert os.path.isdir(f"{d}/region0")
        with lock:
            m.reboot()
        assert not os.path.exists(f"{d}/region0")
        assert open(f"{d}/mem0/serial").read() == m.backend().read("/sys/bus/cxl/devices/mem0/serial")


def test_bad_mount_points(tmp_path):
    require_fuse()
    with pytest.raises(MountError, match="does not exist"):
        check_mountpoint(tmp_path / "nope")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(MountError, match="not empty"):
        check_mountpoint(tmp_path / "full")
    (tmp_path / "file").write_text("x")
    with pytest.raises(MountError, match="not a directory"):
        check_mountpoint(tmp_path / "file")


_SERVE = r"""
import sys, threading, time
from cxlemu.machine.store import Store
from cxlemu.machine.mount import mount
with Store().open(sys.argv[1]) as m:
    mount(m, threading.RLock(), sys.argv[2], page_cache=sys.argv[3] == "1")
    print("up", flush=True)
    time.sleep(600)
"""

_READER = r"""
import os, sys
p = sys.argv[1]
while True:                       # held and reopened files, as fast as it can
    fd = os.open(p, os.O_RDONLY)
    try:
        os.pread(fd, 64, 0)
    except OSError:
        pass
    os.close(fd)
"""


@pytest.mark.parametrize("page_cache", [False, True], ids=["exact", "page-cache"])
def test_a_killed_server_leaves_no_hung_mount(tmp_path, page_cache):
    """kill -9 of the serving process while programs read and write through
    it: every mount answers ENOTCONN at once, nothing hangs, and the directory
    can be mounted again after clean_stale_mounts."""
    require_fuse()
    if page_cache:
        _page_cache_or_skip()
    Store().create("k", open_preset("biscuitos-b"))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.Popen([sys.executable, "-c", _SERVE, "k", str(mnt), "1" if page_cache else "0"],
                         stdout=subprocess.PIPE, text=True)
    readers = []
    try:
        assert p.stdout.readline().strip() == "up"
        assert os.path.isdir(mnt / "sys/bus/cxl")
        d = mnt / "sys/bus/cxl/devices/decoder0.0"
        readers = [subprocess.Popen([sys.executable, "-c", _READER, str(d / "create_pmem_region")])
                   for _ in range(2)]
        for _ in range(20):                       # changes while the readers read
            name = (d / "create_pmem_region").read_text().strip()
            _write(str(d / "create_pmem_region"), name.encode() + b"\0")
            _write(str(d / "delete_region"), name.encode() + b"\0")
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
        for r in readers:
            r.kill()
            r.wait(30)                            # a reader stuck in the mount would hang here
    # the connections are gone: the directories answer ENOTCONN, never hang
    mine = [mnt] if not page_cache else [mnt / ".root", mnt / "sys", mnt / ".tracing"]
    assert all(is_stale(x) for x in mine)
    with Store().open("k") as m:
        assert set((m.path / "mounts").read_text().split()) == {str(x) for x in mine}
        assert sorted(clean_stale_mounts(m.path)) == sorted(str(x) for x in mine)
        assert not is_stale(mnt) and os.listdir(mnt) == []
        # and a mount on the same directory works again
        h = mount(m, threading.RLock(), mnt)
        try:
            assert os.path.isdir(mnt / "sys/bus/cxl")
        finally:
            h.unmount()
    assert os.listdir(mnt) == []


def test_unmount_with_a_program_still_inside(tmp_path):
    with mounted("b", "biscuitos-b", tmp_path) as (m, lock, mnt):
        h = None
    # the context unmounted; a new mount, then a process holding a directory open
    with Store().open("b") as m:
        h = mount(m, threading.RLock(), mnt)
        fd = os.open(f"{mnt}/sys/bus/cxl/devices", os.O_RDONLY | os.O_DIRECTORY)
        t0 = time.monotonic()
        h.unmount()
        assert time.monotonic() - t0 < 5
        assert _errno(os.listdir, fd) == errno.ENOTCONN        # the connection is closed, not hung
        os.close(fd)
    assert os.listdir(mnt) == []


def open_preset(name: str) -> str:
    from cxlemu.topology import presets
    return presets.text(name)


def _writable(b, tops=("/sys/bus/cxl/devices", "/sys/bus/nd/devices", "/sys/bus/dax/devices",
                       "/sys/bus/cxl/drivers", "/sys/devices/system/memory")) -> list[str]:
    out = []
    for top in tops:
        for name in b.listdir(top):
            d = b.realpath(f"{top}/{name}")
            if not b.isdir(d):
                continue
            for a in b.listdir(d):
                p = f"{d}/{a}"
                if not b.islink(p) and not b.isdir(p) and b.vfs.mode(p) & 0o222:
                    out.append(p)
    return sorted(set(out))


def _state(b) -> dict:
    out = {}
    for top in ("/sys/bus/cxl/devices", "/sys/bus/nd/devices", "/sys/bus/dax/devices"):
        for name in b.listdir(top):
            d = b.realpath(f"{top}/{name}")
            for a in b.listdir(d):
                p = f"{d}/{a}"
                if b.islink(p):
                    out[p] = b.readlink(p)
                elif not b.isdir(p) and b.vfs.mode(p) & 0o444:
                    try:
                        out[p] = b.read(p)
                    except OSError as e:
                        out[p] = e.errno
    return out


def test_fuzzed_writes_same_errno_both_ways(tmp_path):
    """Fuzz: valid-looking and garbage values written to every kind of
    writable attribute through the mount get exactly the errno a direct write
    to an identical machine gets, the server never fails on them, and both
    machines end in the same state."""
    import random
    from cxltest_support import boot
    twin = boot("cxl-test")
    rng = random.Random(8)
    tokens = [b"1", b"0", b"1\n", b"0\n", b"region0", b"region1", b"region9", b"decoder5.1", b"decoder7.0",
              b"0x10000000", b"0x20000000\n", b"0x123", b"pmem", b"ram", b"mixed", b"4096", b"256", b"2", b"3",
              b"online_movable", b"offline", b"online", b"dax0.0", b"dax1.0", b"mem0", b"namespace0.0",
              b"\x00", b"\xff\xfe garbage", b"-1", b"99999999999999999999999",
              b"b6b6b9ab-2f1e-4e1c-9d55-1ad1e0e0e0e0", b"y", b"n"]
    with mounted("b", "cxl-test", tmp_path, with_handle=True) as (m, lock, mnt, handle):
        paths = _writable(m.backend())
        assert len(paths) > 100
        results = []
        for _ in range(400):
            p = rng.choice(paths)
            data = rng.choice(tokens) if rng.random() < 0.8 else \
                bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
            try:
                twin.write(p, data)
                want = 0
            except OSError as e:
                want = e.errno
            got = _errno(_write, mnt + p, data) if os.path.exists(mnt + p) else errno.ENOENT
            results.append((p, data, want, got))
        bad = [r for r in results if r[2] != r[3]]
        assert not bad, bad[:5]
        assert any(r[2] for r in results) and any(not r[2] for r in results)   # both refusals and changes
        with lock:
            assert _state(m.backend()) == _state(twin)
        assert handle.fs.stats.crashes == []


def test_unprivileged_mounts_link_the_hosts_nodes():
    """fusermount3 mounts are nodev: the host's null, zero ... become links
    into the host /dev that cxlemu real binds (checked on the operations,
    without mounting; `cxlemu real` as nobody with unshare -Urm was run by hand)."""
    import stat as st
    from cxlemu.machine.fusefs import MachineFs
    Store().create("u", open_preset("biscuitos-b"))
    with Store().open("u", write=False) as m:
        fs = MachineFs(m, threading.RLock(), host_dev_dir="/run/x/hostdev", host_nodes_as_links=True)
        assert st.S_ISLNK(fs.getattr("/dev/null")["st_mode"])
        assert fs.readlink("/dev/null") == "/run/x/hostdev/null"
        assert fs.readlink("/dev/pts") == "/run/x/hostdev/pts"
        assert st.S_ISCHR(fs.getattr("/dev/cxl/mem0")["st_mode"])          # the machine's own stay nodes
        names = {n: mode for n, mode, _ in fs.readdir("/dev", None)}
        assert names["null"] == st.S_IFLNK and names["nmem0"] == st.S_IFCHR
        root = MachineFs(m, threading.RLock(), host_dev_dir="/run/x/hostdev")
        assert st.S_ISCHR(root.getattr("/dev/null")["st_mode"])
        assert root.getattr("/dev/null")["st_rdev"] == os.makedev(1, 3)


def test_a_link_whose_target_changes_is_read_afresh(tmp_path):
    """Link targets may be cached by the host kernel; a driver link that now
    names another driver must read back with its new target."""
    with mounted("b", "cxl-test", tmp_path) as (m, lock, mnt):
        link = f"{mnt}/sys/bus/dax/devices/dax0.0/driver"
        assert os.readlink(link).endswith("/bus/dax/drivers/kmem")
        assert os.readlink(link).endswith("/bus/dax/drivers/kmem")      # (now possibly cached)
        # unbound and bound to another driver with no look at the link in between
        _write(f"{mnt}/sys/bus/dax/drivers/kmem/unbind", b"dax0.0\0")
        try:                   # daxctl_bind(): new_id (which probes), then bind
            _write(f"{mnt}/sys/bus/dax/drivers/device_dax/new_id", b"dax0.0\0")
        except OSError:
            _write(f"{mnt}/sys/bus/dax/drivers/device_dax/bind", b"dax0.0\0")
        assert os.readlink(link).endswith("/bus/dax/drivers/device_dax")
        assert os.path.realpath(link) == f"{mnt}/sys/bus/dax/drivers/device_dax"


# ---- the page-cache layout (machine/fusefs.py "Contents") ------------------------------------------

def _sys_fs(handle):
    return next(c.fs for c in handle.connections if c.fs.prefix == "/sys")


def test_page_cache_layout_serves_repeat_reads_from_the_host(tmp_path):
    """/sys is a connection of its own whose contents the host kernel keeps;
    tracefs is mounted on its own (exact: trace_pipe is a stream), as on Linux."""
    _page_cache_or_skip()
    with mounted("b", "biscuitos-b", tmp_path, with_handle=True, page_cache=True) as (m, lock, mnt, handle):
        prefixes = [c.fs.prefix for c in handle.connections]
        assert prefixes == ["", "/sys", "/sys/kernel/tracing"]
        with open("/proc/self/mountinfo") as f:
            mps = {line.split()[4] for line in f}
        split = {f"{mnt}/.root", f"{mnt}/sys", f"{mnt}/.tracing"}
        assert split <= mps and mnt not in mps      # side by side: none inside another
        assert sorted(os.listdir(mnt)) == [".root", ".tracing", "dev", "proc", "sys"]
        assert open(f"{mnt}/proc/cmdline").read() == m.backend().read("/proc/cmdline")
        fs = _sys_fs(handle)
        assert fs.page_cache and not handle.connections[0].fs.page_cache
        p = f"{mnt}{MEM0}/serial"
        want = m.backend().read(f"{MEM0}/serial").encode()
        fd = os.open(p, os.O_RDONLY)
        try:
            assert os.read(fd, 4096) == want
        finally:
            os.close(fd)
        reads = fs.stats.counts.get("read", 0)
        for _ in range(5):
            fd = os.open(p, os.O_RDONLY)
            try:
                assert os.read(fd, 4096) == want
            finally:
                os.close(fd)
        assert fs.stats.counts.get("read", 0) == reads          # none reached the machine
        assert fs.stats.counts.get("open", 0) <= 1               # OPEN answered ENOSYS once at most
        # listings too (machine/mount.py _cache_listings), held or looked up anew
        d = f"{mnt}/sys/bus/cxl/devices"
        names = os.listdir(d)
        listed = fs.stats.counts.get("readdir", 0)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        # (installed where libfuse's session layout is the one checked for: Debian's 3.14)
        cached = handle.connections[1].keep[1] is not None
        with open("/proc/self/maps") as f:
            assert cached or "libfuse3.so.3.14" not in f.read()
        try:
            assert os.listdir(d) == names == os.listdir(dfd)
            assert fs.stats.counts.get("readdir", 0) == listed or not cached
            _write(f"{d}/decoder0.0/create_pmem_region", b"region0\0")   # a change
            assert os.path.isdir(f"{d}/region0")
            assert "region0" in os.listdir(d) and "region0" in os.listdir(dfd)
        finally:
            os.close(dfd)
        assert "trace_pipe" in os.listdir(f"{mnt}/.tracing")
        with open("/proc/self/mountinfo") as f:
            assert split <= {line.split()[4] for line in f}
        # the host kernel made st_size what a read returned (documented): still consistent
        assert os.stat(p).st_size in (4096, len(want))
        assert open(p, "rb").read() == want
        assert handle.crashes() == []


def test_page_cache_write_then_read_on_one_file(tmp_path):
    """A write leaves the writer's bytes in the host's page; the next read must
    be show() again, after a refused store as after an accepted one."""
    _page_cache_or_skip()
    with mounted("b", "biscuitos-b", tmp_path, with_handle=True, page_cache=True) as (m, lock, mnt, handle):
        d = f"{mnt}/sys/bus/cxl/devices"
        _write(f"{d}/decoder0.0/create_pmem_region", b"region0\0")
        b = m.backend()
        fd = os.open(f"{d}/region0/interleave_ways", os.O_RDWR)
        try:
            first = os.pread(fd, 64, 0)
            assert first == b.read_bytes("/sys/bus/cxl/devices/region0/interleave_ways") == b"0\n"
            assert os.pwrite(fd, b"1", 0) == 1
            assert os.pread(fd, 64, 0) == b"1\n" == b.read_bytes("/sys/bus/cxl/devices/region0/interleave_ways")
            assert _errno(os.pwrite, fd, b"nonsense!\n", 0) == errno.EINVAL
            assert os.pread(fd, 64, 0) == b"1\n"                  # not the refused bytes
            assert os.pwrite(fd, b"01", 0) == 2                     # the same value, other bytes
            assert os.pread(fd, 64, 0) == b"1\n"
        finally:
            os.close(fd)
        assert handle.crashes() == []


def test_page_cache_held_file_sees_changes_made_elsewhere(tmp_path):
    """A file kept open (no new lookup) reads the change another client of the
    machine made, as soon as the change is made."""
    _page_cache_or_skip()
    with mounted("b", "biscuitos-b", tmp_path, with_handle=True, page_cache=True) as (m, lock, mnt, handle):
        create = f"{mnt}/sys/bus/cxl/devices/decoder0.0/create_pmem_region"
        fd = os.open(create, os.O_RDONLY)
        try:
            assert os.pread(fd, 64, 0) == b"region0\n"
            assert os.pread(fd, 64, 0) == b"region0\n"           # from the host's page cache
            with lock:
                create_region(m.backend(), "decoder0.0", ["mem0"], mode="pmem", gran=4096, size=512 << 20)
            assert os.pread(fd, 64, 0) == b"region1\n"
            # and a path looked up again sees it with no settling at all (epoch)
            with lock:
                m.backend().write("/sys/bus/cxl/devices/decoder0.0/delete_region", "region0\0")
            assert not os.path.exists(f"{mnt}/sys/bus/cxl/devices/region0")
        finally:
            os.close(fd)


def test_page_cache_poll_wakes_with_the_new_content(tmp_path):
    """kernfs_generic_poll through the page-cache layout: the poller is woken
    only after the attribute's cached page is gone, so its re-read is fresh."""
    _page_cache_or_skip()
    with mounted("b", "biscuitos-b", tmp_path, page_cache=True) as (m, lock, mnt):
        fd = os.open(f"{mnt}{MEM0}/security/state", os.O_RDONLY)
        try:
            assert os.pread(fd, 16, 0) == b"disabled\n"
            p = select.poll()
            p.register(fd, select.POLLPRI | select.POLLERR)
            assert p.poll(100) == []
            md = m.kernel.cxl.memdevs[0]

            def change():        # what a sanitize does: a new state, then sysfs_notify
                with lock:
                    md.sanitizing = True
                    m.kernel.sysfs_notify(md, "security", "state")
            threading.Timer(0.2, change).start()
            ev = p.poll(5000)
            assert ev and ev[0][1] & select.POLLPRI
            assert os.pread(fd, 16, 0) == b"sanitize\n"            # read afresh (and re-armed)
            assert p.poll(50) == []
        finally:
            os.close(fd)
            md.sanitizing = False
