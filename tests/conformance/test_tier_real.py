"""Our numastat and sysctl print exactly what Debian's numastat (numactl
2.0.16) and procps' sysctl print for the same /sys and /proc/sys, on a
tiered machine after a workload ran (so the counters are not all zero).

Not compared, because a rendered tree is regular files, not sysfs/procfs:
``sysctl -a`` and directory arguments (procps skips the first two readdir
entries as "." and "..", which a regular directory does not return first,
so the real tool walks up out of /proc/sys), write errors (the kernel's
EINVAL needs the kernel) and write-only knobs (root reads a 0200 regular
file; the kernel refuses)."""

from __future__ import annotations

import subprocess

import pytest

from cxltest_support import real_tools_available, render_machine, run, run_real
from cxlemu.sim.engine import run as run_workload
from cxlemu.userspace import workloads as W

from tier.support import tiered

pytestmark = pytest.mark.conformance
why = real_tools_available("numastat", "sysctl")

NUMASTAT_ARGS = [(), ("-n",), ("-m",), ("-c",), ("-z", "-m"), ("-s",), ("-s1", "-n"), ("-m", "-c", "-z"),
                 ("-n", "-m"), ("-v",), ("-V",), ("-x",), ("-p",), ("--help",), ("--nope",)]
SYSCTL_ARGS = [("-N", "vm.swappiness"), ("vm.nonexistent",), ("-e", "vm.nonexistent"), ("-q", "vm.nonexistent"),
               ("kernel/numa_balancing",), ("-b", "vm.swappiness"), ("-x",), ("--version",),
               ("-w", "vm.nonexistent=1"), ("-w", "vm.swappiness"), ("vm.swappiness=5",),
               ("-p", "/nonexistent.conf"), ("-n", "vm.min_free_kbytes", "kernel.numa_balancing")]


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    if why:
        pytest.skip(why)
    b = tiered("512M", "2G")
    run_workload(b.kernel, W.Gups(rss="700M", hot="100M", threads=1), policy="tpp", accesses=3_000_000)
    return b, render_machine(b, tmp_path_factory.mktemp("tier-real"))


@pytest.mark.parametrize("args", NUMASTAT_ARGS)
def test_numastat_matches_numactl(machine, args):
    b, rendered = machine
    real = run_real(rendered, "numastat", *args)
    rc, out, err = run(b, "numastat", *args)
    assert (rc, out, err) == (real.returncode, real.stdout, real.stderr)


def _real_sysctl(rendered: str, *argv: str) -> subprocess.CompletedProcess:
    script = 'mount --bind "$0/proc/sys" /proc/sys && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, rendered, "sysctl", *argv],
                          capture_output=True, text=True, timeout=120)


def test_sysctl_reads_every_key_as_procps_does(machine):
    b, rendered = machine
    rc, out, _ = run(b, "sysctl", "-a")
    assert rc == 0
    keys = [line.split(" = ")[0] for line in out.splitlines()]
    assert {"vm.min_free_kbytes", "kernel.numa_balancing", "kernel.numa_balancing_promote_rate_limit_MBps"} <= set(keys)
    real = _real_sysctl(rendered, *keys)
    assert real.returncode == 0
    assert real.stdout == out


@pytest.mark.parametrize("args", SYSCTL_ARGS)
def test_sysctl_matches_procps(machine, args):
    b, rendered = machine
    real = _real_sysctl(rendered, *args)
    rc, out, err = run(b, "sysctl", *args)
    assert (rc, out, err) == (real.returncode, real.stdout, real.stderr)
