"""A small libtracefs + libtraceevent for the tools, over a backend: what
ndctl's cxl/json.c and cxl/monitor.c do with the real libraries
(util/event_trace.c), from the tracefs ABI alone.

* the tracing directory is ``/sys/kernel/tracing`` (or the debugfs
  fallback ``/sys/kernel/debug/tracing``);
* ``instance_create(name)`` makes ``instances/NAME`` (an existing one is
  reused, as ``tracefs_instance_create`` does) and never removes it
  (``tracefs_instance_free`` only frees the handle);
* ``event_enable(inst, system, event)`` writes "1" to each matching event's
  ``enable`` file (``event`` None: every event of the system);
* ``iterate_raw_events(inst, cb)`` reads every CPU's ``trace_pipe_raw``
  page by page (each read consumes a page), parses the pages with the
  layout ``events/header_page`` describes, decodes each record with its
  event's ``format`` file, and calls ``cb(event, record)`` in timestamp
  order across CPUs.

Nothing here imports the emulator's kernel model: the same code reads a
real Linux tracefs through a :class:`~cxlemu.sysfs.backend.DirectoryBackend`.
"""

from __future__ import annotations

import errno
import re
import struct
import uuid as uuidlib
from dataclasses import field
from typing import Any, Callable

from cxlemu.util.lazydc import dataclass

TRACING_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_FIELD_RE = re.compile(r"\s*field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
                       r"\s*signed:(?P<signed>-?\d+);")

# header_event constants (ring_buffer.c)
TYPE_PADDING, TYPE_TIME_EXTEND, TYPE_TIME_STAMP = 29, 30, 31


class TracefsError(OSError):
    pass


@dataclass(frozen=True)
class FieldFormat:
    type: str
    name: str
    offset: int
    size: int
    signed: bool
    is_dynamic: bool = False          # __data_loc
    is_array: bool = False
    is_string: bool = False

    @property
    def elementsize(self) -> int:
        if self.is_array and not self.is_dynamic:
            m = re.search(r"\[(\d+)\]", self.type)
            if m and int(m.group(1)):
                return self.size // int(m.group(1))
        return self.size


@dataclass
class EventFormat:
    system: str
    name: str
    id: int
    common: list[FieldFormat] = field(default_factory=list)
    fields: list[FieldFormat] = field(default_factory=list)

    def field(self, name: str) -> FieldFormat | None:
        for f in self.common + self.fields:
            if f.name == name:
                return f
        return None


def parse_format(system: str, text: str) -> EventFormat:
    name, eid = "", -1
    common: list[FieldFormat] = []
    fields: list[FieldFormat] = []
    section = common
    for line in text.splitlines():
        if line.startswith("name:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("ID:"):
            eid = int(line.split(":", 1)[1])
        elif not line.strip() and common:
            section = fields
        else:
            m = _FIELD_RE.match(line)
            if not m:
                continue
            decl = m.group("decl").strip()
            dyn = decl.startswith("__data_loc")
            if dyn:
                decl = decl[len("__data_loc"):].strip()
            ftype, _, fname = decl.rpartition(" ")
            arr = "[" in fname
            if arr:
                ftype += fname[fname.index("["):]
                fname = fname[:fname.index("[")]
            is_str = "char" in ftype and ("[" in ftype or dyn)
            section.append(FieldFormat(ftype, fname, int(m.group("off")), int(m.group("size")),
                                       m.group("signed") == "1", dyn, arr or dyn, is_str))
    return EventFormat(system, name, eid, common, fields)


@dataclass
class Record:
    ts: int
    cpu: int
    data: bytes
    missed: bool = False


def field_raw(ev: EventFormat, rec: Record, name: str) -> bytes | None:
    """tep_get_field_raw(): the bytes of a field (a __data_loc string: up to its NUL)."""
    f = ev.field(name)
    if f is None:
        return None
    if f.is_dynamic:
        (loc,) = struct.unpack_from("<I", rec.data, f.offset)
        off, n = loc & 0xFFFF, loc >> 16
        return rec.data[off:off + n]
    return rec.data[f.offset:f.offset + f.size]


def field_val(ev: EventFormat, rec: Record, name: str) -> int | None:
    """tep_get_field_val(): a number field (None when missing)."""
    f = ev.field(name)
    if f is None or f.is_dynamic:
        return None
    return int.from_bytes(rec.data[f.offset:f.offset + f.size], "little", signed=f.signed)


def field_str(ev: EventFormat, rec: Record, name: str) -> str | None:
    raw = field_raw(ev, rec, name)
    return None if raw is None else raw.split(b"\0", 1)[0].decode(errors="replace")


def record_pid(rec: Record) -> int:
    return int.from_bytes(rec.data[4:8], "little", signed=True)


def record_type(rec: Record) -> int:
    return int.from_bytes(rec.data[0:2], "little")


@dataclass(frozen=True)
class PageLayout:
    """From events/header_page: where the timestamp, commit and data are."""

    ts_off: int = 0
    commit_off: int = 8
    commit_size: int = 8
    data_off: int = 16


def parse_header_page(text: str) -> PageLayout:
    offs: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        m = re.match(r"\s*field:\s*(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);", line)
        if m:
            offs[m.group("decl").split()[-1]] = (int(m.group("off")), int(m.group("size")))
    ts = offs.get("timestamp", (0, 8))
    commit = offs.get("commit", (8, 8))
    data = offs.get("data", (16, 4080))
    return PageLayout(ts[0], commit[0], commit[1], data[0])


def parse_page(page: bytes, layout: PageLayout, cpu: int) -> list[Record]:
    """kbuffer: the records of one ring-buffer page."""
    if len(page) < layout.data_off:
        return []
    ts = int.from_bytes(page[layout.ts_off:layout.ts_off + 8], "little")
    commit = int.from_bytes(page[layout.commit_off:layout.commit_off + layout.commit_size], "little")
    missed = bool(commit & (1 << 31))
    size = commit & 0xFFFFF
    pos, end = layout.data_off, min(len(page), layout.data_off + size)
    out: list[Record] = []
    while pos + 4 <= end:
        (hdr,) = struct.unpack_from("<I", page, pos)
        tl, delta = hdr & 0x1F, hdr >> 5
        pos += 4
        if tl == TYPE_PADDING:
            if delta == 0:
                break
            (n,) = struct.unpack_from("<I", page, pos)
            pos += n
            continue
        if tl in (TYPE_TIME_EXTEND, TYPE_TIME_STAMP):
            (hi,) = struct.unpack_from("<I", page, pos)
            pos += 4
            ext = (hi << 27) + delta
            ts = ext if tl == TYPE_TIME_STAMP else ts + ext
            continue
        if tl == 0:
            (n,) = struct.unpack_from("<I", page, pos)
            pos += 4
            n = (n - 4 + 3) & ~3
        else:
            n = tl * 4
        ts += delta
        out.append(Record(ts, cpu, bytes(page[pos:pos + n]), missed and not out))
        pos += n
    return out


class Instance:
    def __init__(self, tfs: "Tracefs", name: str | None):
        self.tfs, self.name = tfs, name

    @property
    def path(self) -> str:
        return self.tfs.dir if not self.name else f"{self.tfs.dir}/instances/{self.name}"

    def file(self, rel: str) -> str:
        return f"{self.path}/{rel}"


class Tracefs:
    """The tracing directory of a backend (``tracefs_tracing_dir``)."""

    def __init__(self, backend: Any, directory: str):
        self.backend = backend
        self.dir = directory
        self._events: dict[int, EventFormat] | None = None
        self._layout: PageLayout | None = None

    @classmethod
    def find(cls, backend: Any) -> "Tracefs | None":
        for d in TRACING_DIRS:
            try:
                if backend.isdir(d) and backend.exists(f"{d}/events"):
                    return cls(backend, d)
            except OSError:
                continue
        return None

    # ---- instances ------------------------------------------------------------------------
    def instance_create(self, name: str) -> Instance:
        inst = Instance(self, name)
        if not self.backend.isdir(inst.path):
            try:
                self.backend.mkdir(inst.path)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
        return inst

    def instance_destroy(self, inst: Instance) -> None:
        self.backend.rmdir(inst.path)

    # ---- switches ----------------------------------------------------------------------------------
    def systems(self) -> list[str]:
        out = []
        for s in self.backend.listdir(f"{self.dir}/events"):
            if self.backend.isdir(f"{self.dir}/events/{s}"):
                out.append(s)
        return out

    def system_events(self, system: str) -> list[str]:
        base = f"{self.dir}/events/{system}"
        return [e for e in self.backend.listdir(base) if self.backend.isdir(f"{base}/{e}")]

    def event_enable(self, inst: Instance, system: str, event: str | None, on: bool = True) -> None:
        """tracefs_event_enable(): -1/ENOENT when nothing matches."""
        if system not in self.systems():
            raise TracefsError(errno.ENOENT, f"no event system {system}")
        names = self.system_events(system) if event is None else [event]
        if event is not None and event not in self.system_events(system):
            raise TracefsError(errno.ENOENT, f"no event {system}:{event}")
        for n in names:
            self.backend.write(inst.file(f"events/{system}/{n}/enable"), "1" if on else "0")

    def trace_is_on(self, inst: Instance) -> bool:
        try:
            return self.backend.read(inst.file("tracing_on")).strip() == "1"
        except OSError:
            return False

    def trace_on(self, inst: Instance, on: bool = True) -> None:
        self.backend.write(inst.file("tracing_on"), "1" if on else "0")

    # ---- parsing (tracefs_local_events) ---------------------------------------------------------------
    def events(self) -> dict[int, EventFormat]:
        if self._events is None:
            out: dict[int, EventFormat] = {}
            for s in self.systems():
                for e in self.system_events(s):
                    try:
                        fmt = parse_format(s, self.backend.read(f"{self.dir}/events/{s}/{e}/format"))
                    except OSError:
                        continue
                    out[fmt.id] = fmt
            self._events = out
        return self._events

    def layout(self) -> PageLayout:
        if self._layout is None:
            try:
                self._layout = parse_header_page(self.backend.read(f"{self.dir}/events/header_page"))
            except OSError:
                self._layout = PageLayout()
        return self._layout

    def cpus(self, inst: Instance) -> list[int]:
        try:
            names = self.backend.listdir(inst.file("per_cpu"))
        except OSError:
            return []
        return sorted(int(n[3:]) for n in names if n.startswith("cpu") and n[3:].isdigit())

    def read_cpu(self, inst: Instance, cpu: int) -> list[Record]:
        path = inst.file(f"per_cpu/cpu{cpu}/trace_pipe_raw")
        out: list[Record] = []
        for _ in range(1 << 16):
            page = self.backend.read_stream(path, 4096)
            if not page:
                break
            out.extend(parse_page(page, self.layout(), cpu))
        return out

    def iterate_raw_events(self, inst: Instance,
                           callback: Callable[[EventFormat, Record], Any]) -> int:
        """tracefs_iterate_raw_events(): returns the number of records seen."""
        evs = self.events()
        recs: list[Record] = []
        for cpu in self.cpus(inst):
            recs.extend(self.read_cpu(inst, cpu))
        recs.sort(key=lambda r: (r.ts, r.cpu))
        n = 0
        for r in recs:
            ev = evs.get(record_type(r))
            if ev is None:
                continue
            n += 1
            if callback(ev, r):
                break
        return n

    def has_data(self, inst: Instance) -> bool:
        try:
            return bool(self.backend.poll(inst.file("trace_pipe"), 0))
        except (OSError, AttributeError):
            return False


def record_to_json(ev: EventFormat, rec: Record) -> dict[str, Any]:
    """util/event_trace.c event_to_json(): system, event, timestamp, then
    every non-common field (strings, arrays of numbers, uuid_t as text,
    numbers by their size and sign)."""
    out: dict[str, Any] = {"system": ev.system, "event": ev.name, "timestamp": rec.ts}
    for f in ev.fields:
        raw = field_raw(ev, rec, f.name)
        if raw is None:
            continue
        if f.is_string and f.is_dynamic:
            out[f.name] = raw.split(b"\0", 1)[0].decode(errors="replace")
        elif f.is_array:
            es = f.elementsize or 1
            out[f.name] = [_num(raw[i:i + es], f.signed) for i in range(0, f.size - f.size % es, es)]
        elif "uuid_t" in f.type.lower():
            out[f.name] = str(uuidlib.UUID(bytes=bytes(raw[:16]).ljust(16, b"\0")))
        else:
            out[f.name] = _num(raw, f.signed)
    return out


def _num(b: bytes, signed: bool) -> int:
    return int.from_bytes(b, "little", signed=signed) if len(b) in (1, 2, 4, 8) else int.from_bytes(b, "little")
