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
from pathlib import Path
from typing import Any, Iterator

from cxlemu.util.lazydc import dataclass

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

    # ---- workloads -------------------------------------------------------------------------------
    def run(self, workload: Any, policy: str | None = None, *, accesses: Any = None, duration: Any = None,
            seed: int | None = None, compare: Any = None, damos: str | None = None,
            allocator: str | None = None, smdk_conf: str | None = None, kind: str | None = None,
            report: str | os.PathLike | None = None) -> Any:
        """``cxlemu run``: run a workload on the machine and return its
        :class:`cxlemu.sim.results.RunResult` (``summary()``, ``to_dict()``,
        ``timeline.plot()`` ...); with ``compare`` (policy names, a list or
        ``"a,b"``), the list of results, one per policy, run on copies.

        ``workload`` is a built-in generator (``cxlemu.workloads.Zipf(rss="8G",
        alpha=0.99)``), a list of them (one process each, all from the start),
        or the path of a workload TOML file.  The options are the command's:
        ``accesses`` ("200M" or an int), ``duration`` ("30s" or ns as an int),
        ``seed``, ``damos``, ``allocator``/``smdk_conf``/``kind``, ``report`` (a
        directory).  The run is the ``cxlemu run`` command itself: it happens
        where the machine's state lives (in the machine process when the
        machine runs, else here with a load and a save), changes the machine as
        the command does, and gives the numbers ``cxlemu run --json`` prints.
        A workload class of your own (not a built-in) runs in this process
        through :func:`cxlemu.sim.run` and needs the machine stopped."""
        import tempfile
        from cxlemu.userspace import workloads as wls
        with tempfile.TemporaryDirectory(prefix="cxlemu-run-") as tmp:
            try:
                wl_argv = _workload_argv(workload, tmp)
            except _CustomWorkload:
                return self._run_custom(workload, policy, accesses=accesses, duration=duration, seed=seed,
                                        compare=compare, other=(damos, allocator, smdk_conf, kind, report))
            except wls.WorkloadError as e:
                raise ValueError(str(e)) from None
            argv = ["run", self.name, *wl_argv]
            if policy is not None:
                argv += ["--policy", str(policy)]
            if compare is not None:
                argv += ["--compare", compare if isinstance(compare, str) else ",".join(map(str, compare))]
            if accesses is not None and duration is not None:
                raise ValueError("run: give accesses or duration, not both")
            if accesses is not None:
                argv += ["--accesses", str(accesses)]
            if duration is not None:
                argv += ["--duration", f"{duration}ns" if isinstance(duration, int) else str(duration)]
            for opt, val in (("--seed", seed), ("--damos", damos), ("--allocator", allocator),
                             ("--smdk-conf", smdk_conf), ("--kind", kind)):
                if val is not None:
                    argv += [opt, str(val)]
            if report is not None:
                argv += ["--report", os.path.abspath(os.fspath(report))]
            out = os.path.join(tmp, "results")
            self.cxlemu(*argv, "--json", "--result-file", out)
            results = _load_results(out)
        return results if compare is not None else results[0]

    def _run_custom(self, workload: Any, policy: str | None, *, accesses: Any, duration: Any, seed: Any,
                    compare: Any, other: tuple) -> Any:
        """A workload class of the caller's own: its code runs here, on the
        machine loaded here (and saved after), through cxlemu.sim.run."""
        from cxlemu.machine.paths import MachineError
        from cxlemu.userspace.workloads.base import parse_count, parse_duration
        if compare is not None or any(x is not None for x in other):
            raise ValueError("run: a workload class of your own takes policy, accesses, duration and seed only")
        if self.running:
            raise MachineError(f"{self.name}: a workload class of your own runs in this process, on a stopped "
                               f"machine (m.stop() first), or use a built-in generator (cxlemu.workloads)")
        from cxlemu.sim import run as sim_run
        kw: dict[str, Any] = {"policy": policy, "seed": int(seed or 0)}
        if accesses is not None:
            kw["accesses"] = parse_count(accesses)
        if duration is not None:
            kw["duration"] = parse_duration(f"{duration}ns" if isinstance(duration, int) else duration)
        with self._store.open(self.name) as m:
            res = sim_run(m, workload, label=policy or "", **kw)
            res.machine = self.name
            m.kernel.dirty = True
        res.processes_live = []
        return res

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


class _CustomWorkload(Exception):
    """The workload is not a built-in generator: it cannot be named on a command line."""


def _param_text(kind: str, value: Any) -> str:
    """A parsed parameter value as the command line writes it (parses back to the same value)."""
    if kind == "duration":
        return f"{int(value)}ns"
    if kind == "bool":
        return "true" if value else "false"
    if kind == "float":
        return repr(float(value))
    return str(value)


def _params(wl: Any) -> tuple[str, dict[str, str]]:
    from cxlemu.userspace import workloads as wls
    from cxlemu.userspace.workloads.base import COMMON
    cls = type(wl)
    try:
        if not isinstance(wl, wls.Workload) or wls.get(wl.name) is not cls:
            raise _CustomWorkload
    except wls.WorkloadError:
        raise _CustomWorkload from None
    out: dict[str, str] = {}
    for p in tuple(cls.PARAMS) + tuple(COMMON):
        default = p.default if not isinstance(p.default, str) or p.kind == "str" else p.parse(p.default)
        v = wl.p.get(p.name, default)
        if v != default:
            out[p.name] = _param_text(p.kind, v)
    return wl.name, out


def _toml_str(s: str) -> str:
    return json.dumps(s)                     # a TOML basic string is a JSON string


def _workload_argv(workload: Any, tmp: str) -> list[str]:
    """``cxlemu run`` arguments for a generator, a list of them or a workload file."""
    if isinstance(workload, (str, os.PathLike)):
        return ["--workload", os.path.abspath(os.fspath(workload))]
    if isinstance(workload, (list, tuple)):
        if not workload:
            raise ValueError("run: an empty list of workloads")
        lines = []
        for i, wl in enumerate(workload):
            name, params = _params(wl)
            lines += ["[[process]]", f"workload = {_toml_str(name)}", f"name = {_toml_str(f'{name}{i}')}",
                      "[process.params]", *(f"{k} = {_toml_str(v)}" for k, v in params.items()), ""]
        path = os.path.join(tmp, "workload.toml")
        with io.open(path, "w") as f:
            f.write("\n".join(lines))
        return ["--workload", path]
    name, params = _params(workload)
    argv = [name]
    for k, v in params.items():
        argv.append(f"--{k.replace('_', '-')}={v}")
    return argv


def _load_results(path: str) -> list:
    from cxlemu.machine import stateio
    results, _meta = stateio.load(path)
    return results


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

