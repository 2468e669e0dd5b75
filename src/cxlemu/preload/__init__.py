"""The LD_PRELOAD interposer that makes a machine's device files work.

The C library (``interpose.c``, ``cpucache.c``; see docs/devdax.md) is built
from source when the package is installed (``setup.py``: an optional
extension, so that installing without a C compiler still succeeds).  It
serves two kinds of users:

* programs run by ``cxlemu real`` (``LD_PRELOAD=<library>``,
  ``CXLEMU_DEV_SOCKET=<machine>/dev.sock``): /dev/cxl/memN and /dev/nmemN
  ioctls, mmap of /dev/daxX.Y onto the media files, /dev/mem reads and writes;
* this Python package (``cxlemu.data.cpucache``, through ctypes): the store
  trap of the CPU-cache model behind ``DaxMapping``.

This package imports nothing from the rest of cxlemu (it sits on the lowest
floor, beside ``util``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

#: ``CXLEMU_PRELOAD_LIB=/path/to/lib.so`` uses that build; ``none`` disables it.
ENV = "CXLEMU_PRELOAD_LIB"
HERE = Path(__file__).resolve().parent
SOURCES = ("interpose.c", "cpucache.c")
HEADERS = ("cpucache.h", "protocol.h")
LIB_NAME = "libcxlemu_preload.so"


def _installed() -> Path | None:
    found = sorted(HERE.glob("_cxlemu_preload*.so"), key=lambda p: p.stat().st_mtime, reverse=True)
    found += [p for p in (HERE / LIB_NAME,) if p.exists()]
    return found[0] if found else None


def library_path() -> str | None:
    """Absolute path of the interposer library, or None when it was not built
    (no C compiler at install time) or ``CXLEMU_PRELOAD_LIB=none``."""
    env = os.environ.get(ENV)
    if env is not None:
        if env.strip().lower() in ("", "none", "0", "off"):
            return None
        return env if os.path.isfile(env) else None
    p = _installed()
    return str(p) if p else None


def compiler() -> str | None:
    """The C compiler ``build()`` would use (``$CC``, cc or gcc), or None."""
    for cc in (os.environ.get("CC"), "cc", "gcc"):
        if cc and shutil.which(cc.split()[0]):
            return cc
    return None


def sources_mtime() -> float:
    return max((HERE / f).stat().st_mtime for f in SOURCES + HEADERS)


def build(dest: str | os.PathLike[str]) -> Path:
    """Compile the library into ``dest`` (a directory) with the system C
    compiler and return its path; ``RuntimeError`` with the compiler's
    message when that fails.  (Installing the package does the same through
    setup.py; this is for development trees and tests.)"""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (install gcc and libc6-dev)")
    out = Path(dest) / LIB_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = [*cc.split(), "-O2", "-fPIC", "-shared", "-Wall", "-o", str(tmp),
           *(str(HERE / s) for s in SOURCES), "-ldl", "-lpthread"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"building {LIB_NAME} failed:\n{p.stderr.strip()}")
    os.replace(tmp, out)
    return out
