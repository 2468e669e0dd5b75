"""numactl -H / --show (numactl 2.0.16 numactl.c hardware(), show(),
print_distances(); libnuma numa_node_size64, numa_node_to_cpus)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mm.support import MiB, boot, boot_text, daxctl, ram_region, tool, topo  # noqa: E402

from cxlemu.tools.numactl import available_line  # noqa: E402
from cxltest_support import run_real_many  # noqa: E402

GOLDEN_CXL_TEST_ONLINE = """\
available: 3 nodes (0-2)
node 0 cpus: 0 1
node 0 size: 3967 MB
node 0 free: 3959 MB
node 1 cpus: 2 3
node 1 size: 4032 MB
node 1 free: 4032 MB
node 2 cpus:
node 2 size: 512 MB
node 2 free: 512 MB
node distances:
node   0   1   2 
  0:  10  20  20 
  1:  20  10  20 
  2:  20  20  10 
"""


def test_numactl_hardware_golden_cxl_test_after_online():
    b = boot("cxl-test")
    assert daxctl(b, "online-memory", "dax0.0").rc == 0
    res = tool(b, "numactl", "-H")
    assert res.rc == 0 and res.err == ""
    assert res.out == GOLDEN_CXL_TEST_ONLINE


def test_numactl_available_line_ranges():
    assert available_line([0]) == "available: 1 nodes (0)\n"
    assert available_line([0, 1, 3]) == "available: 3 nodes (0-1,3)\n"
    assert available_line([0, 2, 3, 4]) == "available: 4 nodes (0,2-4)\n"
    assert available_line([0, 1, 2, 5, 6]) == "available: 5 nodes (0-2,5-6)\n"


def test_numactl_show_and_usage():
    b = boot("cxl-test")
    res = tool(b, "numactl", "--show")
    assert res.out == ("policy: default\npreferred node: current\nphyscpubind: 0 1 2 3 \ncpubind: 0 1 \n"
                       "nodebind: 0 1 \nmembind: 0 1 \npreferred: \n")
    res = tool(b, "numactl")
    assert res.rc == 1 and res.out == "" and res.err.startswith("usage: numactl [--all | -a]")
    res = tool(b, "numactl", "--bogus")
    assert res.rc == 1 and res.err.startswith("numactl: unrecognized option '--bogus'\nusage: numactl")
    res = tool(b, "numactl", "-x")
    assert res.err.startswith("numactl: invalid option -- 'x'\n")
    assert tool(b, "numactl", "-H", "-s").out.startswith("available:")


@pytest.mark.conformance
def test_real_numactl_hardware_matches():
    b = boot_text(topo(nodes=2))
    dev = ram_region(b, 512 * MiB)
    assert daxctl(b, "online-memory", dev).rc == 0
    argvs = (["-H"], ["--show"])
    for argv, real in zip(argvs, run_real_many(b, [["numactl", *a] for a in argvs])):
        ours = tool(b, "numactl", *argv)
        if argv == ["--show"]:
            # the real tool shows the policy of the process running it (the host's cpus)
            assert real.stdout.startswith("policy: default\npreferred node: current\n")
            continue
        assert (real.returncode, real.stdout) == (ours.rc, ours.out)


def test_cxlemu_exec_numactl_in_a_subprocess(tmp_path):
    import os
    import subprocess
    env = dict(os.environ, CXLEMU_HOME=str(tmp_path / "home"))
    run = lambda *a: subprocess.run([sys.executable, "-m", "cxlemu", *a], env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=120)
    assert run("create", "box", "--topology", "cxl-test").returncode == 0
    p = run("exec", "box", "--", "daxctl", "online-memory", "dax0.0")
    assert p.returncode == 0 and p.stderr == "onlined memory for 1 device\n"
    p = run("exec", "box", "--", "numactl", "-H")
    assert (p.returncode, p.stdout) == (0, GOLDEN_CXL_TEST_ONLINE)
