"""Reverse mapping (mm/rmap.c): from frames to the page-table entries that
map them, to replace them all at once (migration, reclaim, memory failure).

A frame's owner is an address space id (``PageFrames.owner``) and a page
index (``PageFrames.index``): for an anonymous page the mm and its vpn, for
a file or shmem page the :class:`File` and the page index, mapped by every
VMA in ``File.mappers`` (``try_to_unmap``/``remove_migration_ptes`` walk the
same rmap).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm.mmap import File, MmStruct

if TYPE_CHECKING:
    from cxlemu.kernel.mm.vmstate import VmState


def groups(owner: np.ndarray):
    """(owner id, positions) for each distinct owner, in id order."""
    if not owner.size:
        return
    if np.all(owner == owner[0]):
        yield int(owner[0]), np.arange(owner.size)
        return
    order = np.argsort(owner, kind="stable")
    so = owner[order]
    bounds = np.flatnonzero(np.diff(so)) + 1
    for part in np.split(order, bounds):
        yield int(owner[part[0]]), part


def file_pte_positions(vm: "VmState", f: File, idx: np.ndarray):
    """(mm, vpns, positions in idx) for every mapping of the file pages ``idx``."""
    for mm_id, vma_id in list(f.mappers):
        mm = vm.spaces.get(mm_id)
        if not isinstance(mm, MmStruct):
            continue
        vma = next((v for v in mm.vmas if v.id == vma_id), None)
        if vma is None:
            continue
        inside = (idx >= vma.pgoff) & (idx < vma.pgoff + vma.npages)
        pos = np.flatnonzero(inside)
        if pos.size:
            yield mm, vma.start + (idx[pos] - vma.pgoff), pos


def replace(vm: "VmState", frames: np.ndarray, new_pte: np.ndarray, new_cache: np.ndarray | None = None) -> None:
    """Point every mapping of ``frames`` at ``new_pte`` (a frame, -1, or a
    swap entry).  For file pages ``new_cache`` is what the page cache keeps
    (default: ``new_pte``; shmem keeps the swap entry while PTEs become -1)."""
    pf = vm.frames
    frames = np.asarray(frames, np.int64)
    owner = pf.owner[frames]
    index = pf.index[frames].astype(np.int64)
    new_pte = np.asarray(new_pte, np.int32)
    cache = new_pte if new_cache is None else np.asarray(new_cache, np.int32)
    for oid, pos in groups(owner):
        space = vm.spaces.get(oid)
        if isinstance(space, MmStruct):
            space.pt[index[pos]] = new_pte[pos]
        elif isinstance(space, File):
            idx = index[pos]
            space.pages[idx] = cache[pos]
            for mm, vpns, p in file_pte_positions(vm, space, idx):
                mm.pt[vpns] = new_pte[pos[p]]


def mapped_ptes(vm: "VmState", frames: np.ndarray) -> list[tuple[MmStruct, np.ndarray, np.ndarray]]:
    """(mm, vpns, positions in frames) of every PTE mapping ``frames``."""
    pf = vm.frames
    frames = np.asarray(frames, np.int64)
    owner = pf.owner[frames]
    index = pf.index[frames].astype(np.int64)
    out = []
    for oid, pos in groups(owner):
        space = vm.spaces.get(oid)
        if isinstance(space, MmStruct):
            out.append((space, index[pos], pos))
        elif isinstance(space, File):
            for mm, vpns, p in file_pte_positions(vm, space, index[pos]):
                out.append((mm, vpns, pos[p]))
    return out
