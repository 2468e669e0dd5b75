"""The indexes and caches that make boot and listing linear, and their
invalidation when devices come and go."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
from hypothesis import given, settings, strategies as st

from cxlemu.kernel.base.device import Ida, PlainDir, device_add, device_del
from cxlemu.sysfs import backend as backend_mod
from cxlemu.sysfs.vfs import DeviceDir, DriverDir, GroupDir, VDir, VLink
from cxlemu.tools.libcxl.device import IdList, same_id
from cxltest_support import boot, create_region, cxl, cxl_json, r, w

D = "/sys/bus/cxl/devices/"


# ---- Ida ------------------------------------------------------------------------------------------

class _NaiveIda:
    def __init__(self):
        self.used: set[int] = set()

    def alloc(self, start=0):
        i = start
        while i in self.used:
            i += 1
        self.used.add(i)
        return i

    def free(self, i):
        self.used.discard(i)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alloc", "free"]), st.integers(0, 12)), max_size=60))
def test_ida_matches_lowest_free_semantics(ops):
    fast, naive = Ida(), _NaiveIda()
    for op, n in ops:
        if op == "alloc":
            assert fast.alloc(n % 4) == naive.alloc(n % 4)
        else:
            fast.free(n)
            naive.free(n)
    assert fast.used == naive.used


def test_ida_without_low_field_still_works():
    """A state saved before ``low`` existed: the class default applies."""
    ida = Ida()
    del ida.__dict__["low"]
    ida.used = {0, 1, 2}
    assert ida.alloc() == 3


# ---- libcxl duplicate checks ------------------------------------------------------------------

class _Obj:
    def __init__(self, i):
        self.id = i


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), max_size=30))
def test_idlist_same_id_matches_list_semantics(items):
    fast, slow = IdList(), []
    objs = {}
    for ident, pos in items:
        new = objs.setdefault((ident, pos), _Obj(ident))
        a, b = same_id(fast, new), same_id(slow, new)
        assert a is b
        if not fast.has(a):
            fast.insert(min(pos, len(fast)), a)
            slow.insert(min(pos, len(slow)), a)
        assert list(fast) == slow
    fast[:] = [o for o in fast if o.id != 0]
    slow[:] = [o for o in slow if o.id != 0]
    probe = _Obj(0)
    assert same_id(fast, probe) is probe is same_id(slow, probe)


# ---- VFS: single-entry lookups agree with the listings ------------------------------------------

@pytest.mark.parametrize("preset", ["cxl-test", "biscuitos-c"])
def test_lookup_agrees_with_entries_everywhere(preset):
    b = boot(preset)
    if preset == "cxl-test":
        create_region(b, "decoder0.1", ["mem0", "mem1"], mode="ram")
    stack = [b.vfs.resolve("/sys")]
    seen = 0
    while stack:
        node = stack.pop()
        ents = node.entries()
        for name, child in ents.items():
            got = node.lookup(name)
            assert type(got) is type(child), (node, name)
            if isinstance(child, VLink):
                assert got.target == child.target
            if isinstance(child, (DeviceDir, GroupDir)):
                assert got.dev is child.dev
            if isinstance(child, DeviceDir | GroupDir | DriverDir):
                stack.append(child)
            seen += 1
        assert node.lookup("no-such-entry") is None
    assert seen > 1000


# ---- VFS: the device-directory cache --------------------------------------------------------------

def test_dir_cache_follows_devices_that_go_and_come_back_elsewhere():
    b = boot("cxl-test")
    vfs = b.vfs
    k = b.kernel
    a, c = PlainDir("alpha", k.root), PlainDir("gamma", k.root)
    device_add(a)
    device_add(c)
    d = PlainDir("dev0", a)
    device_add(d)
    assert vfs.isdir("/sys/devices/alpha/dev0")
    assert vfs.read("/sys/devices/alpha/dev0/uevent") == b""
    assert "/sys/devices/alpha/dev0" in vfs._dirs          # cached
    device_del(d)
    with pytest.raises(OSError) as e:
        vfs.read("/sys/devices/alpha/dev0/uevent")
    assert e.value.errno == errno.ENOENT
    d.parent = c                                          # re-registered below another parent
    device_add(d)
    assert not vfs.exists("/sys/devices/alpha/dev0/uevent")
    assert vfs.exists("/sys/devices/gamma/dev0/uevent")
    d2 = PlainDir("dev0", a)                              # a new device at the old path
    device_add(d2)
    assert vfs.resolve("/sys/devices/alpha/dev0").dev is d2


def test_region_deleted_and_recreated_through_one_backend():
    b = boot("cxl-test")
    name = r(b, "decoder0.1/create_ram_region")
    w(b, "decoder0.1/create_ram_region", name)
    path = b.realpath(D + name)
    w(b, f"{path}/interleave_ways", "2\n")
    assert r(b, f"{path}/interleave_ways") == "2"          # the region directory is cached now
    w(b, "decoder0.1/delete_region", name)
    assert not b.exists(f"{path}/interleave_ways")
    assert not b.exists(D + name)
    name2 = r(b, "decoder0.1/create_ram_region")
    w(b, "decoder0.1/create_ram_region", name2)
    path2 = b.realpath(D + name2)
    assert r(b, f"{path2}/interleave_ways") in ("0", "1")   # a fresh region, not the cached one
    assert b.vfs.resolve(path2).dev is b.kernel.cxl.find(name2)


def test_endpoint_index_after_disable_and_enable_memdev():
    b = boot("cxl-test")
    core = b.kernel.cxl
    md = next(m for m in core.memdevs if m.name == "mem0")
    ep = md.endpoint
    assert core.port_by_uport(md) is ep
    assert cxl(b, "disable-memdev", "mem0", "--force")[0] == 0
    assert core.port_by_uport(md) is None
    assert not b.exists(f"{D}{ep.name}")
    assert cxl(b, "enable-memdev", "mem0")[0] == 0
    assert md.endpoint is not None and core.port_by_uport(md) is md.endpoint
    names = {e["endpoint"] for e in cxl_json(b, "list", "-E")}
    assert md.endpoint.name in names


def test_uport_index_is_rebuilt_after_a_reload():
    import pickle
    b = boot("biscuitos-b")
    k = pickle.loads(pickle.dumps(b.kernel))
    assert "_uport_idx" not in k.cxl.__dict__
    md = k.cxl.memdevs[0]
    assert k.cxl.port_by_uport(md) is md.endpoint
    assert "_upstream" not in k.platform.__dict__
    assert k.platform.upstream_port_of(md.hw).child is md.hw


# ---- /dev index -------------------------------------------------------------------------------------

def test_dev_index_follows_char_devices():
    b = boot("cxl-test")
    k = b.kernel
    create_region(b, "decoder0.1", ["mem0", "mem1"], mode="ram")
    assert b.chardev("/dev/cxl/mem0") is not None and b.isdir("/dev/cxl")
    assert b.chardev("/dev/cxl/mem99") is None and not b.exists("/dev/test")
    d = PlainDir("x0", k.root)
    d.devt, d.devnode = (63, 7), "test/x0"
    k.register_chrdev(d)
    device_add(d)
    assert b.isdir("/dev/test") and b.chardev("/dev/test/x0") == (63, 7)
    assert "x0" in b.listdir("/dev/test")
    device_del(d)                                   # unregistered, still in the list
    assert b.chardev("/dev/test/x0") is None and not b.exists("/dev/test")
    e = PlainDir("x1", k.root)                      # another device takes the node
    e.devt, e.devnode = (63, 8), "test/x0"
    k.register_chrdev(e)
    device_add(e)
    assert b.chardev("/dev/test/x0") == (63, 8)
    k.chrdevs.remove(e)                             # dropped from the list (dax device removal)
    device_del(e)
    assert not b.exists("/dev/test/x0")


# ---- render --------------------------------------------------------------------------------------

class _PathOnly:
    """The backend API without the VFS fast path (modes through vfs.mode)."""

    def __init__(self, b):
        self._b = b
        self.vfs = type("ModeOnly", (), {"mode": staticmethod(b.vfs.mode), "is_stream": staticmethod(b.vfs.is_stream)})()

    def __getattr__(self, name):
        return getattr(self._b, name)


def _snapshot(root: str) -> dict:
    out = {}
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = os.path.join(dp, n)
            rel = p[len(root):]
            if os.path.islink(p):
                out[rel] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("d",)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("f", os.lstat(p).st_mode & 0o777, f.read())
    return out


def test_render_fast_path_equals_the_path_walk(tmp_path):
    b = boot("cxl-test")
    create_region(b, "decoder0.1", ["mem0", "mem1"], mode="ram")
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    fast.mkdir()
    slow.mkdir()
    n1 = backend_mod.render(b, str(fast))
    n2 = backend_mod.render(_PathOnly(b), str(slow))
    assert n1 == n2 > 1000
    assert _snapshot(str(fast)) == _snapshot(str(slow))
    shutil.rmtree(tmp_path)


# ---- DirectoryBackend.realpath --------------------------------------------------------------------

def test_directory_realpath_matches_os_realpath(tmp_path):
    from cxlemu.sysfs.backend import _realpath
    (tmp_path / "a" / "b").mkdir(parents=True)
    os.symlink("a/b", tmp_path / "l")
    os.symlink("zz/q", tmp_path / "dangling")
    os.symlink("../l", tmp_path / "a" / "up")
    for rel in ["l", "l/x", "l/x/y", "l/..", "l/x/../..", "nolink/../l", "l/", "dangling", "dangling/x",
                "l/x/..", "a/up", "a/up/x", "a/b/../up", ".", "a//b"]:
        p = str(tmp_path / rel) if rel != "a//b" else f"{tmp_path}/a//b"
        assert _realpath(p) == os.path.realpath(p), rel
        strict = os.path.realpath(p, strict=True) if os.path.exists(p) else None
        assert _realpath(p, strict=True) == strict, rel       # realpath(3): every component exists
