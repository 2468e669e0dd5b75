"""The fabric manager as a real service: the issue's command flow end to
end, the HTTP API (token, JSON errors, OpenAPI), bad input, a host that
does not answer, a bounded concurrent load, and the web page in headless
Chromium."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import pytest

from cxlemu.cli.main import main
from cxlemu.fabric.fm import service
from cxlemu.machine.store import Store
from cxlemu.util.fileio import locked

from .rackutil import make_rack


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def http(method: str, url: str, body=None, token: str | None = None, raw: bytes | None = None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture
def running(monkeypatch):
    monkeypatch.setenv("CXLEMU_FM_EXIT_WITH", str(os.getpid()))     # no orphan if this worker dies
    make_rack("r", hosts=3, cap="8G")
    info = service.start("r", host_timeout=0.5)
    yield info
    service.stop("r", quiet=True)


def test_issue_flow_end_to_end(running, capsys):
    rc, out, _ = cli(capsys, "fm", "r", "add", "host0", "2G", "--tag", "db")
    assert rc == 0 and "dax0.1" in out
    rc, out, _ = cli(capsys, "exec", "r/host0", "--", "cxl", "list", "-M", "-u")
    assert rc == 0 and '"dynamic_ram_1_size":"8.00 GiB' in out.replace(" (8.59 GB)", "")
    rc, out, _ = cli(capsys, "exec", "r/host0", "--", "daxctl", "reconfigure-device", "--mode=system-ram", "dax0.1")
    assert rc == 0 and '"mode":"system-ram"' in out
    rc, out, _ = cli(capsys, "fm", "r", "share", "--tag", "kv", "1G", "host1", "host2")
    assert rc == 0 and out.count("shared") == 2
    rc, out, _ = cli(capsys, "fm", "r", "status", "--json")
    st = json.loads(out)
    assert {"url", "pid", "pool_bytes_total", "pool_bytes_free", "warnings", "hosts"} <= set(st)
    assert st["pid"] == running["pid"] and st["url"] == running["url"]
    h0 = st["hosts"][0]
    assert h0["name"] == "host0"
    assert {k: h0["allocations"][0][k] for k in ("tag", "bytes", "shared", "dax")} == \
        {"tag": "db", "bytes": 2 << 30, "shared": False, "dax": "dax0.1"}
    assert isinstance(h0["allocations"][0]["hpa"], int)
    assert st["hosts"][1]["allocations"][0]["shared"] is True
    rc, out, _ = cli(capsys, "fm", "r", "release", "host0", "--tag", "db")
    assert rc == 0 and "released" in out
    code, hosts = http("GET", running["url"] + "/v1/hosts")
    assert code == 200 and hosts[0]["allocations"] == []
    code, schema = http("GET", running["url"] + "/openapi.json")
    assert code == 200 and "/v1/hosts/{host}/allocations" in schema["paths"]
    rc, out, _ = cli(capsys, "rack", "ls")
    assert "r " in out and running["url"] in out
    rc, out, _ = cli(capsys, "fm", "r", "history")
    assert rc == 0 and "release" in out


def test_bad_input_gets_4xx_json_and_changes_nothing(running, capsys):
    url, tok = running["url"], service.token("r")
    assert http("POST", url + "/v1/hosts/host0/allocations", {"size": "1G", "tag": "a"}, tok)[0] == 201
    _, before = http("GET", url + "/v1/status")
    cases = [
        (("POST", "/v1/hosts/host0/allocations", {"size": "1G", "tag": "b"}, "wrong-token"), 401),
        (("POST", "/v1/hosts/host0/allocations", {"size": "1G", "tag": "b"}, None), 401),
        (("POST", "/v1/hosts/host0/allocations", {"size": "64G", "tag": "b"}, tok), 400),
        (("POST", "/v1/hosts/host0/allocations", {"size": "1G", "tag": "a"}, tok), 409),
        (("POST", "/v1/hosts/host0/allocations", {"size": -5, "tag": "b"}, tok), 400),
        (("POST", "/v1/hosts/host0/allocations", {"tag": "b"}, tok), 422),
        (("POST", "/v1/hosts/nobody/allocations", {"size": "1G", "tag": "b"}, tok), 404),
        (("DELETE", "/v1/hosts/host1/allocations/a", None, tok), 404),
        (("POST", "/v1/shares", {"size": "1G", "tag": "s", "hosts": []}, tok), 422),
    ]
    for (method, path, body, t), want in cases:
        code, js = http(method, url + path, body, t)
        assert code == want, (path, body, code, js)
        assert isinstance(js, dict) and ("error" in js or "detail" in js)
    code, js = http("POST", url + "/v1/hosts/host0/allocations", token=tok, raw=b"{not json")
    assert code == 422 and "detail" in js
    _, after = http("GET", url + "/v1/status")
    assert before["hosts"] == after["hosts"] and before["pool_bytes_free"] == after["pool_bytes_free"]
    rc, _, err = cli(capsys, "fm", "r", "add", "host0", "64G", "--tag", "zz")
    assert rc == 1 and err.startswith("cxlemu: fm: request of 64.00 GiB is larger than the pool")
    rc, _, err = cli(capsys, "fm", "nosuch", "status")
    assert rc == 1 and "no rack named 'nosuch'" in err


def test_host_that_does_not_answer(running, capsys):
    with locked(Store().path("r/host2") / "lock"):
        rc, _, err = cli(capsys, "fm", "r", "add", "host2", "1G", "--tag", "late")
    assert rc == 1 and "did not answer" in err
    _, st = http("GET", running["url"] + "/v1/status")
    assert st["pool_bytes_free"] == st["pool_bytes_total"] and not st["pending"]


def test_bounded_concurrent_load(running):
    url, tok = running["url"], service.token("r")
    with cf.ThreadPoolExecutor(max_workers=32) as ex:
        codes = list(ex.map(lambda i: http("GET", url + ("/v1/status" if i % 2 else "/v1/hosts"))[0], range(200)))
        adds = list(ex.map(lambda i: http("POST", url + f"/v1/hosts/host{i % 3}/allocations",
                                          {"size": "256M", "tag": f"c{i}"}, tok)[0], range(12)))
    assert codes == [200] * 200
    assert adds == [201] * 12
    _, st = http("GET", url + "/v1/status")
    assert st["pool_bytes_free"] == (8 << 30) - 12 * (256 << 20)


def test_restart_reconciles(running, capsys):
    assert cli(capsys, "fm", "r", "add", "host1", "1G", "--tag", "keep")[0] == 0
    os.kill(running["pid"], 9)                           # kill -9 the service
    os.waitpid(running["pid"], 0)
    info = service.start("r", host_timeout=0.5)
    _, st = http("GET", info["url"] + "/v1/status")
    assert st["hosts"][1]["allocations"][0]["tag"] == "keep"
    assert cli(capsys, "fm", "stop", "r")[0] == 0
    rc, _, err = cli(capsys, "fm", "r", "status")
    assert rc == 1 and "not running" in err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_web_page_in_headless_chromium(running, capsys):
    assert CHROMIUM, "CI installs chromium (.ci/run)"
    cli(capsys, "fm", "r", "add", "host0", "2G", "--tag", "db")
    cli(capsys, "fm", "r", "share", "--tag", "kv", "1G", "host1", "host2")
    prof = tempfile.mkdtemp(prefix="cxlemu-chromium-")
    try:
        p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            "--disable-quic", f"--user-data-dir={prof}", "--virtual-time-budget=8000",
                            "--dump-dom", running["url"] + "/"], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(prof, ignore_errors=True)
    dom = p.stdout
    assert 'data-ready="1"' in dom, p.stderr[-2000:]
    assert dom.count('class="host alloc"') == 3                      # db on host0, kv on host1 and host2
    assert 'data-tag="db"' in dom and "dax0.1" in dom
    assert dom.count('class="seg extent"') == 3
    assert 'id="free-line"' in dom
    assert "pool: 5 GiB free of 8 GiB" in dom
