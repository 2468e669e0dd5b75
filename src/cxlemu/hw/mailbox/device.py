"""The Type 3 device side of the mailbox: decode a command payload, act on the
device state, encode the response (CXL r3.1 §8.2.9).  Returns (return code,
output payload) like the hardware's mailbox status register and payload area.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from cxlemu.hw.mailbox.opcodes import Opcode, ReturnCode
from cxlemu.hw.type3 import PoisonRecord
from cxlemu.util.lazy import lazy_module

P = lazy_module("cxlemu.hw.mailbox.payloads")   # payload codecs: imported when a command runs

if TYPE_CHECKING:
    from cxlemu.hw.type3 import Type3Device

POISON_LIST_MAX_RECORDS = 256
INJECT_POISON_LIMIT = 128

Handler = Callable[["Type3Device", bytes, "MediaAccess | None"], "tuple[int, bytes]"]


class MediaAccess:
    """What the mailbox needs from the media (clear poison, sanitize)."""

    def write(self, dpa: int, data: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def zero(self, dpa: int, length: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def _ok(data: bytes = b"") -> tuple[int, bytes]:
    return ReturnCode.SUCCESS, data


def _invalid() -> tuple[int, bytes]:
    return ReturnCode.INVALID_INPUT, b""


def identify(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    return _ok(P.IdentifyMemoryDevice(
        fw_revision=d.firmware_version,
        total_capacity=d.total_capacity,
        volatile_only_capacity=d.vol_only,
        persistent_only_capacity=d.pmem_only,
        partition_align=d.partition_align,
        info_event_log_size=64, warning_event_log_size=64, failure_event_log_size=64,
        fatal_event_log_size=64,
        lsa_size=d.lsa_size,
        poison_list_max_records=POISON_LIST_MAX_RECORDS,
        inject_poison_limit=INJECT_POISON_LIMIT,
        poison_caps=int(P.PoisonCaps(0)),
        qos_telemetry_caps=0,
    ).encode())


def get_partition_info(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    nv = d.next_volatile
    return _ok(P.PartitionInfo(
        active_volatile=d.active_volatile,
        active_persistent=d.total_capacity - d.active_volatile,
        next_volatile=nv if nv is not None else 0,
        next_persistent=(d.total_capacity - nv) if nv is not None else 0,
    ).encode())


def set_partition_info(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = P.SetPartitionInfo.decode(raw)
    except P.PayloadError:
        return _invalid()
    v = req.volatile_capacity
    if not d.partition_align or (v - d.vol_only) % d.partition_align:
        return _invalid()
    if not d.vol_only <= v <= d.vol_only + d.partitionable:
        return _invalid()
    if req.immediate:
        # capacity that changes mode must not be decoded by a committed decoder
        if d.hdm and d.hdm.committed_decoders():
            return ReturnCode.BUSY, b""
        d.active_volatile = v
        d.next_volatile = None
    else:
        d.next_volatile = v
    return _ok()


def get_lsa(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = P.GetLsaInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    if req.offset + req.length > d.lsa_size:
        return _invalid()
    return _ok(bytes(d.lsa[req.offset:req.offset + req.length]))


def set_lsa(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = P.SetLsaInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    if req.offset + len(req.data) > d.lsa_size:
        return _invalid()
    d.lsa[req.offset:req.offset + len(req.data)] = req.data
    return _ok()


def get_health_info(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    h = d.health
    status = 0
    if h.maintenance_needed:
        status |= P.HealthStatus.MAINTENANCE_NEEDED
    if h.performance_degraded:
        status |= P.HealthStatus.PERFORMANCE_DEGRADED
    if h.hw_replacement_needed:
        status |= P.HealthStatus.HW_REPLACEMENT_NEEDED
    media = P.MediaStatus.NORMAL
    for attr, value in (("media_not_ready", "NOT_READY"), ("media_persistence_lost", "PERSISTENCE_LOST"),
                        ("media_data_lost", "DATA_LOST")):
        if getattr(h, attr) and hasattr(P.MediaStatus, value):
            media = getattr(P.MediaStatus, value)
    return _ok(P.HealthInfo(
        health_status=int(status), media_status=int(media),
        life_used=h.life_used_percent, temperature=h.temperature,
        dirty_shutdown_count=h.dirty_shutdowns,
        corrected_volatile_error_count=h.volatile_errors,
        corrected_persistent_error_count=h.pmem_errors,
    ).encode())


def get_alert_config(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    a = d.alert
    fields = {f: getattr(a, f) for f in (
        "life_used_prog_warn_threshold", "dev_over_temperature_prog_warn_threshold",
        "dev_under_temperature_prog_warn_threshold", "corrected_volatile_mem_err_prog_warn_threshold",
        "corrected_pmem_err_prog_warn_threshold")}
    return _ok(P.AlertConfig(valid_alerts=a.valid_alerts, programmable_alerts=0x1F, **fields).encode())


def set_alert_config(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = P.SetAlertConfig.decode(raw)
    except P.PayloadError:
        return _invalid()
    a = d.alert
    mask = req.valid_alert_actions
    for bit, f in enumerate(("life_used_prog_warn_threshold", "dev_over_temperature_prog_warn_threshold",
                             "dev_under_temperature_prog_warn_threshold",
                             "corrected_volatile_mem_err_prog_warn_threshold",
                             "corrected_pmem_err_prog_warn_threshold")):
        if mask & (1 << bit):
            setattr(a, f, getattr(req, f))
    a.valid_alerts = (a.valid_alerts & ~mask) | (req.enable_alert_actions & mask)
    return _ok()


def get_fw_info(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    slots = (tuple(d.fw_slots) + ("",) * 4)[:4]
    return _ok(P.FwInfo(slots_supported=len(d.fw_slots), active_slot=d.fw_active_slot,
                        staged_slot=d.fw_staged_slot, online_activation_capable=False,
                        slot_revisions=slots).encode())


def get_poison_list(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = P.GetPoisonListInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    start, end = req.address, req.address + req.length
    if start % 64 or end > d.total_capacity:
        return ReturnCode.INVALID_PHYSICAL_ADDRESS, b""
    recs = [r for r in sorted(d.poison, key=lambda r: r.dpa) if r.dpa < end and r.dpa + r.length > start]
    cap = P.GetPoisonListOutput.max_records(d.payload_max)
    more = len(recs) > cap
    out_recs = tuple(P.PoisonRecord(dpa=r.dpa, length=r.length, source=r.source) for r in recs[:cap])
    return _ok(P.GetPoisonListOutput(flags=int(P.PoisonFlags.MORE) if more else 0, overflow_timestamp=0,
                                     records=out_recs).encode())


def inject_poison(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = P.InjectPoisonInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    if req.dpa % 64 or req.dpa >= d.total_capacity:
        return ReturnCode.INVALID_PHYSICAL_ADDRESS, b""
    if any(r.dpa == req.dpa for r in d.poison):
        return _ok()
    if len([r for r in d.poison if r.source == P.PoisonSource.INJECTED]) >= INJECT_POISON_LIMIT:
        return ReturnCode.INJECT_POISON_LIMIT_REACHED, b""
    d.poison.append(PoisonRecord(req.dpa, 64, int(P.PoisonSource.INJECTED)))
    return _ok()


def clear_poison(d: "Type3Device", raw: bytes, media: "MediaAccess | None") -> tuple[int, bytes]:
    try:
        req = P.ClearPoisonInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    if req.dpa % 64 or req.dpa >= d.total_capacity:
        return ReturnCode.INVALID_PHYSICAL_ADDRESS, b""
    d.poison = [r for r in d.poison if not (r.dpa <= req.dpa < r.dpa + r.length)]
    if media is not None:
        media.write(req.dpa, bytes(req.write_data))
    return _ok()


def sanitize(d: "Type3Device", _in: bytes, media: "MediaAccess | None") -> tuple[int, bytes]:
    if d.hdm and d.hdm.committed_decoders():
        return ReturnCode.BUSY, b""
    if media is not None:
        media.zero(0, d.total_capacity)
    d.poison.clear()
    return _ok()


def get_timestamp(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    return _ok(P.Timestamp(time.time_ns()).encode())


def get_supported_logs(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    cel = command_effects_log()
    return _ok(P.GetSupportedLogsOutput(entries=(P.SupportedLogEntry(log_id=P.CEL_UUID, size=len(cel)),)).encode())


def get_log(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = P.GetLogInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    if req.log_id != P.CEL_UUID:
        return ReturnCode.UNSUPPORTED, b""
    cel = command_effects_log()
    if req.offset + req.length > len(cel):
        return _invalid()
    return _ok(cel[req.offset:req.offset + req.length])


HANDLERS: dict[int, Handler] = {
    Opcode.IDENTIFY_MEMORY_DEVICE: identify,
    Opcode.GET_PARTITION_INFO: get_partition_info,
    Opcode.SET_PARTITION_INFO: set_partition_info,
    Opcode.GET_LSA: get_lsa,
    Opcode.SET_LSA: set_lsa,
    Opcode.GET_HEALTH_INFO: get_health_info,
    Opcode.GET_ALERT_CONFIG: get_alert_config,
    Opcode.SET_ALERT_CONFIG: set_alert_config,
    Opcode.GET_FW_INFO: get_fw_info,
    Opcode.GET_POISON_LIST: get_poison_list,
    Opcode.INJECT_POISON: inject_poison,
    Opcode.CLEAR_POISON: clear_poison,
    Opcode.SANITIZE: sanitize,
    Opcode.GET_TIMESTAMP: get_timestamp,
    Opcode.GET_SUPPORTED_LOGS: get_supported_logs,
    Opcode.GET_LOG: get_log,
}


def command_effects_log() -> bytes:
    return P.CommandEffectsLog(entries=tuple(P.CelEntry(opcode=int(op), effect=0) for op in HANDLERS)).encode()


def execute(d: "Type3Device", opcode: int, payload: bytes, media: MediaAccess | None = None) -> tuple[int, bytes]:
    h = HANDLERS.get(opcode)
    if h is None:
        return ReturnCode.UNSUPPORTED, b""
    return h(d, payload, media)
