"""What ``cxlemu run`` adds for DAMON and the allocators: ``--damos``
(a recipe or damo JSON, staged through /sys/kernel/mm/damon as damo
would), ``--allocator smdk|memkind`` (SMDK's libcxlmalloc or a memkind kind
placing the workload's allocations), ``--pace wall`` and the extended
``--compare`` policies ``damos:RECIPE``, ``smdk:CONF`` and ``memkind:KIND``.

A run with an extension is ``engine.run`` between a set-up and a
tear-down: the kdamonds are turned on before the first epoch and off after
the last (their statistics go into the result as ``damos``); allocator
runs start the workload in a process whose ``mmap`` goes through the
allocator (its accounting goes into the result as ``allocator``).
"""

from __future__ import annotations

import time

from cxlemu.util.lazydc import dataclass

EXTENSIONS = ("damos", "smdk", "memkind")


class ExtError(ValueError):
    """A bad extension argument (exit 2), or one this machine cannot serve (``code`` 1)."""

    def __init__(self, msg: str, code: int = 2):
        super().__init__(msg)
        self.code = code


@dataclass
class Ext:
    kind: str            # damos | smdk | memkind
    arg: str


def split_policy(p: str | None) -> tuple[str | None, Ext | None]:
    """``damos:mem_tier`` -> (None, Ext); other names are the engine's presets."""
    if p and ":" in p:
        kind, arg = p.split(":", 1)
        if kind in EXTENSIONS:
            if not arg:
                raise ExtError(f"run: {kind}: needs an argument ({kind}:...)")
            return None, Ext(kind, arg)
    return p, None


def split_compare(text: str) -> list[str]:
    """``--compare`` names, comma-separated; an ``smdk:`` CONF keeps its own
    commas (``smdk:use_exmem:true,priority:exmem,tpp`` is two policies): a
    piece that is neither a preset nor ``KIND:...`` of an extension continues
    the CONF before it."""
    from cxlemu.sim.policy import PRESETS
    out: list[str] = []
    for piece in (x.strip() for x in text.split(",")):
        if not piece:
            continue
        head = piece.split(":", 1)[0]
        if out and out[-1].startswith("smdk:") and piece not in PRESETS and head not in EXTENSIONS:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def ext_from_args(args) -> Ext | None:
    damos = getattr(args, "damos", None)
    alloc = getattr(args, "allocator", None)
    if damos and alloc:
        raise ExtError("run: give --damos or --allocator, not both")
    if damos:
        return Ext("damos", damos)
    if alloc is None:
        if getattr(args, "smdk_conf", None) or getattr(args, "kind", None):
            raise ExtError("run: --smdk-conf and --kind go with --allocator smdk / --allocator memkind")
        return None
    if alloc == "smdk":
        if getattr(args, "kind", None):
            raise ExtError("run: --kind goes with --allocator memkind")
        return Ext("smdk", getattr(args, "smdk_conf", None) or "")
    if alloc == "memkind":
        if getattr(args, "smdk_conf", None):
            raise ExtError("run: --smdk-conf goes with --allocator smdk")
        if not getattr(args, "kind", None):
            raise ExtError("run: --allocator memkind needs --kind KIND")
        return Ext("memkind", args.kind)
    raise ExtError(f"run: unknown allocator {alloc!r} (smdk, memkind)")


def check_ext(ext: Ext | None, backend) -> list[str]:
    """Validate before anything runs (bad recipe, unknown kind).  A bad
    CXLMALLOC_CONF is not an error: libcxlmalloc prints its messages
    ("Malformed conf string", "Invalid conf value: ...") and goes on with
    its defaults; they are returned for the caller to print."""
    if ext is None:
        return []
    if ext.kind == "damos":
        from cxlemu.tools import damos
        try:
            damos.resolve(ext.arg, backend)
        except damos.DamosSetupError as e:
            raise ExtError(f"run: {e}") from None
    elif ext.kind == "smdk":
        from cxlemu.userspace.smdk.cxlmalloc import CxlMallocError, parse_conf
        try:
            return list(parse_conf(ext.arg).warnings)
        except CxlMallocError as e:
            raise ExtError(f"run: CXLMALLOC_CONF: {e}") from None
    elif ext.kind == "memkind":
        from cxlemu.userspace.allocator import NodeInfo
        from cxlemu.userspace.memkind import KINDS, MemkindError, plan
        if ext.arg not in KINDS:
            raise ExtError(f"run: unknown memkind kind {ext.arg!r} (kinds: {', '.join(KINDS)})")
        info = NodeInfo.read(backend)
        try:
            plan(ext.arg, info, info.cpu[0] if info.cpu else 0)
        except MemkindError as e:
            raise ExtError(f"run: memkind {ext.arg}: {e.strerror}", 1) from None
    return []


class PacedHost:
    """A machine whose yield point keeps simulated time at wall-clock pace
    (``--pace wall``): after each epoch it sleeps until the wall clock
    caught up with the simulated time the run has covered."""

    def __init__(self, machine):
        self.machine = machine
        self.kernel = machine.kernel
        self.name = getattr(machine, "name", "")
        self._t0 = None
        self._w0 = None

    def yield_point(self) -> None:
        yp = getattr(self.machine, "yield_point", None)
        if yp is not None:
            yp()
        now = self.kernel.clock_ns
        if self._t0 is None:
            self._t0, self._w0 = now, time.monotonic()
            return
        ahead = (now - self._t0) / 1e9 - (time.monotonic() - self._w0)
        if ahead > 0:
            time.sleep(min(ahead, 1.0))


def _new_process(kernel, spec, cls=None, **kw):
    """A process set up as the engine would (cpuset, affinity, policy)."""
    from cxlemu.kernel.syscalls import Process
    cls = cls or Process
    t = kernel.sched.create_task(spec.name or spec.workload.name)
    proc = cls(kernel, t, **kw)
    if spec.cpuset_mems is not None:
        proc.set_cpuset_mems(spec.cpuset_mems)
    if spec.cpunodebind is not None:
        numa = kernel.mm.numa
        proc.sched_setaffinity([c for n in spec.cpunodebind for c in numa.cpus(n)])
    if spec.physcpubind is not None:
        proc.sched_setaffinity(spec.physcpubind)
    if spec.policy is not None:
        proc.set_mempolicy(spec.policy[0], spec.policy[1])
    return proc


def run_with(host, specs, policy, ext: Ext | None, kw: dict, label: str = "", pace: str | None = None):
    """engine.run with an extension's set-up and tear-down."""
    from cxlemu.sim.engine import run
    from cxlemu.sysfs.backend import EmulatorBackend
    kernel = host.kernel
    if pace == "wall":
        host = PacedHost(host)
    if ext is None and any(getattr(s, "smalloc", None) for s in specs):
        return _run_smalloc(host, specs, policy, kw, label)
    if ext is None:
        return run(host, specs, policy=policy, label=label, **kw)
    backend = EmulatorBackend(kernel)
    created = []
    extra: dict = {}
    kspecs = None
    allocators = []
    try:
        if ext.kind == "damos":
            from cxlemu.tools import damos
            kspecs = damos.resolve(ext.arg, backend)
            pid = None
            if any(k.ops in ("vaddr", "fvaddr") and k.pid in (None, "workload") for k in kspecs):
                if specs[0].process is None:
                    specs[0].process = _new_process(kernel, specs[0])
                    created.append(specs[0].process)
                pid = specs[0].process.pid
            busy = damos.running_kdamonds(backend)
            if busy:
                raise ExtError(f"run: --damos: DAMON is in use (kdamond {busy[0]} is on); "
                               f"turn it off first (damo stop)", 1)
            try:
                damos.stage(backend, kspecs, pid)
                damos.turn_on(backend, len(kspecs))
            except damos.DamosSetupError as e:
                # the kernel refused a value: nothing ran (the caller does not save the machine)
                raise ExtError(f"run: --damos: {e}") from None
        else:
            from cxlemu.sim.allocproc import AllocatorProcess, make_allocator
            for s in specs:
                if s.process is not None:
                    continue
                alloc = make_allocator(ext.kind, ext.arg, backend)
                s.process = _new_process(kernel, s, AllocatorProcess, allocator=alloc)
                created.append(s.process)
                allocators.append(alloc)
        res = run(host, specs, policy=policy, label=label, **kw)
        if kspecs is not None:
            from cxlemu.tools import damos
            extra["damos"] = {"setup": ext.arg, "kdamonds": damos.collect_stats(backend)}
        if allocators:
            extra["allocator"] = {"kind": ext.kind, "config": ext.arg,
                                  "processes": [a.stats() for a in allocators]}
    finally:
        if kspecs is not None:
            from cxlemu.tools import damos
            damos.turn_off(backend)
        if not kw.get("keep"):
            for p in created:
                if p.alive:
                    p.exit(0)
    res.extra.update(extra)
    name = f"{ext.kind}:{ext.arg}"
    res.policy = name if policy is None else f"{res.policy}+{name}"
    if not label or label == policy:
        res.label = res.policy
    return res


def _run_smalloc(host, specs, policy, kw, label):
    """Processes of a workload file with a ``smalloc`` table allocate those
    VMAs through SMDK's optimization API."""
    from cxlemu.sim.engine import run
    from cxlemu.sysfs.backend import EmulatorBackend
    from cxlemu.sim.allocproc import AllocatorProcess
    from cxlemu.userspace.smdk.smalloc import SmallocPlan
    kernel = host.kernel
    backend = EmulatorBackend(kernel)
    created, plans = [], []
    try:
        for s in specs:
            if s.smalloc and s.process is None:
                plan = SmallocPlan(s.smalloc, backend)
                s.process = _new_process(kernel, s, AllocatorProcess, allocator=plan)
                created.append(s.process)
                plans.append(plan)
        res = run(host, specs, policy=policy, label=label, **kw)
        res.extra["allocator"] = {"kind": "smalloc", "config": "workload file",
                                  "processes": [p.stats() for p in plans]}
        return res
    finally:
        if not kw.get("keep"):
            for p in created:
                if p.alive:
                    p.exit(0)

