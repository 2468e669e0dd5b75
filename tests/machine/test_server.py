"""The machine process (machine/server.py): start/stop/status, a second start
refused, the socket's permissions, commands forwarded with identical results,
concurrent clients, a client that goes away mid-command, a kill -9 right
after an acknowledged write, stale files of a killed process, and the lock's
yield points."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cxlemu.machine.paths import MachineRunning

CXLEMU = [sys.executable, "-m", "cxlemu"]


def run(*args, check=True, input=None, env=None):
    p = subprocess.run(CXLEMU + list(args), capture_output=True, text=True, input=input, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"cxlemu {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def mdir(name: str) -> Path:
    return Path(os.environ["CXLEMU_HOME"]) / "machines" / name


def pid_of(name: str) -> int | None:
    from cxlemu.machine.store import running_pid
    return running_pid(mdir(name))


def _alive(pid: int) -> bool:
    """Alive and not a zombie (a daemon whose parent exited may wait for a reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _stop_machines():
    yield
    home = Path(os.environ["CXLEMU_HOME"]) / "machines"
    if home.is_dir():
        for d in home.iterdir():
            from cxlemu.machine.store import running_pid
            pid = running_pid(d)
            if pid and pid > 0:
                os.kill(pid, signal.SIGKILL)


def test_start_status_stop_resume():
    run("create", "box", "--topology", "biscuitos-b")
    assert "not running" in run("status", "box").stdout
    out = run("start", "box").stdout
    assert "started box" in out
    pid = pid_of("box")
    assert pid and pid != os.getpid()
    st = json.loads(run("status", "box", "--json").stdout)
    assert st["running"] and st["pid"] == pid and st["socket"].endswith("box/machine.sock")
    assert st["journal_records"] == 0 and st["mounts"] == [] and st["uptime_s"] >= 0
    sock = mdir("box") / "machine.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    # a second start is refused, by the CLI and by the process itself
    p = run("start", "box", check=False)
    assert p.returncode == 1 and "already running" in p.stderr
    p = subprocess.run([sys.executable, "-m", "cxlemu.cli.serve", "box"], capture_output=True, text=True)
    assert p.returncode == 1 and "already running" in p.stderr
    # a mutation through the process, journalled
    run("exec", "box", "--", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-s", "512M", "-t", "pmem",
        "-w", "1", "-g", "4096")
    st = json.loads(run("status", "box", "--json").stdout)
    assert st["journal_records"] > 0
    # in-process Store.open of a running machine is refused with a clear error
    from cxlemu.machine.store import Store
    with pytest.raises(MachineRunning, match="running"):
        with Store().open("box"):
            pass
    p = run("rm", "box", check=False)
    assert p.returncode == 1 and "stop it first" in p.stderr
    assert "running (pid" in run("ls").stdout
    assert "stopped box" in run("stop", "box").stdout
    assert pid_of("box") is None and not sock.exists() and not (mdir("box") / "machine.pid").exists()
    # without the process the state is on disk: the region is there
    regions = json.loads(run("exec", "box", "--", "cxl", "list", "-R").stdout)
    assert [r["region"] for r in regions] == ["region0"]
    run("start", "box")
    assert json.loads(run("exec", "box", "--", "cxl", "list", "-R").stdout) == regions
    run("stop", "box")
    p = run("stop", "box", check=False)
    assert p.returncode == 1 and "not running" in p.stderr


def test_start_foreground_stops_on_sigint():
    run("create", "fg", "--topology", "biscuitos-b")
    proc = subprocess.Popen(CXLEMU + ["start", "fg", "--foreground"], stderr=subprocess.PIPE, text=True)
    for _ in range(400):
        if (mdir("fg") / "machine.sock").exists():
            break
        time.sleep(0.025)
    assert json.loads(run("status", "fg", "--json").stdout)["pid"] == proc.pid
    run("exec", "fg", "--", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-t", "pmem", "-s", "512M")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert pid_of("fg") is None
    assert len(json.loads(run("exec", "fg", "--", "cxl", "list", "-R").stdout)) == 1


SEQUENCE = [
    ["exec", "box", "--", "cxl", "list"],
    ["exec", "box", "--", "cxl", "list", "-vvv"],
    ["exec", "box", "--", "cxl", "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-t", "ram", "-w", "2",
     "-g", "4096", "-s", "512M"],
    ["exec", "box", "--", "cxl", "create-region", "-d", "decoder0.1", "-m", "mem0", "-t", "ram", "-s", "0"],
    ["exec", "box", "--", "daxctl", "list"],
    ["exec", "box", "--", "daxctl", "reconfigure-device", "--mode=system-ram", "dax1.0"],
    ["exec", "box", "--", "daxctl", "offline-memory", "dax1.0"],
    ["exec", "box", "--", "numactl", "-H"],
    ["exec", "box", "--", "cxl", "create-region", "-d", "decoder0.2", "-m", "mem2", "-t", "pmem", "-s", "256M"],
    ["exec", "box", "--", "ndctl", "create-namespace", "--mode=devdax"],
    ["exec", "box", "--", "ndctl", "list", "-vvv"],
    ["exec", "box", "--", "cxl", "reserve-dpa", "-t", "pmem", "-s", "256M", "mem3"],
    ["exec", "box", "--", "cxl", "free-dpa", "mem3"],
    ["exec", "box", "--", "cxl", "destroy-region", "region9"],
    ["exec", "box", "--", "cat", "/sys/bus/cxl/devices/nope"],
    ["exec", "box", "--", "ls", "/sys/bus/cxl/devices"],
    ["exec", "box", "--", "cxl", "list", "-M", "-H", "-u"],
    ["sysfs", "box", "write", "/sys/bus/cxl/devices/decoder0.0/create_pmem_region", "bogus"],
    ["sysfs", "box", "read", "/sys/bus/cxl/devices/decoder0.0/interleave_ways"],
    ["show", "box"], ["iomem", "box"], ["dmesg", "box"], ["nodes", "box"], ["blocks", "box"],
    ["mem", "box", "alloc", "--kernel", "64M"], ["mem", "box", "stat"], ["mem", "box", "free", "1"],
    ["translate", "box", "dpa", "mem1", "0x0"], ["labels", "box", "mem2"],
    ["acpi", "box", "CEDT"], ["reboot", "box"], ["exec", "box", "--", "cxl", "list", "-R"],
    ["power-fail", "box"], ["exec", "box", "--", "ndctl", "list", "-RN"], ["dmesg", "box"],
    ["exec", "box", "--", "cxl", "list", "-X"], ["exec", "box", "--", "cxl", "bogus-command"],
]


def test_commands_give_identical_results_whether_or_not_the_machine_runs():
    results = {}
    for mode in ("stopped", "running"):
        run("create", "box", "--topology", "cxl-test")
        if mode == "running":
            run("start", "box")
        results[mode] = [run(*cmd, check=False) for cmd in SEQUENCE]
        if mode == "running":
            run("stop", "box")
        after = run("exec", "box", "--", "cxl", "list", "-vvv").stdout
        results[mode].append(subprocess.CompletedProcess([], 0, after, ""))
        run("rm", "box")
    norm = {mode: _uuids_numbered(results[mode]) for mode in results}
    for cmd, a, b in zip(SEQUENCE + [["final state"]], norm["stopped"], norm["running"]):
        assert a == b, cmd
    assert sum(r.returncode != 0 for r in results["running"]) >= 3      # the sequence has failures in it too


def _uuids_numbered(results) -> list[tuple]:
    """(rc, stdout, stderr) with every UUID (ndctl makes random ones, as the real
    one does) replaced by its order of appearance in the sequence."""
    import re
    seen: dict[str, str] = {}

    def sub(text: str) -> str:
        return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                      lambda m: seen.setdefault(m.group(0), f"<uuid{len(seen)}>"), text)
    return [(r.returncode, sub(r.stdout), sub(r.stderr)) for r in results]


def test_concurrent_clients_serialise_on_the_machine():
    run("create", "lab", "--topology", "cxl-test")
    run("start", "lab")
    attr = "/sys/bus/cxl/devices/decoder0.1/create_ram_region"
    procs = [subprocess.Popen(CXLEMU + ["exec", "lab", "--", "cxl", "create-region", "-d", "decoder0.1", "-m",
                                        f"mem{i}", f"mem{i + 1}", "-w", "2", "-g", "4096", "-t", "ram", "-s", "512M"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 2, 4, 6)]
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    names = {json.loads(o)["region"] for o, _ in outs}
    assert len(names) == 4
    assert run("sysfs", "lab", "read", attr).stdout.strip() not in names
    run("stop", "lab")
    listed = {r["region"] for r in json.loads(run("exec", "lab", "--", "cxl", "list", "-R").stdout)}
    assert names <= listed


def test_a_client_that_goes_away_leaves_the_machine_consistent(tmp_path):
    run("create", "box", "--topology", "cxl-test")
    run("start", "box")
    region = json.loads(run("exec", "box", "--", "cxl", "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1",
                            "-t", "ram", "-w", "2", "-g", "4096", "-s", "512M").stdout)
    hpa = region["resource"]
    # dd reads the client's stdin inside the machine process; the client dies halfway
    dd = subprocess.Popen(CXLEMU + ["exec", "box", "--", "dd", "if=/dev/stdin", "of=/dev/mem", "bs=4096",
                                    f"seek={hpa // 4096}", "count=2"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dd.stdin.write(b"A" * 4096)
    dd.stdin.flush()
    time.sleep(0.5)
    dd.kill()
    dd.wait()
    dd.stdin.close()
    # the machine still answers, and its model is consistent
    st = run("status", "box", "--check", "--json")
    assert json.loads(st.stdout)["problems"] == []
    out = tmp_path / "out"
    run("exec", "box", "--", "dd", "if=/dev/mem", f"of={out}", "bs=4096", f"skip={hpa // 4096}", "count=1")
    assert out.read_bytes() == b"A" * 4096
    run("exec", "box", "--", "cxl", "destroy-region", "-f", region["region"])
    left = json.loads(run("exec", "box", "--", "cxl", "list", "-R").stdout or "[]")
    assert region["region"] not in [r["region"] for r in left]


def test_kill_9_right_after_acknowledged_writes_keeps_them():
    run("create", "lab", "--topology", "cxl-test")
    run("start", "lab")
    pid = pid_of("lab")
    d = "/sys/bus/cxl/devices"
    r = run("sysfs", "lab", "read", f"{d}/decoder0.1/create_ram_region").stdout.strip()
    run("sysfs", "lab", "write", f"{d}/decoder0.1/create_ram_region", r)
    run("sysfs", "lab", "write", f"{d}/{r}/interleave_granularity", "4096")
    # the process dies (kill -9) right after this write returned inside it
    env = dict(os.environ, CXLEMU_FAULT_AFTER_WRITES="1")
    p = run("sysfs", "lab", "write", f"{d}/{r}/interleave_ways", "2", check=False, env=env)
    assert p.returncode == 1 and "went away" in p.stderr
    for _ in range(500):
        if pid_of("lab") is None:
            break
        time.sleep(0.01)
    assert pid_of("lab") is None and not _alive(pid)
    assert (mdir("lab") / "machine.sock").exists()          # left behind by the kill: cleaned next time
    assert r in run("sysfs", "lab", "ls", f"{d}/decoder0.1").stdout.split()
    assert run("sysfs", "lab", "read", f"{d}/{r}/interleave_granularity").stdout.strip() == "4096"
    assert run("sysfs", "lab", "read", f"{d}/{r}/interleave_ways").stdout.strip() == "2"
    assert not (mdir("lab") / "machine.sock").exists()
    assert not [x for x in mdir("lab").iterdir() if x.name.endswith(".tmp")]
    run("start", "lab")
    assert run("sysfs", "lab", "read", f"{d}/{r}/interleave_ways").stdout.strip() == "2"
    run("sysfs", "lab", "write", f"{d}/{r}/size", "0x20000000")
    assert json.loads(run("status", "lab", "--json", "--check").stdout)["problems"] == []


def test_yield_point_lets_waiting_clients_in():
    from cxlemu.machine.live import MachineLock
    lock = MachineLock()
    order: list[str] = []
    stop = threading.Event()

    def long_run() -> None:
        with lock:
            with lock:                       # re-entrant: yield releases every level
                for i in range(200):
                    order.append("step")
                    lock.yield_now()
                    if stop.is_set():
                        break
                    time.sleep(0.001)

    t = threading.Thread(target=long_run)
    t.start()
    time.sleep(0.02)
    with lock:                               # gets in between two steps
        order.append("reader")
        stop.set()
    t.join()
    i = order.index("reader")
    assert 0 < i < len(order) - 1 or order[-1] == "reader"
    assert len(order) < 200


def test_yield_point_raises_when_the_client_has_gone(tmp_path):
    from cxlemu.machine.live import Cancelled, LiveMachine
    from cxlemu.machine.store import Store
    Store().create("y", open(os.path.join(os.path.dirname(__file__), "..", "..", "src", "cxlemu", "topology",
                                          "builtin", "biscuitos-b.toml")).read())
    with Store().open("y") as m:
        live = LiveMachine(m)
        live.local.cancelled = threading.Event()
        m.yield_point()
        live.local.cancelled.set()
        with pytest.raises(Cancelled):
            m.yield_point()
        live.close()
        m.live = None


def test_the_client_fast_path_imports_nothing_heavy():
    run("create", "b", "--topology", "biscuitos-b")
    run("start", "b")
    code = ("import sys, io, os\n"
            "before = set(sys.modules)\n"
            "from cxlemu.cli.main import main\n"
            "rc = main(['exec', 'b', '--', 'cxl', 'list', '-M'])\n"
            "new = sorted(set(sys.modules) - before)\n"
            "print(rc, ' '.join(new), file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    rc, *mods = p.stderr.split()
    assert rc == "0" and json.loads(p.stdout)[0]["memdev"] == "mem0"
    heavy = [m for m in mods if m.split(".")[0] in ("numpy", "argparse", "rich", "socket", "selectors")
             or m.startswith(("cxlemu.kernel", "cxlemu.hw", "cxlemu.tools", "cxlemu.sysfs", "cxlemu.data",
                              "cxlemu.machine.store", "cxlemu.machine.stateio"))]
    assert heavy == [], heavy
    assert set(mods) <= {"__future__", "_contextvars", "_json", "_socket", "contextvars", "cxlemu", "cxlemu._version",
                         "cxlemu.cli",
                         "cxlemu.cli.main", "cxlemu.machine", "cxlemu.machine.client", "cxlemu.machine.paths",
                         "json", "json.decoder", "json.encoder", "json.scanner", "re", "enum", "typing",
                         "struct", "_struct"}, mods


def test_bad_mount_requests_are_refused_cleanly(tmp_path):
    from cxlemu.machine import client
    from cxltest_support import running_machine
    with running_machine("mnt") as path:
        reply = client.request(str(path), {"op": "mount", "dir": str(tmp_path / "no-such-dir")})
        assert reply["error"].startswith("mount ") and "no-such-dir" in reply["error"]
        assert "not a mount" in client.request(str(path), {"op": "umount", "dir": str(tmp_path)})["error"]
        assert client.request(str(path), {"op": "bogus"})["error"].startswith("unknown request")
        assert client.request(str(path), {"op": "status"})["mounts"] == []
