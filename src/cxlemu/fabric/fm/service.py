"""Starting and stopping the fabric manager of a rack.

``cxlemu fm start RACK`` spawns ``python -m cxlemu.fabric.fm.service RACK`` in
its own session; the child binds a loopback socket (port 0 = any free port
unless given), reconciles the database with the devices, then writes
``racks/RACK/fm/service.json`` (pid, url) and serves with uvicorn.  The
token for mutating calls is created once, ``racks/RACK/fm/token`` (0600).
The log is ``racks/RACK/fm/fm.log``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cxlemu.fabric import rack as rackmod
from cxlemu.util.fileio import atomic_write


def fm_dir(rack: str) -> Path:
    return rackmod.rack_path(rack) / "fm"


def token(rack: str) -> str:
    d = fm_dir(rack)
    d.mkdir(parents=True, exist_ok=True)
    p = d / "token"
    if not p.exists():
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(24))
    return p.read_text().strip()


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (reaped here if it is our child)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def info(rack: str) -> dict | None:
    """service.json of a running FM, or None."""
    p = fm_dir(rack) / "service.json"
    try:
        d = json.loads(p.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        if not _alive(int(d["pid"])):
            return None
    except (ValueError, KeyError):
        return None
    return d


def start(rack: str, port: int = 0, host: str = "127.0.0.1", timeout: float = 60.0,
          host_timeout: float = 5.0) -> dict:
    rackmod.load_layout(rack)
    cur = info(rack)
    if cur is not None:
        raise rackmod.RackError(f"the fabric manager of {rack!r} is already running at {cur['url']} (pid {cur['pid']})")
    d = fm_dir(rack)
    d.mkdir(parents=True, exist_ok=True)
    token(rack)
    (d / "service.json").unlink(missing_ok=True)
    logf = open(d / "fm.log", "ab")
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    p = subprocess.Popen([sys.executable, "-m", "cxlemu.fabric.fm.service", rack, "--port", str(port),
                          "--host", host, "--host-timeout", str(host_timeout)],
                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True, env=env)
    logf.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur = info(rack)
        if cur is not None and cur.get("pid") == p.pid:
            return cur
        if p.poll() is not None:
            tail = (d / "fm.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise rackmod.RackError(f"the fabric manager exited (code {p.returncode}): " + " | ".join(tail))
        time.sleep(0.05)
    p.kill()
    raise rackmod.RackError(f"the fabric manager did not come up within {timeout:g} s")


def stop(rack: str, quiet: bool = False, timeout: float = 10.0) -> bool:
    cur = info(rack)
    if cur is None:
        if not quiet:
            raise rackmod.RackError(f"the fabric manager of {rack!r} is not running")
        return False
    pid = int(cur["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.02)
    else:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    (fm_dir(rack) / "service.json").unlink(missing_ok=True)
    return True


def serve(rack: str, port: int, host: str, host_timeout: float) -> None:
    import uvicorn
    from cxlemu.fabric.fm.api import make_app
    from cxlemu.fabric.fm.core import FabricManager
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    fm = FabricManager(rack, host_timeout=host_timeout)
    r = fm.reconcile()
    logging.getLogger("cxlemu.fm").info("reconciled: %s", r)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    real_port = sock.getsockname()[1]
    url = f"http://{host if ':' not in host else '[' + host + ']'}:{real_port}"
    ref = {"url": url, "pid": os.getpid()}
    app = make_app(fm, token(rack), ref)
    config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=2048, timeout_keep_alive=5)
    server = uvicorn.Server(config)
    atomic_write(fm_dir(rack) / "service.json", json.dumps({"pid": os.getpid(), "url": url, "port": real_port,
                                                           "rack": rack}).encode())
    _exit_with(os.environ.get("CXLEMU_FM_EXIT_WITH"))
    server.run(sockets=[sock])


def _exit_with(pid: str | None) -> None:
    """Tests: end when the given process (the test run) is gone, so that a
    crashed test worker leaves no service behind.  Not used otherwise."""
    if not pid or not pid.isdigit():
        return
    import threading

    def watch() -> None:
        while True:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                os._exit(0)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cxlemu-fm")
    ap.add_argument("rack")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--host-timeout", type=float, default=5.0)
    a = ap.parse_args(argv)
    serve(a.rack, a.port, a.host, a.host_timeout)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
