"""kernfs directory order.

kernfs keeps the entries of a sysfs directory in an rbtree ordered by a hash
of the name (fs/kernfs/dir.c ``kernfs_name_hash``, built on
include/linux/stringhash.h ``partial_name_hash``/``end_name_hash`` and
include/linux/hash.h ``hash_64``), and readdir walks that tree.  libcxl builds
most of its lists by head insertion over readdir order, so reproducing this
order is what makes our ``cxl list`` print objects in the same order as a real
host (verified against the dport order in the kernel's
Documentation/driver-api/cxl example: ids 0, 4, 1, 5).
"""

from __future__ import annotations

_M64 = (1 << 64) - 1
_GOLDEN_RATIO_64 = 0x61C8864680B583EB
_INT_MAX = 0x7FFFFFFF


def kernfs_name_hash(name: str, ns: int = 0) -> int:
    h = ns & _M64
    for c in name.encode():
        h = ((h + (c << 4) + (c >> 4)) * 11) & _M64
    h = ((h * _GOLDEN_RATIO_64) & _M64) >> 32  # hash_64(h, 32)
    h &= 0x7FFFFFFF
    if h < 2:
        h += 2
    if h >= _INT_MAX:
        h = _INT_MAX - 1
    return h


def kernfs_order(names):
    """Names in the order a kernfs readdir returns them."""
    return sorted(names, key=lambda n: (kernfs_name_hash(n), n))
