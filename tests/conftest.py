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
