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
    keep = [[] for _ in range(2 * gc.get_threshold()[0])]  # enough new objects that the timer collects gen 0
    qtbot.waitUntil(lambda: "thread" in seen, timeout=5000)  # pyqtgraph's timer collects it
    del keep
    assert seen["thread"] is True
    window.close()
    assert gc.isenabled()  # the last window closed: Python collects automatically again

