"""``cxl read-labels``, ``cxl write-labels`` and ``cxl zero-labels``
(cxl/memdev.c memdev_action with action_read/action_write/action_zero;
cxl/lib/libcxl.c lsa_op).

* arguments: ``memN``, ``N``, the host device name, or ``all``
  (``'%s' is not a valid memdev name``); none is a usage error (129);
* options: -b/--bus, -v/--verbose, -S/--serial, -s/--size, -O/--offset,
  plus -o/--output (read) or -i/--input (write);
* the label area is accessed with GET_LSA / SET_LSA ioctls in chunks of
  ``payload_max - 8`` bytes (the Set LSA header);
* writes and zeroing refuse while the memdev's nvdimm (``memN/pmemM``) is
  bound: ``<mem>: has active nvdimm bridge, abort label write`` (EBUSY);
* write-labels: one memdev only; without --size the file size is the
  length and must not exceed the label area: ``File size (N) greater than
  label area size (M), aborting`` (EINVAL, exit 1, nothing written);
* summaries through the "cxl memdev" log at INFO on stderr:
  ``cxl memdev: cmd_read_labels: read 1 mem``.

Memdevs, their filters and the mailbox come from :mod:`cxlemu.tools.libcxl`
(``cxl_memdev_foreach``, util_cxl_memdev_filter[_by_bus],
``cxl_memdev_nvdimm_bridge_active``, ``cxl_cmd_new_read_label`` /
``cxl_cmd_new_write_label`` submitted through ``MemdevMailbox.send``).
"""

from __future__ import annotations

import errno
import os

from cxlemu.hw.mailbox.opcodes import CxlMemCommandId
from cxlemu.hw.mailbox.payloads import GetLsaInput, SetLsaInput
from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.labelfiles import label_options, open_label_files
from cxlemu.tools.common.log import Log
from cxlemu.tools.common.parse_options import (OPT_END, OPT_STRING, error_text, parse_options,
                                               usage_with_options)
from cxlemu.tools.libcxl import CommandError, CxlContext, Memdev

from .action import finish, memdev_base_options, set_debug
from .filter import memdev_filter, memdev_filter_by_bus


OPTIONS = {
    "read": memdev_base_options() + label_options() + [
        OPT_STRING("o", "output", "outfile", "output-file", "filename to write label area contents"), OPT_END()],
    "write": memdev_base_options() + label_options() + [
        OPT_STRING("i", "input", "infile", "input-file", "filename to read label area data"), OPT_END()],
    "zero": memdev_base_options() + label_options() + [OPT_END()],
}
USAGE = {
    "read": "cxl read-labels <mem0> [<mem1>..<memN>] [-o <filename>]",
    "write": "cxl write-labels <memdev> [-i <filename>]",
    "zero": "cxl zero-labels <mem0> [<mem1>..<memN>] [<options>]",
}
FUNC = {"read": "cmd_read_labels", "write": "cmd_write_labels", "zero": "cmd_zero_labels"}
PAST = {"read": "read", "write": "wrote", "zero": "zeroed"}


class _Lsa:
    """libcxl lsa_op(): chunks of payload_max - 8 bytes (the Set LSA header),
    one mailbox command each."""

    def __init__(self, md: Memdev):
        self.md = md
        self.log = md.ctx.log

    def _op(self, op: str, offset: int, length: int, data: bytes | None = None) -> tuple[int, bytes]:
        chunk = self.md.payload_max - SetLsaInput.HEADER_SIZE
        if length == 0:
            return 0, b""
        if chunk <= 0:
            return -errno.EINVAL, b""
        out = bytearray()
        rc = pos = 0
        while pos < length:
            n = min(chunk, length - pos)
            try:
                if op == "get":
                    out += self.md.mailbox.send(CxlMemCommandId.GET_LSA, GetLsaInput(offset + pos, n).encode(),
                                                n)[:n]
                else:
                    piece = bytes(n) if data is None else data[pos:pos + n]
                    self.md.mailbox.send(CxlMemCommandId.SET_LSA, SetLsaInput(offset + pos, piece).encode())
            except CommandError as e:
                if e.status:
                    self.log.err("__lsa_op", f"{self.md.devname}: firmware status: {e.status}")
                    rc = -errno.ENXIO
                else:
                    rc = -(e.errno or errno.EIO)
                    self.log.err("__lsa_op", f"{self.md.devname}: cmd submission failed: {os.strerror(-rc)}")
                break
            pos += n
        if rc and op == "set":
            self.log.err("lsa_op", f"{self.md.devname}: labels may be in an inconsistent state")
        return rc, bytes(out)

    def read(self, offset: int, length: int) -> tuple[int, bytes]:
        return self._op("get", offset, length)

    def write(self, offset: int, data: bytes) -> int:
        return self._op("set", offset, len(data), data)[0]

    def zero(self, offset: int, length: int) -> int:
        return self._op("set", offset, length, None)[0]


def _action(kind: str, md: Memdev, prm: dict, ml: Log, state: dict) -> int:
    lsa = _Lsa(md)
    offset = prm.get("offset") or 0
    if kind == "zero":
        size = prm.get("len") or md.label_size
        if md.nvdimm_bridge_active():
            ml.err("action_zero", f"{md.devname}: has active nvdimm bridge, abort label write")
            return -errno.EBUSY
        rc = lsa.zero(offset, size)
        if rc < 0:
            ml.err("action_zero", f"{md.devname}: label zeroing failed: {os.strerror(-rc)}")
        return rc
    if kind == "write":
        if md.nvdimm_bridge_active():
            ml.err("action_write", f"{md.devname}: has active nvdimm bridge, abort label write")
            return -errno.EBUSY
        f = state["in"]
        size = prm.get("len") or 0
        if not size:
            try:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(0, os.SEEK_SET)
            except (OSError, ValueError):
                size = 0
            if size > md.label_size:
                ml.err("action_write", f"File size ({size}) greater than label area size "
                                       f"({md.label_size}), aborting")
                return -errno.EINVAL
        buf = f.read(size)
        if len(buf) != size:
            return -errno.ENXIO
        rc = lsa.write(offset, buf)
        if rc < 0:
            ml.err("action_write", f"{md.devname}: label write failed: {os.strerror(-rc)}")
        return rc
    size = prm.get("len") or md.label_size
    rc, data = lsa.read(offset, size)
    if rc < 0:
        ml.err("action_read", f"{md.devname}: label read failed: {os.strerror(-rc)}")
        return rc
    state["out"].write(data)
    return 0


def _memdev_action(kind: str, argv: list[str], ctx: CommandContext, ml: Log) -> int:
    opts = OPTIONS[kind]
    u = [USAGE[kind]]
    parsed = parse_options(argv, opts, u)
    prm = parsed.values
    args = list(parsed.args)
    if not args:
        usage_with_options(u, opts)
    err = 0
    for i, a in enumerate(args):
        if prm.get("serial"):
            try:
                int(a, 0)
                continue
            except ValueError:
                pass
        else:
            if a == "all":          # C sets argc = 1: only the first argument remains
                args = args[:1]
                break
            if (a.startswith("mem") and a[3:].isdigit()) or a.isdigit():
                continue
        ml.err("memdev_action", f"'{a}' is not a valid memdev {'serial number' if prm.get('serial') else 'name'}")
        err += 1
    if err == len(args):
        usage_with_options(u, opts)
    state: dict = {}
    rc = open_label_files(kind, prm, ctx.stdout, state, lambda msg: ml.err("memdev_action", msg))
    if rc:
        return rc
    lib = CxlContext(ctx.backend, ctx.env, ctx.stderr)
    set_debug(lib, ml, bool(prm.get("verbose")))
    rc = count = err = 0
    single = None
    memdevs = lib.memdevs()
    try:
        for a in args:
            found = False
            for md in memdevs:
                ident, serial = (None, a) if prm.get("serial") else (a, None)
                if not memdev_filter(md, ident, serial):
                    continue
                if not memdev_filter_by_bus(md, prm.get("bus")):
                    continue
                found = True
                if kind == "write":
                    single, r = md, 0
                else:
                    r = _action(kind, md, prm, ml, state)
                if r == 0:
                    count += 1
                elif not err:
                    err = r
            if not found:
                ml.info("memdev_action", f"no memdev matches {a}")
        rc = err
        if kind == "write":
            if count > 1:
                usage_with_options(u, opts, error_text("write-labels only supports writing a single memdev\n"))
            elif single is not None:
                rc = _action(kind, single, prm, ml, state)
                if rc:
                    count = 0
    finally:
        for key in ("in", "out"):
            f = state.get(key)
            if f is not None and getattr(f, "name", None) in (prm.get("infile"), prm.get("outfile")) \
                    and getattr(f, "name", None) is not None:
                f.close()
    return count if count > 0 else rc


def _run(kind: str, argv: list[str], ctx: CommandContext) -> int:
    ml = Log.init("cxl memdev", "CXL_MEMDEV_LOG", ctx.env, stream=ctx.stderr)
    n = _memdev_action(kind, argv, ctx, ml)
    return finish(n, ml, FUNC[kind], lambda c, s: f"{PAST[kind]} {c} mem{s}")


def cmd_read_labels(argv: list[str], ctx: CommandContext) -> int:
    """cxl read-labels <mem0> [<mem1>..<memN>] [-o <filename>]"""
    return _run("read", argv, ctx)


def cmd_write_labels(argv: list[str], ctx: CommandContext) -> int:
    """cxl write-labels <memdev> [-i <filename>]"""
    return _run("write", argv, ctx)


def cmd_zero_labels(argv: list[str], ctx: CommandContext) -> int:
    """cxl zero-labels <mem0> [<mem1>..<memN>] [<options>]"""
    return _run("zero", argv, ctx)


__all__ = ["cmd_read_labels", "cmd_write_labels", "cmd_zero_labels"]
