"""The label commands' data files (cxlemu.tools.common.labelfiles), shared by
cxl (cxl/memdev.c) and ndctl (ndctl/dimm.c): an -o/-i file that cannot be
opened stops the command before any memdev is touched."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nvdimm"))

from cxltest_support import cxl  # noqa: E402
from pmem_support import backend, tool  # noqa: E402

from cxlemu.tools.common.labelfiles import TextBytes, open_label_files  # noqa: E402


def test_cxl_label_files_that_cannot_be_opened(b, tmp_path):
    out = tmp_path / "no" / "such" / "dir"
    assert cxl(b, "read-labels", "mem0", "-o", str(out)) == (
        1, "", f"cxl memdev: memdev_action: failed to open: {out}: (No such file or directory)\n")
    missing = tmp_path / "missing.bin"
    assert cxl(b, "write-labels", "mem0", "-i", str(missing)) == (
        1, "", f"cxl memdev: memdev_action: failed to open: {missing}: (No such file or directory)\n")


def test_ndctl_label_files_that_cannot_be_opened(tmp_path):
    nd = backend(tmp_path)
    out = tmp_path / "no" / "such" / "dir"
    assert tool(nd, "ndctl", "read-labels", "nmem0", "-o", str(out)) == (
        1, "", f"failed to open: {out}: (No such file or directory)\nread 0 nmem\n")
    missing = tmp_path / "missing.bin"
    assert tool(nd, "ndctl", "write-labels", "nmem0", "-i", str(missing)) == (
        1, "", f"failed to open: {missing}: (No such file or directory)\nwrote 0 nmem\n")


def test_open_label_files_defaults_and_other_kinds(tmp_path):
    import io
    text = io.StringIO()
    state: dict = {}
    assert open_label_files("read", {}, text, state, lambda m: None) == 0
    assert isinstance(state["out"], TextBytes)
    state["out"].write(b"\x00A\xff")
    assert text.getvalue() == "\x00A\xff"                 # byte for character (latin-1)
    state = {}
    assert open_label_files("zero", {"outfile": str(tmp_path / "x")}, text, state, lambda m: None) == 0
    assert state == {} and not (tmp_path / "x").exists()
    state = {}
    assert open_label_files("read", {"outfile": str(tmp_path / "y")}, text, state, lambda m: None) == 0
    state["out"].close()
    assert (tmp_path / "y").exists()
