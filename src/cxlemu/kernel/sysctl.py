"""The memory-tiering knobs behind /proc/sys, /sys/kernel and debugfs, with
the kernel's parsers and errnos (kernel/sysctl.c proc_dointvec_minmax,
fs/libfs.c simple_attr_write, kernel/params.c).

Every knob is a :class:`Knob`: a path, ``show()`` and ``store(bytes)``.
The VFS serves them (``tree()``), and the workload engine's policy presets
write them through :func:`write` — the same code path as
``echo 2 > /proc/sys/kernel/numa_balancing`` — so a preset can never set a
value the real file would refuse.

Parsers:

* ``proc_dointvec_minmax`` (``parse_int``): leading blanks skipped, an
  optional ``-``, digits in base 0 (``0x`` hex, leading ``0`` octal), then
  only blanks; outside the table's [min, max] or beyond int: EINVAL; only
  the first value of a one-int table counts; an empty write is EINVAL.
* debugfs ``u32`` attributes: ``kstrtoull`` base 0 (no sign), the value is
  truncated to 32 bits as ``*(u32 *)data = val`` does.
* module parameters: ``bool`` (y/n/1/0/on/off), ``uint``, ``uint`` with a
  range (``accept_threshold_percent``: 0..100), strings checked by the
  module (an unknown compressor: ENOENT).
"""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING, Callable

from cxlemu.kernel.base.device import KernelError, kstr, kstrtobool, kstrtoull
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel

INT_MAX = (1 << 31) - 1
INT_MIN = -(1 << 31)
_NUM = re.compile(r"[ \t\n]*(-?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([ \t\n\0].*)?$", re.S)


def parse_int(buf: bytes, lo: int | None = None, hi: int | None = None, unsigned: bool = False) -> int:
    """proc_dointvec_minmax / proc_douintvec_minmax for a one-int table."""
    s = buf.split(b"\0", 1)[0].decode(errors="replace")
    if len(s.strip()) > 22 or not s.strip():
        raise KernelError(errno.EINVAL, "invalid number")
    m = _NUM.match(s)
    if not m:
        raise KernelError(errno.EINVAL, f"invalid number {s.strip()!r}")
    neg, digits = m.group(1), m.group(2)
    if neg and unsigned:
        raise KernelError(errno.EINVAL, "negative value")
    v = int(digits, 0) if not digits.startswith("0") or digits.lower().startswith("0x") or digits == "0" \
        else int(digits, 8)
    v = -v if neg else v
    if v > INT_MAX or v < INT_MIN or (unsigned and v > 0xFFFFFFFF):
        raise KernelError(errno.EINVAL, "out of range")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise KernelError(errno.EINVAL, f"{v} is outside [{lo}, {hi}]")
    return v


def parse_u32(buf: bytes) -> int:
    """debugfs u32: kstrtoull base 0, truncated to 32 bits."""
    return kstrtoull(buf.strip(b"\n").split(b"\0", 1)[0] or b"x", 0) & 0xFFFFFFFF


@dataclass
class Knob:
    path: str
    show: Callable[[], str]
    store: Callable[[bytes], None] | None
    mode: int = 0o644


def _int_knob(path: str, get: Callable[[], int], put: Callable[[int], None], lo=None, hi=None,
              mode: int = 0o644) -> Knob:
    def store(buf: bytes) -> None:
        put(parse_int(buf, lo, hi))
    return Knob(path, lambda: f"{get()}\n", store, mode)


def _u32_knob(path: str, get: Callable[[], int], put: Callable[[int], None]) -> Knob:
    return Knob(path, lambda: f"{get()}\n", lambda b: put(parse_u32(b)), 0o644)


def knobs(k: "Kernel") -> list[Knob]:
    """Every knob of the tiering model, built on demand (nothing is stored)."""
    from cxlemu.kernel.mm import mempolicy as mp
    vm = k.mm.vm
    kn = vm.knobs
    nb = k.sched.numab
    out: list[Knob] = []

    def setattr_(obj, name, after=None):
        def put(v):
            setattr(obj, name, v)
            if after:
                after()
        return put

    # ---- /proc/sys/vm ------------------------------------------------------------------------
    def set_min_free(v: int) -> None:
        kn.user_min_free_kbytes = v
        vm.setup_watermarks()

    out.append(_int_knob("/proc/sys/vm/min_free_kbytes", lambda: kn.min_free_kbytes, set_min_free, 0, INT_MAX))
    out.append(_int_knob("/proc/sys/vm/watermark_scale_factor", lambda: kn.watermark_scale_factor,
                         setattr_(kn, "watermark_scale_factor", vm.setup_watermarks), 1, 3000))
    out.append(_int_knob("/proc/sys/vm/watermark_boost_factor", lambda: kn.watermark_boost_factor,
                         setattr_(kn, "watermark_boost_factor"), 0, INT_MAX))
    out.append(_int_knob("/proc/sys/vm/swappiness", lambda: kn.swappiness, setattr_(kn, "swappiness"), 0, 200))
    out.append(_int_knob("/proc/sys/vm/zone_reclaim_mode", lambda: kn.zone_reclaim_mode,
                         setattr_(kn, "zone_reclaim_mode"), 0, INT_MAX))

    def drop_caches(v: int) -> None:
        from cxlemu.kernel.mm.vmscan import drop_pagecache
        if v & 1:
            drop_pagecache(vm)
        vm.vmstat.count("drop_pagecache" if v & 1 else "drop_slab")
        if v & 2 and v & 1:
            vm.vmstat.count("drop_slab")
    out.append(Knob("/proc/sys/vm/drop_caches", lambda: "", lambda b: drop_caches(parse_int(b, 1, 4)), 0o200))

    # ---- /proc/sys/kernel: NUMA balancing ----------------------------------------------------
    out.append(_int_knob("/proc/sys/kernel/numa_balancing", lambda: nb.mode, lambda v: nb.set_mode(v, k), 0, 4))
    out.append(_int_knob("/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps",
                         lambda: nb.promote_rate_limit_mbps, setattr_(nb, "promote_rate_limit_mbps"), 0, INT_MAX))
    base = "/sys/kernel/debug/sched/numa_balancing/"
    for name, attr in (("scan_delay_ms", "scan_delay_ms"), ("scan_period_min_ms", "scan_period_min_ms"),
                       ("scan_period_max_ms", "scan_period_max_ms"), ("scan_size_mb", "scan_size_mb"),
                       ("hot_threshold_ms", "hot_threshold_ms")):
        out.append(_u32_knob(base + name, lambda a=attr: getattr(nb, a), setattr_(nb, attr)))

    # ---- /sys/kernel/mm ------------------------------------------------------------------------
    tiers = k.mm.tiers
    out.append(Knob("/sys/kernel/mm/numa/demotion_enabled",
                    lambda: "true\n" if tiers.demotion_enabled else "false\n",
                    lambda b: setattr(tiers, "demotion_enabled", kstrtobool(b))))

    def thp_store(b: bytes) -> None:
        s = kstr(b).strip()
        if s not in ("always", "madvise", "never"):
            raise KernelError(errno.EINVAL)
        kn.thp = s
        vm.setup_watermarks()
    out.append(Knob("/sys/kernel/mm/transparent_hugepage/enabled",
                    lambda: " ".join(f"[{x}]" if x == kn.thp else x for x in ("always", "madvise", "never")) + "\n",
                    thp_store))
    if k.profile_at_least(*mp.WEIGHTED_INTERLEAVE_SINCE):
        wdir = "/sys/kernel/mm/mempolicy/weighted_interleave/"
        for nid in k.mm.numa.possible():
            out.append(Knob(f"{wdir}node{nid}", lambda n=nid: f"{wi_weight(k, n)}\n",
                            lambda b, n=nid: wi_store(k, n, b)))
        if k.profile_at_least(*mp.WI_AUTO_SINCE):
            out.append(Knob(wdir + "auto", lambda: "true\n" if vm.wi.auto else "false\n",
                            lambda b: wi_auto_store(k, b)))

    # ---- zswap ------------------------------------------------------------------------------------
    z = zswap_of(k)
    zp = "/sys/module/zswap/parameters/"
    out.append(Knob(zp + "enabled", lambda: "Y\n" if z.enabled else "N\n",
                    lambda b: setattr(z, "enabled", kstrtobool(b))))

    def comp_store(b: bytes) -> None:
        from cxlemu.kernel.mm.zswap import COMPRESSORS
        s = kstr(b).strip()
        if s not in COMPRESSORS:
            k.log(f"zswap: compressor {s} not available")
            raise KernelError(errno.ENOENT, f"compressor {s} not available")
        z.compressor = s

    def zpool_store(b: bytes) -> None:
        from cxlemu.kernel.mm.zswap import ZPOOLS
        s = kstr(b).strip()
        if s not in ZPOOLS:
            k.log(f"zswap: zpool {s} not available")
            raise KernelError(errno.ENOENT, f"zpool {s} not available")
        z.zpool = s
    out.append(Knob(zp + "compressor", lambda: f"{z.compressor}\n", comp_store))
    out.append(Knob(zp + "zpool", lambda: f"{z.zpool}\n", zpool_store))
    out.append(Knob(zp + "max_pool_percent", lambda: f"{z.max_pool_percent}\n",
                    lambda b: setattr(z, "max_pool_percent", parse_int(b, 0, None, unsigned=True))))
    out.append(Knob(zp + "accept_threshold_percent", lambda: f"{z.accept_threshold_percent}\n",
                    lambda b: setattr(z, "accept_threshold_percent", parse_int(b, 0, 100, unsigned=True))))
    out.append(Knob(zp + "shrinker_enabled", lambda: "Y\n" if z.shrinker_enabled else "N\n",
                    lambda b: setattr(z, "shrinker_enabled", kstrtobool(b))))
    zd = "/sys/kernel/debug/zswap/"
    for name, fn in (("pool_total_size", lambda: z.pool_pages * 4096), ("stored_pages", lambda: z.stored_pages),
                     ("pool_limit_hit", lambda: z.pool_limit_hit),
                     ("written_back_pages", lambda: z.written_back_pages),
                     ("reject_alloc_fail", lambda: z.reject_alloc_fail),
                     ("reject_compress_poor", lambda: z.reject_compress_poor)):
        out.append(Knob(zd + name, lambda f=fn: f"{f()}\n", None, 0o444))
    return out


def zswap_of(k: "Kernel"):
    from cxlemu.kernel.mm.zswap import Zswap
    vm = k.mm.vm
    if vm.zswap is None:
        boot = k.platform.topology.boot
        vm.zswap = Zswap(enabled=bool(getattr(boot, "zswap", False)),
                         pool_node=str(getattr(boot, "zswap_pool_node", "reclaimer")))
    return vm.zswap


# ---- weighted interleave -----------------------------------------------------------------------
def node_bandwidth(k: "Kernel", nid: int) -> int:
    """min(read, write) bandwidth of the node's access1 coordinates (0: no data)."""
    p = k.mm.numa.perf(nid, 1)
    if p is None:
        return 0
    return min(p.read_bandwidth, p.write_bandwidth)


def wi_weights(k: "Kernel") -> dict[int, int]:
    from cxlemu.kernel.mm.mempolicy import auto_weights
    vm = k.mm.vm
    if vm.wi.auto and k.profile_at_least(6, 16):
        mem = k.mm.numa.state_nodes("memory")
        return auto_weights({n: node_bandwidth(k, n) for n in mem})
    return dict(vm.wi.weights)


def wi_weight(k: "Kernel", nid: int) -> int:
    return wi_weights(k).get(nid, 1)


def wi_store(k: "Kernel", nid: int, buf: bytes) -> None:
    from cxlemu.kernel.mm.mempolicy import parse_weight
    v = parse_weight(buf)
    vm = k.mm.vm
    if vm.wi.auto and k.profile_at_least(6, 16):
        vm.wi.weights = wi_weights(k)       # manual mode starts from the auto weights
    vm.wi.weights[nid] = v
    vm.wi.auto = False


def wi_auto_store(k: "Kernel", buf: bytes) -> None:
    v = kstrtobool(buf)
    vm = k.mm.vm
    if not v and vm.wi.auto:
        vm.wi.weights = wi_weights(k)
    vm.wi.auto = v


def effective_wi(k: "Kernel"):
    """The weights the allocator uses now (auto weights materialised)."""
    from cxlemu.kernel.mm.mempolicy import WeightedInterleave
    return WeightedInterleave(wi_weights(k), k.mm.vm.wi.auto)


# ---- access by path --------------------------------------------------------------------------------
def find(k: "Kernel", path: str) -> Knob | None:
    path = path.rstrip("/")
    for kb in knobs(k):
        if kb.path == path:
            return kb
    return None


def write(k: "Kernel", path: str, value: str | int) -> None:
    """Write a knob as ``echo value > path`` would (KernelError on refusal)."""
    kb = find(k, path)
    if kb is None:
        raise KernelError(errno.ENOENT, f"{path}: no such knob")
    if kb.store is None or not kb.mode & 0o222:
        raise KernelError(errno.EACCES, f"{path}: read-only")
    kb.store(f"{value}\n".encode())


def read(k: "Kernel", path: str) -> str:
    kb = find(k, path)
    if kb is None:
        raise KernelError(errno.ENOENT, f"{path}: no such knob")
    return kb.show()


def tree(k: "Kernel", prefix: str) -> dict:
    """Nested dicts of (show, store, mode) for the knobs under ``prefix``."""
    root: dict = {}
    for kb in knobs(k):
        if not kb.path.startswith(prefix + "/"):
            continue
        parts = kb.path[len(prefix) + 1:].split("/")
        d = root
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = (kb.show if kb.mode & 0o444 else None, kb.store, kb.mode)
    return root
