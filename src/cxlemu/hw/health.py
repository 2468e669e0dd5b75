"""Device health, alert thresholds and the event records a health change
produces (CXL r3.1 §8.2.9.9.3 "Health Information and Alerts", §8.2.9.2.1.3
"Memory Module Event Record").

Get Health Info's *Additional Status* byte is computed from the values and
the alert configuration:

* life used: warning when it reaches the programmable warning threshold (if
  that alert is enabled), critical when it reaches the device's critical
  threshold;
* device temperature: warning above the programmable over-temperature or
  below the under-temperature warning threshold (each if enabled), critical
  beyond the device's critical thresholds;
* corrected volatile / persistent error counts: warning when they reach
  their programmable thresholds (if enabled).

When a health value changes the device logs a Memory Module Event Record
carrying the new health snapshot: Life Used Change, Temperature Change,
Health Status Change (health status flags, dirty shutdown count, corrected
error counts) or Media Status Change.  The record goes to the Warning log
when a status entered warning, to the Failure log when it entered critical
(and for a media status that lost data or persistence), else to the
Informational log.  Its header flags carry Maintenance Needed, Performance
Degraded and Hardware Replacement Needed as the health status has them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.util.lazy import lazy_module
from cxlemu.hw.mailbox.events import EventLog, EventRecord, MemoryModuleEvent, ModuleEventType, RecordFlags

P = lazy_module("cxlemu.hw.mailbox.payloads")   # payload codecs: imported when a command runs

if TYPE_CHECKING:
    from cxlemu.hw.type3 import Type3Device

#: the health fields ``apply`` accepts, with their types
FIELDS = {
    "life_used": int, "temperature": int, "dirty_shutdowns": int, "volatile_errors": int, "pmem_errors": int,
    "maintenance_needed": bool, "performance_degraded": bool, "hw_replacement_needed": bool, "media_status": int,
}
_ATTR = {"life_used": "life_used_percent"}


def _data_loss_media() -> set:
    M = P.MediaStatus
    return {M.PERSISTENCE_LOST, M.DATA_LOST, M.POWERLOSS_DATA_LOSS, M.SHUTDOWN_DATA_LOSS,
            M.POWERLOSS_PERSISTENCE_LOSS, M.SHUTDOWN_PERSISTENCE_LOSS}


def additional_status(d: "Type3Device") -> tuple[int, int, int, int]:
    """(life used, temperature, corrected volatile, corrected persistent) status."""
    h, a = d.health, d.alert
    en = a.valid_alerts
    W, C, N = P.ExtStatus.WARNING, P.ExtStatus.CRITICAL, P.ExtStatus.NORMAL
    life = N
    if h.life_used_percent >= a.life_used_crit_alert_threshold:
        life = C
    elif en & P.AlertBits.LIFE_USED_PROG_WARN and h.life_used_percent >= a.life_used_prog_warn_threshold:
        life = W
    t = h.temperature
    temp = N
    if t >= a.dev_over_temperature_crit_alert_threshold or t <= a.dev_under_temperature_crit_alert_threshold:
        temp = C
    elif (en & P.AlertBits.DEV_OVER_TEMPERATURE_PROG_WARN and t >= a.dev_over_temperature_prog_warn_threshold) or \
            (en & P.AlertBits.DEV_UNDER_TEMPERATURE_PROG_WARN and t <= a.dev_under_temperature_prog_warn_threshold):
        temp = W
    vol = W if en & P.AlertBits.CORRECTED_VOLATILE_MEM_ERR_PROG_WARN and \
        h.volatile_errors >= a.corrected_volatile_mem_err_prog_warn_threshold else N
    pm = W if en & P.AlertBits.CORRECTED_PMEM_ERR_PROG_WARN and \
        h.pmem_errors >= a.corrected_pmem_err_prog_warn_threshold else N
    return int(life), int(temp), int(vol), int(pm)


def health_info(d: "Type3Device") -> P.HealthInfo:
    h = d.health
    status = 0
    if h.maintenance_needed:
        status |= P.HealthStatus.MAINTENANCE_NEEDED
    if h.performance_degraded:
        status |= P.HealthStatus.PERFORMANCE_DEGRADED
    if h.hw_replacement_needed:
        status |= P.HealthStatus.HW_REPLACEMENT_NEEDED
    life, temp, vol, pm = additional_status(d)
    return P.HealthInfo(
        health_status=int(status), media_status=int(h.media_status),
        life_used_status=life, temperature_status=temp, corrected_volatile_status=vol,
        corrected_persistent_status=pm, life_used=h.life_used_percent, temperature=h.temperature,
        dirty_shutdown_count=h.dirty_shutdowns, corrected_volatile_error_count=h.volatile_errors,
        corrected_persistent_error_count=h.pmem_errors)


def validate(changes: dict[str, object]) -> str | None:
    """An error message for values the Get Health Info fields cannot carry."""
    for k, v in changes.items():
        if k not in FIELDS:
            return f"unknown health field {k!r} (known: {', '.join(sorted(FIELDS))})"
        if FIELDS[k] is int and (isinstance(v, bool) or not isinstance(v, int)):
            return f"{k} needs an integer"
        if FIELDS[k] is bool and not isinstance(v, bool):
            return f"{k} needs true or false"
    if "life_used" in changes and not 0 <= int(changes["life_used"]) <= 100:   # type: ignore[arg-type]
        return "life_used is a percentage (0..100)"
    if "temperature" in changes and not -0x8000 <= int(changes["temperature"]) <= 0x7FFF \
            or changes.get("temperature") == -1:
        return "temperature must fit a signed 16-bit value other than -1 (0xffff means 'not implemented')"
    for k in ("dirty_shutdowns", "volatile_errors", "pmem_errors"):
        if k in changes and not 0 <= int(changes[k]) < 1 << 32:   # type: ignore[arg-type]
            return f"{k} must be between 0 and 4294967295"
    if "media_status" in changes and int(changes["media_status"]) not in {m.value for m in P.MediaStatus}:  # type: ignore[arg-type]
        return "media_status must be 0..9 (payloads.MediaStatus)"
    return None


def _event_type(changed: set[str]) -> int:
    if "media_status" in changed:
        return ModuleEventType.MEDIA_STATUS_CHANGE
    if "life_used" in changed:
        return ModuleEventType.LIFE_USED_CHANGE
    if "temperature" in changed:
        return ModuleEventType.TEMPERATURE_CHANGE
    return ModuleEventType.HEALTH_STATUS_CHANGE


def record_flags(d: "Type3Device") -> int:
    h = d.health
    f = 0
    if h.maintenance_needed:
        f |= RecordFlags.MAINTENANCE_NEEDED
    if h.performance_degraded:
        f |= RecordFlags.PERFORMANCE_DEGRADED
    if h.hw_replacement_needed:
        f |= RecordFlags.HW_REPLACEMENT_NEEDED | RecordFlags.PERMANENT
    return int(f)


def apply(d: "Type3Device", changes: dict[str, object], now_ns: int) -> EventRecord | None:
    """Change health values (``validate`` them first) and log the Memory Module
    event the device reports for it; returns the logged record (None when
    nothing changed or the log overflowed)."""
    before = additional_status(d)
    changed = set()
    for k, v in changes.items():
        attr = _ATTR.get(k, k)
        if getattr(d.health, attr) != v:
            setattr(d.health, attr, v)
            changed.add(k)
    if not changed:
        return None
    after = additional_status(d)
    log = EventLog.INFO
    if any(a > b and a == P.ExtStatus.WARNING for a, b in zip(after, before)):
        log = EventLog.WARN
    if any(a > b and a == P.ExtStatus.CRITICAL for a, b in zip(after, before)) or \
            ("media_status" in changed and d.health.media_status in _data_loss_media()) or \
            ("hw_replacement_needed" in changed and d.health.hw_replacement_needed):
        log = EventLog.FAIL
    if log == EventLog.INFO and changed & {"maintenance_needed", "performance_degraded", "dirty_shutdowns"}:
        log = EventLog.WARN
    body = MemoryModuleEvent(event_type=_event_type(changed), health_info=health_info(d).encode())
    rec = EventRecord.build(body, severity=int(log), flags=record_flags(d), timestamp=d.timestamp())
    return d.events.add(int(log), rec, now_ns)
