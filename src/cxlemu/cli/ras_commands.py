"""``cxlemu fault``: the hardware side of RAS -- what a device does on its
own, reported the way the device reports it (poison list entries, event
records in its logs, an interrupt), then handled by the machine's kernel.

::

    cxlemu fault NAME MEMDEV --media-error DPA [--len N] [--source internal|external|vendor|unknown]
                             [--dram] [--latent]
    cxlemu fault NAME MEMDEV --corrected-error DPA [--count N] [--dram]
    cxlemu fault NAME MEMDEV --health life_used=95,temperature=80,dirty_shutdown,...
    cxlemu fault NAME MEMDEV --link-down | --link-up

MEMDEV is the kernel name (``mem0``), the topology device id or the PCI
address.  A malformed or impossible fault is refused with a message
(exit 2 for a malformed spec, 1 for one the device cannot have) and
nothing changes.
"""

from __future__ import annotations

import argparse
import sys

HEALTH_HELP = ("comma-separated KEY=VALUE: life_used=PCT, temperature=C, dirty_shutdowns=N (or "
               "dirty_shutdown for one more), volatile_errors=N, pmem_errors=N, maintenance_needed=0|1, "
               "performance_degraded=0|1, hw_replacement_needed=0|1, media_status=NAME|N")
MEDIA_STATUS = {"normal": 0, "not_ready": 1, "persistence_lost": 2, "data_lost": 3,
                "powerloss_persistence_loss": 4, "shutdown_persistence_loss": 5, "persistence_loss_imminent": 6,
                "powerloss_data_loss": 7, "shutdown_data_loss": 8, "data_loss_imminent": 9}
SOURCES = {"unknown": 0, "external": 1, "internal": 2, "injected": 3, "vendor": 7}
_BOOL = {"1": True, "0": False, "true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


class SpecError(ValueError):
    """A malformed fault spec (usage error, exit 2)."""


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except (TypeError, ValueError):
        raise SpecError(f"{what}: {text!r} is not a number") from None


def parse_health(spec: str, current_dirty: int) -> dict[str, object]:
    """``life_used=95,temperature=80,dirty_shutdown`` -> {field: value}."""
    from cxlemu.hw import health as H
    out: dict[str, object] = {}
    if not spec or not spec.strip():
        raise SpecError("--health needs KEY=VALUE pairs (" + HEALTH_HELP + ")")
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise SpecError(f"--health: empty item in {spec!r}")
        if item in ("dirty_shutdown", "dirty-shutdown"):
            out["dirty_shutdowns"] = int(out.get("dirty_shutdowns", current_dirty)) + 1   # type: ignore[arg-type]
            continue
        key, sep, val = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise SpecError(f"--health: {item!r} is not KEY=VALUE")
        if key == "life_used_percent":
            key = "life_used"
        if key not in H.FIELDS:
            raise SpecError(f"--health: unknown field {key!r} (known: {', '.join(sorted(H.FIELDS))})")
        val = val.strip()
        if H.FIELDS[key] is bool:
            if val.lower() not in _BOOL:
                raise SpecError(f"--health: {key} needs 0 or 1 (got {val!r})")
            out[key] = _BOOL[val.lower()]
        elif key == "media_status" and val.lower() in MEDIA_STATUS:
            out[key] = MEDIA_STATUS[val.lower()]
        else:
            out[key] = _int(val, f"--health {key}")
    err = H.validate(out)
    if err:
        raise SpecError(f"--health: {err}")
    return out


def register(add) -> None:
    sp = add("fault", cmd_fault, "inject a hardware fault: media error, health change, link down")
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.description = (__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("::")[1].split("MEMDEV is")[0]
                      + "MEMDEV is" + __doc__.split("MEMDEV is")[1]).replace("``", "")
    sp.add_argument("name", help="machine")
    sp.add_argument("memdev", help="memN, topology device id or PCI address")
    what = sp.add_mutually_exclusive_group(required=True)
    what.add_argument("--media-error", metavar="DPA", help="an uncorrectable media error at DPA")
    what.add_argument("--corrected-error", metavar="DPA", help="a corrected media error at DPA")
    what.add_argument("--health", metavar="SPEC", help=HEALTH_HELP)
    what.add_argument("--link-down", action="store_true", help="the CXL link drops")
    what.add_argument("--link-up", action="store_true", help="the link retrains (hot reset of the device)")
    sp.add_argument("--len", default="64", metavar="N", help="length of the media error in bytes (default 64)")
    sp.add_argument("--source", default="internal", help="poison source: " + ", ".join(SOURCES))
    sp.add_argument("--dram", action="store_true", help="report a DRAM event record instead of general media")
    sp.add_argument("--latent", action="store_true", help="the device does not notice (no record, no event)")
    sp.add_argument("--count", default="1", metavar="N", help="number of corrected errors (default 1)")


def _find(k, ident: str):
    for md in k.cxl.memdevs:
        if ident in (md.name, md.hw.topo.id, md.hw.name) or (ident.isdigit() and md.name == f"mem{ident}"):
            return md
    return None


def _fail(msg: str, code: int) -> int:
    print(f"cxlemu: {msg}", file=sys.stderr)
    return code


def cmd_fault(args) -> int:
    from cxlemu.hw import faults as F
    from cxlemu.hw import health as H
    from cxlemu.machine.store import Store
    try:
        source = SOURCES.get(args.source.lower())
        if source is None:
            raise SpecError(f"--source: {args.source!r} is not one of {', '.join(SOURCES)}")
        length = _int(args.len, "--len")
        count = _int(args.count, "--count")
        dpa = _int(args.media_error or args.corrected_error, "DPA") if (args.media_error or args.corrected_error) \
            else None
        if count <= 0:
            raise SpecError("--count must be positive")
    except SpecError as e:
        return _fail(str(e), 2)
    with Store().open(args.name) as m:
        k = m.kernel
        md = _find(k, args.memdev)
        if md is None:
            names = ", ".join(x.name for x in k.cxl.memdevs) or "none"
            return _fail(f"{args.name}: no memdev {args.memdev!r} (memdevs: {names})", 1)
        hw = md.hw
        hw.clock_ns = k.clock_ns
        try:
            if args.health is not None:
                changes = parse_health(args.health, hw.health.dirty_shutdowns)
                if not hw.link_up:
                    raise F.FaultError(f"{md.name}: the link is down (the device cannot report anything)")
                rec = H.apply(hw, changes, k.clock_ns)
                what = ", ".join(f"{k_}={v}" for k_, v in changes.items())
                where = f"Memory Module event in the {_log_name(rec)} log" if rec is not None \
                    else "nothing changed or the event log is full"
                msg = f"{md.name}: health {what}: {where}"
            elif args.media_error is not None:
                new = F.media_error(hw, dpa, length, source=source, dram=args.dram, latent=args.latent)
                listed = sum(1 for r in new if r.listed)
                msg = (f"{md.name}: media error at DPA {dpa:#x} ({length} bytes, {args.source}): "
                       f"{len(new)} new poison record(s), {listed} listed"
                       + (", poison list overflow" if hw.poison.overflow and listed < len(new) else "")
                       + ("; latent (no event)" if args.latent else
                          f"; {'DRAM' if args.dram else 'General Media'} event in the Failure log"))
            elif args.corrected_error is not None:
                F.corrected_error(hw, dpa, dram=args.dram, count=count)
                msg = f"{md.name}: {count} corrected error(s) at DPA {dpa:#x}"
            elif args.link_down:
                if not hw.link_up:
                    raise F.FaultError(f"{md.name}: the link is already down")
                F.link_down(hw)
                k.cxl.link_down(md)
                msg = f"{md.name}: link down: accesses return all-ones, {md.name} lost its driver"
            else:
                if hw.link_up:
                    raise F.FaultError(f"{md.name}: the link is up")
                F.link_up(hw)
                k.cxl.link_up(md)
                msg = f"{md.name}: link up after a hot reset: {md.name} probed again (regions are not restored)"
        except SpecError as e:
            return _fail(str(e), 2)
        except F.FaultError as e:
            return _fail(str(e), 1)
        k.dirty = True
        k.cxl.events.service(md)          # the device's interrupt, if it raised one
        print(msg)
    return 0


def _log_name(rec) -> str:
    from cxlemu.hw.mailbox.events import LOG_NAMES
    return LOG_NAMES.get(rec.header.severity, "?") if rec is not None else "?"
