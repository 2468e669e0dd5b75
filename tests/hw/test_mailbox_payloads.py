"""Mailbox payload codecs, opcode tables, UAPI layouts and the client helpers.

Golden vectors are assembled by hand from the byte offsets of the CXL spec
tables (r3.2 Tables 8-142 Identify Memory Device, 8-148 Get Health Info, ...),
independently of the struct formats used by the implementation.
"""

from __future__ import annotations

import ctypes
import errno
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.hw.mailbox import client, opcodes, payloads, uapi
from cxlemu.hw.mailbox.opcodes import CxlMemCommandId as Cid
from cxlemu.hw.mailbox.opcodes import Opcode, ReturnCode
from cxlemu.hw.mailbox.payloads import (
    CAPACITY_MULTIPLIER,
    AlertConfig,
    CelEntry,
    ClearPoisonInput,
    CommandEffectsLog,
    FwInfo,
    GetLogInput,
    GetLsaInput,
    GetPoisonListInput,
    GetPoisonListOutput,
    GetSupportedLogsOutput,
    HealthInfo,
    IdentifyMemoryDevice,
    InjectPoisonInput,
    PartitionInfo,
    PayloadError,
    PoisonRecord,
    SetAlertConfig,
    SetLsaInput,
    SetPartitionInfo,
    ShutdownState,
    SupportedLogEntry,
    Timestamp,
)

SETTINGS = settings(max_examples=60, deadline=None)
MiB = 1 << 20
GiB = 1 << 30

# --------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
s16 = st.integers(-0x8000, 0x7FFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, (1 << 64) - 1)
capacity = st.integers(0, (1 << 64) - 1).map(lambda units: units * CAPACITY_MULTIPLIER)
fw_str = st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=16)
dpa64 = st.integers(0, (1 << 58) - 1).map(lambda n: n * 64)
len64 = st.integers(0, 0xFFFF_FFFF).map(lambda n: n * 64)

identify_st = st.builds(
    IdentifyMemoryDevice,
    fw_revision=fw_str,
    total_capacity=capacity,
    volatile_only_capacity=capacity,
    persistent_only_capacity=capacity,
    partition_align=capacity,
    info_event_log_size=u16,
    warning_event_log_size=u16,
    failure_event_log_size=u16,
    fatal_event_log_size=u16,
    lsa_size=u32,
    poison_list_max_records=st.integers(0, (1 << 24) - 1),
    inject_poison_limit=u16,
    poison_caps=u8,
    qos_telemetry_caps=u8,
    dc_event_log_size=st.none() | u16,
)
partition_st = st.builds(PartitionInfo, capacity, capacity, capacity, capacity)
set_partition_st = st.builds(SetPartitionInfo, capacity, u8)
health_st = st.builds(
    HealthInfo,
    health_status=u8,
    media_status=u8,
    life_used_status=st.integers(0, 3),
    temperature_status=st.integers(0, 3),
    corrected_volatile_status=st.integers(0, 1),
    corrected_persistent_status=st.integers(0, 1),
    life_used=st.none() | st.integers(0, 254),
    temperature=st.none() | s16.filter(lambda t: t != -1),
    dirty_shutdown_count=u32,
    corrected_volatile_error_count=u32,
    corrected_persistent_error_count=u32,
)
alert_st = st.builds(AlertConfig, u8, u8, u8, u8, s16, s16, s16, s16, u16, u16)
set_alert_st = st.builds(SetAlertConfig, u8, u8, u8, s16, s16, u16, u16)
fw_st = st.builds(
    FwInfo,
    slots_supported=u8,
    active_slot=st.integers(0, 7),
    staged_slot=st.integers(0, 7),
    online_activation_capable=st.booleans(),
    slot_revisions=st.tuples(fw_str, fw_str, fw_str, fw_str),
)
record_st = st.builds(PoisonRecord, dpa64, len64, st.integers(0, 7))
poison_out_st = st.builds(
    GetPoisonListOutput, u8, u64, st.lists(record_st, max_size=20).map(tuple)
)
uuid_st = st.uuids()

ROUND_TRIP_CASES = [
    identify_st,
    partition_st,
    set_partition_st,
    st.builds(GetLsaInput, u32, u32),
    st.builds(SetLsaInput, u32, st.binary(max_size=300)),
    health_st,
    alert_st,
    set_alert_st,
    st.builds(ShutdownState, st.booleans()),
    st.builds(GetPoisonListInput, dpa64, st.integers(0, (1 << 64) - 1).map(lambda n: n * 64)),
    record_st,
    poison_out_st,
    st.builds(InjectPoisonInput, dpa64),
    st.builds(ClearPoisonInput, dpa64, st.binary(min_size=64, max_size=64)),
    fw_st,
    st.builds(Timestamp, u64),
    st.builds(GetLogInput, uuid_st, u32, u32),
    st.builds(GetSupportedLogsOutput,
              st.lists(st.builds(SupportedLogEntry, uuid_st, u32), max_size=8).map(tuple)),
    st.builds(CommandEffectsLog,
              st.lists(st.builds(CelEntry, u16, u16), max_size=40).map(tuple)),
    st.builds(CelEntry, u16, u16),
]


@pytest.mark.parametrize("strategy", ROUND_TRIP_CASES,
                         ids=[
                             "identify", "partition", "set_partition", "get_lsa", "set_lsa",
                             "health", "alert", "set_alert", "shutdown", "poison_in",
                             "poison_record", "poison_out", "inject", "clear", "fw_info",
                             "timestamp", "get_log", "supported_logs", "cel", "cel_entry",
                         ])
@SETTINGS
@given(data=st.data())
def test_payload_round_trip(strategy, data):
    obj = data.draw(strategy)
    raw = obj.encode()
    back = type(obj).decode(raw)
    assert back == obj
    assert back.encode() == raw


# --------------------------------------------------------------------------
# lengths agree with the kernel's advertised sizes (drivers/cxl/core/mbox.c)
# --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "cmd_id, size_in, size_out",
    [
        (Cid.IDENTIFY, 0, IdentifyMemoryDevice.SIZE),
        (Cid.GET_PARTITION_INFO, 0, PartitionInfo.SIZE),
        (Cid.SET_PARTITION_INFO, SetPartitionInfo.SIZE, 0),
        (Cid.GET_LSA, GetLsaInput.SIZE, opcodes.VARIABLE),
        (Cid.SET_LSA, opcodes.VARIABLE, 0),
        (Cid.GET_HEALTH_INFO, 0, HealthInfo.SIZE),
        (Cid.GET_ALERT_CONFIG, 0, AlertConfig.SIZE),
        (Cid.SET_ALERT_CONFIG, SetAlertConfig.SIZE, 0),
        (Cid.GET_SHUTDOWN_STATE, 0, ShutdownState.SIZE),
        (Cid.SET_SHUTDOWN_STATE, ShutdownState.SIZE, 0),
        (Cid.GET_POISON, GetPoisonListInput.SIZE, opcodes.VARIABLE),
        (Cid.INJECT_POISON, InjectPoisonInput.SIZE, 0),
        (Cid.CLEAR_POISON, ClearPoisonInput.SIZE, 0),
        (Cid.GET_FW_INFO, 0, FwInfo.SIZE),
        (Cid.GET_LOG, GetLogInput.SIZE, opcodes.VARIABLE),
        (Cid.GET_TIMESTAMP, 0, Timestamp.SIZE),
    ],
)
def test_payload_sizes_match_kernel_mbox_c_table(cmd_id, size_in, size_out):
    spec = opcodes.command_spec(cmd_id)
    assert (spec.size_in, spec.size_out) == (size_in, size_out)


def test_fixed_sizes_in_bytes():
    assert (IdentifyMemoryDevice.SIZE, PartitionInfo.SIZE, HealthInfo.SIZE) == (0x43, 0x20, 0x12)
    assert (AlertConfig.SIZE, SetAlertConfig.SIZE, FwInfo.SIZE) == (0x10, 0x0C, 0x50)
    assert (SetPartitionInfo.SIZE, ClearPoisonInput.SIZE) == (0x0A, 0x48)
    assert GetPoisonListOutput.size_for(2) == 0x20 + 2 * 0x10


# --------------------------------------------------------------------------
# golden vectors
# --------------------------------------------------------------------------

def _identify_golden() -> bytearray:
    raw = bytearray(0x43)
    raw[0x00:0x10] = b"FW 1.2.3-rc4\0\0\0\0"             # FW Revision
    raw[0x10:0x18] = bytes.fromhex("0800000000000000")    # Total: 8 x 256 MiB
    raw[0x18:0x20] = bytes.fromhex("0200000000000000")    # Volatile Only: 2
    raw[0x20:0x28] = bytes.fromhex("0400000000000000")    # Persistent Only: 4
    raw[0x28:0x30] = bytes.fromhex("0100000000000000")    # Partition Alignment: 1
    raw[0x30:0x32] = bytes.fromhex("1000")                # Informational Event Log Size
    raw[0x32:0x34] = bytes.fromhex("2000")                # Warning
    raw[0x34:0x36] = bytes.fromhex("3000")                # Failure
    raw[0x36:0x38] = bytes.fromhex("4000")                # Fatal
    raw[0x38:0x3C] = bytes.fromhex("00000200")            # LSA Size 0x20000
    raw[0x3C:0x3F] = bytes.fromhex("000102")              # Poison List Max MER 0x020100
    raw[0x3F:0x41] = bytes.fromhex("0a00")                # Inject Poison Limit 10
    raw[0x41] = 0x03                                      # Poison Handling Caps
    raw[0x42] = 0x02                                      # QoS Telemetry Caps
    return raw


def test_identify_golden_vector_table_8_142():
    raw = _identify_golden()
    got = IdentifyMemoryDevice.decode(bytes(raw))
    assert got == IdentifyMemoryDevice(
        fw_revision="FW 1.2.3-rc4",
        total_capacity=2 * GiB,
        volatile_only_capacity=512 * MiB,
        persistent_only_capacity=1 * GiB,
        partition_align=256 * MiB,
        info_event_log_size=0x10,
        warning_event_log_size=0x20,
        failure_event_log_size=0x30,
        fatal_event_log_size=0x40,
        lsa_size=0x20000,
        poison_list_max_records=0x020100,
        inject_poison_limit=10,
        poison_caps=payloads.PoisonCaps.INJECTS_PERSISTENT_POISON
        | payloads.PoisonCaps.SCANS_FOR_POISON,
        qos_telemetry_caps=payloads.QosTelemetryCaps.TEMPORARY_THROUGHPUT_REDUCTION,
        dc_event_log_size=None,
    )
    assert got.encode() == bytes(raw)


def test_identify_r3_form_carries_dc_event_log_size_at_0x43():
    raw = _identify_golden() + bytes.fromhex("0800")
    got = IdentifyMemoryDevice.decode(bytes(raw))
    assert got.dc_event_log_size == 8
    assert got.encode() == bytes(raw)


def test_identify_full_16_char_fw_revision_needs_no_nul():
    raw = _identify_golden()
    raw[0:16] = b"ABCDEFGHIJKLMNOP"
    assert IdentifyMemoryDevice.decode(bytes(raw)).fw_revision == "ABCDEFGHIJKLMNOP"


@pytest.mark.parametrize("size", [0, 0x42, 0x44, 0x46, 0x80])
def test_identify_rejects_wrong_length(size):
    with pytest.raises(PayloadError):
        IdentifyMemoryDevice.decode(bytes(size))


def test_identify_rejects_unaligned_capacity_and_long_fw():
    with pytest.raises(PayloadError):
        IdentifyMemoryDevice(total_capacity=CAPACITY_MULTIPLIER + 4096).encode()
    with pytest.raises(PayloadError):
        IdentifyMemoryDevice(fw_revision="x" * 17).encode()
    with pytest.raises(PayloadError):
        IdentifyMemoryDevice(poison_list_max_records=1 << 24).encode()


def test_health_golden_vector_table_8_148():
    raw = bytes(
        [0x05,        # Health Status: maintenance needed | HW replacement needed
         0x02,        # Media Status: persistence lost
         0x29,        # Additional: life used WARN (1), temp CRIT (2<<2), persistent (1<<5)
         0x21]        # Life Used 33 %
    ) + bytes.fromhex("fbff") \
      + bytes.fromhex("07000000") \
      + bytes.fromhex("04030201") \
      + bytes.fromhex("11000000")
    assert len(raw) == 0x12
    got = HealthInfo.decode(raw)
    assert got == HealthInfo(
        health_status=0x05,
        media_status=payloads.MediaStatus.PERSISTENCE_LOST,
        life_used_status=payloads.ExtStatus.WARNING,
        temperature_status=payloads.ExtStatus.CRITICAL,
        corrected_volatile_status=0,
        corrected_persistent_status=1,
        life_used=33,
        temperature=-5,
        dirty_shutdown_count=7,
        corrected_volatile_error_count=0x01020304,
        corrected_persistent_error_count=0x11,
    )
    assert got.maintenance_needed and got.hw_replacement_needed
    assert not got.performance_degraded
    assert got.additional_status == 0x29
    assert got.temperature_raw == 0xFFFB  # what libcxl would print
    assert got.encode() == raw


def test_health_not_implemented_sentinels_libcxl_private_h():
    raw = bytes([0, 0, 0, 0xFF, 0xFF, 0xFF]) + bytes(12)
    got = HealthInfo.decode(raw)
    assert got.life_used is None and got.temperature is None
    assert got.temperature_raw == 0xFFFF
    assert got.encode() == raw
    with pytest.raises(PayloadError):
        HealthInfo(temperature=-1).encode()
    with pytest.raises(PayloadError):
        HealthInfo(life_used=255).encode()
    with pytest.raises(PayloadError):
        HealthInfo(corrected_volatile_status=2).encode()


def test_partition_info_units_are_256mib():
    raw = struct.pack("<QQQQ", 1, 3, 0, 4)
    got = PartitionInfo.decode(raw)
    assert got == PartitionInfo(256 * MiB, 768 * MiB, 0, GiB)
    assert SetPartitionInfo(GiB, 1).encode() == bytes.fromhex("0400000000000000" "01" "00")
    assert SetPartitionInfo.decode(bytes.fromhex("0400000000000000" "01" "00")).immediate
    with pytest.raises(PayloadError):
        SetPartitionInfo.decode(bytes(9))


def test_lsa_payload_layouts():
    assert GetLsaInput(0x10, 0x20).encode() == bytes.fromhex("10000000" "20000000")
    assert SetLsaInput(0x104, b"\xaa\xbb").encode() == bytes.fromhex("04010000" "00000000" "aabb")
    assert SetLsaInput.decode(bytes.fromhex("04010000" "ffffffff" "cc")) == SetLsaInput(0x104, b"\xcc")
    with pytest.raises(PayloadError):
        SetLsaInput.decode(bytes(7))


def test_alert_config_golden_and_signed_temperatures():
    raw = bytes([0x1F, 0x1E, 90, 75]) + struct.pack("<hhhhHH", 100, -40, 85, -10, 300, 400)
    got = AlertConfig.decode(raw)
    assert got.dev_under_temperature_crit_alert_threshold == -40
    assert got.dev_under_temperature_prog_warn_threshold == -10
    assert got.corrected_pmem_err_prog_warn_threshold == 400
    assert got.encode() == raw
    s = SetAlertConfig(valid_alert_actions=payloads.AlertBits.DEV_UNDER_TEMPERATURE_PROG_WARN,
                       enable_alert_actions=4, dev_under_temperature_prog_warn_threshold=-20)
    assert s.encode() == bytes([4, 4, 0, 0]) + bytes.fromhex("0000" "ecff" "0000" "0000")


def test_fw_info_golden_slot_info_bits():
    raw = bytes([4, (2 << 3) | 1, 1]) + bytes(13) + b"v1.0".ljust(16, b"\0") \
        + b"v2.0-staged".ljust(16, b"\0") + bytes(32)
    got = FwInfo.decode(raw)
    assert (got.slots_supported, got.active_slot, got.staged_slot) == (4, 1, 2)
    assert got.online_activation_capable
    assert got.revision(1) == "v1.0" and got.revision(2) == "v2.0-staged"
    assert got.revision(3) is None
    assert got.encode() == raw


def test_poison_record_address_packs_source_in_low_bits():
    rec = PoisonRecord(dpa=0x4000_0000, length=128, source=payloads.PoisonSource.INJECTED)
    assert rec.encode() == bytes.fromhex("0300004000000000" "02000000" "00000000")
    with pytest.raises(PayloadError):
        PoisonRecord(dpa=0x1001).encode()
    with pytest.raises(PayloadError):
        PoisonRecord(dpa=0, length=65).encode()


def test_poison_list_output_golden_header():
    out = GetPoisonListOutput(flags=payloads.PoisonFlags.MORE | payloads.PoisonFlags.OVERFLOW,
                              overflow_timestamp=0x1122334455667788,
                              records=(PoisonRecord(0x40, 64, 1),))
    raw = out.encode()
    assert raw[0] == 0x03 and raw[1] == 0
    assert raw[2:10] == bytes.fromhex("8877665544332211")
    assert raw[10:12] == bytes.fromhex("0100")
    assert raw[12:32] == bytes(20)
    assert raw[32:48] == bytes.fromhex("4100000000000000" "01000000" "00000000")
    decoded = GetPoisonListOutput.decode(raw)
    assert decoded.more and decoded.overflow and not decoded.scanning
    with pytest.raises(PayloadError):
        GetPoisonListOutput.decode(raw[:-1])
    assert GetPoisonListOutput.max_records(4096) == 254


def test_poison_list_input_is_in_64_byte_units():
    assert GetPoisonListInput(0x1000, 0x2000).encode() == bytes.fromhex(
        "0010000000000000" "8000000000000000")
    with pytest.raises(PayloadError):
        GetPoisonListInput(0x1001, 64).encode()
    with pytest.raises(PayloadError):
        GetPoisonListInput(0, 100).encode()


def test_supported_logs_cel_entry_uuid_byte_order():
    out = GetSupportedLogsOutput((SupportedLogEntry(payloads.CEL_UUID, 0x100),))
    raw = out.encode()
    assert raw[:8] == bytes.fromhex("0100000000000000")
    assert raw[8:24] == bytes.fromhex("0da9c0b5bf414b788f7996b1623b3f17")
    assert raw[24:28] == bytes.fromhex("00010000")
    assert GetSupportedLogsOutput.decode(raw).find(payloads.CEL_UUID).size == 0x100
    cel = CommandEffectsLog((CelEntry(Opcode.IDENTIFY_MEMORY_DEVICE, 0),
                             CelEntry(Opcode.SET_LSA, payloads.CommandEffect.IMMEDIATE_DATA_CHANGE)))
    assert cel.encode() == bytes.fromhex("00400000" "03410400")
    assert CommandEffectsLog.decode(cel.encode()).opcodes == {0x4000, 0x4103}
    with pytest.raises(PayloadError):
        CommandEffectsLog.decode(bytes(6))


# --------------------------------------------------------------------------
# opcodes / ids / return codes
# --------------------------------------------------------------------------

def test_uapi_command_id_order_include_uapi_linux_cxl_mem_h():
    names = [c.name for c in sorted(Cid)]
    assert names[:18] == [
        "INVALID", "IDENTIFY", "RAW", "GET_SUPPORTED_LOGS", "GET_FW_INFO",
        "GET_PARTITION_INFO", "GET_LSA", "GET_HEALTH_INFO", "GET_LOG",
        "SET_PARTITION_INFO", "SET_LSA", "GET_ALERT_CONFIG", "SET_ALERT_CONFIG",
        "GET_SHUTDOWN_STATE", "SET_SHUTDOWN_STATE", "GET_POISON", "INJECT_POISON",
        "CLEAR_POISON",
    ]
    assert [int(c) for c in sorted(Cid)] == list(range(26))
    assert Cid.GET_TIMESTAMP == 21 and Cid.MAX == 25
    assert set(opcodes.KERNEL_COMMANDS) == set(Cid) - {Cid.INVALID, Cid.MAX}


def test_id_opcode_mapping_both_ways():
    assert opcodes.opcode_for_id(Cid.IDENTIFY) == 0x4000
    assert opcodes.opcode_for_id(Cid.GET_POISON) == 0x4300
    assert opcodes.opcode_for_id(Cid.GET_FW_INFO) == 0x0200
    assert opcodes.opcode_for_id(Cid.RAW) == 0
    for cid, spec in opcodes.KERNEL_COMMANDS.items():
        if spec.opcode:
            assert opcodes.id_for_opcode(spec.opcode) == cid
    assert opcodes.id_for_opcode(Opcode.SANITIZE) is None
    assert Opcode.GET_LSA.command_set == 0x41 and Opcode.GET_LSA.command == 0x02


def test_command_names_and_deprecation():
    assert opcodes.command_name(Cid.GET_LSA) == "Get Label Storage Area"
    assert opcodes.command_name(Cid.GET_POISON) == "Deprecated Get Poison List"
    assert opcodes.command_name(Cid.GET_POISON, modern=False) == "Get Poison List"
    assert opcodes.command_spec(Cid.CLEAR_POISON).deprecated
    assert opcodes.command_spec(Cid.IDENTIFY).force_enable


def test_raw_command_filter_mbox_c():
    assert opcodes.raw_command_allowed(Opcode.GET_HEALTH_INFO)
    assert not opcodes.raw_command_allowed(Opcode.SET_LSA)
    assert not opcodes.raw_command_allowed(Opcode.SANITIZE)
    assert not opcodes.raw_command_allowed(0x4600)
    assert not opcodes.raw_command_allowed(0)
    assert opcodes.raw_command_allowed(Opcode.SANITIZE, allow_all=True)


def test_return_codes_table_8_34():
    assert [int(r) for r in ReturnCode] == list(range(0x21))
    assert opcodes.return_code_name(0) == "Success"
    assert opcodes.return_code_name(1) == "Background Command Started"
    assert opcodes.return_code_name(9) == "FW Transfer Out of Order"
    assert opcodes.return_code_name(0x15) == "Unsupported Mailbox"
    assert opcodes.return_code_name(0x77) == "Reserved (0x77)"
    assert all(r in opcodes.RETURN_CODE_NAMES for r in ReturnCode)


@pytest.mark.parametrize("rc, want", [
    (0, 0), (1, errno.ENXIO), (2, errno.ENXIO), (3, errno.ENXIO), (7, errno.ENXIO),
    (0x0F, errno.EFAULT), (0x10, errno.ENXIO), (0x1E, errno.ENXIO), (0x40, errno.ENXIO),
])
def test_errno_for_return_code_cxl_mbox_cmd_rc2errno(rc, want):
    assert opcodes.errno_for_return_code(rc) == want


# --------------------------------------------------------------------------
# UAPI structures and ioctl numbers
# --------------------------------------------------------------------------

def test_uapi_struct_sizes_and_offsets():
    assert ctypes.sizeof(uapi.CSendCommand) == 48 == struct.calcsize(uapi.SendCommand._FMT)
    assert ctypes.sizeof(uapi.CCommandInfo) == 16 == struct.calcsize(uapi.CommandInfo._FMT)
    assert ctypes.sizeof(uapi.CMemQueryCommands) == 8 == uapi.QUERY_HEADER_SIZE
    assert uapi.CSendCommand.u.offset == 8
    assert uapi.CSendCommand.retval.offset == 12
    assert uapi.CSendCommand.in_.offset == 16
    assert uapi.CSendCommand.out.offset == 32
    assert uapi._CPayload.payload.offset == 8


def test_ioctl_numbers_computed_from_ioc():
    assert uapi.CXL_MEM_SEND_COMMAND == 0xC030CE02
    assert uapi.CXL_MEM_QUERY_COMMANDS == 0x8008CE01
    assert uapi.CXL_MEM_SEND_COMMAND == uapi.io_wr(0xCE, 2, ctypes.sizeof(uapi.CSendCommand))
    assert uapi.ioc_decode(uapi.CXL_MEM_SEND_COMMAND) == (3, 0xCE, 2, 48)
    assert uapi.ioc_decode(uapi.CXL_MEM_QUERY_COMMANDS) == (2, 0xCE, 1, 8)
    with pytest.raises(ValueError):
        uapi.ioc(3, 0xCE, 1, 1 << 14)


@SETTINGS
@given(st.builds(uapi.SendCommand, u32, u32, u16, u16, u32, u32, u32, u64, u32, u32, u64))
def test_send_command_struct_matches_ctypes(cmd):
    raw = cmd.pack()
    assert uapi.SendCommand.unpack(raw) == cmd
    c = uapi.CSendCommand.from_buffer_copy(raw)
    assert (c.id, c.flags, c.raw.opcode, c.raw.rsvd, c.retval) == (
        cmd.id, cmd.flags, cmd.raw_opcode, cmd.raw_rsvd, cmd.retval)
    assert (c.in_.size, c.in_.payload, c.out.size, c.out.payload) == (
        cmd.in_size, cmd.in_payload, cmd.out_size, cmd.out_payload)
    assert c.rsvd == cmd.rsvd


@SETTINGS
@given(st.lists(st.builds(uapi.CommandInfo, st.integers(0, 24), st.integers(0, 3),
                          st.integers(-1, 0x1000), st.integers(-1, 0x1000)), max_size=25))
def test_query_buffer_round_trip(entries):
    raw = uapi.pack_query(len(entries), entries)
    assert len(raw) == 8 + 16 * len(entries)
    assert uapi.unpack_query(raw) == (len(entries), entries)


def test_query_count_only_and_variable_sizes():
    n, entries = uapi.unpack_query(struct.pack("=II", 21, 0))
    assert (n, entries) == (21, [])
    info = uapi.CommandInfo.unpack(struct.pack("=IIII", 10, 1, 0xFFFFFFFF, 0))
    assert info == uapi.CommandInfo(10, 1, -1, 0) and info.variable_in


def test_real_channel_refuses_regular_file(tmp_path):
    node = tmp_path / "mem0"
    node.write_bytes(b"")
    with pytest.raises(OSError) as exc:
        uapi.RealMemdevChannel(node).query()
    assert exc.value.errno == errno.ENXIO


def test_real_channel_checks_rdev_then_ioctl_reaches_kernel():
    # /dev/null is a character device: a wrong rdev is refused like libcxl does,
    # the right one gets as far as the ioctl, which /dev/null rejects.
    with pytest.raises(OSError) as exc:
        uapi.RealMemdevChannel("/dev/null", expect_rdev=(250, 0)).send(Cid.IDENTIFY, b"", 0x43)
    assert exc.value.errno == errno.ENXIO
    with pytest.raises(OSError) as exc:
        uapi.RealMemdevChannel("/dev/null").send(Cid.IDENTIFY, b"", 0x43)
    assert exc.value.errno in (errno.ENOTTY, errno.EINVAL)


# --------------------------------------------------------------------------
# client helpers against fake channels
# --------------------------------------------------------------------------

class FakeLsaChannel:
    """A device-side LSA backed by a bytearray, enforcing payload_max."""

    def __init__(self, size: int, payload_max: int):
        self.lsa = bytearray((i * 7 + 3) & 0xFF for i in range(size))
        self.payload_max = payload_max
        self.calls: list[tuple[int, int, int]] = []  # (cmd, offset, length)

    def send(self, cmd_id, payload_in, out_size):
        assert len(payload_in) <= self.payload_max
        if cmd_id == Cid.GET_LSA:
            req = GetLsaInput.decode(payload_in)
            self.calls.append((cmd_id, req.offset, req.length))
            assert req.length <= out_size <= self.payload_max
            if req.offset + req.length > len(self.lsa):
                return ReturnCode.INVALID_INPUT, b""
            return 0, bytes(self.lsa[req.offset:req.offset + req.length])
        if cmd_id == Cid.SET_LSA:
            req = SetLsaInput.decode(payload_in)
            self.calls.append((cmd_id, req.offset, len(req.data)))
            if req.offset + len(req.data) > len(self.lsa):
                return ReturnCode.INVALID_INPUT, b""
            self.lsa[req.offset:req.offset + len(req.data)] = req.data
            return 0, b""
        return ReturnCode.UNSUPPORTED, b""


def test_read_lsa_chunks_by_payload_max_minus_header():
    ch = FakeLsaChannel(4096, payload_max=256)
    data = client.read_lsa(ch, 3, 1000, 256)
    assert data == bytes(ch.lsa[3:1003])
    assert [c[2] for c in ch.calls] == [248, 248, 248, 248, 8]
    assert [c[1] for c in ch.calls] == [3, 251, 499, 747, 995]


def test_write_lsa_chunks_by_payload_max_minus_header():
    ch = FakeLsaChannel(2048, payload_max=256)
    blob = bytes(range(256)) * 3 + b"\x42"  # 769 bytes
    before = bytes(ch.lsa)
    client.write_lsa(ch, 17, blob, 256)
    assert bytes(ch.lsa[17:17 + len(blob)]) == blob
    assert ch.lsa[:17] == before[:17] and ch.lsa[17 + len(blob):] == before[17 + len(blob):]
    assert [c[2] for c in ch.calls] == [248, 248, 248, 25]


@SETTINGS
@given(size=st.integers(1, 3000), payload_max=st.sampled_from([9, 17, 100, 256, 1024]),
       data=st.data())
def test_lsa_read_write_chunking_property(size, payload_max, data):
    offset = data.draw(st.integers(0, size - 1))
    length = data.draw(st.integers(0, size - offset))
    ch = FakeLsaChannel(size, payload_max)
    assert client.read_lsa(ch, offset, length, payload_max) == bytes(ch.lsa[offset:offset + length])
    chunk = payload_max - 8
    assert len(ch.calls) == -(-length // chunk)
    assert all(c[2] <= chunk for c in ch.calls)
    blob = data.draw(st.binary(min_size=length, max_size=length))
    ch.calls.clear()
    client.write_lsa(ch, offset, blob, payload_max)
    assert bytes(ch.lsa[offset:offset + length]) == blob
    assert len(ch.calls) == -(-length // chunk)


def test_lsa_errors():
    ch = FakeLsaChannel(64, payload_max=256)
    with pytest.raises(client.MailboxError) as exc:
        client.read_lsa(ch, 60, 10, 256)
    assert exc.value.retval == ReturnCode.INVALID_INPUT
    assert exc.value.name == "Invalid Input"
    assert exc.value.errno == errno.ENXIO
    with pytest.raises(ValueError):
        client.read_lsa(ch, 0, 4, 8)
    with pytest.raises(ValueError):
        client.write_lsa(ch, 0, b"x", -1)
    assert client.read_lsa(ch, 0, 0, 256) == b""


class FakePoisonChannel:
    """Returns at most ``per_response`` records per Get Poison List and sets
    MORE until the list for the (repeated) request is exhausted."""

    def __init__(self, records, per_response, flags_extra=0, stuck_more=False):
        self.records = list(records)
        self.per_response = per_response
        self.flags_extra = flags_extra
        self.stuck_more = stuck_more
        self.cursor = 0
        self.requests: list[bytes] = []

    def send(self, cmd_id, payload_in, out_size):
        assert cmd_id == Cid.GET_POISON
        self.requests.append(payload_in)
        req = GetPoisonListInput.decode(payload_in)
        hits = [r for r in self.records if req.address <= r.dpa < req.address + req.length]
        batch = hits[self.cursor:self.cursor + self.per_response]
        self.cursor += len(batch)
        more = self.stuck_more or self.cursor < len(hits)
        flags = (payloads.PoisonFlags.MORE if more else 0) | self.flags_extra
        out = GetPoisonListOutput(flags, 0xABCD if self.flags_extra else 0, tuple(batch)).encode()
        assert len(out) <= out_size
        return 0, out


def test_poison_list_follows_more_flag():
    recs = [PoisonRecord(0x1000 * i, 64, i % 4) for i in range(10)]
    ch = FakePoisonChannel(recs, per_response=3)
    got = client.get_poison_list(ch, 0, 0x10_0000)
    assert got.records == tuple(recs)
    assert got.responses == 4
    assert len(set(ch.requests)) == 1  # the identical request is repeated
    assert not got.overflow and not got.scanning


def test_poison_list_filters_range_and_reports_overflow():
    recs = [PoisonRecord(0x1000 * i, 128, 3) for i in range(10)]
    ch = FakePoisonChannel(recs, per_response=4,
                           flags_extra=payloads.PoisonFlags.OVERFLOW)
    got = client.get_poison_list(ch, 0x2000, 0x3000)
    assert [r.dpa for r in got.records] == [0x2000, 0x3000, 0x4000]
    assert got.overflow and got.overflow_timestamp == 0xABCD
    assert got.responses == 1


def test_poison_list_stops_on_stuck_more_flag():
    recs = [PoisonRecord(64 * i) for i in range(5)]
    ch = FakePoisonChannel(recs, per_response=2, stuck_more=True)
    got = client.get_poison_list(ch, 0, 1 << 20)
    assert len(got.records) == 5 and got.responses == 4  # last one was empty
    ch = FakePoisonChannel(recs, per_response=2, stuck_more=True)
    got = client.get_poison_list(ch, 0, 1 << 20, max_records=3)
    assert len(got.records) == 4 and got.responses == 2


class ScriptedChannel:
    def __init__(self, replies):
        self.replies = replies
        self.sent: list[tuple[int, bytes, int]] = []

    def send(self, cmd_id, payload_in, out_size):
        self.sent.append((cmd_id, payload_in, out_size))
        return self.replies[cmd_id]


def test_fixed_commands_use_kernel_sizes_and_decode():
    ident = IdentifyMemoryDevice(fw_revision="emu", total_capacity=GiB,
                                 volatile_only_capacity=GiB, lsa_size=4096)
    health = HealthInfo(life_used=5, temperature=40)
    part = PartitionInfo(GiB, 0, 0, 0)
    alert = AlertConfig(valid_alerts=1)
    fw = FwInfo(2, 1, 0, False, ("a", "", "", ""))
    ch = ScriptedChannel({
        Cid.IDENTIFY: (0, ident.encode()),
        Cid.GET_HEALTH_INFO: (0, health.encode()),
        Cid.GET_PARTITION_INFO: (0, part.encode()),
        Cid.GET_ALERT_CONFIG: (0, alert.encode()),
        Cid.GET_FW_INFO: (0, fw.encode()),
        Cid.SET_PARTITION_INFO: (0, b""),
        Cid.SET_ALERT_CONFIG: (ReturnCode.INVALID_INPUT, b""),
    })
    assert client.identify(ch) == ident
    assert client.get_health_info(ch) == health
    assert client.get_partition_info(ch) == part
    assert client.get_alert_config(ch) == alert
    assert client.get_fw_info(ch) == fw
    assert [(c, o) for c, _, o in ch.sent] == [
        (Cid.IDENTIFY, 0x43), (Cid.GET_HEALTH_INFO, 0x12), (Cid.GET_PARTITION_INFO, 0x20),
        (Cid.GET_ALERT_CONFIG, 0x10), (Cid.GET_FW_INFO, 0x50)]
    client.set_partition_info(ch, 2 * GiB, payloads.SET_PARTITION_FLAG_IMMEDIATE)
    assert ch.sent[-1] == (Cid.SET_PARTITION_INFO, bytes.fromhex("0800000000000000" "01" "00"), 0)
    with pytest.raises(client.MailboxError) as exc:
        client.set_alert_config(ch, SetAlertConfig(valid_alert_actions=1))
    assert exc.value.retval == 2 and exc.value.command == "Set Alert Configuration"


def test_transport_errors_propagate_as_oserror():
    class Broken:
        def send(self, cmd_id, payload_in, out_size):
            raise OSError(errno.ENOTTY, "nope")

    with pytest.raises(OSError) as exc:
        client.identify(Broken())
    assert exc.value.errno == errno.ENOTTY


def test_short_fixed_output_is_eio():
    ch = ScriptedChannel({Cid.GET_HEALTH_INFO: (0, bytes(0x11))})
    with pytest.raises(OSError) as exc:
        client.get_health_info(ch)
    assert exc.value.errno == errno.EIO


def test_uuid_helpers_are_rfc4122_order():
    assert GetLogInput(payloads.CEL_UUID, 0, 0x100).encode()[:16] == payloads.CEL_UUID.bytes
    assert uuid.UUID(bytes=payloads.VENDOR_DEBUG_UUID.bytes) == payloads.VENDOR_DEBUG_UUID
