"""DAMON: data access monitoring and DAMON-based operation schemes (mm/damon/).

One core (core.py: contexts, targets, the kdamond loop, adaptive regions,
interval tuning), two operation sets behind an ops table (ops_vaddr.py for
process virtual address spaces, ops_paddr.py for the physical address
space; ops_common.py holds what both share), DAMOS (schemes.py: access
patterns, actions, quotas and goals, watermarks, filters, stats) and a sysfs
front end (sysfs.py: /sys/kernel/mm/damon/admin) that only translates files
into core parameters, as the kernel's mm/damon/sysfs*.c do.

``kernel.mm.damon`` is the one :class:`~cxlemu.kernel.mm.damon.sysfs.DamonAdmin`
of a kernel (created on first use).  Running kdamonds are kernel threads of
the scheduler (``kernel.sched.register_kthread``): the workload engine runs
them between epochs in simulated time, so monitoring advances only while a
workload runs.
"""
