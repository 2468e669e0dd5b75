"""HPA-addressed access to CXL memory, routed through the hardware.

Routing is what the hardware does, not what the kernel believes: a host
physical address is claimed by a CFMWS window, sent to a host bridge by the
window's interleave arithmetic (modulo, or XOR with the CXIMS maps), then
through each committed HDM decoder (host bridge, switches) to a downstream
port, and finally translated to a DPA by the device's committed endpoint
decoder.  A pass-through port (no HDM decoder capability, one downstream
port) forwards everything.  An address nothing claims raises
:class:`BusError` before anything is written, as a master abort would.

Bulk transfers are vectorised: an access is split into decode ranges (sets
of endpoint decoders with the same HPA range); a non-interleaved range is
one contiguous copy; an interleaved one routes every granule in one numpy
pass and copies per device with a strided view when the pattern is regular
(modulo interleave) or a fancy-indexed gather/scatter otherwise (XOR).
"""

from __future__ import annotations

import errno
from dataclasses import field
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cxlemu.hw.platform import HostBridgeHw, Platform, SwitchHw, WindowHw
from cxlemu.hw.type3 import Type3Device
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.data.media import MediaStore

U64 = np.uint64


class BusError(OSError):
    """An access no decoder claims (the CPU would take a machine check / SIGBUS)."""

    def __init__(self, hpa: int, why: str):
        super().__init__(errno.EFAULT, f"bus error at HPA {hpa:#x}: {why}")
        self.hpa = hpa
        self.why = why


class PoisonError(OSError):
    """A read reached a poisoned cache line: the device returned poison, not
    data.  ``errno`` is EIO (what read(2) of /dev/mem or a dax device gets);
    ``hpa`` is the first poisoned address of the access, ``device``/``dpa``
    where it lives."""

    def __init__(self, hpa: int, device: str, dpa: int):
        super().__init__(errno.EIO, f"poison consumed at HPA {hpa:#x} ({device} DPA {dpa:#x})")
        self.hpa, self.device, self.dpa = hpa, device, dpa

    @property
    def pfn(self) -> int:
        return self.hpa >> 12


def _ways(eiw: int) -> int:
    return 1 << eiw if eiw < 8 else 3 << (eiw - 8)


def _parity(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return (np.bitwise_count(x) & 1).astype(np.uint64)
    x = x.copy()
    for s in (32, 16, 8, 4, 2, 1):
        x ^= x >> U64(s)
    return x & U64(1)


@dataclass
class Member:
    dev: int              # index into Platform.devices
    dpa_base: int
    iw: int
    ig: int


@dataclass
class DecodeRange:
    base: int
    size: int
    window: WindowHw
    members: dict[int, Member] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def interleaved(self) -> bool:
        return len(self.members) > 1 or any(m.iw > 1 for m in self.members.values())

    @property
    def granule(self) -> int:
        return min(m.ig for m in self.members.values())


def compile_ranges(p: Platform) -> list[DecodeRange]:
    """Decode ranges from the committed endpoint decoders of every device."""
    ranges: dict[tuple[int, int], DecodeRange] = {}
    for di, d in enumerate(p.devices):
        if d.hdm is None:
            continue
        dpa_end = 0
        for regs in d.hdm.decoders:
            if not regs.committed:
                break
            iw = _ways(regs.iw)
            start = dpa_end + regs.dpa_skip
            dpa_end = start + regs.size // iw
            key = (regs.base, regs.size)
            if key not in ranges:
                w = next((w for w in p.windows if w.base <= regs.base and regs.base + regs.size <= w.end), None)
                if w is None:
                    continue
                ranges[key] = DecodeRange(regs.base, regs.size, w)
            ranges[key].members[di] = Member(di, start, iw, 256 << regs.ig)
    return sorted(ranges.values(), key=lambda r: r.base)


class Router:
    """Routes HPA arrays through host bridge and switch decoders to devices."""

    def __init__(self, p: Platform):
        self.p = p
        self.dev_index = {id(d): i for i, d in enumerate(p.devices)}

    def _root_select(self, w: WindowHw, h: np.ndarray) -> np.ndarray:
        """Host-bridge index for each HPA (the CFMWS interleave, CXL r3.1 9.18.1.3).

        Modulo: ``((hpa - base) / HBIG) mod NIW``.  XOR (Table 9-22): each
        xormap's parity replaces the map's lowest address bit first, then the
        same modulo applies -- for 2/4/8/16 ways this is exactly "bit i of the
        target index = XORALLBITS(HPA & map_i)"; 3/6/12 ways add a modulo-3
        term.  Offsets are taken from the window base, so for 3/6/12-way
        windows a region whose offset in the window is not a multiple of
        3 x HBIG x ways would be rotated relative to the kernel's region-
        relative position math (docs/fidelity.md)."""
        ways = w.topo.ways
        if ways == 1:
            return np.zeros(h.shape, dtype=np.int64)
        g = w.topo.granularity
        hh = h
        if w.topo.arithmetic == "xor":
            pow2 = ways & (ways - 1) == 0
            nmaps = (ways if pow2 else ways // 3).bit_length() - 1
            hh = h.copy()
            for m in w.topo.xormaps[:nmaps]:
                if not m:
                    continue
                bit = U64((m & -m).bit_length() - 1)
                hh = (hh & ~(U64(1) << bit)) | (_parity(hh & U64(m)) << bit)
        return (((hh - U64(w.base)) // U64(g)) % U64(ways)).astype(np.int64)

    def route(self, h: np.ndarray) -> np.ndarray:
        """Device index for each HPA (-1 where nothing claims it)."""
        out = np.full(h.shape, -1, dtype=np.int64)
        for w in self.p.windows:
            sel = np.nonzero((h >= U64(w.base)) & (h < U64(w.end)))[0]
            if sel.size == 0:
                continue
            hb_idx = self._root_select(w, h[sel])
            for k in np.unique(hb_idx):
                if not 0 <= k < len(w.host_bridges):
                    continue
                s2 = sel[hb_idx == k]
                self._descend(w.host_bridges[int(k)], h, s2, out)
        return out

    def _descend(self, node: HostBridgeHw | SwitchHw, h: np.ndarray, sel: np.ndarray, out: np.ndarray) -> None:
        unit = node.hdm
        if unit is None:
            if len(node.ports) == 1:
                self._to_port(node.ports[0], h, sel, out)
            return
        hs = h[sel]
        for regs in unit.decoders:
            if not regs.committed:
                continue
            m = (hs >= U64(regs.base)) & (hs < U64(regs.base + regs.size))
            if not m.any():
                continue
            s2 = sel[m]
            iw = _ways(regs.iw)
            ig = 256 << regs.ig
            if iw == 1:
                tidx = np.zeros(s2.shape, dtype=np.int64)
            else:
                tidx = (((h[s2] - U64(regs.base)) // U64(ig)) % U64(iw)).astype(np.int64)
            by_id = {dp.port_id: dp for dp in node.ports}
            for t in np.unique(tidx):
                if t >= len(regs.targets):
                    continue
                dp = by_id.get(regs.targets[int(t)])
                if dp is not None:
                    self._to_port(dp, h, s2[tidx == t], out)

    def _to_port(self, dp, h: np.ndarray, sel: np.ndarray, out: np.ndarray) -> None:
        c = dp.child
        if isinstance(c, SwitchHw):
            self._descend(c, h, sel, out)
        elif isinstance(c, Type3Device):
            out[sel] = self.dev_index[id(c)]


def _ep_dpa(off: np.ndarray, m: Member) -> np.ndarray:
    """Endpoint HDM decoder HPA->DPA: drop the interleave bits (CXL r3.1 8.2.4.20.13)."""
    g = U64(m.ig)
    if m.iw == 1:
        return off + U64(m.dpa_base)
    chunk = off // g
    if m.iw & (m.iw - 1) == 0:
        chunk = chunk >> U64(m.iw.bit_length() - 1)
    else:
        chunk = chunk // U64(m.iw)
    return chunk * g + (off % g) + U64(m.dpa_base)


class HpaSpace:
    """Reads and writes at host physical addresses of one machine."""

    def __init__(self, platform: Platform, media: "MediaStore"):
        self.p = platform
        self.media = media
        self.ranges = compile_ranges(platform)
        self.router = Router(platform)

    # ---- planning ---------------------------------------------------------------------
    def _segments(self, hpa: int, n: int) -> list[tuple[DecodeRange, int, int]]:
        """Split [hpa, hpa+n) into (range, start, length) pieces; BusError on any hole."""
        out = []
        pos, end = hpa, hpa + n
        while pos < end:
            r = next((r for r in self.ranges if r.base <= pos < r.end), None)
            if r is None:
                raise BusError(pos, "no committed decoder claims this address")
            take = min(end, r.end) - pos
            out.append((r, pos, take))
            pos += take
        return out

    def _plan(self, r: DecodeRange, start: int, length: int):
        """Per device: (buffer offsets, dpas, chunk) covering [start, start+length)."""
        if not r.interleaved:
            (m,) = r.members.values()
            dev_ok = self.router.route(np.array([start], dtype=np.uint64))[0]
            if dev_ok != m.dev:
                raise BusError(start, "the fabric does not route this range to its endpoint")
            return [(m.dev, None, int(_ep_dpa(np.array([start - r.base], dtype=np.uint64), m)[0]), length)]
        g = r.granule
        first = start - (start - r.base) % g
        last = start + length
        gidx = np.arange(first, last, g, dtype=np.uint64)
        devs = self.router.route(gidx)
        bad = np.nonzero(devs < 0)[0]
        if bad.size:
            raise BusError(int(gidx[bad[0]]), "the fabric routes this granule nowhere")
        plan = []
        for di in np.unique(devs):
            m = r.members.get(int(di))
            sel = np.nonzero(devs == di)[0]
            if m is None:
                raise BusError(int(gidx[sel[0]]), f"{self.p.devices[int(di)].name} has no decoder for it")
            buf_off = (gidx[sel] - U64(start)).astype(np.int64)
            dpa = _ep_dpa(gidx[sel] - U64(r.base), m).astype(np.int64)
            plan.append((int(di), buf_off, dpa, g))
        return plan

    # ---- bulk copy ------------------------------------------------------------------------
    def _copy(self, hpa: int, buf: np.ndarray, write: bool) -> None:
        n = buf.size
        segs = self._segments(hpa, n)
        plans = [(s, self._plan(r, s, ln), ln) for r, s, ln in segs]   # validate everything first
        if not write:
            for seg_start, plan, ln in plans:             # poison is found before any byte moves
                for di, offs, dpas, g in plan:
                    self._check_poison(seg_start, ln, di, offs, dpas, g)
        for seg_start, plan, ln in plans:
            base = seg_start - hpa
            seg = buf[base:base + ln]
            for di, offs, dpas, g in plan:
                hw = self.p.devices[di]
                if not hw.link_up:                    # link down: reads return all-ones, writes are lost
                    if not write:
                        self._fill_ones(seg, offs, g)
                    continue
                media = self.media.array(hw)
                if offs is None:                      # not interleaved: one contiguous copy
                    if not self._allowed(di, dpas, ln, write):
                        if not write:
                            seg[:] = 0xFF             # the device's access check: all-ones, counted
                        continue
                    self._xfer(media[dpas:dpas + ln], seg, write)
                    if not write:
                        self._overlay(di, dpas, seg)
                    continue
                self._xfer_granules(media, seg, offs, dpas, g, write)

    def _allowed(self, di: int, dpa: int, length: int, write: bool) -> bool:
        """A multi-headed DCD checks every access against the extents the head
        accepted (machine/rackhost.py); other media has no check."""
        guard = getattr(self.media, "guard", None)
        if guard is None:
            return True
        ok = guard(self.p.devices[di], np.array([dpa], dtype=np.int64), length, write)
        return ok is None or bool(ok[0])

    def _overlay(self, di: int, dpa: int, buf: np.ndarray) -> None:
        """Shared media: other hosts' stores still in their caches are not
        visible here (machine/rackhost.py); other media has no overlay."""
        fn = getattr(self.media, "overlay", None)
        if fn is not None:
            fn(self.p.devices[di], dpa, buf)

    def _line_mask(self, di: int, dpa: np.ndarray, size: int, write: bool):
        guard = getattr(self.media, "guard", None)
        return None if guard is None else guard(self.p.devices[di], dpa, size, write)

    @staticmethod
    def _fill_ones(seg: np.ndarray, offs, g: int) -> None:
        if offs is None:
            seg[:] = 0xFF
            return
        n = seg.size
        for o in np.asarray(offs).tolist():
            lo, hi = max(0, o), min(n, o + g)
            if hi > lo:
                seg[lo:hi] = 0xFF

    def _check_poison(self, seg_start: int, ln: int, di: int, offs, dpas, g: int) -> None:
        """Raise PoisonError when any byte of this piece is poisoned on its device
        (one searchsorted pass over the granules of an interleaved piece)."""
        hw = self.p.devices[di]
        ps = hw.poison
        if not len(ps) or not hw.link_up:
            return
        if offs is None:
            bad = ps.first_poisoned(dpas, ln)
            if bad is not None:
                raise PoisonError(seg_start + (bad - dpas), hw.name, bad)
            return
        o = np.asarray(offs, dtype=np.int64)
        lo = np.clip(o, 0, ln)
        hi = np.clip(o + g, 0, ln)
        keep = hi > lo
        d_eff = np.asarray(dpas, dtype=np.int64) + (lo - o)
        m = ps.mask(d_eff[keep], (hi - lo)[keep]) if keep.any() else np.zeros(0, bool)
        if m.any():
            k = int(np.flatnonzero(keep)[int(np.argmax(m))])
            bad = ps.first_poisoned(int(d_eff[k]), int(hi[k] - lo[k]))
            raise PoisonError(seg_start + int(lo[k]) + (bad - int(d_eff[k])), hw.name, bad)

    @staticmethod
    def _xfer(dev: np.ndarray, buf: np.ndarray, write: bool) -> None:
        if write:
            dev[:] = buf
        else:
            buf[:] = dev

    def _xfer_granules(self, media: np.ndarray, seg: np.ndarray, offs: np.ndarray, dpas: np.ndarray,
                       g: int, write: bool) -> None:
        n = seg.size
        # partial granules at the edges (offsets < 0 or beyond the end) are done one by one (at most 2)
        full = (offs >= 0) & (offs + g <= n)
        for i in np.nonzero(~full)[0]:
            lo = max(0, int(offs[i]))
            hi = min(n, int(offs[i]) + g)
            if hi <= lo:
                continue
            d0 = int(dpas[i]) + (lo - int(offs[i]))
            self._xfer(media[d0:d0 + hi - lo], seg[lo:hi], write)
        offs, dpas = offs[full], dpas[full]
        k = offs.size
        if k == 0:
            return
        regular = k == 1 or (
            np.all(np.diff(dpas) == g) and np.all(np.diff(offs) == offs[1] - offs[0]) and offs[1] > offs[0])
        if regular:
            stride = int(offs[1] - offs[0]) if k > 1 else g
            src = as_strided(seg[int(offs[0]):], shape=(k, g), strides=(stride, 1))
            dev = media[int(dpas[0]):int(dpas[0]) + k * g].reshape(k, g)
            if write:
                dev[:] = src
            else:
                src[:] = dev
            return
        rows = (offs[0] % g == 0) and seg.size % g == 0 and np.all(offs % g == 0)
        if rows and np.all(dpas % g == 0):
            seg2 = seg.reshape(-1, g)
            med2 = media[: media.size - media.size % g].reshape(-1, g)
            if write:
                med2[dpas // g] = seg2[offs // g]
            else:
                seg2[offs // g] = med2[dpas // g]
            return
        for o, d in zip(offs.tolist(), dpas.tolist()):  # unaligned irregular (rare)
            self._xfer(media[d:d + g], seg[o:o + g], write)

    def read(self, hpa: int, n: int) -> bytes:
        buf = np.empty(n, dtype=np.uint8)
        self._copy(hpa, buf, write=False)
        return buf.tobytes()

    def read_into(self, hpa: int, out: np.ndarray) -> None:
        self._copy(hpa, out.reshape(-1).view(np.uint8), write=False)

    def write(self, hpa: int, data: bytes | bytearray | memoryview | np.ndarray) -> None:
        arr = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
        self._copy(hpa, arr.reshape(-1).view(np.uint8), write=True)

    # ---- batched cache-line access ------------------------------------------------------------
    def _route_lines(self, hpas: np.ndarray, size: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        hpas = np.asarray(hpas, dtype=np.uint64)
        if hpas.size and np.any(hpas % U64(size)):
            raise ValueError(f"batched accesses must be {size}-byte aligned")
        devs = self.router.route(hpas)
        out = []
        dpa = np.zeros(hpas.shape, dtype=np.int64)
        claimed = np.zeros(hpas.shape, dtype=bool)
        for r in self.ranges:
            m_in = (hpas >= U64(r.base)) & (hpas < U64(r.end))
            if not m_in.any():
                continue
            for di, m in r.members.items():
                sel = m_in & (devs == di)
                if sel.any():
                    dpa[sel] = _ep_dpa(hpas[sel] - U64(r.base), m).astype(np.int64)
                    claimed[sel] = True
        bad = np.nonzero(~claimed)[0]
        if bad.size:
            raise BusError(int(hpas[bad[0]]), "no committed decoder claims this address")
        for di in np.unique(devs):
            sel = np.nonzero(devs == di)[0]
            out.append((int(di), sel, dpa[sel]))
        return out

    def gather(self, hpas: np.ndarray, size: int = 64) -> np.ndarray:
        """Read ``size`` bytes at each HPA: returns an (N, size) uint8 array.
        Raises PoisonError if any line is poisoned (nothing is returned)."""
        out, bad = self.gather_checked(hpas, size)
        if bad.any():
            i = int(np.argmax(bad))
            hw, dpa = self.locate(int(np.asarray(hpas, dtype=np.uint64)[i]))
            raise PoisonError(int(np.asarray(hpas, dtype=np.uint64)[i]), hw.name, dpa)
        return out

    def poisoned(self, hpas: np.ndarray, size: int = 64) -> np.ndarray:
        """Bool per line at ``hpas``: would a load get poison?  Lines outside every
        CXL decode range (DRAM) are never poisoned here.  No media is read:
        one routing pass and one searchsorted per device."""
        h = np.asarray(hpas, dtype=np.uint64)
        bad = np.zeros(h.shape, dtype=bool)
        inside = np.zeros(h.shape, dtype=bool)
        for r in self.ranges:
            inside |= (h >= np.uint64(r.base)) & (h < np.uint64(r.end))
        idx = np.flatnonzero(inside)
        if not idx.size or not any(len(d.poison) for d in self.p.devices):
            return bad
        for di, sel, dpa in self._route_lines(h[idx] - h[idx] % np.uint64(size), size):
            ps = self.p.devices[di].poison
            if len(ps):
                bad[idx[sel]] = ps.mask(dpa, size)
        return bad

    def poisoned_lines(self, hpas: np.ndarray, size: int = 64) -> np.ndarray:
        """A bool per line at ``hpas``: would a load consume poison?  Routing and
        the devices' poison lists only (no media read)."""
        bad = np.zeros(len(hpas), dtype=bool)
        for di, sel, dpa in self._route_lines(hpas, size):
            hw = self.p.devices[di]
            if hw.link_up and len(hw.poison):
                bad[sel[hw.poison.mask(dpa, size)]] = True
        return bad

    def gather_checked(self, hpas: np.ndarray, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Read ``size`` bytes at each HPA, and a bool per line: poisoned.
        Poisoned lines come back as zeros (never the stale bytes under them);
        lines of a device whose link is down read as all-ones.  Vectorised:
        one routing pass and one searchsorted per device."""
        out = np.empty((len(hpas), size), dtype=np.uint8)
        bad = np.zeros(len(hpas), dtype=bool)
        for di, sel, dpa in self._route_lines(hpas, size):
            hw = self.p.devices[di]
            if not hw.link_up:
                out[sel] = 0xFF
                continue
            media = self.media.array(hw)
            lines = media[: media.size - media.size % size].reshape(-1, size)
            ok = self._line_mask(di, dpa, size, False)
            if ok is None:
                out[sel] = lines[dpa // size]
            else:
                out[sel] = 0xFF
                out[sel[ok]] = lines[dpa[ok] // size]
                fn = getattr(self.media, "overlay_lines", None)
                if fn is not None:
                    fn(self.p.devices[di], dpa[ok], sel[ok], out)
            if len(hw.poison):
                m = hw.poison.mask(dpa, size)
                if ok is not None:
                    m &= ok                       # a refused access reads all-ones, never poison
                if m.any():
                    bad[sel[m]] = True
                    out[sel[m]] = 0
        return out, bad

    def scatter(self, hpas: np.ndarray, data: np.ndarray, size: int = 64) -> None:
        data = np.asarray(data, dtype=np.uint8).reshape(len(hpas), size)
        for di, sel, dpa in self._route_lines(hpas, size):
            hw = self.p.devices[di]
            if not hw.link_up:
                continue
            media = self.media.array(hw)
            lines = media[: media.size - media.size % size].reshape(-1, size)
            ok = self._line_mask(di, dpa, size, True)
            if ok is None:
                lines[dpa // size] = data[sel]
            else:
                lines[dpa[ok] // size] = data[sel[ok]]

    # ---- where a range lives (for mappings of the media) -------------------------------------------
    def extents(self, hpa: int, n: int) -> np.ndarray:
        """Where [hpa, hpa+n) lives on the media, in HPA order: an (k, 4) int64
        array of rows ``(offset, length, device index, dpa)``, ``offset``
        relative to ``hpa``; neighbouring pieces that continue each other on
        the same device are merged.  BusError on any unclaimed byte."""
        parts = []
        for r, start, ln in self._segments(hpa, n):
            base = start - hpa
            for di, offs, dpas, g in self._plan(r, start, ln):
                if offs is None:                  # not interleaved: one run
                    parts.append(np.array([[base, ln, di, dpas]], dtype=np.int64))
                    continue
                lo = np.maximum(offs, 0)
                hi = np.minimum(offs + g, ln)
                keep = hi > lo
                lo, hi, d0 = lo[keep], hi[keep], dpas[keep] + (lo[keep] - offs[keep])
                parts.append(np.stack([lo + base, hi - lo, np.full(lo.shape, di, dtype=np.int64), d0], axis=1))
        if not parts:
            return np.zeros((0, 4), dtype=np.int64)
        ext = np.concatenate(parts).astype(np.int64)
        ext = ext[np.argsort(ext[:, 0], kind="stable")]
        if len(ext) > 1:                          # merge runs that continue each other
            cont = (ext[1:, 2] == ext[:-1, 2]) & (ext[1:, 3] == ext[:-1, 3] + ext[:-1, 1]) & \
                   (ext[1:, 0] == ext[:-1, 0] + ext[:-1, 1])
            head = np.concatenate(([True], ~cont))
            group = np.cumsum(head) - 1
            lengths = np.bincount(group, weights=ext[:, 1]).astype(np.int64)
            ext = ext[head]
            ext[:, 1] = lengths
        return ext

    # ---- scalar translation (for `cxlemu translate` and tests) ----------------------------------
    def locate(self, hpa: int) -> tuple[Type3Device, int]:
        (r, _, _), = self._segments(hpa, 1)
        di, offs, dpas, _ = self._plan(r, hpa, 1)[0]
        if offs is None:
            return self.p.devices[di], dpas
        return self.p.devices[di], int(dpas[0]) - int(offs[0])
