"""Built-in topologies, listed by ``cxlemu topologies``.

Most presets are TOML files in ``presets/``; the large and huge fabrics are
generated.
"""

from __future__ import annotations

from importlib import resources

from cxlemu.topology.schema import Topology, loads

_GENERATED = ("large-fabric", "huge-fabric")


def names() -> list[str]:
    files = [p.name[:-5] for p in resources.files("cxlemu.topology.builtin").iterdir()
             if p.name.endswith(".toml")]
    return sorted(files + list(_GENERATED))


def text(name: str) -> str:
    """The TOML source of a preset."""
    if name == "large-fabric":
        return large_fabric_toml()
    if name == "huge-fabric":
        return huge_fabric_toml()
    res = resources.files("cxlemu.topology.builtin") / f"{name}.toml"
    if not res.is_file():
        raise KeyError(name)
    return res.read_text()


def load(name: str) -> Topology:
    return loads(text(name))


def large_fabric_toml(host_bridges: int = 8, root_ports: int = 2, fanout: int = 8,
                      device_size: str = "4G") -> str:
    """A fabric of host_bridges x root_ports x fanout x fanout Type 3 devices.

    Each root port leads to a first-level switch with ``fanout`` downstream
    ports, each of which leads to a second-level switch with ``fanout``
    devices.  The default (4 x 4 x 8 x 8) gives 1024 volatile devices.  One x1
    window per host bridge and one window interleaved across all host bridges.
    """
    n_dev = host_bridges * root_ports * fanout * fanout
    out = [
        "# A large CXL fabric: %d host bridges x %d root ports x %d x %d Type 3 devices"
        % (host_bridges, root_ports, fanout, fanout),
        "[machine]",
        'name = "large-fabric"',
        f'description = "{n_dev} x {device_size} Type 3 devices behind two levels of switches"',
        'flavor = "acpi"',
        "",
        "[boot]",
        'kernel = "6.14"',
        "hypervisor = false",
        "",
        "[[numa]]", "node = 0", "cpus = 32", 'memory = "128G"',
        "",
        "[[numa]]", "node = 1", "cpus = 32", 'memory = "128G"',
    ]
    for h in range(host_bridges):
        out += ["", "[[host_bridge]]", f'id = "hb{h}"', f"uid = {h}", f"segment = {h}", "bus = 0x10",
                f"root_ports = {root_ports}", f"numa_node = {h % 2}"]
    dev = 0
    for h in range(host_bridges):
        for r in range(root_ports):
            top = f"sw{h}.{r}"
            out += ["", "[[switch]]", f'id = "{top}"', f'parent = "hb{h}"', f"downstream_ports = {fanout}"]
            for s in range(fanout):
                leaf = f"sw{h}.{r}.{s}"
                out += ["", "[[switch]]", f'id = "{leaf}"', f'parent = "{top}"',
                        f"downstream_ports = {fanout}"]
                for _ in range(fanout):
                    out += ["", "[[device]]", f'id = "dev{dev}"', f'parent = "{leaf}"',
                            f'volatile = "{device_size}"', "hdm_decoders = 2"]
                    dev += 1
    per_hb = root_ports * fanout * fanout
    from cxlemu.util.units import parse_size
    hb_bytes = per_hb * parse_size(device_size)
    base = 0x100_0000_0000  # 1 TiB
    for h in range(host_bridges):
        out += ["", "[[window]]", f"base = {base:#x}", f"size = {hb_bytes:#x}", f'targets = ["hb{h}"]',
                "granularity = 4096", 'restrictions = ["type3", "volatile"]']
        base += hb_bytes
    targets = ", ".join(f'"hb{h}"' for h in range(host_bridges))
    out += ["", "[[window]]", f"base = {base:#x}", f"size = {hb_bytes * host_bridges:#x}",
            f"targets = [{targets}]", "granularity = 4096", 'restrictions = ["type3", "volatile"]']
    return "\n".join(out) + "\n"


def huge_fabric_toml() -> str:
    """16 384 x 1 GiB Type 3 devices behind three levels of switches.

    128 host bridges, each on its own PCI segment: a segment has 256 bus
    numbers and every root port, switch (internal bus) and downstream port
    consumes one, so 128 devices with their switches fill most of one.
    Each bridge has 2 root ports, each leading to a 4 x 4 x 4 switch tree;
    one x1 window per host bridge and eight 16-way windows."""
    from cxlemu.topology.generate import Spec, generate
    return generate(Spec(devices=16384, switch_levels=3, host_bridges=128, segments=128, root_ports=2,
                         ways=16, device_size="1G", name="huge-fabric"))
