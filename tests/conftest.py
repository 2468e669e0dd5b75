"""Suite-wide setup: every test gets a private $CXLEMU_HOME, and the shared
helpers in tests/cxltest_support.py are importable."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CXLEMU_HOME", str(tmp_path / "cxlemu-home"))


@pytest.fixture(autouse=True)
def _no_machine_process_outlives_its_test(tmp_path):
    """A machine process (`cxlemu start`) a test left running under its private
    $CXLEMU_HOME is killed when the test ends, whatever happened in the test."""
    yield
    import glob
    import signal
    home = tmp_path / "cxlemu-home"
    dirs = glob.glob(str(home / "machines" / "*")) + glob.glob(str(home / "racks" / "*" / "hosts" / "*"))
    if not dirs:
        return
    from cxlemu.machine.store import running_pid
    for d in dirs:
        pid = running_pid(d)
        if pid and pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
