"""A host of a rack: attach the rack's shared devices to an opened machine.

A machine named ``RACK/HOST`` lives in ``racks/RACK/hosts/HOST``.  Its Type 3
devices whose topology names an ``appliance`` are heads of a shared device in
``racks/RACK/devices/<appliance>/``.  When the machine is opened:

* its media store maps a head's DPA space onto the appliance's one media file
  (every host that has the extent mapped sees the same bytes -- no copy), and
  checks each access against the extents the head accepted (``guard``):
  anything else reads as all-ones, writes are dropped, both are counted by the
  device;
* ``kernel.fabric`` reaches the head's mailbox (the DC commands and the DC
  event log), one appliance transaction per command;
* :func:`service` runs the host's DC event handler: events the FM posted while
  the host was not running wait in the device's log and are handled now, as a
  pending interrupt would be.

Nothing here is saved with the host: handles are re-attached at every open.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cxlemu.data import physmem
from cxlemu.data.media import MediaStore
from cxlemu.hw import dcd as dcdhw
from cxlemu.machine import paths
from cxlemu.machine.appliance import ApplianceStore
from cxlemu.util.lazy import lazy_module

np = lazy_module("numpy")   # the data path only: opening a host must not import numpy

if TYPE_CHECKING:
    from cxlemu.hw.type3 import Type3Device


class RackMediaStore(MediaStore):
    """A host's media: its own devices' files plus the appliances' media."""

    def __init__(self, directory: Path, rack: "Path | str"):
        super().__init__(directory)
        self.rack = Path(rack)
        self._acl: dict[str, tuple[tuple[int, int], list[tuple[int, int]]]] = {}
        self._stores: dict[str, ApplianceStore] = {}

    def appliance(self, hw: "Type3Device") -> ApplianceStore:
        st = self._stores.get(hw.topo.appliance)
        if st is None:
            st = self._stores[hw.topo.appliance] = ApplianceStore(self.rack / "devices" / hw.topo.appliance)
        return st

    def path(self, hw: "Type3Device") -> Path:
        if hw.topo.appliance:
            return self.appliance(hw).media_path
        return super().path(hw)

    def _key(self, hw: "Type3Device") -> str:
        return hw.media_file if not hw.topo.appliance else f"@{hw.topo.appliance}"

    def _open(self, hw: "Type3Device"):
        if not hw.topo.appliance:
            return super()._open(hw)
        key = self._key(hw)
        entry = self._maps.get(key)
        if entry is not None:
            return entry
        import mmap
        p = self.path(hw)
        fd = os.open(p, os.O_RDWR)
        size = os.fstat(fd).st_size
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        entry = (fd, m, np.frombuffer(m, dtype=np.uint8))
        self._maps[key] = entry
        return entry

    # ---- no coherence across hosts: other hosts' unflushed stores ----------------------------------------
    def _foreign(self, appliance: str) -> list[tuple[int, bytes]]:
        """Undo data of lines other hosts stored to this appliance but have not
        written back (still in their CPU caches, data/cpucache.py): sorted
        (dpa, old bytes).  Read from their ``cpu_cache/`` files (data only)."""
        from cxlemu.data import cpucache
        try:
            layout = json.loads((self.rack / "rack.json").read_text())
        except (FileNotFoundError, ValueError):
            return []
        me = self.dir.parent.name
        out: list[tuple[int, bytes]] = []
        for host, files in layout.get("head_media", {}).items():
            if host == me:
                continue
            cdir = self.rack / "hosts" / host / "cpu_cache"
            for mf, app in files.items():
                if app != appliance:
                    continue
                try:
                    cap = cpucache.read_header(cpucache.lines_path(cdir, mf)).capacity
                    d = cpucache.DeviceCache(cdir, mf, cap)
                except (OSError, cpucache.CacheFormatError):
                    continue
                try:
                    line = cpucache.LINE
                    for a, b in cpucache.runs(d.dirty_lines()):
                        out.append((a * line, bytes(d.undo[a * line:b * line])))
                finally:
                    d.close()
        return sorted(out, key=lambda x: x[0])

    def overlay(self, hw: "Type3Device", dpa: int, buf) -> None:
        """What this host reads at [dpa, dpa+len(buf)) of an appliance: lines
        another host has stored but not written back are not visible yet
        (CXL gives no coherence between hosts here; docs/pooling.md)."""
        if not hw.topo.appliance:
            return
        _apply(self._foreign(hw.topo.appliance), dpa, buf)

    def overlay_lines(self, hw: "Type3Device", dpas, rows, out) -> None:
        """``overlay`` for a batch of lines: ``out[rows[i]]`` holds the line at
        ``dpas[i]``; only lines that meet another host's dirty extents are touched."""
        if not hw.topo.appliance or len(dpas) == 0:
            return
        foreign = self._foreign(hw.topo.appliance)
        if not foreign:
            return
        size = out.shape[1]
        d = np.asarray(dpas, dtype=np.int64)
        hit = np.zeros(len(d), dtype=bool)
        for s, old in foreign:
            hit |= (d < s + len(old)) & (d + size > s)
        for k in np.flatnonzero(hit).tolist():          # one read of the other hosts' caches
            _apply(foreign, int(d[k]), out[rows[k]])

    def discard(self, hw: "Type3Device", start: int, length: int) -> None:
        if hw.topo.appliance:
            return              # a host's reset does not touch the appliance
        super().discard(hw, start, length)

    # ---- access control (the device's check, "trust the switch") ---------------------------------------
    def ranges(self, hw: "Type3Device") -> list[tuple[int, int]]:
        st = self.appliance(hw)
        try:
            s = os.stat(st.state_path)
        except FileNotFoundError:
            return []
        stamp = (s.st_mtime_ns, s.st_size)
        hit = self._acl.get(hw.topo.appliance + f"/{hw.topo.head}")
        if hit is not None and hit[0] == stamp:
            return hit[1]
        rng = st.read().access_ranges(hw.topo.head)
        self._acl[hw.topo.appliance + f"/{hw.topo.head}"] = (stamp, rng)
        return rng

    def guard(self, hw: "Type3Device", dpas, length: int, write: bool):
        """Which accesses [dpa, dpa+length) head ``hw`` may make; None = all
        (not a head).  Denied accesses are counted by the device."""
        if not hw.topo.appliance:
            return None
        ok = dcdhw.access_mask(self.ranges(hw), dpas, length)
        bad = int(ok.size - np.count_nonzero(ok))
        if bad:
            with self.appliance(hw).transaction() as dev:
                dev.count_denied(hw.topo.head, write, bad)
        return ok


class Fabric:
    """``kernel.fabric``: the mailboxes of the heads this host is cabled to."""

    def __init__(self, media: RackMediaStore):
        self.media = media

    calls = 0      # commands sent to appliances (a running host snapshots, not journals, after any)

    def mailbox(self, hw: "Type3Device", opcode: int, payload: bytes) -> tuple[int, bytes]:
        self.calls += 1
        if not hw.topo.appliance:
            from cxlemu.hw.mailbox.opcodes import ReturnCode
            return ReturnCode.UNSUPPORTED, b""
        with self.media.appliance(hw).transaction() as dev:
            return dcdhw.handle(dev, hw.topo.head, opcode, payload)


def attach(m: "Machine") -> None:
    rack = paths.rack_dir_of(m.path)
    if rack is None or not any(d.topo.appliance for d in m.platform.devices):
        return
    media = RackMediaStore(m.path / "media", rack)
    m.media = media
    physmem.attach(m.kernel, media)     # device-side and CPU-side accesses reach the shared media
    m.kernel.fabric = Fabric(media)


def service(m: "Machine") -> int:
    """Run the DC event handler (the pending interrupt); make sure a DC region
    exists (the host's boot script: ``cxl create-region -m dynamic_ram_1``).
    The mailbox commands of one run form one device transaction per appliance."""
    k = m.kernel
    if getattr(k, "fabric", None) is None:
        return 0
    import contextlib
    with contextlib.ExitStack() as stack:
        for d in m.platform.devices:
            if d.topo.appliance:
                stack.enter_context(m.media.appliance(d).transaction())
        return _service(m)


def _service(m: "Machine") -> int:
    k = m.kernel
    from cxlemu.kernel.base.device import KernelError
    from cxlemu.kernel.cxl import dcd
    for md in dcd.dc_memdevs(k):
        if md.driver is not None and dcd.dc_region_of(k, md) is None:
            try:
                dcd.create_dc_region(k, md)
                k.dirty = True
            except KernelError as e:
                k.log(f"{md.name}: DC region setup failed: {e.log}")
    return dcd.service(k)


def _apply(foreign: list[tuple[int, bytes]], dpa: int, buf) -> None:
    """Put the old bytes of other hosts' unflushed lines over ``buf`` (read at ``dpa``)."""
    end = dpa + len(buf)
    for s, old in foreign:
        e = s + len(old)
        if e <= dpa or s >= end:
            continue
        lo, hi = max(s, dpa), min(e, end)
        buf[lo - dpa:hi - dpa] = np.frombuffer(old[lo - s:hi - s], dtype=np.uint8)
