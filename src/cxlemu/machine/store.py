"""Machines on disk, under ``$CXLEMU_HOME/machines/<name>/``:

* ``state.pkl``  the platform (hardware registers, LSAs, poison, firmware) and
  the running kernel, replaced atomically (temp file, fsync, rename);
* ``topology.toml`` the topology the machine was created from;
* ``media/``     one sparse file per Type 3 device, indexed by DPA;
* ``lock``       every command holds an exclusive flock while it runs.

A command loads the state, works on it, and saves it once at the end if it
changed; a command killed halfway leaves the previous state (and any bytes
already stored to media, as hardware would).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from cxlemu.data.media import MediaStore
from cxlemu.hw.platform import Platform, build_platform
from cxlemu.kernel.kernel import Kernel
from cxlemu.topology.schema import Topology, loads
from cxlemu.util.fileio import atomic_write, locked

STATE_VERSION = 3   # bump whenever the pickled object model changes
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class MachineError(Exception):
    pass


def home() -> Path:
    env = os.environ.get("CXLEMU_HOME")
    if env:
        return Path(env)
    import platformdirs
    return Path(platformdirs.user_data_dir("cxlemu"))


def machines_dir() -> Path:
    return home() / "machines"


def check_name(name: str) -> None:
    """A machine is NAME, or RACK/HOST for a host of a rack."""
    parts = name.split("/")
    if len(parts) > 2 or not all(NAME_RE.match(p) for p in parts):
        raise MachineError(f"invalid machine name {name!r} (letters, digits, '_', '.', '-'; "
                           f"RACK/HOST for a host of a rack)")


def racks_dir() -> Path:
    return home() / "racks"


@dataclass
class State:
    version: int
    name: str
    topology_text: str
    kernel: Kernel
    created: float = field(default_factory=time.time)
    booted: float = field(default_factory=time.time)

    @property
    def platform(self) -> Platform:
        return self.kernel.platform


def _deep(fn, *args):
    """``fn(*args)`` on a thread with a 512 MiB stack and a high recursion
    limit: the pickled device graph is deep."""
    out: list = []
    err: list[BaseException] = []

    def run() -> None:
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, 200000))
        try:
            out.append(fn(*args))
        except BaseException as e:  # pragma: no cover - re-raised below
            err.append(e)
        finally:
            sys.setrecursionlimit(old)

    threading.stack_size(512 << 20)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    threading.stack_size(0)
    if err:
        raise err[0]
    return out[0]


def _dumps(obj) -> bytes:
    return _deep(pickle.dumps, obj, pickle.HIGHEST_PROTOCOL)


def _loads(data: bytes):
    return _deep(pickle.loads, data)


class Machine:
    """An open machine: its state, media and a sysfs backend over its kernel."""

    def __init__(self, name: str, path: Path, state: State):
        self.name = name
        self.path = path
        self.state = state
        self.media = MediaStore(path / "media")
        self.state.kernel.media_store = self.media
        self._saved_bytes: bytes | None = None
        from cxlemu.machine import rackhost
        rackhost.attach(self)       # a rack's host: the shared devices it is cabled to

    @property
    def kernel(self) -> Kernel:
        return self.state.kernel

    @property
    def platform(self) -> Platform:
        return self.state.kernel.platform

    @property
    def topology(self) -> Topology:
        return self.platform.topology

    def backend(self):
        from cxlemu.sysfs.backend import EmulatorBackend
        return EmulatorBackend(self.kernel, self)

    # ---- persistence ------------------------------------------------------------------
    def save(self) -> None:
        kernel = self.state.kernel
        kernel.dirty = False
        data = _dumps(self.state)
        atomic_write(self.path / "state.pkl", data)

    # ---- lifecycle ------------------------------------------------------------------------
    def yield_point(self) -> None:
        """Called by long operations (workload runs, simulations) between steps.

        In a running machine process this lets other clients (the FUSE mount,
        real tools, other commands) in between steps; here it does nothing."""

    def reboot(self, power_loss: bool = False) -> None:
        """Reset every component and boot a fresh kernel.

        Volatile media is lost; persistent media survives (stores still in
        CPU caches are written back on an orderly reboot and lost on a power
        failure unless the platform has persistent CPU caches)."""
        from cxlemu.data import cpucache
        plat = self.platform
        cpucache.on_reset(self, power_loss)
        for d in plat.devices:
            if d.ram_size:
                self.media.discard(d, 0, d.ram_size)
        plat.reset(power_loss=power_loss)
        for d in plat.devices:    # a partition change may have moved the boundary
            if d.ram_size:
                self.media.discard(d, 0, d.ram_size)
        plat.firmware_boot()
        k = Kernel(plat)
        k.media_store = self.media
        k.fabric = self.kernel.fabric
        k.boot()
        self.state.kernel = k
        self.state.booted = time.time()


class Store:
    def __init__(self, root: Path | None = None):
        self.root = root or machines_dir()

    def path(self, name: str) -> Path:
        """``machines/NAME``; a rack's host RACK/HOST lives in ``racks/RACK/hosts/HOST``."""
        check_name(name)
        if "/" in name:
            rack, host = name.split("/")
            return self.root.parent / "racks" / rack / "hosts" / host
        return self.root / name

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def exists(self, name: str) -> bool:
        return (self.path(name) / "state.pkl").exists()

    def create(self, name: str, topology_text: str) -> None:
        """Validate, boot and store a new machine; nothing is created on error."""
        check_name(name)
        topo = loads(topology_text)     # raises TopologyError naming the field
        dest = self.path(name)
        if dest.exists():
            raise MachineError(f"machine {name!r} already exists (cxlemu rm {name})")
        plat = build_platform(topo)
        from cxlemu.hw.firmware import FirmwareError
        try:
            plat.firmware_boot()
        except FirmwareError as e:
            raise MachineError(f"firmware: {e}") from None
        kernel = Kernel(plat)
        kernel.boot()
        state = State(version=STATE_VERSION, name=name, topology_text=topology_text, kernel=kernel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            (tmp / "media").mkdir()
            (tmp / "topology.toml").write_text(topology_text)
            m = Machine(name, tmp, state)
            m.save()
            os.rename(tmp, dest)
            if "/" in name:                 # a rack's host: set up its DC region now
                with self.open(name):
                    pass
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def remove(self, name: str) -> None:
        p = self.path(name)
        if not p.exists():
            raise MachineError(f"no machine named {name!r}")
        with locked(p / "lock"):
            trash = Path(tempfile.mkdtemp(prefix=f".{p.name}.rm.", dir=p.parent))
            os.rename(p, trash / p.name)
        shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def open(self, name: str, write: bool = True) -> Iterator[Machine]:
        p = self.path(name)
        if not (p / "state.pkl").exists():
            raise MachineError(f"no machine named {name!r} (see: cxlemu ls)")
        with locked(p / "lock", exclusive=True):
            state = _loads((p / "state.pkl").read_bytes())
            if not isinstance(state, State) or state.version != STATE_VERSION:
                raise MachineError(f"machine {name!r} was created by an incompatible cxlemu; recreate it")
            m = Machine(name, p, state)
            if write:
                from cxlemu.machine import rackhost
                rackhost.service(m)     # DC events that waited in the device's log
            try:
                yield m
            finally:
                m.media.flush()
                if write and m.kernel.dirty:
                    m.save()
                m.media.close()
