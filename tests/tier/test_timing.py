"""The memory timing model (hw/timing.py): calibration, loaded-latency
curve, the closed loop, and Colloid's observation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.hw.timing import (CALIBRATION, MemTiming, Stream, blend, calibrated, curve, interleave, solve_epoch,
                              utilisation)
from cxlemu.topology.schema import TIMING_PROFILES


def test_calibration_profiles_match_the_schema():
    assert set(CALIBRATION) == set(TIMING_PROFILES)
    for t in CALIBRATION.values():
        assert t.source                      # every number says where it comes from


def test_calibrated_figures():
    d, c = calibrated("ddr5-4800"), calibrated("cxl-asic-x8")
    assert d.read_latency == 78                           # Pond, Intel local DRAM
    assert d.read_bandwidth == pytest.approx(38400 * 0.70)  # DDR5-4800 channel at 70 % (Demystifying)
    assert c.read_latency == round(142 * 1.35)            # +35 % over remote DDR5 (Demystifying CXL-A)
    assert c.read_bandwidth == pytest.approx(38400 * 0.46)
    assert c.total == 36000                               # Micron CZ120, 2:1 R/W
    with pytest.raises(ValueError):
        calibrated("hbm9")


def test_curve_is_flat_then_superlinear():
    assert curve(0.15, 0.0) == 1.0
    assert curve(0.15, 0.5) < 1.1
    assert curve(0.15, 0.9) > 2.0
    # latency doubles around 90 % for DRAM, earlier for CXL controllers
    assert curve(0.25, 0.85) > curve(0.15, 0.85)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.01, 1.0), st.floats(0.0, 1.5), st.floats(0.0, 1.5))
def test_curve_monotonic_and_continuous(k, a, b):
    lo, hi = sorted((a, b))
    assert curve(k, lo) <= curve(k, hi) + 1e-9
    assert math.isfinite(curve(k, hi))


def test_utilisation_half_vs_full_duplex():
    d, c = calibrated("ddr5-4800"), calibrated("cxl-asic-x8")
    half = d.read_bandwidth / 2
    assert utilisation(d, half, half) == pytest.approx(1.0)         # DDR: reads and writes share the bus
    assert utilisation(c, c.read_bandwidth / 2, c.write_bandwidth / 2) < 0.6   # CXL link: two directions


def test_interleave_and_blend():
    c = calibrated("cxl-asic-x8")
    two = interleave([c, c])
    assert two.read_bandwidth == 2 * c.read_bandwidth and two.read_latency == c.read_latency
    d = calibrated("ddr5-4800")
    b = blend([(d, 1.0), (c, 1.0)])
    assert b.read_latency == pytest.approx((d.read_latency + c.read_latency) / 2)


def test_saturated_dram_is_slower_than_idle_cxl():
    """Colloid (SOSP'24): under load the default tier's latency exceeds the alternate tier's."""
    d, c = calibrated("ddr5-4800"), calibrated("cxl-asic-x8")
    busy = Stream([1e6, 0.0], [0.0, 0.0], parallelism=16, mlp=10, cpu_ns=1)
    e = solve_epoch([d, c], [busy])
    assert e.utilisation[0] > 0.9
    assert e.read_latency[0] > c.read_latency                 # DRAM loaded > CXL idle
    light = solve_epoch([d, c], [Stream([1e6, 0.0], [0.0, 0.0], parallelism=1, mlp=2, cpu_ns=10)])
    assert light.read_latency[0] < c.read_latency


@settings(max_examples=60, deadline=None)
@given(st.floats(1e3, 1e7), st.floats(0, 1e7), st.floats(0.5, 64), st.floats(1, 32), st.floats(0, 100))
def test_closed_loop_fixed_point(reads, writes, par, mlp, cpu):
    d, c = calibrated("ddr5-4800"), calibrated("cxl-asic-x8")
    s = Stream([reads, writes / 2], [0.0, writes / 2], parallelism=par, mlp=mlp, cpu_ns=cpu)
    e = solve_epoch([d, c], [s])
    mem = sum((s.reads[i] + s.writes[i]) * e.read_latency[i] for i in range(2))
    need = (s.total * cpu + mem / mlp) / par
    assert e.duration_ns == pytest.approx(need, rel=1e-4)
    # bandwidth never exceeds what the curve allows (utilisation finite, latency finite)
    assert all(math.isfinite(x) for x in e.read_latency)


def test_two_streams_share_the_memory():
    d = calibrated("ddr5-4800")
    a = Stream([5e5], [0.0], parallelism=4, mlp=8, cpu_ns=1)
    alone = solve_epoch([d], [a])
    both = solve_epoch([d], [a, Stream([5e5], [0.0], parallelism=4, mlp=8, cpu_ns=1)])
    assert both.read_latency[0] > alone.read_latency[0]
