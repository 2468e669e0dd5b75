"""DAMON's tracepoints (include/trace/events/damon.h): ``damon_aggregated``
(one event per region at the end of every aggregation interval),
``damos_before_apply`` (per region a scheme is about to act on) and
``damon_monitor_intervals_tune`` (a new sampling interval).

As in the kernel, an event costs nothing unless it is enabled: the events
go to the kernel's tracing subsystem when it has one
(``kernel.tracing``, which serves tracefs) and the event is enabled in some
trace instance; ``record`` returns the field dictionaries for callers that
keep their own record (tests, ``cxlemu damon``).
"""

from __future__ import annotations

SYSTEM = "damon"
# (event name, fields in TP_STRUCT__entry order, TP_printk format)
EVENTS = {
    "damon_aggregated": (("target_id", "unsigned long"), ("nr_regions", "unsigned int"),
                         ("start", "unsigned long"), ("end", "unsigned long"),
                         ("nr_accesses", "unsigned int"), ("age", "unsigned int")),
    "damos_before_apply": (("context_idx", "unsigned int"), ("scheme_idx", "unsigned int"),
                           ("target_idx", "unsigned long"), ("start", "unsigned long"), ("end", "unsigned long"),
                           ("nr_accesses", "unsigned int"), ("age", "unsigned int"),
                           ("nr_regions", "unsigned int")),
    "damon_monitor_intervals_tune": (("sample_us", "unsigned long"),),
}


def _sink(kernel, name: str):
    """The kernel's tracing subsystem when ``damon:name`` is enabled somewhere."""
    tr = getattr(kernel, "tracing", None)
    if tr is None:
        return None
    enabled = getattr(tr, "any_enabled", None)
    if enabled is not None and not enabled(SYSTEM, name):
        return None
    return tr


def _emit(kernel, name: str, values: dict) -> None:
    tr = _sink(kernel, name)
    if tr is not None:
        try:
            tr.emit(SYSTEM, name, values)
        except (KeyError, ValueError):       # a tracing subsystem without the DAMON events
            pass


def aggregated(kernel, kd, tick_ns: int) -> None:
    """trace_damon_aggregated() for every region of the context."""
    if _sink(kernel, "damon_aggregated") is None:
        return
    for ti, t in enumerate(kd.ctx.targets):
        r = t.regions
        n = len(r)
        for i in range(n):
            _emit(kernel, "damon_aggregated", {"target_id": ti, "nr_regions": n, "start": int(r.start[i]),
                                               "end": int(r.end[i]), "nr_accesses": int(r.nr_accesses[i]),
                                               "age": int(r.age[i])})


def before_apply(kernel, kd, s, t_index: int, t, idx) -> None:
    if _sink(kernel, "damos_before_apply") is None:
        return
    r = t.regions
    sidx = kd.ctx.schemes.index(s) if s in kd.ctx.schemes else 0
    for i in idx.tolist():
        _emit(kernel, "damos_before_apply", {"context_idx": 0, "scheme_idx": sidx, "target_idx": t_index,
                                             "start": int(r.start[i]), "end": int(r.end[i]),
                                             "nr_accesses": int(r.nr_accesses_bp[i] // 10000),
                                             "age": int(r.age[i]), "nr_regions": len(r)})


def intervals_tune(kernel, sample_us: int) -> None:
    _emit(kernel, "damon_monitor_intervals_tune", {"sample_us": int(sample_us)})
