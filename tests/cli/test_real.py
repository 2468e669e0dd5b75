"""``cxlemu real``, ``cxlemu mount`` and ``cxlemu umount`` end to end
(subprocesses, like a user)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cxltest_support import require_fuse, require_real_ns

CXLEMU = [sys.executable, "-m", "cxlemu"]


def run(*args, check=True, input=None, timeout=120):
    p = subprocess.run(CXLEMU + list(args), capture_output=True, text=True, input=input, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"cxlemu {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def box():
    run("create", "box", "--topology", "biscuitos-b")
    return "box"


def test_real_streams_and_exit_status_are_the_programs(box):
    require_real_ns()
    p = run("real", "-q", box, "--", "sh", "-c", "cat /sys/bus/cxl/devices/mem0/serial; echo oops >&2; exit 7",
            check=False)
    assert (p.returncode, p.stdout, p.stderr) == (7, "0x0\n", "oops\n")
    p = run("real", "-q", box, "--", "sh", "-c", "read x; echo got $x", input="hello\n")
    assert p.stdout == "got hello\n"
    p = run("real", "-q", box, "--", "sh", "-c", "kill -TERM $$", check=False)
    assert p.returncode == 128 + signal.SIGTERM
    p = run("real", "-q", box, "--", "no-such-program-xyz", check=False)
    assert p.returncode == 127 and "no-such-program-xyz: command not found" in p.stderr


def test_real_namespace_layout(box):
    require_real_ns()
    script = ("ls /sys/bus/cxl/devices | tr '\\n' ' '; echo; cat /proc/cmdline; "
              "tail -n 1 /proc/iomem; ls /dev/cxl; test -c /dev/nmem0 && echo nmem-ok; "
              "head -c 3 /dev/zero | od -An -c; echo x > /dev/null && echo null-ok; "
              "test -d /dev/pts/ && echo pts-ok; test -d /dev/shm/ && echo shm-ok; "
              "test -d /proc/self && echo proc-self-ok; readlink /dev/fd")
    p = run("real", "-q", box, "--", "sh", "-c", script)
    lines = p.stdout.splitlines()
    assert "mem0" in lines[0].split() and "decoder0.0" in lines[0].split()
    assert "memhp_default_state" in lines[1]                  # the machine's cmdline, not the host's
    assert "CXL Window 0" in lines[2]
    assert lines[3] == "mem0"
    for want in ("nmem-ok", "null-ok", "pts-ok", "shm-ok", "proc-self-ok", "/proc/self/fd"):
        assert want in lines, want
    # nothing leaked into the host's namespace (other tests may have mounts of their own):
    # the one mount the machine process keeps for its runs, and that goes with it
    assert "memhp_default_state" not in open("/proc/cmdline").read()
    run_dir = os.path.join(os.environ["CXLEMU_HOME"], "machines", box, "run")
    shared = os.path.join(run_dir, "shared", "mnt")
    assert not any(ln.split()[1] in ("/sys", "/dev", "/proc/iomem") and "cxlemu" in ln
                   for ln in open("/proc/self/mounts"))
    ours = [ln.split()[1] for ln in open("/proc/self/mounts") if run_dir in ln]
    assert ours and all(mp == shared or mp.startswith(shared + "/") for mp in ours)
    run("real", "-q", box, "--", "true")                 # a second run uses the same mount
    assert [ln.split()[1] for ln in open("/proc/self/mounts") if run_dir in ln] == ours
    run("stop", box)
    assert not any(run_dir in ln for ln in open("/proc/self/mounts"))


def test_real_runs_debian_cxl_and_the_change_persists(box):
    require_real_ns("cxl")
    p = run("real", "-q", box, "--", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-s", "512M",
            "-t", "pmem", "-w", "1", "-g", "4096")
    assert json.loads(p.stdout)["region"] == "region0"
    assert p.stderr == "cxl region: cmd_create_region: created 1 region\n"
    ours = json.loads(run("exec", box, "--", "cxl", "list", "-R").stdout)
    assert ours[0]["region"] == "region0" and ours[0]["size"] == 512 << 20


def test_real_says_when_device_files_are_unavailable(box):
    require_real_ns()
    from cxltest_support import preload_library
    p = run("real", box, "--", "true")
    lines = p.stderr.splitlines()
    # a stopped machine is started first, and says so
    assert lines[0].startswith(f"cxlemu: started {box} (pid ") and lines[0].endswith(f"cxlemu stop {box}")
    if preload_library():
        assert lines[1:] == []
    else:
        assert len(lines) == 2 and lines[1].startswith("cxlemu: device files are unavailable (")
    p = run("real", box, "--", "true")                  # running now: no notice about starting
    assert not any("started" in x for x in p.stderr.splitlines())
    assert run("real", "-q", box, "--", "true").stderr == ""


def test_real_bad_input(box):
    p = run("real", box, check=False)
    assert p.returncode == 2 and "usage: cxlemu real" in p.stderr
    p = run("real", "nosuch", "--", "true", check=False)
    assert p.returncode == 1 and p.stderr.startswith("cxlemu: no machine named 'nosuch'")
    assert "Traceback" not in p.stderr


def test_mount_and_umount_bad_directories(box, tmp_path):
    p = run("mount", box, str(tmp_path / "nope"), "-f", check=False)
    assert p.returncode == 1 and "does not exist" in p.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    p = run("mount", box, str(tmp_path / "full"), "-f", check=False)
    assert p.returncode == 1 and "is not empty" in p.stderr
    (tmp_path / "empty").mkdir()
    p = run("mount", box, str(tmp_path / "empty"), check=False)
    assert p.returncode == 1 and "not running" in p.stderr
    p = run("umount", str(tmp_path / "empty"), check=False)
    assert p.returncode == 1 and "is not mounted" in p.stderr
    assert "Traceback" not in p.stderr


def test_mount_foreground_serves_until_interrupted(box, tmp_path):
    require_fuse()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.Popen(CXLEMU + ["mount", box, str(mnt), "--foreground"], stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        assert "Ctrl-C to unmount" in line
        assert (mnt / "sys/bus/cxl/devices/mem0/serial").read_text() == "0x0\n"
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert os.listdir(mnt) == []


def test_real_layout_survives_changes(box):
    """The running machine's split layout (machine/mount.py): /sys keeps its
    contents in the host's page cache, tracefs is its own connection, and no
    mount sits on an entry of the cached /sys, so a change (which makes the host
    drop every entry) takes none away: tracefs stays mounted, trace_pipe stays
    a stream, and what a program reads after the change is the new state."""
    require_real_ns()
    from cxlemu.machine.mount import page_cache_supported
    script = ("cat /sys/bus/cxl/devices/decoder0.0/create_pmem_region; "
              "echo region0 > /sys/bus/cxl/devices/decoder0.0/create_pmem_region; "
              "cat /sys/bus/cxl/devices/decoder0.0/create_pmem_region; "
              "cat /sys/bus/cxl/devices/region0/size; "
              "awk '$2 == \"/sys/kernel/tracing\" {print $3}' /proc/self/mounts | sort -u | tr '\\n' ' '; echo; "
              "test -e /sys/kernel/tracing/trace_pipe && echo pipe-ok; "
              "awk '$2 == \"/sys\" {print $3}' /proc/self/mounts | tail -n 1")
    lines = run("real", "-q", box, "--", "sh", "-c", script).stdout.splitlines()
    assert lines[:3] == ["region0", "region1", "0x0"]
    assert "tracefs" in lines[3].split() and lines[4] == "pipe-ok"
    assert lines[5] == ("tmpfs" if page_cache_supported() else "fuse.cxlemu")
    run_dir = os.path.join(os.environ["CXLEMU_HOME"], "machines", box, "run", "shared", "mnt")
    mps = {ln.split()[1] for ln in open("/proc/self/mounts")}
    if page_cache_supported():
        assert {f"{run_dir}/.root", f"{run_dir}/sys", f"{run_dir}/.tracing"} <= mps
    else:
        assert run_dir in mps
    run("stop", box)


def test_umount_cleans_a_stale_mount(box, tmp_path):
    require_fuse()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.Popen(CXLEMU + ["mount", box, str(mnt), "-f"], stderr=subprocess.PIPE, text=True)
    try:
        assert "Ctrl-C" in p.stderr.readline()
        p.kill()
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
    t0 = time.monotonic()
    run("umount", str(mnt))
    assert time.monotonic() - t0 < 10 and os.listdir(mnt) == []
