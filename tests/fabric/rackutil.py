"""Small racks for the tests."""

from __future__ import annotations

import uuid

from cxlemu.fabric import rack
from cxlemu.hw.mailbox import dcd_payloads as D

G = 1 << 30

HOST = """
[host.topology.machine]
name = "small-host"
[host.topology.boot]
kernel = "6.9"
hypervisor = false
memory_block_size = "256M"
[[host.topology.numa]]
node = 0
cpus = 4
memory = "4G"
[[host.topology.host_bridge]]
id = "hb0"
uid = 0
bus = 0x0c
root_ports = 1
"""


def rack_toml(hosts: int = 2, cap: str = "8G", warn: str = "[0.25, 0.10]") -> str:
    out = ['[rack]', 'name = "test-rack"']
    for i in range(hosts):
        out += ["[[host]]", f'name = "host{i}"', HOST]
    heads = ", ".join(f'{{ host = "host{i}", port = "hb0:0" }}' for i in range(hosts))
    out += ["[[appliance]]", 'id = "pool0"', f'capacity = "{cap}"', 'block_size = "256M"', f"heads = [{heads}]",
            "[fm]", f"warn_free_fraction = {warn}"]
    return "\n".join(out) + "\n"


def make_rack(name: str = "r", hosts: int = 2, cap: str = "8G", **kw) -> dict:
    return rack.create(name, rack_toml(hosts, cap, **kw))


def tag(name: str) -> uuid.UUID:
    from cxlemu.fabric.fm.core import tag_uuid
    return uuid.UUID(tag_uuid(name))


def fm_add(rackname: str, head: int, size: int, name: str, policy: int = 0, exts=(), shared=False):
    with rack.appliance_store(rackname, "pool0").transaction() as d:
        return d.initiate_add(D.FmInitiateDcAdd(head, policy, 0, size, tag(name).bytes, tuple(exts)), shared=shared)
