"""Issue 9's placement check: a Zipf key-value store whose hot set fits in
DRAM.  Under tpp the steady-state fast-tier hit ratio comes within 5 % of the
best static placement of the same accesses; under default (first touch, no
migration) it stays near the share of the pages that landed in DRAM."""

from __future__ import annotations

import pytest

from cxlemu.sim.engine import run
from cxlemu.userspace import workloads as W

from .support import tiered

pytestmark = pytest.mark.slow

# 3 M keys x 1 KiB = 2.9 GiB of values (+ 46 MiB index) on 2 GiB of DRAM and
# 8 GiB of CXL; alpha 0.99: the hottest 20 % of the pages draw ~90 % of the
# accesses, so the hot set fits in DRAM but the whole store does not.
ZIPF = dict(keys="3M", value_size=1024, alpha=0.99, threads=1, cpu_ns=50)


def _run(policy):
    b = tiered("2G", "8G")
    return run(b.kernel, W.Zipf(**ZIPF), policy=policy, duration=30_000_000_000, seed=1, tail=0.5)


def test_tpp_reaches_the_optimal_static_placement():
    r = _run("tpp")
    steady, best = r.steady_hit_ratio(), r.optimal_tail
    print(f"\ntpp: steady fast-tier hit ratio {steady:.3f}, optimal static placement {best:.3f}, "
          f"whole run {r.fast_tier_hit_ratio:.3f} (optimal {r.optimal:.3f}); promoted {r.pages_promoted}, "
          f"demoted {r.pages_demoted}")
    assert best > 0.9
    assert steady >= best * 0.95, (steady, best)
    assert r.pages_promoted > 0 and r.pages_demoted > 0


def test_default_stays_at_the_placement_share():
    r = _run("default")
    values = next(v for v in r.vmas if v["name"] == "kv-values")
    in_dram = values["resident_by_node"].get(0, 0) / max(1, sum(values["resident_by_node"].values()))
    steady = r.steady_hit_ratio()
    print(f"\ndefault: steady fast-tier hit ratio {steady:.3f}, share of the values in DRAM {in_dram:.3f}, "
          f"optimal static placement {r.optimal_tail:.3f}")
    assert r.pages_promoted == 0 and r.pages_demoted == 0
    # popular keys are scattered over the value area, so the hit ratio follows the placement share
    assert abs(steady - in_dram) < 0.05, (steady, in_dram)
    assert steady < r.optimal_tail - 0.25
