"""The real damo (PyPI 3.4.3) and the real ``cxl monitor`` (Debian ndctl 76.1,
libtracefs) through ``cxlemu real``, unmodified, against the machine's
/sys/kernel/mm/damon and tracefs served by the FUSE mount (docs/real-tools.md).

``cxl monitor`` needs the machine running: the poison is injected by another
command while the tool watches, and its ``cxl_poison`` record must reach the
real tool through ``instances/cxl_monitor`` (mkdir over FUSE), the consuming
``trace_pipe_raw`` reads and ``poll`` on ``trace_pipe``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from cxltest_support import require_real_ns

DAMON = "/sys/kernel/mm/damon/admin/kdamonds"


def cx(*argv: str, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cxlemu", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env)


def ok(*argv: str, **kw) -> str:
    p = cx(*argv, **kw)
    assert p.returncode == 0, (argv, p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p.stdout


@pytest.mark.parametrize("running", [False, True])
def test_real_damo_start_report_stop(running, tmp_path):
    require_real_ns("damo")
    env = dict(os.environ, HOME=str(tmp_path))          # damo caches its feature probe in $HOME
    ok("create", "t", "--topology", "tiered")
    if running:
        ok("start", "t")
    try:
        ok("real", "t", "--", "damo", "start", "--ops", "paddr", env=env)
        assert ok("sysfs", "t", "read", f"{DAMON}/0/state").strip() == "on"
        assert ok("sysfs", "t", "read", f"{DAMON}/0/contexts/0/operations").strip() == "paddr"
        status = ok("real", "t", "--", "damo", "report", "damon", env=env)
        assert "state: on" in status and "ops: paddr" in status, status
        # the kdamond advances with simulated time: a run gives it something to see
        ok("run", "t", "gups", "--rss", "1G", "--hot", "256M", "--duration", "2s", "--policy", "default")
        rep = ok("real", "t", "--", "damo", "report", "access", "--raw_number", env=env)
        hz = [float(x) for x in re.findall(r"(?m)^\s*\d+\s+addr\s.*?\saccess\s+([\d.]+)", rep)]
        assert len(hz) > 1 and max(hz) > 0, rep              # split regions, some of them accessed
        ok("real", "t", "--", "damo", "stop", env=env)
        assert ok("sysfs", "t", "read", f"{DAMON}/0/state").strip() == "off"
    finally:
        if running:
            cx("stop", "t")


def test_real_cxl_monitor_sees_poison_injected_by_another_command():
    require_real_ns("cxl", "timeout")
    ok("create", "box", "--topology", "tiered")
    ok("start", "box")
    try:
        mon = subprocess.Popen([sys.executable, "-m", "cxlemu", "real", "box", "--", "timeout", "-s", "INT", "6",
                                "cxl", "monitor"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        inst = "/sys/kernel/tracing/instances/cxl_monitor"
        deadline = time.monotonic() + 30
        while cx("sysfs", "box", "read", f"{inst}/events/cxl/enable").returncode != 0:   # the tool set up
            assert time.monotonic() < deadline and mon.poll() is None, mon.communicate()
            time.sleep(0.2)
        time.sleep(0.5)
        ok("exec", "box", "--", "cxl", "inject-media-poison", "mem0", "-a", "0x1000")
        out, err = mon.communicate(timeout=60)
        events = [json.loads(x) for x in (out + err).splitlines() if x.startswith("{")]
        poison = [e for e in events if e["event"] == "cxl_poison"]
        assert poison, (out, err)
        assert poison[0]["memdev"] == "mem0" and poison[0]["dpa"] == 0x1000 and poison[0]["dpa_length"] == 64
        assert poison[0]["region"] == "region0" and poison[0]["hpa"] > 0
        # the instance the real tool made over FUSE is the model's
        assert "cxl_monitor" in ok("sysfs", "box", "ls", "/sys/kernel/tracing/instances").split()
    finally:
        cx("stop", "box")
