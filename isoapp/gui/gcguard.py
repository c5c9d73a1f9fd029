"""Garbage collection only in the GUI thread while a main window lives.

Python's cyclic collector runs in whichever thread happens to trigger it. When it frees a Qt
object in another thread while the GUI thread emits a signal, the two threads can deadlock (one
holds Qt's connection mutex and waits for the GIL, the other the reverse). JPype makes that likely
once a JVM runs in the process (Bio-Formats): every Java GC calls ``PyGC_Collect`` from a Java
thread. Seen as a hang of the GUI tests in ``QComboBox::setCurrentIndex``. With automatic collection
disabled, ``PyGC_Collect`` returns at once, and pyqtgraph's :class:`GarbageCollector` collects on a
timer in the GUI thread instead (the remedy pyqtgraph documents for Qt).

A full collection in the GUI thread scans every tracked object: with torch and the app imported,
about 390,000, which took 0.25–0.34 s here and froze the window that long every few seconds of a
run. So the objects alive when the first window opens (modules, classes, functions: they live as
long as the process) are moved out of the collector's reach with :func:`gc.freeze`. A block-wise
run imports OME-Zarr's writer, which brings xarray and pandas (143,000 objects, 1.9 s): collecting
those young took the GUI thread 75 + 220 ms during a run. When a stack too large for memory opens
(only those run block by block), :func:`warm_up` imports them in a background thread (:data:`WARM_UP`,
0.1 GB), and they are collected and frozen once in the GUI thread, never while a run is going (its
objects would be frozen too, and cyclic garbage among them kept). Objects made later are collected
as before; frozen ones go back to the collector when the last window closes.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading

log = logging.getLogger(__name__)

#: Modules a run imports lazily that hold many objects (measured on a block-wise run to OME-Zarr:
#: pandas 294 modules, xarray 105, zarr 73, dask 60, ome_zarr_models 40).
WARM_UP = ("ome_zarr.writer", "ome_zarr.format", "dask.array", "zarr")

#: Seconds between the GUI thread's collection checks (pyqtgraph's GarbageCollector default).
INTERVAL_S = 1.0

_state: dict = {"count": 0, "collector": None, "was_enabled": True, "warm": "no", "busy": 0}


class _Collector:
    """pyqtgraph's GarbageCollector (collect each generation over its threshold, on a timer in the GUI
    thread), which also freezes the warmed-up modules once their import has finished."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.threshold = gc.get_threshold()
        gc.disable()
        self.timer = QTimer()
        self.timer.timeout.connect(self.check)
        self.timer.start(int(INTERVAL_S * 1000))

    def check(self) -> None:
        if _state["warm"] == "imported" and not _state["busy"]:
            _state["warm"] = "frozen"
            gc.collect()
            gc.freeze()
            return
        counts = gc.get_count()
        for gen in range(3):
            if counts[gen] <= self.threshold[gen]:
                break
            gc.collect(gen)


def _warm_up() -> None:
    for name in WARM_UP:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - an optional module: the run reports it if it needs it
            log.debug("warm-up import of %s failed: %s", name, exc)
    _state["warm"] = "imported"


def warm_up() -> None:
    """Import :data:`WARM_UP` in a background thread (once per process); the GUI thread freezes them."""
    if _state["warm"] == "no":
        _state["warm"] = "importing"
        threading.Thread(target=_warm_up, name="isoapp-warm-up", daemon=True).start()


def set_busy(busy: bool) -> None:
    """A run started (True) or ended (False): nothing is frozen meanwhile."""
    _state["busy"] = max(0, _state["busy"] + (1 if busy else -1))


def acquire() -> None:
    """A main window opened: collect in the GUI thread only (nested calls are counted)."""
    if _state["count"] == 0:
        _state["was_enabled"] = gc.isenabled()
        _state["collector"] = _Collector()  # disables automatic collection
        gc.collect()  # freeze only what is alive, not garbage
        gc.freeze()
        log.debug("garbage collection moved to the GUI thread")
    _state["count"] += 1


def release() -> None:
    """A main window closed: after the last one, collect once here and give collection back to Python."""
    if _state["count"] == 0:
        return
    _state["count"] -= 1
    if _state["count"] == 0:
        collector = _state.pop("collector", None)
        _state["collector"] = None
        if collector is not None:
            collector.timer.stop()
        gc.unfreeze()
        gc.collect()
        if _state["was_enabled"]:
            gc.enable()
        log.debug("automatic garbage collection restored")
