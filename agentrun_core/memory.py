"""Giving freed memory back to the operating system after a burst of large allocations.

glibc's malloc serves large blocks from mmap at first, but raises its mmap threshold (up to 32 MB) each time such a
block is freed, so after one large tool result the next ones come from the heap, and freed heap memory stays in the
process: ExecutionService's RSS rose by ~300 MB after 20 MB results and stayed there. `release_free_memory` asks
glibc to return the free pages of every heap (malloc_trim(0)); it costs a few milliseconds, so callers use it after
handling something large, not routinely. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Returns the C heap's free memory to the OS; False when the C library cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
