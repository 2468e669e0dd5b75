"""Implementations of the ``cxlemu`` subcommands."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from cxlemu.cli.errors import UsageError
from cxlemu.machine.store import MachineError, Store
from cxlemu.topology import presets


def _store() -> Store:
    return Store()


def _topology_text(arg: str) -> str:
    from cxlemu.topology.schema import decode_text
    if arg in presets.names():
        return presets.text(arg)
    p = Path(arg)
    if p.is_file():
        try:
            data = p.read_bytes()
        except OSError as e:
            raise MachineError(f"{arg}: {e.strerror}") from None
        return decode_text(data, arg)
    if p.is_dir():
        raise MachineError(f"{arg}: is a directory, not a topology file")
    raise MachineError(f"unknown topology {arg!r}: not a preset ({', '.join(presets.names())}) nor a file")


def cmd_topologies(args) -> int:
    from rich.console import Console
    from rich.table import Table
    t = Table(title="built-in topologies", show_lines=False)
    t.add_column("name", style="bold")
    t.add_column("devices", justify="right")
    t.add_column("windows", justify="right")
    t.add_column("description")
    for name in presets.names():
        topo = presets.load(name)
        t.add_row(name, str(len(topo.devices)), str(len(topo.windows)), topo.description)
    Console().print(t)
    return 0


def cmd_topology(args) -> int:
    rest = getattr(args, "generate_args", None) or []
    if args.preset == "generate":
        from cxlemu.cli.topology_generate import cmd_generate
        return cmd_generate(rest)
    if rest:
        raise MachineError(f"topology: unexpected arguments after {args.preset!r}: {' '.join(rest)}")
    sys.stdout.write(_topology_text(args.preset))
    return 0


def cmd_create(args) -> int:
    text = _topology_text(args.topology)
    if getattr(args, "set", None):
        from cxlemu.topology.overrides import apply_all
        text = apply_all(text, args.set)
    _store().create(args.name, text)
    with _store().open(args.name, write=False) as m:
        k = m.kernel
        n_mem = len(k.cxl.memdevs)
        n_rd = len(k.cxl.root_decoders())
        regions = [r.name for r in k.cxl.regions.all()]
    extra = f", auto-assembled {', '.join(regions)}" if regions else ""
    print(f"created {args.name}: {n_mem} memdev(s), {n_rd} root decoder(s){extra}")
    return 0


def cmd_ls(args) -> int:
    st = _store()
    for name in st.names():
        try:
            pid = st.running(name)
            m = st.load_unlocked(name) if pid else None
            with (contextlib.nullcontext(m) if m is not None else st.open(name, write=False)) as m:
                t = m.topology
                print(f"{name:20} {t.name:20} {len(t.devices):5} device(s)  "
                      f"{len(m.kernel.cxl.regions.all())} region(s)" + (f"  running (pid {pid})" if pid else ""))
            if pid:
                m.media.close()
        except Exception as e:  # a broken machine must not hide the others
            print(f"{name:20} (unreadable: {e})")
    return 0


def cmd_rm(args) -> int:
    st = _store()
    rc = 0
    for name in args.names:
        try:
            st.remove(name)
        except MachineError as e:
            print(f"cxlemu: {e}", file=sys.stderr)
            rc = 1
    return rc


def machine_summary(m) -> dict:
    k = m.kernel
    regions = []
    for r in k.cxl.regions.all():
        regions.append({
            "region": r.name, "decoder": r.cxlrd.name, "mode": r.mode,
            "resource": r.res.start if r.res else None, "size": r.size,
            "interleave_ways": r.interleave_ways, "interleave_granularity": r.interleave_granularity,
            "state": ["idle", "interleave_active", "active", "reset_pending", "commit"][r.state],
            "enabled": r.driver is not None,
            "targets": [{"position": i, "memdev": t.memdev.name, "decoder": t.name,
                         "dpa_resource": t.dpa_start, "dpa_size": t.dpa_len}
                        for i, t in enumerate(r.targets[: r.interleave_ways]) if t is not None],
        })
    devices = []
    for md in k.cxl.memdevs:
        hw = md.hw
        devices.append({
            "id": hw.topo.id, "memdev": md.name, "host": md.parent.name if md.parent else None,
            "serial": hw.serial, "ram_size": hw.ram_size, "pmem_size": hw.pmem_size,
            "lsa_size": hw.lsa_size, "media": str(m.media.path(hw)),
            "endpoint": md.endpoint.name if md.endpoint else None, "enabled": md.driver is not None,
        })
    windows = []
    for rd in k.cxl.root_decoders():
        windows.append({"decoder": rd.name, "base": rd.start, "size": rd.size,
                        "interleave_ways": rd.interleave_ways,
                        "granularity": rd.hbig_granularity, "arithmetic": rd.arithmetic,
                        "targets": [t.dev.name for t in rd.targets],
                        "ram": rd.cap_ram, "pmem": rd.cap_pmem})
    return {"machine": m.name, "topology": m.topology.name, "flavor": m.topology.flavor,
            "kernel": m.topology.boot.kernel, "path": str(m.path), "devices": devices,
            "windows": windows, "regions": regions}


def cmd_show(args) -> int:
    from cxlemu.cli import views
    with _store().open(args.name, write=False) as m:
        summary = machine_summary(m)
    if views.on_terminal() and not views.want_json(args):
        views.show(summary)
    else:
        print(json.dumps(summary, indent=2))
    return 0


def wrapper_dir(name: str) -> Path:
    from cxlemu.cli.shell import wrapper_dir as wd
    return wd(name)


def cmd_exec(args) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("exec NAME -- COMMAND [ARGS...] (nothing to run)")
    from cxlemu.tools.runner import TOOLS, run_tool
    tool = os.path.basename(argv[0])
    from cxlemu.cli import shell
    if tool in shell.COREUTILS and not getattr(args, "_machine_only", False):
        if not _store().exists(args.name):
            raise MachineError(f"no machine named {args.name!r} (see: cxlemu ls)")
        # cat/ls/readlink/tree: the machine's /sys, /proc, /dev here, every other path on the host
        args._machine_only = True
        return shell.run_coreutil(tool, argv[1:], lambda a: cmd_exec(_with_argv(args, [tool, *a])))
    if tool in TOOLS:
        from cxlemu.sim import run as run_loop      # the `workload` program's accesses run in the engine
        with _store().open(args.name) as m:
            backend = m.backend(run_loop)
            if getattr(args, "_startup", False):
                # the loaded machine lives as long as this process: the collector's full
                # collections need not walk it (16 384 devices: 1.4 of 16.6 s of `cxl list -M`)
                import gc
                gc.freeze()
            fault = os.environ.get("CXLEMU_FAULT_AFTER_WRITES")
            if fault:
                backend.fault_after_writes = int(fault)
            try:
                rc = run_tool(tool, argv[1:], backend, env=dict(os.environ))
            finally:
                end = getattr(backend, "end_task", None)
                if end is not None:
                    end()
        if getattr(args, "_startup", False):
            # the state is saved and the tool closed its files: skip the interpreter's teardown
            from cxlemu.util.procexit import exit_now
            exit_now(rc)
        return rc
    if not _store().exists(args.name):
        raise MachineError(f"no machine named {args.name!r} (see: cxlemu ls)")
    env = dict(os.environ)
    env["PATH"] = f"{wrapper_dir(args.name)}:{env.get('PATH', '')}"
    env["CXLEMU_MACHINE"] = args.name
    try:
        import subprocess
        return subprocess.call(argv, env=env)
    except FileNotFoundError:
        print(f"cxlemu: exec: {argv[0]}: command not found", file=sys.stderr)
        return 127


def _with_argv(args, argv: list[str]):
    import copy
    a = copy.copy(args)
    a.argv = argv
    a._startup = False        # one of several runs: the caller goes on after it
    return a


def cmd_shell(args) -> int:
    if not _store().exists(args.name):
        raise MachineError(f"no machine named {args.name!r} (see: cxlemu ls)")
    from cxlemu.cli.shell import run_shell
    return run_shell(args.name, getattr(args, "command", None))


def cmd_iomem(args) -> int:
    with _store().open(args.name, write=False) as m:
        sys.stdout.write(m.backend().read("/proc/iomem"))
    return 0


def cmd_dmesg(args) -> int:
    with _store().open(args.name, write=False) as m:
        for line in m.kernel.dmesg:
            print(line)
    return 0


def cmd_acpi(args) -> int:
    from cxlemu.hw.acpi.dump import dump_table
    with _store().open(args.name, write=False) as m:
        tables = m.platform.tables
        name = args.table.upper()
        if name == "FADT":
            name = "FACP"
        if name not in tables:
            raise MachineError(f"no ACPI table {args.table!r} (have: {', '.join(sorted(tables))})")
        if args.raw:
            try:
                Path(args.raw).write_bytes(tables[name])
            except OSError as e:
                raise MachineError(f"acpi --raw {args.raw}: {e.strerror}") from None
            return 0
        sys.stdout.write(dump_table(name, tables[name]))
    return 0


def _sysfs_error(action: str, path: str, e: OSError) -> int:
    """A failed path operation, reported like cat/ls report it."""
    msg = os.strerror(e.errno) if e.errno else str(e)
    print(f"cxlemu: sysfs {action}: {path}: {msg}", file=sys.stderr)
    return 1


def cmd_sysfs(args) -> int:
    from cxlemu.sysfs.backend import render
    if args.action == "render":
        if len(args.args) != 1:
            raise UsageError("sysfs NAME render OUTDIR")
        out = Path(args.args[0])
        if out.exists() and not out.is_dir():
            raise MachineError(f"sysfs render: {out} exists and is not a directory")
        if out.is_dir() and any(out.iterdir()):
            raise MachineError(f"sysfs render: {out} is not empty")
    elif args.action == "write" and len(args.args) != 2:
        raise UsageError("sysfs NAME write PATH VALUE")
    elif args.action == "read" and not args.args:
        raise UsageError("sysfs NAME read PATH...")
    with _store().open(args.name, write=args.action == "write") as m:
        b = m.backend()
        if args.action == "render":
            try:
                out.mkdir(parents=True, exist_ok=True)
                n = render(b, str(out.resolve()))
            except OSError as e:
                return _sysfs_error("render", e.filename or str(out), e)
            print(f"rendered {n} entries of {args.name}'s /sys, /proc and /dev into {out}", file=sys.stderr)
            return 0
        if args.action == "read":
            rc = 0
            for p in args.args:
                try:
                    data = b.read_bytes(p)
                except OSError as e:
                    rc = _sysfs_error("read", p, e)
                    continue
                sys.stdout.flush()                   # binary attributes (CDAT) come out as bytes
                out = getattr(sys.stdout, "buffer", None)
                if out is not None:
                    out.write(data)
                    out.flush()
                else:
                    sys.stdout.write(data.decode(errors="replace"))
            return rc
        if args.action == "ls":
            rc = 0
            for p in args.args or ["/sys"]:
                try:
                    names = b.listdir(p)
                except OSError as e:
                    rc = _sysfs_error("ls", p, e)
                    continue
                for n in names:
                    print(n)
            return rc
        try:
            b.write(args.args[0], args.args[1] + "\n")
        except OSError as e:
            print(f"cxlemu: write {args.args[0]}: {os.strerror(e.errno)}", file=sys.stderr)
            return 1
    return 0


def cmd_reboot(args) -> int:
    with _store().open(args.name) as m:
        m.reboot(power_loss=False)
        regions = [r.name for r in m.kernel.cxl.regions.all()]
    print(f"{args.name}: rebooted" + (f" (firmware regions: {', '.join(regions)})" if regions else ""))
    return 0


def cmd_power_fail(args) -> int:
    with _store().open(args.name) as m:
        eadr = m.topology.boot.persistent_cpu_caches
        m.reboot(power_loss=True)
    print(f"{args.name}: power failed and restored; "
          + ("CPU caches are persistent (eADR): no store was lost" if eadr
             else "stores not flushed from CPU caches were lost"))
    return 0


def cmd_translate(args) -> int:
    from cxlemu.cli.translate import translate
    with _store().open(args.name, write=False) as m:
        out = translate(m.kernel, args.kind, args.args)
    print(json.dumps(out, indent=2))
    return 0


def cmd_demo(args) -> int:
    from cxlemu.demo import run_demo
    return run_demo(keep=args.keep)


# ---- the machine process (machine/server.py; in the background: python -m cxlemu.cli.serve) -------------------
def cmd_start(args) -> int:
    st = _store()
    st._require(args.name)
    p = st.path(args.name)
    pid = st.running(args.name)
    if pid:
        raise MachineError(f"machine {args.name!r} is already running (pid {pid})")
    if args.foreground:
        from cxlemu.machine.server import run_foreground
        print(f"cxlemu: serving {args.name} in the foreground (Ctrl-C stops it)", file=sys.stderr)
        return run_foreground(args.name, args._run_command)
    import subprocess
    from cxlemu.machine.paths import LOG_FILE
    r, w = os.pipe()
    log = open(p / LOG_FILE, "ab")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "cxlemu.cli.serve", args.name, "--ready-fd", str(w)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(w,),
                                start_new_session=True, close_fds=True)
    finally:
        os.close(w)
        log.close()
    with os.fdopen(r, "rb") as f:
        line = f.readline().decode(errors="replace").strip()
    if line != "ok":
        proc.wait(timeout=30)
        msg = line or f"the machine process exited with {proc.returncode}; see {p / LOG_FILE}"
        raise MachineError(msg)
    print(f"started {args.name} (pid {proc.pid}); stop it with: cxlemu stop {args.name}")
    return 0


def cmd_stop(args) -> int:
    from cxlemu.machine import client
    st = _store()
    st.path(args.name)
    if not st.exists(args.name):
        raise MachineError(f"no machine named {args.name!r} (see: cxlemu ls)")
    pid = st.running(args.name)
    if client.serving.get() is not None:
        raise MachineError(f"cannot stop {args.name!r} from a command running inside a machine process")
    try:
        reply = client.request(str(st.path(args.name)), {"op": "stop"}, timeout=300)
    except client.ServerGone:
        reply = None
    if reply is None:
        if pid:     # running but not answering: let it stop on SIGTERM
            import signal
            os.kill(pid, signal.SIGTERM)
            for _ in range(600):
                if not st.running(args.name):
                    break
                import time
                time.sleep(0.05)
            print(f"stopped {args.name}")
            return 0
        raise MachineError(f"machine {args.name!r} is not running")
    if "error" in reply:
        raise MachineError(reply["error"])
    for _ in range(600):                 # until the process has let go of the machine
        if not st.running(args.name):
            break
        import time
        time.sleep(0.01)
    print(f"stopped {args.name} (state saved)")
    return 0


def cmd_status(args) -> int:
    from cxlemu.machine import client
    st = _store()
    if not st.exists(args.name):
        raise MachineError(f"no machine named {args.name!r} (see: cxlemu ls)")
    pid = st.running(args.name)
    reply = None
    live = client.serving.get()
    if live is not None and live.path == st.path(args.name):
        reply = dict(live.status(), name=args.name, path=str(live.path))    # asked from inside the process
        if args.check:
            from cxlemu.machine.fsck import check
            reply["problems"] = check(live.machine)
    elif pid:
        try:
            reply = client.request(str(st.path(args.name)), {"op": "status", "check": args.check})
        except client.ServerGone:
            reply = None
    if reply is None or "error" in reply:
        out = {"name": args.name, "running": False, "path": str(st.path(args.name))}
        if pid:
            out.update(running=True, pid=pid, error=(reply or {}).get("error", "not answering"))
        elif args.check:
            from cxlemu.machine.fsck import check
            with st.open(args.name, write=False) as m:
                out["problems"] = check(m)
    else:
        out = dict(reply, running=True)
    if args.json:
        print(json.dumps(out, indent=2))
    elif not out["running"]:
        print(f"{args.name}: not running (commands load and save {out['path']})")
    else:
        up = out.get("uptime_s", 0)
        print(f"{args.name}: running, pid {out.get('pid')}, up {up:.0f} s")
        if "socket" in out:
            print(f"  socket   {out['socket']}")
            print(f"  journal  {out['journal_records']} record(s), {out['journal_bytes']} bytes since snapshot "
                  f"{out['generation']}")
            print(f"  mounts   {', '.join(out['mounts']) or '-'}")
            if out.get("dev_socket"):
                print(f"  devices  {out['dev_socket']}")
    if "problems" in out:
        for p in out["problems"]:
            print(f"  fsck: {p}")
        if not args.json:
            print(f"  fsck: {'clean' if not out['problems'] else str(len(out['problems'])) + ' problem(s)'}")
        return 1 if out["problems"] else 0
    return 0
