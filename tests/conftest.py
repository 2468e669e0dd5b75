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
    import time
    from cxlemu.machine.store import running_pid
    for d in dirs:
        pid = running_pid(d)
        if pid and pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}/status") and \
                    "zombie" not in open(f"/proc/{pid}/status").read():
                time.sleep(0.02)
            # its FUSE mounts (cxlemu real keeps one) are stale now: detach them,
            # so that nothing of the test stays mounted under its directory
            from cxlemu.machine.mount import clean_stale_mounts
            clean_stale_mounts(d)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say how many tests against the real tools were skipped, and why
    (tests/cxltest_support.py need_real: in CI they fail instead)."""
    from cxltest_support import REAL_SKIP_TAG
    reasons: dict[str, int] = {}
    for rep in terminalreporter.stats.get("skipped", []):
        lr = getattr(rep, "longrepr", None)
        msg = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
        if REAL_SKIP_TAG in msg:
            why = msg.split(REAL_SKIP_TAG, 1)[1].strip()
            reasons[why] = reasons.get(why, 0) + 1
    if reasons:
        n = sum(reasons.values())
        detail = "; ".join(f"{c}: {w}" for w, c in sorted(reasons.items()))
        terminalreporter.write_line(f"real tools/FUSE: {n} test(s) skipped ({detail}); "
                                    f"CI (CXLEMU_REQUIRE_REAL=1) fails them instead", yellow=True)


# ---- the compiled interposer / store trap (src/cxlemu/preload) ---------------------------------
# Tests use the installed build when it is up to date, else compile one for
# the session (gcc is a test requirement, see .ci/run) and point
# CXLEMU_PRELOAD_LIB at it, so that subprocesses use it too.

_PRELOAD_TMP: list[str] = []


def pytest_configure(config):
    import tempfile

    from cxlemu import preload
    if os.environ.get(preload.ENV) is not None:
        return
    lib = preload.library_path()
    if lib and os.path.getmtime(lib) >= preload.sources_mtime():
        return
    if preload.compiler() is None:
        return
    d = tempfile.mkdtemp(prefix="cxlemu-preload-")
    _PRELOAD_TMP.append(d)
    try:
        os.environ[preload.ENV] = str(preload.build(d))
    except RuntimeError as e:
        config.issue_config_time_warning(pytest.PytestWarning(f"interposer not built: {e}"), stacklevel=2)


def pytest_unconfigure(config):
    import shutil
    for d in _PRELOAD_TMP:
        shutil.rmtree(d, ignore_errors=True)
