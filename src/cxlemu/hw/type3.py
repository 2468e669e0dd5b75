"""A CXL Type 3 memory device: capacity, partitions, LSA, poison, health,
firmware slots, HDM decoders and its media.

The media is a file, one per device, indexed by DPA (sparse, created on first
use).  The device keeps no kernel state: what is persistent on real hardware
(LSA, persistent media, poison list, firmware slots, health counters) survives
a reboot here too; what is volatile (decoder registers, volatile media
contents) does not.
"""

from __future__ import annotations

from dataclasses import field

from cxlemu.hw.eventlog import EventLogs
from cxlemu.hw.hdm import HdmDecoderUnit
from cxlemu.hw.poison import (SOURCE_EXTERNAL as POISON_SOURCE_EXTERNAL, SOURCE_INJECTED as POISON_SOURCE_INJECTED,
                              SOURCE_INTERNAL as POISON_SOURCE_INTERNAL, SOURCE_UNKNOWN as POISON_SOURCE_UNKNOWN,
                              SOURCE_VENDOR as POISON_SOURCE_VENDOR, PoisonStore)
from cxlemu.topology.schema import Device
from cxlemu.util.lazydc import dataclass

__all__ = ["Type3Device", "Health", "AlertConfig", "POISON_SOURCE_UNKNOWN", "POISON_SOURCE_EXTERNAL",
           "POISON_SOURCE_INTERNAL", "POISON_SOURCE_INJECTED", "POISON_SOURCE_VENDOR"]


@dataclass
class Health:
    """What Get Health Info reports (CXL r3.1 Table 8-133); media_status is
    the Media Status byte (0 normal, 1 not ready, 2 persistence lost, 3 data
    lost, ...: payloads.MediaStatus)."""

    maintenance_needed: bool = False
    performance_degraded: bool = False
    hw_replacement_needed: bool = False
    media_status: int = 0
    life_used_percent: int = 0
    temperature: int = 25           # degrees C
    dirty_shutdowns: int = 0
    volatile_errors: int = 0
    pmem_errors: int = 0


@dataclass
class AlertConfig:
    """Alert configuration: programmable warning thresholds (Set Alert
    Configuration) and the device's fixed critical thresholds."""

    life_used_crit_alert_threshold: int = 90
    dev_over_temperature_crit_alert_threshold: int = 100
    dev_under_temperature_crit_alert_threshold: int = -20
    life_used_prog_warn_threshold: int = 0
    dev_over_temperature_prog_warn_threshold: int = 0
    dev_under_temperature_prog_warn_threshold: int = 0
    corrected_volatile_mem_err_prog_warn_threshold: int = 0
    corrected_pmem_err_prog_warn_threshold: int = 0
    valid_alerts: int = 0           # bit per alert: life, over temp, under temp, volatile, pmem


@dataclass
class Type3Device:
    """Hardware state of one Type 3 device (a PCI function or a cxl_test platform device)."""

    topo: Device
    name: str                       # PCI BDF ("0000:0f:00.0") or "cxl_mem.N"
    serial: int
    vol_only: int
    pmem_only: int
    partitionable: int
    partition_align: int
    active_volatile: int            # bytes, including vol_only
    next_volatile: int | None = None  # pending SET_PARTITION_INFO (applies at next reset)
    lsa: bytearray = field(default_factory=bytearray)
    hdm: HdmDecoderUnit | None = None
    poison: PoisonStore = field(default_factory=lambda: PoisonStore(0))
    events: EventLogs = field(default_factory=EventLogs)
    link_up: bool = True            # False: surprise link down (accesses return all-ones)
    clock_ns: int = 0               # the device's view of time (kept in step with the host by the driver)
    timestamp_base: int = 0         # Set Timestamp value ...
    timestamp_set_at: int = 0       # ... and clock_ns when it was set
    scan_results: list = field(default_factory=list)   # Scan Media results not yet fetched
    scan_range: tuple[int, int] = (0, 0)
    health: Health = field(default_factory=Health)
    alert: AlertConfig = field(default_factory=AlertConfig)
    fw_slots: list[str] = field(default_factory=list)
    fw_active_slot: int = 1
    fw_staged_slot: int = 0
    security_state: str = "disabled"
    media_file: str = ""            # file name inside the machine's media directory
    dc_size: int = 0                # Dynamic Capacity (dynamic_ram_1) after the static capacity
    dc_block_size: int = 0

    @classmethod
    def from_topology(cls, d: Device, name: str) -> "Type3Device":
        slots = [d.firmware_version] + [""] * (d.fw_slots - 1)
        return cls(
            topo=d, name=name, serial=d.serial or 0,
            vol_only=d.volatile, pmem_only=d.persistent, partitionable=d.partitionable,
            partition_align=d.partition_align if d.partitionable else 0,
            active_volatile=d.volatile + d.partition_volatile,
            lsa=bytearray(d.lsa),
            hdm=HdmDecoderUnit(count=d.hdm_decoders, target_count=0, caps=d.caps),
            fw_slots=slots,
            # by serial; devices without a serial number (0, several allowed) by topology id
            media_file=f"{d.serial:016x}.media" if d.serial else f"{0:016x}-{d.id}.media",
            poison=PoisonStore(d.capacity, max_records=d.poison_max_records,
                               inject_limit=d.inject_poison_limit),
            events=EventLogs(sizes=(d.event_log_size,) * 5),
            dc_size=d.dynamic_capacity, dc_block_size=d.dc_block_size if d.dynamic_capacity else 0,
        )

    # ---- capacity ----------------------------------------------------------
    @property
    def total_capacity(self) -> int:
        return self.vol_only + self.pmem_only + self.partitionable

    @property
    def ram_size(self) -> int:
        """The active volatile partition, DPA [0, ram_size)."""
        return self.active_volatile

    @property
    def pmem_size(self) -> int:
        """The active persistent partition, DPA [ram_size, total)."""
        return self.total_capacity - self.active_volatile

    @property
    def media_size(self) -> int:
        """Bytes of DPA space backed by media: static capacity, then DC."""
        return self.total_capacity + self.dc_size

    @property
    def dc_base(self) -> int:
        """DPA of the first DC region (right after the static capacity)."""
        return self.total_capacity

    @property
    def lsa_size(self) -> int:
        return len(self.lsa)

    @property
    def payload_max(self) -> int:
        return self.topo.payload_max

    @property
    def firmware_version(self) -> str:
        return self.fw_slots[self.fw_active_slot - 1]

    def partition_of(self, dpa: int) -> str:
        if dpa >= self.total_capacity and self.dc_size:
            return "dynamic_ram_1"
        return "ram" if dpa < self.ram_size else "pmem"

    def timestamp(self) -> int:
        """Get Timestamp: the host-set time advanced by the device clock."""
        return self.timestamp_base + (self.clock_ns - self.timestamp_set_at) if self.timestamp_base else 0

    def cdat_table(self) -> bytes:
        """The CDAT the device serves over its DOE mailbox: one DSMAS (with
        DSLBIS latency/bandwidth and DSEMTS) per partition, from the topology's
        ``cdat`` figures (ns -> ps)."""
        from cxlemu.hw.cdat import cdat_for_device, encode_cdat
        ranges = []
        if self.ram_size:
            ranges.append((0, self.ram_size, False))
        if self.pmem_size:
            ranges.append((self.ram_size, self.pmem_size, True))
        c = self.topo.cdat
        return encode_cdat(cdat_for_device(ranges, c.read_latency * 1000, c.write_latency * 1000,
                                           c.read_bandwidth, c.write_bandwidth))

    # ---- resets ------------------------------------------------------------
    def conventional_reset(self) -> None:
        """Power cycle / cold reset: decoders reset, pending partition applies."""
        if self.hdm:
            self.hdm.reset_all()
        if self.next_volatile is not None:
            self.active_volatile = self.next_volatile
            self.next_volatile = None
        if self.fw_staged_slot:
            self.fw_active_slot = self.fw_staged_slot
            self.fw_staged_slot = 0
        # DRAM is re-initialised: injected poison in volatile capacity is gone;
        # event logs and interrupt settings are volatile device state
        self.poison.drop_injected(0, self.ram_size)
        self.poison.cursor = None
        self.events = EventLogs(sizes=tuple(lg.capacity for lg in self.events.logs))
        self.timestamp_base = self.timestamp_set_at = 0
        self.scan_results = []
