"""The ``interleave`` preset is a task policy: every process of the run that has
no policy of its own gets MPOL_WEIGHTED_INTERLEAVE over all memory nodes (as
``numactl --weighted-interleave=all`` would give it), so its pages are spread
over DRAM and CXL by the nodes' weights (1:1 unless weighted_interleave/nodeN says
otherwise), while ``default`` first-touches into DRAM."""

from __future__ import annotations

import json

from cxltest_support import cx


def _run(*args: str) -> dict:
    return json.loads(cx(*args).stdout)


def test_interleave_preset_spreads_pages_by_weight_and_default_does_not():
    cx("create", "t", "--topology", "tiered")
    d = _run("run", "t", "gups", "--rss", "256M", "--accesses", "200k", "--policy", "default", "--json")
    assert d["nodes"]["1"]["resident_bytes"] == 0
    il = _run("run", "t", "gups", "--rss", "256M", "--accesses", "200k", "--policy", "interleave", "--json")
    r0, r1 = il["nodes"]["0"]["resident_bytes"], il["nodes"]["1"]["resident_bytes"]
    assert r0 > 0 and r1 > 0 and abs(r0 - r1) <= 4096 * 2       # weights 1:1: page by page
    assert 0.45 < il["fast_tier_hit_ratio"] < 0.55
    # a weight of 3 for DRAM: three pages on node 0 for each on node 1
    cx("sysfs", "t", "write", "/sys/kernel/mm/mempolicy/weighted_interleave/node0", "3")
    w = _run("run", "t", "gups", "--rss", "256M", "--accesses", "200k", "--policy", "interleave", "--json")
    a0, a1 = w["nodes"]["0"]["resident_bytes"], w["nodes"]["1"]["resident_bytes"]
    assert abs(a0 - 3 * a1) <= 4096 * 4, (a0, a1)
