"""``cxlemu real``, ``cxlemu mount`` and ``cxlemu umount``: the machine's
/sys, /proc and /dev for unmodified programs (Debian's cxl, ndctl, daxctl,
a shell, a C program).

``cxlemu real NAME -- CMD`` runs CMD in a private mount namespace over a
live FUSE mount of the machine (see machine/realns.py for the layout).  The
mount is served by this process for the duration of CMD, under the
machine's lock (other commands on the machine wait), and the machine is
saved when CMD ends.  Device files (/dev/cxl/memN ioctls, /dev/daxX.Y mmap)
work when the LD_PRELOAD interposer is built (``cxlemu.preload``).

``cxlemu mount NAME DIR --foreground`` serves the mount on DIR until
interrupted; ``cxlemu umount DIR`` detaches a mount (also a stale one left
by a killed server; ``fusermount3 -u DIR`` does the same by hand).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import sys
import threading

from cxlemu.machine.store import MachineError, Store


def register(add) -> None:
    sp = add("real", cmd_real, "run a program (the real cxl, ndctl, daxctl, a shell ...) whose /sys, "
                               "/proc and /dev are the machine's")
    sp.add_argument("name")
    sp.add_argument("-q", "--quiet", action="store_true", help="no notice when device files are unavailable")
    sp.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    sp = add("mount", cmd_mount, "serve the machine's /sys, /proc and /dev on DIR (FUSE, live)")
    sp.add_argument("name")
    sp.add_argument("dir")
    sp.add_argument("-f", "--foreground", action="store_true",
                    help="serve from this process until interrupted (Ctrl-C)")
    sp = add("umount", cmd_umount, "detach a machine mount (also a stale one left by a killed server)")
    sp.add_argument("dir")


def _preload() -> tuple[str | None, str]:
    """(interposer library, why not) — helper "dax"'s ``cxlemu.preload``."""
    if importlib.util.find_spec("cxlemu.preload") is None:
        return None, "the LD_PRELOAD interposer is not part of this cxlemu"
    from cxlemu import preload
    fn = getattr(preload, "library_path", None)
    path = fn() if callable(fn) else None
    if not path:
        return None, "the LD_PRELOAD interposer was not built (no C compiler at install time)"
    return path, ""


@contextlib.contextmanager
def _device_server(machine, lock, sock_path: str):
    """helper "dax"'s device socket, when present: what the interposer talks to."""
    if importlib.util.find_spec("cxlemu.machine.devserver") is None:
        yield None
        return
    from cxlemu.machine import devserver
    h = devserver.serve(machine, lock, sock_path)
    try:
        yield h
    finally:
        h.close()


def _fuse_or_fail() -> None:
    from cxlemu.machine.mount import fuse_available
    why = fuse_available()
    if why:
        raise MachineError(f"FUSE is unavailable: {why}")


def cmd_real(args) -> int:
    from cxlemu.machine import realns
    from cxlemu.machine.mount import MountError, mount, page_cache_supported
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: cxlemu real NAME [-q] -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        realns.namespace_command()
    except realns.RealError as e:
        raise MachineError(str(e)) from None
    _fuse_or_fail()
    lib, why = _preload()
    env = dict(os.environ)
    st = Store()
    running = _running(st, args.name)
    if running is None and os.environ.get("CXLEMU_REAL_NO_START") != "1":
        running = _start(st, args.name, args.quiet)
    if running is not None:
        return _real_on_running(args, argv, env, running, lib, why)
    with st.open(args.name) as m:      # CXLEMU_REAL_NO_START=1: this process serves the mount meanwhile
        lock = threading.RLock()
        mnt, hostdev = realns.run_dirs(m.path)
        sock = str(m.path / "dev.sock")
        if lib:
            env["LD_PRELOAD"] = lib + (" " + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
            env["CXLEMU_DEV_SOCKET"] = sock
        elif not args.quiet:
            print(f"cxlemu: device files are unavailable ({why}): /dev nodes can be listed, not opened",
                  file=sys.stderr)
        env["CXLEMU_MACHINE"] = args.name
        try:
            handle = mount(m, lock, mnt, host_dev_dir=str(hostdev), page_cache=page_cache_supported())
        except MountError as e:
            raise MachineError(str(e)) from None
        try:
            with _device_server(m, lock, sock) if lib else contextlib.nullcontext():
                layout = realns.Layout.of(handle.layout(), str(hostdev))
                sys.stdout.flush()
                sys.stderr.flush()
                return realns.run(layout, argv, env)
        finally:
            handle.unmount()


def _running(st: Store, name: str) -> str | None:
    """The directory of machine ``name`` when its process runs, else None."""
    from cxlemu.machine.store import running_pid
    if not st.exists(name):
        return None
    path = st.path(name)
    return str(path) if running_pid(path) else None


def _start(st: Store, name: str, quiet: bool) -> str:
    """Start machine ``name`` as a process (``cxlemu start``): every write the
    real program makes is then journalled before it is acknowledged."""
    import io
    from cxlemu.cli.commands import cmd_start
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cmd_start(argparse.Namespace(name=name, foreground=False))
    if not quiet:
        print(f"cxlemu: {out.getvalue().strip()}", file=sys.stderr)
    return str(st.path(name))


def _server(path: str, req: dict) -> dict:
    from cxlemu.machine import client
    try:
        reply = client.request(path, req, timeout=120)
    except client.ServerGone:
        reply = None
    if reply is None:
        raise MachineError("the machine process went away")
    if reply.get("error"):
        raise MachineError(str(reply["error"]))
    return reply


def _real_on_running(args, argv: list[str], env: dict, path: str, lib: str | None, why: str) -> int:
    """``cxlemu real`` on a running machine: its process serves the mount (every
    write journalled before it is acknowledged) and the device socket; the
    program runs here, in its own namespace over the mount the process keeps
    for every run."""
    from cxlemu.machine import realns
    from cxlemu.machine.mount import page_cache_supported
    from cxlemu.machine.paths import DEV_SOCK_FILE
    # One mount, kept by the machine process until it stops, serves every run (so
    # the host kernel's caches of it stay warm from one run to the next).  The
    # host's /dev is bound on ``hostdev`` inside each run's own namespace only,
    # so concurrent runs share the directory without seeing each other's binds.
    mnt, hostdev = realns.shared_run_dirs(path)
    reply = _server(path, {"op": "mount", "dir": mnt,
                           "opts": {"host_dev_dir": hostdev, "reuse": True, "page_cache": page_cache_supported()}})
    sock = os.path.join(path, DEV_SOCK_FILE)
    if lib and os.path.exists(sock):
        env["LD_PRELOAD"] = lib + (" " + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
        env["CXLEMU_DEV_SOCKET"] = sock
    elif not args.quiet:
        print(f"cxlemu: device files are unavailable ({why or 'no device socket'}): "
              f"/dev nodes can be listed, not opened", file=sys.stderr)
    env["CXLEMU_MACHINE"] = args.name
    layout = realns.Layout.of(reply.get("layout") or {"root": mnt}, hostdev)
    sys.stdout.flush()
    sys.stderr.flush()
    return realns.run(layout, argv, env)


def cmd_mount(args) -> int:
    from cxlemu.machine.mount import MountError, check_mountpoint, mount
    try:
        check_mountpoint(args.dir)
    except MountError as e:
        raise MachineError(str(e)) from None
    st = Store()
    running = _running(st, args.name)
    if running is not None and not args.foreground:     # the machine process serves it
        _fuse_or_fail()
        reply = _server(running, {"op": "mount", "dir": os.path.abspath(args.dir), "opts": {}})
        print(f"cxlemu: {args.name}'s /sys, /proc and /dev on {reply['dir']} "
              f"(served by the machine process; cxlemu umount {reply['dir']})", file=sys.stderr)
        return 0
    if running is not None:
        raise MachineError(f"machine {args.name!r} is running: its process serves the mount "
                           f"(drop --foreground)")
    if not args.foreground:
        raise MachineError(f"machine {args.name!r} is not running: serve the mount from this process "
                           f"with --foreground (until Ctrl-C)")
    _fuse_or_fail()
    with Store().open(args.name) as m:
        lock = threading.RLock()
        try:
            handle = mount(m, lock, args.dir)
        except MountError as e:
            raise MachineError(str(e)) from None
        print(f"cxlemu: {args.name}'s /sys, /proc and /dev on {handle.mountpoint} (Ctrl-C to unmount)",
              file=sys.stderr)
        stop = threading.Event()
        old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop.wait(0.5):
                if not handle.alive:
                    break
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            handle.unmount()
    return 0


def cmd_umount(args) -> int:
    from cxlemu.machine.mount import detach, is_mountpoint, is_stale
    path = os.path.abspath(args.dir)
    if not (is_stale(path) or is_mountpoint(path)):
        raise MachineError(f"{path} is not mounted")
    if _umount_served(path):        # a running machine's mount: its process lets go of it
        return 0
    if not detach(path):
        raise MachineError(f"cannot unmount {path} (try: fusermount3 -u {path})")
    return 0


def _umount_served(path: str) -> bool:
    """Ask the running machine that serves ``path`` (if any) to unmount it."""
    from cxlemu.machine import client
    from cxlemu.machine.store import running_pid
    st = Store()
    for name in st.names():
        mp = st.path(name)
        if not running_pid(mp):
            continue
        try:
            reply = client.request(str(mp), {"op": "status"}, timeout=30)
        except client.ServerGone:
            continue
        if reply and path in (reply.get("mounts") or []):
            _server(str(mp), {"op": "umount", "dir": path})
            return True
    return False
