"""A rack: several hosts, each its own cxlemu machine, cabled to shared
devices (multi-headed Dynamic Capacity appliances).

Rack topology TOML::

    [rack]
    name = "pool-4h"
    [[host]]
    name = "host0"
    topology = "rack-host"          # a host preset or a TOML file, or embed it:
    # [host.topology] ...           #   the host's machine topology as a table
    [[appliance]]
    id = "pool0"
    capacity = "256G"
    block_size = "256M"
    sanitize_on_release = true
    heads = [{ host = "host0", port = "hb0:0" }, ...]   # host bridge id : root port
    [fm]
    warn_free_fraction = [0.25, 0.10]

On disk, ``$CXLEMU_HOME/racks/RACK/``: ``rack.toml`` (the source), ``rack.json``
(the resolved layout), ``hosts/HOST/`` (each host a machine, addressed as
``RACK/HOST`` by every cxlemu command), ``devices/DEV/`` (each appliance:
state and media, see machine/appliance.py) and ``fm/`` (the fabric manager).

Each head becomes, in its host's topology, a Type 3 device with only Dynamic
Capacity (``dynamic_capacity`` = the appliance's capacity, the head index as
FM API host id) on the named root port, plus a CXL window of that size for it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import tomllib
from dataclasses import asdict, field
from importlib import resources
from pathlib import Path

from cxlemu.hw.dcd import DcdAppliance
from cxlemu.machine.appliance import ApplianceStore
from cxlemu.machine.store import NAME_RE, MachineError, Store, racks_dir
from cxlemu.topology import presets
from cxlemu.topology.schema import TopologyError, dumps, from_dict, loads
from cxlemu.util.fileio import atomic_write, locked
from cxlemu.util.lazydc import dataclass
from cxlemu.util.units import parse_size


class RackError(MachineError):
    pass


@dataclass
class HeadSpec:
    host: str
    port: str               # "hb0:0"


@dataclass
class ApplianceSpec:
    id: str
    capacity: int
    block_size: int = 256 << 20
    sanitize_on_release: bool = True
    heads: list[HeadSpec] = field(default_factory=list)


@dataclass
class HostSpec:
    name: str
    topology_text: str


@dataclass
class RackSpec:
    name: str
    description: str
    hosts: list[HostSpec]
    appliances: list[ApplianceSpec]
    warn_free_fraction: list[float] = field(default_factory=lambda: [0.25, 0.10])


def rack_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("cxlemu.fabric.builtin").iterdir() if p.name.endswith(".toml"))


def rack_preset_text(name: str) -> str:
    res = resources.files("cxlemu.fabric.builtin") / f"{name}.toml"
    if not res.is_file():
        raise KeyError(name)
    return res.read_text()


def host_presets() -> list[str]:
    """Host topologies made for racks (a host without its heads is not a machine preset)."""
    return sorted(p.name[:-5] for p in resources.files("cxlemu.fabric.builtin.hosts").iterdir()
                  if p.name.endswith(".toml"))


def _host_topology(spec, where: str, base: Path | None) -> str:
    if isinstance(spec, dict):
        try:
            return dumps(from_dict(spec, source=where))
        except TopologyError as e:
            raise RackError(f"{where}: {e.field}: {e.reason}") from None
    if not isinstance(spec, str):
        raise RackError(f"{where}: expected a preset name, a file or an embedded table")
    if spec in host_presets():
        return (resources.files("cxlemu.fabric.builtin.hosts") / f"{spec}.toml").read_text()
    if spec in presets.names():
        return presets.text(spec)
    p = Path(spec)
    if base is not None and not p.is_absolute():
        p = base / p
    if p.is_file():
        return p.read_text()
    raise RackError(f"{where}: unknown host topology {spec!r} (a preset: "
                    f"{', '.join(host_presets() + presets.names())}, or a file)")


def parse_rack(text: str, base: Path | None = None) -> RackSpec:
    """Parse and validate a rack TOML; RackError names the field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RackError(f"rack topology: invalid TOML: {e}") from None
    unknown = set(doc) - {"rack", "host", "appliance", "fm"}
    if unknown:
        raise RackError(f"rack topology: unknown table {sorted(unknown)[0]!r}")
    rk = doc.get("rack", {})
    if not isinstance(rk, dict):
        raise RackError("rack: expected a table")
    hosts_doc = doc.get("host", [])
    if not isinstance(hosts_doc, list) or not hosts_doc:
        raise RackError("host: a rack needs at least one [[host]]")
    hosts: list[HostSpec] = []
    seen: set[str] = set()
    for i, h in enumerate(hosts_doc):
        if not isinstance(h, dict):
            raise RackError(f"host[{i}]: expected a table")
        name = h.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise RackError(f"host[{i}].name: a name of letters, digits, '_', '.', '-' is required")
        if name in seen:
            raise RackError(f"host[{i}].name: {name!r} is used twice")
        seen.add(name)
        extra = set(h) - {"name", "topology"}
        if extra:
            raise RackError(f"host[{i}].{sorted(extra)[0]}: unknown field (known: name, topology)")
        hosts.append(HostSpec(name, _host_topology(h.get("topology", "rack-host"), f"host[{i}].topology", base)))
    apps: list[ApplianceSpec] = []
    for i, a in enumerate(doc.get("appliance", [])):
        w = f"appliance[{i}]"
        if not isinstance(a, dict):
            raise RackError(f"{w}: expected a table")
        extra = set(a) - {"id", "capacity", "block_size", "sanitize_on_release", "heads"}
        if extra:
            raise RackError(f"{w}.{sorted(extra)[0]}: unknown field")
        aid = a.get("id")
        if not isinstance(aid, str) or not NAME_RE.match(aid):
            raise RackError(f"{w}.id: required, letters, digits, '_', '.', '-'")
        try:
            cap = parse_size(a.get("capacity", 0))
            bs = parse_size(a.get("block_size", "256M"))
        except ValueError as e:
            raise RackError(f"{w}.capacity: {e}") from None
        if bs <= 0 or bs % (256 << 20):
            raise RackError(f"{w}.block_size: must be a positive multiple of 256M")
        if cap <= 0 or cap % bs:
            raise RackError(f"{w}.capacity: must be a positive multiple of the block size")
        heads = []
        used_ports: set[tuple[str, str]] = set()
        for j, hd in enumerate(a.get("heads", [])):
            if not isinstance(hd, dict) or set(hd) != {"host", "port"}:
                raise RackError(f"{w}.heads[{j}]: expected {{ host = ..., port = \"HB:PORT\" }}")
            if hd["host"] not in seen:
                raise RackError(f"{w}.heads[{j}].host: no host {hd['host']!r} in this rack")
            if not isinstance(hd["port"], str) or ":" not in hd["port"]:
                raise RackError(f"{w}.heads[{j}].port: expected \"HOSTBRIDGE:ROOTPORT\"")
            key = (hd["host"], hd["port"])
            if key in used_ports:
                raise RackError(f"{w}.heads[{j}]: {hd['host']} port {hd['port']} is cabled twice")
            used_ports.add(key)
            heads.append(HeadSpec(hd["host"], hd["port"]))
        if not heads:
            raise RackError(f"{w}.heads: an appliance needs at least one head")
        apps.append(ApplianceSpec(aid, cap, bs, bool(a.get("sanitize_on_release", True)), heads))
    fm = doc.get("fm", {})
    warn = fm.get("warn_free_fraction", [0.25, 0.10]) if isinstance(fm, dict) else None
    if not isinstance(warn, list) or not all(isinstance(x, (int, float)) and 0 < x < 1 for x in warn):
        raise RackError("fm.warn_free_fraction: a list of fractions between 0 and 1")
    spec = RackSpec(str(rk.get("name", "rack")), str(rk.get("description", "")), hosts, apps,
                    sorted((float(x) for x in warn), reverse=True))
    for h in spec.hosts:         # every host topology must build with its heads
        try:
            loads(host_topology_with_heads(spec, h))
        except TopologyError as e:
            raise RackError(f"host {h.name}: {e.field}: {e.reason}") from None
    return spec


def head_serial(appliance_index: int, head: int) -> int:
    return 0xC0DE0000 + appliance_index * 0x100 + head


def host_topology_with_heads(spec: RackSpec, host: HostSpec) -> str:
    """The host's machine topology plus, for each head cabled to it, a DC-only
    Type 3 device on that port and a CXL window for it."""
    extra = []
    for a_i, a in enumerate(spec.appliances):
        for h_i, hd in enumerate(a.heads):
            if hd.host != host.name:
                continue
            hb, _, port = hd.port.partition(":")
            extra += ["", "[[device]]", f'id = "{a.id}-head{h_i}"', f'parent = "{hb}"', f"port = {int(port)}",
                      f"serial = {head_serial(a_i, h_i)}",
                      f'dynamic_capacity = "{a.capacity}"', f'dc_block_size = "{a.block_size}"',
                      f'appliance = "{a.id}"', f"head = {h_i}", "",
                      "[[window]]", f'size = "{a.capacity}"', f'targets = ["{hb}"]', "granularity = 256",
                      'restrictions = ["type3", "volatile"]']
    return host.topology_text.rstrip("\n") + "\n" + "\n".join(extra) + "\n"


# ---- racks on disk ---------------------------------------------------------------------------------------------
def rack_path(name: str) -> Path:
    if not NAME_RE.match(name):
        raise RackError(f"invalid rack name {name!r}")
    return racks_dir() / name


def load_layout(name: str) -> dict:
    p = rack_path(name) / "rack.json"
    if not p.exists():
        raise RackError(f"no rack named {name!r} (see: cxlemu rack ls)")
    return json.loads(p.read_text())


def create(name: str, text: str, base: Path | None = None) -> dict:
    spec = parse_rack(text, base)
    dest = rack_path(name)
    if dest.exists():
        raise RackError(f"rack {name!r} already exists (cxlemu rack rm {name})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=dest.parent))
    try:
        (tmp / "rack.toml").write_text(text)
        head_media = {}
        for a_i, a in enumerate(spec.appliances):
            for h_i, hd in enumerate(a.heads):
                head_media.setdefault(hd.host, {})[f"{head_serial(a_i, h_i):016x}.media"] = a.id
        layout = {"name": name, "preset": spec.name, "description": spec.description,
                  "hosts": [h.name for h in spec.hosts], "head_media": head_media,
                  "appliances": [asdict(a) for a in spec.appliances],
                  "warn_free_fraction": spec.warn_free_fraction}
        for a_i, a in enumerate(spec.appliances):
            dev = DcdAppliance.create(a.id, 0xC0DE0000 + a_i * 0x100, a.capacity,
                                      [(h.host, h.port) for h in a.heads], a.block_size)
            for r in dev.regions:
                r.sanitize_on_release = a.sanitize_on_release
            ApplianceStore(tmp / "devices" / a.id).create(dev)
        atomic_write(tmp / "rack.json", json.dumps(layout, indent=1).encode())
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    st = Store()
    try:
        for h in spec.hosts:
            st.create(f"{name}/{h.name}", host_topology_with_heads(spec, h))
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return layout


def remove(name: str) -> None:
    """Remove a rack's directory (its fabric manager must be stopped first:
    ``cxlemu rack rm`` does both; fm/service.py sits above this module)."""
    p = rack_path(name)
    if not p.exists():
        raise RackError(f"no rack named {name!r}")
    with locked(p / "lock"):
        trash = Path(tempfile.mkdtemp(prefix=f".{name}.rm.", dir=p.parent))
        os.rename(p, trash / name)
    shutil.rmtree(trash, ignore_errors=True)


def names() -> list[str]:
    d = racks_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "rack.json").exists())


def appliance_store(rack: str, dev: str) -> ApplianceStore:
    return ApplianceStore(rack_path(rack) / "devices" / dev)
