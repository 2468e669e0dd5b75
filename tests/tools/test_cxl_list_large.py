"""``cxl list -M`` on the large-fabric preset (1024 memdevs, ~5500 objects
on the cxl bus) must stay interactive: each attribute is read once per
object and /sys/bus/cxl/devices links are resolved once."""

from __future__ import annotations

import io
import json
import time

from cxltest_support import boot
from cxlemu.tools.runner import run_tool


def test_list_memdevs_large_fabric_is_fast(record_property):
    b = boot("large-fabric")
    out, err = io.StringIO(), io.StringIO()
    t0 = time.process_time()        # CPU time: the figure must not depend on the machine's load
    rc = run_tool("cxl", ["list", "-M"], b, stdout=out, stderr=err, isatty=False)
    elapsed = time.process_time() - t0
    record_property("cxl_list_M_seconds", round(elapsed, 2))
    print(f"cxl list -M on large-fabric: {elapsed:.2f} s")
    assert rc == 0 and err.getvalue() == ""
    mems = json.loads(out.getvalue())
    assert len(mems) == 1024
    assert sorted(int(m["memdev"][3:]) for m in mems) == list(range(1024))
    assert elapsed < 10.0
