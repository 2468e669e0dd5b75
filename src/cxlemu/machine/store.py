"""Machines on disk, under ``$CXLEMU_HOME/machines/<name>/`` (layout: paths.py).

A machine's state is the running kernel and the platform it drives (hardware
registers, LSAs, poison, firmware), saved as a snapshot in the data-only
format of :mod:`cxlemu.machine.stateio` (loading it never runs code from the
file), plus a write-ahead journal of the mutations made since (journal.py).

Without a machine process, a command takes the machine's flock, loads the
snapshot, replays the journal, works, and saves a new snapshot once at the
end if anything changed.  A command killed halfway leaves the previous state
(and any bytes already stored to media, as hardware would).

With a machine process (``cxlemu start``, machine/server.py) the process holds
the machine in memory and the flock for its whole life; ``Store.open`` inside
the process returns that live machine, and outside it raises
:class:`MachineRunning` (the CLI then forwards the command to the process).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from cxlemu.data import physmem
from cxlemu.data.media import MediaStore
from cxlemu.hw.platform import Platform, build_platform
from cxlemu.kernel.kernel import Kernel
from cxlemu.machine import journal as journal_mod
from cxlemu.machine import stateio
from cxlemu.machine.client import serving
from cxlemu.machine import paths
from cxlemu.machine.paths import (JOURNAL_FILE, LEGACY_STATE_FILE, LOCK_FILE, NAME_RE, PID_FILE, SOCK_FILE,
                                  STATE_FILE, TOPOLOGY_FILE, MachineError, MachineRunning, check_name, ensure_dir)
from cxlemu.topology.schema import Topology, loads
from cxlemu.util.fileio import atomic_open, stale_temp_files

if TYPE_CHECKING:
    from cxlemu.machine.live import LiveMachine

__all__ = ["NAME_RE", "STATE_VERSION", "Machine", "MachineError", "MachineRunning", "Store", "check_name", "home",
           "machines_dir", "racks_dir", "running_pid"]


def home() -> Path:
    """``$CXLEMU_HOME`` or the user's data directory (machine/paths.py)."""
    return Path(paths.home())


def machines_dir() -> Path:
    return Path(paths.machines_dir())


def racks_dir() -> Path:
    return Path(paths.racks_dir())

#: Bump whenever the saved object model changes incompatibly.  4: the data-only format.
STATE_VERSION = 4



class MediaTouches:
    """Counts a media store's accesses to device media.  A journalled
    mutation must not touch media (replaying it would touch it twice), so the
    live machine takes a snapshot when one did.  Mixed into whatever class the
    machine's media store has (a rack host's has its own)."""

    touches = 0

    def array(self, hw):
        self.touches += 1
        return super().array(hw)             # type: ignore[misc]

    def discard(self, hw, start: int, length: int) -> None:
        self.touches += 1
        super().discard(hw, start, length)   # type: ignore[misc]


@functools.lru_cache(maxsize=None)
def _tracked_class(cls: type) -> type:
    return type(f"Tracked{cls.__name__}", (MediaTouches, cls), {"__module__": __name__})


def track_media(media: MediaStore) -> MediaStore:
    """``media``, counting its touches (its class becomes a counting subclass)."""
    if not isinstance(media, MediaTouches):
        media.__class__ = _tracked_class(type(media))
    return media


def running_pid(path: Path | str) -> int | None:
    """The pid of the machine process serving the machine at ``path``, or None.
    The process holds an exclusive flock on ``machine.pid`` while it lives, so
    a pid file left by a killed process does not count."""
    try:
        fd = os.open(os.path.join(path, PID_FILE), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            try:
                return int(os.pread(fd, 32, 0).decode().strip() or 0) or -1
            except ValueError:
                return -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class Machine:
    """An open machine: its kernel (with the platform), media and metadata."""

    replayed = 0        # journal records replayed into the model when it was loaded

    def __init__(self, name: str, path: Path, kernel: Kernel, meta: dict):
        self.name = name
        self.path = Path(path)
        self.meta = meta
        self.generation = int(meta.get("generation", 0))
        self.media = MediaStore(self.path / "media")
        self.live: "LiveMachine | None" = None
        self._kernel = kernel
        physmem.attach(kernel, self.media)
        if paths.rack_dir_of(self.path):     # only a rack's host pays for importing the rack code
            from cxlemu.machine import rackhost
            rackhost.attach(self)   # a rack's host: the shared devices it is cabled to
        self.media = track_media(self.media)     # (the same object, now counting its touches)

    # ---- the model -------------------------------------------------------------------------
    @property
    def kernel(self) -> Kernel:
        return self._kernel

    @kernel.setter
    def kernel(self, k: Kernel) -> None:
        physmem.attach(k, self.media)
        for w in self._kernel._watchers:    # a live mount follows the new kernel
            k.add_watcher(w)
        self._kernel = k

    @property
    def platform(self) -> Platform:
        return self._kernel.platform

    @property
    def topology(self) -> Topology:
        return self.platform.topology

    @property
    def booted(self) -> float:
        return float(self.meta.get("booted", 0.0))

    @property
    def state(self) -> "Machine":
        """Compatibility with the pickled ``State`` (``m.state.kernel``): the machine itself."""
        return self

    def backend(self, run_loop=None):
        """A sysfs backend over the current kernel (a reboot replaces the kernel:
        long-lived users call this again rather than keep an old backend).
        ``run_loop`` (``cxlemu.sim.run``, passed by the code that runs programs)
        lets the ``workload`` program run on it."""
        from cxlemu.sysfs.backend import EmulatorBackend
        b = EmulatorBackend(self.kernel, self, run_loop)
        fault = os.environ.get("CXLEMU_FAULT_AFTER_WRITES")     # test hook: kill -9 after N writes
        if fault:
            b.fault_after_writes = int(fault)
        return b

    # ---- persistence ------------------------------------------------------------------------
    def save(self) -> None:
        """Write a snapshot (atomically) and start an empty journal after it.

        A model equal to the snapshot on disk is not written again: the file
        keeps its bytes, generation and mtime.  Linux changes transient state
        on behalf of a read-only command (``cxl list -L`` turns its tracefs
        instance on, has the device list its poison, reads and drains the
        instance's buffers, turns it off again) and each of those steps marks
        the model dirty; what counts is whether anything is left different
        when the command is over (the encoded state is compared with the
        file: machine state is persisted only when it changed)."""
        k = self._kernel
        k.dirty = False
        gen = self.generation + 1
        meta = dict(self.meta, version=STATE_VERSION, generation=gen)
        sf = self.path / STATE_FILE
        try:
            head, blobs = stateio.encode(k, meta)
            if self._holds(sf, head, blobs):
                if self.live is not None and self.live.journal.records:
                    # the journalled writes came to nothing: an empty journal after the same snapshot
                    self.live.journal.reset(self.generation)
                return
            with atomic_open(sf) as f:
                stateio.write_encoded(f, head, blobs)
        except BaseException:
            k.dirty = True
            raise
        self.meta = meta
        self.generation = gen
        if self.live is not None:
            self.live.snapshot_written(gen)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / JOURNAL_FILE)

    def _holds(self, sf: Path, head: bytes, blobs: list) -> bool:
        """Is ``sf`` the snapshot of this model already (generation aside)?
        Not when a journal left by a killed machine process was replayed into
        the model: then the snapshot must replace snapshot + journal."""
        if self.live is None and self.replayed:
            return False
        return stateio.holds(sf, head, blobs, ignore_meta=("generation",))

    def replay(self, records: list) -> int:
        """Apply journal records (mutations made after the snapshot); returns
        how many diverged from what was recorded (should be none)."""
        from cxlemu.machine.live import apply_record
        diverged = 0
        for rec in records:
            if not apply_record(self, rec):
                diverged += 1
        if diverged:
            self.kernel.log(f"cxlemu: {diverged} journal record(s) replayed differently than recorded")
        return diverged

    # ---- lifecycle ------------------------------------------------------------------------
    def yield_point(self) -> None:
        """Called by long operations (workload runs, simulations) between steps.

        In a running machine process this releases the machine lock for a
        moment so that other clients (the FUSE mount, the device socket, other
        commands) get in between steps, and raises KeyboardInterrupt when the
        client that asked for the operation has gone; otherwise it does nothing."""
        if self.live is not None:
            self.live.yield_point()

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
        physmem.attach(k, self.media)       # boot reads media (info blocks, region labels)
        for w in self._kernel._watchers:    # a live mount follows the new kernel
            k.add_watcher(w)
        k.fabric = self.kernel.fabric
        k.boot()
        k.dirty = True
        self.kernel = k
        self.meta = dict(self.meta, booted=time.time())


def _load(name: str, p: Path) -> Machine:
    """The machine at ``p``: its snapshot, with the journal replayed."""
    sf = p / STATE_FILE
    try:
        meta = stateio.read_meta(sf)
    except stateio.StateError as e:
        raise MachineError(f"machine {name!r}: {e} ({sf}); remove the machine with: cxlemu rm {name}") from None
    version = meta.get("version")
    if version != STATE_VERSION:
        raise MachineError(f"machine {name!r} was saved by an incompatible cxlemu (state version {version}, "
                           f"this cxlemu uses {STATE_VERSION}); recreate it: cxlemu rm {name}")
    try:
        kernel, meta = stateio.load(sf)
    except stateio.StateError as e:
        raise MachineError(f"machine {name!r}: {e} ({sf}); remove the machine with: cxlemu rm {name}") from None
    if not isinstance(kernel, Kernel):
        raise MachineError(f"machine {name!r}: the state file holds no kernel ({sf}); "
                           f"remove the machine with: cxlemu rm {name}")
    m = Machine(name, p, kernel, meta)
    records, _end = journal_mod.read(str(p / JOURNAL_FILE), m.generation)
    if records:
        m.replay(records)
        m.replayed = len(records)
    return m


class Store:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else Path(machines_dir())

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
        self._clean_stale_creations(self.root)
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def exists(self, name: str) -> bool:
        p = self.path(name)
        return (p / STATE_FILE).exists() or (p / LEGACY_STATE_FILE).exists()

    def running(self, name: str) -> int | None:
        """The pid of the process running machine ``name``, or None."""
        return running_pid(self.path(name))

    def _require(self, name: str) -> Path:
        p = self.path(name)
        if not (p / STATE_FILE).exists():
            if (p / LEGACY_STATE_FILE).exists():
                raise MachineError(f"machine {name!r} was made by an older cxlemu (a pickled state, which is no "
                                   f"longer loaded: loading it could run code); recreate it: cxlemu rm {name}")
            raise MachineError(f"no machine named {name!r} (see: cxlemu ls)")
        return p

    # ---- creation and removal ---------------------------------------------------------------
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
        ensure_dir(str(dest.parent))
        self._clean_stale_creations(dest.parent)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        except OSError as e:
            raise MachineError(f"cannot create a machine in {dest.parent}: {e.strerror}") from None
        lock_fd = os.open(tmp / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)     # marks the creation as in progress
            (tmp / "media").mkdir()
            (tmp / TOPOLOGY_FILE).write_text(topology_text)
            now = time.time()
            m = Machine(name, tmp, kernel, {"name": name, "topology_text": topology_text, "created": now,
                                            "booted": now, "generation": 0})
            m.save()
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            os.close(lock_fd)
        if "/" in name:                     # a rack's host: set up its DC region now
            with self.open(name):
                pass

    @staticmethod
    def _clean_stale_creations(parent: Path) -> None:
        """Remove ``.NAME.XXXX`` directories that a killed ``create`` or ``rm`` left."""
        try:
            entries = [p for p in parent.iterdir() if p.name.startswith(".") and p.is_dir()]
        except OSError:
            return
        for p in entries:
            lock = p / LOCK_FILE
            if ".rm." in p.name:
                shutil.rmtree(p, ignore_errors=True)
                continue
            try:
                fd = os.open(lock, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue                       # a create in progress
            shutil.rmtree(p, ignore_errors=True)
            os.close(fd)

    def remove(self, name: str) -> None:
        p = self.path(name)
        if not p.exists():
            raise MachineError(f"no machine named {name!r}")
        pid = running_pid(p)
        if pid:
            raise MachineError(f"machine {name!r} is running (pid {pid}); stop it first: cxlemu stop {name}")
        with self._locked(p, name):
            trash = Path(tempfile.mkdtemp(prefix=f".{p.name}.rm.", dir=p.parent))
            os.rename(p, trash / p.name)
        shutil.rmtree(trash, ignore_errors=True)

    # ---- opening ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, p: Path, name: str) -> Iterator[int]:
        """The machine's flock; MachineRunning when a machine process holds it."""
        try:
            fd = os.open(p / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise MachineError(f"machine {name!r}: cannot open {p / LOCK_FILE}: {e.strerror}") from None
        try:
            delay = 0.002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                pid = running_pid(p)
                if pid:
                    raise MachineRunning(name, pid)
                time.sleep(delay)               # another command: wait for it
                delay = min(delay * 2, 0.05)
            try:
                yield fd
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @staticmethod
    def clean_stale(p: Path) -> None:
        """Under the machine's lock: temp files of a killed writer, and the socket
        and pid file of a machine process that was killed."""
        for t in stale_temp_files(p):
            with contextlib.suppress(OSError):
                t.unlink()
        if running_pid(p) is None:
            for n in (SOCK_FILE, PID_FILE):
                with contextlib.suppress(OSError):
                    (p / n).unlink()

    @contextlib.contextmanager
    def open(self, name: str, write: bool = True) -> Iterator[Machine]:
        p = self.path(name)
        live = serving.get()
        if live is not None and live.path == p:
            with live.session(write) as m:
                yield m
            return
        self._require(name)
        with self._locked(p, name):
            self.clean_stale(p)
            m = _load(name, p)
            if write and paths.rack_dir_of(p):
                from cxlemu.machine import rackhost
                rackhost.service(m)     # DC events that waited in the device's log
            try:
                yield m
            finally:
                m.media.flush()
                if write and m.kernel.dirty:
                    m.save()
                m.media.close()

    def load_unlocked(self, name: str) -> Machine:
        """A private copy of machine ``name`` as it is now (snapshot plus journal),
        read without taking its lock: the machine may be running.  Never saved."""
        p = self._require(name)
        for _ in range(50):
            try:
                m = _load(name, p)
                if stateio.read_meta(p / STATE_FILE).get("generation") == m.generation:
                    return m              # no snapshot replaced it while we read
            except MachineError:
                pass                      # caught a snapshot being replaced
            time.sleep(0.01)
        return _load(name, p)
