"""Samsung SMDK's two allocation paths (OpenMPDK/SMDK lib/smdk_allocator):
the compatible path, ``libcxlmalloc`` configured by ``CXLMALLOC_CONF``
(cxlmalloc.py), and the optimization path, the explicit ``s_malloc`` API
and ``mmap`` with ``MAP_EXMEM``/``MAP_NORMAL`` (smalloc.py)."""

from cxlemu.kernel.mm.mmap import MAP_EXMEM, MAP_NORMAL  # noqa: F401  (the SMDK kernel's mmap flags)
