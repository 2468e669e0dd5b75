"""Ring-buffer pages as ``trace_pipe_raw`` returns them
(kernel/trace/ring_buffer.c; described to readers by ``events/header_page``
and ``events/header_event``).

A page is 4096 bytes: ``u64 timestamp`` (of the page), ``local_t commit``
(8 bytes: the number of data bytes, with bit 31 set when events were lost
before this page) and 4080 bytes of data.  Each event starts with a 32-bit
header: ``type_len`` in bits 4:0 and ``time_delta`` (from the previous
event, the first one from the page timestamp) in bits 31:5.  ``type_len``
1..28 gives the payload length in 4-byte words; 0 means the length (payload
+ 4) is in the next word; 30 is a time extend (the delta's upper bits in the
next word) used when a delta does not fit 27 bits; 29 is padding.
"""

from __future__ import annotations

import struct

PAGE_SIZE = 4096
PAGE_HEADER = 16
PAGE_DATA = PAGE_SIZE - PAGE_HEADER
TS_BITS = 27
TYPE_PADDING = 29
TYPE_TIME_EXTEND = 30
MAX_SMALL_DATA = 28 * 4
MISSED_EVENTS = 1 << 31

HEADER_PAGE = (
    "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
    "\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
    "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
    "\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n")

HEADER_EVENT = (
    "# compressed entry header\n"
    "\ttype_len    :    5 bits\n"
    "\ttime_delta  :   27 bits\n"
    "\tarray       :   32 bits\n"
    "\n"
    "\tpadding     : type == 29\n"
    "\ttime_extend : type == 30\n"
    "\ttime_stamp : type == 31\n"
    "\tdata max type_len  == 28\n")


def event_bytes(delta: int, payload: bytes) -> bytes:
    """One event (with a time extend first when ``delta`` needs it)."""
    out = b""
    if delta >= 1 << TS_BITS:
        out += struct.pack("<II", TYPE_TIME_EXTEND | ((delta & ((1 << TS_BITS) - 1)) << 5), delta >> TS_BITS)
        delta = 0
    n = len(payload)
    padded = payload + bytes(-n % 4)
    if n <= MAX_SMALL_DATA and n:
        out += struct.pack("<I", (len(padded) // 4) | (delta << 5)) + padded
    else:
        out += struct.pack("<II", 0 | (delta << 5), len(padded) + 4) + padded
    return out


def event_size(delta: int, payload: bytes) -> int:
    n = -(-len(payload) // 4) * 4
    size = 4 + n + (4 if not len(payload) or len(payload) > MAX_SMALL_DATA else 0)
    return size + (8 if delta >= 1 << TS_BITS else 0)


def build_page(records: list[tuple[int, bytes]], missed: bool) -> tuple[bytes, int]:
    """A page holding as many of ``records`` (ts, payload) as fit, in order;
    returns (page bytes, number of records used).  At least one record is
    used when any is given (an event never spans pages)."""
    if not records:
        return b"", 0
    base = records[0][0]
    prev = base
    data = bytearray()
    used = 0
    for ts, payload in records:
        delta = max(0, ts - prev)
        ev = event_bytes(delta, payload)
        if len(data) + len(ev) > PAGE_DATA and used:
            break
        data += ev
        prev = ts
        used += 1
    commit = len(data) | (MISSED_EVENTS if missed else 0)
    page = struct.pack("<Qq", base, commit) + bytes(data)
    return page + bytes(PAGE_SIZE - len(page)), used


def parse_page(page: bytes) -> list[tuple[int, bytes]]:
    """Inverse of :func:`build_page` (for tests and our own tools): (ts, payload) pairs."""
    if len(page) < PAGE_HEADER:
        return []
    ts, commit = struct.unpack_from("<Qq", page)
    size = commit & 0xFFFFF
    pos, end = PAGE_HEADER, PAGE_HEADER + size
    out = []
    while pos + 4 <= end:
        (hdr,) = struct.unpack_from("<I", page, pos)
        tl, delta = hdr & 0x1F, hdr >> 5
        pos += 4
        if tl == TYPE_PADDING:
            break
        if tl == TYPE_TIME_EXTEND:
            (hi,) = struct.unpack_from("<I", page, pos)
            ts += (hi << TS_BITS) + delta
            pos += 4
            continue
        if tl == 0:
            (n,) = struct.unpack_from("<I", page, pos)
            pos += 4
            n -= 4
        else:
            n = tl * 4
        ts += delta
        out.append((ts, bytes(page[pos:pos + n])))
        pos += n
    return out
