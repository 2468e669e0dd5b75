"""What the libcxl objects backed by one sysfs device directory share
(cxl/lib/libcxl.c): the device name, the "enabled" test (``<dev>/driver``
is a symlink, re-checked on every call) and the bind/unbind steps of the
``cxl_*_enable()`` / ``cxl_*_disable*()`` functions (util_bind /
util_unbind, whose own errors are ignored: only the driver link counts)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Iterable, TypeVar

if TYPE_CHECKING:
    from .context import CxlContext

__all__ = ["devname_of", "SysfsDevice", "same_id"]

T = TypeVar("T")


def devname_of(path: str) -> str:
    """``devpath_to_devname()``: the text after the last '/'."""
    return path.rsplit("/", 1)[-1]


def same_id(known: Iterable[T] | None, new: T) -> T:
    """The object of ``known`` with ``new``'s id (libcxl keeps the first of
    two directory entries naming the same id), else ``new``."""
    for dup in known or ():
        if dup.id == new.id:  # type: ignore[attr-defined]
            return dup
    return new


class SysfsDevice:
    ctx: "CxlContext"
    dev_path: str

    @property
    def devname(self) -> str:
        return devname_of(self.dev_path)

    def is_enabled(self) -> bool:
        return self.ctx.io.is_link(f"{self.dev_path}/driver")

    def _bind_checked(self, func: str) -> None:
        """Bind through the cxl drivers; ``OSError(ENXIO)`` ("failed to
        enable", logged by ``func``) unless the driver link appeared."""
        try:
            self.ctx.io.bind(self.devname)
        except OSError:
            pass
        if not self.is_enabled():
            self.ctx.log.err(func, f"{self.devname}: failed to enable")
            raise OSError(errno.ENXIO, "failed to enable", self.devname)

    def _unbind_checked(self, func: str) -> None:
        """Unbind ``<dev>/driver``; ``OSError(EBUSY)`` ("failed to
        disable", logged by ``func``) while the driver link remains."""
        try:
            self.ctx.io.unbind(self.dev_path)
        except OSError:
            pass
        if self.is_enabled():
            self.ctx.log.err(func, f"{self.devname}: failed to disable")
            raise OSError(errno.EBUSY, "failed to disable", self.devname)
