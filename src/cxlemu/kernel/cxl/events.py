"""Event records on the host side (drivers/cxl/pci.c ``cxl_event_config``,
``cxl_event_thread``; drivers/cxl/core/mbox.c ``cxl_mem_get_event_records``,
``cxl_mem_get_records_log``, ``cxl_clear_event_record``,
``cxl_event_trace_record``; pci.c ``cxl_cper_event_call`` 6.9+).

How records reach the kernel depends on who owns CXL error handling:

* **native** (``_OSC`` grants the OS CXL error control: topology
  ``boot.cxl_error_native``, the default) and the device has MSI/MSI-X
  vectors: at probe the driver sets every log's interrupt policy to MSI/MSI-X
  (Set Event Interrupt Policy), checks it (a log still in FW mode:
  "FW still in control of Event Logs despite _OSC settings", -EBUSY) and
  drains what the logs already hold.  Afterwards each interrupt runs the
  event thread: for each log with records (Fatal, Failure, Warning, Info)
  Get Event Records, trace every record, trace an overflow, Clear Event
  Records with the handles just read -- until the log is empty.
* native but no interrupt vectors: "No interrupt support, disable event
  processing." -- records stay in the device (Linux has no polled mode).
* **firmware first** (no native control): the firmware owns the logs; it
  reads and clears them and, since 6.9, forwards general media, DRAM and
  memory module records to the OS as CPER records which the driver traces
  with a log type taken from the record's severity.  Before 6.9 the OS sees
  nothing.

A record is traced as ``cxl_general_media``, ``cxl_dram``,
``cxl_memory_module`` or (any other UUID) ``cxl_generic_event``; general
media and DRAM records carry the region and HPA when their DPA is mapped.
Dynamic-capacity records (log 4) are left to a registered ``dcd_handler``
(the DCD series); without one the kernel does not read that log.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from cxlemu.hw.mailbox.opcodes import Opcode
from cxlemu.kernel.base.device import KernelError
from cxlemu.kernel.cxl.poison import ULLONG_MAX, region_uuid_bytes
from cxlemu.util.lazy import lazy_module

E = lazy_module("cxlemu.hw.mailbox.events")     # event-record codecs: imported when records are read
P = lazy_module("cxlemu.hw.mailbox.payloads")

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.core import CxlCore
    from cxlemu.kernel.cxl.memdev import CxlMemdev

MODE_NONE, MODE_MSI, MODE_FW = "none", "msi", "fw"
CLEAR_MAX_HANDLES = 255          # CXL_CLEAR_EVENT_MAX_HANDLES
LOG_ORDER = (3, 2, 1, 0)          # EventLog FATAL, FAIL, WARN, INFO: the order cxl_mem_get_event_records reads


class CxlEvents:
    def __init__(self, core: "CxlCore"):
        self.core = core
        self.dcd_handler: Any = None        # callable(md, records) from a DCD implementation

    @property
    def kernel(self):
        return self.core.kernel

    # ---- probe ----------------------------------------------------------------------------
    def config(self, md: "CxlMemdev") -> None:
        """cxl_event_config() at cxl_pci probe (after the mailbox is up)."""
        k = self.kernel
        host = md.parent.name if md.parent else md.name
        boot = k.platform.topology.boot
        mb = self.core.mailbox
        md.event_mode = MODE_NONE
        if not k.has("cxl_event_records"):
            return                  # before 6.3 the driver leaves the event logs alone
        if not boot.cxl_error_native:
            md.event_mode = MODE_FW
            # the firmware configured the logs for itself
            md.hw.events.set_policy(E.EventInterruptPolicy(*(E.EventInterruptPolicy.setting(E.InterruptMode.FW),) * 4))
            return
        if not md.hw.topo.event_irq:
            k.log(f"cxl_pci {host}: No interrupt support, disable event processing.")
            return
        msi = E.EventInterruptPolicy.setting(E.InterruptMode.MSI_MSIX)
        rc, _ = mb.internal(md, Opcode.SET_EVENT_INTERRUPT_POLICY, E.EventInterruptPolicy(msi, msi, msi, msi).encode())
        if rc:
            k.log(f"cxl_pci {host}: Failed to set event interrupt policy : {rc}")
            return
        rc, raw = mb.internal(md, Opcode.GET_EVENT_INTERRUPT_POLICY)
        pol = E.EventInterruptPolicy.decode(raw) if not rc else None
        if pol is None or any(E.EventInterruptPolicy.mode(v) == E.InterruptMode.FW
                              for v in (pol.info, pol.warn, pol.fail, pol.fatal)):
            k.log(f"cxl_pci {host}: FW still in control of Event Logs despite _OSC settings")
            raise KernelError(errno.EBUSY)
        md.event_mode = MODE_MSI
        md.hw.events.take_pending()
        if md.hw.events.status:
            self.get_event_records(md, md.hw.events.status)

    # ---- interrupts ------------------------------------------------------------------------------------
    def service(self, md: "CxlMemdev") -> None:
        """Run what the device signalled: the MSI event thread, or the firmware's
        CPER forwarding.  Called after every mailbox command and fault."""
        ev = md.hw.events
        if not md.hw.link_up:
            return
        if ev.pending:
            ev.take_pending()
            if getattr(md, "event_mode", MODE_NONE) == MODE_MSI and md.registered:
                self.get_event_records(md, ev.status)
        if ev.fw_pending:
            ev.take_fw_pending()
            self._firmware_first(md)

    def service_all(self) -> None:
        for md in list(self.core.memdevs):
            if md.registered:
                self.service(md)

    def get_event_records(self, md: "CxlMemdev", status: int) -> None:
        """cxl_mem_get_event_records(): the logs named in the status register."""
        for log in LOG_ORDER:
            if status & (1 << log):
                self.get_records_log(md, log)
        if status & E.EventStatus.DYNAMIC_CAPACITY and self.dcd_handler is not None:
            self.get_records_log(md, E.EventLog.DYNAMIC_CAPACITY)

    def get_records_log(self, md: "CxlMemdev", log: int) -> None:
        mb = self.core.mailbox
        host = md.parent.name if md.parent else md.name
        for _ in range(0x10000):
            rc, raw = mb.internal(md, Opcode.GET_EVENT_RECORDS, bytes([log]))
            if rc:
                self.kernel.log(f"cxl_pci {host}: Event log '{log}': Failed to query event records : {rc}")
                return
            out = E.GetEventRecordsOutput.decode(raw)
            if not out.records:
                return
            if log == E.EventLog.DYNAMIC_CAPACITY:
                self.dcd_handler(md, out.records)
            else:
                for rec in out.records:
                    self.trace_record(md, log, rec)
            if out.flags & E.GetEventFlags.OVERFLOW:
                self.trace_overflow(md, log, out)
            if not self.clear_records(md, log, [r.header.handle for r in out.records]):
                self.kernel.log(f"cxl_pci {host}: Event log '{log}': Failed to clear events")
                return

    def clear_records(self, md: "CxlMemdev", log: int, handles: list[int]) -> bool:
        per = min(CLEAR_MAX_HANDLES, (md.hw.payload_max - E.ClearEventRecordsInput.HEADER_SIZE) // 2)
        for i in range(0, len(handles), per):
            req = E.ClearEventRecordsInput(log, tuple(handles[i:i + per])).encode()
            rc, _ = self.core.mailbox.internal(md, Opcode.CLEAR_EVENT_RECORDS, req)
            if rc:
                return False
        return True

    def _firmware_first(self, md: "CxlMemdev") -> None:
        """The firmware drains the logs; 6.9+ kernels get CPER for the known types."""
        hw = md.hw
        cper = self.kernel.has("cxl_cper_events")
        for log in LOG_ORDER:
            lg = hw.events.log(log)
            recs = list(lg.records)
            hw.events.clear(log, (), clear_all=True)
            if cper and md.registered:
                for rec in recs:
                    if rec.header.uuid in E.RECORD_TYPES:
                        self.trace_record(md, rec.header.severity, rec)

    # ---- trace -----------------------------------------------------------------------------------------
    def _hdr(self, md: "CxlMemdev", log: int, rec: E.EventRecord) -> dict:
        h = rec.header
        return {"memdev": md.name, "host": md.parent.name if md.parent else "", "log": int(log),
                "hdr_uuid": h.uuid.bytes, "serial": md.hw.serial, "hdr_flags": h.raw_flags,
                "hdr_handle": h.handle, "hdr_related_handle": h.related_handle, "hdr_timestamp": h.timestamp,
                "hdr_length": h.length, "hdr_maint_op_class": h.maint_op_class,
                "hdr_maint_op_sub_class": h.maint_op_sub_class}

    def _region_hpa(self, md: "CxlMemdev", dpa: int) -> tuple[Any, int]:
        region, hpa = self.core.regions.dpa_to_region_hpa(md, dpa)
        return region, (hpa if region is not None else ULLONG_MAX)

    def trace_record(self, md: "CxlMemdev", log: int, rec: E.EventRecord) -> None:
        k = self.kernel
        v = self._hdr(md, log, rec)
        body = rec.body()
        if isinstance(body, E.GeneralMediaEvent):
            region, hpa = self._region_hpa(md, body.dpa)
            v.update(dpa=body.dpa, descriptor=body.descriptor, type=body.type,
                     transaction_type=body.transaction_type, channel=body.channel, device=body.device,
                     comp_id=body.component_id, hpa=hpa, region_uuid=region_uuid_bytes(region),
                     validity_flags=body.validity_flags, rank=body.rank, dpa_flags=body.dpa_flags,
                     cme_count=body.cme_count, sub_type=body.sub_type,
                     cme_threshold_ev_flags=body.cme_threshold_ev_flags,
                     region_name=region.name if region is not None else "")
            k.trace("cxl", "cxl_general_media", v)
        elif isinstance(body, E.DramEvent):
            region, hpa = self._region_hpa(md, body.dpa)
            v.update(dpa=body.dpa, descriptor=body.descriptor, type=body.type,
                     transaction_type=body.transaction_type, channel=body.channel,
                     validity_flags=body.validity_flags, column=body.column, nibble_mask=body.nibble_mask,
                     row=body.row, cor_mask=body.correction_mask, hpa=hpa, region_uuid=region_uuid_bytes(region),
                     rank=body.rank, bank_group=body.bank_group, bank=body.bank, dpa_flags=body.dpa_flags,
                     comp_id=body.component_id, cvme_count=body.cvme_count, sub_type=body.sub_type,
                     sub_channel=body.sub_channel, cme_threshold_ev_flags=body.cme_threshold_ev_flags,
                     region_name=region.name if region is not None else "")
            k.trace("cxl", "cxl_dram", v)
        elif isinstance(body, E.MemoryModuleEvent):
            hi = P.HealthInfo.decode(body.health_info)
            v.update(event_type=body.event_type, health_status=hi.health_status, media_status=hi.media_status,
                     life_used=hi.life_used if hi.life_used is not None else 0xFF,
                     dirty_shutdown_cnt=hi.dirty_shutdown_count,
                     cor_vol_err_cnt=hi.corrected_volatile_error_count,
                     cor_per_err_cnt=hi.corrected_persistent_error_count,
                     device_temp=hi.temperature if hi.temperature is not None else -1,
                     add_status=hi.additional_status, event_sub_type=body.event_sub_type,
                     comp_id=body.component_id, validity_flags=body.validity_flags)
            k.trace("cxl", "cxl_memory_module", v)
        else:
            v.update(data=rec.data)
            k.trace("cxl", "cxl_generic_event", v)

    def trace_overflow(self, md: "CxlMemdev", log: int, out: E.GetEventRecordsOutput) -> None:
        self.kernel.trace("cxl", "cxl_overflow", {
            "memdev": md.name, "host": md.parent.name if md.parent else "", "log": int(log),
            "serial": md.hw.serial, "first_ts": out.first_overflow_ts, "last_ts": out.last_overflow_ts,
            "count": out.overflow_err_count})
