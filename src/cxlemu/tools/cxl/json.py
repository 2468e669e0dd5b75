"""JSON objects of ``cxl list`` (cxl/json.c v81; ``daxregion`` is daxctl's
builder, :mod:`cxlemu.tools.daxctl.daxjson`), built as insertion-ordered dicts for
:mod:`cxlemu.tools.common.jsonc`.

json-c keeps insertion order and replaces a repeated key *in place*, which
is what a Python dict does; so the double ``alias`` of a dport whose only
link is ``firmware_node`` ends up as one ``alias`` (the firmware node) at
the position of the first.

Values follow the C types of the real builders: ``json_object_new_int``
takes an int32 (:func:`_int`), sizes go through ``util_json_object_size``
(int64, or the ``-u`` text) and hex values through
``util_json_object_hex``.  Two libcxl quirks are kept on purpose:
``life_used_percent`` / ``temperature`` print -95 (``-EOPNOTSUPP``) when
the device reports "not implemented", and temperatures are the raw
unsigned 16-bit field (a negative temperature prints above 65000).
"""

from __future__ import annotations

from typing import Any, TextIO

from cxlemu.util.lazy import lazy_module
from cxlemu.tools.daxctl import daxjson
from cxlemu.tools.common.util_json import (UTIL_JSON_ALERT_CONFIG, UTIL_JSON_DAX, UTIL_JSON_FIRMWARE,
                                           UTIL_JSON_EXTENTS, UTIL_JSON_HEALTH, UTIL_JSON_MEDIA_ERRORS,
                                           UTIL_JSON_PARTITION,
                                           UTIL_JSON_TARGETS, json_object_hex, json_object_size)
from cxlemu.tools.libcxl import Bus, Decoder, DecoderMode, Endpoint, Memdev, Port, Region, mode_name
from cxlemu.tools.libcxl.cnum import U32_MAX, U64_MAX, to_s32, to_u32
from cxlemu.tools.libcxl.memdev import CXL_QOS_CLASS_NONE

payloads = lazy_module("cxlemu.hw.mailbox.payloads")   # health/alert bits: imported for -H only

__all__ = [
    "memdev_to_json", "bus_to_json", "port_to_json", "endpoint_to_json",
    "decoder_to_json", "region_to_json", "dports_append_json",
    "targets_append_json", "mappings_append_json",
    "TRACEFS_FAILED",
]

EOPNOTSUPP = 95
CXL_FW_MAX_SLOTS = 4
#: what util_cxl_poison_list_to_json() prints when no tracefs instance can
#: be created (libtracefs finds no tracing directory)
TRACEFS_FAILED = "tracefs_instance_create() failed\n"

JsonObj = dict[str, Any]


def _int(v: int) -> int:
    """``json_object_new_int()``: an int32."""
    return to_s32(v)


# ---------------------------------------------------------------------------
# memdev
# ---------------------------------------------------------------------------

def _ext3(value: int) -> str:
    return {0: "normal", 1: "warning", 2: "critical"}.get(value, "unknown")


def _ext2(value: int) -> str:
    return {0: "normal", 1: "warning"}.get(value, "unknown")


def health_to_json(memdev: Memdev, flags: int) -> JsonObj | None:
    """``util_cxl_memdev_health_to_json()``."""
    h = memdev.mailbox.health_info()
    if h is None:
        return None
    hs, ms = h.health_status, h.media_status
    out: JsonObj = {
        "maintenance_needed": bool(hs & payloads.HealthStatus.MAINTENANCE_NEEDED),
        "performance_degraded": bool(hs & payloads.HealthStatus.PERFORMANCE_DEGRADED),
        "hw_replacement_needed": bool(hs & payloads.HealthStatus.HW_REPLACEMENT_NEEDED),
        "media_normal": ms == payloads.MediaStatus.NORMAL,
        "media_not_ready": ms == payloads.MediaStatus.NOT_READY,
        "media_persistence_lost": ms == payloads.MediaStatus.PERSISTENCE_LOST,
        "media_data_lost": ms == payloads.MediaStatus.DATA_LOST,
        "media_powerloss_persistence_loss": ms == payloads.MediaStatus.POWERLOSS_PERSISTENCE_LOSS,
        "media_shutdown_persistence_loss": ms == payloads.MediaStatus.SHUTDOWN_PERSISTENCE_LOSS,
        "media_persistence_loss_imminent": ms == payloads.MediaStatus.PERSISTENCE_LOSS_IMMINENT,
        "media_powerloss_data_loss": ms == payloads.MediaStatus.POWERLOSS_DATA_LOSS,
        "media_shutdown_data_loss": ms == payloads.MediaStatus.SHUTDOWN_DATA_LOSS,
        "media_data_loss_imminent": ms == payloads.MediaStatus.DATA_LOSS_IMMINENT,
        "ext_life_used": _ext3(h.life_used_status),
        "ext_temperature": _ext3(h.temperature_status),
        "ext_corrected_volatile": _ext2(h.corrected_volatile_status),
        "ext_corrected_persistent": _ext2(h.corrected_persistent_status),
    }
    # cxl_cmd_health_info_get_life_used()/get_temperature() return
    # -EOPNOTSUPP for "not implemented"; json.c compares the u32 result
    # with 0xff / 0xffff, so the negative errno is printed.
    life = -EOPNOTSUPP if h.life_used is None else h.life_used
    if to_u32(life) != 0xFF:
        out["life_used_percent"] = _int(life)
    temp = -EOPNOTSUPP if h.temperature is None else h.temperature_raw
    if to_u32(temp) != 0xFFFF:
        out["temperature"] = _int(temp)
    out["dirty_shutdowns"] = h.dirty_shutdown_count & U32_MAX
    out["volatile_errors"] = h.corrected_volatile_error_count & U32_MAX
    out["pmem_errors"] = h.corrected_persistent_error_count & U32_MAX
    return out


_ALERTS = (   # (JSON name, AlertBits member)
    ("life_used", "LIFE_USED_PROG_WARN"),
    ("dev_over_temperature", "DEV_OVER_TEMPERATURE_PROG_WARN"),
    ("dev_under_temperature", "DEV_UNDER_TEMPERATURE_PROG_WARN"),
    ("corrected_volatile_mem_err", "CORRECTED_VOLATILE_MEM_ERR_PROG_WARN"),
    ("corrected_pmem_err", "CORRECTED_PMEM_ERR_PROG_WARN"),
)


def alert_config_to_json(memdev: Memdev, flags: int) -> JsonObj | None:
    """``util_cxl_memdev_alert_config_to_json()``."""
    a = memdev.mailbox.alert_config()
    if a is None:
        return None
    out: JsonObj = {}
    alerts = [(name, getattr(payloads.AlertBits, bit)) for name, bit in _ALERTS]
    for name, bit in alerts:
        out[f"{name}_prog_warn_threshold_valid"] = bool(a.valid_alerts & bit)
    for name, bit in alerts:
        out[f"{name}_prog_warn_threshold_writable"] = bool(a.programmable_alerts & bit)
    u16 = 0xFFFF  # libcxl reads the thresholds as unsigned le16/u8 fields
    out["life_used_crit_alert_threshold"] = a.life_used_crit_alert_threshold & 0xFF
    out["life_used_prog_warn_threshold"] = a.life_used_prog_warn_threshold & 0xFF
    out["dev_over_temperature_crit_alert_threshold"] = a.dev_over_temperature_crit_alert_threshold & u16
    out["dev_under_temperature_crit_alert_threshold"] = a.dev_under_temperature_crit_alert_threshold & u16
    out["dev_over_temperature_prog_warn_threshold"] = a.dev_over_temperature_prog_warn_threshold & u16
    out["dev_under_temperature_prog_warn_threshold"] = a.dev_under_temperature_prog_warn_threshold & u16
    out["corrected_volatile_mem_err_prog_warn_threshold"] = \
        a.corrected_volatile_mem_err_prog_warn_threshold & u16
    out["corrected_pmem_err_prog_warn_threshold"] = a.corrected_pmem_err_prog_warn_threshold & u16
    return out


def partition_to_json(memdev: Memdev, flags: int) -> JsonObj | None:
    """``util_cxl_memdev_partition_to_json()``: IDENTIFY sizes, then (if the
    partition alignment is non-zero) GET_PARTITION_INFO."""
    ident = memdev.mailbox.identify()
    if ident is None:
        return None
    out: JsonObj = {
        "total_size": json_object_size(ident.total_capacity, flags),
        "volatile_only_size": json_object_size(ident.volatile_only_capacity, flags),
        "persistent_only_size": json_object_size(ident.persistent_only_capacity, flags),
        "partition_alignment_size": json_object_size(ident.partition_align, flags),
    }
    if not ident.partition_align:
        return out
    part = memdev.mailbox.partition_info()
    if part is None:
        return out
    out["active_volatile_size"] = json_object_size(part.active_volatile, flags)
    out["active_persistent_size"] = json_object_size(part.active_persistent, flags)
    out["next_volatile_size"] = json_object_size(part.next_volatile, flags)
    out["next_persistent_size"] = json_object_size(part.next_persistent, flags)
    return out


def firmware_to_json(memdev: Memdev, flags: int) -> JsonObj | None:
    """``util_cxl_memdev_fw_to_json()``."""
    fw = memdev.mailbox.fw_info()
    if fw is None:
        return None
    out: JsonObj = {"num_slots": _int(fw.slots_supported), "active_slot": _int(fw.active_slot)}
    if 0 < fw.staged_slot <= fw.slots_supported:
        out["staged_slot"] = _int(fw.staged_slot)
    out["online_activate_capable"] = bool(fw.online_activation_capable)
    for slot in range(1, CXL_FW_MAX_SLOTS + 1):
        rev = fw.revision(slot)
        if rev:
            out[f"slot_{slot}_version"] = rev[:16]
    busy = memdev.fw_update_in_progress()
    out["fw_update_in_progress"] = busy
    if busy:
        out["remaining_size"] = json_object_size(memdev.fw_update_get_remaining(), flags)
    return out


#: CXL r3.1 Table 8-140 Media Error Record "Error Source" names (cxl/json.c)
POISON_SOURCE = ("Unknown", "External", "Internal", "Injected", "Reserved", "Reserved", "Reserved",
                 "Vendor Specific")
POISON_FLAG_MORE, POISON_FLAG_OVERFLOW, POISON_FLAG_SCANNING = 1, 2, 4
ULLONG_MAX = (1 << 64) - 1


def poison_list_to_json(obj: Memdev | Region, stderr: TextIO, flags: int) -> list | None:
    """``util_cxl_poison_list_to_json()`` (-L): a tracefs instance named "cxl
    list", ``cxl:cxl_poison`` enabled and tracing on, ``trigger_poison_list``
    written (for a region: on each mapped memdev), tracing off, then this
    process's ``cxl_poison`` records parsed from the per-CPU raw buffers
    (``poison_event_to_json``).  No tracing directory: "tracefs_instance_create()
    failed" and no ``media_errors``; no record: no ``media_errors`` either."""
    import os

    from cxlemu.tools.common import tracefs as T
    backend = obj.ctx.io.backend
    tfs = T.Tracefs.find(backend)
    inst = None
    if tfs is not None:
        try:
            inst = tfs.instance_create("cxl list")
        except OSError:
            inst = None
    if tfs is None or inst is None:
        stderr.write(TRACEFS_FAILED)
        return None
    try:
        tfs.event_enable(inst, "cxl", "cxl_poison")
        if not tfs.trace_is_on(inst):
            tfs.trace_on(inst, True)
    except OSError as e:
        stderr.write(f"Failed to enable trace: {-(e.errno or 1)}\n")
        return None
    try:
        if isinstance(obj, Region):
            obj.trigger_poison_list()
        else:
            obj.trigger_poison_list()
    except OSError:
        return None
    try:
        tfs.trace_on(inst, False)
    except OSError as e:
        stderr.write(f"Failed to disable trace: {-(e.errno or 1)}\n")
        return None
    region_name = obj.devname if isinstance(obj, Region) else None
    region_res = obj.resource if isinstance(obj, Region) else 0
    pid = os.getpid()
    out: list = []

    def one(ev, rec) -> None:
        if ev.system != "cxl" or ev.name != "cxl_poison" or T.record_pid(rec) != pid:
            return
        if region_name is not None and T.field_str(ev, rec, "region") != region_name:
            return
        jp: JsonObj = {}
        if region_name is not None:
            off = T.field_val(ev, rec, "hpa")
            if off is not None and off != ULLONG_MAX:
                jp["offset"] = json_object_hex((off - region_res) & ULLONG_MAX, flags)
        else:
            off = T.field_val(ev, rec, "dpa")
            if off is not None and off != ULLONG_MAX:
                jp["offset"] = json_object_hex(off, flags)
        length = T.field_val(ev, rec, "dpa_length")
        jp["length"] = json_object_size(length if length is not None else U32_MAX, flags)
        src = T.field_val(ev, rec, "source")
        src = 0xFF if src is None else src
        jp["source"] = POISON_SOURCE[src] if src <= 7 else "Reserved"
        pflags = T.field_val(ev, rec, "flags")
        pflags = 0xFF if pflags is None else pflags
        overflow = False
        if pflags and pflags < 0xFF:
            text = ""
            if pflags & POISON_FLAG_MORE:
                text += "More,"
            if pflags & POISON_FLAG_SCANNING:
                text += "Scanning,"
            if pflags & POISON_FLAG_OVERFLOW:
                text += "Overflow,"
                overflow = True
            jp["flags"] = text
        if overflow:
            ts = T.field_val(ev, rec, "overflow_ts")
            jp["overflow_t"] = json_object_hex(ts if ts is not None else ULLONG_MAX, flags)
        out.append(jp)

    tfs.iterate_raw_events(inst, one)
    return out or None


def memdev_to_json(memdev: Memdev, flags: int, stderr: TextIO) -> JsonObj:
    """``util_cxl_memdev_to_json()``."""
    out: JsonObj = {"memdev": memdev.devname}
    if memdev.pmem_size:
        out["pmem_size"] = json_object_size(memdev.pmem_size, flags)
        if memdev.pmem_qos_class != CXL_QOS_CLASS_NONE:
            out["pmem_qos_class"] = _int(memdev.pmem_qos_class)
    if memdev.ram_size:
        out["ram_size"] = json_object_size(memdev.ram_size, flags)
        if memdev.ram_qos_class != CXL_QOS_CLASS_NONE:
            out["ram_qos_class"] = _int(memdev.ram_qos_class)
    if getattr(memdev, "dynamic_ram_1_size", 0):          # ndctl DCD series
        out["dynamic_ram_1_size"] = json_object_size(memdev.dynamic_ram_1_size, flags)
        if getattr(memdev, "dynamic_ram_1_qos_class", CXL_QOS_CLASS_NONE) != CXL_QOS_CLASS_NONE:
            out["dynamic_ram_1_qos_class"] = _int(memdev.dynamic_ram_1_qos_class)
    if flags & UTIL_JSON_HEALTH:
        j = health_to_json(memdev, flags)
        if j is not None:
            out["health"] = j
    if flags & UTIL_JSON_ALERT_CONFIG:
        j = alert_config_to_json(memdev, flags)
        if j is not None:
            out["alert_config"] = j
    if memdev.serial < U64_MAX:
        out["serial"] = json_object_hex(memdev.serial, flags)
    if memdev.numa_node >= 0:
        out["numa_node"] = _int(memdev.numa_node)
    out["host"] = memdev.host
    if memdev.firmware_version is not None:
        out["firmware_version"] = memdev.firmware_version
    if not memdev.is_enabled():
        out["state"] = "disabled"
    if flags & UTIL_JSON_PARTITION:
        j = partition_to_json(memdev, flags)
        if j is not None:
            out["partition_info"] = j
    if flags & UTIL_JSON_FIRMWARE:
        j = firmware_to_json(memdev, flags)
        if j is not None:
            out["firmware"] = j
    if flags & UTIL_JSON_MEDIA_ERRORS:
        j = poison_list_to_json(memdev, stderr, flags)
        if j is not None:
            out["media_errors"] = j
    return out


# ---------------------------------------------------------------------------
# buses, ports, endpoints, dports
# ---------------------------------------------------------------------------

def bus_to_json(bus: Bus, flags: int) -> JsonObj:
    return {"bus": bus.devname, "provider": bus.provider}


def _alias_keys(out: JsonObj, phys: str | None, fw: str | None) -> None:
    if phys is not None:
        out["alias"] = phys
    if fw is not None:
        out["alias"] = fw


def dports_append_json(jport: JsonObj, port: Port, ident: str | None,
                       serial: str | None, flags: int) -> None:
    """``util_cxl_dports_append_json()``: only with -T and some dports."""
    from .filter import dport_filter_by_memdev
    n = port.nr_dports
    if not n or not flags & UTIL_JSON_TARGETS:
        return
    jport["nr_dports"] = _int(n)
    arr = []
    for dport in port.dports():
        if not dport_filter_by_memdev(dport, ident, serial):
            continue
        j: JsonObj = {"dport": dport.devname}
        _alias_keys(j, dport.physical_node, dport.firmware_node)
        j["id"] = json_object_hex(dport.id, flags)
        arr.append(j)
    jport["dports"] = arr


def _port_to_json(port: Port, name_key: str, flags: int) -> JsonObj:
    out: JsonObj = {name_key: port.devname, "host": port.host}
    dport = port.parent_dport
    if dport is not None:
        out["parent_dport"] = dport.devname
    out["depth"] = _int(port.depth)
    if not port.is_enabled():
        out["state"] = "disabled"
    out["decoders_committed"] = _int(port.decoders_committed)
    return out


def port_to_json(port: Port, flags: int) -> JsonObj:
    return _port_to_json(port, "port", flags)


def endpoint_to_json(endpoint: Endpoint, flags: int) -> JsonObj:
    return _port_to_json(endpoint, "endpoint", flags)


# ---------------------------------------------------------------------------
# decoders and targets
# ---------------------------------------------------------------------------

def decoder_to_json(decoder: Decoder, flags: int) -> JsonObj:
    """``util_cxl_decoder_to_json()``."""
    port = decoder.port
    out: JsonObj = {"decoder": decoder.devname}
    size, start = decoder.size, decoder.start
    if size and start < U64_MAX:
        out["resource"] = json_object_hex(start, flags)
    if size and size < U64_MAX:
        out["size"] = json_object_size(size, flags)
    ways = decoder.interleave_ways
    if ways < U32_MAX:
        out["interleave_ways"] = _int(ways)
        if ways > 1 and decoder.interleave_granularity < U32_MAX:
            out["interleave_granularity"] = _int(decoder.interleave_granularity)
    region = decoder.region
    if region is not None:
        out["region"] = region.devname
    if size == 0:
        out["state"] = "disabled"
    if port.is_endpoint():
        mode = decoder.get_mode()
        dsize, dres = decoder.get_dpa_size(), decoder.get_dpa_resource()
        if dsize and dres < U64_MAX:
            out["dpa_resource"] = json_object_hex(dres, flags)
        if dsize and dsize < U64_MAX:
            out["dpa_size"] = json_object_size(dsize, flags)
        if mode > DecoderMode.NONE:
            out["mode"] = mode_name(mode)
    if port.is_root() and decoder.mem_capable:
        if decoder.max_available_extent < U64_MAX:
            out["max_available_extent"] = json_object_size(decoder.max_available_extent, flags)
        if decoder.pmem_capable:
            out["pmem_capable"] = True
        if decoder.volatile_capable:
            out["volatile_capable"] = True
    if port.is_root() and decoder.accelmem_capable:
        out["accelmem_capable"] = True
    if port.is_root():
        qos = decoder.root_qos_class()
        if qos != CXL_QOS_CLASS_NONE:
            out["qos_class"] = _int(qos)
    return out


def targets_append_json(jdecoder: JsonObj, decoder: Decoder, ident: str | None,
                        serial: str | None, flags: int) -> None:
    """``util_cxl_targets_append_json()``: ``nr_targets`` for every
    non-endpoint decoder, ``targets`` with -T."""
    from .filter import target_filter_by_memdev
    if decoder.port.is_endpoint():
        return
    jdecoder["nr_targets"] = _int(decoder.nr_targets)
    if not flags & UTIL_JSON_TARGETS or not decoder.nr_targets:
        return
    arr = []
    for t in decoder.targets:
        if not target_filter_by_memdev(t, ident, serial):
            continue
        j: JsonObj = {"target": t.devname}
        _alias_keys(j, t.physical_node, t.firmware_node)
        j["position"] = _int(t.position)
        j["id"] = json_object_hex(t.id, flags)
        arr.append(j)
    jdecoder["targets"] = arr


# ---------------------------------------------------------------------------
# regions
# ---------------------------------------------------------------------------

def mappings_append_json(jregion: JsonObj, region: Region, flags: int) -> None:
    """``util_cxl_mappings_append_json()``: with -T, even when empty."""
    ways = region.interleave_ways
    if not ways or ways == U32_MAX:
        return
    if not flags & UTIL_JSON_TARGETS:
        return
    arr = []
    for m in region.mappings():
        j: JsonObj = {"position": _int(m.position)}
        md = m.decoder.memdev
        if md is not None:
            j["memdev"] = md.devname
        j["decoder"] = m.decoder.devname
        arr.append(j)
    jregion["mappings"] = arr


def extents_to_json(region: Region, flags: int):
    """DC extents of a region (ndctl DCD series): dax_regionN/extentN.M/{offset,length,uuid}."""
    io = region.ctx.io
    base = f"/sys/bus/cxl/devices/dax_region{region.id}"
    names = io.listdir(base)
    if names is None:
        return None
    out = []
    for name in sorted((n for n in names if n.startswith("extent")),
                       key=lambda n: int(n.rsplit(".", 1)[1]) if n.rsplit(".", 1)[1].isdigit() else 0):
        off = io.read_attr(f"{base}/{name}/offset")
        ln = io.read_attr(f"{base}/{name}/length")
        uid = io.read_attr(f"{base}/{name}/uuid")
        if off is None or ln is None:
            continue
        out.append({"offset": json_object_hex(int(off, 0), flags), "length": json_object_size(int(ln, 0), flags),
                    "uuid": (uid or "").strip()})
    return out


def region_to_json(region: Region, flags: int, stderr: TextIO) -> JsonObj:
    """``util_cxl_region_to_json()``."""
    out: JsonObj = {"region": region.devname}
    if region.start < U64_MAX:
        out["resource"] = json_object_hex(region.start, flags)
    if region.size < U64_MAX:
        out["size"] = json_object_size(region.size, flags)
    if region.mode != DecoderMode.NONE:
        out["type"] = mode_name(region.mode)
    int_max = (1 << 31) - 1
    if region.interleave_ways < int_max:
        out["interleave_ways"] = _int(region.interleave_ways)
    if region.interleave_granularity < int_max:
        out["interleave_granularity"] = _int(region.interleave_granularity)
    out["decode_state"] = "commit" if region.decode_is_committed() else "reset"
    if not region.is_enabled():
        out["state"] = "disabled"
    if flags & UTIL_JSON_MEDIA_ERRORS:
        j = poison_list_to_json(region, stderr, flags)
        if j is not None:
            out["media_errors"] = j
    mappings_append_json(out, region, flags)
    if flags & UTIL_JSON_EXTENTS:
        j = extents_to_json(region, flags)
        if j is not None:
            out["extents"] = j
    if flags & UTIL_JSON_DAX:
        dax = region.dax_region
        if dax is not None:
            out["daxregion"] = daxjson.region_to_json(dax, None, flags)
    if region.qos_class_mismatch():
        out["qos_class_mismatch"] = True
    return out
