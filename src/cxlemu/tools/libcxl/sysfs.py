"""Attribute I/O and device scans the way libcxl does them (util/sysfs.c),
over the path-level backend API (``cxlemu.sysfs.backend``).

Behaviour reproduced:

* ``read_attr``: one ``read()`` of at most ``SYSFS_ATTR_SIZE`` (1024) bytes;
  a read of 1024 bytes or more counts as a failure that leaves an empty
  string and a zero errno (the C code returns ``-errno`` with errno unset,
  so callers see success with ``""``); one trailing newline is stripped and
  the value ends at the first NUL (C string).
* ``write_attr``: ``strlen(buf) + 1`` bytes, i.e. the text plus its NUL.
  Failures raise ``OSError`` with the errno the write got.
* ``scan``: ``opendir``/``readdir`` in the backend's readdir order,
  keeping entries whose name matches ``sscanf("<prefix>%d")``; the device
  path is ``<base>/<entry>``, exactly as libcxl builds it (through the
  ``/sys/bus/cxl/devices/<dev>`` symlinks).
* ``realpath``: fails (None) unless every component exists, like C.
* ``is_link``: ``lstat()`` + ``S_ISLNK`` (the "enabled" test on ``driver``).
* ``bind`` / ``unbind``: util/sysfs.c ``__util_bind`` / ``__util_unbind``.

Performance: a path through ``/sys/bus/<bus>/devices/<dev>`` costs the
emulator's VFS a walk over every device of the bus, so each such prefix is
resolved once and later accesses go through the resolved directory.  This
does not change what is read: the symlink target does not move while a
command runs (and :meth:`SysfsIO.forget` drops the cache after a write that
can re-create devices).  An object that reads many attributes of one
directory (a decoder, a memdev, a port) resolves that directory once
(:meth:`SysfsIO.reader`); ``realpath`` asks the backend for a strict
resolution when it offers one (``realpath_strict``: one ``open(O_PATH)`` on a
directory tree instead of a component walk plus an existence check).
"""

from __future__ import annotations

import errno as errno_mod
import os
from dataclasses import field
from typing import Any, Callable

from cxlemu.tools.common.log import Log
from cxlemu.util.lazydc import dataclass

from .cnum import sscanf_int

__all__ = ["SYSFS_ATTR_SIZE", "SysfsIO", "ScanEntry", "strerror"]

SYSFS_ATTR_SIZE = 1024


def strerror(code: int) -> str:
    """glibc ``strerror()`` text (``Success`` for 0)."""
    return os.strerror(code) if code else "Success"


@dataclass(frozen=True, slots=True)
class ScanEntry:
    """A directory entry that names a device: its id, name and path."""
    id: int
    name: str
    path: str


@dataclass
class SysfsIO:
    """Path-level I/O with libcxl's rules; ``log`` is the library's log
    context (owner ``libcxl``), used for its debug messages."""

    backend: Any
    log: Log
    last_errno: int = 0
    _alias: dict[str, str | None] = field(default_factory=dict)
    #: writes made through this object (and forget() calls): what a library keeps
    #: from its reads is good while this has not moved
    writes: int = 0

    # ---- path canonicalisation (a cache, not a semantic change) ----------
    def _canon(self, path: str) -> str:
        if not path.startswith("/sys/bus/"):
            return path
        parts = path.split("/", 6)  # '', sys, bus, <bus>, devices, <dev>, rest
        if len(parts) < 6 or parts[4] != "devices" or not parts[5]:
            return path
        key = "/".join(parts[:6])
        if key not in self._alias:
            try:
                self._alias[key] = self.backend.realpath(key)
            except OSError:
                self._alias[key] = None
        real = self._alias[key]
        if real is None:
            return path
        return real if len(parts) == 6 else f"{real}/{parts[6]}"

    def forget(self) -> None:
        """Drop cached ``/sys/bus/*/devices`` resolutions."""
        self._alias.clear()
        self.writes += 1

    # ---- reads -------------------------------------------------------------
    def read_attr(self, path: str) -> str | None:
        """``sysfs_read_attr()``: the value, or None (errno in ``last_errno``)."""
        try:
            raw = self.backend.read_bytes(self._canon(path))
        except OSError as e:
            return self._read_failed(path, e)
        return self._value(raw, path)

    def reader(self, base: str) -> Callable[[str], str | None]:
        """``rd(name)``, which is ``read_attr(f"{base}/{name}")`` with ``base``
        resolved once (what an object reading many attributes of its
        directory uses)."""
        cbase = self._canon(f"{base}/x")[:-2]
        read_bytes = self.backend.read_bytes

        def rd(name: str) -> str | None:
            try:
                raw = read_bytes(f"{cbase}/{name}")
            except OSError as e:
                return self._read_failed(f"{base}/{name}", e)
            if len(raw) >= SYSFS_ATTR_SIZE:
                return self._value(raw, f"{base}/{name}")
            self.last_errno = 0                      # _value(), inline: the common case
            if raw[-1:] == b"\n":
                raw = raw[:-1]
            if b"\0" in raw:
                raw = raw[:raw.index(b"\0")]
            return raw.decode("utf-8", "replace")
        return rd

    def _read_failed(self, path: str, e: OSError) -> None:
        self.last_errno = e.errno or errno_mod.EIO
        self.log.dbg("__sysfs_read_attr", f"failed to open {path}: {strerror(self.last_errno)}")
        return None

    def _value(self, raw: bytes, path: str) -> str:
        """The C string ``__sysfs_read_attr()`` leaves from one read() of ``raw``."""
        self.last_errno = 0
        if len(raw) >= SYSFS_ATTR_SIZE:
            # n >= SYSFS_ATTR_SIZE: buf[0] = 0 and "return -errno" with errno 0
            self.log.dbg("__sysfs_read_attr", f"failed to read {path}: Success")
            return ""
        if raw[-1:] == b"\n":
            raw = raw[:-1]
        if b"\0" in raw:
            raw = raw[:raw.index(b"\0")]
        return raw.decode("utf-8", "replace")

    def realpath(self, path: str) -> str | None:
        """``realpath(path, NULL)``: None unless the whole path exists."""
        c = self._canon(path)
        strict = getattr(self.backend, "realpath_strict", None)
        if strict is not None:
            return strict(c)
        try:
            rp = self.backend.realpath(c)
        except OSError:
            return None
        if not self.backend.exists(rp):
            return None
        return rp

    def is_link(self, path: str) -> bool:
        """``lstat(path)`` succeeds and ``S_ISLNK``."""
        return bool(self.backend.islink(self._canon(path)))

    def exists(self, path: str) -> bool:
        """``access(path, F_OK) == 0`` / ``stat(path) == 0``."""
        return bool(self.backend.exists(self._canon(path)))

    def listdir(self, path: str) -> list[str] | None:
        try:
            return list(self.backend.listdir(self._canon(path)))
        except OSError as e:
            self.last_errno = e.errno or errno_mod.EIO
            return None

    def chardev(self, path: str) -> tuple[int, int] | None:
        """``stat(path)`` of a device node: ``(major, minor)`` or None."""
        return self.backend.chardev(path)

    # ---- writes ------------------------------------------------------------
    def write_attr(self, path: str, text: str, quiet: bool = False) -> None:
        """``sysfs_write_attr()``: writes ``text`` plus its NUL terminator;
        raises ``OSError(errno)`` on failure."""
        self.writes += 1
        self._write(path, text, quiet)

    def _write(self, path: str, text: str, quiet: bool) -> None:
        data = text.encode() + b"\0"
        try:
            self.backend.write(self._canon(path), data)
        except OSError as e:
            code = e.errno or errno_mod.EIO
            if not quiet:
                self.log.dbg("__sysfs_write_attr",
                             f"failed to write {text} to {path}: {strerror(code)}")
            raise OSError(code, strerror(code), path) from None

    def flush(self) -> None:
        """``cxl_flush()`` (``cxl_wait_probe()``): errors are ignored."""
        try:
            # (not counted in ``writes``: it waits for probing, it changes nothing a
            # library keeps, and libcxl flushes before every scan)
            self._write("/sys/bus/cxl/flush", "1\n", quiet=True)
        except OSError:
            pass

    # ---- scans -------------------------------------------------------------
    def scan(self, base: str, prefix: str) -> list[ScanEntry]:
        """``__sysfs_device_parse(base, prefix)``: matching entries in
        readdir order (the caller adds them in that order)."""
        self.log.dbg("__sysfs_device_parse", f"base: '{base}' dev: '{prefix}'")
        names = self.listdir(base)
        if names is None:
            self.log.dbg("__sysfs_device_parse", f'no "{prefix}" devices found')
            return []
        out = []
        for name in names:
            if not name.startswith(prefix):      # most entries are attributes
                continue
            dev_id = sscanf_int(name, prefix)
            if dev_id is None:
                continue
            out.append(ScanEntry(dev_id, name, f"{base}/{name}"))
        return out

    # ---- util_bind / util_unbind -------------------------------------------
    def bind(self, devname: str, bus: str = "cxl") -> None:
        """``__util_bind()``: write ``devname`` to every
        ``/sys/bus/<bus>/drivers/*/bind`` (readdir order, names starting
        with '.' skipped) until one succeeds.  Raises ``OSError(ENXIO)``
        when none does (the C function returns -ENXIO)."""
        path = f"/sys/bus/{bus}/drivers"
        names = self.listdir(path)
        if names is None:
            self.log.err("__util_bind", f'{devname}: opendir("{path}") failed')
            raise OSError(errno_mod.ENXIO, strerror(errno_mod.ENXIO), path)
        failed = False
        for name in names:
            if name.startswith("."):
                continue
            try:
                self.write_attr(f"{path}/{name}/bind", devname, quiet=True)
            except OSError:
                failed = True
                continue
            failed = False
            break
        if failed:
            self.log.dbg("__util_bind", f"{devname}: bind failed")
            raise OSError(errno_mod.ENXIO, strerror(errno_mod.ENXIO), devname)

    def unbind(self, devpath: str) -> None:
        """``__util_unbind()``: write the device name to
        ``<devpath>/driver/unbind``; raises ``OSError`` on failure."""
        devname = devpath.rsplit("/", 1)[-1]
        self.write_attr(f"{devpath}/driver/unbind", devname)
