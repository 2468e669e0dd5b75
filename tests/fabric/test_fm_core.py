"""The fabric manager's operations (in process): add, release, share,
status, bad input, warnings, reconciliation, and kill -9 at random points."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxlemu.fabric import rack
from cxlemu.fabric.fm.core import FabricManager, FmError, tag_uuid
from cxlemu.kernel.cxl import dcd
from cxlemu.machine.store import Store
from cxlemu.util.fileio import locked

from .rackutil import G, make_rack


@pytest.fixture
def fm():
    make_rack("r", hosts=3, cap="8G")
    return FabricManager("r", host_timeout=0.5)


def dev():
    return rack.appliance_store("r", "pool0").read()


def snapshot(fm):
    return (dev().to_dict(), fm.db.allocations())


def test_add_release_share_status(fm):
    row = fm.add("host0", "2G", "db")
    assert row["dax"] == "dax0.1" and row["bytes"] == 2 * G and row["hpa"] > 0
    st = fm.status("http://x", 1)
    assert st["pool_bytes_total"] == 8 * G and st["pool_bytes_free"] == 6 * G
    assert st["hosts"][0]["allocations"][0]["tag"] == "db"
    rows = fm.share("kv", "1G", ["host1", "host2"])
    assert [r["host"] for r in rows] == ["host1", "host2"] and all(r["shared"] for r in rows)
    assert dev().access_ranges(1) == dev().access_ranges(2)
    fm.release("host0", "db")
    assert fm.status()["pool_bytes_free"] == 7 * G
    ops = [(h["op"], h["result"]) for h in fm.history()]
    assert ("release", "done") in ops and ("add", "done") in ops


@pytest.mark.parametrize("call,status,text", [
    (lambda f: f.add("host0", "9G", "big"), 400, "larger than the pool"),
    (lambda f: f.add("host0", "-1G", "neg"), 400, "invalid size"),
    (lambda f: f.add("host0", "100M", "odd"), 400, "block size"),
    (lambda f: f.add("nohost", "1G", "x"), 404, "no host"),
    (lambda f: f.add("host0", "1G", "bad tag"), 400, "invalid tag"),
    (lambda f: f.add("host0", "1G", "x", policy="best"), 400, "unknown policy"),
    (lambda f: f.release("host1", "db"), 404, "holds no capacity"),
    (lambda f: f.share("kv", "1G", ["host1", "host1"]), 400, "distinct"),
])
def test_bad_requests_change_nothing(fm, call, status, text):
    fm.add("host0", "1G", "db")
    before = snapshot(fm)
    with pytest.raises(FmError) as e:
        call(fm)
    assert e.value.status == status and text in e.value.message
    assert snapshot(fm) == before


def test_tag_exists_and_pool_exhausted(fm):
    fm.add("host0", "6G", "db")
    before = snapshot(fm)
    with pytest.raises(FmError) as e:
        fm.add("host1", "1G", "db")
    assert e.value.status == 409 and "exists" in e.value.message
    with pytest.raises(FmError) as e:
        fm.add("host1", "4G", "more")
    assert e.value.status == 409 and "free pool" in e.value.message
    assert snapshot(fm) == before


def test_host_that_does_not_answer_times_out_and_nothing_changes(fm):
    before = snapshot(fm)
    lock = Store().path("r/host1") / "lock"
    with locked(lock):                        # host1 is busy: it cannot take the interrupt
        t0 = time.monotonic()
        with pytest.raises(FmError) as e:
            fm.add("host1", "1G", "late")
        assert e.value.status == 504 and time.monotonic() - t0 < 5
    assert snapshot(fm) == before or (dev().extents == [] and fm.db.allocations() == [])
    with Store().open("r/host1") as m:        # the withdrawn offer does not surface later
        assert dcd.allocations(m.kernel) == []
    assert dev().free_bytes() == 8 * G


def test_release_refused_while_pages_are_pinned(fm):
    import io
    from cxlemu.tools.runner import run_tool
    fm.add("host0", "1G", "db")
    with Store().open("r/host0") as m:
        assert run_tool("daxctl", ["reconfigure-device", "--mode=system-ram", "--no-movable", "dax0.1"], m.backend(),
                        stdout=io.StringIO(), stderr=io.StringIO(), isatty=False) == 0
        m.kernel.mm.pages.alloc("kernel", (768 << 20) >> 12, nid=1, label="pinned")
        m.kernel.dirty = True
    with pytest.raises(FmError) as e:
        fm.release("host0", "db")
    assert e.value.status == 409 and "refused" in e.value.message
    assert fm.db.allocations()[0]["tag"] == "db"
    assert dev().access_ranges(0) == [(0, G)] and not any(x.releasing for x in dev().extents)


def test_capacity_warnings_reach_http_log_and_hosts(fm):
    fm.add("host0", "6G", "a")             # 25 % free: not below 25 %
    assert fm.status()["warnings"] == []
    fm.add("host1", "1G", "b")             # 12.5 % free: below 25 %
    w = fm.status()["warnings"]
    assert len(w) == 1 and "25%" in w[0]
    with Store().open("r/host2") as m:
        assert any("pool capacity notice" in x for x in m.kernel.dmesg)
    fm.release("host0", "a")
    assert fm.status()["warnings"] == []


def test_scrubbed_before_another_host_gets_it(fm):
    from cxlemu.data.datapath import HpaSpace
    row = fm.add("host0", "1G", "secret")
    with Store().open("r/host0") as m:
        HpaSpace(m.platform, m.media).write(row["hpa"], b"top secret bytes")
    fm.release("host0", "secret")
    row1 = fm.add("host1", "1G", "other", policy="contiguous")
    assert row1["extents"] == [[0, G]]
    with Store().open("r/host1") as m:
        assert HpaSpace(m.platform, m.media).read(row1["hpa"], 16) == bytes(16)


def test_reconcile_rebuilds_the_database_from_the_devices(fm):
    fm.add("host0", "1G", "db")
    with fm.db.tx() as c:
        c.execute("DELETE FROM allocations")
    r = FabricManager("r").reconcile()
    assert r["allocations"] == 1
    assert [a["tag"] for a in fm.db.allocations()] == ["db"]


def invariants(fm_: FabricManager) -> None:
    d = dev()
    assert d.check() == []
    assert all(not e.offered for e in d.extents)                 # no half-done offer survives
    assert all(e.hosts for e in d.extents)                       # owned by a host, or gone to the pool
    for e in d.extents:
        if not e.shared:
            assert len(e.hosts) == 1
    assert sum(e.length for e in d.extents) + d.free_bytes() == d.capacity
    truth = sorted((d.heads[h].host, e.tag, e.length) for e in d.extents for h in e.hosts)
    rows = sorted((a["host"], a["tag_uuid"], x[1]) for a in fm_.db.allocations() for x in a["extents"])
    assert truth == rows
    for i, h in enumerate(d.heads):                              # what each host sees = what it holds
        with Store().open(f"r/{h.host}") as m:
            seen = sorted((e[0], e[1]) for a in dcd.allocations(m.kernel) for e in a["extents"])
        assert seen == sorted((e.dpa, e.length) for e in d.accepted(i))
    for i in range(len(d.heads)):                                # nobody reaches another host's data
        for j in range(i + 1, len(d.heads)):
            a = {(e.dpa, e.length) for e in d.accepted(i) if not e.shared}
            b = {(e.dpa, e.length) for e in d.accepted(j)}
            assert not a & b


def test_kill_minus_9_fm_or_host_mid_operation_100_trials(fm):
    rng = random.Random(11)
    tags = [f"t{i}" for i in range(4)]
    interrupted = 0
    for trial in range(100):
        host = f"host{rng.randrange(3)}"
        tag = rng.choice(tags)
        kind = rng.choice(["add", "release", "host"])
        pid = os.fork()
        if pid == 0:                                  # the FM (or a host) doing its work
            try:
                f = FabricManager("r", host_timeout=0.5)
                if kind == "add":
                    f.add(host, f"{rng.randrange(1, 3)}G", tag)
                elif kind == "release":
                    held = [a for a in f.db.allocations(host)]
                    if held:
                        f.release(host, held[0]["tag"])
                else:
                    with Store().open(f"r/{host}"):
                        pass
            except BaseException:
                pass
            os._exit(0)
        time.sleep(rng.uniform(0.05, 0.25))       # FM start ~0.1 s, an operation 0.04-0.1 s
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        r = FabricManager("r", host_timeout=2.0).reconcile()      # the FM restarts
        interrupted += r["pending"]
        invariants(fm)
    assert interrupted >= 10          # many trials really were killed in the middle of an operation


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.one_of(st.integers(-2**70, 2**70), st.text(max_size=12), st.none(), st.booleans(), st.floats()),
       tag=st.one_of(st.text(max_size=70), st.integers(), st.none()),
       policy=st.one_of(st.sampled_from(["free", "contiguous", "prescriptive"]), st.text(max_size=8)),
       host=st.sampled_from(["host0", "host9", "", "../x"]))
def test_add_inputs_never_traceback(fm, size, tag, policy, host):
    """Whatever an HTTP body carries: an FmError (4xx) or a valid allocation."""
    try:
        row = fm.add(host, size, tag, policy)
    except FmError as e:
        assert 400 <= e.status < 600
    else:
        fm.release(host, row["tag"])
    assert dev().check() == []


def test_database_holds_devices_and_extents(fm):
    fm.add("host0", "1G", "db")
    rows = fm.db.query("SELECT * FROM devices")
    assert len(rows) == 1 and rows[0]["name"] == "pool0" and rows[0]["free"] == 7 * G
    exts = __import__("json").loads(rows[0]["extents"])
    assert [(e[1], e[2], e[6]) for e in exts] == [(0, G, [0])]
