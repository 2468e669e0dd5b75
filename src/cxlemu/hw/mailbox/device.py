"""The Type 3 device side of the mailbox: decode a command payload, act on the
device state, encode the response (CXL r3.1 §8.2.9).  Returns (return code,
output payload) like the hardware's mailbox status register and payload area.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from cxlemu.hw.mailbox.access import MediaAccess  # noqa: F401  (re-exported: the handlers' media)
from cxlemu.hw.mailbox.opcodes import Opcode, ReturnCode
from cxlemu.hw.poison import SOURCE_INJECTED
from cxlemu.util.lazy import lazy_module

P = lazy_module("cxlemu.hw.mailbox.payloads")   # payload codecs: imported when a command runs
E = lazy_module("cxlemu.hw.mailbox.events")     # event-record codecs, likewise
H = lazy_module("cxlemu.hw.health")             # health and alerts, likewise (the CEL needs none of them)

if TYPE_CHECKING:
    from cxlemu.hw.type3 import Type3Device

#: defaults (a device's own limits come from its topology: poison_max_records, inject_poison_limit)
POISON_LIST_MAX_RECORDS = 256
INJECT_POISON_LIMIT = 128
#: Get Scan Media Capabilities: estimated scan time, ms per GiB scanned
SCAN_MS_PER_GIB = 1000

Handler = Callable[["Type3Device", bytes, "MediaAccess | None"], "tuple[int, bytes]"]


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
        info_event_log_size=d.events.logs[0].capacity, warning_event_log_size=d.events.logs[1].capacity,
        failure_event_log_size=d.events.logs[2].capacity, fatal_event_log_size=d.events.logs[3].capacity,
        lsa_size=d.lsa_size,
        poison_list_max_records=d.poison.max_records,
        inject_poison_limit=d.poison.inject_limit if d.topo.poison_inject else 0,
        poison_caps=int(P.PoisonCaps.INJECTS_PERSISTENT_POISON | P.PoisonCaps.SCANS_FOR_POISON),
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
    return _ok(H.health_info(d).encode())


def get_alert_config(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    a = d.alert
    fields = {f: getattr(a, f) for f in (
        "life_used_prog_warn_threshold", "dev_over_temperature_prog_warn_threshold",
        "dev_under_temperature_prog_warn_threshold", "corrected_volatile_mem_err_prog_warn_threshold",
        "corrected_pmem_err_prog_warn_threshold")}
    return _ok(P.AlertConfig(valid_alerts=a.valid_alerts, programmable_alerts=0x1F,
                             life_used_crit_alert_threshold=a.life_used_crit_alert_threshold,
                             dev_over_temperature_crit_alert_threshold=a.dev_over_temperature_crit_alert_threshold,
                             dev_under_temperature_crit_alert_threshold=a.dev_under_temperature_crit_alert_threshold,
                             **fields).encode())


def set_alert_config(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = P.SetAlertConfig.decode(raw)
    except P.PayloadError:
        return _invalid()
    a = d.alert
    before = H.additional_status(d)
    mask = req.valid_alert_actions
    for bit, f in enumerate(("life_used_prog_warn_threshold", "dev_over_temperature_prog_warn_threshold",
                             "dev_under_temperature_prog_warn_threshold",
                             "corrected_volatile_mem_err_prog_warn_threshold",
                             "corrected_pmem_err_prog_warn_threshold")):
        if mask & (1 << bit):
            setattr(a, f, getattr(req, f))
    a.valid_alerts = (a.valid_alerts & ~mask) | (req.enable_alert_actions & mask)
    if any(x > y for x, y in zip(H.additional_status(d), before)):
        # a threshold moved below the current value: the warning fires now
        rec = E.EventRecord.build(E.MemoryModuleEvent(E.ModuleEventType.HEALTH_STATUS_CHANGE,
                                                      H.health_info(d).encode()),
                                  severity=E.EventLog.WARN, flags=H.record_flags(d), timestamp=d.timestamp())
        d.events.add(E.EventLog.WARN, rec, d.clock_ns)
    return _ok()


def get_fw_info(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    slots = (tuple(d.fw_slots) + ("",) * 4)[:4]
    return _ok(P.FwInfo(slots_supported=len(d.fw_slots), active_slot=d.fw_active_slot,
                        staged_slot=d.fw_staged_slot, online_activation_capable=False,
                        slot_revisions=slots).encode())


def get_poison_list(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    """Get Poison List (r3.1 8.2.9.9.4.1): the listed records overlapping the
    range, as many as fit the payload; MORE asks the host to repeat the
    identical request for the next ones; OVERFLOW carries its timestamp."""
    try:
        req = P.GetPoisonListInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    start, end = req.address, req.address + req.length
    if not req.length or end > d.total_capacity:
        return ReturnCode.INVALID_PHYSICAL_ADDRESS, b""
    cap = P.GetPoisonListOutput.max_records(d.payload_max)
    page, more = d.poison.list_page(start, end, cap)
    flags = (P.PoisonFlags.MORE if more else 0) | (P.PoisonFlags.OVERFLOW if d.poison.overflow else 0)
    out_recs = tuple(P.PoisonRecord(dpa=r.dpa, length=r.length, source=r.source) for r in page)
    return _ok(P.GetPoisonListOutput(flags=int(flags), overflow_timestamp=d.poison.overflow_ts if d.poison.overflow
                                     else 0, records=out_recs).encode())


def inject_poison(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    """Inject Poison (8.2.9.9.4.2): one 64-byte line becomes poisoned (a line
    already poisoned is a success that adds nothing); at the device's
    injection limit: Inject Poison Limit Reached."""
    try:
        req = P.InjectPoisonInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    if req.dpa % 64 or req.dpa >= d.total_capacity:
        return ReturnCode.INVALID_PHYSICAL_ADDRESS, b""
    if d.poison.covers(req.dpa):
        return _ok()
    if d.poison.injected_count >= d.poison.inject_limit:
        return ReturnCode.INJECT_POISON_LIMIT_REACHED, b""
    d.poison.add(req.dpa, 64, SOURCE_INJECTED, d.timestamp())
    # "the device adds a poison creation event to its Informational Event log"
    log_media_error(d, req.dpa, E.TransactionType.HOST_INJECT_POISON, uncorrectable=False, log=E.EventLog.INFO)
    return _ok()


def clear_poison(d: "Type3Device", raw: bytes, media: "MediaAccess | None") -> tuple[int, bytes]:
    """Clear Poison (8.2.9.9.4.3): the line is written with the 64 bytes of
    write data and is no longer poisoned; clearing a line that was not
    poisoned is not an error (the data is written anyway)."""
    try:
        req = P.ClearPoisonInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    if req.dpa % 64 or req.dpa + 64 > d.total_capacity:
        return ReturnCode.INVALID_PHYSICAL_ADDRESS, b""
    d.poison.clear(req.dpa, 64, d.timestamp())
    if media is not None:
        media.write(req.dpa, bytes(req.write_data))
    return _ok()


def get_scan_media_caps(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = E.ScanMediaInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    if req.flags is not None or req.address + req.length > d.total_capacity or not req.length:
        return ReturnCode.INVALID_PHYSICAL_ADDRESS, b""
    ms = max(1, req.length * SCAN_MS_PER_GIB // (1 << 30))
    return _ok(ms.to_bytes(4, "little"))


def scan_media(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    """Scan Media (8.2.9.9.4.5), a background command that completes at once
    here: every media error in the range is found, relisted while the poison
    list has room, and (unless "No Event Log") reported in a General Media
    event with transaction type Host Scan Media."""
    try:
        req = E.ScanMediaInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    if req.flags is None or req.address + req.length > d.total_capacity or not req.length:
        return ReturnCode.INVALID_PHYSICAL_ADDRESS, b""
    lo, hi = req.address, req.address + req.length
    unlisted_before = {r.dpa for r in d.poison.in_range(lo, hi) if not r.listed}
    found = d.poison.scan(lo, hi, d.timestamp())
    d.scan_results = [P.PoisonRecord(r.dpa, r.length, r.source) for r in found]
    d.scan_range = (lo, hi)
    if not req.flags & E.SCAN_NO_EVENT_LOG:
        for r in found:
            if r.dpa in unlisted_before:
                log_media_error(d, r.dpa, E.TransactionType.HOST_SCAN_MEDIA)
    return _ok()


def get_scan_media_results(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    cap = E.GetScanMediaResultsOutput.max_records(d.payload_max)
    page, rest = d.scan_results[:cap], d.scan_results[cap:]
    d.scan_results = rest
    flags = E.ScanResultFlags.MORE if rest else 0
    return _ok(E.GetScanMediaResultsOutput(restart_address=0, restart_length=0, flags=int(flags),
                                           records=tuple(page)).encode())


def log_media_error(d: "Type3Device", dpa: int, transaction: int, uncorrectable: bool = True,
                    log: int | None = None) -> E.EventRecord | None:
    """The General Media Event Record a device logs for a media error it detected
    (in the Failure log unless ``log`` names another)."""
    if log is None:                   # (not a default value: the event codecs load on first use)
        log = E.EventLog.FAIL
    flags = E.DPA_VOLATILE if dpa < d.ram_size else 0
    body = E.GeneralMediaEvent(dpa=dpa - dpa % 64, dpa_flags=flags,
                               descriptor=E.MediaDescriptor.UNCORRECTABLE if uncorrectable else 0,
                               type=E.MediaEventType.ECC_ERROR, transaction_type=transaction)
    rec = E.EventRecord.build(body, severity=log, timestamp=d.timestamp())
    return d.events.add(log, rec, d.clock_ns)


def sanitize(d: "Type3Device", _in: bytes, media: "MediaAccess | None") -> tuple[int, bytes]:
    if d.hdm and d.hdm.committed_decoders():
        return ReturnCode.BUSY, b""
    if media is not None:
        media.zero(0, d.total_capacity)
    d.poison.clear_all()
    return _ok()


def get_timestamp(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    """The device's timestamp (CXL r3.1 8.2.9.4.1): what Set Timestamp last
    stored, advanced by the device's clock since (``clock_ns``, the kernel's
    simulated time: no host wall clock enters model state, so a replayed
    journal and two identical machines answer alike); 0 if never set."""
    return _ok(P.Timestamp(d.timestamp()).encode())


def set_timestamp(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = P.Timestamp.decode(raw)
    except P.PayloadError:
        return _invalid()
    d.timestamp_base, d.timestamp_set_at = req.nanoseconds, d.clock_ns
    return _ok()


# ---- events (01xxh) -------------------------------------------------------------------------

def get_event_records(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    if len(raw) != 1:
        return ReturnCode.INVALID_PAYLOAD_LENGTH, b""
    which = raw[0]
    if which >= len(d.events.logs):
        return _invalid()
    cap = E.GetEventRecordsOutput.max_records(d.payload_max)
    recs, more, lg = d.events.get(which, cap)
    flags = (E.GetEventFlags.MORE if more else 0) | (E.GetEventFlags.OVERFLOW if lg.overflow_count else 0)
    return _ok(E.GetEventRecordsOutput(int(flags), lg.overflow_count, lg.first_overflow_ts, lg.last_overflow_ts,
                                       tuple(recs)).encode())


def clear_event_records(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = E.ClearEventRecordsInput.decode(raw)
    except P.PayloadError:
        return ReturnCode.INVALID_PAYLOAD_LENGTH, b""
    if req.log >= len(d.events.logs):
        return _invalid()
    if not d.events.clear(req.log, req.handles, bool(req.flags & E.CLEAR_ALL_EVENTS)):
        return ReturnCode.INVALID_HANDLE, b""
    return _ok()


def get_event_interrupt_policy(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    return _ok(d.events.policy().encode())


def set_event_interrupt_policy(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        p = E.EventInterruptPolicy.decode(raw)
    except P.PayloadError:
        return ReturnCode.INVALID_PAYLOAD_LENGTH, b""
    if any(E.EventInterruptPolicy.mode(v) == E.InterruptMode.MSI_MSIX for v in (p.info, p.warn, p.fail, p.fatal)) \
            and not d.topo.event_irq:
        return _invalid()          # no MSI/MSI-X vector to signal with
    d.events.set_policy(p)
    return _ok()


def get_supported_logs(d: "Type3Device", _in: bytes, _m) -> tuple[int, bytes]:
    cel = command_effects_log(d)
    return _ok(P.GetSupportedLogsOutput(entries=(P.SupportedLogEntry(log_id=P.CEL_UUID, size=len(cel)),)).encode())


def get_log(d: "Type3Device", raw: bytes, _m) -> tuple[int, bytes]:
    try:
        req = P.GetLogInput.decode(raw)
    except P.PayloadError:
        return _invalid()
    if req.log_id != P.CEL_UUID:
        return ReturnCode.UNSUPPORTED, b""
    cel = command_effects_log(d)
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
    Opcode.GET_SCAN_MEDIA_CAPABILITIES: get_scan_media_caps,
    Opcode.SCAN_MEDIA: scan_media,
    Opcode.GET_SCAN_MEDIA_RESULTS: get_scan_media_results,
    Opcode.SANITIZE: sanitize,
    Opcode.GET_TIMESTAMP: get_timestamp,
    Opcode.SET_TIMESTAMP: set_timestamp,
    Opcode.GET_EVENT_RECORDS: get_event_records,
    Opcode.CLEAR_EVENT_RECORDS: clear_event_records,
    Opcode.GET_EVENT_INTERRUPT_POLICY: get_event_interrupt_policy,
    Opcode.SET_EVENT_INTERRUPT_POLICY: set_event_interrupt_policy,
    Opcode.GET_SUPPORTED_LOGS: get_supported_logs,
    Opcode.GET_LOG: get_log,
}


def supported_opcodes(d: "Type3Device | None" = None) -> list[int]:
    """Opcodes the device implements (its Command Effects Log): a device
    built without poison injection (topology ``poison_inject = false``) does
    not list Inject/Clear Poison."""
    ops = list(HANDLERS)
    if d is not None and not d.topo.poison_inject:
        ops = [op for op in ops if op not in (Opcode.INJECT_POISON, Opcode.CLEAR_POISON)]
    return ops


def command_effects_log(d: "Type3Device | None" = None) -> bytes:
    return P.CommandEffectsLog(entries=tuple(P.CelEntry(opcode=int(op), effect=0)
                                             for op in supported_opcodes(d))).encode()


class LinkDown(Exception):
    """The device does not answer: its link is down (the mailbox times out)."""


def execute(d: "Type3Device", opcode: int, payload: bytes, media: MediaAccess | None = None) -> tuple[int, bytes]:
    if not d.link_up:
        raise LinkDown(d.name)
    h = HANDLERS.get(opcode)
    if h is None or (opcode in _INJECT_OPS and not d.topo.poison_inject):
        return ReturnCode.UNSUPPORTED, b""
    return h(d, payload, media)


_INJECT_OPS = frozenset({Opcode.INJECT_POISON, Opcode.CLEAR_POISON})
