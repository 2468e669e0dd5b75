"""The Python API (src/cxlemu/api.py): docs/python.md's cells run as written,
and the API gives the same answers whether or not the machine runs."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "python.md"


def cells() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_documentation_runs():
    code = cells()
    assert len(code) >= 6
    ns: dict = {"__name__": "__doc_python__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, cell in enumerate(code):
            try:
                exec(compile(cell, f"docs/python.md cell {i}", "exec"), ns)
            except BaseException as e:
                raise AssertionError(f"docs/python.md cell {i} failed: {e!r}\n{cell}") from e
    text = out.getvalue()
    assert "power failed and restored" in text and "rebooted" in text


def test_import_cxlemu_stays_light_until_the_api_is_used():
    code = ("import sys, cxlemu\n"
            "assert 'numpy' not in sys.modules and 'cxlemu.api' not in sys.modules\n"
            "cxlemu.create\n"
            "assert 'cxlemu.api' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_same_answers_running_or_not():
    import cxlemu
    m = cxlemu.create("api", topology="cxl-test")
    calls = [("cxl", "list", "-M"), ("cxl", "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-w", "2",
                                     "-g", "4096", "-t", "ram", "-s", "512M"),
             ("daxctl", "list"), ("numactl", "-H")]
    stopped = [m.run_tool(*c) for c in calls]
    sysfs = m.sysfs.read("/sys/bus/cxl/devices/region1/size")
    m.run_tool("cxl", "destroy-region", "-f", "region1")
    m.start()
    try:
        running = [m.run_tool(*c) for c in calls]
        assert running == stopped
        assert m.sysfs.read("/sys/bus/cxl/devices/region1/size") == sysfs
        with pytest.raises(cxlemu.ToolError) as e:
            m.run_tool("cxl", "create-region", "-d", "decoder9.9", "-m", "mem0")
        assert "no active memdevs" in e.value.stderr
    finally:
        m.stop()


def test_an_open_mapping_does_not_block_other_commands():
    import numpy as np

    import cxlemu
    m = cxlemu.create("pm", topology="biscuitos-b")
    m.run_tool("cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-s", "512M", "-t", "pmem")
    m.run_tool("ndctl", "create-namespace", "--mode=devdax")
    with m.dax("dax0.0") as buf:
        buf[:4] = np.frombuffer(b"CXL!", dtype=np.uint8)
        p = subprocess.run([sys.executable, "-m", "cxlemu", "exec", "pm", "--", "daxctl", "list"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0 and "dax0.0" in p.stdout
        m.start()                                   # even the machine process can take the machine
        assert m.run_tool("daxctl", "list")[0]["chardev"] == "dax0.0"
    with m.dax("dax0.0") as buf:
        assert bytes(buf[:4]) == b"CXL!"
    m.stop()
