"""HDM decoder management (drivers/cxl/core/hdm.c): decoder enumeration from
the component registers, DPA allocation, and decoder commit/reset.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import KernelError, kstrip, kstrtoull
from cxlemu.kernel.cxl.port import (MODE_DC, MODE_PMEM, MODE_RAM, CxlDecoder, CxlPort, EndpointDecoder,
                                    SwitchDecoder)
from cxlemu.util.units import SZ_256M

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.core import CxlCore


def eiw_to_ways(eiw: int) -> int:
    return 1 << eiw if eiw < 8 else 3 << (eiw - 8)


def ways_to_eiw(ways: int) -> int:
    if ways & (ways - 1) == 0:
        return ways.bit_length() - 1
    return (ways // 3).bit_length() - 1 + 8


def eig_to_gran(eig: int) -> int:
    return 256 << eig


def gran_to_eig(gran: int) -> int:
    return gran.bit_length() - 9


class Hdm:
    def __init__(self, core: "CxlCore"):
        self.core = core

    # ---- enumeration (init_hdm_decoder / devm_cxl_enumerate_decoders) -------------
    def enumerate(self, port: CxlPort) -> None:
        unit = port.hdm
        if port.is_endpoint:
            assert unit is not None
            dpa_base = 0
            for i in range(unit.count):
                d = EndpointDecoder(port, i, i)
                regs = unit.decoders[i]
                if regs.committed:
                    ways = self._decode_committed(port, i, d, regs)
                    length = regs.size // ways
                    start = dpa_base + regs.dpa_skip
                    d.dpa_start, d.dpa_len, d.skip = start, length, regs.dpa_skip
                    d.mode = port.memdev.hw.partition_of(start) if port.memdev else MODE_RAM
                    d.auto = True
                    port.hdm_end = i
                    dpa_base = start + length
                port.decoders.append(d)
            return
        if unit is None:
            # Pass-through: single dport, no HDM decoder capability
            # (drivers/cxl/port.c cxl_switch_port_probe -> devm_cxl_add_passthrough_decoder)
            if len(port.dports) != 1:
                raise KernelError(errno.ENXIO, f"{port.name}: HDM decoder capability not found")
            d = SwitchDecoder(port, 0, None, 1)
            d.targets = [next(iter(port.dports.values()))]
            d.interleave_granularity = 4096  # PAGE_SIZE
            port.decoders.append(d)
            return
        for i in range(unit.count):
            d = SwitchDecoder(port, i, i, unit.target_count)
            regs = unit.decoders[i]
            if regs.committed:
                ways = self._decode_committed(port, i, d, regs)
                for k, pid in enumerate(regs.targets[:ways]):
                    dp = port.find_dport(pid)
                    if dp is None:
                        raise KernelError(errno.ENXIO, f"{d.name}: target {pid} not found")
                    d.targets[k] = dp
            else:
                self._idle_targets(port, d)
            port.decoders.append(d)

    def _idle_targets(self, port: CxlPort, d: SwitchDecoder) -> None:
        """What an unprogrammed decoder's target list decodes to."""
        if self.core.kernel.platform.flavor == "cxl_test":
            # tools/testing/cxl/test/cxl.c map_targets(): every child dport, in order
            for k, dp in enumerate(list(port.dports.values())[: d.nr_targets]):
                d.targets[k] = dp
        else:
            # a zeroed target list register names port id 0
            d.targets[0] = port.find_dport(0)

    def _check_in_order(self, port: CxlPort, i: int) -> None:
        if i != port.commit_end + 1:
            raise KernelError(errno.ENXIO, f"{port.name}: decoder{port.id}.{i}: Committed out of order")

    def _decode_committed(self, port: CxlPort, i: int, d: CxlDecoder, regs) -> int:
        """init_hdm_decoder() for a decoder firmware left committed (switch
        or endpoint): in-order check, HPA range, interleave, enabled/locked
        flags, ``commit_end``.  Returns the interleave ways."""
        self._check_in_order(port, i)
        ways = eiw_to_ways(regs.iw)
        d.start, d.size = regs.base, regs.size
        d.interleave_ways, d.interleave_granularity = ways, eig_to_gran(regs.ig)
        d.enabled_flag = True
        d.locked_flag = regs.lock_on_commit
        port.commit_end = i
        return ways

    # ---- endpoint mode / DPA (cxl_dpa_set_mode, cxl_dpa_alloc, cxl_dpa_free) ---------
    def set_mode(self, d: EndpointDecoder, buf: bytes) -> None:
        d.check_alive()
        s = kstrip(buf)
        if s not in (MODE_RAM, MODE_PMEM, MODE_DC):
            raise KernelError(errno.EINVAL, f"{d.name}: unsupported mode: {s}")
        if d.enabled_flag:
            raise KernelError(errno.EBUSY, f"{d.name}: decoder enabled")
        hw = d.memdev.hw
        if s == MODE_PMEM and not hw.pmem_size:
            raise KernelError(errno.ENXIO, f"{d.name}: no available pmem capacity")
        if s == MODE_RAM and not hw.ram_size:
            raise KernelError(errno.ENXIO, f"{d.name}: no available ram capacity")
        if s == MODE_DC and not hw.dc_size:
            raise KernelError(errno.ENXIO, f"{d.name}: no available {MODE_DC} capacity")
        d.mode = s

    def set_dpa_size(self, d: EndpointDecoder, buf: bytes) -> None:
        d.check_alive()
        size = kstrtoull(buf, 0)
        if size % SZ_256M:
            raise KernelError(errno.EINVAL, f"{d.name}: dpa_size {size:#x} not 256M aligned")
        self.dpa_free(d)
        if size == 0:
            return
        self.dpa_alloc(d, size)

    def dpa_free(self, d: EndpointDecoder) -> None:
        port = d.port
        if d.dpa_start is None:
            return
        if d.region is not None:
            raise KernelError(errno.EBUSY, f"{d.name}: decoder assigned to: {d.region.name}")
        if d.enabled_flag:
            raise KernelError(errno.EBUSY, f"{d.name}: decoder enabled")
        if d.id != port.hdm_end:
            raise KernelError(errno.EBUSY, f"{d.name}: expected decoder{port.id}.{port.hdm_end}")
        d.dpa_start, d.dpa_len, d.skip = None, 0, 0
        port.hdm_end -= 1

    def allocated(self, port: CxlPort) -> list[EndpointDecoder]:
        return [x for x in port.decoders if isinstance(x, EndpointDecoder) and x.dpa_start is not None]

    def dpa_alloc(self, d: EndpointDecoder, size: int) -> None:
        port = d.port
        hw = d.memdev.hw
        if d.region is not None:
            raise KernelError(errno.EBUSY, f"{d.name}: decoder attached to {d.region.name}")
        if d.enabled_flag:
            raise KernelError(errno.EBUSY, f"{d.name}: decoder enabled")
        if d.mode not in (MODE_RAM, MODE_PMEM, MODE_DC):
            err = errno.EBUSY if self.core.kernel.has("dpa_mode_unset_ebusy") else errno.EINVAL
            raise KernelError(err, f"{d.name}: mode not set")
        allocs = self.allocated(port)
        prev_end = max((x.dpa_start + x.dpa_len for x in allocs), default=0)
        part_start, part_end = {MODE_RAM: (0, hw.ram_size), MODE_PMEM: (hw.ram_size, hw.total_capacity),
                                MODE_DC: (hw.dc_base, hw.dc_base + hw.dc_size)}[d.mode]
        in_part = [x for x in allocs if part_start <= x.dpa_start < part_end]
        start = max((x.dpa_start + x.dpa_len for x in in_part), default=part_start)
        avail = part_end - start
        if size > avail:
            raise KernelError(errno.ENOSPC,
                              f"{d.name}: {size:#x} exceeds available {d.mode} capacity: {max(avail, 0):#x}")
        if start < prev_end:
            # the skip register can only move forward: a ram decoder cannot
            # follow a pmem one (hdm.c DPA ordering)
            raise KernelError(errno.EBUSY, f"{d.name}: DPA {start:#x} is below the previous decoder's end")
        if d.dpa_start is not None:
            raise KernelError(errno.EBUSY, f"{d.name}: already allocated")
        if port.hdm_end + 1 != d.id:
            raise KernelError(errno.EBUSY,
                              f"{d.name}: expected decoder{port.id}.{port.hdm_end + 1}")
        d.dpa_start, d.dpa_len, d.skip = start, size, start - prev_end
        port.hdm_end += 1

    # ---- commit / reset (cxl_decoder_commit / cxl_decoder_reset) ------------------
    def commit(self, d: CxlDecoder) -> None:
        port = d.port
        if d.enabled_flag:
            return
        if port.commit_end + 1 != d.id:
            raise KernelError(errno.EBUSY,
                              f"{d.name}: out of order commit, expected decoder{port.id}.{port.commit_end + 1}")
        if isinstance(d, EndpointDecoder) and d.memdev.sanitizing:
            raise KernelError(errno.EBUSY, f"{d.name}: sanitize in progress")
        unit = port.hdm
        assert unit is not None and d.hw_index is not None
        if isinstance(d, EndpointDecoder):
            unit.program(d.hw_index, base=d.start, size=d.size, iw=ways_to_eiw(d.interleave_ways),
                         ig=gran_to_eig(d.interleave_granularity), dpa_skip=d.skip)
        else:
            assert isinstance(d, SwitchDecoder)
            ids = [t.port_id for t in d.targets[: d.interleave_ways] if t is not None]
            unit.program(d.hw_index, base=d.start, size=d.size, iw=ways_to_eiw(d.interleave_ways),
                         ig=gran_to_eig(d.interleave_granularity), targets=ids)
        port.commit_end += 1
        if not unit.set_commit(d.hw_index, True):
            port.commit_end -= 1
            unit.set_commit(d.hw_index, False)
            raise KernelError(errno.EIO, f"{d.name}: commit error")
        d.enabled_flag = True

    def reset(self, d: CxlDecoder) -> None:
        port = d.port
        if not d.enabled_flag:
            return
        if port.commit_end == d.id:
            port.commit_end -= 1
            # cxl_port_commit_reap(): lower decoders already disabled out of order
            while port.commit_end >= 0 and not port.decoders[port.commit_end].enabled_flag:
                port.commit_end -= 1
        else:
            self.core.kernel.log(f"{port.name}: {d.name}: out of order reset, expected "
                                 f"decoder{port.id}.{port.commit_end}")
        if port.hdm is not None and d.hw_index is not None:
            port.hdm.set_commit(d.hw_index, False)
            port.hdm.decoders[d.hw_index].clear()
        d.enabled_flag = False
        if isinstance(d, EndpointDecoder):
            d.auto = False
