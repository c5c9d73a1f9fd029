"""The shared header of every GUI test under tests/gui/ (pytest applies it to each module here).

- ``QT_QPA_PLATFORM=offscreen`` unless the caller chose a platform (set before any test imports Qt);
- a module here is skipped at collection, as a module-level ``pytest.importorskip`` would skip it,
  when PySide6, pytest-qt or pyqtgraph is missing; it is marked ``gui``;
- ``no_dangling_qthreads`` (autouse) fails any test that leaves a QThread running;
- the fixtures ``dialog_calls``, ``settings_path``, ``window`` and ``stack_tif``.

Plain helpers (``write_stack``, ``set_tiny_run``, ``TINY_PARAMS``) live in ``gui_helpers.py``.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from gui_helpers import write_stack

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

QT_MODULES = ("PySide6", "pytestqt", "pyqtgraph")


class QtModule(pytest.Module):
    """A test module that needs Qt: skipped whole when a Qt package is missing, marked ``gui``."""

    def collect(self):
        for name in QT_MODULES:
            pytest.importorskip(name)
        self.add_marker(pytest.mark.gui)
        return super().collect()


def pytest_pycollect_makemodule(module_path, parent):
    # called only for test modules under this folder (pytest asks the conftests on a file's path)
    return QtModule.from_parent(parent, path=module_path)


def _all_running_qthreads() -> list:
    from PySide6.QtCore import QThread

    from isoapp.gui.worker import live_threads

    found = list(live_threads())
    main = QThread.currentThread()
    for obj in gc.get_objects():
        try:
            if issubclass(type(obj), QThread) and obj is not main and obj.isRunning() and obj not in found:
                found.append(obj)
        except RuntimeError:  # wrapper of a deleted C++ object
            continue
    return found


@pytest.fixture(autouse=True)
def no_dangling_qthreads():
    """Fail any test that leaves a QThread running (then stop it so the next test starts clean)."""
    yield
    running = _all_running_qthreads()
    if running:
        names = [t.objectName() or repr(t) for t in running]
        for t in running:
            t.quit()
            t.wait(30000)
        pytest.fail(f"the test left {len(running)} QThread(s) running: {names}")


@pytest.fixture
def dialog_calls():
    """Replace every dialog hook; records ``(hook, args)`` and answers like a user would."""
    from isoapp.gui import dialogs

    calls: list[tuple[str, tuple]] = []
    answers: dict[str, object] = {}

    def make(name: str):
        def hook(*args):
            calls.append((name, args))
            answer = answers.get(name)
            return answer(*args) if callable(answer) else answer
        return hook

    for name in dialogs.HOOKS:
        dialogs.set_hook(name, make(name))
    calls_answers = (calls, answers)
    yield calls_answers
    dialogs.reset_hooks()


@pytest.fixture
def settings_path(tmp_path) -> Path:
    return tmp_path / "isoapp-settings.ini"


@pytest.fixture
def window(qtbot, tmp_path, settings_path, dialog_calls):
    """The main window with settings and checkpoints under tmp_path, all dialogs intercepted."""
    from isoapp.gui import create_main_window
    from isoapp.gui.settings import AppSettings

    settings = AppSettings.at_path(settings_path)
    settings.work_root = tmp_path / "runs"
    w = create_main_window(settings)
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    yield w
    w.close()
    _delete_now(w)


def _delete_now(widget) -> None:
    """Delete a closed window now, not at interpreter exit (PySide6 + pyqtgraph can crash in the
    final garbage collection when many windows are left for it)."""
    from PySide6.QtCore import QCoreApplication, QEvent

    widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


@pytest.fixture
def stack_tif(tmp_path) -> Path:
    return write_stack(tmp_path / "stack.tif")
