"""A rack's shared device on disk: ``racks/RACK/devices/DEV/``.

* ``state.json`` the device's state (:class:`~cxlemu.hw.dcd.DcdAppliance` as
  plain JSON data), replaced atomically (temp file, fsync, rename);
* ``media``      one sparse file, the device's DPA space (shared by every head);
* ``lock``       every transaction holds an exclusive flock.

The state cannot live in any host's state file: several hosts use the device.
A host attaches it as a transient handle when its machine is opened.  Every
mailbox command and every FM API command is one transaction: load, act,
scrub released capacity (sanitize on release) if any, save.  A process killed
in the middle leaves the previous state, as a device would after a reset of
its command interface.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

from cxlemu.data.media import punch_hole
from cxlemu.hw.dcd import DcdAppliance
from cxlemu.util.fileio import atomic_write, locked


def _replace(path: Path, data: bytes) -> None:
    """Atomic against a killed process (temp file + rename), without fsync:
    the device's state lives in the page cache like a device's SRAM; only a
    power cut of the machine running the emulator could lose the last
    command (docs/fidelity.md)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class ApplianceStore:
    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self._open: DcdAppliance | None = None

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def media_path(self) -> Path:
        return self.dir / "media"

    def exists(self) -> bool:
        return self.state_path.exists()

    def create(self, dev: DcdAppliance) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.media_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, dev.capacity)
        finally:
            os.close(fd)
        atomic_write(self.state_path, json.dumps(dev.to_dict()).encode())

    def load(self) -> DcdAppliance:
        return DcdAppliance.from_dict(json.loads(self.state_path.read_bytes()))

    def read(self) -> DcdAppliance:
        """A consistent snapshot (shared lock)."""
        if self._open is not None:              # inside our own transaction
            return DcdAppliance.from_dict(self._open.to_dict())
        with locked(self.dir / "lock", exclusive=False):
            return self.load()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[DcdAppliance]:
        """One device transaction; nested calls (a batch of mailbox commands
        from one host service run) reuse the outer one."""
        if self._open is not None:
            yield self._open
            return
        with locked(self.dir / "lock", exclusive=True):
            dev = self.load()
            before = json.dumps(dev.to_dict(), sort_keys=True)
            self._open = dev
            try:
                yield dev
            finally:
                self._open = None
            if dev.scrub_queue:
                self._scrub(dev.scrub_queue)
                dev.scrub_queue = []
            after = json.dumps(dev.to_dict(), sort_keys=True)
            if after != before:
                _replace(self.state_path, after.encode())

    def _scrub(self, ranges: list[list[int]]) -> None:
        """Sanitize on release: the capacity reads back as zeros before any
        host can be given it again (the state that frees it is saved after)."""
        fd = os.open(self.media_path, os.O_RDWR)
        try:
            for dpa, ln in ranges:
                punch_hole(fd, dpa, ln)
            os.fsync(fd)
        finally:
            os.close(fd)
