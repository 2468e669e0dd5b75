"""Memory block size and kmem alignment (arch/x86/mm/init_64.c
probe_memory_block_size, drivers/acpi/numa/srat.c acpi_parse_cfmws,
drivers/dax/kmem.c dax_kmem_range)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.kernel.mm.blocksize import (Advice, cfmws_advice, cfmws_alignment, kmem_range,
                                        probe_memory_block_size, stranded, valid_block_size)

from .support import GiB, MiB, boot, boot_text, daxctl, topo

K69, K614, K54 = (6, 9), (6, 14), (5, 4)


def test_probe_memory_block_size_small_boot_memory_uses_128m():
    assert probe_memory_block_size(63 * GiB, hypervisor=False, kernel=K69) == 128 * MiB
    assert probe_memory_block_size(8 * GiB, hypervisor=True, kernel=K614, advice=1 * GiB) == 128 * MiB


def test_probe_memory_block_size_bare_metal_takes_2g():
    assert probe_memory_block_size(258 * GiB, hypervisor=False, kernel=K69) == 2 * GiB
    assert probe_memory_block_size(65 * GiB, hypervisor=False, kernel=K69) == 2 * GiB


def test_probe_memory_block_size_vm_halves_until_it_divides_boot_end():
    assert probe_memory_block_size(258 * GiB, hypervisor=True, kernel=K69) == 2 * GiB
    assert probe_memory_block_size(65 * GiB, hypervisor=True, kernel=K69) == 1 * GiB
    assert probe_memory_block_size(64 * GiB + 256 * MiB, hypervisor=True, kernel=K69) == 256 * MiB
    assert probe_memory_block_size(64 * GiB + 64 * MiB, hypervisor=True, kernel=K69) == 128 * MiB


def test_probe_memory_block_size_before_v5_8_bare_metal_also_halves():
    assert probe_memory_block_size(65 * GiB, hypervisor=False, kernel=K54) == 1 * GiB


def test_probe_memory_block_size_explicit_size_wins():
    assert probe_memory_block_size(8 * GiB, hypervisor=True, kernel=K69, explicit=1 * GiB) == 1 * GiB


def test_probe_memory_block_size_cfmws_advice_from_6_14_on_bare_metal():
    assert probe_memory_block_size(258 * GiB, hypervisor=False, kernel=K614, advice=256 * MiB) == 256 * MiB
    assert probe_memory_block_size(258 * GiB, hypervisor=False, kernel=K69, advice=256 * MiB) == 2 * GiB
    # clamped to [128M, 2G], then halved until it divides the end of boot memory
    assert probe_memory_block_size(258 * GiB, hypervisor=False, kernel=K614, advice=64 * GiB) == 2 * GiB
    assert probe_memory_block_size(65 * GiB, hypervisor=False, kernel=K614, advice=2 * GiB) == 1 * GiB


def test_acpi_parse_cfmws_alignment_is_lowest_set_bit_of_base_or_end():
    assert cfmws_alignment(0xC050000000, 0x3CA0000000) == 256 * MiB
    assert cfmws_alignment(0x1000000000, 0x1000000000) == 64 * GiB
    adv = cfmws_advice([(0x1000000000, 0x1000000000), (0xC050000000, 0x3CA0000000)])
    assert adv == Advice(256 * MiB, ())
    bug = cfmws_advice([(0x8000000, 0x8000000)])            # 128 MiB aligned: BIOS bug, no advice
    assert bug.size is None and bug.bios_bugs == ((0x8000000, 0x8000000),)


def test_dax_kmem_range_seed_003_window_loses_768m_and_1792m():
    kr = kmem_range(0xC050000000, 0xC050000000 + 0x3CA0000000 - 1, 2 * GiB)
    assert (kr.aligned_start, kr.aligned_end) == (0xC080000000, 0xFC7FFFFFFF)
    assert kr.lost_head == 768 * MiB and kr.lost_tail == 1792 * MiB and kr.lost == 2560 * MiB
    assert kr.added == 0x3CA0000000 - 2560 * MiB


def test_dax_kmem_range_too_small_after_alignment():
    kr = kmem_range(0x10000000, 0x10000000 + 256 * MiB - 1, 2 * GiB)
    assert not kr.usable and kr.added == 0 and kr.lost == 256 * MiB


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 1 << 20).map(lambda x: x * 256 * MiB), size=st.integers(1, 64).map(lambda x: x * 256 * MiB),
       shift=st.integers(27, 31))
def test_kmem_range_properties(start, size, shift):
    bs = 1 << shift
    kr = kmem_range(start, start + size - 1, bs)
    assert kr.added + kr.lost == size
    if kr.usable:
        assert kr.aligned_start % bs == 0 and (kr.aligned_end + 1) % bs == 0
        assert start <= kr.aligned_start and kr.aligned_end <= start + size - 1
        assert kr.lost_head < bs and kr.lost_tail < bs
    added, lost = stranded([(start, start + size - 1)], bs)
    assert (added, lost) == (kr.added, kr.lost)


def test_valid_block_size():
    assert valid_block_size(128 * MiB) and valid_block_size(2 * GiB)
    assert not valid_block_size(64 * MiB) and not valid_block_size(384 * MiB)


def test_seed_003_window_preset_states_its_stranded_capacity():
    b = boot("seed-003-window")
    k = b.kernel
    assert b.read("/sys/devices/system/memory/block_size_bytes") == "80000000\n"
    assert "x86/mm: Memory block size: 2048MB" in k.dmesg
    assert any("dax0.0: cxlemu: 2.50 GiB (0xa0000000 bytes) of 242.50 GiB stranded by 2.00 GiB" in line
               for line in k.dmesg)
    res = daxctl(b, "reconfigure-device", "--mode=system-ram", "dax0.0")
    assert res.rc == 0, res.err
    from cxlemu.tools.lsmem import lsmem
    text = lsmem(b)
    assert "dax0.0: 242.5G dax device, 240G hot-added, 2.5G (0xa0000000 bytes) stranded by 2G block alignment" in text
    assert "0x000000c080000000-0x000000fc7fffffff  240G online       yes 385-504    1 Movable\n" in text


def test_seed_003_window_with_6_14_advice_strands_nothing():
    text = open(__import__("cxlemu.topology.presets", fromlist=["x"]).__file__.replace(
        "presets.py", "builtin/seed-003-window.toml")).read().replace('kernel = "6.9"', 'kernel = "6.14"')
    b = boot_text(text)
    assert b.kernel.mm.block_size == 256 * MiB
    d = b.kernel.dax.find("dax0.0")
    assert d.driver.name == "kmem" and d.driver_data.lost == 0


def test_kmem_rejects_dax_region_without_any_memory_after_alignment():
    b = boot_text(topo(hypervisor=False, dram="64G", nodes=1, dev_size="1G", devices=1, window="4G"))
    assert b.kernel.mm.block_size == 2 * GiB
    from .support import ram_region
    dev = ram_region(b, 256 * MiB)
    d = b.kernel.dax.find(dev)
    assert d.driver is None                      # kmem probe failed, device left unbound
    assert f"{dev}: rejecting DAX region without any memory after alignment" in b.kernel.dmesg
    assert f"{dev}: mapping0: {d.ranges[0].start:#x}-{d.ranges[0].end:#x} too small after alignment" in b.kernel.dmesg
    try:
        b.write("/sys/bus/dax/drivers/kmem/bind", dev + "\0")
        raise AssertionError("bind succeeded")
    except OSError as e:
        assert e.errno == 22
    res = daxctl(b, "reconfigure-device", "-m", "system-ram", dev)
    assert res.rc == 256 - 22
    assert res.err.endswith(f"libdaxctl: daxctl_dev_enable: {dev}: failed to enable\n"
                            "error reconfiguring devices: Invalid argument\nreconfigured 0 devices\n")
