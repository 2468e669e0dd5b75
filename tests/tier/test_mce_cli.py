"""End to end, as a user types it (issue 12): poison injected under a page of
the CXL node, a workload bound to that node touches every page, `cxlemu run`
reports the memory failure (pfn, task, SIGBUS), the run still exits 0, the
kernel counts the page (HardwareCorrupted, node memory_failure stats, the
ras:memory_failure_event trace record), and the bystander on node 0 runs on."""

from __future__ import annotations

import json

from cxlemu.machine.store import Store

from .test_cli import SMALL, cx

TOML = """
[[process]]
workload = "seqscan"
name = "scan"
membind = "1"
[process.params]
rss = "64M"

[[process]]
workload = "seqscan"
name = "bystander"
membind = "0"
[process.params]
rss = "16M"
"""


def test_cxlemu_run_consumes_poison_on_the_cxl_node(tmp_path):
    cx("create", "t", "--topology", "tiered", *SMALL)
    wl = tmp_path / "wl.toml"
    wl.write_text(TOML)
    # a clean run on an identical machine reports no memory failure
    cx("create", "c", "--topology", "tiered", *SMALL)
    clean = json.loads(cx("run", "c", "--workload", str(wl), "--accesses", "3M", "--seed", "3", "--json").stdout)
    assert "memory_failures" not in clean
    assert {x["comm"]: x["exit"] for x in clean["processes"]} == {"scan": "exited", "bystander": "exited"}
    # poison a line in the 17th page of node 1 (the workload's 17th page: it is first on node 1)
    cx("exec", "t", "--", "cxl", "inject-media-poison", "mem0", "-a", "0x10040")
    region = json.loads(cx("exec", "t", "--", "cxl", "list", "-L", "-r", "region0").stdout)[0]
    [err] = region["media_errors"]
    pfn = (region["resource"] + err["offset"]) >> 12
    with Store().open("t") as m:
        m.backend().write("/sys/kernel/tracing/events/ras/memory_failure_event/enable", "1")
    p = cx("run", "t", "--workload", str(wl), "--accesses", "3M", "--seed", "3", "--json")
    assert p.returncode == 0                       # the run completed; the workload was killed
    r = json.loads(p.stdout)
    [f] = r["memory_failures"]
    assert (f["pfn"], f["node"], f["comm"], f["result"], f["killed"]) == (pfn, 1, "scan", "Recovered", True)
    assert [(s["comm"], s["signal"], s["si_code"]) for s in f["signals"]] == [("scan", "SIGBUS", "BUS_MCEERR_AR")]
    procs = {x["comm"]: x for x in r["processes"]}
    assert procs["scan"]["exit"].startswith("SIGBUS")
    assert procs["bystander"]["exit"] == "exited" and procs["bystander"]["accesses"] > 0
    meminfo = cx("exec", "t", "--", "cat", "/proc/meminfo").stdout
    assert "HardwareCorrupted:     4 kB" in meminfo
    assert cx("exec", "t", "--", "cat", "/sys/devices/system/node/node1/memory_failure/recovered").stdout == "1\n"
    trace = cx("exec", "t", "--", "cat", "/sys/kernel/tracing/trace").stdout
    assert f"memory_failure_event: pfn {pfn:#x}: recovery action for dirty LRU page: Recovered" in trace
    assert f"Memory failure: {pfn:#x}: Sending SIGBUS to scan:" in cx("dmesg", "t").stdout
    # the text summary says it too
    text = cx("run", "t", "--workload", str(wl), "--accesses", "1M", "--seed", "4").stdout
    assert "memory failure" not in text            # the page is retired: nothing consumes it again
