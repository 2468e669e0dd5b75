"""The machine state file: a data-only codec for an object graph.

Loading a state file never executes code from it.  The file holds data only:
JSON that names classes and attributes, and raw binary blobs.  Objects are
instances of classes from an allow-list of ``cxlemu`` packages, rebuilt with
``object.__new__(cls)`` and their ``__dict__``/slots -- never ``__init__``,
``__setstate__`` or ``__reduce__``.  A class or function outside the
allow-list (``os:system``, anything in ``cxlemu.machine`` or ``cxlemu.cli``,
a lambda or nested function) is refused, on save and on load.

File layout (all integers little endian)::

    0   8  magic  b"CXLEMU\\0S"
    8   4  format version (FORMAT)
    12  4  flags (0)
    16  8  M = length of the meta JSON   (caller's metadata: versions, name ...)
    24  8  G = length of the graph JSON  (classes, blob lengths, records, root)
    32  8  B = total length of the blobs
    40  M  meta JSON (UTF-8)
        G  graph JSON (UTF-8)
        B  blobs: bytes, bytearrays, numpy arrays (raw, C order), one after another
        32 BLAKE2b-256 of everything before it

A truncated, corrupted or random file fails the length or digest check and
raises :class:`StateError`; so does any structural nonsense in a file whose
digest matches.  Nothing is allocated from sizes the file claims before the
lengths have been checked against the file's actual size.

The graph: every value is either a JSON scalar (str, bool, null, float --
including NaN and Infinity -- and int within +-2**63) or a reference ``[i]``
to record ``i``.  A record is a JSON list: ``[c, {attr: value}]`` (or
``[c, {attr: value} | null, {slot: value}]``) for an instance of class
``classes[c]``, or ``[TAG, ...]`` for the builtin kinds below.  Shared
references and cycles are preserved (every container is one record, referred
to by index).  Encoding and decoding are iterative: a deep device graph needs
no recursion limit.

Decoding order respects hashing: objects are filled before the dicts and sets
that hash them (a frozen dataclass used as a key hashes its fields), tuples
and frozensets are built after what they contain.

Supported (see ``_record``): instances with ``__dict__`` and/or ``__slots__``
(``__getstate__`` is honoured on save when a class defines it, and must
return a dict); list, tuple, dict with any hashable keys, set, frozenset,
bytes, bytearray, int of any size, float, complex, str, bool, None, enums,
``uuid.UUID``, ``range``, ``pathlib`` paths, ``collections`` deque,
OrderedDict, defaultdict and Counter, numpy arrays and scalars of non-object
dtypes, numpy dtypes, numpy ``Generator`` (its bit generator's state), bound
methods of encoded objects (object + method name, which must be a function on
the class), and functions/classes by qualified name in the allow-list.
"""

from __future__ import annotations

import collections
import enum
import gc
import importlib
import json
import os
import re
import struct
import sys
import types
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath, PosixPath, WindowsPath
from typing import Any, BinaryIO, Iterable

try:        # hashlib.blake2b is this very type; importing hashlib also loads OpenSSL (_hashlib)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without _blake2
    from hashlib import blake2b

MAGIC = b"CXLEMU\x00S"
FORMAT = 1
_FIXED = struct.Struct("<8sIIQQQ")
DIGEST_SIZE = 32

#: Packages whose classes and functions may appear in a state file.
ALLOWED_PACKAGES: tuple[str, ...] = (
    "cxlemu.hw", "cxlemu.kernel", "cxlemu.topology", "cxlemu.util", "cxlemu.data",
    "cxlemu.sim", "cxlemu.userspace", "cxlemu.fabric",
)
#: Modules inside those packages that do file or process I/O: never referenced from state.
DENIED_MODULES: tuple[str, ...] = ("cxlemu.util.fileio",)

_BIG = 1 << 63
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SIMPLE_DTYPE = re.compile(r"^[<>|=]?[biufcmMSUV?][0-9]*(\[[a-zA-Z0-9]+\])?$")

_BUILTIN_TYPES: dict[str, type] = {
    f"builtins:{t.__name__}": t
    for t in (int, float, complex, str, bytes, bytearray, bool, list, tuple, dict, set, frozenset,
              object, type(None), range)
}
_BUILTIN_NAMES = {v: k for k, v in _BUILTIN_TYPES.items()}
_PATH_TYPES = {"PurePosixPath": PurePosixPath, "PureWindowsPath": PureWindowsPath,
               "PosixPath": PosixPath, "WindowsPath": WindowsPath, "Path": Path}
_BITGENS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")

# record tags (first element of a record; an int first element is an object of classes[i])
_LEAF = {"B", "BA", "I", "C", "U", "F", "P", "R", "A", "N", "DT"}
_MUTABLE = {"L", "d", "D", "S", "OD", "DD", "Q", "CT", "G"}
_IMMUTABLE = {"T", "FS", "E", "M"}


class StateError(Exception):
    """A state file that cannot be read (truncated, corrupted, not a state file,
    refused content) or an object graph that cannot be saved."""


# ---------------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------------

def _module_allowed(mod: str, allow: tuple[str, ...]) -> bool:
    if not _IDENT.match(mod):
        return False
    if any(mod == d or mod.startswith(d + ".") for d in DENIED_MODULES):
        return False
    return any(mod == p or mod.startswith(p + ".") for p in allow)


def _global_name(obj: Any, allow: tuple[str, ...]) -> str:
    """``module:qualname`` of a class or function that the loader will accept."""
    if isinstance(obj, type) and obj in _BUILTIN_NAMES:
        return _BUILTIN_NAMES[obj]
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if not isinstance(mod, str) or not isinstance(qual, str) or not _IDENT.match(qual):
        raise StateError(f"cannot save {obj!r}: not a module-level class or function "
                         f"(lambdas, closures and nested functions are not state)")
    if not _module_allowed(mod, allow):
        raise StateError(f"cannot save {mod}:{qual}: outside the state allow-list ({', '.join(allow)})")
    if _lookup(mod, qual) is not obj:
        raise StateError(f"cannot save {mod}:{qual}: the name does not lead back to the object")
    return f"{mod}:{qual}"


def _lookup(mod: str, qual: str) -> Any:
    try:
        m = sys.modules.get(mod) or importlib.import_module(mod)
    except Exception as e:   # ImportError, or a module that fails to import
        raise StateError(f"refusing {mod}:{qual}: cannot import {mod} ({e.__class__.__name__})") from None
    obj: Any = m
    for part in qual.split("."):
        ns = getattr(obj, "__dict__", None)
        if ns is None or part not in ns:
            raise StateError(f"refusing {mod}:{qual}: no such name")
        obj = ns[part]
        if isinstance(obj, staticmethod):     # a function stored on a class (Driver predicates)
            obj = obj.__func__
    return obj


def resolve_global(name: str, allow: tuple[str, ...] = ALLOWED_PACKAGES) -> Any:
    """The class or function a state file names, after checking the allow-list.
    Only classes and plain functions defined in that very module qualify
    (``cxlemu.hw.x:os.system`` reaches ``os.system`` but is refused)."""
    if not isinstance(name, str):
        raise StateError("corrupt state file: a class name is not a string")
    if name in _BUILTIN_TYPES:
        return _BUILTIN_TYPES[name]
    mod, sep, qual = name.partition(":")
    if not sep or not _IDENT.match(qual) or not _module_allowed(mod, allow):
        raise StateError(f"refusing {name!r}: not a class or function of the cxlemu state allow-list")
    obj = _lookup(mod, qual)
    if not isinstance(obj, (type, types.FunctionType)):
        raise StateError(f"refusing {name!r}: not a class or function")
    if obj.__module__ != mod or obj.__qualname__ != qual:
        raise StateError(f"refusing {name!r}: defined elsewhere ({obj.__module__}:{obj.__qualname__})")
    return obj


def _slot_names(cls: type) -> list[str]:
    out: list[str] = []
    for k in cls.__mro__:
        s = k.__dict__.get("__slots__", ())
        if isinstance(s, str):
            s = (s,)
        for n in s:
            if n in ("__dict__", "__weakref__"):
                continue
            if n.startswith("__") and not n.endswith("__"):
                n = f"_{k.__name__.lstrip('_')}{n}"      # private name mangling
            if n not in out:
                out.append(n)
    return out


def _plain_class(cls: type) -> bool:
    """object.__new__(cls) is a valid way to make one."""
    return cls.__new__ is object.__new__ and not issubclass(cls, BaseException)


# ---------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------

class _Encoder:
    def __init__(self, allow: tuple[str, ...]):
        self.allow = allow
        self.memo: dict[int, int] = {}
        self.keep: list[Any] = []            # keeps memoised objects alive (ids stay unique)
        self.records: list[Any] = []
        self.objs: list[Any] = []
        self.classes: list[str] = []
        self.class_idx: dict[Any, int] = {}
        self.blobs: list[memoryview] = []
        self.pending: list[int] = []
        self.current: Any = None
        self.cinfo: dict[type, tuple[int, bool, list[str]]] = {}
        self.shapes: list[list[Any]] = []
        self.shape_idx: dict[tuple, int] = {}
        self.fast: dict[type, Any] = {
            list: lambda o: ["L", self.values(o)],
            tuple: lambda o: ["T", self.values(o)],
            types.MethodType: self.method,
        }

    def cls(self, obj: Any) -> int:
        i = self.class_idx.get(obj)
        if i is None:
            i = len(self.classes)
            self.classes.append(_global_name(obj, self.allow))
            self.class_idx[obj] = i
        return i

    def blob(self, data: Any) -> int:
        self.blobs.append(memoryview(data).cast("B") if not isinstance(data, memoryview) else data)
        return len(self.blobs) - 1

    def ref(self, o: Any) -> Any:
        t = type(o)
        if t is str or t is bool or t is float or o is None:
            return o
        if t is int and -_BIG < o < _BIG:
            return o
        i = self.memo.get(id(o))
        if i is None:
            i = len(self.records)
            self.memo[id(o)] = i
            self.keep.append(o)
            self.records.append(None)
            self.objs.append(o)
            self.pending.append(i)
        return [i]

    def run(self, root: Any) -> Any:
        r = self.ref(root)
        pending, records, objs = self.pending, self.records, self.objs
        while pending:
            i = pending.pop()
            self.current = objs[i]
            records[i] = self.record(self.current)
        return r

    def refs(self, it: Iterable[Any]) -> list[Any]:
        ref = self.ref
        return [ref(x) for x in it]

    def flat(self, d: dict) -> list[Any]:
        ref = self.ref
        out: list[Any] = []
        for k, v in d.items():
            out.append(ref(k))
            out.append(ref(v))
        return out

    def record(self, o: Any) -> list[Any]:
        t = type(o)
        f = self.fast.get(t)
        if f is not None:
            return f(o)
        return self.record_slow(o, t)

    def record_slow(self, o: Any, t: type) -> list[Any]:
        ref = self.ref
        if t is list:
            return ["L", self.values(o)]
        if t is dict:
            for k in o:
                if type(k) is not str:
                    return ["D", self.flat(o)]
            return ["d", dict(zip(o, self.values(o.values())))]
        if t is tuple:
            return ["T", self.values(o)]
        if t is set:
            return ["S", self.refs(_canonical(o))]
        if t is frozenset:
            return ["FS", self.refs(_canonical(o))]
        if t is bytes:
            return ["B", self.blob(o)]
        if t is bytearray:
            return ["BA", self.blob(o)]
        if t is int:
            return ["I", format(o, "x") if o >= 0 else "-" + format(-o, "x")]
        if t is complex:
            return ["C", o.real, o.imag]
        if isinstance(o, enum.Enum):
            return ["E", self.cls(t), ref(o._value_)]
        u = sys.modules.get("uuid")   # (not imported here: no UUID exists before something imports uuid)
        if u is not None and t is u.UUID:
            return ["U", o.hex]
        if t is types.MethodType:
            return self.method(o)
        if t is types.FunctionType or isinstance(o, type):
            return ["F", self.cls(o)]
        if t is range:
            return ["R", o.start, o.stop, o.step]
        if isinstance(o, PurePath) and t.__name__ in _PATH_TYPES and t.__module__.startswith("pathlib"):
            return ["P", t.__name__, str(o)]
        if t is collections.OrderedDict:
            return ["OD", self.flat(o)]
        if t is collections.defaultdict:
            f = o.default_factory
            return ["DD", None if f is None else self.cls(f), self.flat(o)]
        if t is collections.Counter:
            return ["CT", self.flat(o)]
        if t is collections.deque:
            return ["Q", self.refs(o), o.maxlen]
        if t.__module__ == "numpy" or t.__module__.startswith("numpy."):
            return self.numpy(o)
        return self.instance(o, t)

    def method(self, o: types.MethodType) -> list[Any]:
        name = o.__func__.__name__
        owner = o.__self__
        cls = owner if isinstance(owner, type) else type(owner)
        if _find_method(cls, name, isinstance(owner, type)) is not o.__func__:
            raise StateError(f"cannot save bound method {o!r}: {name} is not a method of {cls.__qualname__}")
        return ["M", self.ref(owner), name]

    def numpy(self, o: Any) -> list[Any]:
        import numpy as np
        if isinstance(o, np.ndarray):
            if o.dtype.hasobject:
                raise StateError("cannot save a numpy array of Python objects")
            a = np.ascontiguousarray(o)
            if type(o) is not np.ndarray:
                raise StateError(f"cannot save a numpy array subclass {type(o).__qualname__}")
            return ["A", _dtype_enc(a.dtype), list(a.shape), self.blob(a.reshape(-1).view(np.uint8)
                                                                        if a.size else b"")]
        if isinstance(o, np.generic):
            if o.dtype.hasobject:
                raise StateError("cannot save a numpy object scalar")
            return ["N", _dtype_enc(o.dtype), self.blob(np.array(o).tobytes())]
        if isinstance(o, np.dtype):
            return ["DT", _dtype_enc(o)]
        if isinstance(o, np.random.Generator):
            bg = o.bit_generator
            name = type(bg).__name__
            if name not in _BITGENS:
                raise StateError(f"cannot save a numpy Generator over {name}")
            return ["G", name, self.ref(bg.state)]
        raise StateError(f"cannot save numpy object of type {type(o).__qualname__}")

    def class_info(self, t: type) -> tuple[int, bool, list[str]]:
        """(class index, has a custom __getstate__, slot names) of an instance's class."""
        info = self.cinfo.get(t)
        if info is None:
            c = self.cls(t)
            if not _plain_class(t):
                raise StateError(f"cannot save {t.__module__}:{t.__qualname__}: it is not a plain class "
                                 f"(it defines __new__ or derives from a builtin)")
            getstate = getattr(t, "__getstate__", None)
            custom = getstate is not None and getstate is not object.__getstate__
            info = self.cinfo[t] = (c, custom, _slot_names(t))
            self.fast[t] = lambda o, t=t: self.instance(o, t)
        return info

    def values(self, vals: Iterable[Any]) -> list[Any]:
        """ref() of each value, inlined (the hot loop of a save)."""
        memo = self.memo
        out = []
        append = out.append
        for v in vals:
            t = type(v)
            if t is str or t is bool or t is float or v is None or (t is int and -_BIG < v < _BIG):
                append(v)
            else:
                i = memo.get(id(v))
                append([i] if i is not None else self.ref(v))
        return out

    def instance(self, o: Any, t: type) -> list[Any]:
        c, custom, slot_names = self.class_info(t)
        slots: dict | None = None
        if custom:
            st = o.__getstate__()
            if isinstance(st, tuple) and len(st) == 2:
                st, slots = st
            if st is not None and not isinstance(st, dict):
                raise StateError(f"cannot save {t.__qualname__}: __getstate__ must return a dict")
        else:
            st = getattr(o, "__dict__", None)
            if slot_names:
                slots = {}
                for n in slot_names:
                    try:
                        slots[n] = getattr(o, n)
                    except AttributeError:
                        pass
        dnames = tuple(st) if st is not None else None
        snames = tuple(slots) if slots else None
        key = (t, dnames, snames)
        s = self.shape_idx.get(key)
        if s is None:
            if dnames is not None and not all(type(k) is str for k in dnames):
                raise StateError(f"cannot save {t.__qualname__}: an attribute name is not a string")
            s = self.shape_idx[key] = len(self.shapes)
            self.shapes.append([c, None if dnames is None else list(dnames),
                                None if snames is None else list(snames)])
        vals = self.values(st.values()) if st is not None else []
        if slots:
            vals += self.values(slots.values())
        return [s, vals]


def _canonical(s: set | frozenset) -> Any:
    """A set's members in sorted order when they compare (strings, numbers,
    tuples of them), else in iteration order.  String hashes differ from
    process to process, so iteration order would make the same model encode
    differently in two commands; sorted, it encodes to the same bytes (the
    machine compares them to skip rewriting an unchanged state file)."""
    if len(s) < 2:
        return s
    try:
        return sorted(s)
    except TypeError:
        return s


def _find_method(cls: type, name: str, classmethod_: bool) -> Any:
    for k in cls.__mro__:
        if name in k.__dict__:
            v = k.__dict__[name]
            if classmethod_:
                return v.__func__ if isinstance(v, classmethod) else None
            return v if isinstance(v, types.FunctionType) else None
    return None


def _dtype_enc(dt: Any) -> Any:
    if dt.fields is None and dt.subdtype is None:
        return dt.str
    return [[list(x) if isinstance(x, tuple) else x for x in f] for f in dt.descr]


def _dtype_dec(enc: Any) -> Any:
    import numpy as np
    if isinstance(enc, str):
        if not _SIMPLE_DTYPE.match(enc):
            raise StateError(f"corrupt state file: bad dtype {enc!r}")
        dt = np.dtype(enc)
    elif isinstance(enc, list) and enc:
        fields = []
        for f in enc:
            if not isinstance(f, list) or not 2 <= len(f) <= 3 or not isinstance(f[0], (str, list)):
                raise StateError("corrupt state file: bad structured dtype")
            name = f[0] if isinstance(f[0], str) else tuple(f[0])
            sub = _dtype_dec(f[1])
            fields.append((name, sub) if len(f) == 2 else (name, sub, tuple(int(x) for x in f[2])))
        dt = np.dtype(fields)
    else:
        raise StateError("corrupt state file: bad dtype")
    if dt.hasobject:
        raise StateError("refusing a numpy dtype of Python objects")
    return dt


def _path_to(root: Any, target: Any, allow: tuple[str, ...]) -> str:
    """A readable path from ``root`` to ``target`` (for error messages only)."""
    seen = {id(root)}
    queue = collections.deque([(root, "state")])
    while queue:
        o, p = queue.popleft()
        if o is target:
            return p
        kids: list[tuple[Any, str]] = []
        if isinstance(o, (list, tuple, set, frozenset, collections.deque)):
            kids = [(x, f"{p}[{i}]") for i, x in enumerate(o)]
        elif isinstance(o, dict):
            kids = [(v, f"{p}[{k!r}]") for k, v in o.items()]
        elif hasattr(o, "__dict__") and not isinstance(o, (type, types.FunctionType, types.ModuleType)):
            try:
                st = o.__getstate__() if type(o).__getstate__ is not object.__getstate__ else vars(o)
            except Exception:
                st = {}
            if isinstance(st, dict):
                kids = [(v, f"{p}.{k}") for k, v in st.items()]
        for x, q in kids:
            if id(x) not in seen:
                seen.add(id(x))
                queue.append((x, q))
    return "state"


def encode(root: Any, meta: dict | None = None, allow: tuple[str, ...] = ALLOWED_PACKAGES
           ) -> tuple[bytes, list[memoryview]]:
    """(fixed header + meta + graph JSON, blobs) of ``root``; see :func:`write`."""
    enc = _Encoder(allow)
    gc_was = gc.isenabled()
    gc.disable()            # the walk allocates much and frees nothing: no point in collecting
    try:
        r = enc.run(root)
    except StateError as e:
        raise StateError(f"{e} (at {_path_to(root, enc.current, allow)})") from None
    finally:
        if gc_was:
            gc.enable()
    graph = {"classes": enc.classes, "shapes": enc.shapes, "blobs": [b.nbytes for b in enc.blobs],
             "records": enc.records, "root": r}
    return _head(meta or {}, graph), enc.blobs


def _head(meta: dict, graph: dict) -> bytes:
    gbytes = json.dumps(graph, separators=(",", ":"), ensure_ascii=False, check_circular=False).encode()
    mbytes = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode()
    lens = graph.get("blobs")
    blen = sum(lens) if isinstance(lens, list) and all(type(n) is int for n in lens) else 0
    return _FIXED.pack(MAGIC, FORMAT, 0, len(mbytes), len(gbytes), blen) + mbytes + gbytes


def _seal(head: bytes, blobs: list) -> bytes:
    h = blake2b(digest_size=DIGEST_SIZE)
    for p in (head, *blobs):
        h.update(p)
    return b"".join([head, *(bytes(b) for b in blobs), h.digest()])


def assemble(meta: dict, graph: dict, blobs: list[bytes]) -> bytes:
    """A state file from its parts, with a valid digest (tests build hostile
    files with it: the loader must refuse them on content, not on checksum)."""
    return _seal(_head(meta, graph), blobs)


def disassemble(data: bytes) -> tuple[dict, dict, list[bytes]]:
    """(meta, graph, blobs) of a state file, checked like :func:`loads`."""
    data = bytes(data)
    mlen, glen, blen = _parse_fixed(data[:_FIXED.size], len(data))
    pos = _FIXED.size
    meta = _json(data[pos:pos + mlen], "meta")
    graph = _json(data[pos + mlen:pos + mlen + glen], "graph")
    lens = _blob_lengths(graph, blen)
    out, p = [], pos + mlen + glen
    for n in lens:
        out.append(data[p:p + n])
        p += n
    return meta, graph, out


def dumps(root: Any, meta: dict | None = None, allow: tuple[str, ...] = ALLOWED_PACKAGES) -> bytes:
    head, blobs = encode(root, meta, allow)
    return _seal(head, blobs)


def write(f: BinaryIO, root: Any, meta: dict | None = None, allow: tuple[str, ...] = ALLOWED_PACKAGES) -> int:
    """Write ``root`` (and ``meta``) to the binary file ``f``; returns the size."""
    head, blobs = encode(root, meta, allow)
    return write_encoded(f, head, blobs)


def write_encoded(f: BinaryIO, head: bytes, blobs: list) -> int:
    """Write what :func:`encode` returned to the binary file ``f``; returns the size."""
    h = blake2b(digest_size=DIGEST_SIZE)
    n = 0
    for p in (head, *blobs):
        h.update(p)
        f.write(p)
        n += p.nbytes if isinstance(p, memoryview) else len(p)
    f.write(h.digest())
    return n + DIGEST_SIZE


#: How much of a state file :func:`holds` reads at a time to compare blobs.
_COMPARE_CHUNK = 16 << 20


def holds(path: str | os.PathLike, head: bytes, blobs: list, ignore_meta: tuple[str, ...] = ()) -> bool:
    """Does the state file at ``path`` hold exactly what :func:`encode`
    returned (``head``, ``blobs``), meta keys in ``ignore_meta`` aside?

    The cheap differences are looked at first -- the graph and blob lengths in
    the fixed header, then the meta and graph JSON -- and the blobs are compared
    chunk by chunk only when all of that matched, so a changed model usually
    costs one small read.  A missing, short, long or unreadable file holds
    nothing (False), and so does one whose digest does not match its own bytes
    (a damaged digest would fail the next load: the file must be rewritten)."""
    new_mlen, new_glen, new_blen = struct.unpack_from("<QQQ", head, 16)
    try:
        f = open(path, "rb")
    except OSError:
        return False
    with f:
        try:
            fixed = f.read(_FIXED.size)
            if len(fixed) != _FIXED.size:
                return False
            magic, fmt, flags, mlen, glen, blen = _FIXED.unpack(fixed)
            if (magic, fmt, flags, glen, blen) != (MAGIC, FORMAT, 0, new_glen, new_blen):
                return False
            h = blake2b(fixed, digest_size=DIGEST_SIZE)
            if os.fstat(f.fileno()).st_size != _FIXED.size + mlen + glen + blen + DIGEST_SIZE:
                return False
            mraw = f.read(mlen)
            h.update(mraw)
            if mraw != head[_FIXED.size:_FIXED.size + new_mlen]:
                try:
                    old, new = json.loads(mraw), json.loads(head[_FIXED.size:_FIXED.size + new_mlen])
                except ValueError:
                    return False
                if not isinstance(old, dict) or not isinstance(new, dict):
                    return False
                for k in ignore_meta:
                    old.pop(k, None)
                    new.pop(k, None)
                if old != new:
                    return False
            graph = f.read(glen)
            if graph != head[_FIXED.size + new_mlen:]:
                return False
            h.update(graph)
            for b in blobs:
                n = b.nbytes if isinstance(b, memoryview) else len(b)
                for i in range(0, n, _COMPARE_CHUNK):
                    part = b[i:i + _COMPARE_CHUNK]
                    got = f.read(len(part))
                    if got != bytes(part):
                        return False
                    h.update(got)
            if f.read(DIGEST_SIZE) != h.digest():
                return False
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------

def _parse_fixed(head: bytes, size: int) -> tuple[int, int, int]:
    if len(head) < _FIXED.size:
        if not head:
            raise StateError("empty state file")
        raise StateError("truncated state file")
    magic, fmt, _flags, mlen, glen, blen = _FIXED.unpack(head[:_FIXED.size])
    if magic != MAGIC:
        if head[:2] == b"\x80\x04" or head[:2] == b"\x80\x05":
            raise StateError("a pickle, not a cxlemu state file (made by an older cxlemu)")
        raise StateError("not a cxlemu state file (bad magic)")
    if fmt != FORMAT:
        raise StateError(f"state file format {fmt} is not supported (this cxlemu reads format {FORMAT})")
    expect = _FIXED.size + mlen + glen + blen + DIGEST_SIZE
    if expect != size:
        raise StateError("truncated state file" if size < expect else "corrupt state file (trailing bytes)")
    return mlen, glen, blen


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise StateError(f"corrupt state file ({what}: {e.__class__.__name__})") from None


def read_meta(path: str | os.PathLike) -> dict:
    """The metadata of a state file, without decoding (or verifying) the graph."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_FIXED.size)
            mlen, _g, _b = _parse_fixed(head, size)
            meta = _json(f.read(mlen), "meta")
    except OSError as e:
        raise StateError(f"cannot read state file: {e.strerror}") from None
    if not isinstance(meta, dict):
        raise StateError("corrupt state file (meta)")
    return meta


def loads(data: bytes | bytearray | memoryview, allow: tuple[str, ...] = ALLOWED_PACKAGES) -> tuple[Any, dict]:
    """(root, meta) of a whole state file held in memory."""
    data = memoryview(data).cast("B")
    mlen, glen, blen = _parse_fixed(bytes(data[:_FIXED.size]), len(data))
    body_end = len(data) - DIGEST_SIZE
    if blake2b(data[:body_end], digest_size=DIGEST_SIZE).digest() != bytes(data[body_end:]):
        raise StateError("corrupt state file (checksum mismatch)")
    pos = _FIXED.size
    meta = _json(bytes(data[pos:pos + mlen]), "meta")
    graph = _json(bytes(data[pos + mlen:pos + mlen + glen]), "graph")
    blob_base = pos + mlen + glen
    lens = _blob_lengths(graph, blen)
    offs = [blob_base]
    for n in lens:
        offs.append(offs[-1] + n)

    def blob(i: int, kind: str, shape: Any = None) -> Any:
        raw = data[offs[i]:offs[i + 1]]
        return _make_blob(raw, kind, shape)

    return _decode(graph, blob, allow), _check_meta(meta)


def load(path: str | os.PathLike, allow: tuple[str, ...] = ALLOWED_PACKAGES) -> tuple[Any, dict]:
    """(root, meta) of the state file at ``path``: blobs are read straight into
    their arrays, the digest is checked before any object is built."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise StateError(f"cannot read state file: {e.strerror}") from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_FIXED.size)
            mlen, glen, blen = _parse_fixed(head, size)
            h = blake2b(head, digest_size=DIGEST_SIZE)
            mraw = f.read(mlen)
            graw = f.read(glen)
            h.update(mraw)
            h.update(graw)
            meta = _json(mraw, "meta")
            graph = _json(graw, "graph")
            lens = _blob_lengths(graph, blen)
            raws: list[bytearray] = []
            for n in lens:
                buf = bytearray(n)
                if f.readinto(buf) != n:
                    raise StateError("truncated state file")
                h.update(buf)
                raws.append(buf)
            if f.read(DIGEST_SIZE) != h.digest():
                raise StateError("corrupt state file (checksum mismatch)")
        except OSError as e:
            raise StateError(f"cannot read state file: {e.strerror}") from None
    used = [False] * len(raws)

    def blob(i: int, kind: str, shape: Any = None) -> Any:
        raw = raws[i]
        if used[i]:           # the same blob twice: each user gets its own copy
            raw = bytearray(raw)
        used[i] = True
        return _make_blob(raw, kind, shape)

    return _decode(graph, blob, allow), _check_meta(meta)


def _check_meta(meta: Any) -> dict:
    if not isinstance(meta, dict):
        raise StateError("corrupt state file (meta)")
    return meta


def _blob_lengths(graph: Any, blen: int) -> list[int]:
    if not isinstance(graph, dict):
        raise StateError("corrupt state file (graph)")
    lens = graph.get("blobs")
    if not isinstance(lens, list) or not all(type(n) is int and n >= 0 for n in lens) or sum(lens) != blen:
        raise StateError("corrupt state file (blob table)")
    return lens


def _make_blob(raw: Any, kind: str, spec: Any) -> Any:
    """bytes / bytearray / numpy array / numpy scalar from raw blob bytes."""
    if kind == "B":
        return bytes(raw)
    if kind == "BA":
        return raw if isinstance(raw, bytearray) else bytearray(raw)
    import numpy as np
    dtype, shape = spec
    if kind == "N":
        if len(raw) != dtype.itemsize:
            raise StateError("corrupt state file (numpy scalar size)")
        return np.frombuffer(bytes(raw), dtype=dtype)[0]
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(raw):
        raise StateError("corrupt state file (array size does not match its shape)")
    if isinstance(raw, bytearray):
        arr = np.frombuffer(raw, dtype=dtype) if count else np.empty(0, dtype=dtype)
    else:
        arr = np.frombuffer(bytes(raw), dtype=dtype).copy() if count else np.empty(0, dtype=dtype)
    return arr.reshape(shape)


class _Missing:
    pass


_MISSING = _Missing()


def _decode(graph: dict, blob, allow: tuple[str, ...]) -> Any:
    gc_was = gc.isenabled()
    gc.disable()
    try:
        return _Decoder(graph, blob, allow).run()
    except StateError:
        raise
    except (MemoryError, RecursionError):
        raise StateError("corrupt state file (does not fit in memory)") from None
    except Exception as e:   # any structural nonsense: a clean error, never a traceback
        raise StateError(f"corrupt state file ({e.__class__.__name__}: {str(e)[:120]})") from None
    finally:
        if gc_was:
            gc.enable()


class _Decoder:
    def __init__(self, graph: dict, blob, allow: tuple[str, ...]):
        classes = graph.get("classes")
        records = graph.get("records")
        if not isinstance(classes, list) or not isinstance(records, list) or "root" not in graph:
            raise StateError("corrupt state file (graph)")
        self.class_names = classes
        self.classes: list[Any] = [None] * len(classes)
        self.records = records
        self.root = graph["root"]
        self.blob = blob
        self.allow = allow
        n = len(records)
        self.objs: list[Any] = [_MISSING] * n
        self.kind: list[str] = [""] * n
        self.filled = bytearray(n)
        self.hready: set[tuple[str, int]] = set()
        shapes = graph.get("shapes", [])
        if not isinstance(shapes, list):
            raise StateError("corrupt state file (shapes)")
        self.shapes = shapes
        self.shape_ok: list[Any] = [None] * len(shapes)

    # ---- helpers ---------------------------------------------------------------------------
    def cls(self, i: Any) -> Any:
        if type(i) is not int or not 0 <= i < len(self.classes):
            raise StateError("corrupt state file (class index)")
        c = self.classes[i]
        if c is None:
            c = self.classes[i] = resolve_global(self.class_names[i], self.allow)
        return c

    def val(self, v: Any) -> Any:
        if type(v) is list:
            o = self.objs[v[0]]
            if o is _MISSING or len(v) != 1:
                raise StateError("corrupt state file (dangling reference)")
            return o
        if type(v) is dict:
            raise StateError("corrupt state file (inline object)")
        return v

    def refidx(self, v: Any) -> int | None:
        if type(v) is list:
            if len(v) != 1 or type(v[0]) is not int or not 0 <= v[0] < len(self.records):
                raise StateError("corrupt state file (bad reference)")
            return v[0]
        return None

    # ---- phases -------------------------------------------------------------------------------
    def run(self) -> Any:
        recs, objs, kind = self.records, self.objs, self.kind
        immutables: list[int] = []
        objects: list[int] = []
        lists: list[int] = []
        hashed: list[int] = []
        gens: list[int] = []
        # 1. shells for mutables, leaves built outright
        for i, rec in enumerate(recs):
            if type(rec) is not list or not rec:
                raise StateError("corrupt state file (record)")
            tag = rec[0]
            if type(tag) is int:
                objs[i] = object.__new__(self.shape(tag)[0])
                kind[i] = "o"
                objects.append(i)
                continue
            if type(tag) is not str:
                raise StateError("corrupt state file (record tag)")
            kind[i] = tag
            if tag in _MUTABLE:
                objs[i] = self.shell(tag, rec)
                if tag in ("L", "Q"):
                    lists.append(i)
                elif tag == "G":
                    gens.append(i)
                else:
                    hashed.append(i)
            elif tag in _LEAF:
                objs[i] = self.leaf(tag, rec)
            elif tag in _IMMUTABLE:
                immutables.append(i)
            else:
                raise StateError(f"corrupt state file (unknown record {tag[:20]!r})")
        # 2. tuples, frozensets, enums, bound methods (in dependency order)
        for i in immutables:
            if objs[i] is _MISSING:
                self.schedule(("C", i))
        # 3. objects and sequences
        filled = self.filled
        for i in objects:
            if not filled[i]:
                self.fill_object(i)
        for i in lists:
            objs[i].extend([objs[x[0]] if type(x) is list else x for x in recs[i][1]])
        # 4. dicts and sets: every object they may hash is complete now
        for i in hashed:
            self.fill_hashed(i)
        # 5. generator states (plain dicts, complete now)
        for i in gens:
            st = self.val(recs[i][2])
            if not isinstance(st, dict):
                raise StateError("corrupt state file (generator state)")
            objs[i].bit_generator.state = st
        return self.val(self.root)

    def shell(self, tag: str, rec: list) -> Any:
        if tag == "L":
            if not isinstance(rec[1], list):
                raise StateError("corrupt state file (list)")
            return []
        if tag in ("d", "D"):
            return {}
        if tag == "S":
            return set()
        if tag == "OD":
            return collections.OrderedDict()
        if tag == "DD":
            return collections.defaultdict()
        if tag == "CT":
            return collections.Counter()
        if tag == "Q":
            maxlen = rec[2]
            if maxlen is not None and (type(maxlen) is not int or maxlen < 0):
                raise StateError("corrupt state file (deque)")
            return collections.deque(maxlen=maxlen)
        if tag == "G":
            import numpy as np
            name = rec[1]
            if name not in _BITGENS:
                raise StateError(f"refusing numpy bit generator {str(name)[:20]!r}")
            return np.random.Generator(getattr(np.random, name)())
        raise StateError("corrupt state file (record)")  # pragma: no cover

    def leaf(self, tag: str, rec: list) -> Any:
        if tag == "B" or tag == "BA":
            return self.blob(self._blobidx(rec[1]), tag)
        if tag == "I":
            s = rec[1]
            if type(s) is not str or not re.fullmatch(r"-?[0-9a-f]{1,100000}", s):
                raise StateError("corrupt state file (integer)")
            return int(s, 16)
        if tag == "C":
            if not all(type(x) in (int, float) for x in rec[1:3]) or len(rec) != 3:
                raise StateError("corrupt state file (complex)")
            return complex(rec[1], rec[2])
        if tag == "U":
            if type(rec[1]) is not str:
                raise StateError("corrupt state file (uuid)")
            import uuid                # (it imports `platform`: only for a state that holds a UUID)
            return uuid.UUID(hex=rec[1])
        if tag == "F":
            return self.cls(rec[1])
        if tag == "P":
            t = _PATH_TYPES.get(rec[1]) if type(rec[1]) is str else None
            if t is None or type(rec[2]) is not str:
                raise StateError("corrupt state file (path)")
            return t(rec[2])
        if tag == "R":
            if len(rec) != 4 or not all(type(x) is int for x in rec[1:]):
                raise StateError("corrupt state file (range)")
            return range(rec[1], rec[2], rec[3])
        if tag == "A":
            shape = rec[2]
            if not isinstance(shape, list) or len(shape) > 32 or not all(type(n) is int and n >= 0 for n in shape):
                raise StateError("corrupt state file (array shape)")
            return self.blob(self._blobidx(rec[3]), "A", (_dtype_dec(rec[1]), tuple(shape)))
        if tag == "N":
            return self.blob(self._blobidx(rec[2]), "N", (_dtype_dec(rec[1]), ()))
        if tag == "DT":
            return _dtype_dec(rec[1])
        raise StateError("corrupt state file (record)")  # pragma: no cover

    def _blobidx(self, i: Any) -> int:
        if type(i) is not int or i < 0:
            raise StateError("corrupt state file (blob index)")
        return i

    def shape(self, s: Any) -> tuple[type, list[str] | None, list[str]]:
        """(class, attribute names, slot names) of object shape ``s``, checked once."""
        if type(s) is not int or not 0 <= s < len(self.shapes):
            raise StateError("corrupt state file (object shape)")
        ok = self.shape_ok[s]
        if ok is None:
            sh = self.shapes[s]
            if type(sh) is not list or len(sh) != 3:
                raise StateError("corrupt state file (object shape)")
            cls = self.cls(sh[0])
            if not isinstance(cls, type) or not _plain_class(cls) or cls in _BUILTIN_NAMES:
                raise StateError(f"refusing {self.class_names[sh[0]]!r} as an object's class")
            dnames, snames = sh[1], sh[2] or []
            if dnames is not None and (type(dnames) is not list or not all(type(n) is str for n in dnames)):
                raise StateError("corrupt state file (attribute names)")
            if type(snames) is not list:
                raise StateError("corrupt state file (slot names)")
            allowed = _slot_names(cls)
            for n in snames:
                if n not in allowed:
                    raise StateError(f"corrupt state file (no slot {str(n)[:40]!r} on {cls.__qualname__})")
            if dnames is not None and not cls.__dictoffset__:
                raise StateError(f"corrupt state file ({cls.__qualname__} has no __dict__)")
            ok = self.shape_ok[s] = (cls, dnames, snames)
        return ok

    def obj_values(self, i: int) -> tuple[list[str] | None, list[str], list[Any]]:
        rec = self.records[i]
        _cls, dnames, snames = self.shape(rec[0])
        vals = rec[1]
        if len(rec) != 2 or type(vals) is not list or len(vals) != (len(dnames or ()) + len(snames)):
            raise StateError("corrupt state file (object record)")
        return dnames, snames, vals

    def fill_object(self, i: int) -> None:
        obj = self.objs[i]
        dnames, snames, vals = self.obj_values(i)
        objs = self.objs
        vals = [objs[v[0]] if type(v) is list else v for v in vals]
        if dnames is not None:
            obj.__dict__.update(zip(dnames, vals))
        if snames:
            for n, v in zip(snames, vals[len(dnames or ()):]):
                object.__setattr__(obj, n, v)
        self.filled[i] = 1

    def fill_hashed(self, i: int) -> None:
        tag = self.kind[i]
        rec = self.records[i]
        obj = self.objs[i]
        val = self.val
        if tag == "d":
            if type(rec[1]) is not dict:
                raise StateError("corrupt state file (dict)")
            objs = self.objs
            obj.update({k: (objs[v[0]] if type(v) is list else v) for k, v in rec[1].items()})
            return
        if tag == "S":
            obj.update(val(x) for x in rec[1])
            return
        flat = rec[2] if tag == "DD" else rec[1]
        if type(flat) is not list or len(flat) % 2:
            raise StateError("corrupt state file (mapping)")
        if tag == "DD" and rec[1] is not None:
            obj.default_factory = self.cls(rec[1])
        for j in range(0, len(flat), 2):
            obj[val(flat[j])] = val(flat[j + 1])

    # ---- immutables: a small dependency scheduler ------------------------------------------------
    def value_hash(self, i: int) -> bool:
        """Does hashing record i need its content (not just its identity)?"""
        k = self.kind[i]
        if k == "o":
            return type(self.objs[i]).__hash__ is not object.__hash__
        return k in ("T", "E")

    def deps(self, task: tuple[str, int]) -> list[tuple[str, int]]:
        what, i = task
        rec = self.records[i]
        k = self.kind[i]
        out: list[tuple[str, int]] = []
        if what == "C":
            if k == "T":
                for x in rec[1]:
                    j = self.refidx(x)
                    if j is not None and self.kind[j] in _IMMUTABLE:
                        out.append(("C", j))
            elif k == "FS":
                for x in rec[1]:
                    j = self.refidx(x)
                    if j is not None:
                        out.append(("H", j))
            elif k == "E":
                j = self.refidx(rec[2])
                if j is not None:
                    out.append(("H", j))
            elif k == "M":
                j = self.refidx(rec[1])
                if j is not None and self.kind[j] in _IMMUTABLE:
                    out.append(("C", j))
        elif what == "F":                       # fill an object early (it is about to be hashed)
            for x in self.obj_values(i)[2]:
                j = self.refidx(x)
                if j is not None and self.kind[j] in _IMMUTABLE:
                    out.append(("C", j))
        else:                                    # "H": ready to be hashed
            if k in _IMMUTABLE:
                out.append(("C", i))
            if k == "T":
                for x in rec[1]:
                    j = self.refidx(x)
                    if j is not None and self.value_hash(j):
                        out.append(("H", j))
            elif k == "o" and self.value_hash(i):
                out.append(("F", i))
                for x in self.obj_values(i)[2]:
                    j = self.refidx(x)
                    if j is not None and self.value_hash(j):
                        out.append(("H", j))
        return out

    def is_done(self, task: tuple[str, int]) -> bool:
        what, i = task
        if what == "C":
            return self.objs[i] is not _MISSING
        if what == "F":
            return bool(self.filled[i])
        return task in self.hready

    def schedule(self, root: tuple[str, int]) -> None:
        visiting: set[tuple[str, int]] = set()
        stack: list[tuple[tuple[str, int], bool]] = [(root, False)]
        while stack:
            task, expanded = stack.pop()
            if self.is_done(task):
                continue
            if expanded:
                visiting.discard(task)
                self.execute(task)
                continue
            if task in visiting:
                continue
            visiting.add(task)
            stack.append((task, True))
            for d in self.deps(task):
                if self.is_done(d):
                    continue
                if d in visiting:
                    if d[0] == "H":
                        continue             # hashing inside a cycle: identity suffices
                    raise StateError("corrupt state file (a reference cycle through immutable values)")
                stack.append((d, False))

    def execute(self, task: tuple[str, int]) -> None:
        what, i = task
        if what == "F":
            self.fill_object(i)
            return
        if what == "H":
            self.hready.add(task)
            return
        rec = self.records[i]
        k = self.kind[i]
        val = self.val
        if k == "T":
            self.objs[i] = tuple(val(x) for x in rec[1])
        elif k == "FS":
            self.objs[i] = frozenset(val(x) for x in rec[1])
        elif k == "E":
            cls = self.cls(rec[1])
            if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
                raise StateError("corrupt state file (enum class)")
            v = val(rec[2])
            m = cls._value2member_map_.get(v) if isinstance(v, (int, str, float, bytes, tuple)) else None
            self.objs[i] = m if m is not None else cls(v)
        elif k == "M":
            owner = val(rec[1])
            name = rec[2]
            if type(name) is not str:
                raise StateError("corrupt state file (method name)")
            is_cls = isinstance(owner, type)
            cls = owner if is_cls else type(owner)
            fn = _find_method(cls, name, is_cls)
            if fn is None:
                raise StateError(f"refusing {cls.__qualname__}.{name[:60]}: not a method")
            self.objs[i] = types.MethodType(fn, owner)
        else:  # pragma: no cover
            raise StateError("corrupt state file (record)")
