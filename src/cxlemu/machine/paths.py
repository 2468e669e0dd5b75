"""Where machines live, and the errors about them.

This module imports nothing heavy (no numpy, no kernel model, no pathlib):
the ``cxlemu`` client fast path uses it to find a running machine's socket
before it decides whether to load anything at all.

Layout of a machine directory (``$CXLEMU_HOME/machines/NAME``, or
``$CXLEMU_HOME/racks/RACK/hosts/HOST`` for a host of a rack)::

    state.bin       the snapshot: kernel + platform in the data-only format (stateio.py)
    journal         write-ahead journal of mutations since the snapshot (journal.py)
    topology.toml   the topology the machine was created from
    media/          one sparse file per Type 3 device, indexed by DPA
    lock            flock: held by every command, and by the machine process while it runs
    machine.pid     flock + pid of the running machine process
    machine.sock    the running process's Unix socket (0600)
    machine.log     the background process's log
"""

from __future__ import annotations

import os
import re
import sys

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

STATE_FILE = "state.bin"
LEGACY_STATE_FILE = "state.pkl"
JOURNAL_FILE = "journal"
TOPOLOGY_FILE = "topology.toml"
LOCK_FILE = "lock"
PID_FILE = "machine.pid"
SOCK_FILE = "machine.sock"
LOG_FILE = "machine.log"
DEV_SOCK_FILE = "dev.sock"


class MachineError(Exception):
    """A clean, one-line error about a machine (printed as ``cxlemu: <message>``)."""


class MachineRunning(MachineError):
    """The machine runs as a process: its state is in that process, not on disk."""

    def __init__(self, name: str, pid: int | None):
        self.name, self.pid = name, pid
        who = f" (pid {pid})" if pid else ""
        super().__init__(f"machine {name!r} is running{who}: use `cxlemu exec {name} -- ...` or "
                         f"cxlemu.open({name!r}), or stop it first (cxlemu stop {name})")


def home() -> str:
    """``$CXLEMU_HOME``, or the user's data directory (XDG on Linux)."""
    env = os.environ.get("CXLEMU_HOME")
    if env:
        return os.path.abspath(env)
    if sys.platform.startswith("linux"):
        xdg = os.environ.get("XDG_DATA_HOME", "").strip()
        base = xdg if xdg and os.path.isabs(xdg) else os.path.expanduser("~/.local/share")
        return os.path.join(base, "cxlemu")
    import platformdirs                          # pragma: no cover - not Linux
    return platformdirs.user_data_dir("cxlemu")  # pragma: no cover


def ensure_dir(path: str) -> str:
    """mkdir -p ``path`` (under the home), with an error that says what to do."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        hint = ("set CXLEMU_HOME to a writable directory" if not os.environ.get("CXLEMU_HOME")
                else "CXLEMU_HOME must be a writable directory")
        raise MachineError(f"cannot create {e.filename or path}: {e.strerror}; {hint}") from None
    return path


def machines_dir() -> str:
    return os.path.join(home(), "machines")


def racks_dir() -> str:
    return os.path.join(home(), "racks")


def rack_dir_of(machine_path) -> str | None:
    """The rack directory of a rack's host (``racks/RACK/hosts/HOST``), else None."""
    host = os.path.abspath(str(machine_path))
    hosts = os.path.dirname(host)
    rack = os.path.dirname(hosts)
    if os.path.basename(hosts) == "hosts" and os.path.basename(os.path.dirname(rack)) == "racks":
        return rack
    return None


def check_name(name: str) -> None:
    """A machine is NAME, or RACK/HOST for a host of a rack."""
    parts = name.split("/") if isinstance(name, str) else [""]
    if len(parts) > 2 or not all(NAME_RE.match(p) for p in parts):
        raise MachineError(f"invalid machine name {name!r} (letters, digits, '_', '.', '-'; "
                           f"RACK/HOST for a host of a rack)")


def machine_dir(name: str, root: str | None = None) -> str:
    """``machines/NAME``; a rack's host RACK/HOST lives in ``racks/RACK/hosts/HOST``."""
    check_name(name)
    root = root or machines_dir()
    if "/" in name:
        rack, host = name.split("/")
        return os.path.join(os.path.dirname(root), "racks", rack, "hosts", host)
    return os.path.join(root, name)
