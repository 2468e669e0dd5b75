"""Dynamic Capacity payload codecs: spec sizes, round trips, and no input
that makes a decoder fail with anything but PayloadError."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.hw.mailbox import dcd_payloads as D
from cxlemu.hw.mailbox.payloads import PayloadError

u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
tags = st.binary(min_size=16, max_size=16)
extents = st.builds(D.DcExtent, u64, u64, tags, u16)


def test_layout_sizes_match_the_spec():
    assert len(D.DcExtent(0, 0).encode()) == 0x28                       # Table 8-51
    rec = D.DcEventRecord(D.DcEventType.ADD_CAPACITY, D.DcExtent(1 << 28, 1 << 30, b"\x11" * 16, 3), handle=7,
                          timestamp=9, host_id=2, region_index=1, more=True)
    raw = rec.encode()
    assert len(raw) == 0x80                                                # Table 8-50
    assert uuid.UUID(bytes=raw[:16]) == D.DC_EVENT_UUID
    assert raw[16] == 0x80                                                 # record length
    assert raw[48] == 0 and struct.unpack_from("<H", raw, 50)[0] == 2     # event type, host id
    assert raw[52] == 1 and raw[53] & 1                                    # region index, More
    assert struct.unpack_from("<QQ", raw, 56) == (1 << 28, 1 << 30)       # the extent at 0x38
    assert len(D.DcRegionConfig(0, 1 << 30, 1 << 30, 1 << 28).encode()) == 0x28
    assert len(D.DcExtentListUpdate(((0, 1 << 28),)).encode()) == 8 + 0x18
    assert len(D.FmInitiateDcAdd(0, 0, 0, 1 << 30).encode()) == 32


@given(extents)
def test_extent_round_trip(e):
    assert D.DcExtent.decode(e.encode()) == e


@given(st.lists(extents, max_size=6), u32, u32)
def test_extent_list_round_trip(exts, extra, gen):
    out = D.GetDcExtentListOutput(len(exts) + extra % 5, gen, tuple(exts))
    assert D.GetDcExtentListOutput.decode(out.encode()) == out


@given(st.lists(st.tuples(u64, u64), max_size=8), st.booleans())
def test_update_round_trip(exts, more):
    u = D.DcExtentListUpdate(tuple(exts), more)
    assert D.DcExtentListUpdate.decode(u.encode()) == u


@given(st.lists(st.builds(D.DcRegionConfig, u64, st.integers(0, 2**20).map(lambda x: x * D.CAPACITY_MULTIPLIER),
                          u64, u64, u32, st.integers(0, 255)), max_size=8), u32, u32, u32, u32)
def test_config_round_trip(regs, a, b, c, d):
    out = D.GetDcConfigOutput(len(regs), tuple(regs), a, b, c, d)
    assert D.GetDcConfigOutput.decode(out.encode()) == out


@given(st.sampled_from(list(D.DcEventType)), extents, u16, u64, u16, st.integers(0, 255), st.booleans(), u32, u32)
def test_event_record_round_trip(et, e, handle, ts, hid, reg, more, ea, ta):
    r = D.DcEventRecord(int(et), e, handle, ts, hid, reg, more, 0, ea, ta)
    assert D.DcEventRecord.decode(r.encode()) == r


@given(u16, st.integers(0, 15), st.integers(0, 255), u64, tags, st.lists(extents, max_size=4))
def test_fm_add_release_round_trip(hid, pol, reg, ln, tag, exts):
    a = D.FmInitiateDcAdd(hid, pol, reg, ln, tag, tuple(exts))
    assert D.FmInitiateDcAdd.decode(a.encode()) == a
    r = D.FmInitiateDcRelease(hid, pol | D.RELEASE_FORCED, reg, ln, tag, tuple(exts))
    back = D.FmInitiateDcRelease.decode(r.encode())
    assert back == r and back.forced and not back.sanitize


@given(st.lists(u16, max_size=40))
def test_event_log_commands_round_trip(handles):
    c = D.ClearEventRecordsInput(D.EVENT_LOG_DCD, tuple(handles))
    assert D.ClearEventRecordsInput.decode(c.encode()) == c
    out = D.GetEventRecordsOutput(tuple(D.DcEventRecord(0, D.DcExtent(h, 1)) for h in handles[:3]), more=True)
    assert D.GetEventRecordsOutput.decode(out.encode()) == out


DECODERS = [D.DcExtent, D.GetDcConfigInput, D.GetDcConfigOutput, D.GetDcExtentListInput, D.GetDcExtentListOutput,
            D.DcExtentListUpdate, D.DcEventRecord, D.FmInitiateDcAdd, D.FmInitiateDcRelease, D.GetEventRecordsInput,
            D.GetEventRecordsOutput, D.ClearEventRecordsInput]


@settings(max_examples=300)
@given(st.sampled_from(DECODERS), st.binary(max_size=300))
def test_decoders_never_traceback(cls, raw):
    try:
        cls.decode(raw)
    except PayloadError:
        pass


def test_bad_values_are_payload_errors():
    with pytest.raises(PayloadError):
        D.DcExtent(-1, 0).encode()
    with pytest.raises(PayloadError):
        D.DcExtent(0, 0, b"short").encode()
    with pytest.raises(PayloadError):
        D.DcRegionConfig(0, 12345, 0, 0).encode()
    with pytest.raises(PayloadError):                       # a lying count
        D.DcExtentListUpdate.decode(struct.pack("<IB3x", 5, 0))
