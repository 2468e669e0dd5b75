"""Data flows through pass-through host bridges and switches (BiscuitOS A/B):
Linux leaves those decoders unprogrammed and the hardware forwards everything."""

from __future__ import annotations

import numpy as np
import pytest

from cxlemu.data.datapath import HpaSpace
from cxlemu.data.media import MediaStore
from cxltest_support import boot, create_region


@pytest.mark.parametrize("preset", ["biscuitos-a", "biscuitos-b"])
def test_bytes_reach_the_device_through_pass_through_ports(tmp_path, preset):
    b = boot(preset)
    create_region(b, "decoder0.0", ["mem0"], mode="pmem", gran=4096, size=512 << 20)
    k = b.kernel
    assert all(p.hdm is None for p in (k.cxl.find("port1"),) )        # the host bridge has no HDM decoders
    region = k.cxl.regions.all()[0]
    media = MediaStore(tmp_path)
    hs = HpaSpace(k.platform, media)
    data = np.random.default_rng(9).integers(0, 256, 3 << 20, dtype=np.uint8)
    hs.write(region.res.start + (64 << 20), data)
    dev = media.array(k.platform.devices[0])
    # 1-way: DPA = HPA - region start (the pmem partition starts at DPA 0 on this pmem-only device)
    assert np.array_equal(dev[64 << 20:(64 << 20) + data.size], data)
