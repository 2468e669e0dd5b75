"""End to end, as a user types it: `cxlemu create --set`, `cxlemu workloads`,
`cxlemu run` (--json, --report, --compare, --workload, --trace), the tools
on the machine (numactl + workload, numastat, sysctl), `cxlemu trace`, and
bad input: a clear error in the tool's style and nothing changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cxltest_support import cx
from cxltest_support import machine_digest as state_digest

TRACE = Path(__file__).resolve().parents[1] / "data" / "traces" / "sort.trace"
SMALL = ["--set", "numa.0.memory=1G", "--set", "device.0.volatile=4G", "--set", "window.0.size=4G",
         "--set", "firmware_region.0.size=4G"]




def vmstat(name: str) -> dict[str, int]:
    out = cx("exec", name, "--", "cat", "/proc/vmstat").stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


@pytest.fixture
def machine():
    cx("create", "t", "--topology", "tiered", *SMALL)
    return "t"


def test_tiered_preset_and_set_overrides():
    out = cx("create", "big", "--topology", "tiered").stdout
    assert "auto-assembled region0" in out
    hw = cx("exec", "big", "--", "numactl", "--hardware").stdout
    assert "available: 2 nodes (0-1)" in hw
    assert "node 1 cpus:\n" in hw and "node 1 size: 65536 MB" in hw
    assert "node 0 cpus: 0 1" in hw
    # the CXL memory is onlined movable (kmem, firmware-committed ram region)
    assert "Movable" in cx("exec", "big", "--", "cat", "/proc/zoneinfo").stdout
    # --set works for every preset and names a bad key
    cx("create", "small", "--topology", "tiered", *SMALL)
    assert "node 0 size: 9" in cx("exec", "small", "--", "numactl", "--hardware").stdout
    p = cx("create", "bad", "--topology", "tiered", "--set", "numa.0.memorx=1G", check=False)
    assert p.returncode == 2 and "numa[0].memorx: unknown field" in p.stderr
    p = cx("create", "bad", "--topology", "tiered", "--set", "numa.0.memory=lots", check=False)
    assert p.returncode == 2 and "numa[0].memory" in p.stderr
    assert "bad" not in cx("ls").stdout.split()


def test_workloads_lists_the_generators():
    out = cx("workloads").stdout
    for name in ("gups", "kv", "seqscan", "uniform", "chase", "stream", "phases", "graph", "alloc", "trace"):
        assert f"{name}:" in out
    assert "--value-size" in out and "--alpha" in out
    js = json.loads(cx("workloads", "--json", "kv").stdout)
    assert js[0]["name"] == "kv" and {p["name"] for p in js[0]["parameters"]} >= {"keys", "alpha", "read_ratio"}
    p = cx("workloads", "nope", check=False)
    assert p.returncode == 2 and "unknown workload 'nope'" in p.stderr


def test_run_json_report_and_what_stays(machine, tmp_path):
    before = vmstat(machine)
    p = cx("run", machine, "gups", "--rss", "1500M", "--hot", "200M", "--accesses", "5M", "--policy", "tpp",
           "--seed", "7", "--json", "--report", str(tmp_path / "rep"))
    d = json.loads(p.stdout)
    for key in ("policy", "seed", "sim_seconds", "wall_seconds", "accesses", "latency_ns", "fast_tier_hit_ratio",
                "optimal_fast_tier_hit_ratio", "pages_promoted", "pages_demoted", "migrated_bytes", "nodes", "vmas"):
        assert key in d, key
    assert d["policy"] == "tpp" and d["seed"] == 7 and d["accesses"] >= 5_000_000
    assert set(d["latency_ns"]) == {"mean", "p50", "p99"}
    assert set(d["nodes"]) == {"0", "1"} and "resident_bytes" in d["nodes"]["0"]
    assert d["vmas"][0]["name"] == "gups" and d["vmas"][0]["size"] == 1500 << 20
    assert 0 < d["fast_tier_hit_ratio"] <= d["optimal_fast_tier_hit_ratio"] + 1e-9
    for f in ("report.md", "resident.png", "hit_ratio.png", "latency_cdf.png", "heatmap.png"):
        assert (tmp_path / "rep" / f).stat().st_size > 0, f
    assert "![" in (tmp_path / "rep" / "report.md").read_text()
    # the machine keeps the counters; the process is gone and its memory free again
    after = vmstat(machine)
    assert after["pgfault"] - before["pgfault"] == d["vmstat"]["pgfault"] > 0
    meminfo = cx("exec", machine, "--", "cat", "/proc/meminfo").stdout
    assert "AnonPages:             0 kB" in meminfo
    assert cx("exec", machine, "--", "sysctl", "-n", "kernel.numa_balancing").stdout == "2\n"
    # the human summary
    out = cx("run", machine, "uniform", "--rss", "64M", "--accesses", "1M").stdout
    assert "policy tpp:" in out and "fast-tier hit ratio" in out and "vma uniform:uniform" in out


def test_compare_runs_on_copies(machine):
    digest = state_digest(machine)
    p = cx("run", machine, "kv", "--keys", "1M", "--value-size", "1K", "--accesses", "4M",
           "--compare", "default,tpp,interleave")
    lines = p.stdout.splitlines()
    assert lines[0].split()[:2] == ["policy", "accesses"]
    assert [ln.split()[0] for ln in lines[1:]] == ["default", "tpp", "interleave"]
    js = json.loads(cx("run", machine, "kv", "--keys", "1M", "--accesses", "2M", "--compare", "default,tpp",
                       "--json").stdout)
    assert [r["policy"] for r in js["runs"]] == ["default", "tpp"]
    assert js["runs"][0]["seed"] == js["runs"][1]["seed"] == 0
    assert state_digest(machine) == digest


def test_workload_file_and_trace(machine, tmp_path):
    f = tmp_path / "w.toml"
    f.write_text('[run]\naccesses = "3M"\nseed = 2\npolicy = "demotion"\n'
                 '[[process]]\nworkload = "kv"\nname = "db"\nmembind = "0"\n[process.params]\nkeys = "100K"\n'
                 '[[process.mbind]]\nvma = "kv-values"\npolicy = "bind"\nnodes = "1"\n'
                 '[[process]]\nworkload = "seqscan"\nstart = "1ms"\n[process.params]\nrss = "64M"\n')
    d = json.loads(cx("run", machine, "--workload", str(f), "--json").stdout)
    assert d["policy"] == "demotion" and d["seed"] == 2
    by = {(v["process"], v["name"]): v["resident_by_node"] for v in d["vmas"]}
    assert set(by[("db", "kv-values")]) == {"1"} and set(by[("db", "kv-index")]) == {"0"}
    assert ("seqscan", "scan") in by
    d = json.loads(cx("run", machine, "--trace", str(TRACE), "--json").stdout)
    assert d["workload"][0]["workload"] == "trace" and d["accesses"] == 1_942_057
    info = json.loads(cx("trace", "info", str(TRACE)).stdout)
    assert info["command"].startswith("sort -n") and info["instructions"] == 5_308_070


def test_tools_on_the_machine(machine):
    p = cx("exec", machine, "--", "numactl", "--membind=1", "--", "workload", "kv", "--keys", "50K",
           "--accesses", "1M", "--json")
    d = json.loads(p.stdout)
    assert d["vmas"] and all(set(v["resident_by_node"]) == {"1"} for v in d["vmas"])
    assert d["fast_tier_hit_ratio"] == 0.0
    # the policy numactl set is what the program sees
    show = cx("exec", machine, "--", "numactl", "--preferred=1", "--", "numactl", "--show").stdout
    assert "policy: preferred" in show and "preferred node: 1" in show
    out = cx("exec", machine, "--", "numastat", "-c").stdout
    assert "Numa_Hit" in out and "Node 1" in out
    assert cx("exec", machine, "--", "sysctl", "-w", "vm.swappiness=10").stdout == "vm.swappiness = 10\n"
    assert cx("exec", machine, "--", "sysctl", "-n", "vm.swappiness").stdout == "10\n"
    assert "vm.min_free_kbytes = " in cx("exec", machine, "--", "sysctl", "-a").stdout
    wl = cx("exec", machine, "--", "workload", "--list").stdout
    assert "gups" in wl


BAD = [
    (("run", "t", "nosuch"), 2, "cxlemu: run: unknown workload 'nosuch' (known: "),
    (("run", "t", "gups", "--rss", "12Q"), 2, "cxlemu: run: gups: rss: not a size: '12Q'"),
    (("run", "t", "gups", "--bogus", "3"), 2, "gups has no parameter 'bogus'"),
    (("run", "t", "gups", "--policy", "bogus"), 2, "cxlemu: run: unknown policy 'bogus'"),
    (("run", "t", "gups", "--accesses", "-5"), 2, "cxlemu: run: --accesses: not a count: '-5'"),
    (("run", "t", "gups", "--duration", "3x"), 2, "cxlemu: run: --duration: not a duration: '3x'"),
    (("run", "t", "--trace", "/etc/passwd"), 2, "not a cxlemu trace (bad magic"),
    (("run", "t"), 2, "cxlemu: run: give one of WORKLOAD, --workload FILE.toml or --trace FILE"),
    (("run", "nomachine", "gups"), 1, "no machine named 'nomachine'"),
    (("exec", "t", "--", "sysctl", "-w", "kernel.numa_balancing_promote_rate_limit_MBps=-1"), 1,
     'sysctl: setting key "kernel.numa_balancing_promote_rate_limit_MBps": Invalid argument\n'),
    (("exec", "t", "--", "sysctl", "-w", "kernel.numa_balancing=7"), 1,
     'sysctl: setting key "kernel.numa_balancing": Invalid argument\n'),
    (("exec", "t", "--", "sysctl", "-w", "vm.swappiness=201"), 1,
     'sysctl: setting key "vm.swappiness": Invalid argument\n'),
    (("exec", "t", "--", "numactl", "--membind=5", "--", "workload", "gups"), 1,
     ("<5> is invalid\n", "libnuma: Warning: node argument 5 is out of range\n", "usage: numactl")),
    (("exec", "t", "--", "workload", "nosuch"), 2, "workload: unknown workload 'nosuch'"),
    (("exec", "t", "--", "workload", "gups", "--rss", "1X"), 2, "workload: gups: --rss: not a size: '1X'"),
    (("trace", "info", "/etc/passwd"), 1, "cxlemu: trace: not a cxlemu trace (bad magic"),
    (("exec", "t", "--", "workload", "gups", "--accesses", "0"), 2, "workload: --accesses: must be positive"),
    (("run", "t", "kv", "--keys", "0", "--rss", "0"), 2, "cxlemu: run: kv: rss: must hold at least one value"),
]


def test_bad_input_is_refused_and_changes_nothing(machine, tmp_path):
    digest = state_digest(machine)
    for argv, rc, msg in BAD:
        p = cx(*argv, check=False)
        assert p.returncode == rc, (argv, p.returncode, p.stderr)
        text = p.stderr if argv[3:4] != ("numactl",) else p.stdout + p.stderr    # numactl: printf, usage()
        for m in (msg if isinstance(msg, tuple) else (msg,)):
            assert m in text, (argv, p.stderr)
        assert "Traceback" not in p.stderr
    bad = tmp_path / "bad.toml"
    for text, msg in (('[[process]]\nworkload = "kv"\nmembind = "1"\ncpuset_mems = "0"\n',
                       "cxlemu: run: process kv: set_mempolicy: Invalid argument (no allowed memory node"),
                      ('[[process]]\nworkload = "kv"\nmembind = "3"\n',
                       "process[0].membind: node argument 3 is out of range (possible nodes: 0-1)"),
                      ('[[process]]\nworkload = "kv"\n[process.params]\nalpha = "x"\n', "process[0].params.alpha"),
                      ('[[process]]\nworkload = "gups"\nsart = "1s"\n', "process[0].sart: unknown field"),
                      ('[run]\nduration = "forever"\n', "run.duration"), ("not toml [", "bad.toml: ")):
        bad.write_text(text)
        p = cx("run", machine, "--workload", str(bad), check=False)
        assert p.returncode == 2 and msg in p.stderr, (text, p.stderr)
    trunc = tmp_path / "cut.trace"
    trunc.write_bytes(TRACE.read_bytes()[:-100])
    p = cx("run", machine, "--trace", str(trunc), check=False)
    assert p.returncode == 2 and "truncated trace" in p.stderr
    assert state_digest(machine) == digest


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed (apt-get install valgrind)")
def test_trace_record(tmp_path):
    out = tmp_path / "true.trace"
    p = cx("trace", "record", "-o", str(out), "--", "/bin/true")
    assert "records" in p.stderr and out.stat().st_size > 0
    info = json.loads(cx("trace", "info", str(out)).stdout)
    assert info["command"] == "/bin/true" and info["accesses"] > 1000
    p = cx("trace", "record", "-o", str(tmp_path / "x.trace"), "--", "/nonexistent/program", check=False)
    assert p.returncode == 1 and "cxlemu: trace record: " in p.stderr
    p = cx("trace", "record", "-o", str(tmp_path / "x.trace"), check=False)
    assert p.returncode == 2 and "nothing to run" in p.stderr
    p = cx("trace", "record", "-o", str(tmp_path / "no" / "x.trace"), "--", "/bin/true", check=False)
    assert p.returncode == 1 and p.stderr == f"cxlemu: trace record: {tmp_path / 'no' / 'x.trace'}: No such file or directory\n"
