"""The devdax/fsdax info block codec and nd_pfn_init sizing (pfn_devs.c)."""

import errno
import uuid

import pytest
from hypothesis import given, settings, strategies as st

from cxlemu.kernel.nvdimm import infoblock as ib

MiB = 1 << 20
NS = uuid.UUID("07a7a360-8c72-4dd4-a4e5-1754c95dcdfc")
PFN = uuid.UUID("b7645ff0-b9f6-4f43-b8cb-28b1f0adf6cc")


def test_seed_512m_devdax_is_502m():
    """8K + 64 * 131070 struct pages rounds up to 10 MiB at 2 MiB alignment."""
    lay = ib.compute_layout(0x2_9000_0000, 512 * MiB, ib.SZ_2M, ib.PFN_MODE_PMEM)
    assert lay.dataoff == 10 * MiB
    assert lay.npfns == 128512
    assert lay.data_size == 502 * MiB
    assert lay.end_trunc == 0


def test_map_mem_reserves_only_the_info_area():
    lay = ib.compute_layout(0, 512 * MiB, ib.SZ_2M, ib.PFN_MODE_RAM)
    assert lay.dataoff == 2 * MiB
    assert lay.data_size == 510 * MiB


def test_1g_alignment_and_end_truncation():
    lay = ib.compute_layout(0, 3 * 1024 * MiB + 4 * MiB, ib.SZ_1G, ib.PFN_MODE_PMEM)
    assert lay.dataoff == 1024 * MiB
    assert lay.end_trunc == 4 * MiB
    assert lay.data_size == 2 * 1024 * MiB


@pytest.mark.parametrize("size,align,code", [(8192, ib.SZ_2M, errno.ENXIO),
                                              (4 * MiB, ib.SZ_1G, errno.ENXIO)])
def test_too_small(size, align, code):
    with pytest.raises(OSError) as e:
        ib.compute_layout(0, size, align, ib.PFN_MODE_PMEM)
    assert e.value.errno == code


def test_misaligned_start_is_einval():
    with pytest.raises(OSError) as e:
        ib.compute_layout(4096, 64 * MiB, ib.SZ_2M, ib.PFN_MODE_PMEM)
    assert e.value.errno == errno.EINVAL


def test_layout_of_block_is_4096_bytes_with_checksum_at_0xff8():
    sb = ib.make_superblock(ib.DAX_SIG, PFN, NS, 0, 512 * MiB, ib.SZ_2M, ib.PFN_MODE_PMEM)
    raw = sb.encode()
    assert len(raw) == 4096
    assert raw[:16] == b"NVDIMM_DAX_INFO\0"
    assert raw[0x10:0x20] == PFN.bytes and raw[0x20:0x30] == NS.bytes
    assert int.from_bytes(raw[0x38:0x40], "little") == 10 * MiB
    assert int.from_bytes(raw[0x48:0x4c], "little") == ib.PFN_MODE_PMEM
    assert ib.checksum_ok(raw)
    assert ib.validate(raw, ib.DAX_SIG, NS, 0, 512 * MiB) == ib.PfnSuperblock.decode(raw)


@settings(max_examples=100, deadline=None)
@given(size_mib=st.integers(6, 4096), align=st.sampled_from(ib.SUPPORTED_ALIGNMENTS),
       mode=st.sampled_from([ib.PFN_MODE_RAM, ib.PFN_MODE_PMEM]), start_2m=st.integers(0, 1 << 20))
def test_roundtrip_and_validate(size_mib, align, mode, start_2m):
    start, size = start_2m * ib.SZ_2M, size_mib * MiB
    try:
        sb = ib.make_superblock(ib.PFN_SIG, PFN, NS, start, size, align, mode)
    except OSError:
        return
    raw = sb.encode()
    dec = ib.PfnSuperblock.decode(raw)
    assert dec.encode() == raw
    assert (start + dec.dataoff) % max(align, ib.SZ_2M) == 0
    assert dec.dataoff + dec.data_size + dec.end_trunc <= size
    assert ib.validate(raw, ib.PFN_SIG, NS, start, size).dataoff == sb.dataoff


def _block():
    return bytearray(ib.make_superblock(ib.DAX_SIG, PFN, NS, 0, 512 * MiB, ib.SZ_2M,
                                        ib.PFN_MODE_PMEM).encode())


@pytest.mark.parametrize("mutate,code", [
    (lambda b: b.__setitem__(slice(0, 16), bytes(16)), errno.ENODEV),           # no signature
    (lambda b: b.__setitem__(0x40, b[0x40] ^ 1), errno.ENODEV),                 # checksum
])
def test_validate_rejects(mutate, code):
    raw = _block()
    mutate(raw)
    with pytest.raises(OSError) as e:
        ib.validate(raw, ib.DAX_SIG, NS, 0, 512 * MiB)
    assert e.value.errno == code


def test_validate_other_namespace_and_other_signature():
    raw = _block()
    with pytest.raises(OSError) as e:
        ib.validate(raw, ib.DAX_SIG, uuid.uuid4(), 0, 512 * MiB)
    assert e.value.errno == errno.ENODEV
    with pytest.raises(OSError) as e:
        ib.validate(raw, ib.PFN_SIG, NS, 0, 512 * MiB)
    assert e.value.errno == errno.ENODEV


def test_validate_unsupported_alignment():
    sb = ib.make_superblock(ib.DAX_SIG, PFN, NS, 0, 512 * MiB, ib.SZ_2M, ib.PFN_MODE_PMEM)
    raw = ib._replace(sb, align=64 * 1024).encode()
    with pytest.raises(OSError) as e:
        ib.validate(raw, ib.DAX_SIG, NS, 0, 512 * MiB)
    assert e.value.errno == errno.EOPNOTSUPP
