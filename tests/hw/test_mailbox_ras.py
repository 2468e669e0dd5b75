"""Device side of the RAS mailbox commands (hw/mailbox/device.py): Get
Poison List paging and overflow, Inject/Clear Poison, Scan Media, event
logs (Get/Clear Event Records, overflow, interrupt policy), health and
alert events; and the event-record codecs (hw/mailbox/events.py)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings, strategies as st

from cxlemu.hw import faults as F
from cxlemu.hw import health as H
from cxlemu.hw.mailbox import device as dev
from cxlemu.hw.mailbox import events as E
from cxlemu.hw.mailbox import payloads as P
from cxlemu.hw.mailbox.opcodes import Opcode, ReturnCode
from cxlemu.hw.platform import build_platform
from cxlemu.topology.schema import loads

TOPO = """
[machine]
name = "t"
[[host_bridge]]
id = "hb0"
uid = 0
[[device]]
id = "m0"
parent = "hb0"
volatile = "256M"
persistent = "256M"
payload_max = 256
poison_max_records = 8
inject_poison_limit = 4
event_log_size = 3
[[window]]
size = "4G"
targets = ["hb0"]
"""


class Media:
    def __init__(self):
        self.writes = []

    def write(self, dpa, data):
        self.writes.append((dpa, bytes(data)))

    def zero(self, dpa, n):
        pass


@pytest.fixture
def d():
    p = build_platform(loads(TOPO))
    return p.devices[0]


def run(d, op, payload=b"", media=None):
    return dev.execute(d, op, payload, media)


def poison_list(d, start=0, length=None):
    length = d.total_capacity - start if length is None else length
    rc, raw = run(d, Opcode.GET_POISON_LIST, P.GetPoisonListInput(start, length).encode())
    assert rc == ReturnCode.SUCCESS
    return P.GetPoisonListOutput.decode(raw)


def test_inject_lists_as_injected_and_logs_an_info_event(d):
    assert run(d, Opcode.INJECT_POISON, P.InjectPoisonInput(0x1000).encode())[0] == 0
    out = poison_list(d)
    assert [(r.dpa, r.length, r.source) for r in out.records] == [(0x1000, 64, P.PoisonSource.INJECTED)]
    recs, more, _ = d.events.get(E.EventLog.INFO, 10)
    body = recs[0].body()
    assert isinstance(body, E.GeneralMediaEvent) and body.transaction_type == E.TransactionType.HOST_INJECT_POISON
    # injecting a poisoned line again is a success that adds nothing
    assert run(d, Opcode.INJECT_POISON, P.InjectPoisonInput(0x1000).encode())[0] == 0
    assert len(poison_list(d).records) == 1


def test_inject_rejects_bad_addresses_and_the_limit(d):
    assert run(d, Opcode.INJECT_POISON, P.InjectPoisonInput(d.total_capacity).encode())[0] == \
        ReturnCode.INVALID_PHYSICAL_ADDRESS
    assert run(d, Opcode.INJECT_POISON, (0x1001).to_bytes(8, "little"))[0] == ReturnCode.INVALID_PHYSICAL_ADDRESS
    for i in range(4):
        assert run(d, Opcode.INJECT_POISON, P.InjectPoisonInput(i * 64).encode())[0] == 0
    assert run(d, Opcode.INJECT_POISON, P.InjectPoisonInput(0x8000).encode())[0] == \
        ReturnCode.INJECT_POISON_LIMIT_REACHED
    assert len(poison_list(d).records) == 4


def test_clear_writes_the_data_and_is_fine_on_clean_lines(d):
    m = Media()
    run(d, Opcode.INJECT_POISON, P.InjectPoisonInput(0x2000).encode())
    data = bytes(range(64))
    assert run(d, Opcode.CLEAR_POISON, P.ClearPoisonInput(0x2000, data).encode(), m)[0] == 0
    assert m.writes == [(0x2000, data)] and not poison_list(d).records
    assert run(d, Opcode.CLEAR_POISON, P.ClearPoisonInput(0x4000).encode(), m)[0] == 0     # not poisoned
    assert m.writes[-1] == (0x4000, bytes(64))
    assert run(d, Opcode.CLEAR_POISON, P.ClearPoisonInput(d.total_capacity).encode(), m)[0] == \
        ReturnCode.INVALID_PHYSICAL_ADDRESS


def test_get_poison_list_more_and_overflow(d):
    for i in range(10):                       # 8 listed, 2 overflow
        F.media_error(d, i * 4096, 64)
    cap = P.GetPoisonListOutput.max_records(d.payload_max)          # 14 with 256-byte payloads
    out = poison_list(d)
    assert out.overflow and out.overflow_timestamp == d.poison.overflow_ts
    assert len(out.records) == min(cap, 8)
    # scan media relists nothing more (the list is full) but finds all ten
    assert run(d, Opcode.SCAN_MEDIA, E.ScanMediaInput(0, d.total_capacity, 0).encode())[0] == 0
    rc, raw = run(d, Opcode.GET_SCAN_MEDIA_RESULTS)
    res = E.GetScanMediaResultsOutput.decode(raw)
    assert [r.dpa for r in res.records] == [i * 4096 for i in range(10)]
    assert d.poison.overflow


def test_more_pages_with_a_small_payload(d):
    d.poison.max_records = 100                 # 30 records, 14 per 256-byte response
    for i in range(30):
        F.media_error(d, i * 128, 64)
    seen = []
    req = P.GetPoisonListInput(0, d.total_capacity).encode()
    for _ in range(10):
        out = P.GetPoisonListOutput.decode(run(d, Opcode.GET_POISON_LIST, req)[1])
        seen += [r.dpa for r in out.records]
        if not out.more:
            break
    assert seen == [i * 128 for i in range(30)]


def test_event_records_get_clear_overflow_and_bad_handle(d):
    for i in range(5):                       # the log holds 3
        F.media_error(d, i * 64, 64)
    rc, raw = run(d, Opcode.GET_EVENT_RECORDS, bytes([E.EventLog.FAIL]))
    out = E.GetEventRecordsOutput.decode(raw)
    # a 256-byte payload carries one record: MORE, and the log overflowed twice
    assert len(out.records) == 1 and out.flags == E.GetEventFlags.OVERFLOW | E.GetEventFlags.MORE
    assert out.overflow_err_count == 2 and out.records[0].header.handle == 1
    handles = tuple(r.header.handle for r in d.events.log(E.EventLog.FAIL).records)
    assert handles == (1, 2, 3)
    assert run(d, Opcode.CLEAR_EVENT_RECORDS, E.ClearEventRecordsInput(E.EventLog.FAIL, (0x7777,)).encode())[0] \
        == ReturnCode.INVALID_HANDLE
    assert len(d.events.log(E.EventLog.FAIL).records) == 3          # nothing cleared
    assert run(d, Opcode.CLEAR_EVENT_RECORDS, E.ClearEventRecordsInput(E.EventLog.FAIL, handles).encode())[0] == 0
    out = E.GetEventRecordsOutput.decode(run(d, Opcode.GET_EVENT_RECORDS, bytes([E.EventLog.FAIL]))[1])
    assert not out.records and not out.flags
    assert run(d, Opcode.GET_EVENT_RECORDS, bytes([9]))[0] == ReturnCode.INVALID_INPUT


def test_interrupt_policy_and_pending_bits(d):
    msi = E.EventInterruptPolicy.setting(E.InterruptMode.MSI_MSIX)
    assert run(d, Opcode.SET_EVENT_INTERRUPT_POLICY, E.EventInterruptPolicy(msi, msi, msi, msi).encode())[0] == 0
    pol = E.EventInterruptPolicy.decode(run(d, Opcode.GET_EVENT_INTERRUPT_POLICY)[1])
    assert E.EventInterruptPolicy.mode(pol.fail) == E.InterruptMode.MSI_MSIX
    F.media_error(d, 0, 64)
    assert d.events.take_pending() == 1 << E.EventLog.FAIL and d.events.status & E.EventStatus.FAIL
    assert run(d, Opcode.SET_EVENT_INTERRUPT_POLICY, b"\x01\x01")[0] == ReturnCode.INVALID_PAYLOAD_LENGTH


def test_health_thresholds_and_events(d):
    # programmable warning at 50% life used
    cfg = P.SetAlertConfig(valid_alert_actions=P.AlertBits.LIFE_USED_PROG_WARN,
                           enable_alert_actions=P.AlertBits.LIFE_USED_PROG_WARN, life_used_prog_warn_threshold=50)
    assert run(d, Opcode.SET_ALERT_CONFIG, cfg.encode())[0] == 0
    rec = H.apply(d, {"life_used": 40}, 0)
    assert rec.header.severity == E.EventLog.INFO
    rec = H.apply(d, {"life_used": 60}, 0)
    assert rec.header.severity == E.EventLog.WARN
    hi = P.HealthInfo.decode(run(d, Opcode.GET_HEALTH_INFO)[1])
    assert hi.life_used == 60 and hi.life_used_status == P.ExtStatus.WARNING
    rec = H.apply(d, {"life_used": 95}, 0)                  # the device's critical threshold is 90
    assert rec.header.severity == E.EventLog.FAIL
    assert E.MemoryModuleEvent.decode_data(rec.data).event_type == E.ModuleEventType.LIFE_USED_CHANGE
    assert H.apply(d, {"life_used": 95}, 0) is None          # no change, no event
    assert H.validate({"life_used": 101}) and H.validate({"temperature": -1}) and H.validate({"x": 1})


def test_threshold_lowered_below_the_value_fires(d):
    H.apply(d, {"temperature": 70}, 0)
    d.events.log(E.EventLog.INFO).records.clear()
    cfg = P.SetAlertConfig(valid_alert_actions=P.AlertBits.DEV_OVER_TEMPERATURE_PROG_WARN,
                           enable_alert_actions=P.AlertBits.DEV_OVER_TEMPERATURE_PROG_WARN,
                           dev_over_temperature_prog_warn_threshold=60)
    run(d, Opcode.SET_ALERT_CONFIG, cfg.encode())
    assert len(d.events.log(E.EventLog.WARN).records) == 1


def test_link_down_stops_the_mailbox(d):
    F.link_down(d)
    with pytest.raises(dev.LinkDown):
        run(d, Opcode.IDENTIFY_MEMORY_DEVICE)
    with pytest.raises(F.FaultError):
        F.media_error(d, 0, 64)
    F.link_up(d)
    assert run(d, Opcode.IDENTIFY_MEMORY_DEVICE)[0] == 0


@pytest.mark.parametrize("dpa,n", [(0x1001, 64), (0, 0), (0, 65), (1 << 40, 64)])
def test_media_error_bad_ranges(d, dpa, n):
    with pytest.raises(F.FaultError):
        F.media_error(d, dpa, n)
    assert not len(d.poison) and not d.events.status


# ---- codecs -------------------------------------------------------------------------------------

u8, u16, u24 = st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, (1 << 24) - 1)
dpa = st.integers(0, (1 << 57) - 1).map(lambda x: x * 64)


@settings(max_examples=100, deadline=None)
@given(dpa, st.integers(0, 3), u8, u8, u8, u16, u8, u8, u24, st.binary(min_size=16, max_size=16), u24, u8)
def test_general_media_round_trip(a, fl, desc, typ, tt, vf, ch, rank, dev_, comp, cme, sub):
    g = E.GeneralMediaEvent(a, fl, desc, typ, tt, vf, ch, rank, dev_, comp, 0, cme, sub)
    rec = E.EventRecord.build(g, severity=2, flags=0x3C, timestamp=12345).with_handle(7)
    back = E.EventRecord.decode(rec.encode())
    assert back.body() == g and back.header.handle == 7 and back.header.severity == 2
    assert back.header.flags == 0x3C and back.header.uuid == E.GENERAL_MEDIA_UUID


@settings(max_examples=60, deadline=None)
@given(dpa, u24, u8, u8, u24, u16, st.binary(min_size=32, max_size=32), u24)
def test_dram_round_trip(a, nib, bg, bank, row, col, cor, cvme):
    r = E.DramEvent(a, nibble_mask=nib, bank_group=bg, bank=bank, row=row, column=col, correction_mask=cor,
                    cvme_count=cvme)
    assert E.EventRecord.decode(E.EventRecord.build(r, 1).encode()).body() == r


def test_memory_module_and_get_output_round_trip():
    hi = P.HealthInfo(life_used=5, temperature=40).encode()
    m = E.MemoryModuleEvent(E.ModuleEventType.TEMPERATURE_CHANGE, hi)
    recs = tuple(E.EventRecord.build(m, 0, timestamp=i).with_handle(i + 1) for i in range(3))
    out = E.GetEventRecordsOutput(E.GetEventFlags.MORE, 2, 10, 20, recs)
    assert E.GetEventRecordsOutput.decode(out.encode()) == out
    c = E.ClearEventRecordsInput(2, (1, 2, 3))
    assert E.ClearEventRecordsInput.decode(c.encode()) == c
    # uuids travel in RFC 4122 byte order
    assert out.encode()[0x20:0x30] == uuid.UUID("fe927475-dd59-4339-a586-79bab113b774").bytes


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_decoders_never_traceback(raw):
    for dec in (E.EventRecord.decode, E.GetEventRecordsOutput.decode, E.ClearEventRecordsInput.decode,
                E.EventInterruptPolicy.decode, E.ScanMediaInput.decode, E.GetScanMediaResultsOutput.decode):
        try:
            dec(raw)
        except P.PayloadError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([Opcode.GET_EVENT_RECORDS, Opcode.CLEAR_EVENT_RECORDS, Opcode.SET_EVENT_INTERRUPT_POLICY,
                        Opcode.SCAN_MEDIA, Opcode.GET_SCAN_MEDIA_CAPABILITIES, Opcode.GET_POISON_LIST,
                        Opcode.INJECT_POISON, Opcode.CLEAR_POISON]), st.binary(max_size=96))
def test_handlers_answer_a_return_code_for_any_payload(op, raw):
    p = build_platform(loads(TOPO))
    rc, out = dev.execute(p.devices[0], op, raw, Media())
    assert isinstance(rc, int) and isinstance(out, bytes)
