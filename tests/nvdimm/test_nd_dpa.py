"""DPA bookkeeping of a dimm (namespace_devs.c scan_allocate / scan_free rules)."""

from hypothesis import given, settings, strategies as st

from cxlemu.kernel.nvdimm.dpa import DpaMap, label_id

MiB = 1 << 20
A = 16 * MiB


def test_label_id():
    assert label_id("ab") == "pmem-ab"


def test_allocate_first_fit_then_grow_and_shrink():
    m = DpaMap()
    assert m.allocate(0, 512 * MiB, A, "a", 64 * MiB) == 0
    assert m.allocate(0, 512 * MiB, A, "b", 32 * MiB) == 0
    assert [(e.start, e.size, e.name) for e in m.extents] == [(0, 64 * MiB, "a"), (64 * MiB, 32 * MiB, "b")]
    assert m.available(0, 512 * MiB, A) == 416 * MiB
    # "a" cannot grow: its neighbour is taken and PMEM must stay contiguous
    assert m.allocate(0, 512 * MiB, A, "a", 16 * MiB) == 16 * MiB
    assert m.allocate(0, 512 * MiB, A, "b", 16 * MiB) == 0
    assert m.allocated("b") == 48 * MiB
    m.shrink("b", 48 * MiB)
    assert m.named("b") == []
    assert m.max_contiguous(0, 512 * MiB, A) == 448 * MiB


def test_request_larger_than_free_space_is_not_allocated():
    m = DpaMap()
    assert m.allocate(0, 512 * MiB, A, "a", 513 * MiB) == 513 * MiB
    assert m.extents == []


def test_reserve_refuses_overlap():
    m = DpaMap()
    assert m.reserve(0, MiB, "a")
    assert not m.reserve(MiB - 1, 2, "b")
    assert m.reserve(MiB, MiB, "b")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(1, 8), st.booleans()), max_size=30))
def test_never_overlaps_and_accounts(ops):
    m = DpaMap()
    size = 256 * MiB
    for name, units, grow in ops:
        if grow:
            m.allocate(0, size, A, name, units * A)
        else:
            m.shrink(name, units * A)
        ex = sorted(m.extents, key=lambda e: e.start)
        for x, y in zip(ex, ex[1:]):
            assert x.end < y.start
        for name2 in "abcd":
            assert len(m.named(name2)) <= 1          # PMEM namespaces stay contiguous
        used = sum(e.size for e in ex)
        assert m.available(0, size, A) == size - used
        assert m.max_contiguous(0, size, A) <= m.available(0, size, A)
