"""The multi-headed DCD appliance: FM API add/release, responses, events with
the More chain, selection policies, sharing, access control, sanitize."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.hw import dcd
from cxlemu.hw.mailbox import dcd_payloads as D
from cxlemu.hw.mailbox.opcodes import Opcode, ReturnCode

G = 1 << 30
M256 = 256 << 20


def app(cap=16 * G, heads=3):
    return dcd.DcdAppliance.create("pool0", 1, cap, [(f"h{i}", "hb0:0") for i in range(heads)])


def tag(name="t"):
    return uuid.uuid5(uuid.NAMESPACE_DNS, name)


def accept_all(a, head):
    recs = a.get_event_records(head)
    return a.add_response(head, D.DcExtentListUpdate(tuple((r.extent.start_dpa, r.extent.length) for r in recs
                                                           if r.event_type == D.DcEventType.ADD_CAPACITY)))


def test_free_policy_offers_chained_records_and_accepting_grants_access():
    a = app()
    b = tag("b")
    a.initiate_add(D.FmInitiateDcAdd(0, D.SelectionPolicy.CONTIGUOUS, 0, G, tag("a").bytes))
    accept_all(a, 0)
    a.clear_event_records(0, [1])
    a.initiate_add(D.FmInitiateDcAdd(1, 0, 0, 2 * G, tag("x").bytes))
    accept_all(a, 1)
    # free the first 1G so that a free-policy 3G add needs two extents
    a.initiate_release(D.FmInitiateDcRelease(0, 0, 0, G, tag("a").bytes))
    a.release(0, D.DcExtentListUpdate(((0, G),)))
    exts = a.initiate_add(D.FmInitiateDcAdd(2, D.SelectionPolicy.FREE, 0, 3 * G, b.bytes))
    assert [(e.dpa, e.length) for e in exts] == [(0, G), (3 * G, 2 * G)]
    recs = a.get_event_records(2)
    assert [r.more for r in recs] == [True, False]                 # the More chain
    assert [r.extent.shared_seq for r in recs] == [0, 1]
    assert a.access_ranges(2) == []                                 # offered is not accessible
    accept_all(a, 2)
    assert a.access_ranges(2) == [(0, G), (3 * G, 5 * G)]
    assert a.free_bytes() == 16 * G - 5 * G
    assert a.check() == []


def test_partial_accept_returns_the_rest_to_the_pool_and_scrubs():
    a = app()
    exts = a.initiate_add(D.FmInitiateDcAdd(0, D.SelectionPolicy.PRESCRIPTIVE, 0, 2 * G, tag().bytes,
                                            (D.DcExtent(0, G), D.DcExtent(4 * G, G))))
    assert len(exts) == 2
    a.add_response(0, D.DcExtentListUpdate(((4 * G, G),)))          # the host accepts one
    assert a.access_ranges(0) == [(4 * G, 5 * G)]
    assert a.scrub_queue == [[0, G]]                                 # sanitize before reuse
    assert a.free_bytes() == 15 * G


def test_refusals():
    a = app()
    with pytest.raises(dcd.DcdError) as e:
        a.initiate_add(D.FmInitiateDcAdd(0, 0, 0, 17 * G, tag().bytes))
    assert e.value.rc == ReturnCode.RESOURCES_EXHAUSTED
    with pytest.raises(dcd.DcdError):
        a.initiate_add(D.FmInitiateDcAdd(0, 0, 0, G + 4096, tag().bytes))       # not block aligned
    with pytest.raises(dcd.DcdError):
        a.initiate_add(D.FmInitiateDcAdd(7, 0, 0, G, tag().bytes))              # no such head
    a.initiate_add(D.FmInitiateDcAdd(0, 0, 0, G, tag().bytes))
    with pytest.raises(dcd.DcdError):
        a.initiate_add(D.FmInitiateDcAdd(1, 0, 0, G, tag().bytes))              # tag in use
    with pytest.raises(dcd.DcdError) as e:                                       # never offered
        a.add_response(0, D.DcExtentListUpdate(((8 * G, G),)))
    assert e.value.rc == ReturnCode.INVALID_EXTENT_LIST
    with pytest.raises(dcd.DcdError):                                            # never accepted
        a.release(1, D.DcExtentListUpdate(((0, G),)))
    with pytest.raises(dcd.DcdError):
        a.initiate_release(D.FmInitiateDcRelease(1, 0, 0, G, tag().bytes))


def test_shared_extents_and_enable_shared_access():
    a = app()
    t = tag("kv")
    a.initiate_add(D.FmInitiateDcAdd(0, 0, 0, 2 * G, t.bytes), shared=True)
    accept_all(a, 0)
    a.initiate_add(D.FmInitiateDcAdd(1, D.SelectionPolicy.ENABLE_SHARED_ACCESS, 0, 2 * G, t.bytes), shared=True)
    accept_all(a, 1)
    assert a.access_ranges(0) == a.access_ranges(1) == [(0, 2 * G)]
    assert a.access_ranges(2) == []
    a.release(0, D.DcExtentListUpdate(((0, 2 * G),)))
    assert a.access_ranges(1) == [(0, 2 * G)] and a.scrub_queue == []         # still held by head 1
    a.release(1, D.DcExtentListUpdate(((0, 2 * G),)))
    assert a.scrub_queue == [[0, 2 * G]] and a.free_bytes() == 16 * G


def test_forced_release_revokes_at_once():
    a = app()
    a.initiate_add(D.FmInitiateDcAdd(0, 0, 0, G, tag().bytes))
    accept_all(a, 0)
    a.clear_event_records(0, [r.handle for r in a.get_event_records(0)])
    a.initiate_release(D.FmInitiateDcRelease(0, D.RELEASE_FORCED, 0, G, tag().bytes))
    assert a.access_ranges(0) == []
    assert [r.event_type for r in a.get_event_records(0)] == [D.DcEventType.FORCED_CAPACITY_RELEASE]


def test_mailbox_handler_and_event_log():
    a = app()
    a.initiate_add(D.FmInitiateDcAdd(0, 0, 0, G, tag().bytes))
    rc, out = dcd.handle(a, 0, Opcode.GET_EVENT_RECORDS, D.GetEventRecordsInput(D.EVENT_LOG_DCD).encode())
    recs = D.GetEventRecordsOutput.decode(out).records
    assert rc == 0 and len(recs) == 1
    rc, _ = dcd.handle(a, 0, Opcode.CLEAR_EVENT_RECORDS, D.ClearEventRecordsInput(4, (999,)).encode())
    assert rc == ReturnCode.INVALID_HANDLE
    rc, _ = dcd.handle(a, 0, Opcode.ADD_DC_RESPONSE, D.DcExtentListUpdate(((0, G),)).encode())
    assert rc == 0
    rc, out = dcd.handle(a, 0, Opcode.GET_DC_EXTENT_LIST, D.GetDcExtentListInput(10, 0).encode())
    lst = D.GetDcExtentListOutput.decode(out)
    assert lst.total == 1 and lst.extents[0].length == G and lst.generation == 1
    rc, out = dcd.handle(a, 0, Opcode.GET_DC_CONFIG, D.GetDcConfigInput(8, 0).encode())
    cfg = D.GetDcConfigOutput.decode(out)
    assert cfg.total_regions == 1 and cfg.regions[0].length == 16 * G and cfg.regions[0].block_size == M256
    assert dcd.handle(a, 0, Opcode.ADD_DC_RESPONSE, b"\x01")[0] == ReturnCode.INVALID_PAYLOAD_LENGTH


def test_json_round_trip_and_access_mask():
    a = app()
    a.initiate_add(D.FmInitiateDcAdd(0, 0, 0, G, tag().bytes))
    accept_all(a, 0)
    b = dcd.DcdAppliance.from_dict(json.loads(json.dumps(a.to_dict())))
    assert b == a
    m = dcd.access_mask(a.access_ranges(0), np.array([0, G - 64, G - 32, G, 5 * G]), 64)
    assert m.tolist() == [True, True, False, False, False]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "share", "accept", "reject", "release", "force"]),
                          st.integers(0, 2), st.integers(1, 6), st.integers(0, 5)), max_size=40))
def test_random_operations_keep_the_invariants(ops):
    """Whatever the order: no overlap, every byte owned by hosts or the pool,
    non-shared capacity held by at most one head."""
    a = app(cap=8 * G)
    for op, head, blocks, t in ops:
        tg = tag(f"t{t}")
        try:
            if op in ("add", "share"):
                a.initiate_add(D.FmInitiateDcAdd(head, 0, 0, blocks * M256, tg.bytes), shared=op == "share")
            elif op == "accept" and a.heads[head].offers:
                accept_all(a, head)
                a.heads[head].events.clear()
            elif op == "reject" and a.heads[head].offers:
                a.add_response(head, D.DcExtentListUpdate(()))
                a.heads[head].events.clear()
            elif op == "release":
                held = [e for e in a.accepted(head) if e.tag == str(tg)]
                if held:
                    a.release(head, D.DcExtentListUpdate(tuple((e.dpa, e.length) for e in held)))
            elif op == "force":
                a.initiate_release(D.FmInitiateDcRelease(head, D.RELEASE_FORCED, 0, 0, tg.bytes))
        except dcd.DcdError:
            pass
        assert a.check() == []
        used = sum(e.length for e in a.extents)
        assert used + a.free_bytes() == a.capacity
        for e in a.extents:
            assert e.hosts or e.offered
            if not e.shared:
                assert len(set(e.hosts) | set(e.offered)) <= 1
