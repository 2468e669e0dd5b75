"""drivers/cxl/acpi.c: root decoders come from the binary CEDT; a malformed
CFMWS is skipped with the kernel's message and never fails the probe."""

from __future__ import annotations

import struct

from cxlemu.hw.acpi import cedt
from cxlemu.hw.platform import build_platform
from cxlemu.kernel.kernel import Kernel
from cxlemu.topology import presets


def boot_with_cedt(mutate) -> Kernel:
    p = build_platform(presets.load("cxl-test"))
    subs = cedt.decode_cedt(p.tables["CEDT"])
    p.tables["CEDT"] = cedt.encode_cedt(mutate(subs))
    p.firmware_boot()
    k = Kernel(p)
    k.boot()
    return k


def test_cxl_acpi_cfmws_verify_skips_a_misaligned_window():
    def bad_base(subs):
        out = []
        for s in subs:
            if isinstance(s, cedt.Cfmws) and s.base_hpa == 0xF050000000:
                s = cedt.Cfmws(s.base_hpa + 0x1000, s.window_size, s.eniw, s.interleave_arithmetic, s.hbig,
                               s.restrictions, s.qtg_id, s.targets)
            out.append(s)
        return out
    k = boot_with_cedt(bad_base)
    names = [d.name for d in k.cxl.root_decoders()]
    assert names == [f"decoder0.{i}" for i in range(5)]            # one window fewer, ids stay dense
    assert any("Failed to add decode range: [0xf050001000 - 0xf0d0000fff] (-22)" in m for m in k.dmesg)
    assert any("CFMWS Base HPA not 256MB aligned" in m for m in k.dmesg)
    assert "CXL Window 5" not in "".join(r.name for _, r in k.iomem.walk())


def test_chbs_with_wrong_length_is_ignored():
    def bad_chbs(subs):
        return [cedt.Chbs(s.uid, s.cxl_version, s.base, 0x1000) if isinstance(s, cedt.Chbs) and s.uid == 1 else s
                for s in subs]
    k = boot_with_cedt(bad_chbs)
    assert 1 not in k.cxl.root.dports                              # no CHBS -> no dport for HB1
    assert any("No CHBS found for Host Bridge (UID 1)" in m for m in k.dmesg)
    # windows targeting HB1 fail, the others stay
    assert len(k.cxl.root_decoders()) == 4


def test_cedt_checksum_is_valid():
    p = build_platform(presets.load("cxl-test"))
    data = p.tables["CEDT"]
    assert sum(data) % 256 == 0 and struct.unpack_from("<I", data, 4)[0] == len(data)
