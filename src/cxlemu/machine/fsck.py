"""Consistency check of a machine's kernel model: the invariants that hold in
any state a sequence of valid operations can reach, however it was
interrupted.  ``cxlemu status NAME --check`` runs it; the kill -9 tests run it
after every restart.

Checked (each problem is one line naming the objects):

* device model: every device on a bus is registered under its name, is
  reachable from the root of /sys/devices, and is bound (if at all) to one
  of its bus's drivers; no device has two parents;
* iomem: children sorted, inside their parent, not overlapping;
* HDM decoders: a kernel decoder is enabled exactly when its hardware decoder
  is committed, with the same HPA base and size; a port's ``commit_end`` is
  its highest enabled decoder; endpoint decoders' DPA ranges lie in the
  partition of their mode, inside the device, do not overlap, and are
  allocated in decoder order (``hdm_end``);
* regions: a committed region has its HPA range inside its window, all its
  targets, each pointing back at it, each with a committed decoder over the
  same HPA range, and DPA that adds up to the region's size; every endpoint
  decoder that names a region is among that region's targets;
* device-DAX: each device's ranges lie inside its dax region and do not
  overlap another device's;
* memory blocks: an online block lies inside a "System RAM" iomem resource,
  an offline one has no zone.
"""

from __future__ import annotations

from typing import Any, Callable


def check(machine: Any) -> list[str]:
    """Every broken invariant of ``machine`` (a Machine or a Kernel), as text."""
    k = getattr(machine, "kernel", machine)
    problems: list[str] = []
    for name, fn in (("devices", _devices), ("iomem", _iomem), ("decoders", _decoders), ("regions", _regions),
                     ("dax", _dax), ("memory", _memory)):
        try:
            problems.extend(f"{name}: {p}" for p in fn(k))
        except Exception as e:       # a model so broken that the check itself trips is a problem too
            problems.append(f"{name}: check failed: {e.__class__.__name__}: {e}")
    return problems


def _devices(k) -> list[str]:
    out: list[str] = []
    seen: dict[int, Any] = {}
    stack = [k.root]
    while stack:
        d = stack.pop()
        for c in d.children:
            if id(c) in seen:
                out.append(f"{c.name} has two parents ({seen[id(c)].name}, {d.name})")
                continue
            seen[id(c)] = d
            if c.parent is not d and d is not k.root:
                out.append(f"{c.name}: listed under {d.name} but its parent is "
                           f"{getattr(c.parent, 'name', None)}")
            stack.append(c)
    for bname, bus in k.buses.items():
        drivers = {id(v) for v in bus.drivers.values()}
        for name, dev in bus.devices.items():
            if dev.name != name:
                out.append(f"bus {bname}: {name} is registered as {dev.name}")
            if not dev.registered:
                out.append(f"bus {bname}: {name} is on the bus but not registered")
            if id(dev) not in seen:
                out.append(f"bus {bname}: {name} is not under /sys/devices")
            if dev.driver is not None and id(dev.driver) not in drivers:
                out.append(f"bus {bname}: {name} is bound to {dev.driver.name}, not a driver of the bus")
    return out


def _iomem(k) -> list[str]:
    out: list[str] = []
    stack = [k.iomem]
    while stack:
        r = stack.pop()
        prev = None
        for c in r.children:
            if c.parent is not r:
                out.append(f"{c.name} [{c.start:#x}-{c.end:#x}]: wrong parent")
            if c.start > c.end or not (r.start <= c.start and c.end <= r.end):
                out.append(f"{c.name} [{c.start:#x}-{c.end:#x}] is not inside {r.name} [{r.start:#x}-{r.end:#x}]")
            if prev is not None and c.start <= prev.end:
                out.append(f"{c.name} [{c.start:#x}-{c.end:#x}] overlaps or precedes {prev.name} "
                           f"[{prev.start:#x}-{prev.end:#x}]")
            prev = c
            stack.append(c)
    return out


def _endpoint_decoders(k) -> list:
    from cxlemu.kernel.cxl.port import EndpointDecoder
    return [d for p in k.cxl.ports() for d in p.decoders if isinstance(d, EndpointDecoder)]


def _decoders(k) -> list[str]:
    from cxlemu.kernel.cxl.port import EndpointDecoder, RootDecoder
    out: list[str] = []
    for port in k.cxl.ports():
        enabled = [d.id for d in port.decoders if d.enabled_flag and not isinstance(d, RootDecoder)]
        if enabled and port.commit_end != max(enabled):
            out.append(f"{port.name}: commit_end {port.commit_end} but decoder{port.id}.{max(enabled)} is enabled")
        for d in port.decoders:
            if isinstance(d, RootDecoder) or d.hw_index is None or port.hdm is None:
                continue
            regs = port.hdm.decoders[d.hw_index]
            if bool(d.enabled_flag) != bool(regs.committed):
                out.append(f"{d.name}: kernel says {'enabled' if d.enabled_flag else 'disabled'}, hardware "
                           f"says {'committed' if regs.committed else 'not committed'}")
            elif d.enabled_flag and (regs.base, regs.size) != (d.start, d.size):
                out.append(f"{d.name}: HPA {d.start:#x}+{d.size:#x} but hardware decodes "
                           f"{regs.base:#x}+{regs.size:#x}")
        eds = [d for d in port.decoders if isinstance(d, EndpointDecoder) and d.dpa_start is not None]
        if not eds:
            continue
        hw = eds[0].memdev.hw
        last = max(d.id for d in eds)
        if port.hdm_end != last:
            out.append(f"{port.name}: hdm_end {port.hdm_end} but decoder{port.id}.{last} has DPA")
        spans = sorted(((d.dpa_start, d.dpa_start + d.dpa_len, d) for d in eds), key=lambda x: (x[0], x[1]))
        for (s0, e0, d0), (s1, _e1, d1) in zip(spans, spans[1:]):
            if s1 < e0:
                out.append(f"{d0.name} and {d1.name}: DPA ranges overlap")
        for s, e, d in spans:
            lo, hi = (0, hw.ram_size) if d.mode == "ram" else (hw.ram_size, hw.total_capacity)
            if d.mode not in ("ram", "pmem"):
                out.append(f"{d.name}: DPA allocated with mode {d.mode!r}")
            elif not (lo <= s and e <= hi):
                out.append(f"{d.name}: DPA {s:#x}-{e - 1:#x} outside the {d.mode} partition {lo:#x}-{hi - 1:#x}")
    return out


def _regions(k) -> list[str]:
    from cxlemu.kernel.cxl.region import COMMIT
    out: list[str] = []
    regions = k.cxl.regions.all()
    for r in regions:
        ways = r.interleave_ways
        targets = [t for t in r.targets[:ways] if t is not None] if ways else []
        for t in targets:
            if t.region is not r:
                out.append(f"{r.name}: target {t.name} points at {getattr(t.region, 'name', None)}")
        if r.state < COMMIT:
            continue
        if r.res is None:
            out.append(f"{r.name}: committed without an HPA range")
            continue
        w = r.cxlrd.res
        if w is not None and not (w.start <= r.res.start and r.res.end <= w.end):
            out.append(f"{r.name}: HPA {r.res.start:#x}-{r.res.end:#x} outside {r.cxlrd.name}")
        if len(targets) != ways:
            out.append(f"{r.name}: committed with {len(targets)} of {ways} targets")
        for t in targets:
            if not t.enabled_flag:
                out.append(f"{r.name}: target {t.name} is not committed")
            elif (t.start, t.size) != (r.res.start, r.res.end - r.res.start + 1):
                out.append(f"{r.name}: target {t.name} decodes {t.start:#x}+{t.size:#x}")
        if targets and sum(t.dpa_len for t in targets) != r.res.end - r.res.start + 1:
            out.append(f"{r.name}: targets' DPA ({sum(t.dpa_len for t in targets):#x}) does not add up to "
                       f"its size")
    alive = {id(r) for r in regions}
    for d in _endpoint_decoders(k):
        r = d.region
        if r is None:
            continue
        if id(r) not in alive:
            out.append(f"{d.name}: attached to {r.name}, which is gone")
        elif d not in r.targets[: r.interleave_ways]:
            out.append(f"{d.name}: attached to {r.name} but not one of its targets")
    return out


def _dax(k) -> list[str]:
    out: list[str] = []
    for reg in k.dax.regions:
        spans = []
        for dev in reg.devices:
            for rng in dev.ranges:
                if not (reg.res.start <= rng.start and rng.end <= reg.res.end):
                    out.append(f"{dev.name}: range {rng.start:#x}-{rng.end:#x} outside its dax region")
                spans.append((rng.start, rng.end, dev.name))
        spans.sort(key=lambda x: (x[0], x[1]))
        for (s0, e0, n0), (s1, _e1, n1) in zip(spans, spans[1:]):
            if s1 <= e0:
                out.append(f"{n0} and {n1}: ranges overlap")
    return out


def _memory(k) -> list[str]:
    out: list[str] = []
    mm = k.mm
    ram: list[tuple[int, int]] = []
    stack = [k.iomem]
    while stack:
        r = stack.pop()
        for c in r.children:
            if c.name.startswith("System RAM"):
                ram.append((c.start, c.end))
            stack.append(c)
    ram.sort()
    covered: Callable[[int, int], bool] = lambda s, e: any(a <= s and e <= b for a, b in ram)  # noqa: E731
    bs = mm.block_size
    for bid, blk in sorted(mm.blocks.items()):
        start, end = bid * bs, (bid + 1) * bs - 1
        if blk.state == "online" and not blk.early and not covered(start, end):
            out.append(f"memory{bid}: online but not inside System RAM")
        if blk.state == "offline" and blk.zone is not None:
            out.append(f"memory{bid}: offline with a zone")
    return out
