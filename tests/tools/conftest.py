"""Fixtures of the tool tests."""

from __future__ import annotations

import pytest

from cxltest_support import boot


@pytest.fixture
def b():
    """A freshly booted cxl-test machine, the subject of the cxl command
    tests (a test module may define its own ``b``)."""
    return boot("cxl-test")
