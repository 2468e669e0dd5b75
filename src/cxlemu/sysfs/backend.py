"""Sysfs backends: what the tools read and write through.

Like libcxl/libdaxctl, the tools only see paths: ``/sys/...``, ``/proc/...``
and ``/dev/...``.  Two backends implement the same interface:

* :class:`EmulatorBackend` serves a machine's kernel model in process;
* :class:`DirectoryBackend` serves a real directory tree: a real Linux host
  (root ``/``) or a tree rendered by ``cxlemu sysfs render``.

Device nodes get a channel: ``open_memdev`` returns an object with
``query()`` and ``send(cmd_id, payload, out_size) -> (retval, bytes)`` (the
CXL_MEM_QUERY_COMMANDS / CXL_MEM_SEND_COMMAND ioctls); ``open_nmem`` one
with ``config_size()``, ``get_config_data()`` and ``set_config_data()`` (the
ND_IOCTL_*_CONFIG_* label ioctls on /dev/nmemN, sysfs/nd_ioctl.py).
``open_data(path, write)`` gives positional I/O on /dev/mem, /dev/daxX.Y and
/dev/pmemN (or a host file).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel
    from cxlemu.sysfs.vfs import Vfs

#: ``run(machine_or_kernel, workload, **kw) -> result``: the signature of
#: ``cxlemu.sim.run``, the loop that executes programs' accesses
RunLoop = Callable[..., Any]


class Backend(Protocol):
    """The path-level API every tool uses."""

    def read(self, path: str) -> str: ...
    def read_bytes(self, path: str) -> bytes: ...
    def write(self, path: str, data: str | bytes) -> None: ...
    def listdir(self, path: str) -> list[str]: ...
    def readlink(self, path: str) -> str: ...
    def realpath(self, path: str) -> str: ...
    def exists(self, path: str) -> bool: ...
    def lexists(self, path: str) -> bool: ...
    def isdir(self, path: str) -> bool: ...
    def islink(self, path: str) -> bool: ...
    def mkdir(self, path: str) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def read_stream(self, path: str, size: int = 4096) -> bytes: ...
    def poll(self, path: str, timeout: float | None = 0) -> bool: ...
    def chardev(self, path: str) -> tuple[int, int] | None: ...
    def open_memdev(self, path: str): ...
    def open_nmem(self, path: str): ...
    def open_data(self, path: str, write: bool): ...


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_PATH = getattr(os, "O_PATH", 0)


def _realpath(path: str, strict: bool = False) -> str | None:
    """``os.path.realpath``, with the walk done by the kernel when it can be
    (open with O_PATH, then read the /proc/self/fd link): one system call
    instead of an lstat per component in Python.  A path that does not
    exist, or a system without O_PATH, takes ``os.path.realpath``.
    ``strict``: None unless every component exists (``realpath(3)``)."""
    if _O_PATH:
        try:
            fd = os.open(path, _O_PATH | _O_CLOEXEC)
        except FileNotFoundError:
            if strict:
                return None
            # realpath(3) without strict: the existing prefix resolved, the rest as is
            head, tail = os.path.split(path)
            if tail in ("", ".", "..") or head == path or "/../" in path or os.path.lexists(path):
                return os.path.realpath(path)     # ".." after a missing part, a dangling link
            return os.path.join(_realpath(head) or head, tail)
        except OSError:
            if strict:
                return None
            return os.path.realpath(path)
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass                                  # no /proc: the walk in Python
        finally:
            os.close(fd)
    rp = os.path.realpath(path)
    return rp if not strict or os.path.exists(rp) else None


class EmulatorBackend:
    """The machine's kernel model through its in-process VFS."""

    def __init__(self, kernel: "Kernel", machine=None, run_loop: "RunLoop | None" = None):
        from cxlemu.sysfs.vfs import Vfs
        self.kernel = kernel
        self.vfs: Vfs = Vfs(kernel)
        self.machine = machine
        #: what executes a program's accesses (``cxlemu.sim.run``), given by the
        #: code that runs programs on this backend (cli); None: no program runs
        self.run_loop = run_loop
        self.writes = 0
        self.fault_after_writes: int | None = None

    # ---- programs: the system-call interface of the emulated machine ----------------------
    _task = None

    def task(self, comm: str = "sh"):
        """The process a tool runs as on this machine (created on first use,
        shared by the programs it execs): a :class:`cxlemu.kernel.syscalls.Process`
        with mmap, set_mempolicy, mbind, sched_setaffinity ..."""
        from cxlemu.kernel.syscalls import Process
        if self._task is None or not self._task.alive:
            self._task = Process.new(self.kernel, comm)
        return self._task

    def run_workload(self, proc, workload, **kw):
        """Run a workload generator inside ``proc`` (the ``workload`` program)
        with the backend's run loop; ENOEXEC without one."""
        if self.run_loop is None:
            raise OSError(errno.ENOEXEC, "no run loop on this backend to execute a workload (use cxlemu exec)")
        from cxlemu.userspace.spec import ProcSpec
        res = self.run_loop(self.machine if self.machine is not None else self.kernel,
                            ProcSpec(workload, process=proc), **kw)
        self.kernel.dirty = True
        return res

    def end_task(self) -> None:
        """The tool's process exits: its memory goes back."""
        t = self._task
        if t is not None and t.alive:
            # a tool that mapped nothing (numactl --hardware, a refused
            # command) leaves nothing behind worth saving
            used = t.task.mm is not None and bool(t.task.mm.vmas)
            t.exit(0)
            if used:
                self.kernel.dirty = True
        self._task = None

    def read_bytes(self, path: str) -> bytes:
        return self.vfs.read(path)

    def read(self, path: str) -> str:
        return self.vfs.read(path).decode(errors="replace")

    def read_stream(self, path: str, size: int = 4096) -> bytes:
        """One read(2) of a consuming file (trace_pipe_raw): a page or b""."""
        return self.vfs.read(path)[:size]

    def write(self, path: str, data: str | bytes) -> None:
        # the kernel runs this write on behalf of this process (trace records carry its pid)
        self.kernel.set_current(os.getpid(), "cxlemu")
        live = getattr(self.machine, "live", None)
        if live is not None:       # a running machine: persisted before this returns (machine/live.py)
            live.vfs_write(self, path, _as_bytes(data))
        else:
            self.vfs.write(path, _as_bytes(data))
        self.writes += 1
        if self.fault_after_writes is not None and self.writes >= self.fault_after_writes:
            # test hook: die like kill -9 right after this write
            os.kill(os.getpid(), 9)

    def listdir(self, path: str) -> list[str]:
        return self.vfs.listdir(path)

    def mkdir(self, path: str) -> None:
        self.vfs.mkdir(path)

    def rmdir(self, path: str) -> None:
        self.vfs.rmdir(path)

    def poll(self, path: str, timeout: float | None = 0) -> bool:
        """poll(2) for POLLIN on ``path``.  This process holds the machine, so
        nothing else can make data arrive while it waits: the answer is now."""
        return self.vfs.readable(path)

    def readlink(self, path: str) -> str:
        return self.vfs.readlink(path)

    def realpath(self, path: str) -> str:
        return self.vfs.realpath(path)

    def exists(self, path: str) -> bool:
        return self.vfs.exists(path)

    def lexists(self, path: str) -> bool:
        return self.vfs.lexists(path)

    def isdir(self, path: str) -> bool:
        return self.vfs.isdir(path)

    def islink(self, path: str) -> bool:
        return self.vfs.islink(path)

    def chardev(self, path: str) -> tuple[int, int] | None:
        dev = self.vfs.chardev(path)
        return dev.devt if dev is not None else None

    def open_memdev(self, path: str) -> "EmulatedMemdevChannel":
        dev = self.vfs.chardev(path)
        from cxlemu.kernel.cxl.memdev import CxlMemdev
        if not isinstance(dev, CxlMemdev):
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), path)
        return EmulatedMemdevChannel(self.kernel, dev, self.machine)

    def open_nmem(self, path: str) -> "EmulatedNmemChannel":
        dev = self.vfs.chardev(path)
        from cxlemu.kernel.nvdimm.dimm import NvdimmDev
        if not isinstance(dev, NvdimmDev):
            from cxlemu.sysfs.nd_ioctl import NodeError
            raise NodeError(errno.ENXIO, path, validate=dev is not None)
        return EmulatedNmemChannel(dev)

    def dax_device(self, path: str):
        return self.vfs.chardev(path)

    def open_ndctl(self, path: str) -> "EmulatedNdBusChannel":
        """/dev/ndctlN: the nvdimm bus ioctls ndctl uses for ARS and Clear Error."""
        dev = self.vfs.chardev(path)
        from cxlemu.kernel.nvdimm.bus import NdCtl
        if not isinstance(dev, NdCtl):
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), path)
        return EmulatedNdBusChannel(self.kernel, dev.parent)

    def hpa_space(self):
        """Physical address space of the machine (what /dev/mem addresses)."""
        from cxlemu.data.datapath import HpaSpace
        if self.machine is None:
            raise OSError(errno.ENODEV, "no media attached to this kernel")
        return HpaSpace(self.kernel.platform, self.machine.media)

    def mmap_dax(self, path: str, length: int | None = None, offset: int = 0):
        """open(2) + mmap(2) of a device-DAX node (/dev/daxX.Y): the mapping
        (data/dax_mapping.py) a program such as memkind's PMEM kinds uses."""
        from cxlemu.data.dax_mapping import DaxDevice
        return DaxDevice.open(self, path).mmap(length, offset)

    def open_data(self, path: str, write: bool):
        """A positional file for dd: /dev/mem (HPA), /dev/daxX.Y, or a host file."""
        if path == "/dev/mem":
            return HpaFile(self.hpa_space())
        if path.startswith("/dev/dax"):
            from cxlemu.data.dax_mapping import DaxFile
            return DaxFile.open(self, path, write)
        if path.startswith("/dev/pmem"):
            return PmemDiskFile.open(self.kernel, path)
        return HostFile(path, write)


class HpaFile:
    """/dev/mem: offsets are host physical addresses.  Mappings of CXL memory
    through /dev/mem are uncached, so stores reach the device directly."""

    def __init__(self, space):
        self.space = space
        self.size = None

    def pread(self, n: int, off: int) -> bytes:
        return self.space.read(off, n)

    def pwrite(self, data: bytes, off: int) -> int:
        self.space.write(off, data)
        return len(data)

    def truncate(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


_STD_PATHS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2, "/dev/fd/0": 0, "/dev/fd/1": 1, "/dev/fd/2": 2}


def _std_fileno(path: str) -> int | None:
    """The descriptor of sys.stdin/stdout/stderr for /dev/std* (in a machine
    process these are the requesting client's, not the process's own)."""
    import sys
    i = _STD_PATHS.get(path)
    if i is None:
        return None
    stream = (sys.stdin, sys.stdout, sys.stderr)[i]
    try:
        stream.flush()
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


class HostFile:
    def __init__(self, path: str, write: bool, create: bool = True):
        flags = (os.O_RDWR | (os.O_CREAT if create else 0)) if write else os.O_RDONLY
        std = _std_fileno(path)
        self.fd = os.dup(std) if std is not None else os.open(path, flags, 0o644)
        st = os.fstat(self.fd)
        self.size = st.st_size if stat.S_ISREG(st.st_mode) else None
        self.is_regular = stat.S_ISREG(st.st_mode)
        try:                          # pipes and terminals: read(2)/write(2) in order, as dd does
            os.lseek(self.fd, 0, os.SEEK_CUR)
            self.stream = False
        except OSError:
            self.stream = True
        self.pos = 0

    def pread(self, n: int, off: int) -> bytes:
        if not self.stream:
            return os.pread(self.fd, n, off)
        while self.pos < off:         # skip= on a stream reads and discards
            got = os.read(self.fd, min(off - self.pos, 1 << 20))
            if not got:
                return b""
            self.pos += len(got)
        data = os.read(self.fd, n)
        self.pos += len(data)
        return data

    def pwrite(self, data: bytes, off: int) -> int:
        if not self.stream:
            return os.pwrite(self.fd, data, off)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        return len(data)

    def truncate(self, n: int) -> None:
        if self.is_regular:
            os.ftruncate(self.fd, n)

    def close(self) -> None:
        os.close(self.fd)


class EmulatedMemdevChannel:
    def __init__(self, kernel: "Kernel", memdev, machine=None):
        self.kernel, self.memdev, self.machine = kernel, memdev, machine

    def query(self):
        return self.kernel.cxl.mailbox.query(self.memdev)

    def _send(self, cmd_id: int, payload_in: bytes, out_size: int) -> tuple[int, bytes]:
        from cxlemu.kernel.base.device import KernelError
        try:
            return self.kernel.cxl.mailbox.send(self.memdev, cmd_id, payload_in, out_size)
        except KernelError as e:
            raise OSError(e.errno, os.strerror(e.errno)) from None

    def send(self, cmd_id: int, payload_in: bytes, out_size: int) -> tuple[int, bytes]:
        live = getattr(self.machine, "live", None)
        if live is not None:       # a running machine: persisted before this returns (machine/live.py)
            return live.mbox_send(self, cmd_id, payload_in, out_size,
                                  lambda: self._send(cmd_id, payload_in, out_size))
        return self._send(cmd_id, payload_in, out_size)

    def close(self) -> None:
        pass


class EmulatedNmemChannel:
    """The /dev/nmemN label ioctls on the kernel model's nvdimm (bus.c
    __nd_ioctl -> cxl_pmem's config-data commands)."""

    def __init__(self, nvdimm):
        self.nvdimm = nvdimm

    def _call(self, fn, *args):
        from cxlemu.kernel.base.device import KernelError
        try:
            return fn(*args)
        except KernelError as e:
            raise OSError(e.errno, os.strerror(e.errno)) from None

    def config_size(self) -> tuple[int, int]:
        return self._call(self.nvdimm.ioctl_config_size)

    def get_config_data(self, offset: int, length: int) -> bytes:
        return self._call(self.nvdimm.ioctl_get_config_data, offset, length)

    def set_config_data(self, offset: int, data: bytes) -> None:
        self._call(self.nvdimm.ioctl_set_config_data, offset, bytes(data))

    def close(self) -> None:
        pass


class PmemDiskFile:
    """/dev/pmemN[.M]: the block device nd_pmem publishes for a namespace
    (raw) or its pfn device; I/O goes through the driver (pmem.c
    pmem_do_read/write: flushed stores, nvdimm_read/write_bytes)."""

    def __init__(self, kernel, host):
        self.kernel, self.host = kernel, host
        self.ns = host if hasattr(host, "res_start") else host.ndns
        self.size = self.ns.res_size

    @classmethod
    def open(cls, kernel, path: str) -> "PmemDiskFile":
        name = path.rsplit("/", 1)[-1]
        for dev in kernel.buses["nd"].devices.values() if "nd" in kernel.buses else ():
            if getattr(dev, "disk", None) == name and dev.driver is not None:
                return cls(kernel, dev)
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)

    def _check(self, off: int, n: int) -> None:
        if off < 0 or off + n > self.size:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    def pread(self, n: int, off: int) -> bytes:
        n = max(0, min(n, self.size - off))
        self._check(off, n)
        return self._io(self.kernel.nvdimm.ns_read, self.ns, off, n)

    def pwrite(self, data: bytes, off: int) -> int:
        self._check(off, len(data))
        self._io(self.kernel.nvdimm.ns_write, self.ns, off, bytes(data))
        self.kernel.dirty = True
        return len(data)

    @staticmethod
    def _io(fn, *args):
        from cxlemu.kernel.base.device import KernelError
        try:
            return fn(*args)
        except KernelError as e:
            raise OSError(e.errno, os.strerror(e.errno)) from None

    def truncate(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class EmulatedNdBusChannel:
    """ND_CMD_ARS_CAP / ND_CMD_CLEAR_ERROR on an nvdimm bus (drivers/nvdimm/bus.c
    __nd_ioctl -> the bus provider); errors are OSError(errno) like ioctl(2)."""

    def __init__(self, kernel: "Kernel", bus):
        self.kernel, self.bus = kernel, bus

    def _call(self, fn, *args):
        from cxlemu.kernel.base.device import KernelError
        try:
            return fn(self.kernel, self.bus, *args)
        except KernelError as e:
            raise OSError(e.errno, os.strerror(e.errno)) from None

    def ars_cap(self, address: int, length: int) -> tuple[int, int, int, int, int]:
        from cxlemu.kernel.nvdimm import badrange
        return self._call(badrange.ars_cap, address, length)

    def clear_error(self, address: int, length: int) -> int:
        from cxlemu.kernel.nvdimm import badrange
        return self._call(badrange.clear_error, address, length)

    def close(self) -> None:
        pass


def path_under(path: str, root: str) -> str | None:
    """``path`` as seen from ``root`` ("/" for ``root`` itself), or None when
    it is not below ``root`` (``root`` "/" or "" is the whole tree)."""
    if root in ("/", ""):
        return path
    if path == root:
        return "/"
    if path.startswith(root + "/"):
        return path[len(root):]
    return None


class DirectoryBackend:
    """A real tree: ``root`` is prepended to every absolute path.

    ``root="/"`` reads the running host.  For a rendered tree,
    ``cxlemu sysfs render OUT`` writes ``OUT/sys``, ``OUT/proc`` and ``OUT/dev``
    (device nodes as regular files holding ``major:minor``), and the backend
    is created with ``root=OUT``.
    """

    def __init__(self, root: str = "/"):
        self.root = os.path.abspath(root)

    def _p(self, path: str) -> str:
        if not path.startswith("/"):
            raise OSError(errno.EINVAL, "relative path", path)
        return self.root + path if self.root != "/" else path

    def _unroot(self, path: str) -> str:
        rel = path_under(path, self.root)
        return path if rel is None else rel

    def read_bytes(self, path: str) -> bytes:
        if path[:1] != "/":
            raise OSError(errno.EINVAL, "relative path", path)
        fd = os.open(path if self.root == "/" else self.root + path, os.O_RDONLY | _O_CLOEXEC)   # _p(), inline
        try:
            return os.read(fd, 4096)
        finally:
            os.close(fd)

    def read_stream(self, path: str, size: int = 4096) -> bytes:
        """One non-blocking read(2) of a consuming file (trace_pipe_raw)."""
        fd = os.open(self._p(path), os.O_RDONLY | os.O_NONBLOCK)
        try:
            return os.read(fd, size)
        except BlockingIOError:
            return b""
        finally:
            os.close(fd)

    def read(self, path: str) -> str:
        return self.read_bytes(path).decode(errors="replace")

    def write(self, path: str, data: str | bytes) -> None:
        fd = os.open(self._p(path), os.O_WRONLY)
        try:
            os.write(fd, _as_bytes(data))
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(self._p(path))          # readdir order, as scandir

    def mkdir(self, path: str) -> None:
        os.mkdir(self._p(path))

    def rmdir(self, path: str) -> None:
        os.rmdir(self._p(path))

    def poll(self, path: str, timeout: float | None = 0) -> bool:
        import select
        fd = os.open(self._p(path), os.O_RDONLY | os.O_NONBLOCK)
        try:
            p = select.poll()
            p.register(fd, select.POLLIN)
            return bool(p.poll(None if timeout is None else int(timeout * 1000)))
        finally:
            os.close(fd)

    def readlink(self, path: str) -> str:
        return os.readlink(self._p(path))

    def realpath(self, path: str) -> str:
        return self._unroot(_realpath(self._p(path)))

    def realpath_strict(self, path: str) -> str | None:
        """``realpath(3)`` that fails (None) unless every component exists:
        the kernel resolves it in one ``open(O_PATH)``."""
        rp = _realpath(self._p(path), strict=True)
        return None if rp is None else self._unroot(rp)

    def exists(self, path: str) -> bool:
        return os.path.exists(self._p(path))

    def lexists(self, path: str) -> bool:
        return os.path.lexists(self._p(path))

    def isdir(self, path: str) -> bool:
        return os.path.isdir(self._p(path))

    def islink(self, path: str) -> bool:
        return os.path.islink(self._p(path))

    def chardev(self, path: str) -> tuple[int, int] | None:
        try:
            st = os.stat(self._p(path))
        except OSError:
            return None
        if stat.S_ISCHR(st.st_mode):
            return os.major(st.st_rdev), os.minor(st.st_rdev)
        if stat.S_ISREG(st.st_mode):
            try:
                major, minor = self.read_bytes(path)[:32].decode().strip().split(":")
                return int(major), int(minor)
            except (OSError, ValueError):
                return (0, 0)
        return None

    def open_memdev(self, path: str):
        from cxlemu.hw.mailbox.uapi import RealMemdevChannel
        return RealMemdevChannel(self._p(path))

    def open_nmem(self, path: str):
        from cxlemu.sysfs.nd_ioctl import RealNmemChannel
        return RealNmemChannel(self._p(path), devname=path)

    def dax_device(self, path: str):
        return None

    def open_ndctl(self, path: str):
        raise OSError(errno.ENOTTY, "nvdimm bus ioctls are not available through a directory", path)

    def open_data(self, path: str, write: bool):
        if path.startswith("/dev/"):                 # a device node is never created
            return HostFile(self._p(path), write, create=False)
        return HostFile(path, write)


#: other filesystems mounted below /sys: not part of a sysfs render unless asked for
OTHER_MOUNTS = ("/sys/kernel/tracing", "/sys/kernel/debug")


def _skipper(tops, skip):
    """The ``skip`` predicate of a render.  The other filesystems below /sys
    (OTHER_MOUNTS) are left out unless a top is inside them; ``skip`` adds a
    predicate (a callable) or replaces that list (a tuple of paths, ``()``:
    nothing left out)."""
    extra = skip if callable(skip) else None
    paths = OTHER_MOUNTS if skip is None or extra is not None else tuple(skip)
    paths = tuple(p for p in paths if not any(t == p or t.startswith(p + "/") for t in tops))
    if not paths:
        return extra
    if extra is None:
        return lambda path: path in paths
    return lambda path: path in paths or extra(path)


def render(backend: Backend, out: str, tops: tuple[str, ...] = ("/sys", "/proc", "/dev"),
           skip: "Callable[[str], bool] | tuple[str, ...] | None" = None) -> int:
    """Write the backend's tree below ``out`` as real files, dirs and relative
    symlinks (how sysfs links look).  Returns the number of entries written.
    ``skip``: subtrees left out (tracefs and debugfs are separate filesystems;
    render them with ``tops=("/sys/kernel/tracing",), skip=()``).

    Attributes that cannot be read (write-only) become empty files with their
    mode; device nodes become regular files holding ``major:minor``.

    An emulator backend is rendered by walking its VFS nodes directly (each
    directory listed once, no path resolution per entry), with a progress
    bar on a terminal; other backends are walked path by path.  ``skip(path)``
    true leaves an entry (and everything below it) out: a partial render for
    a tool that reads only part of the tree.
    """
    skip = _skipper(tops, skip)
    vfs = getattr(backend, "vfs", None)
    if vfs is not None and hasattr(vfs, "kernel"):
        return _render_vfs(vfs, out, tops, skip)
    count = 0
    for top in tops:
        if not backend.exists(top):
            continue
        stack = [top]
        while stack:
            path = stack.pop()
            if skip is not None and skip(path):
                continue
            dst = out + path
            if backend.islink(path):
                os.symlink(backend.readlink(path), dst)
                count += 1
                continue
            if backend.isdir(path):
                os.makedirs(dst, exist_ok=True)
                count += 1
                for name in backend.listdir(path):
                    stack.append(posixpath.join(path, name))
                continue
            dev = backend.chardev(path)
            if dev is not None and path.startswith("/dev"):
                with open(dst, "w") as f:
                    f.write(f"{dev[0]}:{dev[1]}\n")
                count += 1
                continue
            vfs = getattr(backend, "vfs", None)
            try:
                # consuming files (trace_pipe*) are not read: rendering must not eat events
                data = b"" if vfs is not None and vfs.is_stream(path) else backend.read_bytes(path)
            except OSError:
                data = b""
            with open(dst, "wb") as f:
                f.write(data)
            mode = getattr(backend, "vfs", None)
            if mode is not None:
                m = backend.vfs.mode(path) & 0o777  # type: ignore[attr-defined]
                os.chmod(dst, m if m else 0o200)
            count += 1
    return count


def _render_vfs(vfs: "Vfs", out: str, tops: tuple[str, ...],
                skip: "Callable[[str], bool] | None" = None) -> int:
    """:func:`render` over the VFS node tree: the same files, links, modes
    and contents as the path walk, in O(entries)."""
    from cxlemu.kernel.base.device import KernelError
    from cxlemu.sysfs.vfs import CharDevNode, DeviceDir, VDir, VLink, kernfs_target_path
    from cxlemu.util.progress import progress

    umask = os.umask(0)
    os.umask(umask)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)

    def write(dst: str, data: bytes, mode: int) -> None:
        fd = os.open(dst, flags, mode)
        try:
            if data:
                os.write(fd, data)
            if mode & ~umask != mode:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)

    ndev, todo = 0, [vfs.kernel.root]
    while todo:
        d = todo.pop()
        ndev += 1
        todo.extend(d.children)
    count = 0
    with progress("rendering /sys, /proc, /dev", total=ndev) as bar:
        for top in tops:
            try:
                root = vfs.resolve(top)
            except OSError:
                continue
            if skip is not None and skip(top):
                continue
            os.makedirs(out + top, exist_ok=True)
            stack = [(top, posixpath.dirname(top), root)]
            while stack:
                path, parent, node = stack.pop()
                if skip is not None and skip(path):
                    continue
                dst = out + path
                count += 1
                if isinstance(node, VLink):
                    os.symlink(kernfs_target_path(parent, node.target), dst)
                elif isinstance(node, VDir):
                    if path != top:
                        try:
                            os.mkdir(dst)
                        except FileExistsError:
                            pass
                    if isinstance(node, DeviceDir):
                        bar.advance()
                    for name, child in node.entries().items():
                        stack.append((f"{path}/{name}", path, child))
                elif isinstance(node, CharDevNode):
                    if path.startswith("/dev"):
                        write(dst, f"{node.dev.devt[0]}:{node.dev.devt[1]}\n".encode(), 0o666 & ~umask)
                    else:
                        write(dst, b"", 0o600)
                else:
                    try:
                        # consuming files (trace_pipe*) are not read: rendering must not eat events
                        data = b"" if getattr(node, "stream", False) else node.read()  # type: ignore[attr-defined]
                    except (KernelError, OSError):
                        data = b""
                    m = node.mode & 0o777  # type: ignore[attr-defined]
                    write(dst, data, m if m else 0o200)
    return count
