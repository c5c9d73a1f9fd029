"""Portable memory figures of this process and machine: peak and current RSS, available RAM, peak GPU memory.

One place for what was ``resource.getrusage`` (Unix only, and in kilobytes on Linux but bytes on
macOS) scattered over the code. Every function returns bytes, works on Linux, macOS and Windows,
and degrades to a weaker figure (never an exception) where the platform lacks the precise one:

- Linux: ``VmHWM`` / ``VmRSS`` from ``/proc/self/status`` and ``MemAvailable`` from ``/proc/meminfo``;
- Windows: psutil's ``peak_wset`` (the peak working set) and ``rss``;
- macOS and other Unix: ``resource.getrusage(...).ru_maxrss`` (bytes on macOS, KiB elsewhere).

psutil (a dependency) supplies current RSS and available memory everywhere; the ``/proc`` and
``resource`` fallbacks keep the module working where it is missing. Torch is imported only by
:func:`peak_cuda_bytes`, so the module is cheap to import.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

try:  # pragma: no cover - psutil is a dependency; the fallbacks are for stripped-down installs
    import psutil
except ImportError:  # pragma: no cover
    psutil = None  # type: ignore[assignment]

_STATUS = "/proc/self/status"
_MEMINFO = "/proc/meminfo"


def _proc_kib(path: str, key: str) -> int | None:
    """The ``key:  N kB`` line of a ``/proc`` file in bytes, or None where absent."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _ru_maxrss_bytes() -> int | None:
    """The lifetime peak RSS from ``getrusage`` (POSIX), converted to bytes."""
    try:
        import resource  # POSIX only; imported here so that the module loads on Windows
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes; Linux/BSD: KiB


def _process() -> Any:
    return psutil.Process() if psutil is not None else None


def current_rss_bytes() -> int:
    """This process's resident set size now, in bytes (0 if no source is available)."""
    proc = _process()
    if proc is not None:
        try:
            return int(proc.memory_info().rss)
        except (OSError, psutil.Error):
            pass
    rss = _proc_kib(_STATUS, "VmRSS")
    if rss is not None:
        return rss
    return _ru_maxrss_bytes() or 0  # last resort: the peak bounds the current value from above


def peak_rss_bytes() -> int:
    """The highest resident set size this process has reached (since start or :func:`reset_peak_rss`), in bytes.

    Linux reads ``VmHWM``, Windows psutil's ``peak_wset``, macOS ``ru_maxrss``. Where none exists
    the current RSS is returned (a lower bound of the peak).
    """
    if sys.platform.startswith("linux"):
        hwm = _proc_kib(_STATUS, "VmHWM")
        if hwm is not None:
            return hwm
    elif sys.platform == "win32":
        proc = _process()
        if proc is not None:
            try:
                peak = getattr(proc.memory_info(), "peak_wset", None)
            except (OSError, psutil.Error):
                peak = None
            if peak is not None:
                return int(peak)
    peak = _ru_maxrss_bytes()
    if peak is not None:
        return peak
    return current_rss_bytes()


def reset_peak_rss() -> bool:
    """Restart :func:`peak_rss_bytes` from the current RSS where the OS allows it (Linux); True if it did.

    Writing ``5`` to ``/proc/self/clear_refs`` resets ``VmHWM`` (Linux 4.0+). Elsewhere the peak is
    the process's lifetime peak, and benchmarks should run each phase in its own process.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _sysconf_bytes(pages: str) -> int:
    """``pages`` (a sysconf name) times the page size, 0 where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf(pages))
    except (AttributeError, OSError, ValueError):
        return 0


def total_bytes() -> int:
    """The machine's physical memory in bytes (0 if unknown)."""
    if psutil is not None:
        return int(psutil.virtual_memory().total)
    total = _proc_kib(_MEMINFO, "MemTotal")
    return total if total is not None else _sysconf_bytes("SC_PHYS_PAGES")


def available_bytes() -> int:
    """Memory that new allocations can get without swapping, in bytes (psutil, else ``MemAvailable``)."""
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    avail = _proc_kib(_MEMINFO, "MemAvailable")
    if avail is not None:
        return avail
    free = _proc_kib(_MEMINFO, "MemFree")
    if free is not None:  # kernels before 3.14 lack MemAvailable
        return free + (_proc_kib(_MEMINFO, "Cached") or 0)
    return _sysconf_bytes("SC_AVPHYS_PAGES")


def peak_cuda_bytes(device: Any = None, *, reserved: bool = False) -> int | None:
    """Peak GPU memory torch allocated on ``device`` since start or ``torch.cuda.reset_peak_memory_stats``.

    Parameters
    ----------
    device
        A CUDA device (``torch.device``, ``"cuda:0"``, an index) or None for the current one. A
        non-CUDA device gives None.
    reserved
        Report the caching allocator's reserved memory (closer to what ``nvidia-smi`` shows)
        instead of the memory held by tensors.

    Returns
    -------
    int or None
        Bytes, or None when the device is not a CUDA device or CUDA is unavailable.
    """
    import torch

    if device is not None and not isinstance(device, int) and torch.device(device).type != "cuda":
        return None
    if not torch.cuda.is_available():
        return None
    fn = torch.cuda.max_memory_reserved if reserved else torch.cuda.max_memory_allocated
    return int(fn(device))


def gib(n: int | None) -> float | None:
    """Bytes to GiB rounded to 3 decimals (None stays None), for reports."""
    return None if n is None else round(n / 2**30, 3)


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -2, -4, -8
_ALLOCATOR: dict[str, Any] = {}


def keep_freed_memory(trim_bytes: int = 2**30, top_pad_bytes: int = 2**26, arenas: int = 2) -> bool:
    """Let glibc reuse freed memory instead of handing every large buffer back to the kernel.

    glibc serves each allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap``
    and returns it with ``munmap`` when freed. Restoration allocates such buffers all the time
    (network activations of 64 MiB per layer, slabs of planes), so every one of them was
    page-faulted in again, one 4 KiB page at a time: measured on a block-wise IsoNet restore,
    35 million page faults and 100 s of system time for 114 s of user time. With ``mmap`` off
    for the heap and frees of up to ``trim_bytes`` kept, the same run made 0.4 million faults
    and 2 s of system time, at about 0.5 GB more peak RSS (see docs/SCALING.md).

    Freed memory is kept per glibc arena, and glibc gives threads that allocate at the same time
    arenas of their own (up to 8 per core), so what Zarr's decoding threads or a viewer's reading
    thread freed could not serve the restoring thread and came on top of it. ``arenas`` caps them:
    on the 4 GiB GUI benchmark (2 cores) peak RSS was 2.18-2.30 GB with glibc's default, 1.83 GB
    with one arena and 1.87 GB with two; a block-wise IsoNet restore of it ran at 0.98 Mvoxel/s
    (1.35 GB), 0.84 (1.21 GB) and 1.01 (1.25 GB). Two it is: one arena serialises the allocations of
    torch's threads.

    Called once by the command line, the desktop app and Dask workers; a no-op (False) where the
    C library is not glibc. Library users may call it at the start of a long run.
    """
    if _ALLOCATOR.get("done"):
        return True
    libc = _glibc("mallopt")
    if libc is None:
        return False
    try:
        ok = all(libc.mallopt(p, int(v)) == 1 for p, v in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, trim_bytes),
                                                          (_M_TOP_PAD, top_pad_bytes), (_M_ARENA_MAX, arenas)))
    except (OSError, AttributeError, ValueError):
        return False
    _ALLOCATOR["done"] = ok
    log.debug("glibc malloc: freed memory kept for reuse (%s)", "set" if ok else "refused")
    return ok


def release_freed_memory() -> bool:
    """Hand the freed memory that glibc keeps (see :func:`keep_freed_memory`) back to the system now.

    For the end of a long run in a process that goes on, such as the desktop app: the run's freed
    buffers (up to 1 GiB kept for reuse between blocks) would otherwise stay resident while the
    result is viewed, and the views' reads in other threads (other glibc arenas) came on top of them:
    the 4 GiB GUI benchmark went from 1.92 GB after the run to 2.30 GB. ``malloc_trim`` trims every
    arena. A no-op (False) where the C library is not glibc.
    """
    libc = _glibc("malloc_trim")
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def _glibc(symbol: str) -> Any:
    """This process's C library if it is glibc and has ``symbol``, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, symbol) and hasattr(libc, "gnu_get_libc_version") else None
