"""A client of the fabric manager's HTTP API (what the CLI and the host agent use)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from cxlemu.machine.store import MachineError


class FmClientError(MachineError):
    pass


def fm_request(rack_name: str, method: str, path: str, body: dict | None = None, timeout: float = 120.0):
    from cxlemu.fabric import rack
    from cxlemu.fabric.fm import service
    rack.load_layout(rack_name)
    info = service.info(rack_name)
    if info is None:
        raise FmClientError(f"the fabric manager of {rack_name!r} is not running (cxlemu fm start {rack_name})")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(info["url"] + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if method != "GET":
        req.add_header("Authorization", f"Bearer {service.token(rack_name)}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("error") or e.reason
        except ValueError:
            msg = e.reason
        raise FmClientError(f"fm: {msg}") from None
    except urllib.error.URLError as e:
        raise FmClientError(f"fm: cannot reach {info['url']}: {e.reason}") from None
