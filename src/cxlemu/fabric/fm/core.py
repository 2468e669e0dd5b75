"""The fabric manager's operations, independent of HTTP.

The FM talks to the devices with FM API commands (Initiate Dynamic Capacity
Add 5604h, Initiate Dynamic Capacity Release 5605h, encoded with the spec
layouts and executed by the appliance in one transaction), then "kicks" the
host: in a real rack the device interrupts the host; here the FM opens the
host machine (``Store().open("RACK/HOST")``), which runs the host's DC event
handler (kernel/cxl/dcd.py) and returns what the host now reports (its DAX
device and HPA for the tag).  A host whose machine stays busy longer than the
timeout "does not answer": the offer is withdrawn and nothing changes.

Ordering for crash safety: request row (SQLite) -> device command (atomic
JSON replace) -> host -> result rows (SQLite).  Killing the FM anywhere leaves
a pending request; :meth:`FabricManager.reconcile` (run at every start)
lets the hosts handle what waits in the device logs, withdraws offers nobody
accepted, gives up releases nobody acknowledged, and rebuilds the
allocations table from the devices.
"""

from __future__ import annotations

import errno
import re
import fcntl
import json
import logging
import os
import threading
import time
import uuid as uuidlib
from pathlib import Path

from cxlemu.fabric import rack as rackmod
from cxlemu.fabric.fm.state import FmDb
from cxlemu.hw.dcd import DcdAppliance, DcdError
from cxlemu.hw.mailbox import dcd_payloads as D
from cxlemu.machine.store import Store
from cxlemu.util.lazydc import dataclass
from cxlemu.util.units import human_size, parse_size

log = logging.getLogger("cxlemu.fm")
TAG_NAMESPACE = uuidlib.UUID("6c1a3b0e-6a8e-4d55-9b7e-63786c656d75")
POLICIES = {"free": D.SelectionPolicy.FREE, "contiguous": D.SelectionPolicy.CONTIGUOUS,
            "prescriptive": D.SelectionPolicy.PRESCRIPTIVE}


class FmError(Exception):
    """An operation refused: HTTP status and a message (nothing changed)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def tag_uuid(tag: str) -> str:
    """A tag is a name ("db") or a UUID; names map to a stable UUID."""
    try:
        return str(uuidlib.UUID(tag))
    except ValueError:
        return str(uuidlib.uuid5(TAG_NAMESPACE, tag))


TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def check_tag(tag) -> str:
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        raise FmError(400, f"invalid tag {tag!r}: 1 to 64 letters, digits, '_', '.', ':', '-'")
    return tag


def parse_bytes(size) -> int:
    if isinstance(size, bool):
        raise FmError(400, f"invalid size {size!r}")
    try:
        n = parse_size(size) if isinstance(size, (str, int)) else None
    except ValueError as e:
        raise FmError(400, f"invalid size {size!r}: {e}") from None
    if n is None or n <= 0:
        raise FmError(400, f"invalid size {size!r}: must be a positive number of bytes (e.g. 16G)")
    return n


@dataclass
class HostView:
    allocations: list[dict]
    log_tail: list[str]


class FabricManager:
    def __init__(self, rack: str, host_timeout: float = 5.0):
        self.rack = rack
        self.layout = rackmod.load_layout(rack)
        self.dir = rackmod.rack_path(rack) / "fm"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = FmDb(self.dir / "fm.sqlite")
        self.host_timeout = host_timeout
        self.lock = threading.RLock()
        self._dev_cache: dict[str, tuple] = {}
        self.thresholds = list(self.layout.get("warn_free_fraction", [0.25, 0.10]))
        with self.db.tx() as c:
            for a in self.layout["appliances"]:
                for i, h in enumerate(a["heads"]):
                    c.execute("INSERT OR REPLACE INTO hosts (name, appliance, head) VALUES (?,?,?)",
                              (h["host"], a["id"], i))

    # ---- plumbing ---------------------------------------------------------------------------------
    def store(self, appliance: str):
        return rackmod.appliance_store(self.rack, appliance)

    def device(self, appliance: str) -> DcdAppliance:
        """The device's state, re-read only when its state file changed
        (status calls are frequent; the device is the truth)."""
        st = self.store(appliance)
        try:
            s = os.stat(st.state_path)
            stamp = (s.st_mtime_ns, s.st_size, s.st_ino)
        except FileNotFoundError:
            stamp = None
        hit = self._dev_cache.get(appliance)
        if hit is not None and stamp is not None and hit[0] == stamp:
            return hit[1]
        dev = st.read()
        if stamp is not None:
            self._dev_cache[appliance] = (stamp, dev)
        return dev

    def appliances(self) -> list[str]:
        return [a["id"] for a in self.layout["appliances"]]

    def heads_of(self, host: str) -> list[tuple[str, int]]:
        if host not in self.layout["hosts"]:
            raise FmError(404, f"no host {host!r} in rack {self.rack!r} (hosts: {', '.join(self.layout['hosts'])})")
        out = [(a["id"], i) for a in self.layout["appliances"] for i, h in enumerate(a["heads"]) if h["host"] == host]
        if not out:
            raise FmError(409, f"host {host!r} is not cabled to any appliance")
        return out

    def _wait_host(self, host: str) -> None:
        """The host answers when its machine can be opened within the timeout."""
        lock = Store().path(f"{self.rack}/{host}") / "lock"
        deadline = time.monotonic() + self.host_timeout
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    return
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise FmError(504, f"host {host!r} did not answer within {self.host_timeout:g} s") from None
                    time.sleep(0.01)
        finally:
            os.close(fd)

    def kick(self, host: str) -> HostView:
        """Deliver the device's interrupt: the host handles its DC events."""
        from cxlemu.kernel.cxl import dcd
        self._wait_host(host)
        with Store().open(f"{self.rack}/{host}") as m:
            allocs = dcd.allocations(m.kernel)
            tail = list(m.kernel.dmesg[-20:])
        return HostView(allocs, tail)

    def _pick(self, host: str, nbytes: int) -> tuple[str, int, DcdAppliance]:
        best = None
        for app, head in self.heads_of(host):
            dev = self.device(app)
            if best is None or dev.free_bytes() > best[2].free_bytes():
                best = (app, head, dev)
        assert best is not None
        return best

    # ---- queries ----------------------------------------------------------------------------------
    def pool(self) -> tuple[int, int]:
        total = free = 0
        for app in self.appliances():
            dev = self.device(app)
            total += dev.capacity
            free += dev.free_bytes()
        return total, free

    def status(self, url: str = "", pid: int | None = None) -> dict:
        total, free = self.pool()
        allocs = self.db.allocations()
        hosts = []
        for h in self.layout["hosts"]:
            mine = [a for a in allocs if a["host"] == h]
            hosts.append({"name": h, "allocations": [
                {"tag": a["tag"], "uuid": a["tag_uuid"], "bytes": a["bytes"], "shared": a["shared"], "dax": a["dax"],
                 "hpa": a["hpa"], "mode": a["mode"], "appliance": a["appliance"], "extents": a["extents"]}
                for a in mine], "bytes": sum(a["bytes"] for a in mine)})
        pending = self.db.query("SELECT id, op, host, tag, bytes, state FROM requests WHERE state = 'pending'")
        warnings = [e["message"] for e in self.db.query("SELECT message FROM events WHERE active = 1 ORDER BY seq")]
        devices = []
        for app in self.appliances():
            dev = self.device(app)
            devices.append({"name": app, "capacity": dev.capacity, "free": dev.free_bytes(),
                            "block_size": dev.regions[0].block_size, "extents": len(dev.extents),
                            "heads": [{"index": h.index, "host": h.host, "port": h.port, "ld": h.ld,
                                       "denied_reads": h.denied_reads, "denied_writes": h.denied_writes,
                                       "pending_events": len(h.events)} for h in dev.heads],
                            "scrubbed_bytes": dev.scrubbed_bytes})
        return {"rack": self.rack, "url": url, "pid": pid, "pool_bytes_total": total, "pool_bytes_free": free,
                "warnings": warnings, "hosts": hosts, "devices": devices, "pending": pending}

    def devices(self) -> list[dict]:
        return self.status()["devices"]

    # ---- add ------------------------------------------------------------------------------------------
    def add(self, host: str, size, tag: str, policy: str = "free", extents: list | None = None,
            shared: bool = False) -> dict:
        with self.lock:
            return self._add(host, size, tag, policy, extents, shared)

    def _add(self, host, size, tag, policy, extents, shared) -> dict:
        tag = check_tag(tag)
        nbytes = parse_bytes(size)
        if policy not in POLICIES:
            raise FmError(400, f"unknown policy {policy!r} (free, contiguous, prescriptive)")
        tu = tag_uuid(tag)
        if self.db.query("SELECT 1 FROM allocations WHERE tag = ?", tag):
            raise FmError(409, f"tag {tag!r} exists (release it first)")
        app, head, dev = self._pick(host, nbytes)
        bs = dev.regions[0].block_size
        if nbytes % bs:
            raise FmError(400, f"size {human_size(nbytes)} is not a multiple of the block size {human_size(bs)}")
        total, free = self.pool()
        if nbytes > dev.capacity:
            raise FmError(400, f"request of {human_size(nbytes)} is larger than the pool ({human_size(total)})")
        if nbytes > dev.free_bytes():
            raise FmError(409, f"request of {human_size(nbytes)} exceeds the free pool capacity "
                               f"({human_size(dev.free_bytes())})")
        exts: tuple[D.DcExtent, ...] = ()
        if policy == "prescriptive":
            try:
                exts = tuple(D.DcExtent(int(e[0]), int(e[1]), uuidlib.UUID(tu).bytes) for e in (extents or []))
            except (TypeError, ValueError, IndexError):
                raise FmError(400, "prescriptive extents: a list of [dpa, length]") from None
        with self.db.tx() as c:
            rid = self.db.new_request(c, "share" if shared else "add", host, tag, nbytes)
        req = D.FmInitiateDcAdd(head, POLICIES[policy], 0, nbytes, uuidlib.UUID(tu).bytes, exts)
        try:
            with self.store(app).transaction() as d:
                d.initiate_add(D.FmInitiateDcAdd.decode(req.encode()), shared=shared)
        except DcdError as e:
            self._fail(rid, "add", host, tag, nbytes, "failed", str(e))
            raise FmError(409, f"device refused the add: {e}") from None
        return self._settle_add(rid, app, head, host, tag, tu, nbytes, shared)

    def _settle_add(self, rid, app, head, host, tag, tu, nbytes, shared) -> dict:
        try:
            view = self.kick(host)
        except FmError as e:
            with self.store(app).transaction() as d:
                d.cancel_offers(head, tu)
            self._fail(rid, "add", host, tag, nbytes, "timeout", e.message)
            raise
        dev = self.device(app)
        held = [e for e in dev.tag_extents(tu) if head in e.hosts]
        if not held:
            with self.store(app).transaction() as d:      # an offer left open (a host that crashed)
                d.cancel_offers(head, tu)
            why = next((ln for ln in reversed(view.log_tail) if tu in ln or "rejected" in ln), "no extents accepted")
            self._fail(rid, "add", host, tag, nbytes, "rejected", why)
            raise FmError(409, f"host {host!r} rejected the capacity: {why}")
        mine = next((a for a in view.allocations if a["tag"] == tu), None)
        row = {"host": host, "tag": tag, "tag_uuid": tu, "appliance": app, "bytes": sum(e.length for e in held),
               "shared": shared, "dax": mine["dax"] if mine else None, "hpa": mine["hpa"] if mine else None,
               "mode": mine["mode"] if mine else None, "extents": [[e.dpa, e.length] for e in held]}
        with self.db.tx() as c:
            self._put_alloc(c, row)
            self.db.finish_request(c, rid, "done")
            self.db.history(c, "share" if shared else "add", host, tag, row["bytes"], "done",
                            f"{row['dax']} at {row['hpa']:#x}" if row["hpa"] is not None else "")
            self._sample(c)
            self._warnings(c)
        return row

    def _put_alloc(self, c, row: dict) -> None:
        seq = c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM allocations").fetchone()[0]
        c.execute("INSERT OR REPLACE INTO allocations (host, tag, tag_uuid, appliance, bytes, shared, dax, hpa, mode,"
                  " extents, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                  (row["host"], row["tag"], row["tag_uuid"], row["appliance"], row["bytes"], int(row["shared"]),
                   row["dax"], row["hpa"], row["mode"], json.dumps(row["extents"]), seq))

    def _fail(self, rid, op, host, tag, nbytes, state, detail) -> None:
        with self.db.tx() as c:
            self.db.finish_request(c, rid, state, detail)
            self.db.history(c, op, host, tag, nbytes, state, detail)
        log.warning("%s %s %s: %s: %s", op, host, tag, state, detail)

    # ---- share ------------------------------------------------------------------------------------------
    def share(self, tag: str, size, hosts: list[str]) -> list[dict]:
        """One sharable allocation, accepted by every host (enable-shared-access
        for the second and later hosts): same device media, each host its own HPA."""
        with self.lock:
            if not isinstance(hosts, list) or len(hosts) < 1 or len(set(hosts)) != len(hosts):
                raise FmError(400, "share: a list of distinct hosts is required")
            for h in hosts:
                self.heads_of(h)
            apps = {frozenset(a for a, _ in self.heads_of(h)) for h in hosts}
            common = frozenset.intersection(*apps)
            if not common:
                raise FmError(409, "share: the hosts are not cabled to a common appliance")
            first = self._add(hosts[0], size, tag, "free", None, True)
            out = [first]
            tu = first["tag_uuid"]
            app = first["appliance"]
            for h in hosts[1:]:
                head = next(i for a, i in self.heads_of(h) if a == app)
                with self.db.tx() as c:
                    rid = self.db.new_request(c, "share", h, tag, first["bytes"])
                req = D.FmInitiateDcAdd(head, D.SelectionPolicy.ENABLE_SHARED_ACCESS, 0, first["bytes"],
                                        uuidlib.UUID(tu).bytes)
                try:
                    with self.store(app).transaction() as d:
                        d.initiate_add(req, shared=True)
                    out.append(self._settle_add(rid, app, head, h, tag, tu, first["bytes"], True))
                except (DcdError, FmError) as e:
                    for row in reversed(out):            # nothing changes: undo the hosts that took it
                        try:
                            self._release(row["host"], tag)
                        except FmError:
                            pass
                    if isinstance(e, FmError):
                        raise
                    raise FmError(409, f"device refused to share: {e}") from None
            return out

    # ---- release ------------------------------------------------------------------------------------------
    def release(self, host: str, tag: str, forced: bool = False) -> dict:
        with self.lock:
            return self._release(host, tag, forced)

    def _release(self, host: str, tag: str, forced: bool = False) -> dict:
        check_tag(tag)
        self.heads_of(host)
        rows = self.db.query("SELECT * FROM allocations WHERE host = ? AND tag = ?", host, tag)
        tu = tag_uuid(tag)
        if not rows:
            raise FmError(404, f"host {host!r} holds no capacity tagged {tag!r}")
        row = rows[0]
        app = row["appliance"]
        head = next(i for a, i in self.heads_of(host) if a == app)
        with self.db.tx() as c:
            rid = self.db.new_request(c, "release", host, tag, row["bytes"])
        flags = D.RemovalPolicy.TAG_BASED | (D.RELEASE_FORCED if forced else 0)
        try:
            with self.store(app).transaction() as d:
                d.initiate_release(D.FmInitiateDcRelease(head, flags, 0, row["bytes"], uuidlib.UUID(tu).bytes))
        except DcdError as e:
            self._fail(rid, "release", host, tag, row["bytes"], "failed", str(e))
            raise FmError(409, f"device refused the release: {e}") from None
        try:
            view = self.kick(host)
        except FmError as e:
            if not forced:
                with self.store(app).transaction() as d:
                    d.cancel_release(head, tu)
                self._fail(rid, "release", host, tag, row["bytes"], "timeout", e.message)
                raise
            view = HostView([], [])
        dev = self.device(app)
        still = [e for e in dev.tag_extents(tu) if head in e.hosts]
        if still:
            with self.store(app).transaction() as d:
                d.cancel_release(head, tu)
            why = next((ln for ln in reversed(view.log_tail) if "refused" in ln or "failed" in ln),
                       "the host did not release it")
            self._fail(rid, "release", host, tag, row["bytes"], "refused", why)
            raise FmError(409, f"host {host!r} refused the release: {why}")
        with self.db.tx() as c:
            c.execute("DELETE FROM allocations WHERE host = ? AND tag = ?", (host, tag))
            self.db.finish_request(c, rid, "done")
            self.db.history(c, "release", host, tag, row["bytes"], "done", "forced" if forced else "")
            self._sample(c)
            self._warnings(c)
        return {"host": host, "tag": tag, "bytes": row["bytes"], "released": True, "forced": forced}

    # ---- capacity over time and warnings ---------------------------------------------------------------------
    def _sample(self, c) -> None:
        for app in self.appliances():
            d = self.device(app)
            c.execute("INSERT OR REPLACE INTO devices (name, capacity, free, heads, extents) VALUES (?,?,?,?,?)",
                      (app, d.capacity, d.free_bytes(), json.dumps([[h.index, h.host, h.port, h.ld] for h in d.heads]),
                       json.dumps([[e.id, e.dpa, e.length, e.tag, e.seq, e.shared, e.hosts] for e in d.extents])))
        total, free = self.pool()
        per = {}
        for r in c.execute("SELECT host, SUM(bytes) AS b FROM allocations GROUP BY host"):
            per[r["host"]] = r["b"]
        c.execute("INSERT INTO samples (ts, free, total, per_host) VALUES (?,?,?,?)",
                  (time.time(), free, total, json.dumps(per)))

    def _warnings(self, c) -> None:
        total, free = self.pool()
        frac = free / total if total else 1.0
        active = {r["message"] for r in c.execute("SELECT message FROM events WHERE active = 1")}
        want = []
        for th in sorted(self.thresholds, reverse=True):
            if frac < th:
                want.append(f"pool capacity low: {human_size(free)} free of {human_size(total)} "
                            f"({frac:.0%} < {th:.0%})")
        want_keys = {w.split("(")[-1] for w in want}
        for r in list(c.execute("SELECT seq, message FROM events WHERE active = 1")):
            if r["message"].split("(")[-1] not in want_keys:
                c.execute("UPDATE events SET active = 0 WHERE seq = ?", (r["seq"],))
        act_keys = {m.split("(")[-1] for m in active}
        raised = []
        for w in want:
            if w.split("(")[-1] not in act_keys:
                c.execute("INSERT INTO events (ts, level, message) VALUES (?,?,?)", (time.time(), "warning", w))
                raised.append(w)
        for w in raised:
            log.warning("%s", w)
        if raised:
            self._notify_hosts(raised[-1])

    def _notify_hosts(self, message: str) -> None:
        """The hosts learn of it as the kernel would: a DC event record
        (Region Configuration Updated) carrying the extents/tags available,
        which the host's event handler logs."""
        for app in self.appliances():
            with self.store(app).transaction() as d:
                d.post_capacity_notice()

    def events(self) -> list[dict]:
        return self.db.query("SELECT seq, ts, level, message, active FROM events ORDER BY seq")

    def history(self, limit: int = 200) -> list[dict]:
        return self.db.query("SELECT * FROM history ORDER BY seq DESC LIMIT ?", int(limit))

    def samples(self, limit: int = 1000) -> list[dict]:
        rows = self.db.query("SELECT * FROM (SELECT * FROM samples ORDER BY seq DESC LIMIT ?) ORDER BY seq", int(limit))
        for r in rows:
            r["per_host"] = json.loads(r["per_host"])
        return rows

    # ---- reconciliation (every start) --------------------------------------------------------------------------
    def reconcile(self) -> dict:
        """Make devices and database agree after a crash of the FM or a host:
        hosts handle what waits in the device logs; offers nobody accepted go
        back to the pool; releases nobody acknowledged are given up; the
        allocations table is rebuilt from the devices."""
        with self.lock:
            pending = self.db.query("SELECT * FROM requests WHERE state = 'pending'")
            views: dict[str, HostView] = {}
            for h in self.layout["hosts"]:
                if not any(True for _ in self._heads_quiet(h)):
                    continue
                try:
                    views[h] = self.kick(h)
                except FmError as e:
                    log.warning("reconcile: %s", e.message)
            old = {(a["host"], a["tag_uuid"]): a for a in self.db.allocations()}
            names = {a["tag_uuid"]: a["tag"] for a in old.values()}
            for r in self.db.query("SELECT DISTINCT tag FROM requests WHERE tag IS NOT NULL"):
                names.setdefault(tag_uuid(r["tag"]), r["tag"])
            rows = []
            for app in self.appliances():
                with self.store(app).transaction() as d:
                    for head in d.heads:
                        if head.offers:
                            d.cancel_offers(head.index)
                        for e in d.extents:
                            if head.index in e.releasing:
                                e.releasing.remove(head.index)
                    for head in d.heads:
                        by_tag: dict[str, list] = {}
                        for e in d.accepted(head.index):
                            by_tag.setdefault(e.tag, []).append(e)
                        for tu, exts in by_tag.items():
                            exts.sort(key=lambda e: e.seq)
                            prev = old.get((head.host, tu))
                            v = next((a for a in views.get(head.host, HostView([], [])).allocations
                                      if a["tag"] == tu), None)
                            rows.append({"host": head.host, "tag": names.get(tu, tu), "tag_uuid": tu, "appliance": app,
                                         "bytes": sum(e.length for e in exts), "shared": any(e.shared for e in exts),
                                         "dax": v["dax"] if v else (prev or {}).get("dax"),
                                         "hpa": v["hpa"] if v else (prev or {}).get("hpa"),
                                         "mode": v["mode"] if v else (prev or {}).get("mode"),
                                         "extents": [[e.dpa, e.length] for e in exts]})
            with self.db.tx() as c:
                c.execute("DELETE FROM allocations")
                for row in rows:
                    self._put_alloc(c, row)
                for r in pending:
                    self.db.finish_request(c, r["id"], "reconciled", "FM restarted; state taken from the devices")
                self.db.history(c, "reconcile", None, None, None, "done",
                                f"{len(pending)} pending request(s), {len(rows)} allocation(s)")
                self._sample(c)
                self._warnings(c)
            return {"pending": len(pending), "allocations": len(rows)}

    def _heads_quiet(self, host: str):
        try:
            return self.heads_of(host)
        except FmError:
            return []


def fm_errno(e: FmError) -> int:
    return {400: errno.EINVAL, 404: errno.ENOENT, 409: errno.EBUSY, 504: errno.ETIMEDOUT}.get(e.status, errno.EIO)
