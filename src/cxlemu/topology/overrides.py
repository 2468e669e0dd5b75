"""``--set KEY=VALUE``: override any field of a topology before it is built.

Keys are dotted paths into the TOML document, arrays by index:
``numa.0.memory=4G``, ``boot.swap=8G``, ``device.0.cdat.read_latency=300``,
``numa.0.timing.profile=ddr5-4800``, ``window.1.granularity=4096``.  A value
is read as a TOML value when it is one (``300``, ``true``, ``[1, 2]``,
``"x"``) and as a string otherwise (``4G``).  Missing tables on the way are
created (the schema then rejects unknown fields); an array index must
exist.  Errors are :class:`TopologyError` naming the key.
"""

from __future__ import annotations

import tomllib
from typing import Any

from dataclasses import fields

from cxlemu.topology import schema
from cxlemu.topology.schema import Topology, TopologyError, dumps, from_dict

CLASSES = {"boot": schema.BootOptions, "numa": schema.NumaNode, "host_bridge": schema.HostBridge,
           "switch": schema.Switch, "device": schema.Device, "window": schema.Window,
           "firmware_region": schema.FirmwareRegion}
NESTED = {"cdat": schema.Cdat, "timing": schema.Timing, "caps": schema.HdmCaps}


def wants_string(parts: list[str]) -> bool:
    """Is the field a string in the schema (so ``boot.kernel=6.17`` stays "6.17")?"""
    if parts[0] == "machine":
        return True
    cls = CLASSES.get(parts[0])
    rest = parts[2:] if parts[0] in ("numa", "host_bridge", "switch", "device", "window",
                                     "firmware_region") else parts[1:]
    for p in rest[:-1]:
        cls = NESTED.get(p)
        if cls is None:
            return False
    if cls is None or not rest:
        return False
    for f in fields(cls):
        if f.name == rest[-1]:
            return str(f.type).startswith("str")
    return False

SECTIONS = {"machine": "table", "boot": "table", "numa": "array", "host_bridge": "array", "switch": "array",
            "device": "array", "window": "array", "firmware_region": "array"}


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply(doc: dict, assignment: str) -> None:
    """Apply one KEY=VALUE to a parsed TOML document (in place)."""
    if "=" not in assignment:
        raise TopologyError(f"--set {assignment}", "expected KEY=VALUE")
    key, _, value = assignment.partition("=")
    key = key.strip()
    parts = [p for p in key.split(".")]
    if not parts or any(not p for p in parts):
        raise TopologyError(f"--set {key}", "empty component in the key")
    head = parts[0]
    if head not in SECTIONS:
        raise TopologyError(f"--set {key}", f"unknown section {head!r} (known: {', '.join(SECTIONS)})")
    if SECTIONS[head] == "array":
        if head == "numa" and head not in doc:
            doc[head] = [{"node": 0}]
        arr = doc.setdefault(head, [])
        if len(parts) < 3:
            raise TopologyError(f"--set {key}", f"use {head}.INDEX.FIELD")
        try:
            idx = int(parts[1])
        except ValueError:
            raise TopologyError(f"--set {key}", f"{parts[1]!r} is not an index of {head}") from None
        if not isinstance(arr, list) or not 0 <= idx < len(arr):
            raise TopologyError(f"--set {key}", f"no {head}[{idx}] (the topology has {len(arr)})")
        cur = arr[idx]
        rest = parts[2:]
    else:
        cur = doc.setdefault(head, {})
        rest = parts[1:]
        if not rest:
            raise TopologyError(f"--set {key}", f"use {head}.FIELD")
    for p in rest[:-1]:
        nxt = cur.get(p) if isinstance(cur, dict) else None
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise TopologyError(f"--set {key}", f"{p!r} is not a table")
        cur = nxt
    if not isinstance(cur, dict):
        raise TopologyError(f"--set {key}", "not a table")
    v = parse_value(value)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and wants_string(parts):
        v = value.strip()
    cur[rest[-1]] = v


def apply_all(text: str, assignments: list[str]) -> str:
    """The topology text with every override applied (validated)."""
    if not assignments:
        return text
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TopologyError("<toml>", str(e)) from None
    for a in assignments:
        apply(doc, a)
    topo: Topology = from_dict(doc)
    return dumps(topo)
