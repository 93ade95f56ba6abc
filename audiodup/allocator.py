"""The C allocator told to keep the memory of freed arrays for the next ones.

A look at a 4-min upload makes and drops dozens of arrays of 1-9 MB (a whole look-up at 113
works brings up to a million hits, ten columns each). glibc hands every block over its mmap
threshold back to the kernel when it is freed, and each new one is faulted in again page by
page: 69,000 minor page faults where 5,500 do with the thresholds below
(``tests/test_allocator.py``), and about 6 % of a clean upload's CPU (``benchmarks/CPU.md``).
The values: blocks up to 32 MB (glibc's own ceiling for its adaptive threshold) come from the
heap, and the heap keeps up to 128 MB free at its top before it shrinks.

Called once by each process that screens: the command line, the service's workers, the batch
workers and a Dask worker's shard group. Nothing changes where the C library is not glibc, or
where the operator set either threshold (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``
or in ``GLIBC_TUNABLES``: their choice stands)."""

from __future__ import annotations

import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20

_THRESHOLD_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_kept: bool | None = None  # None: not asked yet


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; whether they are raised."""
    global _kept
    if _kept is None:
        _kept = _raise_thresholds()
    return _kept


def _raise_thresholds() -> bool:
    if not sys.platform.startswith("linux") or _operator_chose():
        return False
    try:
        import ctypes  # here, not at start-up; a Python built without it changes nothing

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # musl and others answer 0 (not supported): nothing was changed
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def _operator_chose() -> bool:
    """Whether the environment sets either threshold (glibc reads it at start)."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any(name in os.environ for name in _THRESHOLD_VARIABLES) or any(
        name in tunables for name in ("mmap_threshold", "trim_threshold")
    )
