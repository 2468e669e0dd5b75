"""util/gcpause.py: the collector is off inside the block and as it was after,
and a machine's boot builds its graph with it off."""

from __future__ import annotations

import gc

import pytest

from cxlemu.util.gcpause import collector_paused


@pytest.mark.parametrize("enabled", [True, False])
def test_state_is_restored(enabled):
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with collector_paused():
            assert not gc.isenabled()
            with collector_paused():          # nested
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled() == enabled
        with pytest.raises(KeyError):
            with collector_paused():
                raise KeyError("x")
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_platform_build_and_boot_defer_collections():
    """Building the platform of a 256-device generated fabric and booting its
    kernel run no collection inside, only what became due meanwhile once the
    collector is back (at most one per generation; without the pause: tens)."""
    from cxlemu.hw.platform import build_platform
    from cxlemu.kernel.kernel import Kernel
    from cxlemu.topology.generate import Spec, generate
    from cxlemu.topology.schema import loads
    t = loads(generate(Spec(devices=256, switch_levels=3)))
    runs = []

    def cb(phase, info):
        if phase == "start":
            runs.append(info["generation"])
    gc.collect()                              # counts at 0: nothing due on entry
    gc.callbacks.append(cb)
    try:
        plat = build_platform(t)
        assert len(runs) <= 3, runs
        plat.firmware_boot()
        k = Kernel(plat)
        gc.callbacks.remove(cb)
        gc.collect()
        gc.callbacks.append(cb)
        runs.clear()
        k.boot()
        assert len(runs) <= 3, runs
    finally:
        gc.callbacks.remove(cb)
    assert k.cxl.memdevs and gc.isenabled()
