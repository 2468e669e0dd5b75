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
