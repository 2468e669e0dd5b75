"""The machine's /sys, /proc and /dev as FUSE operations.

:class:`MachineFs` translates the requests of the host kernel's FUSE client
into calls on the machine's sysfs backend (``machine.backend()``), holding
the machine's lock for each request.  It keeps the semantics a program sees
on a real kernfs/procfs (fs/kernfs/file.c, fs/sysfs/file.c, fs/seq_file.c):

* an attribute reports ``st_size`` 4096 (sysfs) or 0 (procfs) whatever it
  holds; a read at offset 0 calls ``show`` afresh, a read further on is
  served from the buffer of the last ``show`` on that open file (seq_file);
* every ``write(2)`` is one ``store`` of at most 4096 bytes (longer writes
  are cut, as kernfs_fop_write_iter does); the kernel's errno comes back to
  the writer and nothing changes;
* opening for writing a file without ``store`` (or for reading one without
  ``show``) fails with EACCES, as kernfs_fop_open does; creating entries
  fails with EACCES and removing, renaming, linking or chmod with EPERM;
* symlinks read back relative (``../../devices/...``), directories list in
  kernfs hash order; an open file whose attribute went away reads ENODEV;
* /dev serves the machine's nodes as character devices with their
  ``st_rdev`` (the interposer recognises them by their major), plus the
  host's essential nodes (null, zero, full, random, urandom, tty) with the
  host's numbers (as links into ``host_dev_dir`` when the mount cannot be
  ``dev``: unprivileged mounts), and ``pts``, ``shm``, ``mqueue``,
  ``hugepages`` as links into the host's /dev that ``cxlemu real`` binds at
  ``host_dev_dir``;
* tracefs's consuming files (``trace_pipe``, ``trace_pipe_raw``: VFile
  ``stream``) are non-seekable: every read(2) takes what is there, at any
  offset (what one read leaves over is served first by the next), and
  ``poll`` says POLLIN only when ``readable()``; a sleeping poller is woken
  whenever the model changes (a trace record is a change), to look again;
* ``mkdir``/``rmdir`` reach the directory's own mkdir/rmdir (tracefs
  ``instances/``, as tracefs_instance_create does); elsewhere EPERM;
* ``poll`` reports EPOLLERR|EPOLLPRI once the attribute was notified
  (``Kernel.sysfs_notify``) since the file was opened or last read, like
  kernfs_generic_poll, and wakes sleeping pollers when that happens.

Caching: lookups and attributes are cached twice, in this object (per path)
and in the host kernel's dcache (FUSE entry/attr timeouts).  Both are
dropped whenever the model changes (``Kernel.dirty`` is set, a reboot
replaces the kernel): the host kernel's through FUSE_NOTIFY_INC_EPOCH
(Linux 6.16+; older kernels get no kernel-side caching at all).

Contents: in the default *exact* mode every read reaches ``show`` (direct
I/O; an open, a read and a release per attribute: three round trips to this
process).  A connection made with ``page_cache=True`` (the mount's /sys, see
machine/mount.py) instead lets the host kernel keep attribute contents in its
page cache, which is what makes a program that reads thousands of attributes
as fast over the mount as over a tmpfs copy:

* ``open`` answers ENOSYS, so the host kernel stops sending OPEN and RELEASE
  for the connection (fs/fuse/file.c: ``fc->no_open``; files then open with
  FOPEN_KEEP_CACHE); kernfs's open-time checks move to read(2)/write(2),
  and poll keeps its baseline per attribute instead of per open file;
* ``st_mtime`` is a generation that moves on every model change and on every
  write to the file; with FUSE_CAP_AUTO_INVAL_DATA the host kernel drops a
  file's cached pages when a lookup or getattr brings a new mtime, so a path
  looked up after a change (FUSE_NOTIFY_INC_EPOCH sends every lookup back
  here) reads afresh, before the write that made the change returns;
* a file already open elsewhere (no new lookup) is made to read afresh by
  invalidating the *attributes* of every inode whose pages were filled since
  the last change (FUSE_NOTIFY_INVAL_INODE with offset -1, by node id: the
  loop notes the node id of each READ it hands over): its next read asks for
  them, sees the new mtime and drops the pages itself, in the reader's own
  context.  The server never asks the host kernel to drop pages: that waits
  for page locks which a reader holds while its READ waits in this very
  connection's queue (a deadlock, and an unkillable one);
* ``sysfs_notify`` moves the attribute's mtime and invalidates its
  attributes before pollers are woken, so that their next read is fresh.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import time
from dataclasses import field
from typing import Any, Callable

from cxlemu.kernel.base.device import KernelError
from cxlemu.sysfs.backend import path_under
from cxlemu.util.lazydc import dataclass

#: sysfs reports every attribute as one page (fs/sysfs/file.c sysfs_add_file_mode_ns)
SYSFS_ATTR_SIZE = 4096
#: kernfs_fop_write_iter cuts a write to one page
KERNFS_MAX_WRITE = 4096

#: the host's device nodes a program expects in /dev (name -> (major, minor));
#: the mount is ``dev``, so these open the host's own drivers
HOST_DEV_NODES: dict[str, tuple[int, int]] = {
    "null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
    "tty": (5, 0),
}
#: host /dev directories reached through a link into ``host_dev_dir``
HOST_DEV_DIRS = ("pts", "shm", "mqueue", "hugepages")
HOST_DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                  "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}

FUSE_CAP_READDIRPLUS, FUSE_CAP_READDIRPLUS_AUTO = 1 << 13, 1 << 14    # fuse_common.h
FUSE_CAP_CACHE_SYMLINKS = 1 << 23
FUSE_CAP_AUTO_INVAL_DATA, FUSE_CAP_EXPLICIT_INVAL_DATA = 1 << 12, 1 << 25

POLLIN, POLLPRI, POLLOUT, POLLERR = 0x1, 0x2, 0x4, 0x8
POLLRDNORM, POLLWRNORM = 0x40, 0x100
DEFAULT_POLLMASK = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM

_KIND_FMT = {"dir": stat.S_IFDIR, "link": stat.S_IFLNK, "chr": stat.S_IFCHR, "blk": stat.S_IFBLK,
             "file": stat.S_IFREG}


def _oserror(code: int, path: str = "") -> OSError:
    return OSError(code, os.strerror(code), path)


@dataclass
class OpenFile:
    """What kernfs keeps per open file: the path, the node, the last
    ``show`` buffer and the notification count seen (kernfs_open_file.event)."""
    path: str
    node: Any
    writable: bool
    buf: bytes | None = None
    event: int = 0


@dataclass
class Stats:
    """Request counters (``cxlemu status`` and the benchmark report them)."""
    requests: int = 0
    invalidations: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)     # exceptions other than OSError (bugs)


@dataclass(frozen=True)
class Entry:
    """A resolved path: the VFS node (None for host entries), its stat
    fields and, for a link, its target."""
    node: Any
    mode: int
    size: int = 0
    rdev: int = 0
    target: str | None = None

    @property
    def kind(self) -> str:
        return {stat.S_IFDIR: "dir", stat.S_IFLNK: "link", stat.S_IFCHR: "chr",
                stat.S_IFBLK: "blk"}.get(stat.S_IFMT(self.mode), "file")


class MachineFs:
    """FUSE operations over a machine (``machine.backend()`` under ``lock``).

    The operations follow mfusepy's ``Operations`` protocol with ``raw_fi``:
    ``open``, ``read``, ``write``, ``release`` and ``poll`` receive the
    ``fuse_file_info``.  ``invalidate`` is called (under the lock) whenever
    the model changed, to drop the host kernel's caches.
    """

    use_ns = True
    #: FUSE entry/attr timeout when the host kernel can drop its caches on
    #: demand (FUSE_NOTIFY_INC_EPOCH, protocol 7.44); 0 otherwise
    cache_timeout = 3600.0
    FUSE_PROTO_INC_EPOCH = 44

    def __init__(self, machine: Any, lock: Any, *, host_dev: bool = True,
                 host_dev_dir: str | None = None, host_nodes_as_links: bool = False,
                 invalidate: Callable[[], None] | None = None,
                 invalidate_path: Callable[[str], None] | None = None,
                 notify_poll: Callable[..., None] | None = None,
                 invalidate_attrs: Callable[[int], None] | None = None,
                 prefix: str = "", page_cache: bool = False):
        self.machine = machine
        self._lock = lock
        #: the VFS directory this connection's root serves ("" for "/")
        self.prefix = prefix.rstrip("/")
        #: asked for host page caching of contents; ``page_cache`` says whether
        #: the host kernel granted what it needs (decided at FUSE INIT)
        self.want_page_cache = page_cache
        self.page_cache = False
        self._gen = 0                                  # model generation: st_mtime
        self._wgen: dict[str, int] = {}                # writes per path: st_mtime too
        self._filled: dict[str, int] = {}              # files whose pages the host holds -> node id
        #: the node id of the request being served (set by the loop, machine/mount.py)
        self.nodeid = 0
        self._invalidate_attrs = invalidate_attrs
        self._last: dict[str, bytes] = {}              # last show per path (reads past offset 0)
        self._len: dict[str, int] = {}                 # st_size the host kernel has made it
        self._seen: dict[str, int] = {}                # poll baseline per attribute
        self.host_dev = host_dev
        self.host_dev_dir = host_dev_dir
        # an unprivileged FUSE mount is always nodev: the host's null, zero ... are
        # then links into host_dev_dir instead of device nodes
        self.host_nodes_as_links = host_nodes_as_links and host_dev_dir is not None
        self._invalidate = invalidate
        self._invalidate_path = invalidate_path
        self._dirs_cached: set[str] = set()       # directories whose listing the host kernel caches
        self._links_cached: set[str] = set()      # links whose target the host kernel caches
        self._notify_poll = notify_poll
        self._kernel = None
        self._backend = None
        self._entries: dict[str, Entry] = {}
        self._dirs: dict[str, list[tuple[str, int, int]]] = {}
        self._images: dict[str, bytes] = {}
        self._files: dict[int, OpenFile] = {}
        self._next_fh = 1
        self._pollers: dict[str, list[Any]] = {}     # attribute path -> poll handles waiting
        self._stream_pollers: list[Any] = []         # poll handles waiting on consuming files
        self.stats = Stats()
        self.time_ns = time.time_ns()
        self.uid, self.gid = os.geteuid(), os.getegid()   # the owner of the mount, like sysfs's root

    # ---- following the machine's kernel ----------------------------------------------------
    def _sync(self):
        """The backend of the machine's current kernel (a reboot replaces it)."""
        k = self.machine.kernel
        if k is not self._kernel:
            if self._kernel is not None:
                self._kernel.remove_watcher(self)
            k.add_watcher(self)
            self._kernel = k
            self._backend = self.machine.backend()
            self._drop()
        return self._backend

    def detach(self) -> None:
        """Stop watching the kernel (the mount goes away)."""
        with self._lock:
            if self._kernel is not None:
                self._kernel.remove_watcher(self)
                self._kernel = None

    # ---- dropping what the host kernel holds -------------------------------------------------
    def _drop_attrs(self, nodeids) -> None:
        """Invalidate the host's attributes of these inodes (never their pages:
        see the module's docstring); their next read revalidates them."""
        inval = self._invalidate_attrs
        if inval is not None:
            for n in nodeids:
                inval(n)

    def _touch(self, path: str) -> None:
        """A new st_mtime for ``path``: the host drops its pages when it next
        asks for its attributes."""
        self._wgen[path] = self._wgen.get(path, 0) + 1
        self._images.pop(path, None)

    def _drop_pages(self, paths) -> None:
        """Make the host kernel drop the cached pages (and attributes) of ``paths``
        (directories and links: see :meth:`_drop_attrs` for files)."""
        inval = self._invalidate_path
        if inval is None:
            return
        for path in paths:
            rel = path_under(path, self.prefix)      # as this connection names it
            if rel is not None:
                inval(rel)

    def kernel_changed(self, kernel) -> None:
        """Watcher hook: the model changed; every cached lookup may be stale,
        and a consuming file may have become readable: its pollers look again."""
        self._drop()
        waiting, self._stream_pollers = self._stream_pollers, []
        for ph in waiting:
            if self._notify_poll is not None:
                self._notify_poll(ph)

    def sysfs_notified(self, path: str) -> None:
        """Watcher hook: ``sysfs_notify`` on ``path``; wake its pollers (in the
        page-cache mode once the host kernel knows the attribute changed)."""
        waiting = self._pollers.pop(path, [])
        if self.page_cache:
            self._touch(path)
            nodeid = self._filled.pop(path, None)
            if nodeid:
                self._drop_attrs((nodeid,))
        for ph in waiting:
            if self._notify_poll is not None:
                self._notify_poll(ph)

    def _drop(self) -> None:
        self._entries.clear()
        self._dirs.clear()
        self._images.clear()
        self._last.clear()
        self._len.clear()
        self._gen += 1
        self.stats.invalidations += 1
        if self._invalidate is not None:
            self._invalidate()
        if self._filled:
            filled, self._filled = self._filled, {}
            self._drop_attrs(filled.values())
        if self._invalidate_path is not None:
            self._drop_pages(self._dirs_cached)
            self._drop_pages(self._links_cached)
        self._dirs_cached.clear()
        self._links_cached.clear()

    # ---- resolution --------------------------------------------------------------------------
    def entry(self, path: str) -> Entry:
        """The entry at ``path`` (not following a final link); cached until
        the model changes.  Raises OSError(ENOENT, ...)."""
        e = self._entries.get(path)
        if e is not None:
            return e
        with self._lock:
            b = self._sync()
            e = self._entries.get(path)
            if e is None:
                e = self._resolve(b.vfs, path)
                self._entries[path] = e
        return e

    def _resolve(self, vfs, path: str) -> Entry:
        if path == "/":
            return Entry(None, stat.S_IFDIR | 0o755)
        try:
            node = vfs.resolve(path, follow_last=False)
        except OSError as exc:
            host = self._host_entry(path) if exc.errno == errno.ENOENT else None
            if host is None:
                raise
            return host
        kind = node.kind
        if kind == "dir":
            return Entry(node, stat.S_IFDIR | 0o755)
        if kind == "link":
            target = vfs.readlink(path)
            return Entry(node, stat.S_IFLNK | 0o777, size=len(target), target=target)
        if kind in ("chr", "blk"):
            ma, mi = node.dev.devt
            return Entry(node, _KIND_FMT[kind] | (node.mode & 0o7777 or 0o600), rdev=os.makedev(ma, mi))
        size = getattr(node, "size", None)
        if size is None:
            size = SYSFS_ATTR_SIZE if path.startswith("/sys/") else 0
        elif callable(size):
            size = size()
        return Entry(node, stat.S_IFREG | (node.mode & 0o777), size=size)

    def stat_bytes(self, path: str, c_stat: type, held: bool = False) -> bytes:
        """``struct stat`` of ``path`` as bytes (the getattr fast path);
        ``held``: asked for an open file (fstat, or the page-cache mode's
        check before a read), whose attribute going away is ENODEV."""
        img = self._images.get(path)
        if img is None:
            self._count("getattr")
            try:
                e = self.entry(path)
            except OSError as exc:
                if held and self.page_cache and exc.errno == errno.ENOENT:
                    raise _oserror(errno.ENODEV, path) from None
                raise
            size = self._len.get(path)
            if size is not None:
                e = Entry(e.node, e.mode, size, e.rdev, e.target)
            img = stat_image(e, self.uid, self.gid, self.mtime_ns(path), c_stat)
            self._images[path] = img
        else:
            self._count("getattr-cached")
        return img

    def _host_entry(self, path: str) -> Entry | None:
        """The host's essential /dev entries, where the machine has none."""
        if not self.host_dev or not path.startswith("/dev/"):
            return None
        rest = path[5:]
        if rest in HOST_DEV_NODES and self.host_nodes_as_links:
            target = f"{self.host_dev_dir}/{rest}"
            return Entry(None, stat.S_IFLNK | 0o777, size=len(target), target=target)
        if rest in HOST_DEV_NODES:
            ma, mi = HOST_DEV_NODES[rest]
            return Entry(None, stat.S_IFCHR | 0o666, rdev=os.makedev(ma, mi))
        target = HOST_DEV_LINKS.get(rest)
        if target is None and rest in HOST_DEV_DIRS:
            if self.host_dev_dir is None:
                return Entry(None, stat.S_IFDIR | 0o755)
            target = f"{self.host_dev_dir}/{rest}"
        if target is None:
            return None
        return Entry(None, stat.S_IFLNK | 0o777, size=len(target), target=target)

    def _host_dir_entries(self) -> list[tuple[str, int, int]]:
        out = [(n, stat.S_IFLNK if self.host_nodes_as_links else stat.S_IFCHR, 0) for n in HOST_DEV_NODES]
        kind = stat.S_IFLNK if self.host_dev_dir is not None else stat.S_IFDIR
        out += [(n, kind, 0) for n in HOST_DEV_DIRS]
        out += [(n, stat.S_IFLNK, 0) for n in HOST_DEV_LINKS]
        return out

    # ---- FUSE operations -------------------------------------------------------------------
    kernel_caching = False
    link_caching = False

    def init_with_config(self, conn, config) -> None:
        """FUSE INIT: let the host kernel cache lookups only if it can be told
        to drop them (FUSE_NOTIFY_INC_EPOCH), and contents only with
        FUSE_CAP_AUTO_INVAL_DATA as well (see the module's docstring)."""
        ok = conn is not None and conn.proto_minor >= self.FUSE_PROTO_INC_EPOCH and self._invalidate is not None
        self.kernel_caching = bool(ok and self.cache_timeout > 0)
        if conn is not None and self.kernel_caching:
            # the host kernel keeps link targets (dropped with their inodes when
            # the model changes); listings go through plain READDIR
            conn.want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO)
            if conn.capable & FUSE_CAP_CACHE_SYMLINKS and self._invalidate_path is not None:
                conn.want |= FUSE_CAP_CACHE_SYMLINKS
                self.link_caching = True
        self.page_cache = bool(self.want_page_cache and self.kernel_caching and conn is not None
                               and conn.capable & FUSE_CAP_AUTO_INVAL_DATA
                               and self._invalidate_attrs is not None)
        if self.page_cache:
            conn.want |= FUSE_CAP_AUTO_INVAL_DATA
            conn.want &= ~FUSE_CAP_EXPLICIT_INVAL_DATA
        if config is not None:
            t = self.cache_timeout if self.kernel_caching else 0.0
            config.entry_timeout = t
            config.attr_timeout = t
            # a name that is not there is remembered too where an epoch bump forgets
            # it with the rest (fs/fuse/dir.c fuse_dentry_revalidate checks the
            # epoch of negative dentries as well)
            config.negative_timeout = t if self.page_cache else 0.0

    def _count(self, name: str) -> None:
        st = self.stats
        st.requests += 1
        st.counts[name] = st.counts.get(name, 0) + 1

    def mtime_ns(self, path: str) -> int:
        """st_mtime: the mount's start, moved by every model change and every
        write to ``path`` (the page-cache mode's signal to drop pages)."""
        return self.time_ns + (self._gen << 24) + self._wgen.get(path, 0)

    def getattr(self, path: str, fh=None) -> dict:
        self._count("getattr")
        e = self.entry(path)
        t = self.mtime_ns(path)
        return {"st_mode": e.mode, "st_nlink": 2 if e.kind == "dir" else 1, "st_size": self._len.get(path, e.size),
                "st_rdev": e.rdev, "st_uid": self.uid, "st_gid": self.gid, "st_blksize": 4096,
                "st_atime": t, "st_mtime": t, "st_ctime": t}

    def readlink(self, path: str) -> str:
        self._count("readlink")
        e = self.entry(path)
        if e.target is None:
            raise _oserror(errno.EINVAL, path)
        if self.link_caching:
            self._links_cached.add(path)
        return e.target

    def readdir(self, path: str, fh) -> list:
        return [(n.decode(errors="surrogateescape"), mode, 0) for n, mode in self.listing(path)]

    def listing(self, path: str) -> list[tuple[bytes, int]]:
        """(name, d_type mode) of a directory, "." and ".." first, kernfs order;
        cached until the model changes (and then dropped in the host kernel too)."""
        self._count("readdir")
        cached = self._dirs.get(path)
        if cached is not None:
            return cached
        with self._lock:
            vfs = self._sync().vfs
            node = vfs.resolve(path)
            if node.kind != "dir":
                raise _oserror(errno.ENOTDIR, path)
            names = vfs.listdir(path)
            entries = node.entries()
            out = [(b".", stat.S_IFDIR), (b"..", stat.S_IFDIR)]
            out += [(n.encode(), _KIND_FMT.get(entries[n].kind, stat.S_IFREG)) for n in names]
            if path == "/dev" and self.host_dev:
                have = set(names)
                out += [(n.encode(), mode) for n, mode, _ in self._host_dir_entries() if n not in have]
            self._dirs[path] = out
            if self.kernel_caching:
                self._dirs_cached.add(path)
        return out

    def open(self, path: str, fi) -> int:
        self._count("open")
        if self.page_cache:
            # "success, and never ask again": the host kernel opens every file of
            # this connection itself from now on, keeping its pages (no_open)
            raise _oserror(errno.ENOSYS, path)
        acc = fi.flags & os.O_ACCMODE
        readable, writable = acc in (os.O_RDONLY, os.O_RDWR), acc in (os.O_WRONLY, os.O_RDWR)
        e = self.entry(path)
        if e.kind == "link":           # the kernel resolves links before OPEN; be safe
            with self._lock:
                real = self._sync().vfs.realpath(path)
            e, path = self.entry(real), real
        if e.kind == "dir":
            raise _oserror(errno.EISDIR, path)
        if e.node is None or e.kind in ("chr", "blk"):
            # a device node: the host kernel opens it itself (or the interposer does)
            raise _oserror(errno.ENXIO, path)
        # kernfs_fop_open: a mode bit for each direction asked
        # (tracefs is not kernfs: its files open in any mode the DAC allows -- libtracefs
        # opens trace_pipe O_RDWR -- and a write without a handler fails in write(2))
        if not _tracefs(path) and ((readable and not e.mode & 0o444) or (writable and not e.mode & 0o222)):
            raise _oserror(errno.EACCES, path)
        with self._lock:
            of = OpenFile(path, e.node, writable=writable, event=self._event(path))
            fh = self._next_fh
            self._next_fh += 1
            self._files[fh] = of
        fi.fh = fh
        fi.direct_io = 1      # every read reaches show(); st_size is not the length
        if getattr(e.node, "stream", False) and hasattr(fi, "nonseekable"):
            fi.nonseekable = 1        # trace_pipe*: nonseekable_open
        return 0

    def read(self, path: str, size: int, offset: int, fi) -> bytes:
        self._count("read")
        if self.page_cache:
            return self._read_page(path, size, offset)
        of = self._files.get(fi.fh)
        if of is None:
            raise _oserror(errno.EBADF, path)
        if getattr(of.node, "stream", False):
            return self._read_stream(of, size, path)
        if offset == 0 or of.buf is None:
            with self._lock:
                self._sync()
                if self._entries.get(of.path) is None:
                    try:                      # the tree changed since open: is it still there?
                        of.node = self.entry(of.path).node
                    except OSError:
                        raise _oserror(errno.ENODEV, path) from None
                of.event = self._event(of.path)
                try:
                    of.buf = of.node.read()
                except KernelError as exc:
                    raise _oserror(exc.errno, path) from None
        return of.buf[offset:offset + size]

    def _page_cache_entry(self, path: str, want: int) -> Entry:
        """The file behind a read or write of the page-cache mode, with
        kernfs_fop_open's checks (made here: there is no OPEN)."""
        try:
            e = self.entry(path)
        except OSError as exc:
            if exc.errno == errno.ENOENT:     # an open file whose attribute went away
                raise _oserror(errno.ENODEV, path) from None
            raise
        if e.node is None or e.kind != "file":
            raise _oserror(errno.EISDIR if e.kind == "dir" else errno.ENXIO, path)
        if not e.mode & want and not _tracefs(path):
            raise _oserror(errno.EACCES, path)
        return e

    def _read_page(self, path: str, size: int, offset: int) -> bytes:
        """A page the host kernel fills: ``show`` afresh at offset 0, the rest
        of that ``show`` further on (seq_file)."""
        with self._lock:
            self._sync()
            e = self._page_cache_entry(path, 0o444)
            buf = self._last.get(path) if offset else None
            if buf is None:
                try:
                    buf = e.node.read()
                except KernelError as exc:
                    raise _oserror(exc.errno, path) from None
                self._last[path] = buf
                if len(buf) < SYSFS_ATTR_SIZE and self._len.get(path) != len(buf):
                    # a short read makes the host kernel cut i_size to what came back
                    # (fs/fuse/file.c fuse_short_read): report that size from now on,
                    # or the next getattr would "change" the size and drop the page
                    self._len[path] = len(buf)
                    self._images.pop(path, None)
            if self.nodeid:
                self._filled[path] = self.nodeid
            self._seen[path] = self._event(path)
        return buf[offset:offset + size]

    def _read_stream(self, of: "OpenFile", size: int, path: str) -> bytes:
        """One read(2) of a consuming file: what the last read left, else what is there now."""
        if not of.buf:
            with self._lock:
                self._sync()
                try:
                    of.buf = of.node.read()
                except KernelError as exc:
                    raise _oserror(exc.errno, path) from None
        out, of.buf = of.buf[:size], of.buf[size:]
        return out

    def write(self, path: str, data: bytes, offset: int, fi) -> int:
        self._count("write")
        if self.page_cache:
            return self._write_path(path, data)
        of = self._files.get(fi.fh)
        if of is None:
            raise _oserror(errno.EBADF, path)
        return self._write_path(of.path, data)

    def _write_path(self, path: str, data: bytes) -> int:
        if not data:
            return 0
        data = data[:KERNFS_MAX_WRITE]
        with self._lock:
            if self.page_cache:
                self._sync()
                self._page_cache_entry(path, 0o222)
                # whatever the store does, the written file's pages (which now hold
                # the writer's bytes) are dropped at its next read: a new mtime (the
                # host kernel invalidates a written file's attributes itself)
                self._touch(path)
                self._last.pop(path, None)
                self._len.pop(path, None)
            try:
                self._sync().write(path, data)
            except OSError as exc:
                # (a refused store may still have changed the tree, e.g. a failed
                # nd_pmem probe registers the dax device that claims the
                # namespace: the VFS marks the model dirty then too, and the
                # watcher hook drops the caches)
                if exc.errno == errno.ENOENT:
                    raise _oserror(errno.ENODEV, path) from None
                raise
        return len(data)

    def truncate(self, path: str, length: int, fh=None) -> int:
        # O_TRUNC on an attribute: kernfs accepts the size change and ignores it
        return 0

    def release(self, path: str, fi) -> int:
        self._files.pop(fi.fh, None)
        return 0

    def fsync(self, path: str, datasync: int, fh) -> int:
        return 0

    def utimens(self, path: str, times=None) -> int:
        return 0

    def chmod(self, path: str, mode: int) -> int:
        raise _oserror(errno.EPERM, path)

    def chown(self, path: str, uid: int, gid: int) -> int:
        raise _oserror(errno.EPERM, path)

    def create(self, path: str, mode: int, fi=None) -> int:
        raise _oserror(errno.EACCES, path)

    def mknod(self, path: str, mode: int, dev: int) -> int:
        raise _oserror(errno.EPERM, path)

    def _dir_op(self, op: str, path: str) -> int:
        """mkdir/rmdir where the directory implements it (tracefs instances/), else EPERM."""
        self._count(op)
        with self._lock:
            # VDir.mkdir/rmdir refuse with EPERM unless the directory allows it; the
            # VFS turns the KernelError into OSError(errno), which FUSE returns
            getattr(self._sync(), op)(path)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        return self._dir_op("mkdir", path)

    def unlink(self, path: str) -> int:
        raise _oserror(errno.EPERM, path)

    def rmdir(self, path: str) -> int:
        return self._dir_op("rmdir", path)

    def symlink(self, target: str, source: str) -> int:
        raise _oserror(errno.EPERM, target)

    def link(self, target: str, source: str) -> int:
        raise _oserror(errno.EPERM, target)

    def rename(self, old: str, new: str) -> int:
        raise _oserror(errno.EPERM, old)

    def statfs(self, path: str) -> dict:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    # ---- poll / notify -----------------------------------------------------------------------
    def _event(self, path: str) -> int:
        """The attribute's notification count (kernfs_open_node.event)."""
        events = getattr(self.machine.kernel, "sysfs_events", None)
        if not events:
            return 0
        try:
            real = self._sync().vfs.realpath(path)
        except OSError:
            return 0
        return events.get(real, 0)

    def poll(self, path: str, fi, ph, reventsp) -> int:
        self._count("poll")
        if self.page_cache:
            return self._poll_path(path, ph, reventsp)
        of = self._files.get(fi.fh)
        if of is None:
            raise _oserror(errno.EBADF, path)
        keep = False
        if getattr(of.node, "stream", False):
            with self._lock:
                self._sync()
                ready = bool(of.buf) or bool(of.node.readable())
                if not ready and ph:
                    self._stream_pollers.append(ph)
                    keep = True
            return self._polled(ph, keep, (POLLIN | POLLRDNORM) if ready else 0, reventsp)
        with self._lock:
            mask = DEFAULT_POLLMASK
            if self._event(of.path) != of.event:
                mask |= POLLERR | POLLPRI
            elif ph:
                try:
                    real = self._sync().vfs.realpath(of.path)
                except OSError:
                    real = of.path
                self._pollers.setdefault(real, []).append(ph)
                keep = True
        return self._polled(ph, keep, mask, reventsp)

    def _polled(self, ph, keep: bool, mask: int, reventsp) -> int:
        """Answer a poll: a handle not kept for a later wake-up is released."""
        if ph and not keep and self._notify_poll is not None:
            self._notify_poll(ph, wake=False)
        reventsp[0] = mask
        return 0

    def _poll_path(self, path: str, ph, reventsp) -> int:
        """kernfs_generic_poll without open files: the baseline is the count
        seen by the attribute's last read here (or by its first poll)."""
        keep = False
        with self._lock:
            self._sync()
            now = self._event(path)
            seen = self._seen.setdefault(path, now)
            mask = DEFAULT_POLLMASK
            if now != seen:
                mask |= POLLERR | POLLPRI
            elif ph:
                self._pollers.setdefault(path, []).append(ph)
                keep = True
        return self._polled(ph, keep, mask, reventsp)


def _tracefs(path: str) -> bool:
    return path.startswith(("/sys/kernel/tracing/", "/sys/kernel/debug/tracing/"))


def stat_image(e: Entry, uid: int, gid: int, time_ns: int, c_stat: type) -> bytes:
    """The bytes of a ``struct stat`` for ``e`` (what getattr copies out)."""
    st = c_stat()
    st.st_mode = e.mode
    st.st_nlink = 2 if stat.S_ISDIR(e.mode) else 1
    st.st_size = e.size
    st.st_rdev = e.rdev
    st.st_uid, st.st_gid = uid, gid
    st.st_blksize = 4096
    sec, nsec = divmod(time_ns, 10**9)
    for name in ("st_atimespec", "st_mtimespec", "st_ctimespec"):
        ts = getattr(st, name, None)
        if ts is not None:
            ts.tv_sec, ts.tv_nsec = sec, nsec
    return ctypes.string_at(ctypes.addressof(st), ctypes.sizeof(st))
