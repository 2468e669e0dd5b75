"""End to end as a user types it: ``cxlemu run --damos`` (recipes and a damo
JSON file), ``--allocator smdk|memkind``, ``--compare`` with the
extension policies, ``--pace wall``, ``cxlemu scenario``, and bad input (a
clear error, exit 2, the machine unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxltest_support import cx
from cxltest_support import machine_digest as digest

DATA = Path(__file__).resolve().parents[1] / "data" / "damon"
SMALL = ["--set", "numa.0.memory=1G", "--set", "device.0.volatile=2G", "--set", "window.0.size=2G",
         "--set", "firmware_region.0.size=2G"]
MiB = 1 << 20




@pytest.fixture
def m():
    cx("create", "t", "--topology", "tiered", *SMALL, "--set", "boot.swap=1G")
    return "t"


def _vma(d, name):
    v = next(x for x in d["vmas"] if x["name"] == name)
    return {int(n): b for n, b in v["resident_by_node"].items()}


def test_run_damos_hot_cold(m):
    d = json.loads(cx("run", m, "hotcold", "--hot", "128M", "--cold", "128M", "--damos", "hot_cold",
                      "--duration", "2s", "--json").stdout)
    assert d["label"] == "damos:hot_cold"
    # the cold area was first-touched on the DRAM node; migrate_cold moved it
    assert _vma(d, "cold").get(1, 0) >= 0.98 * 128 * MiB
    assert _vma(d, "hot").get(0, 0) >= 0.98 * 128 * MiB
    kds = d["damos"]["kdamonds"]
    assert [k["schemes"][0]["action"] for k in kds] == ["migrate_cold", "migrate_hot"]
    assert kds[0]["schemes"][0]["sz_applied"] >= 0.98 * 128 * MiB
    assert d["vmstat"]["pgmigrate_success"] * 4096 >= 0.98 * 128 * MiB
    # the kdamonds are off after the run and the machine shows it
    assert cx("exec", m, "--", "cat", "/sys/kernel/mm/damon/admin/kdamonds/0/state").stdout == "off\n"
    # human output names the setup and the schemes
    out = cx("run", m, "hotcold", "--hot", "16M", "--cold", "16M", "--damos", "hot_cold",
             "--duration", "0.3s").stdout
    assert "DAMOS (hot_cold):" in out and "migrate_cold -> node 1" in out


def test_run_damos_from_damo_json(m):
    """A file written by the real ``damo args damon --format json`` (vaddr
    pageout of regions idle for 2 s) runs on the workload's process."""
    f = DATA / "damo_args_vaddr_pageout.json"
    d = json.loads(cx("run", m, "hotcold", "--hot", "32M", "--cold", "64M", "--damos", str(f),
                      "--duration", "4s", "--json").stdout)
    s = d["damos"]["kdamonds"][0]
    assert s["ops"] == "vaddr" and s["schemes"][0]["action"] == "pageout"
    assert s["schemes"][0]["sz_applied"] >= 32 * MiB
    assert d["vmstat"].get("pswpout", 0) * 4096 >= 32 * MiB
    cold = _vma(d, "cold")
    assert sum(cold.values()) <= 32 * MiB           # most of the idle area is in swap
    assert sum(_vma(d, "hot").values()) >= 0.98 * 32 * MiB


@pytest.mark.parametrize("args,msg", [
    (["--damos", "nosuch"], "is neither a recipe (hot_cold, mem_tier) nor a file"),
    (["--damos", "hot_cold", "--allocator", "smdk"], "give --damos or --allocator, not both"),
    (["--allocator", "memkind"], "--allocator memkind needs --kind KIND"),
    (["--allocator", "memkind", "--kind", "MEMKIND_NOPE"], "unknown memkind kind 'MEMKIND_NOPE'"),
    (["--kind", "MEMKIND_DAX_KMEM"], "--smdk-conf and --kind go with --allocator"),
    (["--compare", "default,damos:"], "damos: needs an argument"),
    (["--compare", "default,damos:nosuch"], "is neither a recipe"),
    (["--damos", "hot_cold", "--compare", "default,tpp"], "give extensions as policies"),
    (["--pace", "fast"], "invalid choice"),
])
def test_bad_arguments_change_nothing(m, args, msg):
    before = digest(m)
    p = cx("run", m, "hotcold", "--hot", "8M", "--cold", "8M", "--duration", "0.1s", *args, check=False)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert msg in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert digest(m) == before


@pytest.mark.parametrize("conf,msg,pools", [
    ("use_exmem:maybe,priority:exmem", "Invalid conf value: use_exmem:maybe", {"normal": 0, "exmem": 16 * MiB}),
    ("priority:exmem,exmem_size:99999999999g", "Out-of-range conf value: exmem_size:99999999999g",
     {"normal": 0, "exmem": 16 * MiB}),
    ("priority:exmem,use_exmem", "Conf string ends with key", {"normal": 0, "exmem": 16 * MiB}),
    ("priority=exmem", "Malformed conf string", {"normal": 16 * MiB, "exmem": 0}),
    ("priority:fast", None, {"normal": 16 * MiB, "exmem": 0}),       # SMDK: anything else is normal first
])
def test_bad_cxlmalloc_conf_is_smdks_message_and_its_defaults(m, conf, msg, pools):
    """libcxlmalloc does not refuse a bad CXLMALLOC_CONF: it prints its
    message on stderr and carries on with what it could parse."""
    p = cx("run", m, "hotcold", "--hot", "8M", "--cold", "8M", "--duration", "0.1s", "--json",
           "--allocator", "smdk", "--smdk-conf", conf)
    if msg:
        assert msg in p.stderr.splitlines(), p.stderr
    a = json.loads(p.stdout)["allocator"]["processes"][0]
    assert a["pools"] == pools


def test_bad_damo_json_files(m, tmp_path):
    before = digest(m)
    cases = {"notjson.json": "{kdamonds", "wrong.json": '{"x": 1}',
             "badvalue.json": json.dumps({"kdamonds": [{"contexts": [{"ops": "vaddr", "schemes": [
                 {"action": "stat", "access_pattern": {"sz_bytes": {"min": "ten", "max": "max"}}}]}]}]})}
    for name, text in cases.items():
        f = tmp_path / name
        f.write_text(text)
        p = cx("run", m, "hotcold", "--hot", "8M", "--cold", "8M", "--damos", str(f), check=False)
        assert p.returncode == 2 and p.stderr.startswith("cxlemu: run: --damos:"), p.stderr
        assert "Traceback" not in p.stderr
    # a scheme the kernel refuses (bad action) is the kernel's EINVAL, before anything runs
    f = tmp_path / "badaction.json"
    f.write_text(json.dumps([{"action": "teleport"}]))
    p = cx("run", m, "hotcold", "--hot", "8M", "--cold", "8M", "--damos", str(f), check=False)
    assert p.returncode == 2, p.stderr
    assert p.stderr == ("cxlemu: run: --damos: writing 'teleport' to /sys/kernel/mm/damon/admin/kdamonds/0/"
                        "contexts/0/schemes/0/action: Invalid argument\n")
    assert digest(m) == before


def test_compare_extension_policies(m):
    d = json.loads(cx("run", m, "hotcold", "--hot", "64M", "--cold", "64M", "--duration", "0.5s", "--json",
                      "--compare", "default,damos:hot_cold,smdk:use_exmem:true,priority:exmem,"
                                   "memkind:MEMKIND_DAX_KMEM,memkind:MEMKIND_REGULAR").stdout)
    runs = {r["label"]: r for r in d["runs"]}
    assert list(runs) == ["default", "damos:hot_cold", "smdk:use_exmem:true,priority:exmem",
                          "memkind:MEMKIND_DAX_KMEM", "memkind:MEMKIND_REGULAR"]
    assert "damos" in runs["damos:hot_cold"]
    smdk = runs["smdk:use_exmem:true,priority:exmem"]["allocator"]["processes"][0]
    assert smdk["pools"]["exmem"] == 128 * MiB and smdk["exmem_nodes"] == [1]
    # exmem first: the whole workload on the CXL node; DAX_KMEM likewise; REGULAR on DRAM
    for label, node in (("smdk:use_exmem:true,priority:exmem", 1), ("memkind:MEMKIND_DAX_KMEM", 1),
                        ("memkind:MEMKIND_REGULAR", 0)):
        placed = {}
        for v in runs[label]["vmas"]:
            for n, b in v["resident_by_node"].items():
                placed[int(n)] = placed.get(int(n), 0) + b
        assert placed.get(node, 0) == sum(placed.values()) == 128 * MiB, (label, placed)
    # the runs are copies: the machine itself ran nothing
    assert cx("exec", m, "--", "cat", "/sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds").stdout == "0\n"


def test_allocator_runs(m):
    d = json.loads(cx("run", m, "hotcold", "--hot", "64M", "--cold", "64M", "--duration", "0.3s", "--json",
                      "--allocator", "smdk", "--smdk-conf",
                      "use_exmem:true,priority:normal,normal_size:96,maxmemory_policy:remain").stdout)
    a = d["allocator"]["processes"][0]
    # normal first while within its 96 MB limit: the cold area (64M), then the hot
    # area does not fit: the priority flips to the exmem pool
    assert a["pools"] == {"normal": 64 * MiB, "exmem": 64 * MiB}
    assert a["flips"] == 1
    d = json.loads(cx("run", m, "hotcold", "--hot", "64M", "--cold", "64M", "--duration", "0.3s", "--json",
                      "--allocator", "memkind", "--kind", "MEMKIND_DAX_KMEM_INTERLEAVE").stdout)
    a = d["allocator"]["processes"][0]
    assert a["nodes"] == [1]


def test_pace_wall_keeps_simulated_time_at_wall_clock_pace(m):
    d = json.loads(cx("run", m, "hotcold", "--hot", "16M", "--cold", "16M", "--duration", "1.5s",
                      "--pace", "wall", "--json").stdout)
    assert d["sim_seconds"] == pytest.approx(1.5, abs=0.01)
    assert d["wall_seconds"] >= 1.4


def test_scenario_zswap():
    d = json.loads(cx("scenario", "zswap", "--json", "--duration", "1.5s").stdout)
    linux, fixed = d["runs"]
    assert linux["zswap_pool_node"] == "reclaimer" and fixed["zswap_pool_node"] == "page"
    # Linux: the CXL node's pages compressed into a DRAM pool; the fix keeps them on the CXL node
    assert linux["zswpout"] > 10_000
    assert linux["dram_taken_by_cxl_swap_bytes"] > 32 * MiB and linux["cxl_pool_bytes"] == 0
    assert fixed["dram_taken_by_cxl_swap_bytes"] == 0 and fixed["cxl_pool_bytes"] > 32 * MiB
    assert "reclaiming CPU's node" in d["summary"]
    p = cx("scenario", "zswap", "--duration", "0s", check=False)
    assert p.returncode == 2 and "cxlemu: scenario: --duration" in p.stderr


def test_scenario_aggregate():
    d = json.loads(cx("scenario", "aggregate", "--json", "--duration", "1s").stdout)
    one, wi, ilv = d["runs"]
    assert one["cxl_nodes"] == [1, 2] and ilv["cxl_nodes"] == [1]
    assert ilv["numa_nodes"] == one["numa_nodes"] - 1
    # weighted interleave uses both CXL nodes as one target, the interleaved region is one node
    assert set(wi["resident_by_node"]) == {"1", "2"}
    assert set(ilv["resident_by_node"]) == {"1"}
    assert wi["bandwidth_gbps"] > one["bandwidth_gbps"] * 1.2
    assert ilv["bandwidth_gbps"] > one["bandwidth_gbps"] * 1.2


def test_workload_file_smalloc_table(m, tmp_path):
    """SMDK's optimization path from a workload file: the named VMAs are
    s_malloc'ed with their memory type; the others are left alone."""
    f = tmp_path / "w.toml"
    f.write_text('[run]\nduration = "0.3s"\n'
                 '[[process]]\nworkload = "hotcold"\n[process.params]\nhot = "32M"\ncold = "48M"\n'
                 '[process.smalloc]\nhot = "normal"\ncold = { type = "exmem" }\n')
    d = json.loads(cx("run", m, "--workload", str(f), "--json").stdout)
    assert _vma(d, "hot") == {0: 32 * MiB}
    assert _vma(d, "cold") == {1: 48 * MiB}
    for text, msg in (('[[process]]\nworkload = "hotcold"\n[process.smalloc]\nhot = "fast"\n',
                       "smalloc.hot.type: expected normal (SMDK_MEM_NORMAL) or exmem (SMDK_MEM_EXMEM)"),
                      ('[[process]]\nworkload = "hotcold"\n[process.smalloc]\nhot = { type = "exmem", node = 1, '
                       'interleave = "1" }\n', "give node or interleave, not both")):
        f.write_text(text)
        p = cx("run", m, "--workload", str(f), check=False)
        assert p.returncode == 2 and msg in p.stderr, p.stderr
