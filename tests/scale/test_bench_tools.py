"""benchmarks/bench_tools.py times "ours as a process" with a one-line program
(``OURS_CLI``); it once imported a module that no longer existed and timed the
ImportError.  These run that very program and check what it prints."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

from cxltest_support import boot
from cxlemu.sysfs.backend import DirectoryBackend, render
from cxlemu.tools.runner import run_tool

ROOT = Path(__file__).resolve().parents[2]


def _bench_tools():
    spec = importlib.util.spec_from_file_location("bench_tools", ROOT / "benchmarks" / "bench_tools.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_process_command_prints_what_the_tool_prints_in_process(tmp_path):
    bench = _bench_tools()
    render(boot("biscuitos-c"), str(tmp_path))
    env = dict(os.environ, CXLEMU_SYSFS_ROOT=str(tmp_path), PYTHONPATH=str(ROOT / "src"))
    for argv in bench.COMMANDS:
        p = subprocess.run([sys.executable, "-c", bench.OURS_CLI, *argv], capture_output=True, text=True,
                           env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        out = io.StringIO()
        assert run_tool(argv[0], list(argv[1:]), DirectoryBackend(str(tmp_path)), env={}, stdout=out,
                        stderr=io.StringIO(), isatty=False) == 0
        assert p.stdout == out.getvalue()
        if argv[0] == "cxl":
            assert '"memdev":"mem0"' in p.stdout


def test_process_command_names_a_console_entry_point():
    import tomllib
    bench = _bench_tools()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    modules = {v.split(":")[0] for k, v in scripts.items() if k.startswith("cxlemu-")}
    assert modules == {"cxlemu.cli.standalone"}
    assert "from cxlemu.cli import standalone" in bench.OURS_CLI
    for argv in bench.COMMANDS:
        assert scripts[f"cxlemu-{argv[0]}"] == f"cxlemu.cli.standalone:{argv[0]}"


def test_inner_script_refuses_a_failing_process(tmp_path):
    """The benchmark's inner script stops (exit status not 0) when our process fails."""
    bench = _bench_tools()
    inner = tmp_path / "inner.py"
    inner.write_text(bench.INNER)
    bindir = tmp_path / "bin"                  # a C "cxl" that succeeds: only ours fails
    bindir.mkdir()
    (bindir / "cxl").write_text("#!/bin/sh\necho '[]'\n")
    (bindir / "cxl").chmod(0o755)
    broken = "import sys; sys.exit(3)"
    p = subprocess.run([sys.executable, str(inner), "1", '[["cxl", "list"]]', str(ROOT / "src"), broken],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT / "src"),
                                PATH=f"{bindir}:{os.environ.get('PATH', '')}"))
    assert p.returncode != 0 and "exited 3" in p.stderr, p.stderr


def test_every_benchmarked_command_is_accepted_by_our_tools():
    """A usage error (exit 129) must not be what the benchmark times: ``daxctl list``
    has no ``-v`` in the real tool or ours."""
    bench = _bench_tools()
    b = boot("biscuitos-c")
    for argv in bench.COMMANDS:
        assert run_tool(argv[0], list(argv[1:]), b, env={}, stdout=io.StringIO(), stderr=io.StringIO(),
                        isatty=False) == 0, argv
    assert run_tool("daxctl", ["list", "-vvv"], b, env={}, stdout=io.StringIO(), stderr=io.StringIO(),
                    isatty=False) == 129


def test_populate_gives_every_tool_something_to_list(tmp_path):
    """The benchmark times listings of a configured machine: regions,
    namespaces in both modes and DAX devices, made through our tools."""
    import json
    bench = _bench_tools()
    b = boot("biscuitos-c")
    assert bench.populate(b, 4, str(tmp_path)) == "4 pmem, 2 fsdax, 2 devdax"
    nd = json.loads(bench._tool(b, "ndctl", "list", "-N"))
    assert sorted(n["mode"] for n in nd) == ["devdax", "devdax", "fsdax", "fsdax"]
    dax = json.loads(bench._tool(b, "daxctl", "list", "-D"))
    assert len(dax) == 2 and all(d["chardev"].startswith("dax") for d in dax)
    assert bench._tool(b, "cxl", "create-region", "-t", "pmem", "-d", "decoder0.0", "-m", "mem0", "-w", "1",
                       may_fail=True) is None         # mem0 is taken: refused, reported as None
