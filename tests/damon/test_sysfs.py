"""/sys/kernel/mm/damon/admin: the kernel's file names, defaults, accepted
values and errnos (mm/damon/sysfs.c, sysfs-schemes.c), and the rule that a
refused write changes nothing."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxlemu.kernel.syscalls import Process

from .support import ADMIN, EBUSY, EINVAL, EPERM, ERANGE, err, machine, one_kdamond, r, w


@pytest.fixture(scope="module")
def mb():
    return machine("1G", "2G")


@pytest.fixture
def b(mb):
    w(mb, "nr_kdamonds", 0)
    return mb


def test_layout_and_defaults(b):
    assert b.listdir("/sys/kernel/mm/damon") == ["admin"]
    assert r(b, "nr_kdamonds") == "0"
    c = one_kdamond(b, "vaddr")
    assert set(b.listdir(f"{ADMIN}/0")) == {"state", "pid", "refresh_ms", "contexts"}
    assert r(b, "0/state") == "off" and r(b, "0/pid") == "-1"
    assert set(b.listdir(f"{ADMIN}/{c}")) == {"avail_operations", "operations", "monitoring_attrs", "targets",
                                              "schemes"}
    assert r(b, f"{c}/avail_operations").split() == ["vaddr", "fvaddr", "paddr"]
    ia = f"{c}/monitoring_attrs/intervals"
    assert (r(b, f"{ia}/sample_us"), r(b, f"{ia}/aggr_us"), r(b, f"{ia}/update_us")) == ("5000", "100000", "60000000")
    assert set(b.listdir(f"{ADMIN}/{ia}/intervals_goal")) == {"access_bp", "aggrs", "min_sample_us", "max_sample_us"}
    assert (r(b, f"{c}/monitoring_attrs/nr_regions/min"), r(b, f"{c}/monitoring_attrs/nr_regions/max")) == \
        ("10", "1000")
    w(b, f"{c}/schemes/nr_schemes", 1)
    s = f"{c}/schemes/0"
    assert set(b.listdir(f"{ADMIN}/{s}")) == {
        "action", "apply_interval_us", "target_nid", "access_pattern", "quotas", "watermarks", "filters",
        "core_filters", "ops_filters", "dests", "stats", "tried_regions"}
    assert (r(b, f"{s}/action"), r(b, f"{s}/target_nid"), r(b, f"{s}/apply_interval_us")) == ("stat", "-1", "0")
    assert set(b.listdir(f"{ADMIN}/{s}/quotas")) == {"ms", "bytes", "reset_interval_ms", "effective_bytes",
                                                     "weights", "goals"}
    assert set(b.listdir(f"{ADMIN}/{s}/stats")) == {"nr_tried", "sz_tried", "nr_applied", "sz_applied",
                                                    "sz_ops_filter_passed", "qt_exceeds"}
    assert r(b, f"{s}/watermarks/metric") == "none"
    assert b.vfs.mode(f"{ADMIN}/{s}/stats/nr_tried") & 0o777 == 0o400
    assert b.vfs.mode(f"{ADMIN}/{s}/action") & 0o777 == 0o600
    w(b, f"{s}/quotas/goals/nr_goals", 1)
    assert set(b.listdir(f"{ADMIN}/{s}/quotas/goals/0")) == {"target_metric", "target_value", "current_value",
                                                             "nid", "path"}
    w(b, f"{s}/ops_filters/nr_filters", 1)
    assert set(b.listdir(f"{ADMIN}/{s}/ops_filters/0")) == {"type", "matching", "allow", "memcg_path", "addr_start",
                                                            "addr_end", "min", "max", "damon_target_idx"}
    assert r(b, f"{s}/tried_regions/total_bytes") == "0"


def test_refused_values_change_nothing(b):
    c = one_kdamond(b)
    w(b, f"{c}/schemes/nr_schemes", 1)
    s = f"{c}/schemes/0"
    w(b, f"{s}/action", "pageout")
    assert err(b, f"{s}/action", "bogus") == EINVAL                     # bad action name
    assert r(b, f"{s}/action") == "pageout"
    w(b, f"{s}/quotas/goals/nr_goals", 1)
    g = f"{s}/quotas/goals/0"
    w(b, f"{g}/target_metric", "node_mem_used_bp")
    assert err(b, f"{g}/target_metric", "node_mem_hot_bp") == EINVAL    # a metric the kernel does not know
    assert r(b, f"{g}/target_metric") == "node_mem_used_bp"
    assert err(b, f"{c}/operations", "kaddr") == EINVAL
    assert r(b, f"{c}/operations") == "paddr"
    assert err(b, "0/contexts/nr_contexts", 2) == EINVAL                 # one context per kdamond
    assert err(b, f"{c}/schemes/nr_schemes", -1) == EINVAL
    assert err(b, f"{c}/schemes/nr_schemes", "x") == EINVAL
    assert r(b, f"{c}/schemes/nr_schemes") == "1"
    assert err(b, f"{c}/monitoring_attrs/intervals/sample_us", 1 << 64) == ERANGE
    assert err(b, f"{c}/monitoring_attrs/intervals/sample_us", "-5") == EINVAL
    assert r(b, f"{c}/monitoring_attrs/intervals/sample_us") == "5000"
    w(b, f"{c}/monitoring_attrs/intervals/sample_us", "0x1388")        # kstrtoul base 0
    assert r(b, f"{c}/monitoring_attrs/intervals/sample_us") == "5000"
    w(b, f"{s}/core_filters/nr_filters", 1)
    w(b, f"{s}/ops_filters/nr_filters", 1)
    assert err(b, f"{s}/core_filters/0/type", "young") == EINVAL       # an ops filter in core_filters
    assert err(b, f"{s}/ops_filters/0/type", "addr") == EINVAL          # a core filter in ops_filters
    w(b, f"{s}/core_filters/0/type", "addr")
    w(b, f"{s}/ops_filters/0/type", "young")
    assert err(b, f"{s}/watermarks/metric", "used_mem_rate") == EINVAL
    assert err(b, "0/state", "start") == EINVAL
    assert r(b, "0/state") == "off"


def test_context_checks_at_on(b):
    """damon_set_attrs() and the target checks run when a context is built:
    the ``on`` write fails with EINVAL and nothing starts."""
    c = one_kdamond(b)
    nr = f"{c}/monitoring_attrs/nr_regions"
    w(b, f"{nr}/min", 2)                                         # min_nr_regions < 3
    assert err(b, "0/state", "on") == EINVAL and r(b, "0/state") == "off"
    w(b, f"{nr}/min", 100)
    w(b, f"{nr}/max", 50)                                        # max < min
    assert err(b, "0/state", "on") == EINVAL and r(b, "0/state") == "off"
    w(b, f"{nr}/max", 1000)
    w(b, f"{c}/monitoring_attrs/intervals/sample_us", 200000)    # sample > aggr
    assert err(b, "0/state", "on") == EINVAL
    w(b, f"{c}/monitoring_attrs/intervals/sample_us", 5000)
    w(b, f"{c}/targets/nr_targets", 2)                          # two paddr targets
    assert err(b, "0/state", "on") == EINVAL
    w(b, f"{c}/targets/nr_targets", 1)
    w(b, f"{c}/targets/0/regions/nr_regions", 2)
    w(b, f"{c}/targets/0/regions/0/start", 1 << 32)
    w(b, f"{c}/targets/0/regions/0/end", 1 << 30)               # start > end
    assert err(b, "0/state", "on") == EINVAL
    w(b, f"{c}/targets/0/regions/0/end", 3 << 31)
    w(b, f"{c}/targets/0/regions/1/start", 1 << 32)              # overlaps region 0
    w(b, f"{c}/targets/0/regions/1/end", 5 << 31)
    assert err(b, "0/state", "on") == EINVAL
    w(b, f"{c}/targets/0/regions/nr_regions", 1)
    w(b, f"{c}/schemes/nr_schemes", 1)
    w(b, f"{c}/schemes/0/ops_filters/nr_filters", 1)
    w(b, f"{c}/schemes/0/ops_filters/0/type", "memcg")
    w(b, f"{c}/schemes/0/ops_filters/0/memcg_path", "/no/such/cgroup")
    assert err(b, "0/state", "on") == EINVAL                     # memcg path -> id fails
    w(b, f"{c}/schemes/0/ops_filters/0/memcg_path", "/")
    w(b, f"{c}/schemes/0/quotas/goals/nr_goals", 1)
    w(b, f"{c}/schemes/0/quotas/goals/0/target_metric", "node_mem_free_bp")
    w(b, f"{c}/schemes/0/quotas/goals/0/target_value", 100)
    w(b, "0/state", "on")
    assert r(b, "0/state") == "on" and int(r(b, "0/pid")) > 0
    assert err(b, "0/state", "on") == EBUSY
    assert err(b, "nr_kdamonds", 2) == EBUSY                     # busy kdamonds
    w(b, "0/state", "off")
    assert err(b, "0/state", "off") == EPERM                     # damon_stop of a stopped context
    w(b, "nr_kdamonds", 0)


def test_commands_need_a_running_kdamond(b):
    c = one_kdamond(b)
    for cmd in ("commit", "update_schemes_stats", "update_schemes_tried_regions", "update_schemes_tried_bytes",
                "update_schemes_effective_quotas", "update_tuned_intervals", "commit_schemes_quota_goals"):
        assert err(b, "0/state", cmd) == EINVAL
    assert err(b, "0/state", "off") == EINVAL                    # never started: no damon_ctx
    w(b, "0/state", "clear_schemes_tried_regions")               # always allowed
    w(b, "0/contexts/nr_contexts", 0)
    assert err(b, "0/state", "on") == EINVAL                     # a kdamond needs one context
    del c


def test_vaddr_needs_a_live_process(b):
    c = one_kdamond(b, "vaddr")
    w(b, f"{c}/targets/nr_targets", 1)
    w(b, f"{c}/targets/0/pid_target", 4242)
    assert err(b, "0/state", "on") == EINVAL
    p = Process.new(b.kernel, "t")
    w(b, f"{c}/targets/0/pid_target", p.pid)
    w(b, "0/state", "on")
    assert r(b, "0/state") == "on"
    w(b, "0/state", "off")
    p.exit()


def test_commit_updates_the_running_context_or_nothing(b):
    c = one_kdamond(b)
    w(b, f"{c}/schemes/nr_schemes", 1)
    w(b, "0/state", "on")
    kd = b.kernel.mm.damon.kdamonds[0].kd
    w(b, f"{c}/monitoring_attrs/intervals/aggr_us", 200000)
    w(b, f"{c}/schemes/0/action", "lru_prio")
    w(b, "0/state", "commit")
    assert kd.ctx.attrs.aggr_interval == 200000 and kd.ctx.schemes[0].action == "lru_prio"
    w(b, f"{c}/monitoring_attrs/nr_regions/min", 1)               # refused at commit
    w(b, f"{c}/schemes/0/action", "pageout")
    assert err(b, "0/state", "commit") == EINVAL
    assert kd.ctx.attrs.min_nr_regions == 10 and kd.ctx.schemes[0].action == "lru_prio"
    assert r(b, "0/state") == "on"
    w(b, "0/state", "off")


def test_target_nid_of_an_offline_node_is_accepted_and_migrates_nothing(b):
    """The kernel does not check target_nid (sysfs-schemes.c: "TODO: error
    handling for target_nid range"); damon_migrate_pages() skips a node that
    is not N_MEMORY, so nothing moves."""
    from cxlemu.sim.engine import run
    from cxlemu.userspace.spec import ProcSpec
    from cxlemu.userspace.workloads import make
    c = one_kdamond(b, "vaddr")
    p = Process.new(b.kernel, "hc")
    w(b, f"{c}/targets/nr_targets", 1)
    w(b, f"{c}/targets/0/pid_target", p.pid)
    w(b, f"{c}/schemes/nr_schemes", 1)
    s = f"{c}/schemes/0"
    w(b, f"{s}/action", "migrate_cold")
    w(b, f"{s}/target_nid", 7)
    for k in ("sz", "nr_accesses", "age"):
        w(b, f"{s}/access_pattern/{k}/max", (1 << 64) - 1)
    assert r(b, f"{s}/target_nid") == "7"
    w(b, f"{c}/monitoring_attrs/intervals/update_us", 100000)
    w(b, "0/state", "on")
    run(b.kernel, ProcSpec(make("hotcold", hot="16M", cold="16M"), process=p), duration=400_000_000)
    w(b, "0/state", "update_schemes_stats")
    assert int(r(b, f"{s}/stats/nr_tried")) > 0
    assert r(b, f"{s}/stats/sz_applied") == "0"
    w(b, "0/state", "off")
    p.exit()


FILES = ["nr_kdamonds", "0/state", "0/refresh_ms", "0/contexts/nr_contexts", "0/contexts/0/operations",
         "0/contexts/0/monitoring_attrs/intervals/sample_us", "0/contexts/0/monitoring_attrs/nr_regions/min",
         "0/contexts/0/targets/nr_targets", "0/contexts/0/schemes/nr_schemes", "0/contexts/0/schemes/0/action",
         "0/contexts/0/schemes/0/target_nid", "0/contexts/0/schemes/0/quotas/bytes",
         "0/contexts/0/schemes/0/quotas/goals/nr_goals", "0/contexts/0/schemes/0/watermarks/metric",
         "0/contexts/0/schemes/0/ops_filters/nr_filters", "0/contexts/0/schemes/0/dests/nr_dests",
         "0/contexts/0/schemes/0/access_pattern/age/max"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(FILES), st.binary(max_size=24)), max_size=12))
def test_fuzz_writes_never_traceback(mb, writes):
    """Any bytes to any file: accepted, or refused with an errno; never another exception."""
    w(mb, "nr_kdamonds", 0)
    one_kdamond(mb)
    w(mb, "0/contexts/0/schemes/nr_schemes", 1)
    for path, data in writes:
        try:
            mb.write(f"{ADMIN}/{path}", data)
        except OSError as e:
            assert e.errno in (errno.EINVAL, errno.ERANGE, errno.EBUSY, errno.EPERM, errno.ENOENT)
    if r(mb, "nr_kdamonds") != "0":
        try:
            w(mb, "0/state", "off")
        except OSError:
            pass
    np.random.default_rng(0)
