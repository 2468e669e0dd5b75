"""``cxlemu sysfs NAME render``: the progress bar and the cost at scale."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from cxltest_support import boot
from cxlemu.sysfs.backend import render


def test_render_reports_progress_per_device(tmp_path, monkeypatch):
    import contextlib
    from cxlemu.util import progress as progress_mod
    calls = []

    class Bar:
        def __init__(self):
            self.n = 0

        def advance(self, n=1):
            self.n += n

    @contextlib.contextmanager
    def fake(label, total=None, **kw):
        bar = Bar()
        calls.append((label, total, bar))
        yield bar

    b = boot("biscuitos-b")
    monkeypatch.setattr(progress_mod, "progress", fake)
    render(b, str(tmp_path))
    (label, total, bar), = calls
    assert label.startswith("rendering /sys")
    assert total is not None and total > 10
    assert bar.n == total              # one step per device directory of /sys/devices


def test_render_cli_draws_no_bar_when_piped(tmp_path):
    env = os.environ.copy()
    env["CXLEMU_HOME"] = str(tmp_path / "home")
    env.pop("CXLEMU_PROGRESS", None)
    subprocess.run([sys.executable, "-m", "cxlemu", "create", "b", "--topology", "biscuitos-b"],
                   check=True, capture_output=True, env=env)
    p = subprocess.run([sys.executable, "-m", "cxlemu", "sysfs", "b", "render", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stderr.startswith("rendered ") and "\x1b" not in p.stderr
    assert (tmp_path / "out" / "sys" / "bus" / "cxl" / "devices" / "mem0").is_symlink()


def test_render_skip_leaves_subtrees_out(tmp_path):
    b = boot("biscuitos-b")
    n_all = render(b, str(tmp_path / "all"))
    n_some = render(b, str(tmp_path / "some"), skip=lambda p: p.startswith("/proc") or "/decoder" in p)
    assert n_some < n_all
    assert not (tmp_path / "some" / "proc").exists()
    assert not (tmp_path / "some" / "sys" / "bus" / "cxl" / "devices" / "decoder0.0").exists()
    assert (tmp_path / "all" / "sys" / "bus" / "cxl" / "devices" / "decoder0.0").is_symlink()


@pytest.mark.slow
def test_large_fabric_render_costs_seconds_not_minutes(tmp_path):
    import shutil
    import tempfile
    b = boot("large-fabric")
    # into a tmpfs when there is one: what is measured is the render, not the disk's journal
    # (on a loaded disk file creation alone has cost 30 s of system CPU)
    out = tempfile.mkdtemp(dir="/dev/shm") if os.access("/dev/shm", os.W_OK) else str(tmp_path)
    try:
        t0 = time.process_time()          # CPU time (file creation included): independent of the load
        n = render(b, out)
        cpu = time.process_time() - t0
    finally:
        if out != str(tmp_path):
            shutil.rmtree(out, ignore_errors=True)
    assert n > 100_000
    assert cpu < 20.0, f"render of large-fabric took {cpu:.1f} s of CPU"
