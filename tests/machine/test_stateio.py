"""The data-only state codec (machine/stateio.py): round trips of random
object graphs (shared references, cycles, value-hashed keys), a loader that
never raises anything but StateError on damaged or hostile files, and an
allow-list that refuses classes and functions outside cxlemu's state packages."""

from __future__ import annotations

import collections
import enum
import json
import struct
import math
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cxlemu.machine import stateio
from cxlemu.machine.stateio import StateError

ALLOW = stateio.ALLOWED_PACKAGES + (__name__,)


# ---- classes a test graph is made of -------------------------------------------------------------
class Node:
    def method(self) -> str:
        return "node"

    @classmethod
    def make(cls) -> "Node":
        return cls()


@dataclass(frozen=True)
class Key:
    """Hashed by value: must be complete before a dict or set hashes it."""
    a: int
    b: tuple


class Slotted:
    __slots__ = ("x", "y", "__weakref__")


class Both(Node):
    __slots__ = ("s",)


class Color(enum.Enum):
    RED = 1
    GREEN = "g"


class Bits(enum.IntFlag):
    A = 1
    B = 2


class Cached(Node):
    def __getstate__(self) -> dict:
        d = self.__dict__.copy()
        d.pop("cache", None)
        return d


def module_function(x):
    return x


class Loud:
    """A class whose construction would be visible: the loader never calls __init__."""
    inits = 0

    def __init__(self) -> None:
        Loud.inits += 1


def rt(obj, meta=None):
    data = stateio.dumps(obj, meta, allow=ALLOW)
    back, m = stateio.loads(data, allow=ALLOW)
    return back, m, data


# ---- structural equality with identity -------------------------------------------------------------
def same(a, b) -> None:
    """a and b are the same graph: equal values, the same sharing pattern."""
    pairs: dict[int, object] = {}
    keep = []
    stack = [(a, b, "root")]
    while stack:
        x, y, path = stack.pop()
        assert type(x) is type(y), (path, type(x), type(y))
        if isinstance(x, (list, dict, set, bytearray, Node, Slotted, Cached, np.ndarray, collections.deque)):
            if id(x) in pairs:
                assert pairs[id(x)] is y, f"sharing differs at {path}"
                continue
            pairs[id(x)] = y
            keep.append(x)
        if isinstance(x, float):
            assert (math.isnan(x) and math.isnan(y)) or (x == y and math.copysign(1, x) == math.copysign(1, y)), path
        elif isinstance(x, complex):
            assert repr(x) == repr(y), path
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), path
            assert y.flags.writeable
        elif isinstance(x, (list, tuple, collections.deque)):
            assert len(x) == len(y), path
            stack.extend((p, q, f"{path}[{i}]") for i, (p, q) in enumerate(zip(x, y)))
        elif isinstance(x, dict):
            assert len(x) == len(y), path
            for k, k2 in zip(x, y):
                if isinstance(k, Node):
                    stack.append((k, k2, f"{path}.key"))
                else:
                    assert k == k2 and type(k) is type(k2), path
                stack.append((x[k], y[k2], f"{path}[{k!r}]"))
        elif isinstance(x, (set, frozenset)):
            assert x == y, path
        elif isinstance(x, Slotted):
            for n in ("x", "y"):
                assert hasattr(x, n) == hasattr(y, n), path
                if hasattr(x, n):
                    stack.append((getattr(x, n), getattr(y, n), f"{path}.{n}"))
        elif isinstance(x, (Node, Cached)):
            assert list(vars(x)) == list(vars(y)), path
            stack.extend((v, vars(y)[k], f"{path}.{k}") for k, v in vars(x).items())
            if isinstance(x, Both):
                assert hasattr(x, "s") == hasattr(y, "s")
                if hasattr(x, "s"):
                    stack.append((x.s, y.s, f"{path}.s"))
        elif callable(x) and hasattr(x, "__self__") and not isinstance(x, type):
            assert x.__func__ is y.__func__
            stack.append((x.__self__, y.__self__, f"{path}.__self__"))
        else:
            assert x == y, (path, x, y)


# ---- strategies --------------------------------------------------------------------------------------
hashable = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.binary(max_size=8),
              st.integers(min_value=-(1 << 200), max_value=1 << 200), st.sampled_from(list(Color)),
              st.sampled_from([Bits.A, Bits.B, Bits.A | Bits.B]), st.uuids()),
    lambda ch: st.one_of(st.tuples(ch, ch), st.frozensets(ch, max_size=3),
                         st.builds(Key, st.integers(), st.tuples(ch, st.frozensets(ch, max_size=2)))),
    max_leaves=6)

arrays = st.builds(
    lambda dt, n, seed: np.random.default_rng(seed).integers(0, 255, size=n * np.dtype(dt).itemsize,
                                                             dtype=np.uint8).view(dt).reshape(n),
    st.sampled_from(["<u1", "<u8", "<i4", ">i2", "<f8", "<c16", "?"]), st.integers(0, 20), st.integers(0, 9))

leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(1 << 300), max_value=1 << 300),
                 st.floats(allow_nan=True, allow_infinity=True), st.complex_numbers(allow_nan=False),
                 st.text(max_size=12), st.binary(max_size=40), st.builds(bytearray, st.binary(max_size=40)),
                 st.uuids(), st.sampled_from(list(Color)), st.just(module_function), st.just(Node),
                 st.just(range(3, 30, 4)), st.just(PurePosixPath("/sys/bus/cxl")), arrays,
                 st.sampled_from([np.int64(-5), np.float32(1.5), np.uint16(7)]), hashable)


def containers(ch):
    return st.one_of(st.lists(ch, max_size=4), st.tuples(ch, ch), st.dictionaries(hashable, ch, max_size=4),
                     st.dictionaries(st.text(max_size=6), ch, max_size=4), st.sets(hashable, max_size=4),
                     st.builds(collections.deque, st.lists(ch, max_size=3)),
                     st.builds(collections.OrderedDict, st.dictionaries(st.text(max_size=4), ch, max_size=3)),
                     st.builds(lambda d: collections.defaultdict(list, d),
                               st.dictionaries(st.integers(), ch, max_size=3)),
                     st.builds(collections.Counter, st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)))


values = st.recursive(leaf, containers, max_leaves=12)


@st.composite
def graphs(draw):
    """Objects whose attributes hold random values, then links between them:
    shared containers, cycles, bound methods, objects as identity-hashed keys."""
    n = draw(st.integers(1, 6))
    nodes: list = [draw(st.sampled_from([Node, Cached, Both]))() for _ in range(n)]
    shared = draw(st.lists(st.one_of(st.lists(values, max_size=3), st.dictionaries(st.text(max_size=3), values,
                                                                                   max_size=3)), max_size=3))
    for node in nodes:
        for name in draw(st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True), max_size=4, unique=True)):
            setattr(node, name, draw(values))
        if shared and draw(st.booleans()):
            node.shared = draw(st.sampled_from(shared))
        if draw(st.booleans()):
            node.peer = nodes[draw(st.integers(0, n - 1))]            # cycles, self-references
        if draw(st.booleans()):
            node.callback = nodes[draw(st.integers(0, n - 1))].method  # bound methods
        if draw(st.booleans()):
            node.index = {nodes[draw(st.integers(0, n - 1))]: draw(values)}   # identity-hashed key
        if draw(st.booleans()):
            node.loop = [node, (node,), {"me": node}]
        if isinstance(node, Both) and draw(st.booleans()):
            node.s = draw(values)
    sl = Slotted()
    if draw(st.booleans()):
        sl.x = nodes[0]
    sl.y = draw(values)
    return [nodes, sl, Node.make]


# derandomized: the same examples in every run (a drawn graph can be slow to generate)
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(graphs())
def test_random_graphs_round_trip(g):
    back, _, data = rt(g)
    same(g, back)
    again, _, data2 = rt(back)
    same(g, again)
    assert len(data2) == len(data)      # (set iteration order may differ, so bytes may too)


def test_value_hashed_keys_are_complete_before_hashing():
    k = Key(1, ("x", frozenset({Key(2, ())})))
    inner = Key(3, (k,))
    g = {"d": {k: "v", inner: "w"}, "s": {k, inner}, "fs": frozenset({inner}), "t": (k, inner), "k": k}
    back, _, _ = rt(g)
    assert back["d"][Key(1, ("x", frozenset({Key(2, ())})))] == "v"
    assert Key(3, (k,)) in back["s"] and Key(3, (k,)) in back["fs"]
    assert back["t"][0] is back["k"]
    assert hash(back["k"]) == hash(k)


def test_getstate_is_honoured_and_init_never_runs():
    c = Cached()
    c.value = 3
    c.cache = object()            # transient: would not even be savable
    Loud.inits = 0
    loud = Loud()
    back, _, _ = rt({"c": c, "loud": loud})
    assert vars(back["c"]) == {"value": 3}
    assert isinstance(back["loud"], Loud) and Loud.inits == 1


def test_meta_and_big_values():
    big = 1 << 5000             # beyond int('...') digit limits: stored in hex
    arr = np.arange(1 << 16, dtype=np.uint32).reshape(256, 256)
    back, meta, _ = rt({"big": big, "neg": -big, "arr": arr, "nan": float("nan"), "u": uuid.UUID(int=5)},
                       meta={"state_version": 9, "name": "box"})
    assert back["big"] == big and back["neg"] == -big and np.array_equal(back["arr"], arr)
    assert back["arr"].flags.writeable and math.isnan(back["nan"]) and back["u"].int == 5
    assert meta == {"state_version": 9, "name": "box"}


def test_numpy_generator_state_round_trips():
    g = np.random.default_rng(42)
    g.integers(0, 100, 10)
    back, _, _ = rt({"rng": g})
    assert np.array_equal(back["rng"].integers(0, 1 << 30, 50), g.integers(0, 1 << 30, 50))


def test_file_and_memory_loaders_agree(tmp_path):
    g = {"a": bytearray(b"x" * 100), "b": np.zeros(10, dtype=np.int16), "c": b"bytes"}
    g["again"] = g["a"]
    with open(tmp_path / "s", "wb") as f:
        stateio.write(f, g, {"v": 1}, allow=ALLOW)
    back, meta = stateio.load(tmp_path / "s", allow=ALLOW)
    same(g, back)
    assert stateio.read_meta(tmp_path / "s") == {"v": 1} == meta


def test_deep_graphs_need_no_recursion():
    head: list = []
    cur = head
    for _ in range(200_000):          # a linked list far deeper than the recursion limit
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    back, _, _ = rt(head)
    depth = 0
    while back:
        back = back[0]
        depth += 1
    assert depth == 200_000


# ---- refusals ---------------------------------------------------------------------------------------
def test_unsavable_values_name_the_path():
    n = Node()
    n.fn = lambda: 1
    with pytest.raises(StateError, match=r"lambda|not a module-level.*state\.fn|at state\.fn"):
        stateio.dumps({"n": n}, allow=ALLOW)
    import threading
    n2 = Node()
    n2.lock = threading.Lock()
    with pytest.raises(StateError, match="state.*lock"):
        stateio.dumps(n2, allow=ALLOW)
    with pytest.raises(StateError, match="outside the state allow-list"):
        stateio.dumps(Node())   # this test module is not in the default allow-list


def _hostile(graph: dict) -> bytes:
    graph.setdefault("blobs", [])
    return stateio.assemble({}, graph, [])


@pytest.mark.parametrize("name", [
    "os:system", "builtins:eval", "subprocess:Popen", "cxlemu.machine.store:Store",
    "cxlemu.cli.main:main", "cxlemu.util.fileio:atomic_write",
    "cxlemu.kernel.kernel:os.system",           # reaches os.system through an import
    "cxlemu.hw.platform:Platform.__init__.__globals__",
    "cxlemu.kernel:__builtins__", "cxlemu.kernel.kernel:Kernel.<locals>.x",
])
def test_names_outside_the_allow_list_are_refused(name, tmp_path):
    for graph in ({"classes": [name], "shapes": [], "records": [["F", 0]], "root": [0]},
                  {"classes": [name], "shapes": [[0, [], None]], "records": [[0, []]], "root": [0]}):
        with pytest.raises(StateError, match="refus"):
            stateio.loads(_hostile(graph))


def test_methods_must_be_functions_of_the_class():
    cls = "cxlemu.kernel.resource:Resource"
    base = {"classes": [cls], "shapes": [[0, [], None]]}
    for name in ("__init__x", "__class__", "__dict__", "nope"):
        g = dict(base, records=[[0, []], ["M", [0], name]], root=[1])
        with pytest.raises(StateError):
            stateio.loads(_hostile(g))


def test_slots_outside_the_class_are_refused():
    g = {"classes": ["cxlemu.kernel.resource:Resource"], "shapes": [[0, None, ["__class__"]]],
         "records": [[0, [1]]], "root": [0]}
    with pytest.raises(StateError, match="slot"):
        stateio.loads(_hostile(g))


def test_object_dtype_arrays_are_refused():
    g = {"classes": [], "shapes": [], "records": [["A", "|O", [1], 0]], "root": [0], "blobs": [8]}
    with pytest.raises(StateError):
        stateio.loads(stateio.assemble({}, g, [b"\0" * 8]))


# ---- fuzz: damaged files give a clean StateError, never anything else --------------------------------
def _sample() -> bytes:
    n = Node()
    n.items = [1, "two", (3.0, None), {"k": Key(1, ("z",))}, bytearray(b"abc")]
    n.me = n
    n.arr = np.arange(12, dtype=np.int32)
    n.call = n.method
    return stateio.dumps({"root": n, "set": {Key(2, ())}}, {"state_version": 1}, allow=ALLOW)


SAMPLE = _sample()


def _load_clean(data: bytes) -> None:
    try:
        stateio.loads(data, allow=ALLOW)
    except StateError as e:
        assert str(e) and "\n" not in str(e)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(SAMPLE)))
def test_truncated_files_are_refused(n):
    with pytest.raises(StateError):
        stateio.loads(SAMPLE[:n], allow=ALLOW) if n < len(SAMPLE) else stateio.loads(SAMPLE[:n] + b"x")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(1, 255)), min_size=1, max_size=8,
                unique_by=lambda f: f[0]))
def test_flipped_bytes_are_refused(flips):
    data = bytearray(SAMPLE)
    for pos, x in flips:
        data[pos] ^= x
    with pytest.raises(StateError):
        stateio.loads(bytes(data), allow=ALLOW)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_refused(data):
    with pytest.raises(StateError):
        stateio.loads(data, allow=ALLOW)
    with pytest.raises(StateError):
        stateio.loads(stateio.MAGIC + data, allow=ALLOW)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.floats(),
                                     st.text(max_size=5), st.sampled_from(["L", "T", "d", "D", "S", "FS", "B", "A",
                                                                           "M", "E", "F", "G", "I", "<u8", "|O"])),
                           lambda ch: st.one_of(st.lists(ch, max_size=4), st.dictionaries(st.text(max_size=3), ch,
                                                                                          max_size=3)),
                           max_leaves=10)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            yield from _paths(x, prefix + (i,))
    elif isinstance(obj, dict):
        for k, x in obj.items():
            yield from _paths(x, prefix + (k,))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_structural_nonsense_with_a_valid_digest_is_refused_cleanly(data):
    """The digest is right, the content is not: decoding never raises anything but StateError."""
    meta, graph, blobs = stateio.disassemble(SAMPLE)
    for _ in range(data.draw(st.integers(1, 4))):
        paths = list(_paths(graph))
        path = data.draw(st.sampled_from(paths[1:]))
        parent = graph
        for p in path[:-1]:
            parent = parent[p]
        parent[path[-1]] = data.draw(json_values)
    if data.draw(st.booleans()):
        graph["blobs"] = data.draw(st.lists(st.integers(0, 64), max_size=4))
        blobs = [bytes(n) for n in graph["blobs"]]
    try:
        raw = stateio.assemble(meta, json.loads(json.dumps(graph)), blobs)
    except struct.error:
        assume(False)                 # blob lengths the header cannot even hold: not a file one can write
    _load_clean(raw)


def test_kernel_state_round_trips_and_lists_identically():
    import io

    from cxltest_support import boot
    from cxlemu.tools.runner import run_tool
    b = boot("cxl-test")
    k2, _ = stateio.loads(stateio.dumps(b.kernel))
    from cxlemu.sysfs.backend import EmulatorBackend

    def listing(k):
        out = io.StringIO()
        run_tool("cxl", ["list", "-vvv"], EmulatorBackend(k), stdout=out, stderr=io.StringIO())
        return out.getvalue()
    assert listing(b.kernel) == listing(k2)
    assert stateio.dumps(k2) == stateio.dumps(b.kernel)


# ---- holds(): is this encoding already the file? (an unchanged machine is not rewritten) ---------
def _encoded(g, meta):
    return stateio.encode(g, meta, allow=ALLOW)


def test_holds_compares_graph_blobs_and_meta(tmp_path):
    big = np.arange(5 << 20, dtype=np.uint8)          # more than one comparison chunk
    g = {"a": np.arange(1000, dtype=np.int64), "b": bytearray(b"xy" * 50), "big": big, "s": {"x", "y"}}
    p = tmp_path / "state.bin"
    with open(p, "wb") as f:
        stateio.write(f, g, {"generation": 1, "name": "box"}, allow=ALLOW)
    assert stateio.holds(p, *_encoded(g, {"generation": 1, "name": "box"}))
    assert not stateio.holds(p, *_encoded(g, {"generation": 2, "name": "box"}))
    assert stateio.holds(p, *_encoded(g, {"generation": 2, "name": "box"}), ignore_meta=("generation",))
    assert not stateio.holds(p, *_encoded(g, {"generation": 2, "name": "other"}), ignore_meta=("generation",))
    meta = {"generation": 1, "name": "box"}
    g["big"][-1] ^= 1                                  # one byte of the last chunk of a blob
    assert not stateio.holds(p, *_encoded(g, meta))
    g["big"][-1] ^= 1
    g["a"][0] = 7                                      # one byte of another blob
    assert not stateio.holds(p, *_encoded(g, meta))
    g["a"][0] = 0
    g["s"].add("z")                                    # the graph
    assert not stateio.holds(p, *_encoded(g, meta))
    g["s"].discard("z")
    assert stateio.holds(p, *_encoded(g, meta))
    assert not stateio.holds(tmp_path / "missing", *_encoded(g, meta))
    data = p.read_bytes()
    p.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))   # a damaged digest: the next load would fail
    assert not stateio.holds(p, *_encoded(g, meta))
    with pytest.raises(stateio.StateError):
        stateio.load(p, allow=ALLOW)
    p.write_bytes(data)
    assert stateio.holds(p, *_encoded(g, meta))
    for n in (0, 10, 60, len(data) // 2, len(data) - 40):
        p.write_bytes(data[:n])
        assert not stateio.holds(p, *_encoded(g, meta))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 300))
def test_holds_never_raises_on_damaged_files(tmp_path_factory, junk, cut):
    g = {"a": np.arange(10, dtype=np.int16), "t": "text"}
    p = tmp_path_factory.mktemp("h") / "s"
    good = stateio.dumps(g, {"v": 1}, allow=ALLOW)
    for data in (junk, good[:cut % len(good)] + junk, stateio.MAGIC + junk):
        if data == good:
            continue
        p.write_bytes(data)
        assert stateio.holds(p, *_encoded(g, {"v": 1})) is False


def test_sets_encode_the_same_in_every_process():
    """String hashes differ between processes (PYTHONHASHSEED): a set of strings
    or of tuples of them is encoded sorted, so the same model gives the same bytes
    whichever process saves it."""
    import os
    import subprocess
    import sys
    code = ("import hashlib; from cxlemu.machine import stateio; "
            "g = {'s': {f'ev{i}' for i in range(64)}, 't': {('cxl', f'e{i}') for i in range(64)}, "
            "'f': frozenset(f'k{i}' for i in range(64)), 'i': {(1 << 62) + i * 7 for i in range(64)}}; "
            "print(hashlib.sha256(stateio.dumps(g)).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env=dict(os.environ, PYTHONHASHSEED=seed)).stdout for seed in ("1", "2", "3")}
    assert len(outs) == 1
