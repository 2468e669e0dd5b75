"""Workload generators, their parameters, the Zipf sampler, the workload
file format and the trace format (fuzzed: clean errors, never a traceback)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxlemu.userspace import trace as tr
from cxlemu.userspace import workloads as W
from cxlemu.userspace.spec import SpecError, loads, parse_nodes
from cxlemu.userspace.workloads.base import PAGE_SHIFT, WorkloadError, parse_count, parse_duration, parse_size
from cxlemu.userspace.zipf import ZipfSampler, scramble, zeta

POLICIES = ["default", "numa-balancing", "tiering", "demotion", "tpp", "interleave", "current"]

TRACE = Path(__file__).resolve().parents[1] / "data" / "traces" / "sort.trace"


class FakeProc:
    """The system calls a generator uses, recorded."""

    def __init__(self):
        self.maps = []
        self.next = 0x7F00_0000_0000

    def mmap(self, size, name, kind="anon", compress_ratio=3.0):
        addr = self.next
        self.maps.append((name, addr, size))
        self.next += (size + 4095) // 4096 * 4096 + 4096
        return addr

    def munmap(self, addr, length=None):
        self.maps = [m for m in self.maps if m[1] != addr]

    def inside(self, vpages):
        ok = np.zeros(vpages.size, np.bool_)
        for _, addr, size in self.maps:
            lo = addr >> PAGE_SHIFT
            ok |= (vpages >= lo) & (vpages < lo + (size + 4095) // 4096)
        return ok


SMALL = {"gups": dict(rss="64M", hot="8M"), "kv": dict(keys="100K"), "seqscan": dict(rss="16M"),
         "uniform": dict(rss="16M"), "hotcold": dict(hot="4M", cold="8M"), "chase": dict(rss="8M"),
         "stream": dict(rss="24M"), "phases": dict(rss="32M", hot="4M"), "graph": dict(vertices="20K"),
         "alloc": dict(rss="64M", chunk="16M"), "trace": dict(file=str(TRACE))}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_generator_stays_inside_its_vmas(name):
    wl = W.make(name, **SMALL[name])
    proc = FakeProc()
    wl.setup(proc)
    assert proc.maps and all(m[0] for m in proc.maps)             # named VMAs
    rng = np.random.default_rng(1)
    for t in range(6):
        wl.tick(proc, t * 1_000_000_000)
        b = wl.batch(4096, rng)
        assert b.vpages.dtype == np.int64
        assert proc.inside(b.vpages).all(), name
        if b.writes is not None:
            assert b.writes.size == b.vpages.size
        if b.counts is not None:
            assert b.counts.size == b.vpages.size and (b.counts >= 1).all()


def test_generators_are_deterministic_for_a_seed():
    for name in ("gups", "kv", "graph", "phases"):
        a, c = W.make(name, **SMALL[name]), W.make(name, **SMALL[name])
        pa_, pc = FakeProc(), FakeProc()
        a.setup(pa_)
        c.setup(pc)
        ra, rc = np.random.default_rng(7), np.random.default_rng(7)
        assert np.array_equal(a.batch(1000, ra).vpages, c.batch(1000, rc).vpages)


def test_parameter_errors_name_the_parameter():
    with pytest.raises(WorkloadError) as e:
        W.make("gups", rss="lots")
    assert e.value.field == "rss" and "not a size" in e.value.reason
    with pytest.raises(WorkloadError) as e:
        W.make("gups", colour="red")
    assert e.value.field == "colour"
    with pytest.raises(WorkloadError) as e:
        W.make("kv", alpha=1.0)
    assert e.value.field == "alpha"
    with pytest.raises(WorkloadError) as e:
        W.make("gups", rss="1G", hot="2G")
    assert e.value.field == "hot"
    with pytest.raises(WorkloadError) as e:
        W.make("nope")
    assert e.value.field == "workload"
    with pytest.raises(WorkloadError):
        W.make("trace", file="/nonexistent")


def test_units():
    assert parse_size("4G") == 4 << 30 and parse_size("512k") == 512 << 10 and parse_size(4096) == 4096
    assert parse_count("50M") == 50_000_000 and parse_count("2k") == 2000
    assert parse_duration("500ms") == 500_000_000 and parse_duration("2") == 2_000_000_000
    assert parse_duration("1m") == 60_000_000_000
    for bad in ("-1", "1x", "", "G"):
        with pytest.raises(ValueError):
            parse_size(bad)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_unit_parsers_never_crash(s):
    for fn in (parse_size, parse_count, parse_duration):
        try:
            v = fn(s)
        except ValueError:
            continue
        assert v >= 0


def test_zipf_sampler_matches_the_distribution():
    z = ZipfSampler(1000, 0.99)
    assert z.zetan == pytest.approx(sum(1 / i ** 0.99 for i in range(1, 1001)))
    s = z.sample(400_000, np.random.default_rng(1))
    assert s.min() >= 0 and s.max() < 1000
    freq = np.bincount(s, minlength=1000) / s.size
    assert freq[0] == pytest.approx(1 / z.zetan, rel=0.05)
    assert freq[:10].sum() == pytest.approx(z.top_mass(10), rel=0.05)
    big = ZipfSampler(10 ** 9, 0.99)                  # the Euler-Maclaurin tail
    assert big.zetan == pytest.approx(zeta(10 ** 9, 0.99), rel=1e-9)
    assert ZipfSampler(100, 1.5).sample(1000, np.random.default_rng(2)).max() < 100


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 10 ** 6))
def test_scramble_is_a_bijection(n):
    r = np.arange(min(n, 5000))
    s = scramble(r, n)
    assert s.min() >= 0 and s.max() < n
    assert np.unique(s).size == r.size


def test_node_lists():
    assert parse_nodes("0,2-3") == (0, 2, 3)
    assert parse_nodes(1) == (1,)
    assert parse_nodes("all", [0, 1]) == (0, 1)
    for bad in ("", "a", "3-1", "-1", True):
        with pytest.raises(ValueError):
            parse_nodes(bad)


GOOD_SPEC = """
[run]
duration = "2s"
seed = 4
policy = "tpp"

[[process]]
workload = "kv"
name = "db"
threads = 2
membind = "0-1"
static_nodes = true
[process.params]
keys = "10K"
[[process.mbind]]
vma = "kv-values"
policy = "interleave"
nodes = "0,1"
move = true

[[process]]
workload = "gups"
start = "1s"
stop = "1.5s"
cpunodebind = "0"
[process.params]
rss = "16M"
"""


def test_spec_parses():
    s = loads(GOOD_SPEC, [0, 1], POLICIES)
    assert s.run.duration == 2_000_000_000 and s.run.seed == 4 and s.run.policy == "tpp"
    db, g = s.processes
    assert db.name == "db" and db.threads == 2 and db.policy == (2 | (1 << 15), (0, 1))
    assert db.mbind == (("kv-values", 3, (0, 1), 2),)
    assert g.start_ns == 1_000_000_000 and g.stop_ns == 1_500_000_000 and g.cpunodebind == (0,)


@pytest.mark.parametrize("text,field", [
    ("[[process]]\n", "process[0].workload"),
    ("[[process]]\nworkload = 'kv'\ncolour = 1\n", "process[0].colour"),
    ("[[process]]\nworkload = 'kvv'\n", "process[0].workload"),
    ("[[process]]\nworkload = 'kv'\n[process.params]\nalpha = 1.0\n", "process[0].params.alpha"),
    ("[[process]]\nworkload = 'kv'\nmembind = 'x'\n", "process[0].membind"),
    ("[[process]]\nworkload = 'kv'\nmembind = '0'\ninterleave = '1'\n", "process[0].interleave"),
    ("[[process]]\nworkload = 'kv'\nstart = '2s'\nstop = '1s'\n", "process[0].stop"),
    ("[run]\nduration = 'soon'\n[[process]]\nworkload = 'kv'\n", "run.duration"),
    ("[run]\npolicy = 'magic'\n[[process]]\nworkload = 'kv'\n", "run.policy"),
    ("[run]\nduration='1s'\naccesses='1M'\n[[process]]\nworkload = 'kv'\n", "run"),
    ("[[process]]\nworkload = 'kv'\n[[process.mbind]]\npolicy = 'bind'\n", "process[0].mbind[0].vma"),
    ("x = 1\n", "x"),
    ("[[process\n", "<toml>"),
])
def test_spec_errors_name_the_field(text, field):
    with pytest.raises(SpecError) as e:
        loads(text, [0, 1], POLICIES)
    assert e.value.field == field


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.one_of(st.integers(-5, 10 ** 12), st.floats(allow_nan=True), st.text(max_size=8),
                              st.booleans()),
                    lambda ch: st.one_of(st.lists(ch, max_size=3),
                                         st.dictionaries(st.sampled_from(
                                             ["run", "process", "workload", "params", "keys", "rss", "alpha",
                                              "membind", "threads", "start", "stop", "mbind", "vma", "nodes",
                                              "duration", "policy", "seed", "name", "move", "hot"]), ch,
                                             max_size=4)), max_leaves=12))
def test_spec_never_a_traceback(doc):
    from cxlemu.userspace.spec import from_dict
    if not isinstance(doc, dict):
        doc = {"process": doc}
    try:
        from_dict(doc, [0, 1])
    except SpecError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_spec_text_never_a_traceback(text):
    try:
        loads(text, [0, 1], POLICIES)
    except SpecError:
        pass


# ---- traces ---------------------------------------------------------------------------------
def test_recorded_trace_in_the_repository():
    t = tr.load(str(TRACE))
    assert t.command.startswith("sort")
    assert t.accesses == 1942057 and t.instructions == 5308070
    assert t.pages.size == t.instr.size == t.kinds.size == t.counts.size
    assert np.all(np.diff(t.instr.astype(np.int64)) >= 0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1 << 36), st.integers(0, 1), st.integers(1, 1000)), max_size=50))
def test_trace_roundtrip(recs):
    pages = np.array([r[0] for r in recs], np.int64)
    t = tr.Trace(pages, np.arange(len(recs), dtype=np.uint64) * 4096, np.array([r[1] for r in recs], np.uint8),
                 np.array([r[2] for r in recs], np.uint32), len(recs) * 4096, "x")
    u = tr.loads(tr.dumps(t))
    assert np.array_equal(u.pages, t.pages) and np.array_equal(u.counts, t.counts)
    assert np.array_equal(u.kinds, t.kinds) and np.array_equal(u.instr, t.instr)


def test_bad_traces_get_clear_errors():
    data = TRACE.read_bytes()
    cases = {b"": "bad magic", b"#!/bin/sh\necho hi\n": "bad magic", data[:20]: "truncated",
             data[:-3]: "truncated", data[:200]: "truncated", data + b"x": "trailing"}
    flipped = bytearray(data)
    flipped[60] ^= 0xFF
    cases[bytes(flipped)] = "corrupt"
    newer = bytearray(data)
    newer[8:10] = struct.pack("<H", 9)
    cases[bytes(newer)] = "unsupported trace version 9"
    for blob, msg in cases.items():
        with pytest.raises(tr.TraceError) as e:
            tr.loads(blob)
        assert msg in str(e.value), (msg, str(e.value))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_trace_loader_never_a_traceback(blob):
    for b in (blob, tr.MAGIC + blob):
        try:
            tr.loads(b)
        except tr.TraceError:
            pass


def test_collector_folds_lackey_output():
    c = tr.Collector()
    text = (b"I  04018d23,3\n L 1ffefffcb8,8\n L 1ffefffcb0,8\nI  04018d26,2\n S 1ffefffcb0,8\n"
            b" M 0421c9e0,4\n")
    c.feed(text[:30])
    c.feed(text[30:])
    t = c.finish("x")
    assert t.accesses == 4 and t.instructions == 2
    by = {(int(p), int(k)): int(n) for p, k, n in zip(t.pages, t.kinds, t.counts)}
    assert by == {(0x1ffefffcb8 >> 12, 0): 2, (0x1ffefffcb0 >> 12, 1): 1, (0x0421c9e0 >> 12, 1): 1}
