"""``cxl disable-port`` / ``enable-port`` (cxl/port.c) and ``cxl
disable-bus`` (cxl/bus.c), v81, end to end on the emulated kernel, with the
port/memdev/bus part of ndctl's test/cxl-topology.sh as a Python flow."""

from __future__ import annotations

import os
import subprocess
import sys

from cxltest_support import cxl, run
from cxltest_support import cxl_json as js, cxl_list_all as snapshot


def record_writes(b, monkeypatch) -> list[tuple[str, bytes]]:
    seen: list[tuple[str, bytes]] = []
    orig = b.write

    def write(path, data):
        orig(path, data)
        seen.append((path, data if isinstance(data, bytes) else data.encode()))
    monkeypatch.setattr(b, "write", write)
    return seen


# ---------------------------------------------------------------------------
# disable-port / enable-port
# ---------------------------------------------------------------------------

def test_disable_port_with_enabled_memdevs_needs_force(b):
    before = snapshot(b)
    rc, out, err = cxl(b, "disable-port", "port4")
    assert (rc, out) == (1, "")
    assert err == ("cxl port: action_disable: port4 hosts 2 memdevs which are part of an active region\n"
                   "cxl port: action_disable: See 'cxl list -M -p port4' to see impacted devices\n"
                   "cxl port: cmd_disable_port: disabled 0 port\n")
    assert snapshot(b) == before
    # by host name, one memdev left enabled below it: the singular forms
    assert cxl(b, "disable-memdev", "-f", "mem4")[0] == 0
    before = snapshot(b)
    rc, out, err = cxl(b, "disable-port", "cxl_switch_uport.0")
    assert err == ("cxl port: action_disable: port4 hosts 1 memdev which is part of an active region\n"
                   "cxl port: action_disable: See 'cxl list -M -p port4' to see impacted device\n"
                   "cxl port: cmd_disable_port: disabled 0 port\n")
    assert snapshot(b) == before


def test_disable_port_force_writes_unbind_and_tears_down(b, monkeypatch):
    writes = record_writes(b, monkeypatch)
    assert cxl(b, "disable-port", "-f", "port4") == (0, "", "cxl port: cmd_disable_port: disabled 1 port\n")
    assert [p for p, _ in writes if not p.endswith("/flush")] == [
        "/sys/devices/platform/cxl_acpi.0/root0/port1/port4/driver/unbind"]
    assert (b"port4\0") in [d for _, d in writes]
    # the switch port is gone with its endpoints; its memdevs lost their driver
    assert js(b, "list", "-p", "port4") == []
    states = {m["memdev"]: m.get("state") for m in js(b, "list", "-M", "-i", "-m", "mem0,mem4")}
    assert states == {"mem0": "disabled", "mem4": "disabled"}


def test_disable_port_lookups(b):
    before = snapshot(b)
    assert cxl(b, "disable-port", "port99") == (
        0, "", "cxl port: port_action: port: port99 not found\ncxl port: cmd_disable_port: disabled 0 port\n")
    # the root is not below the root: not found either
    assert cxl(b, "disable-port", "root0")[2].startswith("cxl port: port_action: port: root0 not found\n")
    assert cxl(b, "disable-port", "-e", "port4")[2].startswith(
        "cxl port: port_action: endpoint: port4 not found\n")
    assert cxl(b, "disable-port")[0] == 129
    assert snapshot(b) == before


def test_disable_endpoint_port_counts_its_memdev(b):
    rc, out, err = cxl(b, "disable-port", "-e", "endpoint5")
    assert (rc, err) == (1, "cxl port: action_disable: endpoint5 hosts 1 memdev which is part of an "
                            "active region\n"
                            "cxl port: action_disable: See 'cxl list -M -p endpoint5' to see impacted "
                            "device\ncxl port: cmd_disable_port: disabled 0 port\n")
    # the endpoint is named by its host (the memdev) too
    assert cxl(b, "disable-port", "-e", "-f", "mem2")[2] == "cxl port: cmd_disable_port: disabled 1 port\n"


def test_already_disabled_port_counts_and_enable_port_m(b):
    assert cxl(b, "disable-port", "-f", "port2")[0] == 0
    # host-bridge ports stay (children of the root) but lose their driver
    assert js(b, "list", "-P", "-i", "-p", "port2")[0].get("state") == "disabled"
    assert cxl(b, "disable-port", "port2")[2] == "cxl port: cmd_disable_port: disabled 1 port\n"
    mems = {m["memdev"]: m.get("state") for m in js(b, "list", "-M", "-i", "-p", "port2")}
    assert sorted(mems) == ["mem1", "mem3", "mem5", "mem7"] and set(mems.values()) == {"disabled"}
    assert cxl(b, "enable-port", "port2") == (0, "", "cxl port: cmd_enable_port: enabled 1 port\n")
    assert all(m.get("state") == "disabled" for m in js(b, "list", "-M", "-i", "-p", "port2"))
    assert cxl(b, "enable-port", "-m", "port2")[0] == 0
    assert len(js(b, "list", "-M", "-p", "port2")) == 4


def test_port_all_keeps_the_first_argument(b):
    # C sets argc = 1: "port4 all" acts on port4 only, "all" alone on the first port found
    assert cxl(b, "disable-port", "-f", "port4", "all")[2] == "cxl port: cmd_disable_port: disabled 1 port\n"
    assert js(b, "list", "-p", "port4") == [] and js(b, "list", "-P", "-p", "port8") != []


# ---------------------------------------------------------------------------
# disable-bus
# ---------------------------------------------------------------------------

def test_disable_bus_refuses_with_enabled_memdevs(b):
    before = snapshot(b)
    rc, out, err = cxl(b, "disable-bus", "root0")
    assert (rc, out) == (1, "")
    assert err == ("cxl bus: action_disable: root0 hosts 11 memdevs which are part of an active region\n"
                   "cxl bus: action_disable: See 'cxl list -M -b root0' to see impacted devices\n"
                   "cxl bus: cmd_disable_bus: disabled 0 bus\n")
    assert snapshot(b) == before


def test_disable_bus_identifiers(b):
    before = snapshot(b)
    rc, out, err = cxl(b, "disable-bus", "cxl_test")
    assert rc == 129 and err.startswith("cxl bus: bus_action: 'cxl_test' is not a valid bus identifer\n\n"
                                        " usage: cxl disable-bus <bus0> [<bus1>..<busN>] [<options>]\n")
    assert cxl(b, "disable-bus")[0] == 129
    # a valid-looking identifier that matches nothing is only a debug message
    assert cxl(b, "disable-bus", "root9") == (0, "", "cxl bus: cmd_disable_bus: disabled 0 bus\n")
    assert cxl(b, "disable-bus", "--debug", "7")[2].endswith(
        "cxl bus: bus_action: bus: 7 not found\ncxl bus: cmd_disable_bus: disabled 0 bus\n")
    assert snapshot(b) == before


def test_disable_bus_force_unbinds_the_uport(b, monkeypatch):
    writes = record_writes(b, monkeypatch)
    assert cxl(b, "disable-bus", "-f", "all") == (0, "", "cxl bus: cmd_disable_bus: disabled 1 bus\n")
    cmds = [(p, d) for p, d in writes if not p.endswith("/flush")]
    assert cmds == [("/sys/devices/platform/cxl_acpi.0/driver/unbind", b"cxl_acpi.0\0")]
    assert writes[-1][0] == "/sys/bus/cxl/flush"
    assert not b.exists("/sys/devices/platform/cxl_acpi.0/driver")


def test_disable_bus_removes_the_cxl_topology(b):
    """drivers/cxl/acpi.c: unbinding cxl_acpi unregisters root0 and everything below."""
    assert cxl(b, "disable-bus", "-f", "root0")[0] == 0
    assert js(b, "list", "-B") == []
    assert js(b, "list", "-M") == []
    assert "CXL Window" not in b.read("/proc/iomem")
    # binding cxl_acpi again enumerates the bus anew; memdevs come back with enable-memdev
    b.write("/sys/bus/platform/drivers/cxl_acpi/bind", "cxl_acpi.0\0")
    assert [x["bus"] for x in js(b, "list", "-B")] == ["root0"]
    assert cxl(b, "enable-memdev", "all")[0] == 0
    assert len(js(b, "list", "-M")) == 11


# ---------------------------------------------------------------------------
# ndctl test/cxl-topology.sh (port, memdev and bus parts)
# ---------------------------------------------------------------------------

def test_cxl_topology_sh_enable_disable_flow(b):
    root = js(b, "list", "-b", "cxl_test")[0]["bus"]
    bridges = sorted(js(b, "list", "-b", "cxl_test", "-BP")[0][f"ports:{root}"],
                     key=lambda p: int(p["port"][4:]))
    assert len(bridges) == 3
    switches = []
    for br in bridges[:2]:
        ports = js(b, "list", "-b", "cxl_test", "-P", "-p", br["port"])[0][f"ports:{br['port']}"]
        assert len(ports) == 2
        switches += [p["host"] for p in sorted(ports, key=lambda p: int(p["port"][4:]))]

    # switch ports disappear with their last memdev and come back with them
    for s in switches:
        mems = js(b, "list", "-M", "-p", s)
        assert len(mems) == 2
        m0, m1 = mems[0]["memdev"], mems[1]["memdev"]
        assert cxl(b, "disable-memdev", m0, "--force")[0] == 0
        assert len(js(b, "list", "-p", s)) == 1
        assert cxl(b, "disable-memdev", m1, "--force")[0] == 0
        assert len(js(b, "list", "-p", s)) == 0
        assert cxl(b, "enable-memdev", m0)[0] == 0
        assert cxl(b, "enable-memdev", m1)[0] == 0
        assert len(js(b, "list", "-p", s)) == 1
        assert cxl(b, "disable-port", s, "--force")[0] == 0
        assert len(js(b, "list", "-p", s)) == 0
        assert cxl(b, "enable-memdev", m0, m1)[0] == 0
        assert len(js(b, "list", "-p", s)) == 1

    # host bridge tear down and enable-port -m for the first two bridges
    for br in bridges[:2]:
        assert cxl(b, "disable-port", br["port"], "-f")[0] == 0
        mems = js(b, "list", "-M", "-i", "-p", br["port"])
        assert len([m for m in mems if m.get("state") == "disabled"]) == 4
        assert cxl(b, "enable-port", br["port"], "-m")[0] == 0
        assert len(js(b, "list", "-M", "-p", br["port"])) == 4

    assert cxl(b, "disable-bus", root, "-f") == (0, "", "cxl bus: cmd_disable_bus: disabled 1 bus\n")


def test_disable_port_through_cxlemu_exec():
    from cxlemu.machine.store import Store
    from cxlemu.topology import presets
    Store().create("lab", presets.text("cxl-test"))
    p = subprocess.run([sys.executable, "-m", "cxlemu", "exec", "lab", "--", "cxl", "disable-port",
                        "-f", "port8"], capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert (p.returncode, p.stderr) == (0, "cxl port: cmd_disable_port: disabled 1 port\n")
    with Store().open("lab", write=False) as m:
        assert js(m.backend(), "list", "-p", "port8") == []
