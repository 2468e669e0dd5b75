"""Helpers for the device-socket and interposer tests: a machine with a
devdax namespace served on a temporary socket, a Python client of the
protocol, and real programs run under the interposer."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "nvdimm"))

from cxltest_support import real_tools_available, render_machine, run_real  # noqa: E402
from pmem_support import MiB, fabric, ndctl, pmem_region, topo  # noqa: E402

from cxlemu import preload  # noqa: E402
from cxlemu.machine import devproto as P  # noqa: E402
from cxlemu.machine.devserver import serve  # noqa: E402
from cxlemu.machine.store import Store  # noqa: E402

ROOT = HERE.parents[1]


def lib_or_skip() -> str:
    lib = preload.library_path()
    if lib is None:
        if os.environ.get("CI") or os.environ.get("CXLEMU_REQUIRE_REAL"):
            pytest.fail("the interposer library is not built (no C compiler?)")
        pytest.skip("the interposer library is not built (no C compiler)")
    return lib


def topology(ways: int, gran: int = 4096) -> str:
    if ways == 1:
        return topo()
    text = fabric(ways)
    return text if gran >= 256 else text


@contextlib.contextmanager
def served(ways: int = 1, *, gran: int = 4096, namespace: str | None = "64M", name: str = "pm", text=None,
           root: Path | None = None, sock_dir: str | None = None):
    """A stored machine (pmem region over ``ways`` devices, a devdax
    namespace), open, with its device socket served in this process.
    ``root``: where machines are stored (default: $CXLEMU_HOME)."""
    st = Store(root)
    st.create(name, text or topology(ways))
    with st.open(name) as m:
        b = m.backend()
        if namespace:
            pmem_region(b, gran=gran)
            rc, _out, err = ndctl(b, "create-namespace", "-m", "devdax", "-s", namespace)
            assert rc == 0, err
        d = sock_dir or tempfile.mkdtemp(prefix="cxlemu-devsock-")
        lock = threading.RLock()
        srv = serve(m, lock, os.path.join(d, "dev.sock"))
        try:
            yield m, srv, lock
        finally:
            srv.close()
            shutil.rmtree(d, ignore_errors=True)


class Client:
    """One connection = one open file, as the interposer makes them."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(str(path))

    def call(self, op: int, payload: bytes = b"") -> tuple[int, bytes]:
        self.s.sendall(P.message(op, payload))
        raw = self._recv(P.HEADER.size)
        h = P.Header.unpack(raw)
        return h.status, self._recv(h.length)

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server hung up")
            buf += chunk
        return buf

    def close(self) -> None:
        self.s.close()


def compile_c(src: Path, out: Path) -> Path:
    if preload.compiler() is None:
        pytest.skip("no C compiler")
    p = subprocess.run([*preload.compiler().split(), "-O2", "-Wall", "-o", str(out), str(src)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return out


def real_or_skip(*tools: str) -> None:
    why = real_tools_available(*tools)
    if why:
        if os.environ.get("CI") or os.environ.get("CXLEMU_REQUIRE_REAL"):
            pytest.fail(why)
        pytest.skip(why)


def run_under(m, srv, *argv: str, env: dict | None = None, extra_nodes: dict | None = None,
              rendered: str | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` with the machine's rendered /sys and its /dev nodes
    (mknod'ed, emulated majors) in ``unshare -m``, under the interposer."""
    lib = lib_or_skip()
    out = rendered or tempfile.mkdtemp(prefix="cxlemu-real-")
    try:
        if rendered is None:
            render_machine(m.backend(), out)
        for name, devt in (extra_nodes or {}).items():
            Path(out, "dev", name).write_text(devt)
        e = [f"LD_PRELOAD={lib}", f"CXLEMU_DEV_SOCKET={srv.path}"]
        e += [f"{k}={v}" for k, v in (env or {}).items()]
        return run_real(out, "env", *e, *argv)
    finally:
        if rendered is None:
            shutil.rmtree(out, ignore_errors=True)


__all__ = ["Client", "MiB", "P", "ROOT", "compile_c", "lib_or_skip", "real_or_skip", "run_under", "served",
           "pmem_region", "ndctl", "fabric", "topo"]
