"""``cxlemu real``: a program in a private mount namespace over a machine's mount.

Layout inside the namespace (``M`` is the machine's FUSE mount, ``H`` an
empty directory of the machine's run directory):

* the host's /dev is bound (recursively, with its pts, shm, mqueue and
  hugepages mounts) on ``H``;
* ``M/sys`` is bound on /sys; with the split layout of machine/mount.py
  (what a running machine serves), /sys is instead a tmpfs whose entries
  are the page-cache connection's, bound one by one (and /sys/kernel
  likewise), with tracefs's own connection bound on /sys/kernel/tracing;
* every file of the machine's /proc (iomem, meminfo, zoneinfo, cmdline,
  version, sys/vm/..., whatever the model serves) is bound on the host's
  /proc file of the same name when the host has one; the rest of /proc
  (self, pid directories, cpuinfo ...) stays the host's;
* ``M/dev`` is bound on /dev: the machine's nodes (cxl/memN, daxX.Y, nmemN,
  ndctlN ...) appear and disappear live, the host's null, zero, full,
  random, urandom and tty are served as device nodes with the host's
  numbers (the mount is ``dev``), and /dev/pts, shm, mqueue, hugepages are
  links into ``H``.  No mount sits on a dentry of the FUSE mount, so the
  mount can drop the host kernel's dentry cache at any time.

As root the namespace is ``unshare -m``; as another user ``unshare -Urm``
(an unprivileged user namespace) when the host allows it.  The program's
exit status and streams are its own.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import field
from pathlib import Path

from cxlemu.util.lazydc import dataclass


class RealError(Exception):
    """``cxlemu real`` cannot run here (no namespace, no FUSE ...)."""


@dataclass
class Layout:
    """What the namespace is built from: ``mountpoint`` serves /proc and /dev
    (and /sys unless ``sys_dir`` is given: the split layout of
    machine/mount.py, whose tracefs is ``tracing_dir``)."""
    mountpoint: str
    host_dev: str
    proc_files: list[str] = field(default_factory=list)
    sys_dir: str | None = None
    tracing_dir: str | None = None

    @classmethod
    def of(cls, layout: dict, host_dev: str) -> "Layout":
        """From a mount handle's ``layout()`` (machine/mount.py)."""
        root = layout["root"]
        return cls(root, host_dev, proc_files_at(root), layout.get("sys"), layout.get("tracing"))


def run_dirs(machine_path: Path) -> tuple[Path, Path]:
    """(mount point, host /dev bind point) under ``<machine>/run``."""
    run = Path(machine_path) / "run"
    mnt, hd = run / "root", run / "hostdev"
    for d in (mnt, hd):
        d.mkdir(parents=True, exist_ok=True)
    return mnt, hd


def shared_run_dirs(machine_path: str | os.PathLike) -> tuple[str, str]:
    """(mount point, host /dev bind point) of the mount a running machine's
    process keeps for every ``cxlemu real`` run: ``<machine>/run/shared``."""
    shared = Path(machine_path) / "run" / "shared"
    mnt, hd = shared / "mnt", shared / "hostdev"
    for d in (mnt, hd):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:          # a mount left by a dead process: the next mount detaches it
            pass
    return str(mnt), str(hd)


def proc_files_at(mountpoint: str) -> list[str]:
    """Every file of the machine's /proc under ``MOUNT/proc``, relative (``sys/vm/swappiness``)."""
    root = os.path.join(mountpoint, "proc")
    out: list[str] = []
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        for f in files:
            if not os.path.islink(os.path.join(d, f)):
                out.append(f if rel == "." else f"{rel}/{f}")
    return sorted(out)


@functools.lru_cache(maxsize=None)
def _userns_refused() -> str | None:
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    p = subprocess.run(["unshare", "-Urm", "true"], capture_output=True, text=True)
    return None if p.returncode == 0 else p.stderr.strip() or f"exit {p.returncode}"


def namespace_command() -> list[str]:
    """The ``unshare`` invocation that gives a private mount namespace here."""
    if not shutil.which("unshare"):
        raise RealError("cxlemu real needs unshare (apt-get install util-linux)")
    if os.geteuid() == 0:
        return ["unshare", "-m", "--propagation", "private"]
    why = _userns_refused()
    if why:
        raise RealError("cxlemu real needs a private mount namespace: run it as root, or allow "
                        "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and "
                        f"user.max_user_namespaces > 0; AppArmor may also restrict them): {why}")
    return ["unshare", "-Urm", "--propagation", "private"]


# Runs inside the namespace (python -I -S): the binds, then exec of the program.
_HELPER = r"""
import ctypes, json, os, sys
MS_BIND, MS_REC = 0x1000, 0x4000
libc = ctypes.CDLL(None, use_errno=True)
spec = json.loads(sys.argv[1])
argv = sys.argv[2:]
def bind(src, dst, flags=MS_BIND):
    if libc.mount(src.encode(), dst.encode(), None, flags, None) != 0:
        e = ctypes.get_errno()
        sys.stderr.write("cxlemu real: mount %s on %s: %s\n" % (src, dst, os.strerror(e)))
        sys.exit(125)
def mount_fs(fstype, dst):
    return libc.mount(b"nodev", dst.encode(), fstype.encode(), 0, None) == 0
def bind_entry(src, dst):
    # a tmpfs stand-in of the right kind, then the machine's entry bound on it
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
    elif os.path.isdir(src):
        os.mkdir(dst)
        bind(src, dst)
    else:
        open(dst, "w").close()
        bind(src, dst)
M = spec["mountpoint"]
S = spec.get("sys") or M + "/sys"
T = spec.get("tracing")
bind("/dev", spec["host_dev"], MS_BIND | MS_REC)
# tracefs and debugfs are filesystems of their own: libtracefs (cxl monitor, cxl list -L) and
# damo find them in /proc/mounts by type.  A real, empty instance of each is mounted first so
# that /proc/mounts names it, then the machine's directory is bound over it (what programs
# read and write is the model's).  Best effort: without the real mount the bind still serves.
if spec.get("sys"):
    # The split layout: the machine's /sys keeps its contents in the page cache and must
    # carry no mount on any of its own entries (a change drops every entry, and a mount on
    # one with it).  So /sys here is a tmpfs whose entries are the machine's, bound one by
    # one, and /sys/kernel likewise, with tracefs (its own connection) and debugfs in place.
    if libc.mount(b"sysfs", b"/sys", b"tmpfs", 0, b"mode=0755") != 0:
        sys.stderr.write("cxlemu real: mount tmpfs on /sys: %s\n" % os.strerror(ctypes.get_errno()))
        sys.exit(125)
    for name in os.listdir(S):
        if name != "kernel":
            bind_entry(S + "/" + name, "/sys/" + name)
    os.mkdir("/sys/kernel")
    for name in os.listdir(S + "/kernel"):
        dst = "/sys/kernel/" + name
        if name == "tracing" and T:
            os.mkdir(dst)
            mount_fs("tracefs", dst)
            bind(T, dst)
        elif name == "debug":
            os.mkdir(dst)
            mount_fs("debugfs", dst)
            bind(S + "/kernel/debug", dst)
        else:
            bind_entry(S + "/kernel/" + name, dst)
else:
    bind(S, "/sys")
    for sub, fstype in (("tracing", "tracefs"), ("debug", "debugfs")):
        dst = "/sys/kernel/" + sub
        if os.path.isdir(S + "/kernel/" + sub):
            mount_fs(fstype, dst)
            bind(S + "/kernel/" + sub, dst)
for f in spec["proc_files"]:
    dst = "/proc/" + f
    if os.path.isfile(dst):
        bind(M + "/proc/" + f, dst)
bind(M + "/dev", "/dev")
try:
    os.execvp(argv[0], argv)
except FileNotFoundError:
    sys.stderr.write("cxlemu real: %s: command not found\n" % argv[0])
    sys.exit(127)
except PermissionError:
    sys.stderr.write("cxlemu real: %s: permission denied\n" % argv[0])
    sys.exit(126)
"""


def command(layout: Layout, argv: list[str]) -> list[str]:
    """The full command line that runs ``argv`` in the namespace."""
    spec = json.dumps({"mountpoint": layout.mountpoint, "host_dev": layout.host_dev,
                       "proc_files": layout.proc_files, "sys": layout.sys_dir, "tracing": layout.tracing_dir})
    return [*namespace_command(), sys.executable, "-I", "-S", "-c", _HELPER, spec, *argv]


def run(layout: Layout, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``argv`` in the namespace, streams inherited; returns its exit status
    (128+N when killed by signal N, as a shell reports it)."""
    cmd = command(layout, argv)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)   # the terminal's ^C is the program's
    try:
        p = subprocess.Popen(cmd, env=env)
        rc = p.wait()
    finally:
        signal.signal(signal.SIGINT, old)
    return 128 - rc if rc < 0 else rc
