"""The device poison store (hw/poison.py): a model-based property test
against a plain set of poisoned lines, the overflow rule, Scan Media
relisting, and the vectorised line check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cxlemu.hw.poison import SOURCE_INJECTED, SOURCE_INTERNAL, PoisonStore

CAP = 64 * 256          # 256 lines


ops = st.lists(st.tuples(st.sampled_from(["add", "clear", "scan"]), st.integers(0, 255), st.integers(1, 6)),
               max_size=40)


@settings(max_examples=150, deadline=None)
@given(ops=ops, max_records=st.integers(1, 12))
def test_store_matches_a_set_of_lines(ops, max_records):
    ps = PoisonStore(CAP, max_records=max_records)
    truth: set[int] = set()
    for op, line, n in ops:
        lo = line * 64
        hi = min(CAP, lo + n * 64)
        if op == "add":
            ps.add(lo, hi - lo, SOURCE_INTERNAL, now_ns=7)
            truth |= set(range(lo, hi, 64))
        elif op == "clear":
            ps.clear(lo, 64, now_ns=7)
            truth.discard(lo)
        else:
            ps.scan(0, CAP, now_ns=7)
        # invariants: sorted, disjoint, aligned, within the device, listed <= max
        assert np.all(np.diff(ps.start) > 0)
        assert np.all(ps.start[1:] >= ps.start[:-1] + ps.length[:-1])
        assert np.all(ps.start % 64 == 0) and np.all(ps.length % 64 == 0) and np.all(ps.length > 0)
        assert ps.listed_count <= max_records
        if len(ps):
            assert int(ps.start[-1] + ps.length[-1]) <= CAP
        lines = np.arange(0, CAP, 64)
        assert set(lines[ps.mask(lines)].tolist()) == truth
        if ps.listed_count < len(ps):
            assert ps.overflow                   # something is unlisted only after an overflow


def test_overflow_flag_timestamp_and_scan_relists():
    ps = PoisonStore(CAP, max_records=2)
    ps.add(0, 64, SOURCE_INTERNAL, now_ns=10)
    ps.add(1024, 64, SOURCE_INTERNAL, now_ns=20)
    assert not ps.overflow
    new = ps.add(4096, 64, SOURCE_INTERNAL, now_ns=30)
    assert [r.listed for r in new] == [False]
    assert ps.overflow and ps.overflow_ts == 30
    assert ps.covers(4096)                       # unlisted but poisoned: the data path still sees it
    ps.clear(0, 64, now_ns=40)                    # room again, but the list is not accurate until a scan
    assert ps.overflow
    found = ps.scan(0, CAP, now_ns=50)
    assert [r.dpa for r in found] == [1024, 4096] and all(r.listed for r in found)
    assert not ps.overflow and ps.overflow_ts == 0


def test_clear_splits_a_long_record_and_may_overflow():
    ps = PoisonStore(CAP, max_records=1)
    ps.add(0, 256, SOURCE_INTERNAL, now_ns=1)
    assert ps.clear(64, 64, now_ns=2)
    recs = ps.records()
    assert [(r.dpa, r.length) for r in recs] == [(0, 64), (128, 128)]
    assert [r.listed for r in recs] == [True, False] and ps.overflow and ps.overflow_ts == 2
    assert not ps.clear(64, 64, now_ns=3)         # nothing poisoned there any more


def test_first_poisoned_and_variable_sizes():
    ps = PoisonStore(CAP)
    ps.add(640, 128, SOURCE_INJECTED, now_ns=0)
    assert ps.first_poisoned(0, 640) is None
    assert ps.first_poisoned(600, 100) == 640
    assert ps.first_poisoned(700, 100) == 700
    d = np.array([0, 600, 760, 768])
    assert ps.mask(d, np.array([640, 41, 8, 64])).tolist() == [False, True, True, False]


def test_drop_injected_keeps_media_errors():
    ps = PoisonStore(CAP)
    ps.add(0, 64, SOURCE_INJECTED, 0)
    ps.add(128, 64, SOURCE_INTERNAL, 0)
    ps.add(4096, 64, SOURCE_INJECTED, 0)
    ps.drop_injected(0, 1024)
    assert [r.dpa for r in ps.records()] == [128, 4096]


@pytest.mark.parametrize("cap_lines", [1, 7])
def test_list_pages_continue_with_more(cap_lines):
    ps = PoisonStore(CAP)
    for i in range(10):
        ps.add(i * 128, 64, SOURCE_INTERNAL, 0)
    seen = []
    for _ in range(20):
        page, more = ps.list_page(0, CAP, cap_lines)
        seen += [r.dpa for r in page]
        if not more:
            break
    assert seen == [i * 128 for i in range(10)]
    assert ps.cursor is None
