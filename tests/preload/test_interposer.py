"""The LD_PRELOAD interposer (src/cxlemu/preload/interpose.c) with real
programs: Debian's cxl and ndctl doing mailbox and label ioctls, the seed's
devdax program (examples/daxtest.c, compiled here) storing and loading
through /dev/dax0.0 with the bytes landing on the right device at the right
DPA (1-, 2-, 4-way and a sub-page granule), /dev/mem through dd, and the
CPU-cache model for C programs.

The programs run in ``unshare -m`` with the machine's rendered /sys and its
device nodes (mknod'ed with the emulated majors), LD_PRELOAD=<library> and
CXLEMU_DEV_SOCKET=<the device socket served in this process>.
"""

import io
import json
import subprocess

import pytest

from preload_support import MiB, ROOT, compile_c, fabric, lib_or_skip, real_or_skip, run_under, served
from cxlemu.data.dax_mapping import DaxDevice
from cxlemu.tools.runner import run_tool


def ours(m, tool, *argv):
    out, err = io.StringIO(), io.StringIO()
    rc = run_tool(tool, list(argv), m.backend(), env={}, stdout=out, stderr=err, isatty=False)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def daxtest(tmp_path_factory):
    return str(compile_c(ROOT / "examples" / "daxtest.c", tmp_path_factory.mktemp("bin") / "daxtest"))


# ---- mailbox and label ioctls from the real tools ------------------------------------------------

def test_real_cxl_list_health_is_the_mailbox():
    real_or_skip("cxl")
    with served(namespace=None) as (m, srv, _lock):
        p = run_under(m, srv, "cxl", "list", "-M", "-H")
        assert p.returncode == 0, p.stderr
        assert "query commands failed" not in p.stderr
        (real,) = json.loads(p.stdout)
        (mine,) = json.loads(ours(m, "cxl", "list", "-M", "-H")[1])
        assert real["health"] == mine["health"] and real["health"]["temperature"] == 25


def test_real_cxl_write_and_read_labels(tmp_path):
    """No pmem: no nvdimm owns the label area, SET_LSA is the user's."""
    real_or_skip("cxl")
    text = fabric(2, pmem="", volatile="512M")
    with served(namespace=None, text=text) as (m, srv, _lock):
        data = bytes(range(256)) * 512
        src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
        src.write_bytes(data)
        p = run_under(m, srv, "cxl", "write-labels", "mem1", "-i", str(src))
        assert (p.returncode, p.stderr) == (0, "cxl memdev: cmd_write_labels: wrote 1 mem\n")
        assert bytes(m.kernel.cxl.memdevs[1].hw.lsa) == data           # on the device's LSA
        assert m.kernel.dirty                                          # a change the machine will save
        p = run_under(m, srv, "cxl", "read-labels", "mem1", "-O", "256", "-s", "4096", "-o", str(dst))
        assert p.returncode == 0, p.stderr
        assert dst.read_bytes() == data[256:256 + 4096]


def test_real_ndctl_init_and_read_labels():
    real_or_skip("ndctl")
    with served(namespace=None) as (m, srv, _lock):
        b = m.backend()
        b.write("/sys/bus/nd/drivers/nvdimm/unbind", "nmem0")           # a disabled dimm
        p = run_under(m, srv, "ndctl", "init-labels", "nmem0")
        assert (p.returncode, p.stderr) == (0, "initialized 1 nmem\n"), p.stderr
        assert bytes(m.kernel.cxl.memdevs[0].hw.lsa[:15]) == b"NAMESPACE_INDEX"
        p = run_under(m, srv, "ndctl", "read-labels", "nmem0", "-j")
        assert p.returncode == 0, p.stderr
        rc, mine, _ = ours(m, "ndctl", "read-labels", "nmem0", "-j")
        assert rc == 0 and json.loads(p.stdout) == json.loads(mine)
        p = run_under(m, srv, "ndctl", "check-labels", "nmem0")
        assert p.returncode == 0 and "successfully verified 1 nmem label" in p.stderr


def test_real_cxl_set_partition():
    real_or_skip("cxl")
    text = fabric(1, pmem="1G").replace('persistent = "1G"', 'partitionable = "1G"')
    with served(namespace=None, text=text) as (m, srv, _lock):
        assert ours(m, "cxl", "disable-memdev", "mem0")[0] == 0
        p = run_under(m, srv, "cxl", "set-partition", "mem0", "-t", "ram", "-s", "512M")
        assert p.returncode == 0, p.stderr
        info = json.loads(p.stdout)[0]["partition_info"]
        assert (info["next_volatile_size"], info["next_persistent_size"]) == (512 * MiB, 512 * MiB)
        hw = m.kernel.cxl.memdevs[0].hw
        mine = json.loads(ours(m, "cxl", "list", "-M", "-I", "-i", "-m", "mem0")[1])[0]["partition_info"]
        assert mine["next_volatile_size"] == 512 * MiB, hw


# ---- the seed's devdax program -------------------------------------------------------------------

def hexof(data: bytes) -> str:
    return data.hex()


def media_at(m, dev_offset: int, n: int) -> tuple[bytes, set]:
    """The bytes the media hold for [dev_offset, +n) of dax0.0 (read from
    the media files at the DPAs the router gives) and the devices used."""
    d = DaxDevice.open(m.backend(), "dax0.0")
    space = m.backend().hpa_space()
    out, devs = bytearray(n), set()
    pos = 0
    for hpa, take in d.hpa_pieces(dev_offset, n):
        for off, ln, di, dpa in space.extents(hpa, take).tolist():
            hw = space.p.devices[di]
            with open(m.media.path(hw), "rb") as f:               # the file itself, not our mapping
                f.seek(dpa)
                out[pos + off:pos + off + ln] = f.read(ln)
            devs.add(hw.name)
        pos += take
    return bytes(out), devs


@pytest.mark.parametrize("ways,gran", [(1, 4096), (2, 4096), (4, 4096), (4, 256)],
                         ids=["1way", "2way", "4way", "4way-256B-shadow"])
def test_daxtest_stores_land_on_the_media(daxtest, ways, gran):
    real_or_skip()
    with served(ways, gran=gran, namespace="64M" if ways == 1 else "128M") as (m, srv, _lock):
        off, n = 3 * MiB + 4000, 40000                      # crosses pages, granules and a 2 MiB line
        p = run_under(m, srv, daxtest, "/dev/dax0.0", "write", str(off), str(n), "0xC0DE")
        assert (p.returncode, p.stdout) == (0, f"wrote {n} bytes at {off:#x}\n"), p.stderr
        expect = (b"\xc0\xde" * n)[:n]
        got, devs = media_at(m, off, n)
        assert got == expect
        assert len(devs) == ways                            # every device of the interleave set got some
        before, _ = media_at(m, off - 16, 16)
        assert before == bytes(16)                          # and nothing else was written
        p = run_under(m, srv, daxtest, "/dev/dax0.0", "read", str(off - 2), "6")
        assert p.stdout == f"read 6 bytes at {off - 2:#x}: 0000c0dec0de\n", p.stderr


def test_daxtest_errors(daxtest):
    real_or_skip()
    with served() as (m, srv, _lock):
        p = run_under(m, srv, daxtest, "/dev/dax9.9", "read", "0", "4")
        assert p.returncode == 1 and "No such file or directory" in p.stderr
        p = run_under(m, srv, daxtest, "/dev/dax0.0", "read", str(62 * MiB), "4")
        assert p.returncode == 1 and "mmap /dev/dax0.0: No such device or address" in p.stderr
        p = run_under(m, srv, daxtest, "/dev/cxl/mem0", "read", "0", "4")
        assert p.returncode == 1 and "mmap /dev/cxl/mem0: No such device" in p.stderr


PRIVATE_C = r'''
#include <stdio.h>
#include <fcntl.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
int main(void) {
    int fd = open("/dev/dax0.0", O_RDWR);
    void *p = mmap(0, 2 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    printf("private %s\n", p == MAP_FAILED ? strerror(errno) : "ok");
    p = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("unaligned %s\n", p == MAP_FAILED ? strerror(errno) : "ok");
    p = mmap(0, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
    printf("map_sync %s\n", p == MAP_FAILED ? strerror(errno) : "ok");
    char c;
    printf("read %zd %s\n", read(fd, &c, 1), strerror(errno));
    return 0;
}
'''


def test_device_dax_mmap_rules(tmp_path):
    real_or_skip()
    src = tmp_path / "rules.c"
    src.write_text(PRIVATE_C)
    exe = compile_c(src, tmp_path / "rules")
    with served() as (m, srv, _lock):
        p = run_under(m, srv, str(exe))
        assert p.stdout == ("private Invalid argument\nunaligned Invalid argument\nmap_sync ok\n"
                            "read -1 Invalid argument\n"), p.stderr


# ---- the CPU-cache model for C programs -------------------------------------------------------------

@pytest.mark.parametrize("mode,persist,survives", [
    ("evict", False, True),        # default: what a program left in the cache reaches the media at exit
    ("keep", False, False),        # keep: unflushed stores stay in the cache, a power failure loses them
    ("keep", True, True),          # ... unless the program flushed them (msync)
])
def test_power_failure_and_c_programs(daxtest, mode, persist, survives):
    real_or_skip()
    with served() as (m, srv, lock):
        args = [daxtest, "/dev/dax0.0", "write", "8192", "128", "0xAB"] + (["persist"] if persist else [])
        p = run_under(m, srv, *args, env={"CXLEMU_PMEM_UNFLUSHED": mode})
        assert p.returncode == 0, p.stderr
        where = media_at(m, 8192, 128)
        assert where[0] == b"\xab" * 128                     # stored on the media either way
        d = DaxDevice.open(m.backend(), "dax0.0")
        region = int(m.backend().read("/sys/bus/cxl/devices/region0/resource"), 0)
        dpa = d.ranges[0].hpa - region + 8192               # 1-way region at DPA 0
        with lock:
            m.reboot(power_loss=True)
        hw = m.platform.devices[0]
        with open(m.media.path(hw), "rb") as f:
            f.seek(dpa)
            after = f.read(128)
        assert after == (b"\xab" * 128 if survives else bytes(128))


def test_dev_mem_through_dd():
    real_or_skip("dd")
    with served() as (m, srv, _lock):
        hpa = DaxDevice.open(m.backend(), "dax0.0").ranges[0].hpa
        m.backend().hpa_space().write(hpa, b"cxl-mem!")
        p = run_under(m, srv, "dd", "if=/dev/mem", "bs=8", f"skip={hpa // 8}", "count=1", "status=none",
                      extra_nodes={"mem": "1:1\n"})
        assert (p.returncode, p.stdout) == (0, "cxl-mem!"), p.stderr
        p = run_under(m, srv, "sh", "-c", f"printf HELLO | dd of=/dev/mem bs=1 seek={hpa} conv=notrunc "
                                          f"status=none", extra_nodes={"mem": "1:1\n"})
        assert p.returncode == 0, p.stderr
        assert m.backend().hpa_space().read(hpa, 8) == b"HELLOem!"


def test_library_path_and_disable(monkeypatch):
    from cxlemu import preload
    lib = lib_or_skip()
    assert lib.endswith(".so")
    monkeypatch.setenv(preload.ENV, "none")
    assert preload.library_path() is None
    monkeypatch.setenv(preload.ENV, "/nonexistent/lib.so")
    assert preload.library_path() is None


def test_programs_without_the_socket_are_untouched(tmp_path):
    """LD_PRELOAD without CXLEMU_DEV_SOCKET: a pass-through."""
    lib = lib_or_skip()
    p = subprocess.run(["env", f"LD_PRELOAD={lib}", "sh", "-c", "echo hi > f; cat f; ls /dev/null"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert (p.returncode, p.stdout) == (0, "hi\n/dev/null\n"), p.stderr


def test_socket_path_longer_than_sun_path(daxtest, tmp_path):
    """<machine>/dev.sock can be longer than a sockaddr_un holds: both ends
    go through /proc/self/fd of the directory."""
    real_or_skip()
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    with served(sock_dir=str(deep)) as (m, srv, _lock):
        assert len(str(srv.path)) > 107 and srv.path.exists()
        p = run_under(m, srv, daxtest, "/dev/dax0.0", "write", "0", "4", "0x0102")
        assert p.returncode == 0, p.stderr
        assert media_at(m, 0, 4)[0] == b"\x01\x02\x01\x02"


PMEM_C = r'''
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
static void on_segv(int sig) { (void)sig; printf("own handler\n"); fflush(stdout); _exit(0); }
int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, NULL);                     /* the program's own SIGSEGV handler */
    void (*persist)(const void *, size_t) = (void (*)(const void *, size_t))dlsym(RTLD_DEFAULT, "pmem_persist");
    int (*is_pmem)(const void *, size_t) = (int (*)(const void *, size_t))dlsym(RTLD_DEFAULT, "pmem_is_pmem");
    int fd = open("/dev/dax0.0", O_RDWR);
    unsigned char *p = mmap(0, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED || !persist || !is_pmem) { printf("setup failed\n"); return 1; }
    memset(p, 0xAA, 8192);                             /* stores: trapped, not flushed */
    persist(p + 64, 100);                              /* libpmem: clwb lines 1-2 + sfence */
    printf("is_pmem %d\n", is_pmem(p, 4096));
    munmap(p, 2 << 20);
    fflush(stdout);
    char *ro = mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ro[0] = 1;                                         /* a real fault: the program's handler */
    printf("not reached\n");
    return 1;
}
'''


def test_libpmem_flushes_and_the_programs_own_sigsegv_handler(tmp_path):
    """pmem_persist (the interposer's, found by dlsym as a program linked
    with libpmem would find it) makes exactly its lines durable; the store
    trap leaves a program's own SIGSEGV handler working."""
    real_or_skip()
    src = tmp_path / "pmem.c"
    src.write_text(PMEM_C)
    exe = tmp_path / "pmem"
    from cxlemu import preload
    p = subprocess.run([*preload.compiler().split(), "-O1", "-o", str(exe), str(src), "-ldl"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    with served() as (m, srv, lock):
        p = run_under(m, srv, str(exe), env={"CXLEMU_PMEM_UNFLUSHED": "keep"})
        assert (p.returncode, p.stdout) == (0, "is_pmem 1\nown handler\n"), p.stderr
        assert media_at(m, 0, 8192)[0] == b"\xaa" * 8192
        with lock:
            m.reboot(power_loss=True)
        d_hw = m.platform.devices[0]
        with open(m.media.path(d_hw), "rb") as f:
            f.seek(2 * MiB)                               # dax0.0 starts 2 MiB into the 1-way region at DPA 0
            got = f.read(8192)
        assert got == bytes(64) + b"\xaa" * 128 + bytes(8192 - 192)


MPROTECT_C = r'''
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
static void on_segv(int sig) { (void)sig; printf("segv on read-only half\n"); fflush(stdout); _exit(0); }
int main(void) {
    signal(SIGSEGV, on_segv);
    int fd = open("/dev/dax0.0", O_RDWR);
    unsigned char *p = mmap(0, 4 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    p[0] = 1;
    mprotect(p + (2 << 20), 2 << 20, PROT_READ);        /* second half read-only */
    p[4096] = 2;                                        /* first half: still writable (traps, captured) */
    mprotect(p + (2 << 20), 2 << 20, PROT_READ | PROT_WRITE);
    p[(2 << 20) + 5] = 3;                               /* writable again */
    printf("%d %d %d\n", p[0], p[4096], p[(2 << 20) + 5]);
    mprotect(p + (2 << 20), 2 << 20, PROT_READ);
    fflush(stdout);
    p[(2 << 20) + 6] = 4;                               /* the program's fault */
    return 1;
}
'''


def test_mprotect_of_part_of_a_mapping(tmp_path):
    """mprotect(PROT_READ) of half a dax mapping: stores to the other half
    still work (and are trapped), stores to the read-only half are the
    program's own SIGSEGV; PROT_WRITE again makes them work."""
    real_or_skip()
    src = tmp_path / "mprot.c"
    src.write_text(MPROTECT_C)
    exe = compile_c(src, tmp_path / "mprot")
    with served() as (m, srv, _lock):
        p = run_under(m, srv, str(exe))
        assert (p.returncode, p.stdout) == (0, "1 2 3\nsegv on read-only half\n"), p.stderr


THREADS_C = r'''
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define SLICE (512 << 10)
static unsigned char *base;
static void *work(void *arg) {
    long t = (long)arg;
    unsigned char *p = base + t * SLICE;
    for (int round = 0; round < 20; round++) {
        memset(p, (int)(t + 1), SLICE);              /* every round re-dirties the slice */
        msync(p, SLICE / 2, MS_SYNC);                /* and flushes its first half */
    }
    return 0;
}
int main(void) {
    int fd = open("/dev/dax0.0", O_RDWR);
    base = mmap(0, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) return 1;
    pthread_t th[4];
    for (long t = 0; t < 4; t++) pthread_create(&th[t], 0, work, (void *)t);
    for (int t = 0; t < 4; t++) pthread_join(th[t], 0);
    printf("done\n");
    return 0;
}
'''


def test_threads_storing_and_flushing_at_once(tmp_path):
    """Four threads fault and flush one mapping concurrently (keep mode):
    after a power failure exactly the flushed halves are there."""
    real_or_skip()
    src = tmp_path / "threads.c"
    src.write_text(THREADS_C)
    from cxlemu import preload
    exe = tmp_path / "threads"
    p = subprocess.run([*preload.compiler().split(), "-O2", "-pthread", "-o", str(exe), str(src)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    with served() as (m, srv, lock):
        p = run_under(m, srv, str(exe), env={"CXLEMU_PMEM_UNFLUSHED": "keep"})
        assert (p.returncode, p.stdout) == (0, "done\n"), p.stderr
        with lock:
            m.reboot(power_loss=True)
        with open(m.media.path(m.platform.devices[0]), "rb") as f:
            f.seek(2 * MiB)
            got = f.read(2 * MiB)
        slice_ = 512 << 10
        expect = b"".join(bytes([t + 1]) * (slice_ // 2) + bytes(slice_ // 2) for t in range(4))
        assert got == expect
