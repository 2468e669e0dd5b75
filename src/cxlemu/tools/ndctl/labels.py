"""ndctl read-labels / write-labels / zero-labels / init-labels / check-labels
and disable-dimm / enable-dimm (ndctl/dimm.c dimm_action) on nmem devices.

disable-dimm refuses a dimm whose region is active (``nmemN is active,
skipping...``, EBUSY) and otherwise unbinds the nvdimm driver; enable-dimm
binds it, which re-reads the label area.  Both print ``disabled N nmem`` /
``enabled N nmem`` and exit 1 when no dimm was acted on because of an error.

The label area is reached through the nmem's ND_IOCTL_*_CONFIG_* commands,
which the emulator provides on /dev/nmemN (the kernel forwards them to the
memdev mailbox, GET_LSA / SET_LSA).  Writes are refused while a region is
active on the dimm (``<dev>: regions active, abort label write`` /
``dimm is active, abort label write``); after a write the dimm is disabled
and re-enabled so the kernel re-reads its label cache.  Summaries:
``read 1 nmem``, ``wrote 1 nmem``, ``zeroed 1 nmem``, ``initialized 1 nmem``.
"""

from __future__ import annotations

import errno
import os

from cxlemu.kernel.nvdimm import label as lbl
from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.jsonc import display_json
from cxlemu.tools.common.labelfiles import label_options, open_label_files
from cxlemu.tools.common.parse_options import (OPT_BOOLEAN, OPT_END, OPT_STRING, error_text,
                                               parse_options, usage_with_options)
from cxlemu.tools.common.util_json import UTIL_JSON_HUMAN, json_object_hex, json_object_size
from cxlemu.tools.libndctl.filter import bus_filter, dimm_filter

from .common import make_ctx


def _base() -> list:
    return [OPT_STRING("b", "bus", "bus", "bus-id", "<nmem> must be on a bus with an id/provider of <bus-id>"),
            OPT_BOOLEAN("v", "verbose", "verbose", "turn on debug")]


OPTS = {
    "read": _base() + label_options() + [
        OPT_STRING("o", "output", "outfile", "output-file", "filename to write label area contents"),
        OPT_BOOLEAN("j", "json", "json", "parse label data into json"),
        OPT_BOOLEAN("u", "human", "human", "use human friendly number formats (implies --json)"),
        OPT_BOOLEAN("I", "index", "index", "limit read to the index block area"), OPT_END()],
    "write": _base() + label_options() + [
        OPT_STRING("i", "input", "infile", "input-file", "filename to read label area data"), OPT_END()],
    "zero": _base() + label_options() + [OPT_END()],
    "init": _base() + [
        OPT_BOOLEAN("f", "force", "force", "force initialization even if existing index-block present"),
        OPT_STRING("V", "label-version", "labelversion", "version-number",
                   "namespace label specification version (default: 1.1)"), OPT_END()],
    "check": _base() + [OPT_END()],
    "disable": _base() + [OPT_END()],
    "enable": _base() + [OPT_END()],
}
USAGES = {
    "read": "ndctl read-labels <nmem0> [<nmem1>..<nmemN>] [-o <filename>]",
    "write": "ndctl write-labels <nmem> [-i <filename>]",
    "zero": "ndctl zero-labels <nmem0> [<nmem1>..<nmemN>] [<options>]",
    "init": "ndctl init-labels <nmem0> [<nmem1>..<nmemN>] [<options>]",
    "check": "ndctl check-labels <nmem0> [<nmem1>..<nmemN>] [<options>]",
    "disable": "ndctl disable-dimm <nmem0> [<nmem1>..<nmemN>] [<options>]",
    "enable": "ndctl enable-dimm <nmem0> [<nmem1>..<nmemN>] [<options>]",
}
SUMMARY = {"read": "read {} nmem{}", "write": "wrote {} nmem{}", "zero": "zeroed {} nmem{}",
           "init": "initialized {} nmem{}", "check": "successfully verified {} nmem label{}",
           "disable": "disabled {} nmem{}", "enable": "enabled {} nmem{}"}


def _nmem_dev(ctx: CommandContext, dimm):
    vfs_chardev = getattr(ctx.backend, "dax_device", None)
    dev = vfs_chardev(f"/dev/{dimm.devname}") if vfs_chardev else None
    if dev is None or not hasattr(dev, "ioctl_get_config_data"):
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
    return dev


def _ioctl(fn, *args):
    from cxlemu.kernel.base.device import KernelError
    try:
        return fn(*args)
    except KernelError as e:
        raise OSError(e.errno, os.strerror(e.errno)) from None


def _dump_json(dimm, data: bytes, flags: int, index_only: bool) -> dict | None:
    size = len(data)
    cur, label_size = lbl.probe_label_area(data)
    if label_size is None:
        label_size = 128
    try:
        _nslot, isize = lbl.nslot_for(size, label_size)
    except lbl.LabelAreaTooSmall:
        return None
    j: dict = {"dev": dimm.devname}
    idx = []
    for off in (0, isize):
        blk = lbl.IndexBlock.decode(data[off:off + isize])
        idx.append({"signature": blk.sig.split(b"\0", 1)[0].decode("latin-1"), "major": blk.major,
                    "minor": blk.minor, "labelsize": 1 << (7 + blk.labelsize), "seq": blk.seq,
                    "nslot": blk.nslot})
    j["index"] = idx
    if index_only:
        return j
    labels = []
    slot = 0
    for off in range(2 * isize, size, label_size):
        raw = data[off:off + label_size]
        if len(raw) < label_size:
            break
        x = lbl.EfiNamespaceLabel.decode(raw if label_size in (128, 256) else raw[:256])
        if x.slot == slot:
            e = {"uuid": str(x.uuid), "name": x.name, "slot": x.slot, "position": x.position,
                 "nlabel": x.nlabel, "flags": json_object_hex(x.flags, flags),
                 "isetcookie": json_object_hex(x.isetcookie, flags), "lbasize": x.lbasize,
                 "dpa": json_object_hex(x.dpa, flags), "rawsize": json_object_size(x.rawsize, flags)}
            if label_size >= 256:
                e["type_guid"] = str(x.type_guid)
                e["abstraction_guid"] = str(x.abstraction_guid)
            labels.append(e)
        slot += 1
    if not labels:
        return None
    j["label"] = labels
    return j


def _action(kind: str, ctx: CommandContext, dimm, prm: dict, state: dict) -> int:
    if kind == "disable":                   # dimm.c action_disable()
        if dimm.is_active() == 1:
            ctx.stderr.write(f"{dimm.devname} is active, skipping...\n")
            return -errno.EBUSY
        return dimm.disable()
    if kind == "enable":                    # dimm.c action_enable()
        return dimm.enable()
    dev = _nmem_dev(ctx, dimm)
    size, _max = dev.ioctl_config_size()
    length = prm.get("len") or 0
    offset = prm.get("offset") or 0
    if kind in ("write", "zero") and dimm.is_active() == 1:
        ctx.stderr.write("dimm is active, abort label write\n" if kind == "write"
                         else f"{dimm.devname}: regions active, abort label write\n")
        return -errno.EBUSY
    if kind == "read":
        n = length or (size - offset)
        data = _ioctl(dev.ioctl_get_config_data, offset, n)
        if state.get("json") is not None:
            j = _dump_json(dimm, data, UTIL_JSON_HUMAN if prm.get("human") else 0, bool(prm.get("index")))
            if j is None:
                return -errno.ENOMEM
            state["json"].append(j)
        else:
            state["out"].write(data)
        return 0
    if kind == "write":
        n = length or (size - offset)
        cur = bytearray(_ioctl(dev.ioctl_get_config_data, offset, n))
        new = state["in"].read(n)
        cur[:len(new)] = new
        if new:
            _ioctl(dev.ioctl_set_config_data, offset, bytes(cur))
        return _revalidate(dimm)
    if kind == "zero":
        n = length or (size - offset)
        _ioctl(dev.ioctl_set_config_data, offset, bytes(n))
        return _revalidate(dimm)
    # init / check
    data = bytearray(_ioctl(dev.ioctl_get_config_data, 0, size))
    if kind == "init" and dimm.is_active() == 1:
        ctx.stderr.write(f"{dimm.devname}: regions active, abort label write\n")
        return -errno.EBUSY
    valid = lbl.current_index(data) >= 0
    if kind == "check":
        return 0 if valid else -errno.ENODEV
    if valid and not prm.get("force"):
        ctx.stderr.write(f"{dimm.devname}: error: labels already initialized\n")
        return -errno.EBUSY
    v11 = prm["labelversion"] in ("1.1", "v1.1")
    area = lbl.LabelArea(data, label_size=128 if v11 else 256,
                         version=lbl.LSA_VERSION_1_1 if v11 else lbl.LSA_VERSION_1_2, cxl=False,
                         writer=lambda off, b: _ioctl(dev.ioctl_set_config_data, off, b))
    area.init(style="ndctl")
    return _revalidate(dimm)


def _revalidate(dimm) -> int:
    if not dimm.is_enabled():
        return 0
    rc = dimm.disable()
    return rc if rc else dimm.enable()


def _dimm_action(kind: str, argv: list[str], ctx: CommandContext) -> int:
    u = [USAGES[kind]]
    opts = OPTS[kind]
    parsed = parse_options(argv, opts, u, values={"labelversion": "1.1"})
    prm = parsed.values
    args = parsed.args
    if not args:
        usage_with_options(u, opts)
    err = 0
    for i, a in enumerate(args):
        if a == "all":
            args = ["all"]
            break
        if not (a.startswith("nmem") and a[4:].isdigit()):
            ctx.stderr.write(f"'{a}' is not a valid dimm name\n")
            err += 1
    if err == len(args):
        usage_with_options(u, opts)
    json_mode = kind == "read" and (prm.get("json") or prm.get("human"))
    if json_mode and (prm.get("len") or prm.get("offset")):
        usage_with_options(u, opts, "--size and --offset are incompatible with --json\n")
    if kind == "read" and prm.get("index") and prm.get("len"):
        usage_with_options(u, opts, "pick either --size, or --index, not both\n")
    state: dict = {"json": [] if json_mode else None}
    rc = open_label_files(kind, prm, ctx.stdout, state, lambda msg: ctx.stderr.write(msg + "\n"))
    if rc:
        return rc
    if kind == "init" and prm["labelversion"] not in ("1.1", "v1.1", "1.2", "v1.2"):
        ctx.stderr.write(f"'{prm['labelversion']}' is not a valid label version\n")
        return -errno.EINVAL
    nd = make_ctx(ctx, debug=bool(prm.get("verbose")))
    rc = count = 0
    single = None
    try:
        for a in args:
            if a != "all" and not (a.startswith("nmem") and a[4:].isdigit()):
                continue
            for bus in nd.buses():
                if not bus_filter(bus, prm.get("bus")):
                    continue
                for dimm in bus.dimms():
                    if not dimm_filter(dimm, a):
                        continue
                    if kind == "write":
                        single, r = dimm, 0
                    else:
                        try:
                            r = _action(kind, ctx, dimm, prm, state)
                        except OSError as e:
                            r = -(e.errno or errno.EIO)
                    if r == 0:
                        count += 1
                    elif not rc:
                        rc = r
        if kind == "write":
            if count > 1:
                usage_with_options(u, opts, error_text("write-labels only supports writing a single dimm\n"))
            elif single is not None:
                try:
                    rc = _action(kind, ctx, single, prm, state)
                except OSError as e:
                    rc = -(e.errno or errno.EIO)
        if state["json"]:
            flags = UTIL_JSON_HUMAN if not prm.get("outfile") and ctx.isatty else 0
            out, errtxt = display_json(state["json"], flags)
            target = state.get("out")
            if prm.get("outfile") and target is not None:
                target.write(out.encode())
            else:
                ctx.stdout.write(out)
            ctx.stderr.write(errtxt)
    finally:
        for k in ("out", "in"):
            f = state.get(k)
            if f is not None and getattr(f, "name", None) in (prm.get("outfile"), prm.get("infile")):
                f.close()
    return count if count > 0 else rc


def _run(kind: str, argv: list[str], ctx: CommandContext) -> int:
    n = _dimm_action(kind, argv, ctx)
    c = n if n >= 0 else 0
    ctx.stderr.write(SUMMARY[kind].format(c, "s" if n > 1 else "") + "\n")
    return 0 if n >= 0 else 1


def cmd_read_labels(argv, ctx):
    return _run("read", argv, ctx)


def cmd_write_labels(argv, ctx):
    return _run("write", argv, ctx)


def cmd_zero_labels(argv, ctx):
    return _run("zero", argv, ctx)


def cmd_init_labels(argv, ctx):
    return _run("init", argv, ctx)


def cmd_check_labels(argv, ctx):
    return _run("check", argv, ctx)


def cmd_disable_dimm(argv, ctx):
    return _run("disable", argv, ctx)


def cmd_enable_dimm(argv, ctx):
    return _run("enable", argv, ctx)
