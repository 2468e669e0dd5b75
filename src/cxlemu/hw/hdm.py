"""HDM decoder registers of a CXL component (CXL r3.1 §8.2.4.20).

This is the *hardware*: what software programs and what the fabric routes
by.  Host bridges (CHBCR), switch upstream ports and Type 3 endpoints each
have an :class:`HdmDecoderUnit`.  A component without the HDM decoder
capability (a single-port host bridge or switch, which the spec allows to
pass everything through) has ``unit = None`` and routes all traffic to its
only downstream port.

Register semantics modelled:
* control: IG (3:0), IW (7:4), LOCK_ON_COMMIT (8), COMMIT (9), COMMITTED (10),
  ERROR_NOT_COMMITTED (11), TARGET_TYPE/HOSTONLY (12);
* commit succeeds only if the decoder's range is valid and does not go below
  the previous decoder's (decoders must be programmed in ascending HPA order,
  §8.2.4.20.12), otherwise ERROR_NOT_COMMITTED is set;
* a committed decoder with LOCK_ON_COMMIT (or a global lock) can't be reset
  until the next conventional reset.
"""

from __future__ import annotations

from dataclasses import field

from cxlemu.topology.schema import HdmCaps
from cxlemu.util.lazydc import dataclass


@dataclass
class HdmDecoderRegs:
    """One HDM decoder's registers (CXL r3.1 8.2.4.20.5-.12): range, IW/IG, control, targets."""
    base: int = 0
    size: int = 0
    iw: int = 0              # encoded ways (eiw)
    ig: int = 0              # encoded granularity (eig)
    lock_on_commit: bool = False
    commit: bool = False
    committed: bool = False
    error: bool = False
    hostonly: bool = True
    targets: list[int] = field(default_factory=list)  # switch/HB: dport (port) ids, in position order
    dpa_skip: int = 0        # endpoint only

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


@dataclass
class HdmDecoderUnit:
    """An HDM Decoder Capability structure (CXL r3.1 8.2.4.20): its decoders and global control."""
    count: int
    target_count: int        # targets per decoder (0 for endpoints)
    caps: HdmCaps = HdmCaps()
    locked: bool = False     # global "lock on commit" happened
    decoders: list[HdmDecoderRegs] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.decoders:
            self.decoders = [HdmDecoderRegs() for _ in range(self.count)]

    @property
    def is_endpoint(self) -> bool:
        return self.target_count == 0

    def program(self, idx: int, *, base: int, size: int, iw: int, ig: int,
                targets: list[int] | None = None, dpa_skip: int = 0,
                lock_on_commit: bool = False) -> None:
        d = self.decoders[idx]
        if d.committed and d.lock_on_commit:
            raise PermissionError(f"decoder {idx} is locked")
        d.base, d.size, d.iw, d.ig = base, size, iw, ig
        d.targets = list(targets or [])
        d.dpa_skip = dpa_skip
        d.lock_on_commit = lock_on_commit

    def set_commit(self, idx: int, value: bool) -> bool:
        """Write the COMMIT bit; returns the resulting COMMITTED bit."""
        d = self.decoders[idx]
        if not value:
            if d.committed and d.lock_on_commit:
                return True  # locked: the write is ignored
            d.commit = d.committed = d.error = False
            return False
        d.commit = True
        prev_end = 0
        for lower in self.decoders[:idx]:
            if lower.committed:
                prev_end = max(prev_end, lower.base + lower.size)
        ok = d.size > 0 and d.base % (256 << 20) == 0 and d.size % (256 << 20) == 0
        ok = ok and d.base >= prev_end
        if not self.is_endpoint:
            ok = ok and len(d.targets) >= 1
        d.committed, d.error = ok, not ok
        return ok

    def reset_all(self) -> None:
        """Conventional reset: every decoder returns to its power-on state."""
        self.locked = False
        for d in self.decoders:
            d.clear()

    def committed_decoders(self) -> list[tuple[int, HdmDecoderRegs]]:
        return [(i, d) for i, d in enumerate(self.decoders) if d.committed]
