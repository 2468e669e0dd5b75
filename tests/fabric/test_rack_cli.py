"""cxlemu rack create/ls/rm, the rack TOML (errors name the field; a fuzz
never gets a traceback), hosts as RACK/HOST, independent reboots, the agent."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.cli.main import main
from cxlemu.fabric import agent, rack
from cxlemu.fabric.fm.core import FabricManager
from cxlemu.kernel.cxl import dcd
from cxlemu.machine.store import Store

from .rackutil import G, make_rack, rack_toml


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_pool_4h_preset(capsys):
    rc, out, _ = run(capsys, "rack", "create", "r", "--topology", "pool-4h")
    assert rc == 0 and "4 host(s)" in out and "pool0 (256 GiB, 4 heads)" in out
    rc, out, _ = run(capsys, "exec", "r/host3", "--", "cat", "/sys/bus/cxl/devices/mem0/dynamic_ram_1/size")
    assert out.strip() == hex(256 * G)
    rc, out, _ = run(capsys, "rack", "ls")
    assert out.startswith("r ") and "4 host(s)" in out and "pool 256 GiB" in out
    rc, out, _ = run(capsys, "iomem", "r/host0")
    assert "CXL Window 0" in out and "region0" in out
    rc, _, err = run(capsys, "rack", "create", "r", "--topology", "pool-4h")
    assert rc == 1 and "already exists" in err
    assert run(capsys, "rack", "rm", "r")[0] == 0
    assert not Store().exists("r/host0")


@pytest.mark.parametrize("text,msg", [
    ("[rack]\n", "at least one [[host]]"),
    ('[[host]]\nname = "a b"\n', "host[0].name"),
    ('[[host]]\nname = "a"\n[[host]]\nname = "a"\n', "used twice"),
    ('[[host]]\nname = "a"\ntopology = "nope"\n', "unknown host topology"),
    ('[[host]]\nname = "a"\n[[appliance]]\nid = "p"\ncapacity = "1G"\nheads = [{host = "b", port = "hb0:0"}]\n',
     "no host 'b'"),
    ('[[host]]\nname = "a"\n[[appliance]]\nid = "p"\ncapacity = "100M"\nheads = [{host = "a", port = "hb0:0"}]\n',
     "multiple of the block size"),
    ('[[host]]\nname = "a"\n[[appliance]]\nid = "p"\ncapacity = "1G"\nheads = [{host = "a", port = "hb9:0"}]\n',
     "host a:"),
    ("[[host]\n", "invalid TOML"),
])
def test_bad_rack_topologies(tmp_path, capsys, text, msg):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    rc, _, err = run(capsys, "rack", "create", "x", "--topology", str(p))
    assert rc == 1 and msg in err and err.startswith("cxlemu: ")
    assert rack.names() == []


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_rack_toml_fuzz_never_tracebacks(text):
    try:
        rack.parse_rack(text)
    except rack.RackError:
        pass


def test_embedded_host_topology_and_independent_reboot():
    make_rack("r", hosts=2, cap="4G")
    fm = FabricManager("r")
    fm.add("host0", "1G", "a")
    fm.add("host1", "1G", "b")
    with Store().open("r/host0") as m:
        m.reboot()
        m.kernel.dirty = True
    with Store().open("r/host1") as m:          # host1 never noticed
        assert [x["dax"] for x in dcd.allocations(m.kernel)] == ["dax0.1"]
    with Store().open("r/host0") as m:          # host0 got its capacity back at boot
        assert len(dcd.allocations(m.kernel)) == 1
    assert rack.appliance_store("r", "pool0").read().free_bytes() == 2 * G


def test_agent_policy_decisions():
    p = agent.Policy(high=0.8, low=0.4, slice_bytes=G)
    assert agent.decide(9 * G, 10 * G, 0, p) == "grow"
    assert agent.decide(5 * G, 10 * G, 0, p) is None
    assert agent.decide(2 * G, 10 * G, 1, p) == "shrink"
    assert agent.decide(9 * G, 10 * G, 64, p) is None
    with pytest.raises(ValueError):
        agent.Policy(high=0.3, low=0.5)


@settings(max_examples=200)
@given(st.integers(0, 1 << 40), st.integers(1, 1 << 40), st.integers(0, 100),
       st.floats(0.05, 0.45), st.floats(0.55, 0.95), st.integers(1, 1 << 32))
def test_agent_never_grows_and_shrinks_on_the_same_reading(used, total, held, low, high, sl):
    p = agent.Policy(high=high, low=low, slice_bytes=sl)
    d = agent.decide(used, total, held, p)
    if d == "shrink":                 # giving a slice back does not make the next step grow
        assert agent.decide(used, total - sl, held - 1, p) != "grow"
    assert d != "grow" or held < p.max_slices


def test_agent_step_asks_for_a_slice_and_onlines_it():
    make_rack("r", hosts=1, cap="4G")
    fm = FabricManager("r")

    def client(method, path, body):
        if method == "POST":
            return fm.add(path.split("/")[3], body["size"], body["tag"])
        return fm.release(path.split("/")[3], path.rsplit("/", 1)[1])

    with Store().open("r/host0") as m:
        m.kernel.mm.pages.alloc("user", (3800 << 20) >> 12, label="workload")
        m.kernel.dirty = True
    from cxlemu.cli.rack_commands import host_daxctl
    a = agent.Agent("r", "host0", agent.Policy(high=0.8, low=0.3, slice_bytes=G), client, daxctl=host_daxctl)
    rec = a.step()
    assert rec["action"] == "grow" and rec["result"] == "dax0.1 online"
    with Store().open("r/host0") as m:
        out = m.backend().read("/proc/meminfo")
        assert agent.parse_meminfo(out)["MemTotal"] > rec["total"]
        assert m.kernel.dax.find("dax0.1").driver.name == "kmem"
    with Store().open("r/host0") as m:
        for aid, al in list(m.kernel.mm.pages.allocs.items()):
            if al.label == "workload":
                m.kernel.mm.pages.free(aid)
        m.kernel.dirty = True
    rec = a.step()
    assert rec["action"] == "shrink" and "released" in rec["result"]
    assert fm.db.allocations() == []
    assert json.dumps(a.state.log)
