"""``cxlemu draw`` (graphviz files, a tree, JSON, any /sys) and the table / JSON
forms of ``show``, ``blocks``, ``nodes`` and ``mem stat`` (issue 14 #3), and
the progress bar of ``create`` (issue 14 #4)."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys

import pytest

CXLEMU = [sys.executable, "-m", "cxlemu"]


def run(*args, env=None):
    return subprocess.run(CXLEMU + list(args), capture_output=True, text=True, env=env or os.environ.copy())


def run_on_terminal(*args, env=None) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; returns (status, output)."""
    master, slave = pty.openpty()
    env = dict(env or os.environ, COLUMNS="160", TERM="xterm")
    p = subprocess.Popen(CXLEMU + list(args), stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("draw-home")
    env = dict(os.environ, CXLEMU_HOME=str(h))
    for args in (["create", "lab", "-t", "cxl-test"],
                 ["create", "pm", "-t", "biscuitos-b"],
                 ["exec", "pm", "--", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-s", "512M",
                  "-t", "pmem"],
                 ["exec", "pm", "--", "ndctl", "create-namespace", "--mode=devdax"]):
        p = run(*args, env=env)
        assert p.returncode == 0, p.stderr
    return env


def test_tree_when_piped_is_plain_text(home):
    p = run("draw", "lab", env=home)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "\x1b[" not in out
    for words in ("lab (cxl-test, Linux 6.9)", "root0 CXL root cxl_acpi.0", "port1 host bridge cxl_host_bridge.0",
                  "switch cxl_switch_uport.0", "mem0 1 GiB ram + 1 GiB pmem", "decoder0.0 1 GiB",
                  "region0 512 MiB ram x2 4K enabled: mem0@0 mem4@1", "dax0.0 system-ram 512 MiB -> node2",
                  "node2 no memory, CPU-less"):
        assert words in out, words


def test_tree_on_a_terminal_is_coloured(home):
    rc, out = run_on_terminal("draw", "lab", env=home)
    assert rc == 0
    assert "\x1b[" in out and "region0" in out


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_graphviz_files(home, tmp_path):
    for ext, magic in (("svg", b"<svg"), ("png", b"\x89PNG"), ("pdf", b"%PDF")):
        f = tmp_path / f"t.{ext}"
        p = run("draw", "pm", "-o", str(f), env=home)
        assert p.returncode == 0, p.stderr
        assert magic in f.read_bytes()[:400]
    svg = (tmp_path / "t.svg").read_text()
    for words in ("mem0", "512 MiB pmem", "region0", "decoder0.0", "dax0.0", "devdax", "#fdae6b", "#74c476"):
        assert words in svg, words


def test_dot_source_needs_no_graphviz_binary(home, tmp_path):
    f = tmp_path / "t.dot"
    env = dict(home, PATH="/nonexistent")
    p = subprocess.run(CXLEMU + ["draw", "lab", "-o", str(f)], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    src = f.read_text()
    assert src.startswith("digraph") and "-> region0" in src and "fillcolor=\"#9ecae1\"" in src


def test_bad_output_name_is_a_usage_error(home, tmp_path):
    p = run("draw", "lab", "-o", str(tmp_path / "x.jpeg"), env=home)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "FILE.svg" in p.stderr
    assert run("draw", env=home).returncode == 2
    assert run("draw", "nope", env=home).returncode == 1


def test_json_and_any_sysfs_tree(home, tmp_path):
    p = run("draw", "pm", "--json", env=home)
    d = json.loads(p.stdout)
    assert [m["name"] for m in d["memdevs"]] == ["mem0"]
    r = d["regions"][0]
    assert (r["name"], r["mode"], r["ways"], r["committed"], r["enabled"]) == ("region0", "pmem", 1, True, True)
    assert r["members"][0]["memdev"] == "mem0"
    assert d["dax"][0]["mode"] == "devdax"
    out = tmp_path / "tree"
    assert run("sysfs", "pm", "render", str(out), env=home).returncode == 0
    p = run("draw", "--sysfs-root", str(out), "--json", env=home)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == d


def test_draw_61_without_region_mode(home, tmp_path):
    t = tmp_path / "b61.toml"
    t.write_text(run("topology", "biscuitos-b", env=home).stdout.replace('kernel = "6.9"', 'kernel = "6.1"'))
    assert run("create", "b61", "-t", str(t), env=home).returncode == 0
    assert run("exec", "b61", "--", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-s", "512M",
               "-t", "pmem", env=home).returncode == 0
    d = json.loads(run("draw", "b61", "--json", env=home).stdout)
    assert d["regions"][0]["mode"] == "pmem"           # from pmem_region0: 6.1 has no regionN/mode
    host_port = next(p for p in d["ports"] if p["kind"] == "host_bridge")
    assert host_port["host"] == "ACPI0016:00"


# ---- show / blocks / nodes / mem stat ------------------------------------------------------------

def test_json_everywhere(home):
    show = json.loads(run("show", "lab", "--json", env=home).stdout)
    assert show["machine"] == "lab" and show["regions"][0]["region"] == "region0"
    assert json.loads(run("show", "lab", env=home).stdout) == show        # piped: JSON as before
    blocks = json.loads(run("blocks", "lab", "--json", env=home).stdout)
    assert blocks["block_size"] == 128 << 20
    assert any(r["state"] == "offline" and r["node"] == 2 for r in blocks["ranges"])
    nodes = json.loads(run("nodes", "lab", "--json", env=home).stdout)
    assert [n["node"] for n in nodes["nodes"]] == [0, 1, 2]
    assert nodes["nodes"][0]["access"]["access0"]["read_latency"] == 80
    assert run("mem", "lab", "alloc", "--user", "64M", env=home).returncode == 0
    stat = json.loads(run("mem", "lab", "stat", "--json", env=home).stdout)
    assert stat["allocations"][-1]["bytes"] == 64 << 20 and stat["allocations"][-1]["kind"] == "user"


def test_plain_text_when_piped(home):
    assert run("blocks", "lab", env=home).stdout.startswith("RANGE")
    assert "available: 3 nodes (0-2)" in run("nodes", "lab", env=home).stdout
    assert run("mem", "lab", "stat", env=home).stdout.startswith("node zone")


def test_rich_tables_on_a_terminal(home):
    for args, words in ((("show", "lab"), "windows"), (("blocks", "lab"), "memory blocks"),
                        (("nodes", "lab"), "NUMA nodes"), (("mem", "lab", "stat"), "zones")):
        rc, out = run_on_terminal(*args, env=home)
        assert rc == 0, out
        assert "┏" in out and words in out, (args, out[:400])


def test_create_shows_progress_only_on_a_terminal(tmp_path):
    env = dict(os.environ, CXLEMU_HOME=str(tmp_path / "h"))
    rc, out = run_on_terminal("create", "big", "-t", "cxl-test", env=env)
    assert rc == 0 and "probing CXL memory devices" in out
    p = run("create", "big2", "-t", "cxl-test", env=env)
    assert p.returncode == 0 and p.stderr == ""
