"""The device commands of daxctl (daxctl/device.c): option tables, option
parsing, and the per-device / per-region actions.

Messages, their order and exit codes are those of device.c: every command
ends with "<verb> N device(s)" on stderr and returns the last error
(negative errno, so the exit status is 256 - errno), and "error <verb>ing
devices: <strerror>" precedes it on failure.  A device that matches nothing
is not an error (``reconfigured 0 devices``, status 0).  Usage problems exit
129 after printing the usage.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import field
from typing import Any

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.jsonc import display_json
from cxlemu.tools.common.log import LOG_DEBUG
from cxlemu.tools.common.parse_options import (OPT_BOOLEAN, OPT_END, OPT_STRING, CommandExit, UsageError,
                                               parse_options, usage_with_options_text)
from cxlemu.tools.common.util_json import UTIL_JSON_HUMAN, parse_size64
from cxlemu.tools.daxctl.daxjson import dev_filter, dev_to_json, region_filter
from cxlemu.tools.libdaxctl.lib import DaxctlCtx, DaxctlDev, DaxctlMemory, DaxctlRegion, new_ctx, strerror
from cxlemu.util.lazydc import dataclass

ACTION_RECONFIG, ACTION_ONLINE, ACTION_OFFLINE, ACTION_CREATE, ACTION_DISABLE, ACTION_ENABLE, ACTION_DESTROY = \
    range(7)
MODE_UNKNOWN, MODE_DEVDAX, MODE_RAM = range(3)

BASE_OPTIONS = [
    OPT_STRING("r", "region", "region", "region-id", "filter by region"),
    OPT_BOOLEAN("u", "human", "human", "use human friendly number formats"),
    OPT_BOOLEAN("v", "verbose", "verbose", "emit more debug messages"),
]
RECONFIG_OPTIONS = [
    OPT_STRING("m", "mode", "mode", "mode", "mode to switch the device to"),
    OPT_BOOLEAN("N", "no-online", "no_online", "don't auto-online memory sections"),
    OPT_BOOLEAN("f", "force", "force", "attempt to offline memory sections before reconfiguration"),
    OPT_BOOLEAN("C", "check-config", "check_config", "use config files to determine parameters for the operation"),
]
CREATE_OPTIONS = [
    OPT_STRING("s", "size", "size", "size", "size to switch the device to"),
    OPT_STRING("a", "align", "align", "align", "alignment to switch the device to"),
    OPT_STRING(None, "input", "input", "input", "input device JSON file"),
]
DESTROY_OPTIONS = [OPT_BOOLEAN("f", "force", "force", "attempt to disable before destroying device")]
ZONE_OPTIONS = [OPT_BOOLEAN(None, "no-movable", "no_movable", "online memory in ZONE_NORMAL")]

CREATE_TABLE = BASE_OPTIONS + CREATE_OPTIONS + [OPT_END()]
RECONFIG_TABLE = BASE_OPTIONS + CREATE_OPTIONS + RECONFIG_OPTIONS + ZONE_OPTIONS + [OPT_END()]
ONLINE_TABLE = BASE_OPTIONS + ZONE_OPTIONS + [OPT_END()]
OFFLINE_TABLE = BASE_OPTIONS + [OPT_END()]
DISABLE_TABLE = BASE_OPTIONS + [OPT_END()]
ENABLE_TABLE = BASE_OPTIONS + [OPT_END()]
DESTROY_TABLE = BASE_OPTIONS + DESTROY_OPTIONS + [OPT_END()]

_ACTION_STRING = {ACTION_RECONFIG: "reconfigure", ACTION_ONLINE: "online memory for",
                  ACTION_OFFLINE: "offline memory for", ACTION_DISABLE: "disable", ACTION_ENABLE: "enable",
                  ACTION_DESTROY: "destroy"}


def _s64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass
class Run:
    """The state device.c keeps in file-scope statics for one invocation."""
    cctx: CommandContext
    dctx: DaxctlCtx
    param: dict[str, Any]
    mode: int = MODE_UNKNOWN
    align: int = -1
    size: int = -1
    flags: int = 0
    maps: list[tuple[int, int, int]] = field(default_factory=list)
    nmaps: int = -1

    def err(self, text: str) -> None:
        self.cctx.stderr.write(text)


def _parse_device_file(run: Run, filename: str) -> int:
    """parse_device_file(): align, size, chardev and mappings from a daxctl list -M object."""
    try:
        with open(filename) as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return -errno.EINVAL
    if isinstance(obj, list) and len(obj) == 1:
        obj = obj[0]
    if not isinstance(obj, dict) or "align" not in obj or "size" not in obj or "chardev" not in obj:
        return -errno.EINVAL
    run.param["align"] = str(obj["align"])
    run.param["size"] = str(obj["size"])
    import re
    m = re.match(r"dax(\d+)\.(\d+)", str(obj["chardev"]))
    if not m:
        return -errno.EINVAL
    run.param["region"] = m.group(1)
    maps = obj.get("mappings")
    if not isinstance(maps, list):
        return -errno.EINVAL

    def num(v) -> int:
        return int(v, 0) if isinstance(v, str) else int(v)
    try:
        entries = [(num(x["start"]), num(x["end"]), num(x["page_offset"])) for x in maps]
    except (KeyError, TypeError, ValueError):
        return -errno.EINVAL
    entries.sort(key=lambda e: e[2])
    run.maps = entries
    run.nmaps = len(entries)
    return 0


def parse_device_options(argv: list[str], action: int, options: list, usage: str,
                         cctx: CommandContext) -> tuple[Run, str | None]:
    """parse_device_options()."""
    u = [usage]
    vals, args = parse_options(argv, options, u)
    for k in ("region", "mode", "size", "align", "input"):
        vals.setdefault(k, None)
    for k in ("human", "verbose", "no_online", "no_movable", "force", "check_config"):
        vals.setdefault(k, False)
    device = os.path.basename(args[0]) if args else None
    err = ""
    rc = 0
    if not args and action != ACTION_CREATE:
        err += f"specify a device to {_ACTION_STRING.get(action, '<>')}, or \"all\"\n"
        rc = -errno.EINVAL
    start = 0 if action == ACTION_CREATE else 1
    for extra in args[start:]:
        err += f"unknown extra parameter \"{extra}\"\n"
        rc = -errno.EINVAL
    if rc:
        raise UsageError(err + usage_with_options_text(u, options))
    dctx = new_ctx(cctx.backend, dict(cctx.env), cctx.stderr)
    run = Run(cctx, dctx, vals)
    if vals["verbose"]:
        dctx.log.priority = LOG_DEBUG
    if vals["human"]:
        run.flags |= UTIL_JSON_HUMAN
    if device and vals["check_config"]:
        if vals["mode"] or vals["no_online"] or vals["no_movable"]:
            cctx.stderr.write(f"{device}: -C cannot be used with --mode, --(no-)movable, or --(no-)online\n")
            raise UsageError(usage_with_options_text(u, options))
        if action == ACTION_RECONFIG and device != "all":
            cctx.stderr.write(f"no UUID match for {device} found in config files\n")
        cctx.stderr.write(f"{device}: missing or malformed config section\n")
        raise CommandExit(0)
    if action == ACTION_RECONFIG:
        if not vals["size"] and not vals["align"] and not vals["mode"]:
            cctx.stderr.write("error: a 'align', 'mode' or 'size' option is required\n")
            raise UsageError(usage_with_options_text(u, RECONFIG_TABLE))
        if vals["size"] or vals["align"]:
            if vals["size"]:
                run.size = _s64(parse_size64(vals["size"]))
            if vals["align"]:
                run.align = _s64(parse_size64(vals["align"]))
        elif vals["mode"] == "system-ram":
            run.mode = MODE_RAM
        elif vals["mode"] == "devdax":
            run.mode = MODE_DEVDAX
            if vals["no_online"]:
                cctx.stderr.write("--no-online is incompatible with --mode=devdax\n")
                raise UsageError(usage_with_options_text(u, options))
    elif action == ACTION_CREATE:
        if vals["input"]:
            prc = _parse_device_file(run, vals["input"])
            if prc:
                cctx.stderr.write(f"error: failed to parse device file: {strerror(prc)}\n")
                raise UsageError(usage_with_options_text(u, options))
        if vals["size"]:
            run.size = _s64(parse_size64(vals["size"]))
        if vals["align"]:
            run.align = _s64(parse_size64(vals["align"]))
    return run, device


# ---- memory ---------------------------------------------------------------------------------------

def _memory_state(run: Run, dev: DaxctlDev) -> tuple[DaxctlMemory, int, int] | int:
    """The memory object of a system-ram device, its number of sections and
    of online sections; a negative errno after the message of a failure."""
    mem = dev.memory()
    if mem is None:
        run.err(f"{dev.devname}: failed to get the memory object\n")
        return -errno.ENXIO
    num_sections = mem.num_sections()
    if num_sections < 0:
        run.err(f"{dev.devname}: failed to get number of memory sections\n")
        return num_sections
    num_on = _online_sections(run, dev, mem)
    if num_on < 0:
        return num_on
    return mem, num_sections, num_on


def _online_sections(run: Run, dev: DaxctlDev, mem: DaxctlMemory) -> int:
    """daxctl_memory_is_online(), with the message of a failure."""
    num_on = mem.is_online()
    if num_on < 0:
        run.err(f"{dev.devname}: failed to determine online state: {strerror(num_on)}\n")
    return num_on


def dev_online_memory(run: Run, dev: DaxctlDev) -> int:
    name = dev.devname
    state = _memory_state(run, dev)
    if isinstance(state, int):
        return state
    mem, num_sections, num_on = state
    if num_on:
        run.err(f"{name}:\n  WARNING: detected a race while onlining memory\n"
                "  Some memory may not be in the expected zone. It is\n"
                "  recommended to disable any other onlining mechanisms,\n"
                "  and retry. If onlining is to be left to other agents,\n"
                "  use the --no-online option to suppress this warning\n")
    if num_on == num_sections:
        run.err(f"{name}: all memory sections ({num_on}) already online\n")
        return 1
    if num_on > 0:
        run.err(f"{name}: {num_on} memory section{'' if num_on == 1 else 's'} already online\n")
    rc = mem.online_no_movable() if run.param["no_movable"] else mem.online()
    if rc < 0:
        run.err(f"{name}: failed to online memory: {strerror(rc)}\n")
        return rc
    if run.param["verbose"]:
        run.err(f"{name}: {rc} memory section{'' if rc == 1 else 's'} onlined\n")
    num_on = _online_sections(run, dev, mem)
    if num_on < 0:
        return num_on
    if num_on < num_sections:
        run.err(f"{name}: failed to online {num_sections - num_on} memory sections\n")
        return -errno.ENXIO
    return 0


def dev_offline_memory(run: Run, dev: DaxctlDev) -> int:
    name = dev.devname
    state = _memory_state(run, dev)
    if isinstance(state, int):
        return state
    mem, num_sections, num_on = state
    num_off = num_sections - num_on
    if num_off == num_sections:
        run.err(f"{name}: all memory sections ({num_off}) already offline\n")
        return 1
    if num_off:
        run.err(f"{name}: {num_off} memory section{'' if num_off == 1 else 's'} already offline\n")
    rc = mem.offline()
    if rc < 0:
        run.err(f"{name}: failed to offline memory: {strerror(rc)}\n")
        return rc
    if run.param["verbose"]:
        run.err(f"{name}: {rc} memory section{'' if rc == 1 else 's'} offlined\n")
    num_on = _online_sections(run, dev, mem)
    if num_on < 0:
        return num_on
    if num_on:
        run.err(f"{name}: failed to offline {num_on} memory sections\n")
        return -errno.ENXIO
    return 0


# ---- per-device actions -------------------------------------------------------------------------------

def _disable(run: Run, dev: DaxctlDev) -> int:
    rc = dev.disable()
    if rc:
        run.err(f"{dev.devname}: disable failed: {strerror(rc)}\n")
    return rc


def _enable_devdax(run: Run, dev: DaxctlDev) -> int:
    rc = dev.enable_devdax()
    if rc:
        run.err(f"{dev.devname}: enable failed: {strerror(rc)}\n")
    return rc


def dev_destroy(run: Run, dev: DaxctlDev) -> int:
    name = dev.devname
    if dev.is_enabled() and not run.param["force"]:
        run.err(f"{name} is active, specify --force for deletion\n")
        return -errno.ENXIO
    rc = _disable(run, dev)
    if rc:
        return rc
    rc = dev.set_size(0)
    if rc < 0:
        return rc
    rc = dev.region.destroy_dev(dev)
    if dev.id == 0 and rc == -errno.EBUSY:
        return 0
    return rc if rc < 0 else 0


def disable_devdax_device(run: Run, dev: DaxctlDev) -> int:
    if dev.memory():
        run.err(f"{dev.devname} was already in system-ram mode\n")
        return 1
    return _disable(run, dev)


def reconfig_mode_system_ram(run: Run, dev: DaxctlDev) -> int:
    p = run.param
    skip_enable = False
    if p["no_online"] or not p["no_movable"]:
        if not p["force"] and dev.will_auto_online_memory():
            run.err(f"{dev.devname}: error: kernel policy will auto-online memory, aborting\n")
            return -errno.EBUSY
    if dev.is_enabled():
        rc = disable_devdax_device(run, dev)
        if rc < 0:
            return rc
        if rc > 0:
            skip_enable = True
    if not skip_enable:
        rc = dev.enable_ram()
        if rc:
            return rc
    if p["no_online"]:
        return 0
    return dev_online_memory(run, dev)


def disable_system_ram_device(run: Run, dev: DaxctlDev) -> int:
    mem = dev.memory()
    if mem is None:
        run.err(f"{dev.devname} was already in devdax mode\n")
        return 1
    if run.param["force"]:
        rc = dev_offline_memory(run, dev)
        if rc < 0:
            return rc
    rc = _online_sections(run, dev, mem)
    if rc < 0:
        return rc
    if rc > 0:
        if run.param["verbose"]:
            run.err(f"{dev.devname}: found {rc} memory sections online\n")
            run.err(f"{dev.devname}: refusing to change modes\n")
        return -errno.EBUSY
    return _disable(run, dev)


def reconfig_mode_devdax(run: Run, dev: DaxctlDev) -> int:
    if dev.is_enabled():
        rc = disable_system_ram_device(run, dev)
        if rc:
            return rc
    return dev.enable_devdax()


def do_reconfig(run: Run, dev: DaxctlDev, jdevs: list) -> int:
    if run.align > 0:
        rc = dev.set_align(run.align)
        if rc < 0:
            return rc
    if run.size >= 0:
        return dev.set_size(run.size)
    if run.mode == MODE_RAM:
        rc = reconfig_mode_system_ram(run, dev)
    elif run.mode == MODE_DEVDAX:
        rc = reconfig_mode_devdax(run, dev)
    else:
        run.err(f"{dev.devname}: unknown mode requested: {run.mode}\n")
        rc = -errno.EINVAL
    if rc < 0:
        return rc
    jdevs.clear()
    jdevs.append(dev_to_json(dev, run.flags))
    return 0


def do_xline(run: Run, dev: DaxctlDev, action: int) -> int:
    if not dev.memory():
        run.err(f"{dev.devname}: memory operations are not applicable in devdax mode\n")
        return -errno.ENXIO
    return dev_online_memory(run, dev) if action == ACTION_ONLINE else dev_offline_memory(run, dev)


def do_xble(run: Run, dev: DaxctlDev, action: int) -> int:
    if dev.memory():
        run.err(f"{dev.devname}: status operations are only applicable in devdax mode\n")
        return -errno.ENXIO
    if action == ACTION_ENABLE:
        return _enable_devdax(run, dev)
    return _disable(run, dev)


def do_create(run: Run, region: DaxctlRegion, jdevs: list) -> int:
    if region.create_dev():
        return -errno.ENOSPC
    dev = region.dev_seed()
    if dev is None:
        return -errno.ENOSPC
    val = run.size
    if val == -1:
        val = region.available_size()
    if val <= 0:
        return -errno.ENOSPC
    if run.align > 0:
        rc = dev.set_align(run.align)
        if rc < 0:
            return rc
    alloc = 0
    for start, end, _pgoff in run.maps:
        rc = dev.set_mapping(start, end)
        if rc < 0:
            return rc
        alloc += end - start + 1
    if run.nmaps > 0 and val > 0 and alloc != val:
        run.err(f"{dev.devname}: allocated {alloc} but specified size {val}\n")
    else:
        rc = dev.set_size(val)
        if rc < 0:
            return rc
    rc = _enable_devdax(run, dev)
    if rc:
        return rc
    jdevs.clear()
    jdevs.append(dev_to_json(dev, run.flags))
    return 0


def _display(run: Run, jdevs: list | None) -> None:
    if jdevs:
        out, err = display_json(jdevs, run.flags)
        run.cctx.stdout.write(out)
        run.cctx.stderr.write(err)


def do_xaction_region(run: Run, action: int) -> tuple[int, int]:
    rc, processed = -errno.ENXIO, 0
    jdevs: list | None = None
    for region in run.dctx.regions():
        if not region_filter(region, run.param["region"]):
            continue
        if action == ACTION_CREATE:
            out: list = []
            rc = do_create(run, region, out)
            if out:
                jdevs = out
            if rc == 0:
                processed += 1
        else:
            rc = -errno.EINVAL
    _display(run, jdevs)
    return rc, processed


def do_xaction_device(run: Run, device: str | None, action: int) -> tuple[int, int]:
    saved_rc, processed = 0, 0
    jdevs: list | None = None
    for region in run.dctx.regions():
        if not region_filter(region, run.param["region"]):
            continue
        for dev in region.devices():
            if not dev_filter(dev, device):
                continue
            if action == ACTION_RECONFIG:
                out: list = []
                rc = do_reconfig(run, dev, out)
                if out:                # device.c: a new array per device, only the last is shown
                    jdevs = out
            elif action in (ACTION_ONLINE, ACTION_OFFLINE):
                rc = do_xline(run, dev, action)
            elif action in (ACTION_ENABLE, ACTION_DISABLE):
                rc = do_xble(run, dev, action)
            elif action == ACTION_DESTROY:
                rc = dev_destroy(run, dev)
            else:
                rc = -errno.EINVAL
            if rc == 0:
                processed += 1
            if rc:
                saved_rc = rc
    _display(run, jdevs)
    return saved_rc, processed


def _plural(n: int) -> str:
    return "" if n == 1 else "s"


def device_command(argv: list[str], cctx: CommandContext, action: int, table: list, usage: str,
                   error_verb: str, done_verb: str, noun: str = "device", parse_action: int | None = None) -> int:
    """cmd_*_device(): parse, act, report.  (cmd_enable_device parses as
    ACTION_DISABLE, so its missing-device message says "disable".)"""
    run, device = parse_device_options(argv, action if parse_action is None else parse_action, table, usage, cctx)
    if action == ACTION_CREATE:
        rc, processed = do_xaction_region(run, action)
    else:
        rc, processed = do_xaction_device(run, device, action)
    if rc < 0:
        cctx.stderr.write(f"error {error_verb}: {strerror(rc)}\n")
    cctx.stderr.write(f"{done_verb} {processed} {noun}{_plural(processed)}\n")
    return rc
