"""The machine process: one machine held in memory, served over
``<machine>/machine.sock`` (protocol: machine/client.py).

``cxlemu start NAME`` runs :func:`run_foreground` in a background process
(``python -m cxlemu.cli.serve NAME``; ``--foreground`` runs it in the
terminal).  The command code lives above this floor: whoever starts the
server passes the function that runs one forwarded ``cxlemu`` command line
(``run_command(argv) -> exit code``; cli/serve.py passes the CLI's).  The
process

1. takes ``machine.pid`` (an exclusive flock: a second ``start`` is refused)
   and the machine's ``lock`` (waiting for commands in progress; held for the
   process's life, so no command loads the machine behind its back);
2. cleans what a killed predecessor left (temp files, socket), loads the
   snapshot, replays the journal, and compacts it into a new snapshot;
3. listens on ``machine.sock`` (mode 0600; connections from other users are
   refused by SO_PEERCRED) and serves each connection on a thread; a
   forwarded command (``run``) executes the ordinary ``cxlemu`` command
   function in process, with ``Store.open`` returning the live machine, under
   the machine lock, in the client's cwd, environment and umask, writing to
   the client's own stdout/stderr (passed as file descriptors);
4. on ``cxlemu stop``, SIGTERM or SIGINT: unmounts every FUSE mount, closes
   the device socket, takes a final snapshot, removes its socket and pid file.

It also hosts, when those modules exist, the FUSE mount
(``cxlemu.machine.mount.mount(machine, lock, mountpoint) -> handle``) and the
device socket (``cxlemu.machine.devserver.serve(machine, lock, sock_path) ->
handle``) at ``<machine>/dev.sock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import importlib.util
import io
import os
import select
import signal
import socket
import struct
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable

from cxlemu.machine import client
from cxlemu.machine.paths import DEV_SOCK_FILE, LOCK_FILE, PID_FILE, SOCK_FILE, MachineError

SO_PEERCRED_FMT = struct.Struct("3i")


# ---------------------------------------------------------------------------------------------
# per-request standard streams
# ---------------------------------------------------------------------------------------------

class ThreadStreams:
    """sys.stdin/stdout/stderr of the machine process: each request thread sees
    its client's streams; other threads (a progress bar's refresh thread) see
    those of the command that holds the machine, else the process's own."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.active: tuple | None = None
        self.default = (sys.stdin, sys.stdout, sys.stderr)

    def current(self) -> tuple:
        return getattr(self.local, "streams", None) or self.active or self.default


class _Proxy(io.TextIOBase):
    def __init__(self, owner: ThreadStreams, idx: int):
        self._owner, self._idx = owner, idx

    def _t(self):
        return self._owner.current()[self._idx]

    def write(self, s):                  # type: ignore[override]
        return self._t().write(s)

    def writelines(self, lines):         # type: ignore[override]
        return self._t().writelines(lines)

    def flush(self):
        t = self._t()
        with contextlib.suppress(ValueError):
            t.flush()

    def read(self, *a):                  # type: ignore[override]
        return self._t().read(*a)

    def readline(self, *a):              # type: ignore[override]
        return self._t().readline(*a)

    def readlines(self, *a):             # type: ignore[override]
        return self._t().readlines(*a)

    def __iter__(self):
        return iter(self._t())

    def isatty(self):
        return self._t().isatty()

    def fileno(self):
        return self._t().fileno()

    def readable(self):
        return self._t().readable()

    def writable(self):
        return self._t().writable()

    @property
    def encoding(self):                  # type: ignore[override]
        return self._t().encoding

    @property
    def errors(self):                    # type: ignore[override]
        return self._t().errors

    @property
    def buffer(self):
        return self._t().buffer

    @property
    def closed(self):                    # type: ignore[override]
        return False

    def __getattr__(self, name):
        return getattr(self._t(), name)


def install_streams() -> ThreadStreams:
    ts = ThreadStreams()
    sys.stdin, sys.stdout, sys.stderr = _Proxy(ts, 0), _Proxy(ts, 1), _Proxy(ts, 2)  # type: ignore[assignment]
    return ts


def _open_streams(fds: list[int]) -> tuple:
    fds = (list(fds) + [-1, -1, -1])[:3]
    out = []
    for i, fd in enumerate(fds):
        if fd < 0:
            fd = os.open(os.devnull, os.O_RDWR)
        tty = os.isatty(fd)
        if i == 0:
            out.append(open(fd, "r", encoding="utf-8", errors="surrogateescape", closefd=True))
        else:
            out.append(open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=True,
                            buffering=1 if tty else -1))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------------------------

#: runs one forwarded ``cxlemu`` command line in the calling thread; its exit code
CommandRunner = Callable[[list[str]], "int | None"]


class MachineServer:
    def __init__(self, name: str, run_command: CommandRunner, store=None, log=None):
        from cxlemu.machine.store import Store
        self.name = name
        self.store = store or Store()
        self.path = Path(self.store.path(name))
        self.log_stream = log or sys.stderr
        self.live = None
        self.sock: socket.socket | None = None
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.fds: list[int] = []
        self.streams: ThreadStreams | None = None
        self.clients = 0
        self._mount_lock = threading.Lock()
        self.run_command = run_command     # the cxlemu command line, run in process
        self.owner = False                 # holds the machine's pid file
        self._threads: list[threading.Thread] = []

    def log(self, msg: str) -> None:
        try:
            self.log_stream.write(f"cxlemu[{os.getpid()}] {self.name}: {msg}\n")
            self.log_stream.flush()
        except (OSError, ValueError):
            pass

    # ---- start ------------------------------------------------------------------------------------
    def open(self) -> None:
        """Take the machine (pid file, lock), load it, listen.  MachineError when
        it cannot (already running, no such machine, bad state)."""
        from cxlemu.machine.live import LiveMachine
        from cxlemu.machine.store import Store, _load
        p = self.path
        self.store._require(self.name)
        pid_fd = os.open(p / PID_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(pid_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                pid = int(os.pread(pid_fd, 32, 0).decode().strip() or 0)
            except ValueError:
                pid = 0
            os.close(pid_fd)
            raise MachineError(f"machine {self.name!r} is already running" + (f" (pid {pid})" if pid else ""))
        self.fds.append(pid_fd)
        self.owner = True                               # from here on, the pid file is ours
        os.ftruncate(pid_fd, 0)
        os.pwrite(pid_fd, f"{os.getpid()}\n".encode(), 0)
        lock_fd = os.open(p / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        self.fds.append(lock_fd)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)            # wait for commands in progress
        Store.clean_stale(p)
        for stale in (SOCK_FILE, DEV_SOCK_FILE):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p / stale)
        m = _load(self.name, p)
        self.live = LiveMachine(m)
        if self.live.journal.records:
            self.live.snapshot()                        # compact what a killed process journalled
        self.sock = self._listen(str(p / SOCK_FILE))
        self._start_devserver()
        self.log(f"serving {p / SOCK_FILE} (generation {m.generation})")

    @staticmethod
    def _listen(path: str) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = f"{path}.{os.getpid()}.tmp"
        old = os.umask(0o177)                          # the socket is born 0600
        try:
            if len(os.fsencode(tmp)) < 100:
                s.bind(tmp)
            else:
                dfd = os.open(os.path.dirname(tmp), os.O_RDONLY | os.O_DIRECTORY)
                try:
                    s.bind(f"/proc/self/fd/{dfd}/{os.path.basename(tmp)}")
                finally:
                    os.close(dfd)
        finally:
            os.umask(old)
        os.chmod(tmp, 0o600)
        s.listen(64)
        os.rename(tmp, path)                            # appears only when it accepts
        return s

    def _start_devserver(self) -> None:
        if importlib.util.find_spec("cxlemu.machine.devserver") is None:
            return
        try:
            mod = importlib.import_module("cxlemu.machine.devserver")
            self.live.devserver = mod.serve(self.live.machine, self.live.lock, str(self.path / DEV_SOCK_FILE))
        except Exception as e:                          # the machine still serves without device files
            self.log(f"device socket unavailable: {e}")

    # ---- loop -----------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        assert self.sock is not None
        self.streams = install_streams()
        self.sock.settimeout(0.25)
        try:
            while not self.stopping.is_set():
                try:
                    conn, _ = self.sock.accept()
                except socket.timeout:
                    continue
                except OSError:
                    if self.stopping.is_set():
                        break
                    raise
                conn.settimeout(None)
                t = threading.Thread(target=self._serve_conn, args=(conn,), daemon=True)
                t.start()
                self._threads = [x for x in self._threads if x.is_alive()] + [t]
        finally:
            self.close()

    def _peer_ok(self, conn: socket.socket) -> bool:
        try:
            _pid, uid, _gid = SO_PEERCRED_FMT.unpack(
                conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, SO_PEERCRED_FMT.size))
        except OSError:
            return False
        return uid == os.geteuid()

    def _serve_conn(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            if not self._peer_ok(conn):
                client.send(conn, {"error": "permission denied: not the machine's owner"})
                return
            msg, fds = _recv_with_fds(conn)
            op = msg.get("op")
            if op == "run":
                fds, mine = [], fds
                self._run(conn, msg, mine)
            elif op == "ping":
                client.send(conn, {"ok": True, "pid": os.getpid()})
            elif op == "status":
                client.send(conn, self.status(check=bool(msg.get("check"))))
            elif op == "stop":
                self.stopping.set()
                self.stopped.wait(120)
                client.send(conn, {"ok": True, "snapshot": self.live.machine.generation if self.live else None})
            elif op == "mount":
                client.send(conn, self.mount(str(msg.get("dir", "")), msg.get("opts") or {}))
            elif op == "umount":
                client.send(conn, self.umount(str(msg.get("dir", ""))))
            else:
                client.send(conn, {"error": f"unknown request {op!r}"})
        except (EOFError, ConnectionError, BrokenPipeError, OSError, ValueError):
            pass
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                conn.close()

    # ---- forwarded commands ---------------------------------------------------------------------------
    def _run(self, conn: socket.socket, msg: dict, fds: list[int]) -> None:
        from cxlemu.machine.live import Cancelled
        live = self.live
        assert live is not None and self.streams is not None
        try:
            streams = _open_streams(fds)
        except (OSError, ValueError) as e:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            client.send(conn, {"error": f"cannot use the client's streams: {e}"})
            return
        argv = [str(a) for a in msg.get("argv", [])]
        env = {str(k): str(v) for k, v in (msg.get("env") or {}).items()}
        cwd = str(msg.get("cwd") or "/")
        umask = int(msg.get("umask", 0o022)) & 0o777
        cancelled = threading.Event()
        watcher = threading.Thread(target=_watch_hangup, args=(conn, cancelled, self.stopping), daemon=True)
        watcher.start()
        rc = 1

        def enter() -> None:          # the request's process context, again after each yield
            self.streams.active = streams
            os.umask(umask)
            if os.environ != env:
                os.environ.clear()
                os.environ.update(env)
            try:
                os.chdir(cwd)
            except OSError:
                os.chdir("/")

        self.streams.local.streams = streams
        self.clients += 1
        try:
            with live.lock:
                enter()
                live.local.cancelled = cancelled
                live.local.on_reacquire = enter
                live.local.group_commit = True
                token = client.serving.set(live)
                try:
                    rc = int(self.run_command(argv) or 0)
                except SystemExit as e:
                    rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                    if e.code is not None and not isinstance(e.code, int):
                        streams[2].write(f"{e.code}\n")
                except (Cancelled, KeyboardInterrupt):
                    rc = 130
                except BrokenPipeError:
                    rc = 0
                except Exception:                    # a bug: report it on the client's stderr
                    with contextlib.suppress(Exception):
                        streams[2].write(traceback.format_exc())
                    rc = 1
                finally:
                    client.serving.reset(token)
                    live.local.cancelled = None
                    live.local.on_reacquire = None
                    live.local.group_commit = False
                    if live.machine.kernel.dirty:
                        live.snapshot()              # persisted before the exit code is sent
                    live.journal.sync()
                    self.streams.active = None
        finally:
            self.clients -= 1
            self.streams.local.streams = None
            for s in streams:
                with contextlib.suppress(Exception):
                    s.flush()
                with contextlib.suppress(Exception):
                    s.close()
        with contextlib.suppress(OSError):
            client.send(conn, {"exit": rc})

    # ---- status, mounts ------------------------------------------------------------------------------
    def status(self, check: bool = False) -> dict:
        live = self.live
        assert live is not None
        out = dict(live.status(), name=self.name, path=str(self.path), clients=self.clients)
        if check:                          # the model must hold still while it is checked
            from cxlemu.machine.fsck import check as fsck
            with live.lock:
                out["problems"] = fsck(live.machine)
        return out

    def mount(self, directory: str, opts: dict) -> dict:
        live = self.live
        assert live is not None
        if importlib.util.find_spec("cxlemu.machine.mount") is None:
            return {"error": "FUSE mounts are not available in this cxlemu (no cxlemu.machine.mount)"}
        d = os.path.abspath(directory)
        opts = dict(opts)
        reuse = bool(opts.pop("reuse", False))
        with self._mount_lock:
            if d in live.mounts:
                h = live.mounts[d]
                if not reuse:
                    return {"error": f"{d} is already mounted"}
                if getattr(h, "alive", True):
                    return {"ok": True, "dir": d, "reused": True, "layout": h.layout()}
                live.mounts.pop(d)              # its loop died: serve it afresh
                with contextlib.suppress(Exception):
                    h.unmount()
            try:
                mod = importlib.import_module("cxlemu.machine.mount")
                live.mounts[d] = mod.mount(live.machine, live.lock, d, **opts)
            except Exception as e:
                return {"error": f"mount {d}: {e}"}
        self.log(f"mounted on {d}")
        return {"ok": True, "dir": d, "layout": live.mounts[d].layout()}

    def umount(self, directory: str) -> dict:
        live = self.live
        assert live is not None
        d = os.path.abspath(directory)
        h = live.mounts.pop(d, None)
        if h is None:
            return {"error": f"{d} is not a mount of {self.name}"}
        try:
            h.unmount()
        except Exception as e:
            return {"error": f"umount {d}: {e}"}
        self.log(f"unmounted {d}")
        return {"ok": True, "dir": d}

    # ---- stop ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Unmount, close the device socket, snapshot, remove socket and pid file."""
        live = self.live
        try:
            if self.sock is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.path / SOCK_FILE)
                self.sock.close()
                self.sock = None
            if live is not None:
                for d in list(live.mounts):
                    with contextlib.suppress(Exception):
                        self.umount(d)
                if live.devserver is not None:
                    with contextlib.suppress(Exception):
                        live.devserver.close()
                    with contextlib.suppress(OSError):
                        os.unlink(self.path / DEV_SOCK_FILE)
                with live.lock:
                    live.checkpoint()
                    live.close()
                    live.machine.media.close()
                self.log(f"stopped (snapshot generation {live.machine.generation})")
        finally:
            if self.owner:
                with contextlib.suppress(OSError):
                    os.unlink(self.path / PID_FILE)
            for fd in self.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.fds = []
            self.stopped.set()


def _recv_with_fds(conn: socket.socket) -> tuple[dict, list[int]]:
    head, fds, _flags, _addr = socket.recv_fds(conn, 4, 8)
    if not head:
        raise EOFError
    while len(head) < 4:
        more = conn.recv(4 - len(head))
        if not more:
            raise EOFError
        head += more
    (n,) = struct.unpack(">I", head)
    if n > client.MAX_FRAME:
        raise ValueError("frame too large")
    import json
    body = client._recv_exact(conn, n)
    obj = json.loads(body)
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    return obj, list(fds)


def _watch_hangup(conn: socket.socket, cancelled: threading.Event, stopping: threading.Event) -> None:
    """Set ``cancelled`` when the client closes its end before the reply."""
    p = select.poll()
    p.register(conn.fileno(), select.POLLIN | select.POLLHUP | select.POLLRDHUP if hasattr(select, "POLLRDHUP")
               else select.POLLIN | select.POLLHUP)
    while True:
        try:
            ev = p.poll(500)
        except (OSError, ValueError):
            return
        if ev:
            cancelled.set()
            return
        if conn.fileno() < 0:
            return


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------

def run_foreground(name: str, run_command: CommandRunner, ready_fd: int | None = None) -> int:
    """Serve machine ``name`` until stopped, running forwarded commands with
    ``run_command``.  ``ready_fd`` (a pipe) gets one line, ``ok`` or the
    error, when the machine is up or could not start."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    srv = MachineServer(name, run_command)

    def stop(_sig, _frm) -> None:
        srv.stopping.set()

    try:
        srv.open()
    except MachineError as e:
        if ready_fd is not None:
            os.write(ready_fd, f"{e}\n".encode())
            os.close(ready_fd)
        else:
            print(f"cxlemu: {e}", file=sys.stderr)
        srv.close()
        return 1
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN if ready_fd is not None else stop)
    if ready_fd is not None:
        os.write(ready_fd, b"ok\n")
        os.close(ready_fd)
    srv.serve_forever()
    return 0

