"""kernfs nodes (fs/kernfs): the generic files, links and directories
sysfs, procfs-like trees and the kernel's own directories are made of.

The kernel model builds its non-device directories (/sys/kernel/mm,
/proc/sys/vm, debugfs ...) from these; ``cxlemu.sysfs.vfs`` adds the
device-model directories and walks paths.  A node's ``read`` returns bytes
and ``write`` takes the raw buffer, raising :class:`KernelError` with the
errno a write(2) gets (fs/kernfs/file.c).
"""

from __future__ import annotations

import errno
from typing import Callable

from cxlemu.kernel.base.device import KernelError


class VNode:
    kind = "?"


class VFile(VNode):
    kind = "file"
    mode = 0o444
    stream = False          # consuming reads (trace_pipe): no caching, no seeking
    quiet = False           # a knob: a refused store leaves no log line (sysfs/vfs.py tree_node)

    def readable(self) -> bool:
        """poll(2): would a read return data now?  Attributes always can."""
        return True

    def read(self) -> bytes:
        raise KernelError(errno.EACCES)

    def write(self, data: bytes) -> None:
        raise KernelError(errno.EACCES)


class FuncFile(VFile):
    def __init__(self, read: Callable[[], "str | bytes"] | None = None,
                 write: Callable[[bytes], None] | None = None, mode: int | None = None):
        self._read, self._write = read, write
        self.mode = mode if mode is not None else ((0o444 if read else 0) | (0o200 if write else 0))

    def read(self) -> bytes:
        if self._read is None:
            raise KernelError(errno.EACCES)
        v = self._read()
        return v.encode() if isinstance(v, str) else v

    def write(self, data: bytes) -> None:
        if self._write is None:
            raise KernelError(errno.EACCES)
        self._write(data)

    @property
    def pure(self) -> bool:
        """Writing changes nothing that persists (kernel/base/device.py pure_action)."""
        return getattr(self._write, "sysfs_pure", False)


class VLink(VNode):
    kind = "link"

    def __init__(self, target: str):
        self.target = target


class VDir(VNode):
    kind = "dir"

    def entries(self) -> dict[str, VNode]:
        return {}

    def lookup(self, name: str) -> VNode | None:
        return self.entries().get(name)

    def mkdir(self, name: str) -> None:
        """mkdir(2) in this directory: sysfs refuses (tracefs instances/ allows)."""
        raise KernelError(errno.EPERM)

    def rmdir(self, name: str) -> None:
        raise KernelError(errno.EPERM)


class StaticDir(VDir):
    """A directory computed by ``fn``; ``lookup_fn(name)``, when given,
    finds one entry without building the whole listing (big buses)."""

    def __init__(self, fn: Callable[[], dict[str, VNode]],
                 lookup_fn: Callable[[str], VNode | None] | None = None):
        self._fn = fn
        self._lookup_fn = lookup_fn

    def entries(self) -> dict[str, VNode]:
        return self._fn()

    def lookup(self, name: str) -> VNode | None:
        if self._lookup_fn is not None:
            return self._lookup_fn(name)
        return self._fn().get(name)
