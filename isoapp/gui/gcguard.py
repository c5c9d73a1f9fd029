"""Garbage collection only in the GUI thread while a main window lives.

Python's cyclic collector runs in whichever thread happens to trigger it. When it frees a Qt
object in another thread while the GUI thread emits a signal, the two threads can deadlock (one
holds Qt's connection mutex and waits for the GIL, the other the reverse). JPype makes that likely
once a JVM runs in the process (Bio-Formats): every Java GC calls ``PyGC_Collect`` from a Java
thread. Seen as a hang of the GUI tests in ``QComboBox::setCurrentIndex``. With automatic collection
disabled, ``PyGC_Collect`` returns at once, and pyqtgraph's :class:`GarbageCollector` collects on a
timer in the GUI thread instead (the remedy pyqtgraph documents for Qt).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

_state: dict = {"count": 0, "collector": None, "was_enabled": True}


def acquire() -> None:
    """A main window opened: collect in the GUI thread only (nested calls are counted)."""
    if _state["count"] == 0:
        from pyqtgraph.util.garbage_collector import GarbageCollector

        _state["was_enabled"] = gc.isenabled()
        _state["collector"] = GarbageCollector(interval=1.0)  # disables automatic collection
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
        gc.collect()
        if _state["was_enabled"]:
            gc.enable()
        log.debug("automatic garbage collection restored")
