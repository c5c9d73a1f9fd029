"""Garbage collection runs in the GUI thread only while a main window lives (isoapp.gui.gcguard)."""

from __future__ import annotations

import gc
import threading


def test_window_moves_collection_to_the_gui_thread(window, qtbot):
    assert not gc.isenabled()  # a collection triggered from another thread (a Java GC via JPype) is refused
    seen = {}

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):
            seen["thread"] = threading.current_thread() is threading.main_thread()

    Cycle()
    qtbot.waitUntil(lambda: "thread" in seen, timeout=5000)  # pyqtgraph's timer collects it
    assert seen["thread"] is True
    window.close()
    assert gc.isenabled()  # the last window closed: Python collects automatically again


def test_objects_alive_at_open_are_kept_out_of_the_gui_threads_collections(window, qtbot):
    """A full collection in the GUI thread must not rescan the process's ~400,000 long-lived objects
    (0.3 s a time, the window froze): they are frozen while a window lives, and given back after.
    The modules a run imports lazily (OME-Zarr's writer brings xarray and pandas) are imported in the
    background and frozen too, so their young objects are not collected in the GUI thread mid-run."""
    import sys

    from isoapp.gui import gcguard

    assert gc.get_freeze_count() > 100_000  # modules, classes, torch: frozen when the window opened
    qtbot.waitUntil(lambda: gcguard._state["warm"] == "frozen", timeout=30_000)
    assert all(name in sys.modules for name in gcguard.WARM_UP)
    writer = sys.modules["ome_zarr.writer"].write_multiscales_metadata
    assert not any(obj is writer for obj in gc.get_objects())  # frozen: no collection scans it
    window.close()
    assert gc.get_freeze_count() == 0  # the last window closed: everything is collectable again
