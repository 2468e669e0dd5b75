"""The workload engine: a discrete-event driver in simulated time, kept
apart from the models it drives (userspace programs, the kernel's memory
management, the hardware timing).  ``run()`` is the entry point."""

from __future__ import annotations


def run(machine, workload, **kw):
    """Run a workload on a machine (see :func:`cxlemu.sim.engine.run`)."""
    from cxlemu.sim.engine import run as _run
    return _run(machine, workload, **kw)
