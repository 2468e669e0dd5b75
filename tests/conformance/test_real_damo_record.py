"""The real damo records and reports a live run (issue 10's acceptance): with
the machine running and a workload advancing simulated time at wall-clock pace
(`cxlemu run --pace wall`), PyPI's damo 3.4.3 runs `record --snapshot` through
`cxlemu real` (access snapshots read from DAMON's sysfs: tried regions), and
`report access`, `report wss` and `report heatmap` (a PNG through gnuplot) read
the record.  The hot set of the workload is what the record shows hot."""

from __future__ import annotations

import re
import shutil
import subprocess

from cxltest_support import CXLEMU, cx, need_real, require_real_ns


def test_real_damo_records_a_live_run_and_reports_it(tmp_path):
    require_real_ns("damo", "perf")         # damo's record refuses to start without perf (or trace-cmd)
    cx("create", "t", "--topology", "tiered")
    cx("start", "t")
    run = subprocess.Popen(CXLEMU + ["run", "t", "gups", "--rss", "1G", "--hot", "128M", "--duration", "10s",
                                 "--pace", "wall"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        rec = tmp_path / "damon.data"
        p = cx("real", "-q", "t", "--", "damo", "record", "--snapshot", "1", "4", "--ops", "paddr",
               "-o", str(rec), check=False, timeout=120)
        assert p.returncode == 0, p.stderr
        assert rec.stat().st_size > 0
        damo = shutil.which("damo")
        acc = subprocess.run([damo, "report", "access", "-i", str(rec)], capture_output=True, text=True, timeout=60)
        assert acc.returncode == 0, acc.stderr
        rows = re.findall(r"size ([\d.]+ [KMG]iB)\s+access (\d+) hz", acc.stdout)
        assert rows and any(int(hz) > 0 for _, hz in rows), acc.stdout      # the hot set is seen accessed
        assert any(int(hz) == 0 for _, hz in rows)                          # and the rest of memory is not
        wss = subprocess.run([damo, "report", "wss", "-i", str(rec), "--exclude_samples", "0"],
                             capture_output=True, text=True, timeout=60)
        m = re.search(r"# avr:\s+([\d.]+) (MiB|GiB)", wss.stdout)
        assert wss.returncode == 0 and m, wss.stdout + wss.stderr
        avr = float(m.group(1)) * (1024 if m.group(2) == "GiB" else 1)
        # at least half the hot set; at most the machine's 80 GiB: while DAMON's regions are still
        # coarse (the first aggregations of paddr), a region holding the hot set counts whole
        assert 64 <= avr <= 80 * 1024
        if shutil.which("gnuplot") is None:
            need_real("gnuplot is not installed (apt-get install gnuplot-nox): damo's heatmap PNG")
        png = tmp_path / "heat.png"
        hm = subprocess.run([damo, "report", "heatmap", "-i", str(rec), "--output", str(png)],
                            capture_output=True, text=True, timeout=60)
        assert hm.returncode == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", hm.stderr
    finally:
        run.wait(timeout=120)
        cx("stop", "t", check=False)
    assert run.returncode == 0, run.stderr
