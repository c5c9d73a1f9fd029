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
    (0.3 s a time, the window froze): they are frozen while a window lives, and given back after."""
    assert gc.get_freeze_count() > 100_000  # modules, classes, torch: frozen when the window opened
    window.close()
    assert gc.get_freeze_count() == 0  # the last window closed: everything is collectable again


def test_a_block_wise_runs_modules_are_imported_early_and_frozen_when_no_run_is_going(window, qtbot):
    """OME-Zarr's writer brings xarray and pandas (143,000 objects): imported mid-run, their young
    objects were collected in the GUI thread (75 + 220 ms). A large stack's opening imports them in
    the background; they are frozen at the next check, but never during a run (its cyclic garbage
    would be kept until the window closes)."""
    import sys

    from isoapp.gui import gcguard

    gcguard.warm_up()  # what opening a stack too large for memory does (tests/gui/test_gui_large.py)
    qtbot.waitUntil(lambda: gcguard._state["warm"] in ("imported", "frozen"), timeout=60_000)
    assert all(name in sys.modules for name in gcguard.WARM_UP)
    gcguard._state["warm"] = "imported"  # as if just imported (another test may have frozen them already)
    window._set_running(True)
    gcguard._state["collector"].check()
    assert gcguard._state["warm"] == "imported"  # a run is going: nothing frozen
    window._set_running(False)
    gcguard._state["collector"].check()
    assert gcguard._state["warm"] == "frozen"
    writer = sys.modules["ome_zarr.writer"].write_multiscales_metadata
    assert not any(obj is writer for obj in gc.get_objects())  # frozen: no collection scans it
