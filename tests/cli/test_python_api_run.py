"""Machine.run (src/cxlemu/api.py): the notebook line of issue 9 end to end,
the same numbers as ``cxlemu run --json``, the run persisted on the machine,
running or not, and timeline.plot() through matplotlib."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import cxlemu
from cxlemu.userspace.workloads.gups import Gups

pytest.importorskip("matplotlib")


def _vmstat(m) -> dict[str, int]:
    return {k: int(v) for k, v in (ln.split() for ln in m.sysfs.read("/proc/vmstat").splitlines())}


def _same(d: dict) -> dict:
    d = dict(d)
    d.pop("wall_seconds")
    d.pop("machine")
    return d


def _cli_json(*argv: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "cxlemu", *argv, "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_the_notebook_line(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    from matplotlib.figure import Figure
    cxlemu.create("t", topology="tiered")
    m = cxlemu.open("t")
    before = _vmstat(m)
    r = m.run(cxlemu.workloads.Zipf(rss="64M", alpha=0.99), policy="tpp", accesses="1M")
    assert r.policy == "tpp" and r.accesses >= 1_000_000 and r.seed == 0
    assert {v["name"] for v in r.vmas} == {"kv-index", "kv-values"}
    assert len(r.timeline) == r.epochs > 0
    fig = r.timeline.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[1].get_ylabel() == "fast-tier hit ratio"
    # the run changed the machine as `cxlemu run` does: its faults stay in /proc/vmstat
    after = _vmstat(m)
    assert after["pgfault"] - before["pgfault"] >= (64 << 20) // 4096 // 2
    assert cxlemu.workloads.Zipf is cxlemu.workloads.get("kv")


@pytest.mark.parametrize("running", [False, True])
def test_same_numbers_as_the_command(running):
    for name in ("a", "b"):
        cxlemu.create(name, topology="tiered", exist_ok=True)
    m = cxlemu.open("a")
    wl = cxlemu.workloads.Gups(rss="96M", hot="16M", threads=2)
    if running:
        m.start()
    try:
        r = m.run(wl, policy="numa-balancing", accesses="1500K", seed=7)
    finally:
        m.stop()
    cli = _cli_json("run", "b", "gups", "--rss", "96M", "--hot", "16M", "--threads", "2",
                    "--policy", "numa-balancing", "--accesses", "1500K", "--seed", "7")
    assert _same(json.loads(r.to_json())) == _same(cli)
    assert r.machine == "a" and r.seed == 7
    # both machines hold the outcome afterwards
    assert _vmstat(m)["pgfault"] == _vmstat(cxlemu.open("b"))["pgfault"]


def test_compare_and_several_processes():
    m = cxlemu.create("c", topology="tiered")
    before = _vmstat(m)
    wls = [cxlemu.workloads.Gups(rss="32M", hot="4M"), cxlemu.workloads.Uniform(rss="16M")]
    rs = m.run(wls, compare=["default", "tpp"], accesses=500_000, seed=1)
    assert [r.label for r in rs] == ["default", "tpp"]
    assert {v["process"] for v in rs[0].vmas} == {"gups0", "uniform1"}
    assert _vmstat(m)["pgfault"] == before["pgfault"]      # --compare runs on copies


def test_own_workload_class_runs_here_on_a_stopped_machine():
    class Mine(Gups):
        pass
    m = cxlemu.create("o", topology="tiered")
    r = m.run(Mine(rss="32M", hot="4M"), accesses=300_000, policy="default")
    assert r.accesses >= 300_000 and r.vmas[0]["size"] == 32 << 20
    m.start()
    try:
        from cxlemu.machine.paths import MachineError
        with pytest.raises(MachineError, match=r"m\.stop\(\) first"):
            m.run(Mine(rss="32M"))
    finally:
        m.stop()


def test_bad_input_is_refused_and_changes_nothing():
    m = cxlemu.create("x", topology="tiered")
    before = _vmstat(m)
    with pytest.raises(cxlemu.CommandError) as e:
        m.run(cxlemu.workloads.Gups(rss="32M"), policy="fastest")
    assert "unknown policy 'fastest'" in e.value.stderr and e.value.returncode == 2
    with pytest.raises(cxlemu.CommandError, match="accesses"):
        m.run(cxlemu.workloads.Gups(rss="32M"), accesses="lots")
    with pytest.raises(ValueError, match="not both"):
        m.run(cxlemu.workloads.Gups(rss="32M"), accesses=10, duration="1s")
    with pytest.raises(cxlemu.workloads.WorkloadError, match="alpha"):
        cxlemu.workloads.Zipf(rss="8G", alpha=-1)
    assert _vmstat(m) == before


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch):
    m = cxlemu.create("p", topology="tiered")
    r = m.run(cxlemu.workloads.Uniform(rss="16M"), accesses=100_000)
    for mod in ("matplotlib", "matplotlib.pyplot", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(ImportError, match=r"cxlemu\[report\]"):
        r.timeline.plot()
