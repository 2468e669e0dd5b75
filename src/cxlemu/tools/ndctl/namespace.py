"""ndctl create-namespace, destroy-namespace, enable-namespace and
disable-namespace (ndctl/namespace.c, v81).

The flow and every message follow the C code:

* option defaults (set_defaults): type pmem, mode fsdax, map dev; a bad
  mode/map/size/align/uuid is a usage error (exit 129) preceded by an
  ``Error:`` line, e.g. ``align must be a power-of-2 greater than 4096``;
* creation (namespace_create): each region is validated
  (validate_namespace_options); a region without room answers -EAGAIN and
  the next is tried; when none fits the command reports
  ``failed to create namespace: No space left on device`` and exits with
  -ENODEV (237);
* an alignment not in the seed's ``supported_alignments`` is
  ``unsupported align: <value>`` (exit 237);
* setup (setup_namespace): uuid, alt_name and size are written on the seed
  namespace, then the personality seed (pfn/dax/btt) is configured and
  enabled; a sysfs write failure prints ``<cmd>: <dev>: set_<x> failed:
  <strerror>`` and the partial namespace is deleted (autorecover);
* destroy (namespace_destroy): an active namespace without --force is
  ``<dev> is active, specify --force for re-configuration`` (EBUSY, exit
  240); otherwise the personality is torn down, the info block zeroed
  through the raw namespace and the namespace's size set to 0 (which
  deletes its labels).
"""

from __future__ import annotations

import errno
import uuid as uuidlib
from dataclasses import field

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.jsonc import dumps
from cxlemu.tools.common.log import LOG_DEBUG
from cxlemu.tools.common.parse_options import (OPT_BOOLEAN, OPT_END, OPT_STRING, error_text, parse_options,
                                               usage_with_options, warning_text)
from cxlemu.tools.common.util_json import (UTIL_JSON_DAX, UTIL_JSON_DAX_DEVS, UTIL_JSON_HUMAN, parse_size64,
                                           parse_size64_units)
from cxlemu.tools.libndctl import (NS_MODE_DEVDAX, NS_MODE_FSDAX, NS_MODE_RAW, NS_MODE_SECTOR,
                                   NS_MODE_UNKNOWN, NULL_UUID, PFN_LOC_PMEM, PFN_LOC_RAM, UINT_MAX,
                                   ULLONG_MAX, ULONG_MAX, ND_DEVICE_NAMESPACE_BLK, ND_DEVICE_NAMESPACE_IO,
                                   ND_DEVICE_NAMESPACE_PMEM, ND_DEVICE_REGION_BLK, ND_DEVICE_REGION_PMEM,
                                   NdNamespace, NdRegion)
from cxlemu.tools.libndctl.filter import MODE_NAMES, bus_filter, nsmode, region_filter
from cxlemu.tools.libndctl.json import namespace_to_json
from cxlemu.util.lazydc import dataclass

from .common import make_ctx, strerror

PAGE_SIZE = 4096
SZ_1K, SZ_1M, SZ_1G, SZ_1T = 1 << 10, 1 << 20, 1 << 30, 1 << 40
SZ_2M, SZ_16M = 2 << 20, 16 << 20
ACTIONS = {"enable": "enable namespace", "disable": "disable namespace", "create": "create namespace",
           "destroy": "destroy namespace", "clear": "clear errors"}
ACTION_STRINGS = {"clear": "clear errors for"}


def _base_options() -> list:
    return [
        OPT_STRING("b", "bus", "bus", "bus-id", "limit namespace to a bus with an id or provider of <bus-id>"),
        OPT_STRING("r", "region", "region", "region-id",
                   "limit namespace to a region with an id or name of <region-id>"),
        OPT_BOOLEAN("v", "verbose", "verbose", "emit extra debug messages to stderr"),
    ]


def _create_options() -> list:
    return _base_options() + [
        OPT_STRING("e", "reconfig", "reconfig", "reconfig namespace", "reconfigure existing namespace"),
        OPT_STRING("u", "uuid", "uuid", "uuid", "specify the uuid for the namespace (default: autogenerate)"),
        OPT_STRING("n", "name", "name", "name", "specify an optional free form name for the namespace"),
        OPT_STRING("s", "size", "size", "size", "specify the namespace size in bytes (default: available capacity)"),
        OPT_STRING("m", "mode", "mode", "operation-mode",
                   "specify a mode for the namespace, 'sector', 'fsdax', 'devdax' or 'raw'"),
        OPT_STRING("M", "map", "map", "memmap-location", "specify 'mem' or 'dev' for the location of the memmap"),
        OPT_STRING("l", "sector-size", "sector_size", "lba-size", "specify the logical sector size in bytes"),
        OPT_STRING("t", "type", "type", "type", "specify the type of namespace to create 'pmem' or 'blk'"),
        OPT_STRING("a", "align", "align", "align", "specify the namespace alignment in bytes (default: 2M)"),
        OPT_BOOLEAN("f", "force", "force", "reconfigure namespace even if currently active"),
        OPT_BOOLEAN("L", "autolabel", "autolabel", "automatically initialize labels"),
        OPT_BOOLEAN("c", "continue", "greedy",
                    "continue creating namespaces as long as the filter criteria are met"),
        OPT_BOOLEAN("R", "autorecover", "autorecover", "automatically cleanup on failure"),
        OPT_END(),
    ]


def _destroy_options() -> list:
    return _base_options() + [OPT_BOOLEAN("f", "force", "force", "destroy namespace even if currently active"),
                              OPT_END()]


@dataclass
class Parsed:
    """struct parsed_parameters"""
    loc: int = 0
    uuid: uuidlib.UUID = NULL_UUID
    name: str = ""
    mode: int = NS_MODE_FSDAX
    size: int = 0
    sector_size: int = 0
    align: int = 0
    autolabel: bool = True
    autorecover: bool = True


@dataclass
class Job:
    ctx: CommandContext
    action: str
    param: dict
    verbose: bool = False
    force: bool = False
    err_count: int = 0
    cmd_name: str = "namespace"
    out: list[str] = field(default_factory=list)

    def error(self, msg: str) -> None:
        self.ctx.stderr.write(error_text(msg))

    def err(self, msg: str) -> None:
        self.err_count += 1
        self.error(f"{self.cmd_name}: {msg}")

    def debug(self, func: str, line: int, msg: str) -> None:
        if self.verbose:
            self.ctx.stderr.write(f"{func}:{line}: {msg}")


# ---------------------------------------------------------------------------------------------
# option parsing (parse_namespace_options / set_defaults)
# ---------------------------------------------------------------------------------------------

def _is_pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def set_defaults(job: Job) -> int:
    p = job.param
    rc = 0
    if p.get("type"):
        if p["type"] not in ("pmem", "blk"):
            job.error(f"invalid type '{p['type']}', must be either 'pmem' or 'blk'\n")
            rc = -errno.EINVAL
    elif not p.get("reconfig") and job.action == "create":
        p["type"] = "pmem"
    if p.get("mode"):
        if nsmode(p["mode"]) == NS_MODE_UNKNOWN:
            job.error(f"invalid mode '{p['mode']}'\n")
            rc = -errno.EINVAL
    elif not p.get("reconfig") and p.get("type"):
        p["mode"] = "fsdax" if p["type"] == "pmem" else "sector"
        p["mode_default"] = True
    if p.get("map"):
        if p["map"] not in ("mem", "dev"):
            job.error(f"invalid map location '{p['map']}'\n")
            rc = -errno.EINVAL
        if not p.get("reconfig") and p.get("mode") and p["mode"] not in ("fsdax", "devdax"):
            job.error("--map only valid for an devdax mode pmem namespace\n")
            rc = -errno.EINVAL
    elif not p.get("reconfig"):
        p["map"] = "dev"
    if p.get("type") == "blk" and p.get("mode") in ("fsdax", "devdax"):
        job.error("only 'pmem' namespaces support dax operation\n")
        rc = -errno.ENXIO
    if p.get("size") and parse_size64(p["size"]) == ULLONG_MAX:
        job.error(f"failed to parse namespace size '{p['size']}'\n")
        rc = -errno.EINVAL
    if p.get("align"):
        align = parse_size64(p["align"])
        if align == ULLONG_MAX:
            job.error(f"failed to parse namespace alignment '{p['align']}'\n")
            rc = -errno.EINVAL
        elif not _is_pow2(align) or align < PAGE_SIZE:
            job.error(f"align must be a power-of-2 greater than {PAGE_SIZE}\n")
            rc = -errno.EINVAL
    if p.get("size") and parse_size64(p["size"]) == ULLONG_MAX:
        job.error(f"failed to parse namespace size '{p['size']}'\n")
        rc = -errno.EINVAL
    if p.get("uuid"):
        try:
            uuidlib.UUID(p["uuid"])
            if len(p["uuid"]) != 36:
                raise ValueError
        except ValueError:
            job.error(f"failed to parse uuid: '{p['uuid']}'\n")
            rc = -errno.EINVAL
    if p.get("sector_size"):
        if parse_size64(p["sector_size"]) == ULLONG_MAX:
            job.error(f"invalid sector size: {p['sector_size']}\n")
            rc = -errno.EINVAL
    elif p.get("type") == "blk" or nsmode(p.get("mode")) == NS_MODE_SECTOR:
        p["sector_size"] = "4096"
    return rc


def parse_namespace_options(argv: list[str], job: Job, options: list, usage: str) -> str | None:
    u = [usage]
    job.param["do_scan"] = len(argv) == 1
    parsed = parse_options(argv, options, u,
                           values={"autolabel": True, "autorecover": True})
    vals = parsed.values
    job.verbose = bool(vals.pop("verbose", False))
    job.force = bool(vals.pop("force", False))
    job.param.update(vals)
    args = parsed.args
    rc = set_defaults(job)
    if not args and job.action != "create":
        job.error(f'specify a namespace to {ACTION_STRINGS.get(job.action, job.action)}, or "all"\n')
        rc = -errno.EINVAL
    for a in args[0 if job.action == "create" else 1:]:
        job.error(f'unknown extra parameter "{a}"\n')
        rc = -errno.EINVAL
    if rc:
        usage_with_options(u, options)
    return job.param.get("reconfig") if job.action == "create" else args[0]


# ---------------------------------------------------------------------------------------------
# validate_namespace_options
# ---------------------------------------------------------------------------------------------

def validate_available_capacity(job: Job, region: NdRegion, p: Parsed) -> int:
    if region.nstype == ND_DEVICE_NAMESPACE_IO:
        available = region.size
    else:
        available = region.max_available_extent()
        if available == ULLONG_MAX:
            available = region.available_size()
    if not available or p.size > available:
        job.debug("validate_available_capacity", 623,
                  f"{region.devname}: insufficient capacity size: {p.size:x} avail: {available:x}\n")
        return -errno.EAGAIN
    if p.size == 0:
        p.size = available
    return 0


def validate_namespace_options(job: Job, region: NdRegion, ndns: NdNamespace | None, p: Parsed) -> int:
    prm = job.param
    name = region.devname
    units = 1
    default_size = False
    pfn = dax = None
    if not region.is_enabled():
        job.debug("validate_namespace_options", 663, f"{name}: disabled, skipping...\n")
        return -errno.EAGAIN
    if prm.get("size"):
        p.size, units = parse_size64_units(prm["size"])
    elif ndns is not None:
        p.size = ndns.size
    else:
        default_size = True
    if ndns is None:
        rc = validate_available_capacity(job, region, p)
        if rc:
            return rc
    if region.nstype == ND_DEVICE_NAMESPACE_IO and p.size != region.size:
        job.error("Legacy / label-less namespaces do not support sub-dividing a region\n")
        job.error("Retry without -s/--size=\n")
        return -errno.EINVAL
    p.uuid = uuidlib.UUID(prm["uuid"]) if prm.get("uuid") else uuidlib.uuid4()
    if prm.get("name") is not None:
        p.name = prm["name"]
    elif ndns is not None:
        p.name = ndns.alt_name or ""
    if len(p.name.encode()) >= 64:
        job.err("validate_namespace_options: alt name overflow\n")
        return -errno.EINVAL
    if prm.get("mode"):
        p.mode = nsmode(prm["mode"])
        if region.type != ND_DEVICE_REGION_PMEM and p.mode in (NS_MODE_FSDAX, NS_MODE_DEVDAX):
            job.err(f"blk {name} does not support {MODE_NAMES[p.mode]} mode\n")
            return -errno.EAGAIN
    elif ndns is not None:
        p.mode = ndns.mode()
    if p.mode == NS_MODE_FSDAX:
        pfn = region.pfn_seed()
        if pfn is None and prm.get("mode_default"):
            job.err(f"{name} fsdax mode not available\n")
            p.mode = NS_MODE_RAW
    elif p.mode == NS_MODE_DEVDAX:
        dax = region.dax_seed()
        if dax is None:
            job.error(f"Kernel does not support {MODE_NAMES[p.mode]} mode\n")
            return -errno.ENODEV
    if prm.get("align"):
        if p.mode == NS_MODE_FSDAX:
            if pfn is None:
                job.error("Kernel does not support setting an alignment in fsdax mode\n")
                return -errno.EINVAL
            alignments = pfn.alignments
        elif p.mode == NS_MODE_DEVDAX:
            alignments = dax.alignments
        else:
            job.error(f"{MODE_NAMES.get(p.mode, 'unknown')} mode does not support setting an alignment\n")
            return -errno.ENXIO
        p.align = parse_size64(prm["align"])
        if p.align not in alignments:
            job.error(f"unsupported align: {prm['align']}\n")
            return -errno.ENXIO
    else:
        if ndns is not None and p.mode == ndns.mode():
            npfn, ndax = ndns.pfn(), ndns.dax()
            p.align = npfn.align if npfn else (ndax.align if ndax else PAGE_SIZE)
        elif p.mode == NS_MODE_FSDAX:
            p.align = pfn.align if pfn is not None and pfn.has_align() else SZ_2M
        elif p.mode == NS_MODE_DEVDAX:
            p.align = dax.align
        else:
            p.align = PAGE_SIZE
        resource = region.resource()
        if resource < ULLONG_MAX and p.align and resource & (p.align - 1):
            job.debug("validate_namespace_options", 834, f"{name}: falling back to a page alignment\n")
            p.align = PAGE_SIZE
    ralign = region.align
    if ralign < ULONG_MAX and ralign and p.size % ralign:
        job.err(f"{name}: align setting is {ralign:#x} size {p.size:#x} is misaligned\n")
        return -errno.EINVAL
    ways = region.interleave_ways
    if p.align == 0 or p.size % (p.align * ways):
        suffix = {SZ_1K: "K", SZ_1M: "M", SZ_1G: "G", SZ_1T: "T"}.get(units, "")
        size_align = max(units, p.align) * ways
        size = (p.size // size_align + 1)
        if size > ULLONG_MAX // size_align:
            job.err(f"size overflow: {size} * {size_align} exceeds ULLONG_MAX\n")
            return -errno.EINVAL
        size = size * size_align // units
        job.err(f"'--size=' must align to interleave-width: {ways} and alignment: {p.align}\n"
                f"did you intend --size={size}{suffix}?\n")
        return -errno.EINVAL
    if p.size < SZ_16M and p.mode != NS_MODE_RAW:
        if default_size:
            job.debug("validate_namespace_options", 892,
                      f"{name}: insufficient capacity for mode: {MODE_NAMES[p.mode]}\n")
            return -errno.EAGAIN
        job.error(f"'--size=' must be >= 16MiB for '{MODE_NAMES[p.mode]}' mode\n")
        return -errno.EINVAL
    if prm.get("sector_size"):
        p.sector_size = parse_size64(prm["sector_size"])
        btt = region.btt_seed()
        if p.mode == NS_MODE_SECTOR:
            if btt is None:
                job.err(f"{name}: does not support 'sector' mode\n")
                return -errno.EINVAL
            if p.sector_size not in btt.lbasize:
                job.err(f"{name}: does not support btt sector_size {p.sector_size}\n")
                return -errno.EINVAL
        else:
            seed = ndns if ndns is not None else region.namespace_seed()
            if seed is None:
                job.err(f"{name}: failed to get seed\n")
                return -errno.ENXIO
            if p.sector_size not in seed.lbasize:
                job.err(f"{name}: does not support namespace sector_size {p.sector_size}\n")
                return -errno.EINVAL
    elif ndns is not None:
        btt = ndns.btt()
        p.sector_size = btt.sector_size if btt and p.mode == NS_MODE_SECTOR else ndns.sector_size
    else:
        seed = region.namespace_seed()
        if seed is None:
            job.err(f"{name}: failed to get seed\n")
            return -errno.ENXIO
        p.sector_size = UINT_MAX if not seed.lbasize else 512
    if prm.get("map"):
        p.loc = PFN_LOC_RAM if prm["map"] == "mem" else PFN_LOC_PMEM
        if ndns is not None and p.mode not in (NS_MODE_FSDAX, NS_MODE_DEVDAX):
            job.err(f"{ndns.devname}: --map= only valid for fsdax mode namespace\n")
            return -errno.EINVAL
    elif p.mode in (NS_MODE_FSDAX, NS_MODE_DEVDAX):
        p.loc = PFN_LOC_PMEM
    if pfn is None and do_setup_pfn(ndns, p):
        job.error(f"operation failed, {name} cannot support requested mode\n")
        return -errno.EINVAL
    p.autolabel = bool(prm.get("autolabel", True))
    p.autorecover = bool(prm.get("autorecover", True))
    return 0


def do_setup_pfn(ndns: NdNamespace | None, p: Parsed) -> bool:
    if p.mode != NS_MODE_FSDAX:
        return False
    return ndns is None or ndns.mode() != NS_MODE_FSDAX or p.loc == PFN_LOC_PMEM


# ---------------------------------------------------------------------------------------------
# setup / create / destroy
# ---------------------------------------------------------------------------------------------

def check_dax_align(job: Job, ndns: NdNamespace) -> int:
    v = ndns.ctx.read(f"{ndns.path}/resource")
    resource = int(v, 0) if v else ULLONG_MAX
    if resource == ULLONG_MAX:
        job.ctx.stderr.write(warning_text(f"{ndns.devname} unable to validate alignment\n"))
        return 0
    if resource % SZ_16M == 0 or job.force:
        return 0
    job.error(f"{ndns.devname} misaligned to 16M, adjust region alignment and retry\n")
    return -errno.EINVAL


def _try(job: Job, dev, op: str, rc: int) -> int:
    if rc:
        job.err(f"{dev.devname}: {op} failed: {strerror(rc)}\n")
    return rc


def _apply(job: Job, dev, steps) -> int:
    """Each ``(op, setter, value)`` in turn until one fails: its -errno,
    after the ``<dev>: <op> failed`` message."""
    for op, fn, arg in steps:
        rc = _try(job, dev, op, fn(arg))
        if rc:
            return rc
    return 0


def setup_namespace(job: Job, region: NdRegion, ndns: NdNamespace, p: Parsed) -> int:
    if ndns.type != ND_DEVICE_NAMESPACE_IO:
        rc = _apply(job, ndns, (("set_uuid", ndns.set_uuid, p.uuid), ("set_alt_name", ndns.set_alt_name, p.name),
                                ("set_size", ndns.set_size, p.size)))
        if rc:
            return rc
    if p.sector_size and p.sector_size < UINT_MAX:
        if p.sector_size in ndns.lbasize:
            rc = _try(job, ndns, "set_sector_size", ndns.set_sector_size(p.sector_size))
            if rc:
                return rc
        elif p.mode == NS_MODE_SECTOR:
            pass
        elif p.sector_size != 512:
            job.error(f"{ndns.devname}: sector_size: {p.sector_size} not supported\n")
            return -errno.EINVAL
    ndns.set_enforce_mode(p.mode)
    new_uuid = uuidlib.uuid4()
    if do_setup_pfn(ndns, p):
        pfn = region.pfn_seed()
        if pfn is None:
            return -errno.ENXIO
        rc = check_dax_align(job, ndns)
        if rc:
            return rc
        for op, rc in (("set_uuid", pfn.set_uuid(new_uuid)), ("set_location", pfn.set_location(p.loc))):
            if _try(job, pfn, op, rc):
                return rc
        if pfn.has_align() and _try(job, pfn, "set_align", pfn.set_align(p.align)):
            return -errno.EINVAL
        rc = pfn.set_namespace(ndns)
        if _try(job, pfn, "set_namespace", rc):
            return rc
        rc = pfn.enable()
        if rc and p.autorecover:
            pfn.set_namespace(None)
    elif p.mode == NS_MODE_DEVDAX:
        dax = region.dax_seed()
        if dax is None:
            return -errno.ENXIO
        rc = check_dax_align(job, ndns)
        if rc:
            return rc
        rc = _apply(job, dax, (("set_uuid", dax.set_uuid, new_uuid), ("set_location", dax.set_location, p.loc),
                               ("set_align", dax.set_align, p.align), ("set_namespace", dax.set_namespace, ndns)))
        if rc:
            return rc
        rc = dax.enable()
        if rc and p.autorecover:
            dax.set_namespace(None)
    elif p.mode == NS_MODE_SECTOR:
        btt = region.btt_seed()
        if btt is None:
            return -errno.ENXIO
        if p.sector_size == UINT_MAX:
            p.sector_size = 4096
        rc = _apply(job, btt, (("set_uuid", btt.set_uuid, new_uuid),
                               ("set_sector_size", btt.set_sector_size, p.sector_size),
                               ("set_namespace", btt.set_namespace, ndns)))
        if rc:
            return rc
        rc = btt.enable()
    else:
        rc = ndns.enable()
    if rc:
        job.error(f"{ndns.devname}: failed to enable\n")
    else:
        flags = UTIL_JSON_DAX | UTIL_JSON_DAX_DEVS
        if job.ctx.isatty:
            flags |= UTIL_JSON_HUMAN
        j = namespace_to_json(ndns, flags)
        if j is not None:
            job.ctx.stdout.write(dumps(j) + "\n")
    return rc


def region_get_namespace(region: NdRegion) -> NdNamespace | None:
    for ns in region.namespaces():
        if ns.id == 0 and ns.is_configuration_idle():
            return ns
    return region.namespace_seed()


def namespace_create(job: Job, region: NdRegion) -> int:
    p = Parsed()
    rc = validate_namespace_options(job, region, None, p)
    if rc:
        return rc
    if region.ro:
        job.debug("namespace_create", 1030, f"{region.devname}: read-only, ineligible for namespace creation\n")
        return -errno.EAGAIN
    ndns = region_get_namespace(region)
    if ndns is None or not ndns.is_configuration_idle():
        job.debug("namespace_create", 1037,
                  f"{region.devname}: no {'idle' if ndns else 'available'} namespace seed\n")
        return -errno.EAGAIN
    rc = setup_namespace(job, region, ndns, p)
    if rc and p.autorecover:
        ndns.set_enforce_mode(NS_MODE_RAW)
        ndns.delete()
    return rc


def zero_info_block(job: Job, ndns: NdNamespace) -> int:
    """Enable the namespace raw, and zero its first 8 KiB through the pmem
    block device unless already zero."""
    info_size = 8192
    ndns.set_raw_mode(True)
    rc = ndns.enable()
    try:
        if rc < 0:
            job.err(f"{ndns.devname} failed to enable for zeroing, continuing\n")
            return 1
        path = f"/dev/{ndns.block_device()}"
        try:
            f = ndns.ctx.backend.open_data(path, True)
        except OSError:
            job.err(f"{ndns.devname}: failed to open {path} to zero info block\n")
            return rc
        try:
            try:
                cur = f.pread(info_size, 0)
            except OSError:
                cur = b""
            if len(cur) < info_size:
                job.err(f"{ndns.devname}: failed to read info block, continuing\n")
            if cur == bytes(info_size):
                return 1
            try:
                n = f.pwrite(bytes(info_size), 0)
            except OSError:
                n = 0
            if n < info_size:
                job.err(f"{ndns.devname}: failed to zero info block {path}\n")
                return -errno.ENXIO
        finally:
            f.close()
        return 0
    finally:
        ndns.set_raw_mode(False)
        ndns.disable_invalidate()


def namespace_prep_reconfig(job: Job, region: NdRegion, ndns: NdNamespace) -> int:
    if region.ro:
        job.error(f"{ndns.devname}: read-only, re-configuration disabled\n")
        return -errno.ENXIO
    if ndns.is_active() and not job.force:
        job.error(f"{ndns.devname} is active, specify --force for re-configuration\n")
        return -errno.EBUSY
    rc = ndns.disable_safe()
    if rc:
        return rc
    ndns.set_enforce_mode(NS_MODE_RAW)
    rc = zero_info_block(job, ndns)
    if rc < 0:
        return rc
    did_zero = rc == 0
    if ndns.type in (ND_DEVICE_NAMESPACE_PMEM, ND_DEVICE_NAMESPACE_BLK):
        return 2
    return 0 if did_zero else 1


def namespace_destroy(job: Job, region: NdRegion, ndns: NdNamespace) -> int:
    rc = namespace_prep_reconfig(job, region, ndns)
    if rc < 0:
        return rc
    if rc == 2:
        rc = ndns.delete()
        if rc:
            job.debug("namespace_destroy", 1183, f"{ndns.devname}: failed to reclaim\n")
    return rc


def namespace_reconfig(job: Job, region: NdRegion, ndns: NdNamespace) -> int:
    p = Parsed()
    rc = validate_namespace_options(job, region, ndns, p)
    if rc:
        return rc
    rc = namespace_prep_reconfig(job, region, ndns)
    if rc < 0:
        return rc
    # the namespace was reset to a raw seed; find it again
    fresh = next((n for n in region.namespaces() if n.id == ndns.id), ndns)
    return setup_namespace(job, region, fresh, p)


def do_xaction(job: Job, namespace: str | None) -> tuple[int, int]:
    processed = 0
    rc = -errno.ENXIO
    saved_rc = 0
    prm = job.param
    if namespace is None and job.action != "create":
        return rc, 0
    if namespace == "all":
        rc = 0
    nd = make_ctx(job.ctx)
    if job.verbose:
        nd.log.priority = LOG_DEBUG
    job.cmd_name = ACTIONS[job.action]
    for bus in nd.buses():
        if not bus_filter(bus, prm.get("bus")):
            continue
        for region in bus.regions():
            if not region_filter(region, prm.get("region")):
                continue
            if prm.get("type"):
                want = ND_DEVICE_REGION_PMEM if prm["type"] == "pmem" else ND_DEVICE_REGION_BLK
                if region.type != want:
                    continue
            if job.action == "create" and not namespace:
                rc = namespace_create(job, region)
                if rc == -errno.EAGAIN:
                    continue
                if rc == 0:
                    processed += 1
                    if prm.get("greedy"):
                        continue
                elif prm.get("greedy") and job.force:
                    saved_rc = rc
                    continue
                return (saved_rc or rc), processed
            for ndns in region.namespaces():
                if namespace == "all":
                    if not ndns.size and ndns.uuid == NULL_UUID:
                        continue
                elif namespace != ndns.devname:
                    continue
                if job.action == "disable":
                    rc = ndns.disable_safe()
                    if rc == 0:
                        processed += 1
                elif job.action == "enable":
                    rc = ndns.enable()
                    if rc >= 0:
                        processed += 1
                        rc = 0
                elif job.action == "destroy":
                    rc = namespace_destroy(job, region, ndns)
                    if rc == 0:
                        processed += 1
                    if rc > 0:
                        rc = 0
                elif job.action == "create":
                    rc = namespace_reconfig(job, region, ndns)
                    return rc, (1 if rc == 0 else 0)
                elif job.action == "clear":
                    rc = namespace_clear_bb(job, ndns, bool(prm.get("scrub")))
                    if rc == 0:
                        processed += 1
    if job.action == "create" and rc == -errno.EAGAIN:
        rc = 0 if prm.get("greedy") and processed > 0 else -errno.ENOSPC
    return (saved_rc or rc), processed


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------

def _xable(argv: list[str], ctx: CommandContext, action: str, verb: str, past: str) -> int:
    job = Job(ctx, action, {})
    usage = f"ndctl {verb}-namespace <namespace> [<options>]"
    opts = _destroy_options() if action == "destroy" else _base_options() + [OPT_END()]
    namespace = parse_namespace_options(argv, job, opts, usage)
    rc, n = do_xaction(job, namespace)
    if rc < 0 and not job.err_count:
        gerund = {"enable": "enabling", "disable": "disabling", "destroy": "destroying"}[action]
        ctx.stderr.write(f"error {gerund} namespaces: {strerror(rc)}\n")
    ctx.stderr.write(f"{past} {n} namespace{'' if n == 1 else 's'}\n")
    return rc


def cmd_enable_namespace(argv: list[str], ctx: CommandContext) -> int:
    return _xable(argv, ctx, "enable", "enable", "enabled")


def cmd_disable_namespace(argv: list[str], ctx: CommandContext) -> int:
    return _xable(argv, ctx, "disable", "disable", "disabled")


def cmd_destroy_namespace(argv: list[str], ctx: CommandContext) -> int:
    return _xable(argv, ctx, "destroy", "destroy", "destroyed")


# ---------------------------------------------------------------------------------------------
# clear-errors (namespace_clear_bb and the *_clear_badblocks helpers)
# ---------------------------------------------------------------------------------------------

def bus_send_clear(job: Job, bus, start: int, size: int) -> int:
    """ND_CMD_ARS_CAP for the range, then ND_CMD_CLEAR_ERROR of what it returns."""
    from cxlemu.tools.libndctl import BUS_CMDS
    name = bus.provider
    if not bus.cmd_mask & (1 << BUS_CMDS["ars_cap"]) or not bus.cmd_mask & (1 << BUS_CMDS["clear_error"]):
        job.error(f"bus: {name} failed to create cmd\n")
        return -errno.ENOTTY
    try:
        ch = job.ctx.backend.open_ndctl(f"/dev/ndctl{bus.id}")
        status, _max, _unit, addr, length = ch.ars_cap(start, size)
    except OSError as e:
        job.error(f"bus: {name} failed to submit cmd: {-(e.errno or errno.EIO)}\n")
        return -(e.errno or errno.EIO)
    if status:
        job.error(f"bus: {name} failed to get ars_cap range\n")
        return -errno.ENXIO
    try:
        cleared = ch.clear_error(addr, length)
    except OSError as e:
        job.error(f"bus: {name} failed to submit cmd: {-(e.errno or errno.EIO)}\n")
        return -(e.errno or errno.EIO)
    if cleared != length:
        job.error(f"bus: {name} expected to clear: {length} actual: {cleared}\n")
        return -errno.ENXIO
    return 0


def nstype_clear_badblocks(job: Job, ndns: NdNamespace, devname: str, dev_begin: int, dev_size: int) -> int:
    region = ndns.region
    region_begin = region.resource()
    if region_begin == ULLONG_MAX:
        if ndns.enable() < 0:
            job.error(f"{devname}: failed to reenable namespace\n")
        return -errno.ENXIO
    dev_end = dev_begin + dev_size - 1
    cleared = 0
    rc = 0
    for off, length in region.badblocks():
        bb_begin = region_begin + (off << 9)
        bb_len = length << 9
        bb_end = bb_begin + bb_len - 1
        if bb_begin < dev_begin or bb_end > dev_end:      # not fully in the usable area
            continue
        rc = bus_send_clear(job, region.bus, bb_begin, bb_len)
        if rc:
            job.error(f"{devname}: failed to clear badblock at {{{off}, {length}}}\n")
            break
        cleared += length
    job.debug("nstype_clear_badblocks", 0, f"{devname}: cleared {cleared} badblocks\n")
    rc2 = ndns.enable()
    if rc2 < 0:
        return rc2
    return rc


def _disable_then_clear(job: Job, ndns: NdNamespace, devname: str, begin: int, size: int) -> int:
    if begin == ULLONG_MAX or size == ULLONG_MAX:
        return -errno.ENXIO
    rc = ndns.disable_safe()
    if rc:
        job.error(f"{devname}: unable to disable namespace: {strerror(rc)}\n")
        return rc
    return nstype_clear_badblocks(job, ndns, devname, begin, size)


def namespace_wait_scrub(job: Job, ndns: NdNamespace, do_scrub: bool) -> int:
    """ndctl_bus_get_scrub_state / start / wait.  A bus without a scrub engine
    (the CXL bus) has nothing to wait for: v81 fails there ("Unable to determine
    scrub state"); cxlemu goes on unless --scrub was asked (docs/fidelity.md)."""
    bus = ndns.region.bus
    state = bus.scrub_state()
    if state < 0:
        if do_scrub:
            job.error(f"{ndns.devname}: Unable to start scrub: {strerror(state)}\n")
            return state
        return 0
    return 0


def namespace_clear_bb(job: Job, ndns: NdNamespace, do_scrub: bool) -> int:
    pfn, dax, btt = ndns.pfn(), ndns.dax(), ndns.btt()
    if btt:
        job.debug("namespace_clear_bb", 0, f"{btt.devname}: skip error clearing for btt\n")
        return 1
    rc = namespace_wait_scrub(job, ndns, do_scrub)
    if rc:
        return rc
    if dax:
        rc = _disable_then_clear(job, ndns, dax.devname, dax.resource, dax.size)
    elif pfn:
        rc = _disable_then_clear(job, ndns, pfn.devname, pfn.resource, pfn.size)
    else:
        rc = _disable_then_clear(job, ndns, ndns.devname, ndns.resource, ndns.size)
    if rc:
        return rc
    from cxlemu.tools.common.util_json import UTIL_JSON_MEDIA_ERRORS
    j = namespace_to_json(ndns, UTIL_JSON_MEDIA_ERRORS)
    if j is not None:
        job.ctx.stdout.write(dumps(j) + "\n")
    return 0


def cmd_clear_errors(argv: list[str], ctx: CommandContext) -> int:
    job = Job(ctx, "clear", {})
    opts = _base_options() + [OPT_BOOLEAN("s", "scrub", "scrub", "run a scrub to find latent errors"), OPT_END()]
    namespace = parse_namespace_options(argv, job, opts, "ndctl clear_errors <namespace> [<options>]")
    rc, n = do_xaction(job, namespace)
    if rc < 0 and not job.err_count:
        ctx.stderr.write(f"error clearing namespaces: {strerror(rc)}\n")
    ctx.stderr.write(f"cleared {n} namespace{'' if n == 1 else 's'}\n")
    return rc


def cmd_create_namespace(argv: list[str], ctx: CommandContext) -> int:
    job = Job(ctx, "create", {})
    opts = _create_options()
    namespace = parse_namespace_options(argv, job, opts, "ndctl create-namespace [<options>]")
    rc, created = do_xaction(job, namespace)
    if rc < 0 and created < 1 and job.param.get("do_scan"):
        verbose, force, errs = job.verbose, job.force, job.err_count
        job = Job(ctx, "create", {"type": "blk"}, verbose=verbose, force=force, err_count=errs)
        set_defaults(job)
        rc, created = do_xaction(job, None)
    if job.param.get("greedy"):
        ctx.stderr.write(f"created {created} namespace{'' if created == 1 else 's'}\n")
    if (rc < 0 or (not namespace and created < 1)) and not job.err_count:
        ctx.stderr.write(f"failed to {'reconfigure' if namespace else 'create'} namespace: {strerror(rc)}\n")
        if not namespace:
            rc = -errno.ENODEV
    return rc
