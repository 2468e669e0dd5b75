"""Bad machine state files (issue 14 #1): truncated, empty, corrupted, random,
a pickle from an older cxlemu, an older state version, a file naming code to
run.  Each gives one clean line that suggests ``cxlemu rm NAME``, exit 1, no
traceback, nothing executed and nothing changed; ``cxlemu rm`` still works."""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cxlemu.machine import stateio

CXLEMU = [sys.executable, "-m", "cxlemu"]


def run(*args, check=True):
    p = subprocess.run(CXLEMU + list(args), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"cxlemu {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def machine_dir(name: str) -> Path:
    return Path(os.environ["CXLEMU_HOME"]) / "machines" / name


def damaged(kind: str, good: bytes, tmp: Path) -> bytes:
    rnd = random.Random(kind)
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "empty":
        return b""
    if kind == "corrupted":
        data = bytearray(good)
        for _ in range(4):
            data[rnd.randrange(len(data))] ^= 0x5A
        return bytes(data)
    if kind == "random":
        return bytes(rnd.randrange(256) for _ in range(4096))
    if kind == "magic-only":
        return stateio.MAGIC
    if kind == "old-version":
        meta, graph, blobs = stateio.disassemble(good)
        meta["version"] = 3
        return stateio.assemble(meta, graph, blobs)
    if kind == "code":
        marker = tmp / "pwned"
        meta, _graph, _blobs = stateio.disassemble(good)
        graph = {"classes": ["os:system", "builtins:eval", "cxlemu.kernel.kernel:os.system"],
                 "shapes": [[0, [], None]], "blobs": [],
                 "records": [["F", 0], ["M", [0], "__call__"], ["T", [f"touch {marker}"]]], "root": [1]}
        return stateio.assemble(meta, graph, [])
    raise AssertionError(kind)


KINDS = ["truncated", "empty", "corrupted", "random", "magic-only", "old-version", "code"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_state_file_is_reported_in_one_line(kind, tmp_path):
    run("create", "box", "--topology", "biscuitos-b")
    sf = machine_dir("box") / "state.bin"
    bad = damaged(kind, sf.read_bytes(), tmp_path)
    sf.write_bytes(bad)
    for args in (("exec", "box", "--", "cxl", "list"), ("show", "box"), ("reboot", "box"), ("iomem", "box")):
        p = run(*args, check=False)
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cxlemu: "), p.stderr
        assert "cxlemu rm box" in lines[0] and "Traceback" not in p.stderr
        assert p.stdout == ""
    assert sf.read_bytes() == bad                  # nothing rewritten
    assert not (tmp_path / "pwned").exists()      # nothing executed
    assert "unreadable" in run("ls").stdout
    run("rm", "box")
    assert not machine_dir("box").exists()


def test_a_pickled_state_from_an_older_cxlemu_is_not_loaded(tmp_path):
    run("create", "old", "--topology", "biscuitos-b")
    d = machine_dir("old")
    (d / "state.bin").unlink()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (d / "state.pkl").write_bytes(pickle.dumps(Evil()))
    p = run("show", "old", check=False)
    assert p.returncode == 1
    assert "older cxlemu" in p.stderr and "cxlemu rm old" in p.stderr
    assert not marker.exists()
    run("rm", "old")


def test_stale_temp_files_of_a_killed_writer_are_cleaned(tmp_path):
    run("create", "box", "--topology", "biscuitos-b")
    d = machine_dir("box")
    stale = [d / ".state.bin.abc123.tmp", d / ".journal.x.tmp"]
    for s in stale:
        s.write_bytes(b"half a state")
    run("exec", "box", "--", "cxl", "list")
    assert not any(s.exists() for s in stale)
    # a create killed after making its temp directory: cleaned by the next ls/create
    orphan = d.parent / ".gone.k3j2"
    orphan.mkdir()
    (orphan / "lock").write_bytes(b"")
    run("ls")
    assert not orphan.exists()


def test_unwritable_home_names_the_directory_and_cxlemu_home(tmp_path):
    env = dict(os.environ)
    env.pop("CXLEMU_HOME")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env["XDG_DATA_HOME"] = str(blocker)             # works as root too: a file where a directory must be
    p = subprocess.run(CXLEMU + ["create", "box", "--topology", "biscuitos-b"], capture_output=True, text=True,
                       env=env)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert str(blocker) in line and "CXLEMU_HOME" in line
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        env["XDG_DATA_HOME"] = str(ro)
        p = subprocess.run(CXLEMU + ["create", "box", "--topology", "biscuitos-b"], capture_output=True,
                           text=True, env=env)
        assert p.returncode == 1 and str(ro) in p.stderr and "CXLEMU_HOME" in p.stderr


def test_read_only_commands_never_rewrite_the_state():
    """cxl list writes /sys/bus/cxl/flush (a pure action): the state file keeps its bytes and mtime."""
    run("create", "pm", "--topology", "biscuitos-b")
    run("exec", "pm", "--", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-s", "512M", "-t", "pmem",
        "-w", "1", "-g", "4096")
    run("exec", "pm", "--", "ndctl", "create-namespace", "--mode=devdax")
    sf = machine_dir("pm") / "state.bin"
    # The first `cxl list -L` on a machine leaves tracefs instance "cxl list" behind (cxl_poison
    # enabled, tracing off): ndctl frees its handle with tracefs_instance_free(), which does not
    # rmdir the instance, so it is kernel state until reboot, on Linux as here.
    run("exec", "pm", "--", "cxl", "list", "-L")
    assert run("exec", "pm", "--", "ls", "/sys/kernel/tracing/instances").stdout.split("\n")[0] == "cxl list"
    before = (sf.read_bytes(), sf.stat().st_mtime_ns)
    # -L (and -vvv, which includes it) then turns the instance on, writes memN/trigger_poison_list
    # (Get Poison List: no poison, no cxl_poison record), drains the buffers and turns it off
    # again: nothing is left changed, and the state file is not rewritten
    for cmd in (["cxl", "list"], ["cxl", "list", "-M", "-H", "-u"], ["cxl", "list", "-vvv"], ["cxl", "list", "-L"],
                ["ndctl", "list"], ["ndctl", "list", "-vvv"], ["daxctl", "list"], ["daxctl", "list", "-DRMi"],
                ["numactl", "-H"], ["lspci", "-tv"], ["cat", "/proc/iomem"]):
        run("exec", "pm", "--", *cmd)
    for cmd in (["show", "pm"], ["iomem", "pm"], ["dmesg", "pm"], ["nodes", "pm"], ["blocks", "pm"],
                ["labels", "pm"], ["sysfs", "pm", "read", "/sys/bus/cxl/devices/mem0/serial"]):
        run(*cmd)
    assert (sf.read_bytes(), sf.stat().st_mtime_ns) == before
    assert json.loads(run("exec", "pm", "--", "daxctl", "list").stdout)[0]["chardev"] == "dax0.0"


def test_a_poison_listing_is_kept_where_the_kernel_recorded_it():
    """-L with poison on the device is not read-only for the kernel: the device's
    cxl_poison list records (trace_type 0) go into every instance that has the event
    on -- a `cxl monitor` instance keeps them for its next read -- and the "cxl list"
    instance counts them as written (its trace header), so the state is saved."""
    run("create", "pm", "--topology", "biscuitos-b")
    run("exec", "pm", "--", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-t", "pmem")
    run("exec", "pm", "--", "cxl", "monitor")                  # creates instance cxl_monitor, tracing on
    run("exec", "pm", "--", "cxl", "inject-media-poison", "mem0", "-a", "0x1000")
    run("exec", "pm", "--", "cxl", "monitor")                  # drains the inject's records
    trace = "/sys/kernel/tracing/instances/cxl list/trace"
    sf = machine_dir("pm") / "state.bin"
    for n in (1, 2):
        before = sf.read_bytes()
        out = json.loads(run("exec", "pm", "--", "cxl", "list", "-L", "-m", "mem0").stdout)
        assert out[0]["media_errors"] == [{"offset": 0x1000, "length": 64, "source": "Injected"}]
        assert sf.read_bytes() != before
        assert f"entries-in-buffer/entries-written: 0/{n} " in run("exec", "pm", "--", "cat", trace).stdout
        ev = [json.loads(x) for x in run("exec", "pm", "--", "cxl", "monitor").stderr.splitlines()]
        assert [(e["event"], e["trace_type"], e["dpa"], e["source"]) for e in ev] == [("cxl_poison", 0, 0x1000, 3)]
    # nothing left to report: the monitor reads nothing, changes nothing
    before = (sf.read_bytes(), sf.stat().st_mtime_ns)
    assert run("exec", "pm", "--", "cxl", "monitor").stderr == ""
    assert (sf.read_bytes(), sf.stat().st_mtime_ns) == before


def test_mem_alloc_on_a_node_that_does_not_exist_is_refused():
    run("create", "m", "--topology", "cxl-test")
    sf = machine_dir("m") / "state.bin"
    before = sf.read_bytes()
    for node in ("99", "-5"):
        p = run("mem", "m", "alloc", "--kernel", "64M", "--node", node, check=False)
        assert p.returncode == 1 and p.stderr.strip().splitlines() == [
            f"cxlemu: mem alloc: node {node} does not exist (online nodes: 0-2)"]
    assert sf.read_bytes() == before
    assert "preferred node 1" in run("mem", "m", "alloc", "--kernel", "64M", "--node", "1").stdout
