"""Trace event definitions: binary layout, the ``format`` file and the
text a ``trace`` reader prints (include/trace/trace_events.h,
kernel/trace/trace_events.c ``f_show``).

An event is a C struct (``struct trace_event_raw_<name>``): the 8-byte
common header (``common_type``, ``common_flags``, ``common_preempt_count``,
``common_pid``) and then the ``TP_STRUCT__entry`` fields with C alignment.
``__string()`` fields are ``__data_loc`` words (u32: length << 16 | offset)
pointing at NUL-terminated strings appended after the fixed part, from
``offsetof(__data)`` on; the record is ``sizeof(struct) + string bytes``.
The ``format`` file lists each field as
``field:<type> <name>;<TAB>offset:N;<TAB>size:N;<TAB>signed:N;`` -- what
libtraceevent parses to decode raw records.
"""

from __future__ import annotations

import struct
import uuid as uuidlib
from dataclasses import field
from typing import Callable, Mapping

from cxlemu.util.lazydc import dataclass

COMMON_FIELDS = (
    ("unsigned short", "common_type", 0, 2, 0),
    ("unsigned char", "common_flags", 2, 1, 0),
    ("unsigned char", "common_preempt_count", 3, 1, 0),
    ("int", "common_pid", 4, 4, 1),
)
COMMON_SIZE = 8

_NUM = {"u8": (1, 0, "B"), "u16": (2, 0, "H"), "u32": (4, 0, "I"), "u64": (8, 0, "Q"),
        "s8": (1, 1, "b"), "s16": (2, 1, "h"), "s32": (4, 1, "i"), "s64": (8, 1, "q"),
        "int": (4, 1, "i"), "unsigned long": (8, 0, "Q"), "char": (1, 1, "b")}


@dataclass(frozen=True)
class Field:
    """One TP_STRUCT__entry member.  ``kind``: "num" (``__field``), "str"
    (``__string``), "array" (``__array(type, name, count)``) or "struct"
    (``__field_struct(uuid_t, name)``)."""

    ctype: str
    name: str
    kind: str = "num"
    count: int = 0
    offset: int = 0

    @property
    def size(self) -> int:
        if self.kind == "str":
            return 4
        if self.kind == "struct":
            return 16
        n = _NUM[self.ctype][0]
        return n * self.count if self.kind == "array" else n

    @property
    def align(self) -> int:
        if self.kind == "str":
            return 4
        if self.kind == "struct":
            return 1
        return _NUM[self.ctype][0]

    @property
    def signed(self) -> int:
        if self.kind in ("str", "struct"):
            return 0
        return _NUM[self.ctype][1]

    @property
    def decl(self) -> str:
        if self.kind == "str":
            return f"__data_loc char[] {self.name}"
        if self.kind == "array":
            return f"{self.ctype} {self.name}[{self.count}]"
        return f"{self.ctype} {self.name}"


def S(name: str) -> Field:
    return Field("char", name, "str")


def F(ctype: str, name: str) -> Field:
    return Field(ctype, name)


def A(ctype: str, name: str, count: int) -> Field:
    return Field(ctype, name, "array", count)


def U(name: str) -> Field:
    return Field("uuid_t", name, "struct")


Printer = Callable[[Mapping[str, object]], str]


@dataclass
class EventDef:
    """A trace event: ``system:name`` with its fields, laid out at creation."""

    system: str
    name: str
    fields: list[Field]
    print_fmt: str = ""
    printer: Printer | None = None
    id: int = 0
    size: int = 0            # sizeof(struct trace_event_raw_*)
    data_offset: int = 0     # offsetof(..., __data)
    _fmt: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        off = COMMON_SIZE
        laid: list[Field] = []
        max_align = 4
        for f in self.fields:
            off = -(-off // f.align) * f.align
            laid.append(Field(f.ctype, f.name, f.kind, f.count, off))
            off += f.size
            max_align = max(max_align, f.align)
        self.fields = laid
        self.data_offset = off
        self.size = -(-off // max_align) * max_align

    @property
    def full_name(self) -> str:
        return f"{self.system}:{self.name}"

    # ---- binary record -----------------------------------------------------------------
    def encode(self, values: Mapping[str, object], pid: int, flags: int = 0, preempt: int = 0) -> bytes:
        buf = bytearray(self.size)
        struct.pack_into("<HBBi", buf, 0, self.id, flags, preempt, pid)
        dyn = bytearray()
        for f in self.fields:
            v = values.get(f.name)
            if f.kind == "str":
                raw = (str(v or "")).encode(errors="replace") + b"\0"
                loc = self.data_offset + len(dyn)
                struct.pack_into("<I", buf, f.offset, (len(raw) << 16) | loc)
                dyn += raw
            elif f.kind == "struct":
                raw = v.bytes if isinstance(v, uuidlib.UUID) else bytes(v or b"")
                buf[f.offset:f.offset + 16] = raw.ljust(16, b"\0")[:16]
            elif f.kind == "array":
                if isinstance(v, (bytes, bytearray)):
                    raw = bytes(v)
                else:
                    code = _NUM[f.ctype][2]
                    raw = struct.pack(f"<{f.count}{code}", *(list(v or []) + [0] * f.count)[:f.count])
                buf[f.offset:f.offset + f.size] = raw.ljust(f.size, b"\0")[:f.size]
            else:
                code = _NUM[f.ctype][2]
                n = int(v or 0)
                bits = 8 * f.size
                if f.signed:
                    n = ((n + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))
                else:
                    n &= (1 << bits) - 1
                struct.pack_into("<" + code, buf, f.offset, n)
        # the string area starts at offsetof(__data), inside the struct's tail
        # padding; the record is sizeof(struct) + the string bytes
        out = bytearray(buf[:self.data_offset]) + dyn
        out += bytes(self.size + len(dyn) - len(out))
        return bytes(out)

    def decode(self, raw: bytes) -> dict[str, object]:
        out: dict[str, object] = {}
        for _t, name, off, size, signed in COMMON_FIELDS:
            out[name] = int.from_bytes(raw[off:off + size], "little", signed=bool(signed))
        for f in self.fields:
            if f.kind == "str":
                (loc,) = struct.unpack_from("<I", raw, f.offset)
                o, n = loc & 0xFFFF, loc >> 16
                out[f.name] = raw[o:o + n].split(b"\0", 1)[0].decode(errors="replace")
            elif f.kind == "struct":
                out[f.name] = uuidlib.UUID(bytes=bytes(raw[f.offset:f.offset + 16]))
            elif f.kind == "array":
                out[f.name] = bytes(raw[f.offset:f.offset + f.size])
            else:
                out[f.name] = int.from_bytes(raw[f.offset:f.offset + f.size], "little", signed=bool(f.signed))
        return out

    # ---- the format file -------------------------------------------------------------------
    def format_text(self) -> str:
        lines = [f"name: {self.name}", f"ID: {self.id}", "format:"]
        for t, name, off, size, signed in COMMON_FIELDS:
            lines.append(f"\tfield:{t} {name};\toffset:{off};\tsize:{size};\tsigned:{signed};")
        lines.append("")
        for f in self.fields:
            lines.append(f"\tfield:{f.decl};\toffset:{f.offset};\tsize:{f.size};\tsigned:{f.signed};")
        lines.append("")
        lines.append(f"print fmt: {self.print_fmt}")
        return "\n".join(lines) + "\n"

    def text(self, values: Mapping[str, object]) -> str:
        if self.printer is not None:
            return self.printer(values)
        return " ".join(f"{f.name}={values.get(f.name)}" for f in self.fields)


class Registry:
    """Events by id and by system; ids are handed out in registration order
    after the kernel's built-in ones (here from 1000)."""

    FIRST_ID = 1000

    def __init__(self) -> None:
        self.by_id: dict[int, EventDef] = {}
        self.by_name: dict[tuple[str, str], EventDef] = {}

    def add(self, ev: EventDef) -> EventDef:
        ev.id = self.FIRST_ID + len(self.by_id)
        self.by_id[ev.id] = ev
        self.by_name[(ev.system, ev.name)] = ev
        return ev

    def systems(self) -> list[str]:
        return list(dict.fromkeys(s for s, _ in self.by_name))

    def events(self, system: str) -> list[EventDef]:
        return [e for (s, _), e in self.by_name.items() if s == system]

    def get(self, system: str, name: str) -> EventDef | None:
        return self.by_name.get((system, name))
