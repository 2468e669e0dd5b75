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

from dataclasses import asdict, field
from typing import Callable

from cxlemu.util.lazydc import dataclass

__all__ = ["Policy", "decide", "parse_meminfo", "AgentState", "Agent", "asdict"]


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
    """``client(method, path, body) -> json`` reaches the FM (HTTP in the CLI);
    ``daxctl(rack_host, argv) -> (rc, text)`` runs daxctl on the host (the CLI
    passes the bundled tool)."""

    def __init__(self, rack: str, host: str, policy: Policy, client: Callable, state: AgentState | None = None,
                 daxctl: Callable[[str, list[str]], tuple[int, str]] | None = None):
        self.rack, self.host, self.policy, self.client = rack, host, policy, client
        self.state = state or AgentState()
        self.daxctl_fn = daxctl

    def meminfo(self) -> dict[str, int]:
        from cxlemu.machine.store import Store
        with Store().open(f"{self.rack}/{self.host}") as m:
            return parse_meminfo(m.backend().read("/proc/meminfo"))

    def _daxctl(self, argv: list[str]) -> tuple[int, str]:
        if self.daxctl_fn is None:
            return 1, "no daxctl"
        return self.daxctl_fn(f"{self.rack}/{self.host}", argv)

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
