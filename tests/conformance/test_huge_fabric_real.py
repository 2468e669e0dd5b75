"""``cxl list -M`` of the 16 384-device ``huge-fabric`` preset against the REAL
Debian ``cxl`` (76.1): the listing of every memdev agrees with the C tool.

The tree is rendered without the decoder directories (``cxl list -M``
reads no decoder: libcxl scans them only when a decoder is asked for), into
a tmpfs when one is writable, which keeps the render to a few seconds on an
idle CI machine.  Ours runs on the live kernel (kernfs order), so arrays are
compared sorted; keys that v76.1 does not print are dropped from ours.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from cxltest_support import _UNSHARE_SCRIPT, boot, require_real_tools, sorted_arrays
from cxlemu.sysfs.backend import render
from cxlemu.tools.runner import run_tool

pytestmark = [pytest.mark.conformance, pytest.mark.slow]

V81_ONLY_KEYS = {"parent_dport", "decoders_committed", "qos_class", "pmem_qos_class", "ram_qos_class",
                 "type", "firmware_version", "qos_class_mismatch", "daxregion", "firmware", "media_errors"}
_DECODER = re.compile(r"/decoder\d+\.\d+$")


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in V81_ONLY_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def test_huge_fabric_cxl_list_memdevs_match_the_real_tool():
    require_real_tools("/usr/bin/cxl")
    t0 = time.perf_counter()
    b = boot("huge-fabric")
    assert len(b.kernel.cxl.memdevs) == 16384
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    out = tempfile.mkdtemp(prefix="cxlemu-huge-", dir=base)
    try:
        render(b, out, skip=lambda p: _DECODER.search(p) is not None)
        # run_real() with a longer timeout: libcxl's own scans grow faster than linearly
        real = subprocess.run(["unshare", "-m", "bash", "-c", _UNSHARE_SCRIPT, out, "files",
                               "/usr/bin/cxl", "list", "-M"], capture_output=True, text=True, timeout=1200)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert real.returncode == 0, real.stderr
    o, e = io.StringIO(), io.StringIO()
    rc = run_tool("cxl", ["list", "-M"], b, stdout=o, stderr=e, isatty=False)
    assert rc == 0, e.getvalue()
    theirs, ours = json.loads(real.stdout), _strip(json.loads(o.getvalue()))
    assert len(theirs) == len(ours) == 16384
    assert sorted_arrays(ours) == sorted_arrays(theirs)
    assert time.perf_counter() - t0 < 1800
