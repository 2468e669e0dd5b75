"""Our lspci prints exactly what pciutils' lspci prints for the same /sys."""

from __future__ import annotations

import pytest

from cxltest_support import boot, real_tools_available, render_machine, run, run_real

pytestmark = pytest.mark.conformance
why = real_tools_available("lspci")


@pytest.mark.skipif(why is not None, reason=why or "")
@pytest.mark.parametrize("preset", ["biscuitos-a", "biscuitos-b", "biscuitos-c", "cxl-test", "seed-003-window"])
@pytest.mark.parametrize("args", [("-tv",), ("-t",), (), ("-n",), ("-D",)])
def test_lspci_matches_pciutils(tmp_path, preset, args):
    b = boot(preset)
    rendered = render_machine(b, tmp_path / "r")
    real = run_real(rendered, "lspci", *args)
    assert real.returncode == 0, real.stderr
    rc, out, err = run(b, "lspci", *args)
    assert rc == 0
    assert out == real.stdout
