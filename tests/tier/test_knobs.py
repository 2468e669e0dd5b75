"""Every tiering knob written through procfs/sysfs/debugfs: the values the
kernel accepts, the errno of those it refuses (nothing changes then)."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.kernel.sysctl import parse_int

from .support import tiered

# path, [accepted (written, read back)], [refused (written, errno)]
TABLE = [
    ("/proc/sys/kernel/numa_balancing", [("0", "0"), ("1", "1"), ("2", "2"), ("3", "3"), ("4", "4"), (" 2\n", "2")],
     [("5", errno.EINVAL), ("-1", errno.EINVAL), ("x", errno.EINVAL), ("", errno.EINVAL), ("2x", errno.EINVAL)]),
    ("/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps", [("0", "0"), ("100", "100"), ("0x10", "16")],
     [("-1", errno.EINVAL), ("2147483648", errno.EINVAL), ("1.5", errno.EINVAL)]),
    ("/proc/sys/vm/min_free_kbytes", [("65536", "65536"), ("010", "8")], [("-5", errno.EINVAL)]),
    ("/proc/sys/vm/watermark_scale_factor", [("1", "1"), ("3000", "3000")],
     [("0", errno.EINVAL), ("3001", errno.EINVAL)]),
    ("/proc/sys/vm/watermark_boost_factor", [("0", "0"), ("15000", "15000")], [("-1", errno.EINVAL)]),
    ("/proc/sys/vm/swappiness", [("0", "0"), ("200", "200")], [("201", errno.EINVAL), ("-1", errno.EINVAL)]),
    ("/proc/sys/vm/zone_reclaim_mode", [("0", "0"), ("4", "4")], [("-1", errno.EINVAL)]),
    ("/sys/kernel/debug/sched/numa_balancing/hot_threshold_ms", [("500", "500"), ("4294967296", "0")],
     [("-1", errno.EINVAL), ("abc", errno.EINVAL)]),
    ("/sys/kernel/debug/sched/numa_balancing/scan_size_mb", [("64", "64")], [("-64", errno.EINVAL)]),
    ("/sys/kernel/debug/sched/numa_balancing/scan_period_min_ms", [("100", "100")], [("x", errno.EINVAL)]),
    ("/sys/kernel/debug/sched/numa_balancing/scan_period_max_ms", [("6000", "6000")], [("", errno.EINVAL)]),
    ("/sys/kernel/debug/sched/numa_balancing/scan_delay_ms", [("0", "0")], [("1e3", errno.EINVAL)]),
    ("/sys/kernel/mm/numa/demotion_enabled", [("1", "true"), ("false", "false"), ("Y", "true"), ("off", "false")],
     [("2", errno.EINVAL), ("maybe", errno.EINVAL)]),
    ("/sys/kernel/mm/transparent_hugepage/enabled", [("never", "always madvise [never]"),
                                                     ("madvise", "always [madvise] never")],
     [("sometimes", errno.EINVAL)]),
    ("/sys/kernel/mm/mempolicy/weighted_interleave/node0", [("1", "1"), ("255", "255")],
     [("0", errno.EINVAL), ("256", errno.EINVAL), ("", errno.EINVAL)]),
    ("/sys/module/zswap/parameters/enabled", [("Y", "Y"), ("0", "N")], [("x", errno.EINVAL)]),
    ("/sys/module/zswap/parameters/compressor", [("zstd", "zstd"), ("lz4", "lz4")], [("snappy", errno.ENOENT)]),
    ("/sys/module/zswap/parameters/zpool", [("zbud", "zbud")], [("zsmall", errno.ENOENT)]),
    ("/sys/module/zswap/parameters/max_pool_percent", [("50", "50")], [("-1", errno.EINVAL)]),
    ("/sys/module/zswap/parameters/accept_threshold_percent", [("100", "100"), ("0", "0")],
     [("101", errno.EINVAL)]),
]


@pytest.mark.parametrize("path,good,bad", TABLE, ids=[t[0].rsplit("/", 1)[1] for t in TABLE])
def test_knob_accepts_and_refuses_like_the_kernel(path, good, bad):
    b = tiered()
    for value, shown in good:
        b.write(path, value)
        assert b.read(path) == shown + "\n", (path, value)
    current = b.read(path)
    for value, err in bad:
        with pytest.raises(OSError) as e:
            b.write(path, value)
        assert e.value.errno == err, (path, value)
        assert b.read(path) == current                    # a refused write changes nothing


def test_read_only_and_write_only_files():
    b = tiered()
    with pytest.raises(OSError) as e:
        b.write("/sys/kernel/debug/zswap/stored_pages", "1")
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        b.read("/proc/sys/vm/drop_caches")
    assert e.value.errno == errno.EACCES
    b.write("/proc/sys/vm/drop_caches", "3")
    with pytest.raises(OSError) as e:
        b.write("/proc/sys/vm/drop_caches", "5")
    assert e.value.errno == errno.EINVAL


def test_entering_tiering_mode_resets_the_promotion_state():
    b = tiered()
    k = b.kernel
    p = k.sched.numab.node(0)
    p.nbp_threshold = 500
    k.clock_ns = 5_000_000_000
    b.write("/proc/sys/kernel/numa_balancing", "2")
    assert p.nbp_threshold == 0 and p.nbp_th_start == 5000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=30))
def test_proc_dointvec_parser_never_crashes(buf):
    try:
        v = parse_int(buf, 0, 100)
    except OSError as e:
        assert e.errno == errno.EINVAL
    else:
        assert 0 <= v <= 100
