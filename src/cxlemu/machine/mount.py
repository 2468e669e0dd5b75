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
    return cleaned


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


def _fuse_class():
    """mfusepy.FUSE without its ``fuse_main``: builds the operations table only."""
    mfusepy, lib = _lib()

    class SessionFUSE(mfusepy.FUSE):
        def __init__(self, operations, raw_fi: bool = True):   # noqa: D401 - replaces FUSE.__init__
            self.operations = operations
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

        def opendir(self, path, fip):
            fi = fip.contents
            fi.fh = self.operations.opendir(path.decode(self.encoding, self.errors))
            if self.operations.kernel_caching:
                # the host kernel keeps the listing until the model changes
                # (then MachineFs drops it with fuse_invalidate_path)
                fi.cache_readdir = 1
                fi.keep_cache = 1
            return 0

        def readdir_fuse_3(self, path, buf, filler, offset, fip, flags):
            st = mfusepy.c_stat()
            for name, mode in self.operations.listing(path.decode(self.encoding, self.errors)):
                st.st_mode = mode
                if filler(buf, name, st, 0, 0) != 0:
                    break
            return 0

        def fgetattr(self, path, buf, fip):
            # the hot path: a cached struct stat image copied out in one go
            img = self.operations.stat_bytes(path.decode(self.encoding, self.errors), mfusepy.c_stat)
            ctypes.memmove(buf, img, len(img))
            return 0

    return SessionFUSE


class MountHandle:
    """A served mount: ``unmount()`` stops the loop, detaches the mount and
    closes the connection (programs still inside it then get ENOTCONN)."""

    def __init__(self, mountpoint: Path, fs: MachineFs, machine_path: Path | None):
        self.mountpoint = mountpoint
        self.fs = fs
        self.machine_path = machine_path
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self._fuse = None
        self.error: BaseException | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def unmount(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._stop = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._thread.join(timeout)
        if self._thread.is_alive():    # pragma: no cover - the loop is stuck in a callback
            detach(self.mountpoint)
            self._thread.join(timeout)
        self._thread = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.machine_path is not None:
            recs = [r for r in _records(self.machine_path) if r != str(self.mountpoint)]
            _write_records(self.machine_path, recs)

    def __enter__(self) -> "MountHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.unmount()


#: FUSE_NOTIFY_INC_EPOCH (include/uapi/linux/fuse.h, protocol 7.44): drop every cached dentry
FUSE_NOTIFY_INC_EPOCH = 8


def mount(machine: Any, lock: Any, mountpoint: str | os.PathLike, *, host_dev: bool = True,
          host_dev_dir: str | None = None, debug: bool = False,
          cache_timeout: float | None = None) -> MountHandle:
    """Serve ``machine``'s /sys, /proc and /dev on ``mountpoint`` from a new
    thread; every request holds ``lock``.  Raises :class:`MountError` for a
    missing, non-directory or non-empty mount point or when FUSE is unavailable.

    ``host_dev_dir``: where ``cxlemu real`` binds the host's /dev (the
    mount's /dev/pts, shm, mqueue and hugepages link into it); ``cache_timeout``:
    the host kernel's lookup cache lifetime (0 disables it)."""
    why = fuse_available()
    if why:
        raise MountError(f"FUSE is unavailable: {why}")
    mpath = getattr(machine, "path", None)
    if mpath is not None:
        clean_stale_mounts(mpath)
    mp = check_mountpoint(mountpoint)
    mfusepy, lib = _lib()
    handle_box: list[MountHandle] = []

    def notify_poll(ph, wake: bool = True) -> None:
        if wake:
            lib.fuse_notify_poll(ph)
        lib.fuse_pollhandle_destroy(ph)

    sfd_box: list[int] = []

    def invalidate() -> None:
        if sfd_box and fs.kernel_caching:
            try:
                os.write(sfd_box[0], struct.pack("<IiQ", 16, FUSE_NOTIFY_INC_EPOCH, 0))
            except OSError as e:     # the connection is going away
                log.debug("FUSE epoch notification failed: %s", e)

    fbox: list[int] = []

    def invalidate_path(path: str) -> None:
        if fbox:
            lib.fuse_invalidate_path(fbox[0], os.fsencode(path))

    fs = MachineFs(machine, lock, host_dev=host_dev, host_dev_dir=host_dev_dir,
                   host_nodes_as_links=os.geteuid() != 0,     # fusermount3 mounts are always nodev
                   invalidate=invalidate, invalidate_path=invalidate_path, notify_poll=notify_poll)
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
    handle = MountHandle(mp, fs, Path(mpath) if mpath is not None else None)
    handle._fuse = (fuse, argv, args)      # keep the ctypes objects alive
    handle_box.append(handle)
    se = lib.fuse_get_session(f)
    sfd = lib.fuse_session_fd(se)
    sfd_box.append(sfd)

    def loop() -> None:
        buf = _fuse_buf()
        poller = select.poll()
        poller.register(sfd, select.POLLIN)
        poller.register(handle._wake_r, select.POLLIN)
        try:
            while not handle._stop and not lib.fuse_session_exited(se):
                try:
                    ready = poller.poll(1000)
                except InterruptedError:
                    continue
                if handle._stop:
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
                lib.fuse_session_process_buf(se, ctypes.byref(buf))
        except BaseException as e:  # pragma: no cover - reported through handle.error
            handle.error = e
        finally:
            fs.detach()
            fbox.clear()
            lib.fuse_session_exit(se)
            lib.fuse_unmount(f)          # umount2(MNT_DETACH) as root, fusermount3 -u otherwise; closes the fd
            lib.fuse_destroy(f)
            if buf.mem:
                _libc().free(ctypes.c_void_p(buf.mem))

    t = threading.Thread(target=loop, name=f"cxlemu-fuse:{mp}", daemon=True)
    handle._thread = t
    t.start()
    if handle.machine_path is not None:
        recs = [r for r in _records(handle.machine_path) if r != str(mp)] + [str(mp)]
        _write_records(handle.machine_path, recs)
    return handle
