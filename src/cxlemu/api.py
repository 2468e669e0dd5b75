"""The Python API: cxlemu machines from scripts and notebooks (docs/python.md).

    import cxlemu
    m = cxlemu.create("box", topology="biscuitos-b")      # or cxlemu.open("box")
    m.run_tool("cxl", "list", "-M")                         # parsed JSON
    m.sysfs.read("/sys/bus/cxl/devices/mem0/serial")
    with m.dax("dax0.0") as buf: buf[:5] = b"hello"        # numpy uint8 array

Every method is a ``cxlemu`` command: when the machine runs as a process
(``m.start()``) it goes over the machine's socket, otherwise it runs in this
process with a load and a save -- the same command code either way, so the
results are identical.  Output is captured, never printed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

__all__ = ["CommandError", "Machine", "ToolError", "create", "machines", "open"]


class CommandError(Exception):
    """A ``cxlemu`` command or tool failed: its exit code and streams."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str):
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr
        msg = stderr.strip() or stdout.strip() or f"exit status {returncode}"
        super().__init__(f"{' '.join(argv)}: {msg}")


ToolError = CommandError


@dataclass
class Result:
    """What a command printed and returned."""
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "Result":
        if self.returncode != 0:
            raise CommandError(self.argv, self.returncode, self.stdout, self.stderr)
        return self


def _capture_in_process(argv: list[str]) -> Result:
    from cxlemu.cli.main import _main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = _main(list(argv))
        except SystemExit as e:                 # argparse usage errors
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return Result(list(argv), int(rc or 0), out.getvalue(), err.getvalue())


def _capture_remote(machine_path: str, argv: list[str]) -> Result | None:
    """Run in the machine process with pipes for its streams; None if it does not run."""
    from cxlemu.machine import client
    sock = client.connect(machine_path)
    if sock is None:
        return None
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    chunks: dict[int, list[bytes]] = {r_out: [], r_err: []}

    def drain(fd: int) -> None:
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            chunks[fd].append(b)
        os.close(fd)

    readers = [threading.Thread(target=drain, args=(fd,), daemon=True) for fd in (r_out, r_err)]
    for t in readers:
        t.start()
    try:
        rc = client.run(machine_path, list(argv), sock=sock, fds=[null, w_out, w_err])
    finally:
        for fd in (null, w_out, w_err):
            os.close(fd)
        for t in readers:
            t.join()
    return Result(list(argv), 1 if rc is None else rc, b"".join(chunks[r_out]).decode(errors="replace"),
                  b"".join(chunks[r_err]).decode(errors="replace"))


def _cxlemu(argv: list[str]) -> Result:
    """``cxlemu ARGV``: in the machine process when the CLI would send it
    there (the machine runs), else here."""
    from cxlemu.machine import client
    target = client.forward_target(argv)
    if target is not None:
        r = _capture_remote(target, argv)
        if r is not None:
            return r
    return _capture_in_process(argv)


def _parse(text: str) -> Any:
    s = text.strip()
    if s[:1] in ("[", "{"):
        try:
            return json.loads(s)
        except ValueError:
            pass
    return text


class Sysfs:
    """The machine's /sys, /proc and /dev as paths (``cxlemu sysfs``)."""

    def __init__(self, machine: "Machine"):
        self._m = machine

    def read(self, path: str) -> str:
        return self._m.cxlemu("sysfs", self._m.name, "read", path).stdout

    def write(self, path: str, value: Any) -> None:
        """Write ``value`` (a newline is appended, as ``echo`` does); raises
        CommandError with the kernel's errno message when the kernel refuses."""
        self._m.cxlemu("sysfs", self._m.name, "write", path, str(value))

    def ls(self, path: str = "/sys") -> list[str]:
        return self._m.cxlemu("sysfs", self._m.name, "ls", path).stdout.split()


class Machine:
    """A handle on machine ``name`` (nothing is loaded until a method needs it)."""

    def __init__(self, name: str):
        from cxlemu.machine.store import Store
        self.name = name
        self._store = Store()
        self.path: Path = self._store.path(name)
        self.sysfs = Sysfs(self)

    def __repr__(self) -> str:
        return f"<cxlemu machine {self.name!r}{' running' if self.running else ''}>"

    # ---- commands -------------------------------------------------------------------------
    def cxlemu(self, *argv: str, check: bool = True) -> Result:
        """Run ``cxlemu ARGV...`` on this machine's behalf and capture it."""
        r = _cxlemu([str(a) for a in argv])
        return r.check() if check else r

    def run_tool(self, tool: str, *args: str, check: bool = True) -> Any:
        """``cxlemu exec NAME -- TOOL ARGS``: parsed JSON when the tool prints
        JSON, else its text.  A non-zero exit raises CommandError carrying the
        tool's stderr (``check=False`` returns the Result instead)."""
        r = self.cxlemu("exec", self.name, "--", tool, *args, check=False)
        if not check:
            return r
        r.check()
        return _parse(r.stdout)

    def show(self) -> dict:
        return json.loads(self.cxlemu("show", self.name).stdout)

    def iomem(self) -> str:
        return self.cxlemu("iomem", self.name).stdout

    def dmesg(self) -> list[str]:
        return self.cxlemu("dmesg", self.name).stdout.splitlines()

    def reboot(self) -> str:
        """Orderly reboot: volatile memory is lost, persistent memory survives."""
        return self.cxlemu("reboot", self.name).stdout.strip()

    def power_fail(self) -> str:
        """Cut the power: stores never flushed from the CPU caches are lost (unless eADR)."""
        return self.cxlemu("power-fail", self.name).stdout.strip()

    # ---- the machine process ------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return bool(self._store.running(self.name))

    def start(self) -> "Machine":
        """Run the machine as a process (no-op if it runs already)."""
        if not self.running:
            self.cxlemu("start", self.name)
        return self

    def stop(self) -> "Machine":
        """Stop the machine process; its state is saved (no-op if it is not running)."""
        if self.running:
            self.cxlemu("stop", self.name)
        return self

    def status(self, check: bool = False) -> dict:
        return json.loads(self.cxlemu("status", self.name, "--json", *(["--check"] if check else []),
                                      check=False).stdout)

    def remove(self) -> None:
        self.stop()
        self.cxlemu("rm", self.name)

    # ---- device-DAX ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def map_dax(self, dev: str = "dax0.0", length: int | None = None, offset: int = 0,
                populate: bool = False) -> Iterator[Any]:
        """mmap of /dev/DEV: the :class:`cxlemu.data.dax_mapping.DaxMapping`
        (``.array``, ``.persist(off, len)``, ``.flush()``).  The machine is read
        once to find the device's ranges and is not held while mapped: other
        commands and readers go on meanwhile.  Unmapped when the block ends;
        stores not flushed by then stay in the CPU-cache model."""
        from cxlemu.data.dax_mapping import DaxDevice
        m = self._store.load_unlocked(self.name)
        try:
            mapping = DaxDevice.open(m.backend(), dev).mmap(length, offset, populate=populate)
            try:
                yield mapping
            finally:
                mapping.close()
        finally:
            m.media.close()

    @contextlib.contextmanager
    def dax(self, dev: str = "dax0.0", length: int | None = None, offset: int = 0) -> Iterator[Any]:
        """``with m.dax("dax0.0") as buf:`` -- the mapping as a writable numpy uint8 array."""
        with self.map_dax(dev, length, offset) as mapping:
            yield mapping.array


def create(name: str, topology: str = "biscuitos-b", *, exist_ok: bool = False, start: bool = False) -> Machine:
    """Create and boot machine ``name`` from a preset name or a TOML file
    (``exist_ok``: open it if it exists); ``start`` runs it as a process."""
    m = Machine(name)
    if not (exist_ok and m._store.exists(name)):
        _cxlemu(["create", name, "--topology", str(topology)]).check()
    if start:
        m.start()
    return m


def open(name: str) -> Machine:   # noqa: A001 - cxlemu.open(name), as the issue asks
    """A handle on existing machine ``name``."""
    m = Machine(name)
    if not m._store.exists(name):
        from cxlemu.machine.paths import MachineError
        raise MachineError(f"no machine named {name!r} (see: cxlemu.machines())")
    return m


def machines() -> list[str]:
    from cxlemu.machine.store import Store
    return Store().names()

