"""Talking to a running machine process over its Unix socket.

Kept light on purpose: ``cxlemu exec box -- cxl list`` with the machine running
imports this module (and paths.py) and nothing else of cxlemu -- no numpy,
no kernel model, no argparse -- so that forwarding a command costs little
more than starting Python.

Protocol (both directions): frames of a 4-byte big-endian length and a UTF-8
JSON object.  Requests have an ``op``:

* ``run``: ``argv`` (the ``cxlemu`` arguments), ``cwd``, ``env``, ``umask``;
  the client's stdin, stdout and stderr travel with the request as
  SCM_RIGHTS file descriptors, so the command reads and writes the client's
  own terminal or pipes (isatty, colours and ordering as if it ran locally).
  Reply: ``{"exit": CODE}`` when the command is over and persisted.  If the
  client goes away first, the command is cancelled at its next yield point;
  every mutation it made so far is already persisted.
* ``status``, ``ping``, ``stop`` (checkpoint and exit), ``mount``/``umount``
  (``dir``): a reply object, ``{"error": MESSAGE}`` on failure.

The server accepts a connection only from its own user (SO_PEERCRED).
"""

from __future__ import annotations

import _socket   # the C module: socket.py would add enum classes, selectors, array (a few ms)
import contextvars
import json
import os
import struct
import sys
from typing import Any

from cxlemu.machine.paths import SOCK_FILE, MachineError, machine_dir

_LEN = struct.Struct(">I")
MAX_FRAME = 64 << 20

#: The live machine served by the current thread, inside a machine process
#: (set per request by machine/server.py; ``Store.open`` returns it).
serving: contextvars.ContextVar[Any] = contextvars.ContextVar("cxlemu_serving", default=None)

#: ``cxlemu`` subcommands that never go to a machine process (they manage
#: machines, or run on the client: a shell, a host program).
LOCAL_COMMANDS = frozenset({
    "create", "rm", "ls", "start", "stop", "status", "shell", "topologies", "topology", "demo",
    "mount", "umount", "real",
})
#: Tools that ``cxlemu exec`` runs inside the machine (tools/runner.py TOOLS);
#: anything else is a host program that runs here with the tools on PATH.
TOOLS = frozenset({"cxl", "ndctl", "daxctl", "numactl", "lspci", "dd", "cat", "ls", "readlink", "tree"})


class ServerGone(MachineError):
    """The machine process went away in the middle of a request."""


def socket_path(path: str) -> str:
    return os.path.join(path, SOCK_FILE)


def _connect_addr(sock: Any, path: str) -> None:
    """connect(2) to ``path`` even beyond sun_path's 108 bytes (through
    /proc/self/fd of the directory)."""
    if len(os.fsencode(path)) < 100:
        sock.connect(path)
        return
    dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
    finally:
        os.close(dfd)


def connect(machine_path: str) -> Any:
    """A connection (a ``_socket.socket``) to the machine process at
    ``machine_path``, or None when it does not run (no socket, or a stale one
    nobody listens on)."""
    sp = socket_path(machine_path)
    if not os.path.exists(sp):
        return None
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        _connect_addr(s, sp)
    except OSError:
        s.close()
        return None
    return s


def send(sock: Any, obj: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(obj, separators=(",", ":")).encode()
    frame = _LEN.pack(len(data)) + data
    if fds:
        anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        sent = sock.sendmsg([frame], anc)
        if sent < len(frame):
            sock.sendall(frame[sent:])
    else:
        sock.sendall(frame)


def _recv_exact(sock: Any, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def recv(sock: Any) -> dict:
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    if n > MAX_FRAME:
        raise ValueError("frame too large")
    obj = json.loads(_recv_exact(sock, n))
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    return obj


def request(machine_path: str, obj: dict, timeout: float | None = 30.0) -> dict | None:
    """One request/reply; None when the machine does not run."""
    s = connect(machine_path)
    if s is None:
        return None
    try:
        s.settimeout(timeout)
        send(s, obj)
        try:
            return recv(s)
        except (EOFError, OSError, ValueError):
            raise ServerGone("the machine process went away during the request") from None
    finally:
        s.close()


def _std_fds() -> list[int]:
    out = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            out.append(fd)
        except OSError:
            out.append(os.open(os.devnull, os.O_RDWR))
    return out


def stdio_fds() -> list[int] | None:
    """The descriptors behind sys.stdin/stdout/stderr, or None when one of
    them is not a real file (captured output): then a command cannot be
    handed to a machine process with these streams."""
    out = []
    for s in (sys.stdin, sys.stdout, sys.stderr):
        try:
            out.append(s.fileno())
        except (AttributeError, OSError, ValueError):
            return None
    return out


def run(machine_path: str, argv: list[str], sock: Any = None,
        fds: list[int] | None = None) -> int | None:
    """Run ``cxlemu ARGV`` in the machine process with this process's stdio
    (or ``fds``: stdin, stdout, stderr); its exit code, or None when the
    machine does not run."""
    s = sock or connect(machine_path)
    if s is None:
        return None
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    msg = {"op": "run", "argv": list(argv), "cwd": _cwd(), "env": dict(os.environ), "umask": umask}
    try:
        send(s, msg, fds if fds is not None else _std_fds())
        reply = recv(s)
    except KeyboardInterrupt:
        return 130                           # closing the socket cancels the command
    except (EOFError, OSError, ValueError):
        sys.stderr.write("cxlemu: the machine process went away during the command "
                         "(every change it acknowledged is kept; see cxlemu status)\n")
        return 1
    finally:
        s.close()
    if "exit" in reply:
        return int(reply["exit"])
    sys.stderr.write(f"cxlemu: {reply.get('error', 'bad reply from the machine process')}\n")
    return 1


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return "/"


def forward_target(argv: list[str]) -> str | None:
    """The machine directory a ``cxlemu ARGV`` command would be forwarded to
    (its second word names a machine; ``exec`` only for the bundled tools),
    or None for commands that always run here."""
    if len(argv) < 2 or argv[0] in LOCAL_COMMANDS or argv[0].startswith("-") or argv[1].startswith("-"):
        return None
    if argv[0] != "exec" and ("-h" in argv or "--help" in argv):
        return None
    if argv[0] == "exec":
        rest = argv[2:]
        if rest and rest[0] == "--":
            rest = rest[1:]
        if not rest or os.path.basename(rest[0]) not in TOOLS:
            return None
    try:
        return machine_dir(argv[1])
    except MachineError:
        return None


def maybe_forward(argv: list[str]) -> int | None:
    """The client fast path: forward ``cxlemu ARGV`` to a running machine
    process and return its exit code; None to run the command here."""
    if serving.get() is not None:
        return None                          # already inside the machine process
    target = forward_target(argv)
    if target is None:
        return None
    return run(target, argv)
