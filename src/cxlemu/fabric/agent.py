"""The host policy agent (the seed's "virtual device driver"): it watches the
host's memory use and asks the fabric manager for pool memory, or gives some
back, under a configurable policy.

It behaves as a user-space daemon on the host would: it reads ``/proc/meminfo``
through the host's ABI, talks to the FM over HTTP, and turns an accepted slice
into System RAM with ``daxctl reconfigure-device --mode=system-ram`` (or leaves
it as a device-DAX).  Pond's policy: memory moves in 1 GiB slices; onlining
is cheap, offlining is slow and may fail (pinned/kernel pages), in which case
the slice is kept and the agent tries an older one next time.

Policy (pure, :func:`decide`): with ``used = MemTotal - MemAvailable``,
grow by one slice when used/total > ``high`` (and fewer than ``max_slices``
are held); shrink by one when used/(total - slice) < ``low`` after giving it
back (hysteresis: never oscillate on the next step).
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from cxlemu.util.units import parse_size


@dataclass(frozen=True)
class Policy:
    high: float = 0.85
    low: float = 0.50
    slice_bytes: int = 1 << 30
    max_slices: int = 64
    online: str = "movable"        # movable | kernel | devdax

    def __post_init__(self):
        if not 0 < self.low < self.high < 1:
            raise ValueError("policy: need 0 < low < high < 1")
        if self.slice_bytes <= 0 or self.max_slices < 0:
            raise ValueError("policy: slice size must be positive")
        if self.online not in ("movable", "kernel", "devdax"):
            raise ValueError("policy: online must be movable, kernel or devdax")


def decide(used: int, total: int, held: int, p: Policy) -> str | None:
    """'grow', 'shrink' or None for one step."""
    if total <= 0:
        return None
    if used / total > p.high and held < p.max_slices:
        return "grow"
    if held and total - p.slice_bytes > 0 and used / (total - p.slice_bytes) < p.low:
        return "shrink"
    return None


def parse_meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        parts = v.split()
        if parts and parts[0].isdigit():
            out[k.strip()] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


@dataclass
class AgentState:
    slices: list[str] = field(default_factory=list)     # tags held, oldest first
    next: int = 0
    log: list[dict] = field(default_factory=list)


class Agent:
    """``client(method, path, body) -> json`` reaches the FM (HTTP in the CLI)."""

    def __init__(self, rack: str, host: str, policy: Policy, client: Callable, state: AgentState | None = None):
        self.rack, self.host, self.policy, self.client = rack, host, policy, client
        self.state = state or AgentState()

    def meminfo(self) -> dict[str, int]:
        from cxlemu.machine.store import Store
        with Store().open(f"{self.rack}/{self.host}") as m:
            return parse_meminfo(m.backend().read("/proc/meminfo"))

    def _daxctl(self, argv: list[str]) -> tuple[int, str]:
        from cxlemu.machine.store import Store
        from cxlemu.tools.runner import run_tool
        out, err = io.StringIO(), io.StringIO()
        with Store().open(f"{self.rack}/{self.host}") as m:
            rc = run_tool("daxctl", argv, m.backend(), stdout=out, stderr=err, isatty=False)
        return rc, out.getvalue() + err.getvalue()

    def step(self) -> dict:
        mi = self.meminfo()
        total = mi.get("MemTotal", 0)
        used = total - mi.get("MemAvailable", mi.get("MemFree", 0))
        action = decide(used, total, len(self.state.slices), self.policy)
        rec = {"used": used, "total": total, "held": len(self.state.slices), "action": action, "result": None}
        if action == "grow":
            tag = f"agent-{self.host}-{self.state.next}"
            self.state.next += 1
            try:
                row = self.client("POST", f"/v1/hosts/{self.host}/allocations",
                                  {"size": self.policy.slice_bytes, "tag": tag})
            except Exception as e:              # the FM refused (pool empty ...): try again later
                rec["result"] = f"refused: {e}"
            else:
                self.state.slices.append(tag)
                if self.policy.online != "devdax" and row.get("dax"):
                    args = ["reconfigure-device", "--mode=system-ram", row["dax"]]
                    if self.policy.online == "kernel":
                        args.insert(2, "--no-movable")
                    rc, txt = self._daxctl(args)
                    rec["result"] = f"{row['dax']} online" if rc == 0 else f"{row['dax']}: daxctl: {txt.strip()}"
                else:
                    rec["result"] = f"{row.get('dax')} devdax"
        elif action == "shrink":
            for tag in reversed(self.state.slices):          # newest first; a refused one is kept
                try:
                    self.client("DELETE", f"/v1/hosts/{self.host}/allocations/{tag}", None)
                except Exception as e:
                    rec["result"] = f"{tag}: {e}"
                    continue
                self.state.slices.remove(tag)
                rec["result"] = f"{tag} released"
                break
        self.state.log.append(rec)
        return rec


def run_cli(args) -> int:
    from cxlemu.cli.rack_commands import FmClientError, fm_request
    from cxlemu.machine.store import MachineError, check_name
    check_name(args.host)
    if "/" not in args.host:
        raise MachineError(f"agent: {args.host!r} is not a rack host (RACK/HOST)")
    rack, host = args.host.split("/")
    try:
        pol = Policy(args.high, args.low, parse_size(args.slice), args.max_slices, args.online)
    except ValueError as e:
        raise MachineError(f"agent: {e}") from None
    from cxlemu.fabric import rack as rackmod
    path = rackmod.rack_path(rack) / "fm" / f"agent-{host}.json"
    st = AgentState()
    if path.exists():
        st = AgentState(**json.loads(path.read_text()))
    agent = Agent(rack, host, pol, lambda mth, p, b: fm_request(rack, mth, p, b), st)
    n = 0
    try:
        while args.steps == 0 or n < args.steps:
            rec = agent.step()
            n += 1
            if args.json:
                print(json.dumps(rec))
            else:
                print(f"{host}: used {rec['used'] >> 20} MiB of {rec['total'] >> 20} MiB, "
                      f"{rec['held']} slice(s): {rec['action'] or 'steady'}"
                      + (f" ({rec['result']})" if rec["result"] else ""))
            if args.steps == 0 or n < args.steps:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    except FmClientError:
        raise
    finally:
        st.log = st.log[-100:]
        from cxlemu.util.fileio import atomic_write
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(asdict(st)).encode())
    return 0
