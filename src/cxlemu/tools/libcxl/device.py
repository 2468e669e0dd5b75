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

__all__ = ["devname_of", "IdList", "SysfsDevice", "same_id"]

T = TypeVar("T")


def devname_of(path: str) -> str:
    """``devpath_to_devname()``: the text after the last '/'."""
    return path.rsplit("/", 1)[-1]


class IdList(list):
    """A device list (libcxl's ``list_head``) that also indexes its objects by
    identity and by ``.id``, so that the duplicate checks of a scan
    (:func:`same_id`, ``scan_into``) cost O(1) instead of a walk of the list:
    a 16 384-memdev scan would otherwise be quadratic.  Every mutation keeps
    the index (the first object of an id, in list order, is the one found)."""

    def __init__(self, items: Iterable = ()):
        super().__init__(items)
        self._reindex()

    def _reindex(self) -> None:
        self._objs = {id(o) for o in self}
        self._by_id: dict = {}
        for o in self:
            self._by_id.setdefault(getattr(o, "id", None), o)

    def has(self, obj: object) -> bool:
        return id(obj) in self._objs

    def first_with_id(self, ident: object) -> object | None:
        return self._by_id.get(ident)

    def insert(self, index, obj) -> None:  # type: ignore[override]
        super().insert(index, obj)
        if getattr(obj, "id", None) in self._by_id:
            self._reindex()
        else:
            self._objs.add(id(obj))
            self._by_id[getattr(obj, "id", None)] = obj

    def append(self, obj) -> None:  # type: ignore[override]
        super().append(obj)
        self._objs.add(id(obj))
        self._by_id.setdefault(getattr(obj, "id", None), obj)

    def _mutated(name: str):  # noqa: N805 - a helper that wraps list methods
        def fn(self, *args, **kw):
            out = getattr(list, name)(self, *args, **kw)
            self._reindex()
            return out
        fn.__name__ = name
        return fn

    __setitem__ = _mutated("__setitem__")
    __delitem__ = _mutated("__delitem__")
    __iadd__ = _mutated("__iadd__")
    extend = _mutated("extend")
    remove = _mutated("remove")
    pop = _mutated("pop")
    clear = _mutated("clear")
    sort = _mutated("sort")
    reverse = _mutated("reverse")
    del _mutated


def same_id(known: Iterable[T] | None, new: T) -> T:
    """The object of ``known`` with ``new``'s id (libcxl keeps the first of
    two directory entries naming the same id), else ``new``."""
    if isinstance(known, IdList):
        dup = known.first_with_id(new.id)  # type: ignore[attr-defined]
        return dup if dup is not None else new  # type: ignore[return-value]
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
