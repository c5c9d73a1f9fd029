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


def test_objects_from_before_the_window_are_frozen_until_it_closes(qtbot, tmp_path, settings_path, dialog_calls):
    """A collection in the GUI thread walks only objects made since the window opened (a full walk of the
    ~300 000 objects of Qt, pyqtgraph and torch stalled a block-wise run's pyramid stage 335 ms); the
    last close unfreezes them, so cyclic garbage among them is collected then and not leaked."""
    from isoapp.gui import create_main_window
    from isoapp.gui.settings import AppSettings

    freed = []

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):
            freed.append(True)

    held = [Cycle()]  # alive (and so frozen) when the window opens
    settings = AppSettings.at_path(settings_path)
    settings.work_root = tmp_path / "runs"
    w = create_main_window(settings)
    qtbot.addWidget(w)
    assert gc.get_freeze_count() > 50_000, "the modules, classes and widgets made before are frozen"
    held.clear()  # now cyclic garbage, but frozen: not collected while the window lives
    gc.collect()
    assert not freed
    made_after = Cycle()
    del made_after
    gc.collect()
    assert freed == [True], "garbage made after the window opened is still collected"
    w.close()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert freed == [True, True], "the last close unfroze the older garbage, and it was collected"
