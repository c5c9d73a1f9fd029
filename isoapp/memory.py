"""Memory figures that work on every platform (temporary lead version; replaced by helper's)."""

from __future__ import annotations

import psutil


def current_rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return current_rss_bytes()


def available_bytes() -> int:
    return int(psutil.virtual_memory().available)
