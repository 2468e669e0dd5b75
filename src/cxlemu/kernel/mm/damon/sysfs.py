"""The DAMON sysfs interface, /sys/kernel/mm/damon/admin (mm/damon/sysfs.c,
sysfs-schemes.c, sysfs-common.c): directories of parameters that users
(damo) fill, and a ``state`` file of each kdamond whose commands build core
contexts from them (``on``, ``commit``), stop them (``off``) or copy results
back into files (``update_schemes_stats``, ``update_schemes_tried_regions``,
``update_schemes_tried_bytes``, ``clear_schemes_tried_regions``,
``update_schemes_effective_quotas``, ``update_tuned_intervals``,
``commit_schemes_quota_goals``).

The file set is the kernel's as of Linux 6.17 (kdamond ``refresh_ms``,
``intervals_goal``, ``core_filters``/``ops_filters`` next to the legacy
``filters``, ``dests``, quota goals with ``nid`` and ``path``,
``sz_ops_filter_passed``, ``sz_filter_passed``).  Values are parsed as the
kernel parses them (``kstrtoul``/``kstrtoint``/``kstrtouint``/``kstrtobool``,
names compared with ``sysfs_streq``) and refused with its errno; most
parameter checks happen when a context is built (``on``/``commit``:
``damon_set_attrs``, ``damon_sysfs_set_regions``, memcg paths), so a
refused command leaves the running kdamond as it was.

This module only translates between files and the core (core.py,
schemes.py); it holds the staged parameters as plain data.
"""

from __future__ import annotations

import errno
from dataclasses import field
from typing import TYPE_CHECKING, Callable

from cxlemu.kernel.base.device import KernelError, kstr, kstrip, kstrtobool
from cxlemu.kernel.mm.damon import schemes as ds
from cxlemu.kernel.mm.damon.core import OPS_NAMES, DamonAttrs, DamonCtx, DamonTarget, IntervalsGoal, Kdamond, seed_for
from cxlemu.kernel.mm.damon.regions import Regions
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel

ULONG_MAX = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1
INT_MAX = (1 << 31) - 1
CMDS = ("on", "off", "commit", "commit_schemes_quota_goals", "update_schemes_stats", "update_schemes_tried_bytes",
        "update_schemes_tried_regions", "clear_schemes_tried_regions", "update_schemes_effective_quotas",
        "update_tuned_intervals")


# ---- kstrto*() ----------------------------------------------------------------------------------------
def _kstrtoull(buf: bytes) -> int:
    """lib/kstrtox.c _kstrtoull with base 0: optional '+', 0x hex, 0 octal,
    one trailing newline; -EINVAL for junk, -ERANGE beyond 64 bits."""
    s = kstr(buf)
    if s.endswith("\n"):
        s = s[:-1]
    if s.startswith("+"):
        s = s[1:]
    if not s:
        raise KernelError(errno.EINVAL)
    try:
        if s[:2].lower() == "0x":
            if len(s) == 2:
                raise ValueError
            v = int(s[2:], 16)
        elif s[0] == "0" and len(s) > 1:
            v = int(s[1:], 8)
        else:
            if not s.isdigit():
                raise ValueError
            v = int(s, 10)
    except ValueError:
        raise KernelError(errno.EINVAL) from None
    if s[:2].lower() == "0x" and not all(c in "0123456789abcdefABCDEF" for c in s[2:]):
        raise KernelError(errno.EINVAL)
    if v > ULONG_MAX:
        raise KernelError(errno.ERANGE)
    return v


def kstrtoul(buf: bytes) -> int:
    return _kstrtoull(buf)


def kstrtouint(buf: bytes) -> int:
    v = _kstrtoull(buf)
    if v > UINT_MAX:
        raise KernelError(errno.ERANGE)
    return v


def kstrtoint(buf: bytes) -> int:
    s = kstr(buf)
    neg = s.startswith("-")
    v = _kstrtoull((s[1:] if neg else s).encode())
    if neg:
        if v > INT_MAX + 1:
            raise KernelError(errno.ERANGE)
        return -v
    if v > INT_MAX:
        raise KernelError(errno.ERANGE)
    return v


def streq_pick(buf: bytes, names) -> str:
    s = kstrip(buf)
    if s in names:
        return s
    raise KernelError(errno.EINVAL)


def _einval(fn):
    """Stores that turn any parse error into -EINVAL (quotas ms/bytes/...)."""
    def store(buf: bytes) -> int:
        try:
            return fn(buf)
        except KernelError:
            raise KernelError(errno.EINVAL) from None
    return store


# ---- staged parameters ----------------------------------------------------------------------------------
@dataclass
class SysRegion:
    start: int = 0
    end: int = 0


@dataclass
class SysTarget:
    pid: int = 0
    regions: list[SysRegion] = field(default_factory=list)


@dataclass
class SysFilter:
    layer: str = "both"          # both ('filters'), core ('core_filters'), ops ('ops_filters')
    type: str = "anon"
    matching: bool = False
    allow: bool = False
    memcg_path: str = ""
    addr_start: int = 0
    addr_end: int = 0
    min: int = 0
    max: int = 0
    target_idx: int = 0


@dataclass
class SysGoal:
    metric: str = "user_input"
    target_value: int = 0
    current_value: int = 0
    nid: int = 0
    path: str = ""


@dataclass
class SysScheme:
    action: str = "stat"
    apply_interval_us: int = 0
    target_nid: int = -1
    sz: list[int] = field(default_factory=lambda: [0, 0])
    nr_accesses: list[int] = field(default_factory=lambda: [0, 0])
    age: list[int] = field(default_factory=lambda: [0, 0])
    ms: int = 0
    bytes: int = 0
    reset_interval_ms: int = 0
    effective_bytes: int = 0
    weights: list[int] = field(default_factory=lambda: [0, 0, 0])
    goals: list[SysGoal] = field(default_factory=list)
    wmarks: list = field(default_factory=lambda: ["none", 0, 0, 0, 0])
    filters: list[SysFilter] = field(default_factory=list)
    core_filters: list[SysFilter] = field(default_factory=list)
    ops_filters: list[SysFilter] = field(default_factory=list)
    dests: list[list[int]] = field(default_factory=list)
    stats: ds.DamosStat = field(default_factory=ds.DamosStat)
    tried: list[tuple[int, int, int, int, int]] = field(default_factory=list)   # start end nr age sz_passed
    tried_total: int = 0


@dataclass
class SysContext:
    ops: str = "vaddr"
    sample_us: int = 5000
    aggr_us: int = 100000
    update_us: int = 60_000_000
    goal: list[int] = field(default_factory=lambda: [0, 0, 0, 0])     # access_bp aggrs min_sample_us max_sample_us
    nr_regions: list[int] = field(default_factory=lambda: [10, 1000])
    targets: list[SysTarget] = field(default_factory=list)
    schemes: list[SysScheme] = field(default_factory=list)


@dataclass(eq=False)
class SysKdamond:
    contexts: list[SysContext] = field(default_factory=list)
    refresh_ms: int = 0
    kd: Kdamond | None = None                  # the damon_ctx of the last "on" (kept after "off")


@dataclass(eq=False)
class DamonAdmin:
    """``kernel.mm.damon``: the admin directory's state."""
    kdamonds: list[SysKdamond] = field(default_factory=list)
    stat_enabled: bool = False                 # /sys/module/damon_stat/parameters/enabled
    next_index: int = 0

    def running(self) -> list[Kdamond]:
        return [k.kd for k in self.kdamonds if k.kd is not None and k.kd.running]


# ---- building core objects from staged parameters ------------------------------------------------------------
def build_attrs(c: SysContext) -> DamonAttrs:
    return DamonAttrs(c.sample_us, c.aggr_us, c.update_us, c.nr_regions[0], c.nr_regions[1],
                      IntervalsGoal(*c.goal))


def _memcg_id(path: str) -> int:
    """damon_sysfs_memcg_path_to_id(): cxlemu has one memory cgroup, the root "/"."""
    p = path.strip()
    if p.endswith("\n"):
        p = p[:-1]
    if p == "/":
        return 1
    raise KernelError(errno.EINVAL, f"damon: no memory cgroup {path!r}")


def build_scheme(sc: SysScheme) -> ds.Damos:
    s = ds.Damos(sc.action, sc.sz[0], sc.sz[1], sc.nr_accesses[0], sc.nr_accesses[1], sc.age[0], sc.age[1],
                 sc.apply_interval_us)
    s.quota = ds.Quota(sc.ms, sc.bytes, sc.reset_interval_ms, *sc.weights)
    for g in sc.goals:
        if not g.target_value:
            continue
        qg = ds.QuotaGoal(g.metric, g.target_value, 0)
        if g.metric == "user_input":
            qg.current_value = g.current_value
        elif g.metric in ("node_mem_used_bp", "node_mem_free_bp"):
            qg.nid = g.nid
        elif g.metric in ("node_memcg_used_bp", "node_memcg_free_bp"):
            _memcg_id(g.path)
            qg.nid = g.nid
            qg.memcg_path = g.path
        s.quota.goals.append(qg)
    m, iv, hi, mid, lo = sc.wmarks
    s.wmarks = ds.Watermarks(m, iv, hi, mid, lo)
    s.target_nid = sc.target_nid
    for lst in (sc.core_filters, sc.ops_filters, sc.filters):
        for f in lst:
            df = ds.DamosFilter(f.type, f.matching, f.allow)
            if f.type == "memcg":
                df.memcg_path = f.memcg_path
                df.memcg_id = _memcg_id(f.memcg_path)
            elif f.type == "addr":
                if f.addr_end < f.addr_start:
                    raise KernelError(errno.EINVAL, "damos: addr filter end < start")
                df.addr_start, df.addr_end = f.addr_start, f.addr_end
            elif f.type == "target":
                df.target_idx = f.target_idx
            elif f.type == "hugepage_size":
                if f.min > f.max:
                    raise KernelError(errno.EINVAL, "damos: hugepage_size filter min > max")
                df.min, df.max = f.min, f.max
            s.add_filter(df)
    s.dests = [(d[0], d[1]) for d in sc.dests]
    return s


def build_ctx(kernel: "Kernel", c: SysContext) -> DamonCtx:
    """damon_sysfs_build_ctx() (damon_sysfs_apply_inputs)."""
    ctx = DamonCtx(ops=c.ops)
    from cxlemu.kernel.mm.damon.core import validate_attrs
    attrs = build_attrs(c)
    validate_attrs(attrs)
    ctx.attrs = attrs
    if c.ops == "paddr" and len(c.targets) > 1:
        raise KernelError(errno.EINVAL, "damon: more than one paddr target")
    for st in c.targets:
        t = DamonTarget()
        if c.ops in ("vaddr", "fvaddr"):
            task = kernel.sched.tasks.get(st.pid) if st.pid > 0 else None
            if task is None or not task.alive:
                raise KernelError(errno.EINVAL, f"damon: no process {st.pid}")
            t.pid = st.pid
        prev_end = None
        ranges = []
        for rg in st.regions:
            if rg.start > rg.end:
                raise KernelError(errno.EINVAL, "damon: region start > end")
            if prev_end is not None and prev_end > rg.start:
                raise KernelError(errno.EINVAL, "damon: regions overlap")
            prev_end = rg.end
            ranges.append((rg.start, rg.end))
        if ranges:
            r = Regions()
            r.set_ranges(ranges, ctx.min_sz_region)
            t.regions = r
            t.init_regions_set = True
        ctx.targets.append(t)
    ctx.schemes = [build_scheme(sc) for sc in c.schemes]
    return ctx


def commit_ctx(kernel: "Kernel", run: DamonCtx, new: DamonCtx) -> None:
    """damon_commit_ctx(): bring the running context to the new parameters,
    keeping monitoring results and scheme state where they carry over."""
    run.set_attrs(new.attrs)
    if run.ops != new.ops:
        run.ops = new.ops
        run.targets = []
    old_t = run.targets
    out = []
    for i, nt in enumerate(new.targets):
        if i < len(old_t) and old_t[i].pid == nt.pid:
            t = old_t[i]
            if nt.init_regions_set:
                t.regions.set_ranges([(int(a), int(b)) for a, b in zip(nt.regions.start, nt.regions.end)],
                                     run.min_sz_region)
        else:
            t = nt
            if not len(t.regions):
                from cxlemu.kernel.mm.damon.ops import ops_of
                tmp = DamonCtx(ops=run.ops, attrs=run.attrs, targets=[t])
                ops_of(run.ops).init(tmp, kernel)
        out.append(t)
    run.targets = out
    old_s = run.schemes
    out_s = []
    for i, ns in enumerate(new.schemes):
        if i < len(old_s):
            s = old_s[i]
            for f in ("action", "min_sz_region", "max_sz_region", "min_nr_accesses", "max_nr_accesses",
                      "min_age_region", "max_age_region", "target_nid", "dests", "core_filters", "ops_filters"):
                setattr(s, f, getattr(ns, f))
            if s.apply_interval_us != ns.apply_interval_us:
                s.apply_interval_us = ns.apply_interval_us
                s.set_next_apply_sis(run)
            q, nq = s.quota, ns.quota
            q.ms, q.sz, q.reset_interval = nq.ms, nq.sz, nq.reset_interval
            q.weight_sz, q.weight_nr_accesses, q.weight_age = nq.weight_sz, nq.weight_nr_accesses, nq.weight_age
            commit_goals(q, nq)
            w, nw = s.wmarks, ns.wmarks
            w.metric, w.interval, w.high, w.mid, w.low = nw.metric, nw.interval, nw.high, nw.mid, nw.low
            s.set_filters_default_reject()
        else:
            s = ns
            s.set_next_apply_sis(run)
            s.set_filters_default_reject()
        out_s.append(s)
    run.schemes = out_s


def commit_goals(q: ds.Quota, nq: ds.Quota) -> None:
    """damos_commit_quota_goals(): goals by position; the new values replace the old."""
    old = q.goals
    out = []
    for i, g in enumerate(nq.goals):
        if i < len(old):
            o = old[i]
            o.metric, o.target_value, o.nid, o.memcg_path = g.metric, g.target_value, g.nid, g.memcg_path
            if g.metric == "user_input":
                o.current_value = g.current_value
            out.append(o)
        else:
            out.append(g)
    q.goals = out


# ---- commands ---------------------------------------------------------------------------------------------
def _running(k: SysKdamond) -> bool:
    return k.kd is not None and k.kd.running


def cmd(kernel: "Kernel", admin: DamonAdmin, k: SysKdamond, name: str) -> None:
    """damon_sysfs_handle_cmd()."""
    if name != "off" and len(k.contexts) != 1:
        raise KernelError(errno.EINVAL, "damon: a kdamond needs exactly one context")
    if name == "on":
        if _running(k):
            raise KernelError(errno.EBUSY)
        ctx = build_ctx(kernel, k.contexts[0])
        if k.kd is not None:
            k.kd = None
        idx = admin.kdamonds.index(k)
        kd = Kdamond(ctx, kernel.sched.alloc_pid(), f"kdamond.{admin.next_index}", idx)
        admin.next_index += 1
        kd.start(kernel, seed_for(kernel, idx))
        k.kd = kd
        return
    if name == "off":
        if k.kd is None:
            raise KernelError(errno.EINVAL)
        if not k.kd.running:
            raise KernelError(errno.EPERM)
        k.kd.stop(kernel)
        return
    if name == "clear_schemes_tried_regions":
        for sc in k.contexts[0].schemes:
            sc.tried = []
            sc.tried_total = 0
        return
    if k.kd is None or not k.kd.running:
        raise KernelError(errno.EINVAL)
    kd = k.kd
    c = k.contexts[0]
    if name == "commit":
        new = build_ctx(kernel, c)
        commit_ctx(kernel, kd.ctx, new)
        kd.ctx.sz_limit = kd.ctx.region_sz_limit()
    elif name == "commit_schemes_quota_goals":
        for s, sc in zip(kd.ctx.schemes, c.schemes):
            commit_goals(s.quota, build_scheme(sc).quota)
    elif name == "update_schemes_stats":
        update_stats(k)
    elif name == "update_schemes_effective_quotas":
        update_effective_quotas(k)
    elif name == "update_tuned_intervals":
        c.sample_us = kd.ctx.attrs.sample_interval
        c.aggr_us = kd.ctx.attrs.aggr_interval
    elif name in ("update_schemes_tried_regions", "update_schemes_tried_bytes"):
        only_bytes = name == "update_schemes_tried_bytes"
        for s, sc in zip(kd.ctx.schemes, c.schemes):
            rows = ds.tried_regions(kd, kernel, s)
            sc.tried_total = sum(e - st for _, st, e, _, _, _ in rows)
            sc.tried = [] if only_bytes else [(st, e, nr, age, sp) for _, st, e, nr, age, sp in rows]


def update_stats(k: SysKdamond) -> None:
    for s, sc in zip(k.kd.ctx.schemes, k.contexts[0].schemes):
        sc.stats = ds.DamosStat(**vars(s.stat))


def update_effective_quotas(k: SysKdamond) -> None:
    for s, sc in zip(k.kd.ctx.schemes, k.contexts[0].schemes):
        sc.effective_bytes = s.quota.esz


def refresh(k: SysKdamond) -> None:
    """damon_sysfs_repeat_call_fn(): with refresh_ms set, the files follow the running kdamond."""
    if k.refresh_ms and _running(k) and len(k.contexts) == 1:
        c = k.contexts[0]
        c.sample_us = k.kd.ctx.attrs.sample_interval
        c.aggr_us = k.kd.ctx.attrs.aggr_interval
        update_stats(k)
        update_effective_quotas(k)


# ---- the tree ----------------------------------------------------------------------------------------------
Entry = "tuple | Callable[[], dict]"


def _rw(get: Callable[[], object], put: Callable[[bytes], None], mode: int = 0o600):
    def show() -> str:
        v = get()
        if isinstance(v, bool):
            return "Y\n" if v else "N\n"
        return f"{v}\n"
    return (show, put, mode)


def _ro(get: Callable[[], object], mode: int = 0o400):
    return (lambda: f"{get()}\n", None, mode)


def _setter(obj, attr, parse, index=None, after=None):
    def put(buf: bytes) -> None:
        v = parse(buf)
        if index is None:
            setattr(obj, attr, v)
        else:
            getattr(obj, attr)[index] = v
        if after is not None:
            after()
    return put


def _resize(lst: list, factory, admin: DamonAdmin | None = None, check_busy: Callable[[], bool] | None = None):
    def put(buf: bytes) -> None:
        n = kstrtoint(buf)
        if n < 0:
            raise KernelError(errno.EINVAL)
        if check_busy is not None and check_busy():
            raise KernelError(errno.EBUSY)
        lst.clear()
        lst.extend(factory() for _ in range(n))
    return put


def _numbered(lst: list, nr_name: str, factory, child: Callable, **kw) -> Callable[[], dict]:
    def fn() -> dict:
        d = {nr_name: _rw(lambda: len(lst), _resize(lst, factory, **kw))}
        for i, item in enumerate(list(lst)):
            d[str(i)] = (lambda it=item, i=i: child(it, i))
        return d
    return fn


def tree(kernel: "Kernel") -> dict:
    """/sys/kernel/mm/damon: ``admin/kdamonds/...`` as nested entries."""
    admin = kernel.mm.damon
    return {"admin": lambda: {"kdamonds": _numbered(
        admin.kdamonds, "nr_kdamonds", SysKdamond, lambda k, i: kdamond_dir(kernel, admin, k),
        check_busy=lambda: bool(admin.running()))}}


def kdamond_dir(kernel, admin: DamonAdmin, k: SysKdamond) -> dict:
    def state_show() -> str:
        return "on\n" if _running(k) else "off\n"

    def state_store(buf: bytes) -> None:
        name = streq_pick(buf, CMDS)
        cmd(kernel, admin, k, name)
        kernel.dirty = True

    def pid_show() -> str:
        return f"{k.kd.pid if _running(k) else -1}\n"
    return {
        "state": (state_show, state_store, 0o600),
        "pid": (pid_show, None, 0o400),
        "refresh_ms": _rw(lambda: k.refresh_ms, _setter(k, "refresh_ms", kstrtouint)),
        "contexts": lambda: {"nr_contexts": _rw(lambda: len(k.contexts), _ctx_resize(k)),
                             **{str(i): (lambda c=c: context_dir(kernel, k, c)) for i, c in enumerate(k.contexts)}},
    }


def _ctx_resize(k: SysKdamond):
    def put(buf: bytes) -> None:
        n = kstrtoint(buf)
        if n < 0 or n > 1:
            raise KernelError(errno.EINVAL, "damon: one context per kdamond")
        k.contexts[:] = [SysContext() for _ in range(n)]
    return put


def context_dir(kernel, k: SysKdamond, c: SysContext) -> dict:
    def avail() -> str:
        return "".join(f"{n}\n" for n in OPS_NAMES)
    return {
        "avail_operations": (avail, None, 0o400),
        "operations": _rw(lambda: c.ops, _setter(c, "ops", lambda b: streq_pick(b, OPS_NAMES))),
        "monitoring_attrs": lambda: {
            "intervals": lambda: {
                "sample_us": _rw(lambda: _refreshed(k, c).sample_us, _setter(c, "sample_us", kstrtoul)),
                "aggr_us": _rw(lambda: _refreshed(k, c).aggr_us, _setter(c, "aggr_us", kstrtoul)),
                "update_us": _rw(lambda: c.update_us, _setter(c, "update_us", kstrtoul)),
                "intervals_goal": lambda: {
                    name: _rw(lambda j=j: c.goal[j], _setter(c, "goal", kstrtoul, j))
                    for j, name in enumerate(("access_bp", "aggrs", "min_sample_us", "max_sample_us"))},
            },
            "nr_regions": lambda: {
                "min": _rw(lambda: c.nr_regions[0], _setter(c, "nr_regions", kstrtoul, 0)),
                "max": _rw(lambda: c.nr_regions[1], _setter(c, "nr_regions", kstrtoul, 1)),
            },
        },
        "targets": _numbered(c.targets, "nr_targets", SysTarget, lambda t, i: target_dir(t)),
        "schemes": _numbered(c.schemes, "nr_schemes", SysScheme, lambda s, i: scheme_dir(k, s)),
    }


def _refreshed(k: SysKdamond, c):
    refresh(k)
    return c


def target_dir(t: SysTarget) -> dict:
    return {
        "pid_target": _rw(lambda: t.pid, _setter(t, "pid", kstrtoint)),
        "regions": _numbered(t.regions, "nr_regions", SysRegion, lambda r, i: {
            "start": _rw(lambda: r.start, _setter(r, "start", kstrtoul)),
            "end": _rw(lambda: r.end, _setter(r, "end", kstrtoul))}),
    }


def _range_dir(lst: list) -> Callable[[], dict]:
    return lambda: {"min": _rw(lambda: lst[0], _list_set(lst, 0)),
                    "max": _rw(lambda: lst[1], _list_set(lst, 1))}


def _list_set(lst: list, j: int, parse=kstrtoul):
    def put(buf: bytes) -> None:
        lst[j] = parse(buf)
    return put


def scheme_dir(k: SysKdamond, s: SysScheme) -> dict:
    def filters(lst: list, layer: str):
        return _numbered(lst, "nr_filters", lambda: SysFilter(layer), lambda f, i: filter_dir(f))

    def wm(j: int, parse):
        return _rw(lambda: s.wmarks[j], _list_set(s.wmarks, j, parse))

    def stats():
        refresh(k)
        return s.stats
    return {
        "action": _rw(lambda: s.action, _setter(s, "action", lambda b: streq_pick(b, ds.ACTIONS))),
        "apply_interval_us": _rw(lambda: s.apply_interval_us, _setter(s, "apply_interval_us", kstrtoul)),
        "target_nid": _rw(lambda: s.target_nid, _setter(s, "target_nid", kstrtoint)),
        "access_pattern": lambda: {"sz": _range_dir(s.sz), "nr_accesses": _range_dir(s.nr_accesses),
                                   "age": _range_dir(s.age)},
        "quotas": lambda: {
            "ms": _rw(lambda: s.ms, _einval(_setter(s, "ms", kstrtoul))),
            "bytes": _rw(lambda: s.bytes, _einval(_setter(s, "bytes", kstrtoul))),
            "reset_interval_ms": _rw(lambda: s.reset_interval_ms, _einval(_setter(s, "reset_interval_ms",
                                                                                    kstrtoul))),
            "effective_bytes": _ro(lambda: (refresh(k), s.effective_bytes)[1]),
            "weights": lambda: {
                "sz_permil": _rw(lambda: s.weights[0], _list_set(s.weights, 0, kstrtouint)),
                "nr_accesses_permil": _rw(lambda: s.weights[1], _list_set(s.weights, 1, kstrtouint)),
                "age_permil": _rw(lambda: s.weights[2], _list_set(s.weights, 2, kstrtouint)),
            },
            "goals": _numbered(s.goals, "nr_goals", SysGoal, lambda g, i: goal_dir(g)),
        },
        "watermarks": lambda: {
            "metric": _rw(lambda: s.wmarks[0], _list_set(s.wmarks, 0, lambda b: streq_pick(b, ds.WMARK_METRICS))),
            "interval_us": wm(1, kstrtoul), "high": wm(2, kstrtoul), "mid": wm(3, kstrtoul), "low": wm(4, kstrtoul),
        },
        "filters": filters(s.filters, "both"),
        "core_filters": filters(s.core_filters, "core"),
        "ops_filters": filters(s.ops_filters, "ops"),
        "dests": _numbered(s.dests, "nr_dests", lambda: [0, 0], lambda d, i: {
            "id": _rw(lambda: d[0], _list_set(d, 0, kstrtouint)),
            "weight": _rw(lambda: d[1], _list_set(d, 1, kstrtouint))}),
        "stats": lambda: {name: _ro(lambda n=name: getattr(stats(), n))
                          for name in ("nr_tried", "sz_tried", "nr_applied", "sz_applied", "sz_ops_filter_passed",
                                       "qt_exceeds")},
        "tried_regions": lambda: tried_dir(s),
    }


def tried_dir(s: SysScheme) -> dict:
    d: dict = {"total_bytes": _ro(lambda: s.tried_total)}
    for i, (st, e, nr, age, sp) in enumerate(s.tried):
        d[str(i)] = (lambda st=st, e=e, nr=nr, age=age, sp=sp: {
            "start": _ro(lambda: st), "end": _ro(lambda: e), "nr_accesses": _ro(lambda: nr),
            "age": _ro(lambda: age), "sz_filter_passed": _ro(lambda: sp)})
    return d


def filter_dir(f: SysFilter) -> dict:
    def type_store(buf: bytes) -> None:
        t = streq_pick(buf, ds.FILTER_TYPES)
        core = t in ds.CORE_FILTER_TYPES
        if (f.layer == "core" and not core) or (f.layer == "ops" and core):
            raise KernelError(errno.EINVAL)
        f.type = t

    def path_store(buf: bytes) -> None:
        f.memcg_path = kstr(buf)
    return {
        "type": _rw(lambda: f.type, type_store),
        "matching": _rw(lambda: f.matching, _setter(f, "matching", kstrtobool)),
        "allow": _rw(lambda: f.allow, _setter(f, "allow", kstrtobool)),
        "memcg_path": (lambda: f"{f.memcg_path}\n", path_store, 0o600),
        "addr_start": _rw(lambda: f.addr_start, _setter(f, "addr_start", kstrtoul)),
        "addr_end": _rw(lambda: f.addr_end, _setter(f, "addr_end", kstrtoul)),
        "min": _rw(lambda: f.min, _setter(f, "min", kstrtoul)),
        "max": _rw(lambda: f.max, _setter(f, "max", kstrtoul)),
        "damon_target_idx": _rw(lambda: f.target_idx, _setter(f, "target_idx", kstrtoint)),
    }


def goal_dir(g: SysGoal) -> dict:
    def path_store(buf: bytes) -> None:
        g.path = kstr(buf)
    return {
        "target_metric": _rw(lambda: g.metric, _setter(g, "metric", lambda b: streq_pick(b, ds.GOAL_METRICS))),
        "target_value": _rw(lambda: g.target_value, _setter(g, "target_value", kstrtoul)),
        "current_value": _rw(lambda: g.current_value, _setter(g, "current_value", kstrtoul)),
        "nid": _rw(lambda: g.nid, _setter(g, "nid", kstrtoint)),
        "path": (lambda: f"{g.path}\n", path_store, 0o600),
    }


# ---- DAMON modules' parameters (/sys/module/damon_*) -------------------------------------------------------
def module_tree(kernel: "Kernel") -> dict:
    """/sys/module/damon_stat/parameters: DAMON_STAT (mm/damon/stat.c) is
    built in and off (CONFIG_DAMON_STAT_ENABLED_DEFAULT=n); cxlemu does not
    run it, and refuses to enable it (EINVAL) rather than pretend."""
    admin = kernel.mm.damon

    def enabled_store(buf: bytes) -> None:
        v = kstrtobool(buf)
        if v:
            raise KernelError(errno.EINVAL, "damon_stat: not modelled")
        admin.stat_enabled = False
    return {"damon_stat": {"parameters": {
        "enabled": (lambda: "Y\n" if admin.stat_enabled else "N\n", enabled_store, 0o600),
        "estimated_memory_bandwidth": (lambda: "0\n", None, 0o400),
        "memory_idle_ms_percentiles": (lambda: ",".join(["0"] * 101) + "\n", None, 0o400),
        "aggr_interval_us": (lambda: "0\n", None, 0o400),
    }}}
