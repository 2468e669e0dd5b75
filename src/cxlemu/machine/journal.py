"""The write-ahead journal of a machine: the mutations since its last snapshot.

A running machine persists each mutation before acknowledging it.  The
kernel's user-facing entry points are small and deterministic, so instead of
rewriting the whole state (a snapshot) after each one, the machine appends
the entry point's input to this journal and fsyncs it:

* ``w``: a VFS write -- the path and the exact bytes written (and the errno
  the kernel answered, to check the replay);
* ``ioctl``: a memdev mailbox command (CXL_MEM_SEND_COMMAND) -- the memdev,
  the command id, the input payload and the output size;
* ``nd_set_config``: a label write on /dev/nmemN (ND_CMD_SET_CONFIG_DATA) --
  the nmem, the offset and the bytes.

On load, the records are replayed on the snapshot in order.  Anything else
that changes the machine (reboot, power failure, ``cxlemu mem``, workload
runs, a mutation that touched device media) takes a snapshot instead, which
starts a new, empty journal.

File format::

    header   8 bytes  b"CXLEMUJ1"
             8 bytes  generation (u64 LE): the snapshot this journal continues
    record   4 bytes  payload length (u32 LE)
             4 bytes  CRC-32 of the payload
             payload  u32 LE JSON length, JSON ``[kind, ...fields]``, raw bytes

A record torn by a crash (short, or with a bad CRC) ends the journal: it was
never acknowledged.  A journal whose generation is not the snapshot's is
stale (the machine died between writing a snapshot and resetting the
journal: the snapshot already holds every record) and is ignored.
"""

from __future__ import annotations

import json
import os
import struct
import zlib

from cxlemu.util.lazydc import dataclass

MAGIC = b"CXLEMUJ1"
_HEAD = struct.Struct("<8sQ")
_REC = struct.Struct("<II")
_JLEN = struct.Struct("<I")
MAX_RECORD = 64 << 20


@dataclass
class Record:
    """One journal entry: a write or an ioctl, replayed on the next load."""
    kind: str
    fields: list
    data: bytes


def encode_record(kind: str, fields: list, data: bytes = b"") -> bytes:
    j = json.dumps([kind, *fields], separators=(",", ":")).encode()
    payload = _JLEN.pack(len(j)) + j + bytes(data)
    return _REC.pack(len(payload), zlib.crc32(payload)) + payload


def read(path: str, generation: int) -> tuple[list[Record], int]:
    """(records, byte offset of the end of the last good record) of the
    journal at ``path`` for snapshot ``generation``; ([], 0) when there is no
    journal or it belongs to another generation."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return [], 0
    if len(raw) < _HEAD.size:
        return [], 0
    magic, gen = _HEAD.unpack_from(raw)
    if magic != MAGIC or gen != generation:
        return [], 0
    out: list[Record] = []
    pos = _HEAD.size
    while pos + _REC.size <= len(raw):
        n, crc = _REC.unpack_from(raw, pos)
        start = pos + _REC.size
        if n > MAX_RECORD or start + n > len(raw):
            break
        payload = raw[start:start + n]
        if zlib.crc32(payload) != crc or n < _JLEN.size:
            break
        (jl,) = _JLEN.unpack_from(payload)
        try:
            head = json.loads(payload[_JLEN.size:_JLEN.size + jl])
        except ValueError:
            break
        if not isinstance(head, list) or not head or not isinstance(head[0], str):
            break
        out.append(Record(head[0], head[1:], payload[_JLEN.size + jl:]))
        pos = start + n
    return out, pos


class Journal:
    """The open journal of a running machine: append + fdatasync per record."""

    def __init__(self, path: str, generation: int):
        self.path = path
        self.generation = generation
        self.records = 0
        self.bytes = 0
        self.fd = -1
        self.unsynced = False
        records, end = read(path, generation)
        if end:
            self.fd = os.open(path, os.O_WRONLY)
            os.ftruncate(self.fd, end)          # drop a torn tail
            os.lseek(self.fd, end, os.SEEK_SET)
            self.records, self.bytes = len(records), end - _HEAD.size
        else:
            self.reset(generation)

    def reset(self, generation: int) -> None:
        """Start an empty journal for snapshot ``generation`` (atomically)."""
        from cxlemu.util.fileio import atomic_write
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        atomic_write(self.path, _HEAD.pack(MAGIC, generation))
        self.generation = generation
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.records = 0
        self.bytes = 0
        self.unsynced = False

    def append(self, kind: str, fields: list, data: bytes = b"", sync: bool = True) -> None:
        """Append one record.  Once write(2) returns it survives the death of
        the process (it is in the page cache); ``sync`` also fdatasyncs it, so
        that it survives the host.  ``sync=False`` defers that to :meth:`sync`
        (group commit: the end of a forwarded command)."""
        rec = encode_record(kind, fields, data)
        view = memoryview(rec)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.records += 1
        self.bytes += len(rec)
        self.unsynced = True
        if sync:
            self.sync()

    def sync(self) -> None:
        if self.unsynced and self.fd >= 0:
            os.fdatasync(self.fd)
        self.unsynced = False

    def close(self) -> None:
        self.sync()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
