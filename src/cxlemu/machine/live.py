"""A machine held in memory by its machine process: one lock, and every
mutation persisted before it is acknowledged.

Durability: the kernel's user-facing entry points -- a VFS write
(``EmulatorBackend.write``) and a memdev mailbox command
(``EmulatedMemdevChannel.send``) -- call :meth:`LiveMachine.vfs_write` /
:meth:`LiveMachine.mbox_send`, which run the operation under the machine lock
and, if it changed the kernel (``kernel.dirty``), append it to the journal
and fdatasync before returning.  The FUSE mount, the device socket and
forwarded commands all come through these, so all of them get it.  A
mutation that touched device media, or that follows an unjournalled change
(``cxlemu mem``, a reboot, a workload step ...), takes a snapshot instead;
so does the end of any command that left the kernel dirty.  A snapshot
starts an empty journal (journal.py explains the generations).

Concurrency: one :class:`MachineLock` (re-entrant) per machine guards the
kernel model.  Forwarded commands hold it for their whole run; the FUSE mount
and the device socket take it per operation; long operations call
``machine.yield_point()`` between steps, which lets the others in.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from cxlemu.machine.journal import Journal, Record
from cxlemu.machine.paths import JOURNAL_FILE

if TYPE_CHECKING:
    from cxlemu.machine.store import Machine

#: Compact the journal into a snapshot past this many records or bytes.
JOURNAL_MAX_RECORDS = 2000
JOURNAL_MAX_BYTES = 8 << 20


class MachineLock:
    """A re-entrant lock that knows how many threads wait for it, so that
    :meth:`yield_now` hands it over only when someone is waiting."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._waiting = 0
        self._meta = threading.Lock()
        self._handed = threading.Condition(self._meta)
        self._generation = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        if not blocking:
            return False
        with self._meta:
            self._waiting += 1
        try:
            ok = self._lock.acquire(True, timeout)
        finally:
            with self._meta:
                self._waiting -= 1
                self._generation += 1
                self._handed.notify_all()
        return ok

    def release(self) -> None:
        self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self._lock.release()

    @property
    def waiting(self) -> int:
        return self._waiting

    def yield_now(self, timeout: float = 0.05) -> None:
        """Release the lock completely (whatever the recursion depth), let one
        waiter take it, and take it back."""
        if not self._waiting:
            return
        with self._meta:
            gen = self._generation
        state = self._lock._release_save()          # type: ignore[attr-defined]
        try:
            with self._meta:
                self._handed.wait_for(lambda: self._generation != gen or not self._waiting, timeout)
        finally:
            self._lock._acquire_restore(state)      # type: ignore[attr-defined]


class Cancelled(KeyboardInterrupt):
    """The client of a long command went away; raised at its next yield point."""


class LiveMachine:
    """The in-memory machine of a machine process."""

    def __init__(self, machine: "Machine"):
        self.machine = machine
        self.path = Path(machine.path)
        self.lock = MachineLock()
        self.started = time.time()
        self.journal = Journal(str(self.path / JOURNAL_FILE), machine.generation)
        self.snapshots = 0
        self.journalled = 0
        self.mounts: dict[str, Any] = {}
        self.devserver: Any = None
        self.local = threading.local()      # per request thread: cancel flag, on_reacquire hook
        machine.live = self

    # ---- snapshots --------------------------------------------------------------------------
    def snapshot(self) -> None:
        with self.lock:
            self.machine.media.flush()
            self.machine.save()               # calls snapshot_written()

    def snapshot_written(self, generation: int) -> None:
        self.journal.reset(generation)
        self.snapshots += 1

    def checkpoint(self) -> None:
        """Snapshot if anything is not in the snapshot yet (stop, idle)."""
        with self.lock:
            if self.machine.kernel.dirty or self.journal.records:
                self.snapshot()
            else:
                self.machine.media.flush()

    @contextmanager
    def session(self, write: bool = True) -> Iterator["Machine"]:
        """What ``Store.open`` gives a command in the machine process."""
        with self.lock:
            if write:
                from cxlemu.machine import rackhost
                rackhost.service(self.machine)    # DC events waiting in a rack host's device log
            try:
                yield self.machine
            finally:
                if self.machine.kernel.dirty:
                    self.snapshot()

    # ---- persisted entry points ----------------------------------------------------------------------
    def _touches(self) -> tuple[int, int]:
        """Accesses so far to device media, and to devices outside the machine
        (a rack host's shared appliances): a mutation that made any is not
        replayable and takes a snapshot."""
        m = self.machine
        return (getattr(m.media, "touches", -1), getattr(getattr(m.kernel, "fabric", None), "calls", 0))

    def _persist(self, pre_dirty: bool, touches: tuple[int, int], kind: str, fields: list, data: bytes) -> None:
        m = self.machine
        k = m.kernel
        if not k.dirty:
            k.dirty = pre_dirty
            return
        if (pre_dirty or self._touches() != touches or touches[0] < 0
                or self.journal.records >= JOURNAL_MAX_RECORDS
                or self.journal.bytes >= JOURNAL_MAX_BYTES):
            self.snapshot()
            return
        try:
            # inside a forwarded command the fdatasync waits for its end (group commit);
            # the record is past write(2) already, so a killed process keeps it
            self.journal.append(kind, fields, data, sync=not getattr(self.local, "group_commit", False))
        except OSError:
            self.snapshot()                   # the journal cannot take it: a snapshot must
            return
        self.journalled += 1
        k.dirty = False

    def _run(self, kernel, kind: str, fields: Callable[[int], list], data: bytes, fn: Callable[[], Any]) -> Any:
        with self.lock:
            m = self.machine
            if kernel is not m.kernel:
                raise OSError(errno.ESTALE, "the machine rebooted: reopen", fields(0)[0])
            pre = kernel.dirty
            touches = self._touches()
            kernel.dirty = False
            err = 0
            try:
                return fn()
            except OSError as e:
                err = e.errno or errno.EIO
                raise
            finally:
                self._persist(pre, touches, kind, fields(err), data)

    def vfs_write(self, backend, path: str, data: bytes) -> None:
        self._run(backend.kernel, "w", lambda err: [path, err], data, lambda: backend.vfs.write(path, data))

    def mbox_send(self, channel, cmd_id: int, payload: bytes, out_size: int,
                  send: Callable[[], tuple[int, bytes]]) -> tuple[int, bytes]:
        name = channel.memdev.name
        return self._run(channel.kernel, "ioctl", lambda err: [name, cmd_id, out_size, err], bytes(payload), send)

    def nd_set_config(self, kernel, nmem: str, offset: int, data: bytes, fn: Callable[[], Any]) -> Any:
        """ND_CMD_SET_CONFIG_DATA on /dev/nmemN (a label write), for a backend's
        nvdimm ioctl channel: ``fn`` performs it; journalled like a VFS write."""
        return self._run(kernel, "nd_set_config", lambda err: [nmem, offset, err], bytes(data), fn)

    # ---- long operations --------------------------------------------------------------------------
    def yield_point(self) -> None:
        if getattr(self.local, "cancelled", None) is not None and self.local.cancelled.is_set():
            raise Cancelled()
        if self.lock.waiting:
            self.lock.yield_now()
            hook = getattr(self.local, "on_reacquire", None)
            if hook is not None:
                hook()                        # the request's cwd/env/umask again

    def sync(self) -> None:
        """Make every journal record durable (before a command's exit code is sent)."""
        with self.lock:
            self.journal.sync()

    def status(self) -> dict:
        return {"pid": os.getpid(), "socket": str(self.path / "machine.sock"), "uptime_s": time.time() - self.started,
                "journal_records": self.journal.records, "journal_bytes": self.journal.bytes,
                "generation": self.machine.generation, "snapshots": self.snapshots,
                "journalled": self.journalled, "mounts": sorted(self.mounts),
                "dev_socket": str(self.path / "dev.sock") if self.devserver is not None else None}

    def close(self) -> None:
        self.journal.close()


def apply_record(machine: "Machine", rec: Record) -> bool:
    """Replay one journal record on ``machine``; False if the outcome differs
    from the recorded one."""
    k = machine.kernel
    if rec.kind == "w":
        path, err = rec.fields[0], rec.fields[1]
        from cxlemu.sysfs.vfs import Vfs
        got = 0
        try:
            Vfs(k).write(path, rec.data)
        except OSError as e:
            got = e.errno or errno.EIO
        return got == err
    if rec.kind == "ioctl":
        name, cmd_id, out_size, err = rec.fields
        md = next((d for d in k.cxl.memdevs if d.name == name), None)
        if md is None:
            return False
        from cxlemu.kernel.base.device import KernelError
        got = 0
        try:
            k.cxl.mailbox.send(md, cmd_id, rec.data, out_size)
        except KernelError as e:
            got = e.errno
        return got == err
    if rec.kind == "nd_set_config":
        name, offset, err = rec.fields
        dimm = k.nvdimm.nd_bus.devices.get(name)
        if dimm is None:
            return False
        from cxlemu.kernel.base.device import KernelError
        got = 0
        try:
            dimm.ioctl_set_config_data(offset, rec.data)
        except KernelError as e:
            got = e.errno
        return got == err
    return False
