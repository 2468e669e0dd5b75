"""A live FUSE mount of a machine's /sys, /proc and /dev.

``mount(machine, lock, mountpoint)`` serves :class:`~cxlemu.machine.fusefs.MachineFs`
on ``mountpoint`` from a thread of the calling process (the machine process,
or a test) and returns a :class:`MountHandle`; ``handle.unmount()`` stops it.
The binding is mfusepy's ctypes layer over Debian's libfuse3: mfusepy builds
the ``fuse_operations`` table and its wrappers, and this module drives the
session itself (``fuse_new`` / ``fuse_mount`` / a receive-and-process loop)
instead of ``fuse_main``, so that no signal handler is installed in the
hosting process and the loop can be stopped from another thread.

The mount is ``dev`` (the host's null, zero, tty ... served in its /dev open
the host's drivers; the machine's own nodes carry the emulated majors 60-63,
which the host has no driver for, so opening them directly fails with ENXIO
and the interposer of ``cxlemu real`` handles them in user space),
``nosuid``, ``default_permissions`` and, as root, ``allow_other``.

Crash safety: every mount is recorded in ``<machine>/mounts``.  If the
serving process dies, the kernel aborts the connection and the directory
answers ENOTCONN ("Transport endpoint is not connected"); the next
``mount()`` for the machine, or :func:`clean_stale_mounts`, detaches such
mounts (``fusermount3 -u DIR`` by hand does the same).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import logging
import os
import select
import shutil
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

from cxlemu.machine.fusefs import MachineFs

MNT_DETACH = 2
MOUNTS_FILE = "mounts"
#: the split layout's entries under its directory (see :func:`mount`)
SPLIT_ROOT, SPLIT_SYS, SPLIT_TRACING = ".root", "sys", ".tracing"

log = logging.getLogger(__name__)


class MountError(Exception):
    """A mount request that cannot be served (bad directory, no FUSE)."""


# ---------------------------------------------------------------------------------------------
# mount points
# ---------------------------------------------------------------------------------------------

def is_stale(path: str | os.PathLike) -> bool:
    """A FUSE mount whose server is gone answers ENOTCONN/ECONNABORTED (a
    lookup of a name that is not there reaches the server: nothing caches it)."""
    for p in (os.fspath(path), os.path.join(os.fspath(path), ".cxlemu-probe")):
        try:
            os.stat(p)
        except OSError as e:
            if e.errno in (errno.ENOTCONN, errno.ECONNABORTED):
                return True
    return False


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def detach(path: str | os.PathLike) -> bool:
    """Lazily unmount ``path`` (umount2 MNT_DETACH as root, else ``fusermount3 -u -z``)."""
    p = os.fsencode(os.fspath(path))
    if os.geteuid() == 0:
        if _libc().umount2(p, MNT_DETACH) == 0:
            return True
        return False
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        return False
    return subprocess.run([tool, "-u", "-z", os.fsdecode(p)], capture_output=True).returncode == 0


def is_mountpoint(path: str | os.PathLike) -> bool:
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if mp == path:
                    return True
    except OSError:
        pass
    return False


def check_mountpoint(path: str | os.PathLike) -> Path:
    """The directory a mount may use: it exists, is a directory and is empty
    (a stale mount left by a crashed server is detached first)."""
    p = Path(os.path.abspath(path))
    if is_stale(p):
        detach(p)
    if not p.exists():
        raise MountError(f"mount point {p} does not exist (mkdir it first)")
    if not p.is_dir():
        raise MountError(f"mount point {p} is not a directory")
    try:
        if any(p.iterdir()):
            raise MountError(f"mount point {p} is not empty")
    except PermissionError:
        raise MountError(f"mount point {p} is not readable") from None
    return p


def _records(machine_path: Path) -> list[str]:
    try:
        return [ln for ln in (machine_path / MOUNTS_FILE).read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        return []


def _write_records(machine_path: Path, paths: list[str]) -> None:
    f = machine_path / MOUNTS_FILE
    if paths:
        tmp = f.with_name(f".{MOUNTS_FILE}.tmp")
        tmp.write_text("".join(p + "\n" for p in paths))
        os.replace(tmp, f)
    else:
        try:
            f.unlink()
        except FileNotFoundError:
            pass


def clean_stale_mounts(machine_path: str | os.PathLike, keep: tuple[str, ...] = ()) -> list[str]:
    """Detach the recorded mounts of a machine whose server died; returns them.
    The machine process calls this when it starts."""
    mp = Path(machine_path)
    cleaned, alive = [], []
    for rec in _records(mp):
        if rec in keep:
            alive.append(rec)
        elif is_stale(rec):
            detach(rec)
            cleaned.append(rec)
        elif is_mountpoint(rec) and _is_cxlemu_mount(rec):
            alive.append(rec)
    _write_records(mp, alive)
    for rec in cleaned:
        _remove_split_entries(Path(rec))
    return cleaned


def _remove_split_entries(rec: Path) -> None:
    """After a dead split layout's connection was detached: its directory, and
    the ``proc``/``dev`` links once the last of them is gone."""
    if rec.name not in (SPLIT_ROOT, SPLIT_SYS, SPLIT_TRACING):
        return
    try:
        rec.rmdir()
    except OSError:
        return
    top = rec.parent
    if not any(os.path.lexists(top / n) for n in (SPLIT_ROOT, SPLIT_SYS, SPLIT_TRACING)):
        for n in ("proc", "dev"):
            link = top / n
            if link.is_symlink() and os.readlink(link) == f"{SPLIT_ROOT}/{n}":
                link.unlink()


def _is_cxlemu_mount(path: str) -> bool:
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if parts[4].replace("\\040", " ") == path:
                    sep = parts.index("-")
                    return parts[sep + 1].startswith("fuse") and parts[sep + 2].startswith("cxlemu")
    except (OSError, ValueError, IndexError):
        pass
    return False


def fuse_available() -> str | None:
    """None when this host can serve a FUSE mount, else the reason."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (load the fuse module; in a container pass --device /dev/fuse)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError, AttributeError) as e:
        return f"mfusepy/libfuse3 unavailable ({e}); apt-get install fuse3 and pip install mfusepy"
    if os.geteuid() != 0 and not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return "fusermount3 is missing (apt-get install fuse3)"
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
        os.close(fd)
    except OSError as e:
        return f"/dev/fuse cannot be opened: {e.strerror}"
    return None


# ---------------------------------------------------------------------------------------------
# the libfuse3 session, driven from a thread
# ---------------------------------------------------------------------------------------------

class _fuse_args(ctypes.Structure):
    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)), ("allocated", ctypes.c_int)]


class _fuse_buf(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p),
                ("fd", ctypes.c_int), ("pos", ctypes.c_long), ("mem_size", ctypes.c_size_t),
                ("_pad", ctypes.c_uint64 * 4)]


def _lib():
    import mfusepy
    lib = mfusepy._libfuse
    lib.fuse_new_31.restype = ctypes.c_void_p
    lib.fuse_new_31.argtypes = [ctypes.POINTER(_fuse_args), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.fuse_mount.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.fuse_unmount.argtypes = [ctypes.c_void_p]
    lib.fuse_destroy.argtypes = [ctypes.c_void_p]
    lib.fuse_get_session.restype = ctypes.c_void_p
    lib.fuse_get_session.argtypes = [ctypes.c_void_p]
    lib.fuse_session_fd.argtypes = [ctypes.c_void_p]
    lib.fuse_session_exit.argtypes = [ctypes.c_void_p]
    lib.fuse_session_exited.argtypes = [ctypes.c_void_p]
    lib.fuse_session_receive_buf.argtypes = [ctypes.c_void_p, ctypes.POINTER(_fuse_buf)]
    lib.fuse_session_process_buf.argtypes = [ctypes.c_void_p, ctypes.POINTER(_fuse_buf)]
    lib.fuse_notify_poll.argtypes = [ctypes.c_void_p]
    lib.fuse_pollhandle_destroy.argtypes = [ctypes.c_void_p]
    lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return mfusepy, lib


#: libfuse 3.x ``struct fuse_session`` (lib/fuse_i.h) begins ``char *mountpoint;
#: volatile int exited; int fd;`` then, depending on the version, a custom-I/O pointer,
#: ``struct mount_opts *mo; int debug; int deny_others;`` and ``struct fuse_lowlevel_ops
#: op``, whose 21st operation is ``opendir``
_SE_FD, _SE_OPS_CANDIDATES, _OPENDIR, _OPS_CHECKED = 12, (32, 40), 20, 24
#: the operations of the first 24 that libfuse's high-level layer may leave NULL:
#: ``write`` (it implements ``write_buf``); everything else, ``init`` first, must be set
_OPS_MAYBE_NULL = frozenset({16})


def _cache_listings(mfusepy, se: int, sfd: int):
    """Let the host kernel cache this connection's directory listings.

    libfuse's high-level ``opendir`` (lib/fuse.c fuse_lib_opendir) replies with
    the low-level ``fuse_file_info`` it was given and never copies
    ``cache_readdir``/``keep_cache`` into it from the file system's answer, so
    a path-based file system cannot ask for FOPEN_CACHE_DIR.  This wraps the
    session's ``opendir`` to set both bits before libfuse replies.  The session
    is libfuse's private structure: its layout is checked first (``fd`` where
    libfuse 3.14 keeps it, and the first 24 operations all pointing into
    libfuse's own code) and nothing is changed when it differs.  Returns what
    must stay alive with the session, or None."""
    if ctypes.c_int.from_address(se + _SE_FD).value != sfd:
        return None
    lo_hi = _text_range(mfusepy._libfuse._name)
    if lo_hi is None:
        return None

    def code(x) -> bool:
        return bool(x) and lo_hi[0] <= x < lo_hi[1]
    for off in _SE_OPS_CANDIDATES:
        ops = (ctypes.c_void_p * _OPS_CHECKED).from_address(se + off)
        # the table (libfuse's own code, or NULL for the few it leaves out, such as
        # ``write`` in favour of ``write_buf``), starting there and not before
        missing = [i for i, x in enumerate(ops) if not x]
        if all(code(x) for x in ops if x) and set(missing) <= _OPS_MAYBE_NULL \
                and not code(ctypes.c_void_p.from_address(se + off - 8).value):
            break
    else:
        return None
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(mfusepy.fuse_file_info))
    original = proto(ops[_OPENDIR])

    def opendir(req, ino, llfi):
        fi = llfi.contents
        fi.cache_readdir = 1          # FOPEN_CACHE_DIR: the kernel keeps the listing ...
        fi.keep_cache = 1             # ... across opens (dropped with the inode's pages)
        original(req, ino, llfi)

    wrapper = proto(opendir)
    ops[_OPENDIR] = ctypes.cast(wrapper, ctypes.c_void_p).value
    return original, wrapper


def _text_range(libname: str | None) -> tuple[int, int] | None:
    """The address range of ``libname``'s executable mappings in this process."""
    if not libname:
        return None
    base = os.path.basename(os.path.realpath(libname)) if os.path.exists(libname) else libname
    lo = hi = None
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and "x" in parts[1] and os.path.basename(parts[5]).startswith(base.split(".so")[0]):
                    a, b = (int(x, 16) for x in parts[0].split("-"))
                    lo = a if lo is None else min(lo, a)
                    hi = b if hi is None else max(hi, b)
    except OSError:
        return None
    return None if lo is None else (lo, hi)


def _fuse_class():
    """mfusepy.FUSE without its ``fuse_main``: builds the operations table only."""
    mfusepy, lib = _lib()

    class SessionFUSE(mfusepy.FUSE):
        def __init__(self, operations, raw_fi: bool = True):   # noqa: D401 - replaces FUSE.__init__
            self.operations = operations
            self.prefix = os.fsencode(getattr(operations, "prefix", "") or "")
            self.raw_fi = raw_fi
            self.encoding, self.errors = "utf-8", "surrogateescape"
            self.use_ns = True
            self._FUSE__critical_exception = None
            self._libfuse2_options_moved_into_libfuse3_config = {}
            ops = mfusepy.fuse_operations()
            for fld in mfusepy.fuse_operations._fields_:
                name, proto = fld[:2]
                check = name[1:] if name in ("ftruncate", "fgetattr") else name
                if getattr(operations, check, None) is None and check != "init":
                    continue
                if not hasattr(proto, "argtypes"):
                    continue
                method = getattr(self, name + "_fuse_3", None) or getattr(self, name, None)
                if method is None:
                    continue
                setattr(ops, name, proto(functools.partial(self._wrapper, method)))
            self.fuse_ops = ops

        def _wrapper(self, func, *args, **kwargs):
            # a connection serving a subtree (fs.prefix) names paths from its root
            pre = self.prefix
            if pre and args and isinstance(args[0], bytes):
                args = (pre + args[0] if args[0] != b"/" else pre, *args[1:])
            # mfusepy turns an unexpected exception into EINVAL and logs it;
            # count them too, so that tests can insist there are none
            try:
                return func(*args, **kwargs) or 0
            except OSError as e:
                if isinstance(e.errno, int) and e.errno > 0:
                    return -e.errno
                self.operations.stats.crashes.append(f"{func.__name__}: {e!r}")
                return -errno.EINVAL
            except Exception as e:
                self.operations.stats.crashes.append(f"{func.__name__}: {e!r}")
                log.exception("FUSE operation %s failed", func.__name__)
                return -errno.EIO

        def readdir_fuse_3(self, path, buf, filler, offset, fip, flags):
            st = mfusepy.c_stat()
            for name, mode in self.operations.listing(path.decode(self.encoding, self.errors)):
                st.st_mode = mode
                if filler(buf, name, st, 0, 0) != 0:
                    break
            return 0

        def fgetattr(self, path, buf, fip):
            # the hot path: a cached struct stat image copied out in one go
            img = self.operations.stat_bytes(path.decode(self.encoding, self.errors), mfusepy.c_stat,
                                             held=bool(fip))
            ctypes.memmove(buf, img, len(img))
            return 0

    return SessionFUSE


class _Connection:
    """One FUSE connection of a mount: its operations, libfuse session and loop thread."""

    def __init__(self, mountpoint: Path, fs: MachineFs):
        self.mountpoint = mountpoint
        self.fs = fs
        self.thread: threading.Thread | None = None
        self.wake_r, self.wake_w = os.pipe()
        self.stop = False
        self.keep: Any = None               # the ctypes objects libfuse points into
        self.error: BaseException | None = None

    def unmount(self, timeout: float) -> None:
        if self.thread is not None:
            self.stop = True
            try:
                os.write(self.wake_w, b"x")
            except OSError:
                pass
            self.thread.join(timeout)
            if self.thread.is_alive():    # pragma: no cover - the loop is stuck in a callback
                detach(self.mountpoint)
                self.thread.join(timeout)
            self.thread = None
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.wake_r = self.wake_w = -1


class MountHandle:
    """A served mount: ``unmount()`` stops the loops, detaches the mounts and
    closes the connections (programs still inside get ENOTCONN).

    ``connections``: the root connection (``/``, ``/proc``, ``/dev``), then,
    in the page-cache layout, ``/sys`` and tracefs (see :func:`mount`);
    ``fs`` is the root connection's operations."""

    def __init__(self, mountpoint: Path, machine_path: Path | None):
        self.mountpoint = mountpoint
        self.machine_path = machine_path
        self.connections: list[_Connection] = []
        self.made: list[Path] = []          # the split layout's directories and links

    @property
    def split(self) -> bool:
        return bool(self.made)

    def layout(self) -> dict[str, str | None]:
        """Where ``cxlemu real`` finds the trees: ``root`` (serving /proc and /dev,
        and /sys unless ``sys`` is given) and, in the split layout, ``sys`` and
        ``tracing`` (machine/realns.py binds them)."""
        if not self.split:
            return {"root": str(self.mountpoint), "sys": None, "tracing": None}
        mp = self.mountpoint
        tracing = mp / SPLIT_TRACING
        return {"root": str(mp / SPLIT_ROOT), "sys": str(mp / SPLIT_SYS),
                "tracing": str(tracing) if any(c.mountpoint == tracing for c in self.connections) else None}

    @property
    def fs(self) -> MachineFs:
        return self.connections[0].fs

    @property
    def error(self) -> BaseException | None:
        return next((c.error for c in self.connections if c.error is not None), None)

    @property
    def alive(self) -> bool:
        return bool(self.connections) and all(c.thread is not None and c.thread.is_alive()
                                              for c in self.connections)

    def crashes(self) -> list[str]:
        return [x for c in self.connections for x in c.fs.stats.crashes]

    def unmount(self, timeout: float = 10.0) -> None:
        if not self.connections and not self.made:
            return
        mine = [str(c.mountpoint) for c in self.connections]
        for c in reversed(self.connections):
            c.unmount(timeout)
        self.connections = []
        for p in reversed(self.made):
            try:
                if p.is_symlink():
                    p.unlink()
                else:
                    p.rmdir()
            except OSError as e:       # pragma: no cover - still busy: left for the next mount
                log.debug("cannot remove %s: %s", p, e)
        self.made = []
        if self.machine_path is not None:
            recs = [r for r in _records(self.machine_path) if r not in mine]
            _write_records(self.machine_path, recs)

    def __enter__(self) -> "MountHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.unmount()


#: FUSE_NOTIFY_INC_EPOCH (include/uapi/linux/fuse.h, protocol 7.44): drop every cached dentry
FUSE_NOTIFY_INC_EPOCH = 8
#: FUSE_NOTIFY_INVAL_INODE: with offset -1 only the inode's attributes (fs/fuse/inode.c
#: fuse_reverse_inval_inode drops pages only for offset >= 0, waiting for their locks)
FUSE_NOTIFY_INVAL_INODE = 2
#: struct fuse_in_header: len u32, opcode u32, unique u64, nodeid u64 ...
_IN_NODEID = 16
#: fuse_buf.flags: the request was spliced into a pipe, not copied to ``mem``
FUSE_BUF_IS_FD = 1 << 1
#: where tracefs lives in the machine's tree (its own connection: trace_pipe is a stream)
TRACEFS_DIR = "/sys/kernel/tracing"


def page_cache_supported() -> bool:
    """Whether this host's FUSE can keep /sys contents in its page cache and
    be told to drop them (FUSE_NOTIFY_INC_EPOCH: Linux 6.16+)."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 16)


def mount(machine: Any, lock: Any, mountpoint: str | os.PathLike, *, host_dev: bool = True,
          host_dev_dir: str | None = None, debug: bool = False,
          cache_timeout: float | None = None, page_cache: bool = False) -> MountHandle:
    """Serve ``machine``'s /sys, /proc and /dev on ``mountpoint`` from new
    threads; every request holds ``lock`` (which the caller must not hold).
    Raises :class:`MountError` for a missing, non-directory or non-empty mount
    point or when FUSE is unavailable.

    ``host_dev_dir``: where ``cxlemu real`` binds the host's /dev (the
    mount's /dev/pts, shm, mqueue and hugepages link into it); ``cache_timeout``:
    the host kernel's lookup cache lifetime (0 disables it).

    Default (*exact*): one connection on ``mountpoint`` serves everything and
    every read reaches the machine.

    ``page_cache=True`` (what ``cxlemu real`` uses where :func:`page_cache_supported`):
    the *split* layout, three connections side by side in ``mountpoint``, none
    mounted inside another (a dentry the FUSE epoch invalidates would take a
    mount on it away with it, fs/dcache.c d_invalidate):

    * ``.root``: the exact connection, serving everything (``proc`` and ``dev``
      are links into it);
    * ``sys``: /sys, its attribute contents kept in the host's page cache
      (machine/fusefs.py);
    * ``.tracing``: tracefs (exact: ``trace_pipe`` is a stream), which
      ``cxlemu real`` binds on /sys/kernel/tracing (machine/realns.py), as
      Linux mounts tracefs on its own.  Under ``sys`` itself the tracefs files
      are the page-cache connection's: read ``trace_pipe`` through ``.tracing``."""
    why = fuse_available()
    if why:
        raise MountError(f"FUSE is unavailable: {why}")
    mpath = getattr(machine, "path", None)
    if mpath is not None:
        clean_stale_mounts(mpath)
    mp = check_mountpoint(mountpoint)
    if page_cache and cache_timeout == 0:
        page_cache = False
    handle = MountHandle(mp, Path(mpath) if mpath is not None else None)
    common = dict(host_dev=host_dev, host_dev_dir=host_dev_dir, debug=debug, cache_timeout=cache_timeout)
    try:
        if not page_cache:
            _connect(handle, machine, lock, mp, "", False, **common)
        else:
            with lock:
                has_tracing = machine.backend().isdir(TRACEFS_DIR)
            parts = [(SPLIT_ROOT, "", False), (SPLIT_SYS, "/sys", True)]
            if has_tracing:
                parts.append((SPLIT_TRACING, TRACEFS_DIR, False))
            for name, prefix, cached in parts:
                (mp / name).mkdir()
                handle.made.append(mp / name)
                _connect(handle, machine, lock, mp / name, prefix, cached, **common)
            for name in ("proc", "dev"):
                (mp / name).symlink_to(f"{SPLIT_ROOT}/{name}")
                handle.made.append(mp / name)
    except BaseException:
        handle.unmount()
        raise
    if handle.machine_path is not None:
        mine = [str(c.mountpoint) for c in handle.connections]
        recs = [r for r in _records(handle.machine_path) if r not in mine] + mine
        _write_records(handle.machine_path, recs)
    return handle


def _connect(handle: MountHandle, machine: Any, lock: Any, mp: Path, prefix: str, page_cache: bool, *,
             host_dev: bool, host_dev_dir: str | None, debug: bool, cache_timeout: float | None) -> None:
    """Mount one connection serving the VFS directory ``prefix`` on ``mp``
    and start its loop; appended to ``handle.connections``."""
    mfusepy, lib = _lib()

    def notify_poll(ph, wake: bool = True) -> None:
        if wake:
            lib.fuse_notify_poll(ph)
        lib.fuse_pollhandle_destroy(ph)

    sfd_box: list[int] = []

    def notify(code: int, payload: bytes = b"") -> None:
        """A notification to the host kernel: struct fuse_out_header with the
        code in ``error`` and ``unique`` 0, then the code's own structure."""
        if sfd_box:
            try:
                os.write(sfd_box[0], struct.pack("<IiQ", 16 + len(payload), code, 0) + payload)
            except OSError as e:     # the connection is going away; ENOENT: an inode it forgot
                log.debug("FUSE notification %d failed: %s", code, e)

    def invalidate() -> None:
        if fs.kernel_caching:
            notify(FUSE_NOTIFY_INC_EPOCH)

    def invalidate_attrs(nodeid: int) -> None:
        notify(FUSE_NOTIFY_INVAL_INODE, struct.pack("<Qqq", nodeid, -1, 0))

    fbox: list[int] = []

    def invalidate_path(path: str) -> None:
        if fbox:
            lib.fuse_invalidate_path(fbox[0], os.fsencode(path))

    fs = MachineFs(machine, lock, host_dev=host_dev and not prefix, host_dev_dir=host_dev_dir,
                   host_nodes_as_links=os.geteuid() != 0,     # fusermount3 mounts are always nodev
                   invalidate=invalidate, invalidate_path=invalidate_path, notify_poll=notify_poll,
                   invalidate_attrs=invalidate_attrs, prefix=prefix, page_cache=page_cache)
    if cache_timeout is not None:
        fs.cache_timeout = cache_timeout
    fuse = _fuse_class()(fs)
    name = getattr(machine, "name", "machine")
    # "dev": the host's null, zero, tty ... work through the mount; the
    # machine's own nodes carry majors the host has no driver for (ENXIO)
    opts = [f"fsname=cxlemu:{name}", "subtype=cxlemu", "default_permissions", "dev"]
    if os.geteuid() == 0:
        opts.append("allow_other")
    argv_l = [b"cxlemu", b"-o", ",".join(opts).encode()]
    if debug:
        argv_l.append(b"-d")
    argv = (ctypes.c_char_p * (len(argv_l) + 1))(*argv_l, None)
    args = _fuse_args(len(argv_l), argv, 0)
    f = lib.fuse_new_31(ctypes.byref(args), ctypes.byref(fuse.fuse_ops), ctypes.sizeof(fuse.fuse_ops), None)
    if not f:
        raise MountError("libfuse could not create a session (fuse_new failed)")
    if lib.fuse_mount(f, os.fsencode(str(mp))) != 0:
        lib.fuse_destroy(f)
        raise MountError(f"cannot mount on {mp} (fuse_mount failed; see the message above)")
    fbox.append(f)
    c = _Connection(mp, fs)
    c.keep = (fuse, argv, args)      # keep the ctypes objects alive
    se = lib.fuse_get_session(f)
    sfd = lib.fuse_session_fd(se)
    sfd_box.append(sfd)
    if page_cache and fs.cache_timeout:
        c.keep = (c.keep, _cache_listings(mfusepy, se, sfd))

    def loop() -> None:
        buf = _fuse_buf()
        poller = select.poll()
        poller.register(sfd, select.POLLIN)
        poller.register(c.wake_r, select.POLLIN)
        try:
            while not c.stop and not lib.fuse_session_exited(se):
                try:
                    ready = poller.poll(1000)
                except InterruptedError:
                    continue
                if c.stop:
                    break
                if not ready:
                    continue
                if not any(fd == sfd for fd, _ in ready):
                    continue
                res = lib.fuse_session_receive_buf(se, ctypes.byref(buf))
                if res == -errno.EINTR or res == -errno.EAGAIN:
                    continue
                if res <= 0:
                    break
                # the node id the request is about: the page-cache mode invalidates
                # the attributes of the files it filled by node id
                fs.nodeid = 0 if buf.flags & FUSE_BUF_IS_FD or res < 24 or not buf.mem else \
                    ctypes.c_uint64.from_address(buf.mem + _IN_NODEID).value
                lib.fuse_session_process_buf(se, ctypes.byref(buf))
        except BaseException as e:  # pragma: no cover - reported through handle.error
            c.error = e
        finally:
            fs.detach()
            fbox.clear()
            sfd_box.clear()
            lib.fuse_session_exit(se)
            lib.fuse_unmount(f)          # umount2(MNT_DETACH) as root, fusermount3 -u otherwise
            lib.fuse_destroy(f)
            if buf.mem:
                _libc().free(ctypes.c_void_p(buf.mem))

    t = threading.Thread(target=loop, name=f"cxlemu-fuse:{mp}", daemon=True)
    c.thread = t
    handle.connections.append(c)
    t.start()
