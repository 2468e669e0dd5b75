"""Persistent-memory helpers for the ``cxlemu`` command.

* ``cxlemu labels NAME [MEMDEV...] [--json]``: decode each memdev's Label
  Storage Area (both index blocks with their validity and sequence number,
  which one is current, and every label in use: namespace and region labels
  with their fields);
* ``cxlemu cpu-cache NAME``: what the CPU caches hold for the machine's
  persistent memory (lines stored to but never flushed), per device.
"""

from __future__ import annotations

import json
import sys

from cxlemu.hw import lsa as lbl


def decode_lsa(data: bytes) -> dict:
    """A JSON-able description of a label area."""
    out: dict = {"size": len(data)}
    cur, label_size = lbl.probe_label_area(data)
    if label_size is None:
        out["initialized"] = False
        return out
    out["initialized"] = True
    out["label_size"] = label_size
    _nslot, isize = lbl.nslot_for(len(data), label_size)
    idx = []
    for i in (0, 1):
        blk = lbl.IndexBlock.decode(data[i * isize:(i + 1) * isize])
        idx.append({"index": i, "valid": lbl.validate_index(data, i, label_size), "seq": blk.seq,
                    "version": f"{blk.major}.{blk.minor}", "nslot": blk.nslot,
                    "free": int(blk.nslot - len(_in_use(blk))), "current": i == cur})
    out["index"] = idx
    cxl = idx[cur]["version"] in ("1.2", "2.1") and label_size == 256
    area = lbl.LabelArea(bytearray(data), label_size=label_size,
                         version=lbl.LSA_VERSION_2_1 if cxl else
                         (lbl.LSA_VERSION_1_1 if label_size == 128 else lbl.LSA_VERSION_1_2), cxl=cxl)
    labels = []
    for slot, x in area.labels():
        if isinstance(x, lbl.RegionLabel):
            labels.append({"slot": slot, "type": "region", "uuid": str(x.uuid), "nlabel": x.nlabel,
                           "position": x.position, "dpa": hex(x.dpa), "rawsize": hex(x.rawsize),
                           "hpa": hex(x.hpa), "ig": x.ig, "flags": x.flags})
        elif isinstance(x, lbl.NamespaceLabel):
            labels.append({"slot": slot, "type": "namespace", "uuid": str(x.uuid), "name": x.name,
                           "position": x.position, "nrange": x.nrange, "dpa": hex(x.dpa),
                           "rawsize": hex(x.rawsize), "flags": x.flags, "lbasize": x.lbasize,
                           "region_uuid": str(x.region_uuid),
                           "claim_class": lbl.claim_class_of(x.abstraction_uuid)})
        else:
            labels.append({"slot": slot, "type": "efi-namespace", "uuid": str(x.uuid), "name": x.name,
                           "position": x.position, "nlabel": x.nlabel, "dpa": hex(x.dpa),
                           "rawsize": hex(x.rawsize), "isetcookie": hex(x.isetcookie)})
    bad = sorted(set(area.active_slots()) - {s for s, _ in area.labels()})
    out["labels"] = labels
    if bad:
        out["invalid_slots"] = bad
    return out


def _in_use(blk: lbl.IndexBlock) -> list[int]:
    return [s for s in range(blk.nslot) if not blk.is_free(s)]


def _print_text(name: str, d: dict) -> None:
    print(f"{name}: label storage area {d['size']} bytes"
          + ("" if d["initialized"] else ", not initialized (no valid index block)"))
    if not d["initialized"]:
        return
    for i in d["index"]:
        mark = "*" if i["current"] else " "
        print(f" {mark} index{i['index']}: {'valid' if i['valid'] else 'INVALID'} seq {i['seq']} "
              f"v{i['version']} nslot {i['nslot']} free {i['free']}")
    for x in d["labels"]:
        if x["type"] == "region":
            print(f"   slot {x['slot']:3}: region    {x['uuid']} pos {x['position']}/{x['nlabel']} "
                  f"dpa {x['dpa']} size {x['rawsize']} hpa {x['hpa']} ig {x['ig']}")
        else:
            print(f"   slot {x['slot']:3}: namespace {x['uuid']} pos {x['position']} dpa {x['dpa']} "
                  f"size {x['rawsize']} {x.get('claim_class', '')} {x.get('name', '')!r}")
    for s in d.get("invalid_slots", []):
        print(f"   slot {s:3}: in use but invalid (slot field or checksum)")


def cmd_labels(args) -> int:
    from cxlemu.machine.store import Store
    with Store().open(args.name, write=False) as m:
        mems = {md.name: md for md in m.kernel.cxl.memdevs}
        wanted = args.memdevs or sorted(mems, key=lambda n: int(n[3:]))
        result = {}
        for name in wanted:
            md = mems.get(name)
            if md is None:
                print(f"cxlemu labels: no memdev {name!r} (have: {', '.join(sorted(mems))})", file=sys.stderr)
                return 1
            result[name] = decode_lsa(bytes(md.hw.lsa))
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for name, d in result.items():
            _print_text(name, d)
    return 0


def cmd_cpu_cache(args) -> int:
    from cxlemu.data.cpucache import dirty_report
    from cxlemu.machine.store import Store
    bad: list[str] = []
    with Store().open(args.name, write=False) as m:
        report = dirty_report(m, bad)
        by_file = {d.media_file: d.name for d in m.platform.devices}
        eadr = m.topology.boot.persistent_cpu_caches
    total = sum(n for runs in report.values() for _s, n in runs)
    print(f"{args.name}: {total} bytes in dirty cache lines (never flushed); "
          f"a power failure {'keeps them (eADR)' if eadr else 'loses them'}")
    for f, runs in report.items():
        for s, n in runs:
            print(f"  {by_file.get(f, f)}: DPA {s:#x}-{s + n - 1:#x} ({n} bytes)")
    for why in bad:
        print(f"cxlemu: cpu-cache: {why} (ignored; a reset treats its lines as written back)", file=sys.stderr)
    return 1 if bad else 0


def register(add) -> None:
    sp = add("labels", cmd_labels, "decode the label storage areas (index blocks, namespace/region labels)")
    sp.add_argument("name")
    sp.add_argument("memdevs", nargs="*", metavar="MEMDEV")
    sp.add_argument("--json", action="store_true")
    sp = add("cpu-cache", cmd_cpu_cache, "persistent-memory stores still in the CPU caches (not flushed)")
    sp.add_argument("name")
