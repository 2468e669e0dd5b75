"""``cxlemu labels`` and ``cxlemu cpu-cache`` (cli/pmem_commands.py)."""

import json
import re

from pmem_support import MiB, backend, ndctl, pmem_region, topo
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


def test_a_listing_reads_each_claim_device_once_and_a_write_refreshes(tmp_path):
    """libndctl keeps a region's namespaces and btt/pfn/dax devices once read
    (namespaces_init() ...): ``ndctl list -vvv`` reads a pfn's uuid once, not
    once per namespace that asks for its claim; a write made by the library
    drops what it kept, so the namespace it creates is listed."""
    b = backend(tmp_path)
    pmem_region(b)
    reads: list[str] = []
    orig = b.read_bytes

    def counting(path, *a, **kw):
        reads.append(path)
        return orig(path, *a, **kw)

    b.read_bytes = counting
    rc, out, err = ndctl(b, "create-namespace", "-m", "fsdax")
    assert rc == 0, err
    rc, listed, err = ndctl(b, "list", "-vvv")
    assert rc == 0 and '"mode":"fsdax"' in listed
    reads.clear()
    rc, again, _ = ndctl(b, "list", "-vvv")
    assert again == listed
    pfn_uuid = [p for p in reads if re.search(r"/pfn\d+\.\d+/uuid$", p)]
    assert pfn_uuid and len(pfn_uuid) == len(set(pfn_uuid)), pfn_uuid
