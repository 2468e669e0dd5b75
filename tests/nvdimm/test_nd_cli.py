"""``cxlemu labels`` and ``cxlemu cpu-cache`` (cli/pmem_commands.py)."""

import json

from pmem_support import MiB, ndctl, pmem_region, topo
from cxlemu.cli.main import main
from cxlemu.cli.pmem_commands import decode_lsa
from cxlemu.machine.dax import open_dax
from cxlemu.machine.store import Store


def test_decode_uninitialized_area():
    assert decode_lsa(bytes(4096)) == {"size": 4096, "initialized": False}


def test_labels_and_cpu_cache_commands(capsys):
    st = Store()
    st.create("pm", topo())
    with st.open("pm") as m:
        b = m.backend()
        pmem_region(b)
        assert ndctl(b, "create-namespace", "-m", "devdax", "-n", "seed")[0] == 0
    assert main(["labels", "pm", "mem0", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)["mem0"]
    idx = j["index"]
    assert [i["version"] for i in idx] == ["2.1", "2.1"] and sum(i["current"] for i in idx) == 1
    assert any(x.get("name") == "seed" for x in j["labels"])
    with open_dax("pm", store=st, length=2 * MiB) as mp:
        mp.array[:100] = 1
    assert main(["cpu-cache", "pm"]) == 0
    assert "128 bytes in dirty cache lines" in capsys.readouterr().out


def test_cpu_cache_with_a_corrupt_state_file(capsys):
    st = Store()
    st.create("pm", topo())
    with st.open("pm") as m:
        b = m.backend()
        pmem_region(b)
        assert ndctl(b, "create-namespace", "-m", "devdax")[0] == 0
        path = m.path
    with open_dax("pm", store=st, length=2 * MiB) as mp:
        mp.array[:100] = 1
        media, dpa = mp.layout.paths[0], int(mp.layout.pieces[0][3])
    (lines,) = (path / "cpu_cache").glob("*.lines")
    with open(lines, "r+b") as f:
        f.write(b"garbage")
    capsys.readouterr()
    assert main(["cpu-cache", "pm"]) == 1
    cap = capsys.readouterr()
    assert "0 bytes in dirty cache lines" in cap.out
    assert "not a cxlemu cpu_cache file" in cap.err and "Traceback" not in cap.err
    assert main(["power-fail", "pm"]) == 0              # the file is dropped, the lines count as written back
    assert not lines.exists()
    with open(media, "rb") as f:
        f.seek(dpa)
        assert f.read(100) == b"\x01" * 100
