"""kill -9 of the machine process at random moments during 100 random
mutations (issue 8): after each restart, every acknowledged change is there,
nothing else is, and the model passes machine/fsck.py.

How "every acknowledged change is there" is checked exactly: before a command
that will be interrupted, the (idle) machine directory is copied to a
reference machine, and the same command runs on the reference in this
process with a hook that records the machine's observable state (cxl, ndctl
and daxctl listings, /proc/iomem, dmesg) after each of its writes.  The state
of the restarted machine must be one of those: the state after some prefix
of the command's writes -- all of them if the command's exit code came back,
since an acknowledged command is complete.  Commands that are not
interrupted run only on the live machine."""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cxlemu.machine.store import Store, running_pid
from cxlemu.tools.runner import run_tool

CXLEMU = [sys.executable, "-m", "cxlemu"]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LISTINGS = (["cxl", "list", "-vvv"], ["ndctl", "list", "-vvv"], ["daxctl", "list", "-DRM"])


def cx(*args, check=True, env=None):
    p = subprocess.run(CXLEMU + list(args), capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"cxlemu {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def canon(listings: list[str], iomem: str, dmesg: str) -> str:
    """The observable state, with random UUIDs (ndctl makes new ones) masked."""
    return UUID.sub("<uuid>", "\n".join(listings) + "\n--iomem--\n" + iomem + "\n--dmesg--\n" + dmesg)


def live_state(name: str) -> str:
    listings = [cx("exec", name, "--", *cmd).stdout for cmd in LISTINGS]
    return canon(listings, cx("iomem", name).stdout, cx("dmesg", name).stdout)


def ref_states(root: Path, name: str, argv: list[str]) -> list[str]:
    """The reference machine's state before the command and after each of its
    writes (pure flushes excluded: they change nothing)."""
    states: list[str] = []
    with Store(root).open(name, write=False) as m:
        def snap() -> None:
            b = m.backend()
            outs = []
            for cmd in LISTINGS:
                out = io.StringIO()
                run_tool(cmd[0], cmd[1:], b, stdout=out, stderr=io.StringIO())
                outs.append(out.getvalue())
            states.append(canon(outs, b.read("/proc/iomem"), "".join(line + "\n" for line in m.kernel.dmesg)))

        snap()
        b = m.backend()
        orig_write, orig_open = b.write, b.open_memdev

        def write(path, data):
            try:
                orig_write(path, data)
            finally:
                if path != "/sys/bus/cxl/flush":
                    snap()

        def open_memdev(path):
            ch = orig_open(path)
            send = ch.send

            def hooked(*a):
                try:
                    return send(*a)
                finally:
                    snap()
            ch.send = hooked
            return ch

        b.write, b.open_memdev = write, open_memdev
        run_tool(argv[0], argv[1:], b, stdout=io.StringIO(), stderr=io.StringIO(), env=dict(os.environ))
        snap()
    return states


def operation(rng: random.Random) -> list[str]:
    r = lambda: f"region{rng.randrange(0, 7)}"          # noqa: E731
    mem = lambda: f"mem{rng.randrange(0, 8)}"            # noqa: E731
    dax = lambda: f"dax{rng.randrange(0, 5)}.0"          # noqa: E731
    a = rng.randrange(0, 4) * 2
    choices = [
        ["cxl", "create-region", "-d", "decoder0.1", "-m", f"mem{a}", f"mem{a + 1}", "-w", "2", "-g", "4096",
         "-t", "ram", "-s", "256M"],
        ["cxl", "create-region", "-d", rng.choice(["decoder0.2", "decoder0.4"]), "-m", mem(), "-t", "pmem",
         "-s", "256M"],
        ["cxl", "create-region", "-d", "decoder0.0", "-m", mem(), "-t", "ram", "-s", "256M"],
        ["cxl", "destroy-region", "-f", r()],
        ["cxl", "disable-region", r()],
        ["cxl", "enable-region", r()],
        ["cxl", "reserve-dpa", "-t", rng.choice(["ram", "pmem"]), "-s", "256M", mem()],
        ["cxl", "free-dpa", mem()],
        ["ndctl", "create-namespace", f"--mode={rng.choice(['devdax', 'fsdax', 'raw'])}"],
        ["ndctl", "destroy-namespace", "-f", rng.choice(["all", f"namespace{rng.randrange(0, 4)}.0"])],
        ["daxctl", "reconfigure-device", "--mode=system-ram", dax()],
        ["daxctl", "reconfigure-device", "--mode=devdax", "-f", dax()],
        ["daxctl", "offline-memory", dax()],
        ["daxctl", "online-memory", dax()],
    ]
    return rng.choice(choices)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_dead(name: str, pid: int) -> None:
    for _ in range(1000):
        if running_pid(Store().path(name)) is None:
            return
        time.sleep(0.01)
    raise AssertionError(f"machine process {pid} did not die")


@pytest.mark.slow
def test_kill_9_at_random_points_during_100_mutations(tmp_path):
    seed = int(os.environ.get("CXLEMU_KILL9_SEED", "8"))
    rng = random.Random(seed)
    name = "lab"
    cx("create", name, "--topology", "cxl-test")
    cx("start", name)
    live_dir = Store().path(name)
    ref_root = tmp_path / "ref" / "machines"
    kills = acked_kills = 0
    try:
        for step in range(100):
            argv = operation(rng)
            if rng.random() >= 0.15:
                cx("exec", name, "--", *argv, check=False)
                continue
            # copy the idle machine, then interrupt the command with kill -9 at a random moment
            shutil.rmtree(ref_root, ignore_errors=True)
            ref_root.mkdir(parents=True)
            subprocess.run(["cp", "-a", "--sparse=always", str(live_dir), str(ref_root / name)], check=True)
            for f in ("machine.sock", "machine.pid", "lock"):
                (ref_root / name / f).unlink(missing_ok=True)
            pid = running_pid(live_dir)
            assert pid and pid > 0
            if rng.random() < 0.5:
                # at a random moment (before, during or after the command)
                timer = threading.Timer(rng.uniform(0.0, 0.5), _kill, (pid,))
                timer.start()
                p = cx("exec", name, "--", *argv, check=False)
                timer.join()
            else:
                # right after the k-th write of the command returned inside the process
                env = dict(os.environ, CXLEMU_FAULT_AFTER_WRITES=str(rng.randrange(1, 80)))
                p = cx("exec", name, "--", *argv, check=False, env=env)
            _kill(pid)                       # the command may have finished first
            wait_dead(name, pid)
            kills += 1
            acked = "went away" not in p.stderr
            acked_kills += acked
            expected = ref_states(ref_root, name, argv)
            cx("start", name)
            got = live_state(name)
            if acked:
                assert got == expected[-1], f"step {step}: {argv} was acknowledged but is not complete"
            else:
                assert got in expected, f"step {step}: {argv}: the state is no prefix of its writes"
            st = json.loads(cx("status", name, "--json", "--check").stdout)
            assert st["problems"] == [], (step, argv, st["problems"])
    finally:
        pid = running_pid(live_dir)
        if pid and pid > 0:
            os.kill(pid, signal.SIGKILL)
    print(f"kill9: {kills} kills, {acked_kills} after the acknowledgement")
    assert kills >= 5, kills
    # and the machine still works after all that, stopped and started again
    cx("start", name, check=False)
    cx("stop", name)
    assert json.loads(cx("status", name, "--json", "--check").stdout)["problems"] == []
