"""Helpers shared by the test suite: boot kernels in process, build custom
fabrics, drive the region ABI the way libcxl does (write order and
formats of cxl/lib/libcxl.c, contract §2.1), run the cxl commands, and run
the real Debian binaries on a rendered tree."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import subprocess
import tempfile
import uuid as uuidlib
from dataclasses import dataclass

import pytest

from cxlemu.hw.platform import build_platform
from cxlemu.kernel.kernel import Kernel
from cxlemu.sysfs.backend import EmulatorBackend, render
from cxlemu.topology import presets
from cxlemu.topology.schema import loads

D = "/sys/bus/cxl/devices/"
SZ_256M = 256 << 20


def boot_text(text: str) -> EmulatorBackend:
    p = build_platform(loads(text))
    p.firmware_boot()
    k = Kernel(p)
    k.boot()
    return EmulatorBackend(k)


def boot(preset: str) -> EmulatorBackend:
    return boot_text(presets.text(preset))


def w(b: EmulatorBackend, path: str, val: str) -> None:
    """A libcxl-style write: the string plus its NUL terminator."""
    b.write(path if path.startswith("/") else D + path, val + "\0")


def r(b: EmulatorBackend, path: str) -> str:
    return b.read(path if path.startswith("/") else D + path).rstrip("\n")


def fabric_toml(root_ways: int, rps: int = 1, sw_ports: int = 0, *, gran: int = 256,
                arithmetic: str = "modulo", xormaps: tuple[int, ...] = (), mode: str = "ram",
                dev_size: str = "512M", kernel: str = "6.9", hb_decoders: int | None = None) -> str:
    """``root_ways`` host bridges, each with ``rps`` root ports; below each root
    port a device, or a switch with ``sw_ports`` devices."""
    kind = "volatile" if mode == "ram" else "persistent"
    out = ["[machine]", 'name = "fabric"', "[boot]", f'kernel = "{kernel}"', "hypervisor = false"]
    n = 0
    for h in range(root_ways):
        out += ["[[host_bridge]]", f'id = "hb{h}"', f"uid = {h}", f"root_ports = {rps}"]
        if hb_decoders is not None:
            out.append(f"hdm_decoders = {hb_decoders}")
    for h in range(root_ways):
        for rp in range(rps):
            parent = f"hb{h}"
            if sw_ports:
                out += ["[[switch]]", f'id = "sw{h}.{rp}"', f'parent = "hb{h}"', f"downstream_ports = {sw_ports}"]
                parent = f"sw{h}.{rp}"
            for _ in range(max(1, sw_ports)):
                out += ["[[device]]", f'id = "dev{n}"', f'parent = "{parent}"', f'{kind} = "{dev_size}"',
                        'lsa = "128K"' if mode == "pmem" else "lsa = 0"]
                n += 1
    targets = ", ".join(f'"hb{h}"' for h in range(root_ways))
    maps = ", ".join(hex(m) for m in xormaps)
    out += ["[[window]]", 'size = "64G"', f"targets = [{targets}]", f"granularity = {gran}",
            f'restrictions = ["type3", "volatile", "pmem"]', f'arithmetic = "{arithmetic}"',
            f"xormaps = [{maps}]"]
    return "\n".join(out) + "\n"


def xormaps_for(hb_ways: int, gran: int) -> tuple[int, ...]:
    """Valid CXIMS maps: map i has its lowest set bit at log2(gran)+i plus two higher bits."""
    L = gran.bit_length() - 1
    n = (hb_ways if hb_ways & (hb_ways - 1) == 0 else hb_ways // 3).bit_length() - 1
    return tuple((1 << (L + i)) | (1 << (L + i + 5)) | (1 << (L + i + 11)) for i in range(n))


@dataclass
class Made:
    name: str
    decoders: list[str]


def reserve(b: EmulatorBackend, memdev: str, mode: str, size: int) -> str:
    """cxl reserve-dpa: the first endpoint decoder with no DPA gets ``size``."""
    k = b.kernel
    md = next(m for m in k.cxl.memdevs if m.name == memdev)
    d = next(x for x in md.endpoint.decoders if x.dpa_len == 0)
    if d.mode != mode:
        w(b, f"{d.name}/dpa_size", "0x0\n")
        w(b, f"{d.name}/mode", mode)
    w(b, f"{d.name}/dpa_size", f"{size:#x}\n")
    return d.name


def create_region(b: EmulatorBackend, root: str, memdevs: list[str], *, mode: str = "ram",
                  gran: int | None = None, size: int | None = None, enable: bool = True,
                  uuid: str | None = None) -> Made:
    """The create-region sysfs sequence (libcxl order)."""
    ways = len(memdevs)
    size = size or SZ_256M * ways
    gran = gran or int(r(b, f"{root}/interleave_granularity"))
    attr = "create_pmem_region" if mode == "pmem" else "create_ram_region"
    name = r(b, f"{root}/{attr}")
    w(b, f"{root}/{attr}", name)
    w(b, f"{name}/interleave_granularity", f"{gran}\n")
    w(b, f"{name}/interleave_ways", f"{ways}\n")
    if mode == "pmem":
        w(b, f"{name}/uuid", uuid or str(uuidlib.uuid4()))
    w(b, f"{name}/size", f"{size:#x}\n")
    decs = []
    for i, m in enumerate(memdevs):
        d = reserve(b, m, mode, size // ways)
        w(b, f"{name}/target{i}", d)
        decs.append(d)
    w(b, f"{name}/commit", "1\n")
    if enable:
        bind(b, name)
    return Made(name, decs)


def bind(b: EmulatorBackend, dev: str) -> None:
    """util_bind: try every cxl driver until one accepts the device."""
    last = None
    for drv in b.listdir("/sys/bus/cxl/drivers"):
        p = f"/sys/bus/cxl/drivers/{drv}/bind"
        if not b.exists(p):
            continue
        try:
            w(b, p, dev)
            return
        except OSError as e:
            last = e
    raise last or OSError("no driver")


def run(b: EmulatorBackend, tool: str, *argv: str) -> tuple[int, str, str]:
    from cxlemu.tools.runner import run_tool
    out, err = io.StringIO(), io.StringIO()
    rc = run_tool(tool, list(argv), b, stdout=out, stderr=err, isatty=False)
    return rc, out.getvalue(), err.getvalue()


# ---- cxl command helpers ------------------------------------------------------------------

def cxl(b: EmulatorBackend, *argv: str) -> tuple[int, str, str]:
    return run(b, "cxl", *argv)


def cxl_json(b: EmulatorBackend, *argv: str):
    """A cxl command that must succeed, its stdout parsed ([] when empty)."""
    rc, out, err = cxl(b, *argv)
    assert rc == 0, (argv, err)
    return json.loads(out) if out.strip() else []


def cxl_list_all(b: EmulatorBackend) -> str:
    """Everything ``cxl list -vvv`` prints."""
    rc, out, _ = cxl(b, "list", "-vvv")
    assert rc == 0
    return out


def sorted_arrays(obj):
    """``obj`` with every array sorted: array order follows readdir order,
    which differs between kernfs and the filesystem a tree is rendered on."""
    if isinstance(obj, list):
        return sorted((sorted_arrays(x) for x in obj), key=lambda x: json.dumps(x, sort_keys=True))
    if isinstance(obj, dict):
        return {k: sorted_arrays(v) for k, v in obj.items()}
    return obj


# ---- running the real Debian tools against a rendered tree -------------------------------
#
# The real binary runs in ``unshare -m`` with RENDERED/sys bind-mounted over
# /sys and a private tmpfs /dev (mounted on RENDERED/.devmnt) holding the
# rendered device nodes plus the host's null, zero, urandom, random and tty.
# The rendered nodes ("major:minor" files) are re-created with mknod, so that
# st_rdev matches /sys/dev/char (libdaxctl compares them), unless the run is
# compared with cxlemu reading the same rendered tree (DirectoryBackend):
# then they stay the regular files cxlemu sees (``mknod=False``).

_UNSHARE_SCRIPT = r'''
set -e
R=$0
NODES=$1
shift
mount --bind "$R/sys" /sys
D="$R/.devmnt"
mkdir -p "$D"
mount -t tmpfs none "$D"
if [ "$NODES" = files ]; then
  cp -a "$R/dev/." "$D/" 2>/dev/null || true
elif [ -d "$R/dev" ]; then
  (cd "$R/dev" && find . -mindepth 1 -type d -exec mkdir -p "$D/{}" \; &&
   find . -type f | while read -r f; do mm=$(cat "$f"); mknod "$D/$f" c "${mm%%:*}" "${mm##*:}"; done)
fi
for n in null zero urandom random tty; do touch "$D/$n"; mount --bind "/dev/$n" "$D/$n"; done
mount --bind "$D" /dev
exec "$@"
'''


@functools.lru_cache(maxsize=None)
def _unshare_refused() -> str | None:
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -m is not permitted here: {probe.stderr.strip()}"


def real_tools_available(*tools: str) -> str | None:
    """None if the real binaries can be run in a private mount namespace, else why not."""
    if os.geteuid() != 0:
        return "needs root for unshare -m"
    if not shutil.which("unshare"):
        return "unshare is missing"
    for t in tools:
        if not shutil.which(t):
            return f"{t} is not installed (apt-get install ndctl daxctl numactl pciutils)"
    return _unshare_refused()


def require_real_tools(*tools: str) -> None:
    """Skip the calling test unless :func:`real_tools_available` (fail in CI)."""
    need_real(real_tools_available(*tools))


def render_machine(b: EmulatorBackend, out) -> str:
    render(b, str(out))
    return str(out)


def run_real(rendered: str, *argv: str, mknod: bool = True) -> subprocess.CompletedProcess:
    """Run a real binary with ``rendered/sys`` as /sys and ``rendered/dev`` as /dev."""
    nodes = "mknod" if mknod else "files"
    return subprocess.run(["unshare", "-m", "bash", "-c", _UNSHARE_SCRIPT, rendered, nodes, *argv],
                          capture_output=True, text=True, timeout=120)


def run_real_many(b: EmulatorBackend, argvs: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Render ``b`` once and run each ``argv`` (a real binary) against it;
    skips the test when the binaries cannot run here."""
    require_real_tools(*dict.fromkeys(argv[0] for argv in argvs))
    with tempfile.TemporaryDirectory(prefix="cxlemu-real-") as out:
        render(b, out)
        return [run_real(out, *argv) for argv in argvs]


def real_and_ours(b: EmulatorBackend, tool: str, argvs, ours):
    """``(argv, real, ours(b, *argv))`` for each argv of ``tool``: the real
    binary on a render of ``b``, ours on ``b`` itself."""
    reals = run_real_many(b, [[tool, *argv] for argv in argvs])
    return [(argv, real, ours(b, *argv)) for argv, real in zip(argvs, reals)]


# ---- running machines (machine/server.py) ------------------------------------------------------
import contextlib as _contextlib  # noqa: E402
import signal as _signal  # noqa: E402
import sys as _sys  # noqa: E402


@_contextlib.contextmanager
def running_machine(name: str, topology: str = "biscuitos-b"):
    """Create machine ``name`` under $CXLEMU_HOME, run it as a process
    (``cxlemu start``) and yield its directory; the process is stopped at the
    end (killed if it does not stop)."""
    from cxlemu.machine.store import Store, running_pid
    cx = [_sys.executable, "-m", "cxlemu"]
    st = Store()
    if not st.exists(name):
        subprocess.run(cx + ["create", name, "--topology", topology], check=True, capture_output=True)
    subprocess.run(cx + ["start", name], check=True, capture_output=True)
    path = st.path(name)
    try:
        yield path
    finally:
        subprocess.run(cx + ["stop", name], capture_output=True, timeout=120)
        pid = running_pid(path)
        if pid and pid > 0:
            os.kill(pid, _signal.SIGKILL)
# ---- the real tools over a live FUSE mount (machine/mount.py, cxlemu real) ------------------
#
# The conformance suite must not skip silently: in CI (``CI`` set, or
# ``CXLEMU_REQUIRE_REAL=1``, which .ci/run exports) a missing real binary or
# FUSE fails the test; locally it is skipped with a reason starting with
# REAL_SKIP_TAG, which tests/conftest.py counts in the terminal summary.

REAL_SKIP_TAG = "real-tools:"


def real_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("CXLEMU_REQUIRE_REAL") == "1"


def need_real(why: str | None) -> None:
    """Skip (locally) or fail (in CI) the calling test when ``why`` is set."""
    if not why:
        return
    if real_required():
        pytest.fail(f"{REAL_SKIP_TAG} required in CI but unavailable: {why}")
    pytest.skip(f"{REAL_SKIP_TAG} {why}")


def fuse_unavailable() -> str | None:
    from cxlemu.machine.mount import fuse_available
    return fuse_available()


def require_fuse() -> None:
    need_real(fuse_unavailable())


def require_real_ns(*tools: str) -> None:
    """What ``cxlemu real`` needs: FUSE, a private mount namespace, the binaries."""
    from cxlemu.machine.realns import RealError, namespace_command
    why = fuse_unavailable()
    if not why:
        try:
            namespace_command()
        except RealError as e:
            why = str(e)
    for t in tools:
        if not why and not shutil.which(t):
            why = f"{t} is not installed (apt-get install ndctl daxctl numactl pciutils)"
    need_real(why)


def preload_library() -> str | None:
    """helper "dax"'s interposer, when built (ioctl-based commands need it)."""
    import importlib.util
    if importlib.util.find_spec("cxlemu.preload") is None:
        return None
    from cxlemu import preload
    fn = getattr(preload, "library_path", None)
    return fn() if callable(fn) else None


def require_preload() -> None:
    """Ioctl-based real commands (read-labels, set-partition, health) need the interposer."""
    need_real(None if preload_library() else "the LD_PRELOAD interposer (cxlemu.preload) is not available")


@contextlib.contextmanager
def mounted(name: str, topology: str, tmp_path, with_handle: bool = False, **opts):
    """A new machine ``name`` (preset or TOML text) served on ``tmp_path/mnt``:
    yields ``(machine, lock, mountpoint)`` (plus the mount handle with
    ``with_handle``); unmounted and saved on exit."""
    import threading
    from cxlemu.machine.mount import mount
    from cxlemu.machine.store import Store
    require_fuse()
    st = Store()
    st.create(name, presets.text(topology) if topology in presets.names() else topology)
    mnt = tmp_path / f"mnt-{name}"
    mnt.mkdir()
    with st.open(name) as m:
        lock = threading.RLock()
        h = mount(m, lock, mnt, **opts)
        try:
            yield (m, lock, str(mnt), h) if with_handle else (m, lock, str(mnt))
        finally:
            h.unmount()


# ---- the cxlemu command as a process -----------------------------------------------------------------
CXLEMU = [__import__("sys").executable, "-m", "cxlemu"]


def cx(*args: str, check: bool = True, input: str | None = None,
       timeout: float | None = None) -> subprocess.CompletedProcess:
    """``cxlemu ARGS`` in a subprocess (this process's environment: its $CXLEMU_HOME)."""
    p = subprocess.run(CXLEMU + list(args), capture_output=True, text=True, env=os.environ.copy(), input=input,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"cxlemu {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def machine_digest(name: str) -> str:
    """SHA-256 over every file of machine ``name`` but its lock: equal before and
    after a command that must change nothing."""
    import hashlib
    from pathlib import Path
    home = Path(os.environ["CXLEMU_HOME"]) / "machines" / name
    h = hashlib.sha256()
    for f in sorted(home.rglob("*")):
        if f.is_file() and f.name != "lock":
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()
