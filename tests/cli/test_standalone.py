"""The cxlemu-* entry points run the bundled tools against a directory tree
(a rendered machine or a real /sys), a machine, or the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cxltest_support import boot, render_machine


def tool(name: str, *argv: str, env=None):
    code = f"import sys; from cxlemu.cli import standalone; sys.argv=['x'] + {list(argv)!r}; " \
           f"sys.exit(standalone.{name}())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_sysfs_root_accepts_rendered_tree_and_its_sys(tmp_path):
    out = render_machine(boot("biscuitos-b"), tmp_path / "r")
    for root in (out, out + "/sys"):
        p = tool("cxl", "--sysfs-root", root, "list", "-M")
        assert p.returncode == 0, p.stderr
        (md,) = json.loads(p.stdout)
        assert md["memdev"] == "mem0" and md["host"] == "0000:0f:00.0"


def test_machine_from_environment():
    subprocess.run([sys.executable, "-m", "cxlemu", "create", "m", "--topology", "biscuitos-a"], check=True,
                   capture_output=True)
    env = dict(os.environ, CXLEMU_MACHINE="m")
    p = tool("lspci", "-t", env=env)
    assert p.returncode == 0 and "[0000:0c]" in p.stdout


def test_bad_root_is_refused(tmp_path):
    p = tool("cxl", "--sysfs-root", str(tmp_path), "list")
    assert p.returncode != 0 and "neither a /sys tree" in p.stderr
