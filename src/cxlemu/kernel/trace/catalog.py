"""The trace events cxlemu's kernel emits, with their fields in the order
of the kernel's ``TP_STRUCT__entry`` (drivers/cxl/core/trace.h as of
v6.14: cxl_general_media/cxl_dram carry the CXL 3.1 fields; cxl_poison;
include/ras/ras_event.h: ras:memory_failure_event) and printers that print
what ``TP_printk`` prints.  The ``print fmt`` lines are written in the
kernel's expanded form so that libtraceevent can evaluate them.
"""

from __future__ import annotations

import functools
import uuid as uuidlib
from typing import Mapping

from cxlemu.kernel.trace.events import A, EventDef, F, Registry, S, U

V = Mapping[str, object]

LOG_TYPE = {0: "Informational", 1: "Warning", 2: "Failure", 3: "Fatal"}
_LOG_SYM = '__print_symbolic(REC->log, { 0, "Informational" }, { 1, "Warning" }, { 2, "Failure" }, { 3, "Fatal" })'
HDR_FLAGS = [(1 << 2, "PERMANENT_CONDITION"), (1 << 3, "MAINTENANCE_NEEDED"), (1 << 4, "PERFORMANCE_DEGRADED"),
             (1 << 5, "HARDWARE_REPLACEMENT_NEEDED"), (1 << 6, "MAINT_OP_SUB_CLASS_VALID")]
POISON_TRACE_TYPE = {0: "List", 1: "Inject", 2: "Clear"}
POISON_SOURCE = {0: "Unknown", 1: "External", 2: "Internal", 3: "Injected", 7: "Vendor"}
POISON_FLAGS = [(1, "More"), (2, "Overflow"), (4, "Scanning")]
DPA_FLAGS = [(1, "VOLATILE"), (2, "NOT_REPAIRABLE")]
DESC_FLAGS = [(1, "UNCORRECTABLE_EVENT"), (2, "THRESHOLD_EVENT"), (4, "POISON_LIST_OVERFLOW")]
GMER_TYPE = {0: "ECC Error", 1: "Invalid Address", 2: "Data Path Error", 3: "TE State Violation",
             4: "Scrub Media ECC Error", 5: "Adv Prog CME Counter Expiration", 6: "CKID Violation"}
DER_TYPE = {0: "ECC Error", 1: "Scrub Media ECC Error", 2: "Invalid Address", 3: "Data Path Error",
            4: "TE State Violation", 5: "Adv Prog CME Counter Expiration", 6: "CKID Violation"}
TRANS_TYPE = {0: "Unknown", 1: "Host Read", 2: "Host Write", 3: "Host Scan Media", 4: "Host Inject Poison",
              5: "Internal Media Scrub", 6: "Internal Media Management", 7: "Internal Media Error Check Scrub",
              8: "Media Initialization"}
MMER_TYPE = {0: "Health Status Change", 1: "Media Status Change", 2: "Life Used Change", 3: "Temperature Change",
             4: "Data Path Error", 5: "LSA Error", 6: "Unrecoverable Internal Sideband Bus Error",
             7: "Memory Media FRU Error", 8: "Power Management Fault"}
HEALTH_FLAGS = [(1, "MAINTENANCE_NEEDED"), (2, "PERFORMANCE_DEGRADED"), (4, "REPLACEMENT_NEEDED"),
                (8, "MEM_CAPACITY_DEGRADED")]
MEDIA_STATUS = {0: "Normal", 1: "Not Ready", 2: "Write Persistency Lost", 3: "All Data Lost",
                4: "Write Persistency Loss in the Event of Power Loss", 5: "Write Persistency Loss in Event of Shutdown",
                6: "Write Persistency Loss Imminent", 7: "All Data Loss in Event of Power Loss",
                8: "All Data loss in the Event of Shutdown", 9: "All Data Loss Imminent"}
TWO_BIT = {0: "Normal", 1: "Warning", 2: "Critical"}
MF_TYPE = ["reserved kernel page", "high-order kernel page", "kernel slab page",
           "different compound page after locking", "huge page already hardware poisoned", "huge page",
           "free huge page", "non-pmd-sized huge page", "unmapping failed page", "dirty swapcache page",
           "clean swapcache page", "dirty mlocked LRU page", "clean mlocked LRU page",
           "dirty unevictable LRU page", "clean unevictable LRU page", "dirty LRU page", "clean LRU page",
           "already truncated LRU page", "free buddy page", "free buddy page (2nd try)", "dax page",
           "unsplit thp", "unknown page"]
MF_RESULT = ["Ignored", "Failed", "Delayed", "Recovered"]


def flags_str(v: int, table: list[tuple[int, str]], delim: str) -> str:
    """__print_flags(): the names of the set bits, then any leftover bits in hex."""
    out, rest = [], int(v)
    for bit, name in table:
        if rest & bit == bit and bit:
            out.append(name)
            rest &= ~bit
    if rest:
        out.append(f"{rest:#x}")
    return delim.join(out)


def sym(v: int, table: Mapping[int, str]) -> str:
    return table.get(int(v), f"{int(v):#x}")


def _sym_fmt(expr: str, table: Mapping[int, str]) -> str:
    return f"__print_symbolic({expr}, " + ", ".join(f'{{ {k}, "{v}" }}' for k, v in table.items()) + ")"


def _flags_fmt(expr: str, delim: str, table: list[tuple[int, str]]) -> str:
    return f'__print_flags({expr}, "{delim}", ' + ", ".join(f'{{ {k}, "{v}" }}' for k, v in table) + ")"


def _uuid(v: object) -> str:
    return str(v if isinstance(v, uuidlib.UUID) else uuidlib.UUID(bytes=bytes(v or bytes(16))))  # type: ignore[arg-type]


def _hex(b: object) -> str:
    return " ".join(f"{x:02x}" for x in bytes(b or b""))  # type: ignore[arg-type]


# ---- cxl_poison ------------------------------------------------------------------------------

def print_poison(v: V) -> str:
    return (f"memdev={v['memdev']} host={v['host']} serial={v['serial']} "
            f"trace_type={sym(int(v['trace_type']), POISON_TRACE_TYPE)} region={v['region']} "  # type: ignore[arg-type]
            f"region_uuid={_uuid(v['uuid'])} hpa={int(v['hpa']):#x} dpa={int(v['dpa']):#x} "  # type: ignore[arg-type]
            f"dpa_length={int(v['dpa_length']):#x} "  # type: ignore[arg-type]
            f"source={poison_source_name(int(v['source']))} "  # type: ignore[arg-type]
            f"flags={flags_str(int(v['flags']), POISON_FLAGS, '|')} overflow_time={v['overflow_ts']}")  # type: ignore[arg-type]


def poison_source_name(src: int) -> str:
    return "Reserved" if src > 3 and src != 7 else sym(src, POISON_SOURCE)


_POISON_FMT = ('"memdev=%s host=%s serial=%lld trace_type=%s region=%s region_uuid=%pU hpa=0x%llx dpa=0x%llx '
               'dpa_length=0x%x source=%s flags=%s overflow_time=%llu", __get_str(memdev), __get_str(host), '
               'REC->serial, ' + _sym_fmt("REC->trace_type", POISON_TRACE_TYPE) + ', __get_str(region), '
               'REC->uuid, REC->hpa, REC->dpa, REC->dpa_length, (((REC->source > 3) && (REC->source != 7)) ? '
               '"Reserved" : ' + _sym_fmt("REC->source", POISON_SOURCE) + '), '
               + _flags_fmt("REC->flags", "|", POISON_FLAGS) + ', REC->overflow_ts')

# ---- the common event header ---------------------------------------------------------------------

HDR_FIELDS = [S("memdev"), S("host"), F("int", "log"), U("hdr_uuid"), F("u64", "serial"), F("u32", "hdr_flags"),
              F("u16", "hdr_handle"), F("u16", "hdr_related_handle"), F("u64", "hdr_timestamp"),
              F("u8", "hdr_length"), F("u8", "hdr_maint_op_class"), F("u8", "hdr_maint_op_sub_class")]
_HDR_FMT = ("memdev=%s host=%s serial=%lld log=%s : time=%llu uuid=%pUb len=%d flags='%s' handle=%x "
            "related_handle=%x maint_op_class=%u maint_op_sub_class=%u : ")
_HDR_ARGS = ("__get_str(memdev), __get_str(host), REC->serial, " + _LOG_SYM + ", REC->hdr_timestamp, "
             "REC->hdr_uuid, REC->hdr_length, " + _flags_fmt("REC->hdr_flags", " | ", HDR_FLAGS) +
             ", REC->hdr_handle, REC->hdr_related_handle, REC->hdr_maint_op_class, REC->hdr_maint_op_sub_class")


def print_hdr(v: V) -> str:
    return (f"memdev={v['memdev']} host={v['host']} serial={v['serial']} log={sym(int(v['log']), LOG_TYPE)} : "  # type: ignore[arg-type]
            f"time={v['hdr_timestamp']} uuid={_uuid(v['hdr_uuid'])} len={v['hdr_length']} "
            f"flags='{flags_str(int(v['hdr_flags']), HDR_FLAGS, ' | ')}' handle={int(v['hdr_handle']):x} "  # type: ignore[arg-type]
            f"related_handle={int(v['hdr_related_handle']):x} maint_op_class={v['hdr_maint_op_class']} "  # type: ignore[arg-type]
            f"maint_op_sub_class={v['hdr_maint_op_sub_class']} : ")


def print_generic(v: V) -> str:
    return print_hdr(v) + _hex(v["data"])


def print_general_media(v: V) -> str:
    return print_hdr(v) + (
        f"dpa={int(v['dpa']):x} dpa_flags='{flags_str(int(v['dpa_flags']), DPA_FLAGS, '|')}' "  # type: ignore[arg-type]
        f"descriptor='{flags_str(int(v['descriptor']), DESC_FLAGS, '|')}' type='{sym(int(v['type']), GMER_TYPE)}' "  # type: ignore[arg-type]
        f"sub_type='Not Reported' transaction_type='{sym(int(v['transaction_type']), TRANS_TYPE)}' "  # type: ignore[arg-type]
        f"channel={v['channel']} rank={v['rank']} device={int(v['device']):x} validity_flags='' "  # type: ignore[arg-type]
        f"comp_id={_hex(v['comp_id'])} comp_id_pldm_valid_flags='' pldm_entity_id=0x00 pldm_resource_id=0x00 "
        f"hpa={int(v['hpa']):x} region={v['region_name']} region_uuid={_uuid(v['region_uuid'])} "  # type: ignore[arg-type]
        f"cme_threshold_ev_flags='' cme_count={v['cme_count']}")


def print_dram(v: V) -> str:
    return print_hdr(v) + (
        f"dpa={int(v['dpa']):x} dpa_flags='{flags_str(int(v['dpa_flags']), DPA_FLAGS, '|')}' "  # type: ignore[arg-type]
        f"descriptor='{flags_str(int(v['descriptor']), DESC_FLAGS, '|')}' type='{sym(int(v['type']), DER_TYPE)}' "  # type: ignore[arg-type]
        f"sub_type='Not Reported' transaction_type='{sym(int(v['transaction_type']), TRANS_TYPE)}' "  # type: ignore[arg-type]
        f"channel={v['channel']} rank={v['rank']} nibble_mask={int(v['nibble_mask']):x} "  # type: ignore[arg-type]
        f"bank_group={v['bank_group']} bank={v['bank']} row={v['row']} column={v['column']} "
        f"cor_mask={_hex(v['cor_mask'])} validity_flags='' comp_id={_hex(v['comp_id'])} "
        f"comp_id_pldm_valid_flags='' pldm_entity_id=0x00 pldm_resource_id=0x00 hpa={int(v['hpa']):x} "  # type: ignore[arg-type]
        f"region={v['region_name']} region_uuid={_uuid(v['region_uuid'])} sub_channel={v['sub_channel']} "
        f"cme_threshold_ev_flags='' cvme_count={v['cvme_count']}")


def print_memory_module(v: V) -> str:
    a = int(v["add_status"])  # type: ignore[arg-type]
    return print_hdr(v) + (
        f"event_type='{sym(int(v['event_type']), MMER_TYPE)}' event_sub_type='Not Reported' "  # type: ignore[arg-type]
        f"health_status='{flags_str(int(v['health_status']), HEALTH_FLAGS, '|')}' "  # type: ignore[arg-type]
        f"media_status='{sym(int(v['media_status']), MEDIA_STATUS)}' as_life_used={sym(a & 3, TWO_BIT)} "  # type: ignore[arg-type]
        f"as_dev_temp={sym((a >> 2) & 3, TWO_BIT)} as_cor_vol_err_cnt={sym((a >> 4) & 1, TWO_BIT)} "
        f"as_cor_per_err_cnt={sym((a >> 5) & 1, TWO_BIT)} life_used={v['life_used']} "
        f"device_temp={v['device_temp']} dirty_shutdown_cnt={v['dirty_shutdown_cnt']} "
        f"cor_vol_err_cnt={v['cor_vol_err_cnt']} cor_per_err_cnt={v['cor_per_err_cnt']} validity_flags='' "
        f"comp_id={_hex(v['comp_id'])} comp_id_pldm_valid_flags='' pldm_entity_id=0x00 pldm_resource_id=0x00")


def print_overflow(v: V) -> str:
    return (f"memdev={v['memdev']} host={v['host']} serial={v['serial']}: log={sym(int(v['log']), LOG_TYPE)} : "  # type: ignore[arg-type]
            f"{v['count']} records from {v['first_ts']} to {v['last_ts']}")


def print_memory_failure(v: V) -> str:
    t, r = int(v["type"]), int(v["result"])  # type: ignore[arg-type]
    return (f"pfn {int(v['pfn']):#x}: recovery action for "  # type: ignore[arg-type]
            f"{MF_TYPE[t] if 0 <= t < len(MF_TYPE) else t}: {MF_RESULT[r] if 0 <= r < 4 else r}")


def print_aer_uncorrectable(v: V) -> str:
    return (f"memdev={v['memdev']} host={v['host']} serial={v['serial']}: status: '{int(v['status']):#x}' "  # type: ignore[arg-type]
            f"first_error: '{int(v['first_error']):#x}'")  # type: ignore[arg-type]


def _events() -> list[EventDef]:
    gm = [F("u64", "dpa"), F("u8", "descriptor"), F("u8", "type"), F("u8", "transaction_type"), F("u8", "channel"),
          F("u32", "device"), A("u8", "comp_id", 16), F("u64", "hpa"), U("region_uuid"), F("u16", "validity_flags"),
          F("u8", "rank"), F("u8", "dpa_flags"), F("u32", "cme_count"), F("u8", "sub_type"),
          F("u8", "cme_threshold_ev_flags"), S("region_name")]
    dram = [F("u64", "dpa"), F("u8", "descriptor"), F("u8", "type"), F("u8", "transaction_type"), F("u8", "channel"),
            F("u16", "validity_flags"), F("u16", "column"), F("u32", "nibble_mask"), F("u32", "row"),
            A("u8", "cor_mask", 32), F("u64", "hpa"), U("region_uuid"), F("u8", "rank"), F("u8", "bank_group"),
            F("u8", "bank"), F("u8", "dpa_flags"), A("u8", "comp_id", 16), F("u32", "cvme_count"), F("u8", "sub_type"),
            F("u8", "sub_channel"), F("u8", "cme_threshold_ev_flags"), S("region_name")]
    mm = [F("u8", "event_type"), F("u8", "health_status"), F("u8", "media_status"), F("u8", "life_used"),
          F("u32", "dirty_shutdown_cnt"), F("u32", "cor_vol_err_cnt"), F("u32", "cor_per_err_cnt"),
          F("s16", "device_temp"), F("u8", "add_status"), F("u8", "event_sub_type"), A("u8", "comp_id", 16),
          F("u16", "validity_flags")]
    gm_fmt = ('"' + _HDR_FMT + "dpa=%llx dpa_flags='%s' descriptor='%s' type='%s' transaction_type='%s' "
              "channel=%u rank=%u device=%x hpa=%llx region=%s region_uuid=%pUb cme_count=%u\", " + _HDR_ARGS +
              ", REC->dpa, " + _flags_fmt("REC->dpa_flags", "|", DPA_FLAGS) + ", " +
              _flags_fmt("REC->descriptor", "|", DESC_FLAGS) + ", " + _sym_fmt("REC->type", GMER_TYPE) + ", " +
              _sym_fmt("REC->transaction_type", TRANS_TYPE) + ", REC->channel, REC->rank, REC->device, REC->hpa, "
              "__get_str(region_name), REC->region_uuid, REC->cme_count")
    dram_fmt = ('"' + _HDR_FMT + "dpa=%llx dpa_flags='%s' descriptor='%s' type='%s' transaction_type='%s' "
                "channel=%u rank=%u nibble_mask=%x bank_group=%u bank=%u row=%u column=%u hpa=%llx region=%s "
                "region_uuid=%pUb sub_channel=%u cvme_count=%u\", " + _HDR_ARGS + ", REC->dpa, " +
                _flags_fmt("REC->dpa_flags", "|", DPA_FLAGS) + ", " + _flags_fmt("REC->descriptor", "|", DESC_FLAGS) +
                ", " + _sym_fmt("REC->type", DER_TYPE) + ", " + _sym_fmt("REC->transaction_type", TRANS_TYPE) +
                ", REC->channel, REC->rank, REC->nibble_mask, REC->bank_group, REC->bank, REC->row, REC->column, "
                "REC->hpa, __get_str(region_name), REC->region_uuid, REC->sub_channel, REC->cvme_count")
    mm_fmt = ('"' + _HDR_FMT + "event_type='%s' health_status='%s' media_status='%s' life_used=%u "
              "device_temp=%d dirty_shutdown_cnt=%u cor_vol_err_cnt=%u cor_per_err_cnt=%u\", " + _HDR_ARGS + ", " +
              _sym_fmt("REC->event_type", MMER_TYPE) + ", " + _flags_fmt("REC->health_status", "|", HEALTH_FLAGS) +
              ", " + _sym_fmt("REC->media_status", MEDIA_STATUS) + ", REC->life_used, REC->device_temp, "
              "REC->dirty_shutdown_cnt, REC->cor_vol_err_cnt, REC->cor_per_err_cnt")
    return [
        EventDef("cxl", "cxl_aer_uncorrectable_error",
                 [S("memdev"), S("host"), F("u64", "serial"), F("u32", "status"), F("u32", "first_error"),
                  A("u32", "header_log", 128)],
                 '"memdev=%s host=%s serial=%lld: status: \'%x\' first_error: \'%x\'", __get_str(memdev), '
                 '__get_str(host), REC->serial, REC->status, REC->first_error', print_aer_uncorrectable),
        EventDef("cxl", "cxl_overflow",
                 [S("memdev"), S("host"), F("int", "log"), F("u64", "serial"), F("u64", "first_ts"),
                  F("u64", "last_ts"), F("u16", "count")],
                 '"memdev=%s host=%s serial=%lld: log=%s : %u records from %llu to %llu", __get_str(memdev), '
                 '__get_str(host), REC->serial, ' + _LOG_SYM + ', REC->count, REC->first_ts, REC->last_ts',
                 print_overflow),
        EventDef("cxl", "cxl_generic_event", HDR_FIELDS + [A("u8", "data", 80)],
                 '"' + _HDR_FMT + '%s", ' + _HDR_ARGS + ', __print_hex(REC->data, 80)', print_generic),
        EventDef("cxl", "cxl_general_media", HDR_FIELDS + gm, gm_fmt, print_general_media),
        EventDef("cxl", "cxl_dram", HDR_FIELDS + dram, dram_fmt, print_dram),
        EventDef("cxl", "cxl_memory_module", HDR_FIELDS + mm, mm_fmt, print_memory_module),
        EventDef("cxl", "cxl_poison",
                 [S("memdev"), S("host"), F("u64", "serial"), F("u8", "trace_type"), S("region"),
                  F("u64", "overflow_ts"), F("u64", "hpa"), F("u64", "dpa"), F("u32", "dpa_length"),
                  A("char", "uuid", 16), F("u8", "source"), F("u8", "flags")],
                 _POISON_FMT, print_poison),
        EventDef("ras", "memory_failure_event", [F("unsigned long", "pfn"), F("int", "type"), F("int", "result")],
                 '"pfn %#lx: recovery action for %s: %s", REC->pfn, '
                 + _sym_fmt("REC->type", dict(enumerate(MF_TYPE))) + ", "
                 + _sym_fmt("REC->result", dict(enumerate(MF_RESULT))), print_memory_failure),
    ]


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The event catalogue (immutable once built; ids are stable across runs)."""
    r = Registry()
    for ev in _events():
        r.add(ev)
    return r
