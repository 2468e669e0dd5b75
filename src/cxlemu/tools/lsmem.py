"""An lsmem-like view of /sys/devices/system/memory (util-linux lsmem), read
through a backend only, plus what cxlemu adds: the capacity each dax
device in system-ram mode lost to memory-block alignment (observed: the
memory blocks that exist inside the device's ranges were hot-added, the
rest of the ranges was not; kernel/mm/blocksize.py has the kernel's rule).

Columns: RANGE SIZE STATE REMOVABLE BLOCK NODE ZONES, adjacent blocks with
the same attributes merged, then "Memory block size", "Total online
memory", "Total offline memory" (sizes as util-linux size_to_human_string).
"""

from __future__ import annotations

import posixpath
import re

MEM = "/sys/devices/system/memory"


def human(n: int) -> str:
    """util-linux size_to_human_string(SIZE_SUFFIX_1LETTER)."""
    exp = 0
    for shft in range(10, 70, 10):
        if n < (1 << shft):
            exp = shft - 10
            break
    else:
        exp = 60
    letter = "BKMGTPE"[exp // 10 if exp else 0]
    dec = n >> exp if exp else n
    frac = n % (1 << exp) if exp else 0
    if frac:
        frac = frac * 1000 // (1 << exp)
        frac = (frac + 50) // 100 * 10
        if frac == 100:
            dec, frac = dec + 1, 0
    if frac:
        s = f"{dec}.{frac:02d}"
        if s.endswith("0"):
            s = s[:-1]
        return s + letter
    return f"{dec}{letter}"


def _read(b, path: str) -> str:
    try:
        return b.read(path).strip()
    except OSError:
        return ""


def blocks(b) -> tuple[int, list[dict]]:
    bs = int(_read(b, f"{MEM}/block_size_bytes") or "0", 16)
    out = []
    for name in b.listdir(MEM):
        m = re.fullmatch(r"memory(\d+)", name)
        if not m:
            continue
        p = f"{MEM}/{name}"
        node = next((int(x[4:]) for x in b.listdir(p) if re.fullmatch(r"node\d+", x)), -1)
        zones = _read(b, f"{p}/valid_zones")
        out.append({"id": int(m.group(1)), "state": _read(b, f"{p}/state"),
                    "removable": _read(b, f"{p}/removable") == "1", "node": node,
                    "zones": "None" if zones == "none" else zones.replace(" ", "/")})
    return bs, sorted(out, key=lambda x: x["id"])


def merged(bs: int, blks: list[dict]) -> list[dict]:
    rows: list[dict] = []
    for blk in blks:
        key = (blk["state"], blk["removable"], blk["node"], blk["zones"])
        if rows and rows[-1]["key"] == key and rows[-1]["last"] + 1 == blk["id"]:
            rows[-1]["last"] = blk["id"]
            continue
        rows.append({"key": key, "first": blk["id"], "last": blk["id"]})
    for r in rows:
        r["start"], r["end"] = r["first"] * bs, (r["last"] + 1) * bs - 1
    return rows


def stranded_report(b, bs: int, block_ids: list[int] | None = None) -> list[str]:
    """Each kmem-bound dax device: bytes hot-added and lost to block alignment."""
    if block_ids is None:
        block_ids = [blk["id"] for blk in blocks(b)[1]]
    lines = []
    try:
        names = b.listdir("/sys/bus/dax/devices")
    except OSError:
        return lines
    for name in sorted(names):
        p = f"/sys/bus/dax/devices/{name}"
        try:
            drv = posixpath.basename(b.readlink(f"{p}/driver"))
        except OSError:
            continue
        if drv != "kmem":
            continue
        ranges = []
        i = 0
        while b.exists(f"{p}/mapping{i}/start"):
            ranges.append((int(_read(b, f"{p}/mapping{i}/start"), 0), int(_read(b, f"{p}/mapping{i}/end"), 0)))
            i += 1
        if not ranges or not bs:
            continue
        added = sum(bs for bid in block_ids if any(s <= bid * bs and (bid + 1) * bs - 1 <= e for s, e in ranges))
        lost = sum(e - s + 1 for s, e in ranges) - added
        size = sum(e - s + 1 for s, e in ranges)
        lines.append(f"{name}: {human(size)} dax device, {human(added)} hot-added, "
                     f"{human(lost)} ({lost:#x} bytes) stranded by {human(bs)} block alignment")
    return lines


def lsmem(b) -> str:
    bs, blks = blocks(b)
    rows = merged(bs, blks)
    table = [("RANGE", "SIZE", "STATE", "REMOVABLE", "BLOCK", "NODE", "ZONES")]
    online = offline = 0
    for r in rows:
        state, removable, node, zones = r["key"]
        size = r["end"] - r["start"] + 1
        if state == "online":
            online += size
        else:
            offline += size
        block = str(r["first"]) if r["first"] == r["last"] else f"{r['first']}-{r['last']}"
        table.append((f"0x{r['start']:016x}-0x{r['end']:016x}", human(size), state, "yes" if removable else "no",
                      block, str(node), zones))
    hints = (0, 5, 0, 0, 0, 0, 0)          # libsmartcols width hints of lsmem's columns
    widths = [max(hints[i], *(len(row[i]) for row in table)) for i in range(len(table[0]))]
    out = []
    for row in table:
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in range(1, len(row))]
        out.append(" ".join(cells).rstrip() + "\n")
    out.append("\n")
    for label, value in (("Memory block size:", bs), ("Total online memory:", online),
                         ("Total offline memory:", offline)):
        out.append(f"{label:<23} {human(value):>5}\n")       # print_summary(): "%-23s %5s"
    notes = stranded_report(b, bs, [blk["id"] for blk in blks])
    if notes:
        out.append("\n")
        out += [n + "\n" for n in notes]
    return "".join(out)
