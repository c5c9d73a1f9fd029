"""Qt fixtures for the GUI tests (imported by tests/gui/test_gui_*.py; not a conftest on purpose).

The importing test module sets ``QT_QPA_PLATFORM=offscreen`` and skips without PySide6 first.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

# the tiny network used by the training tests: real torch training, seconds on 2 CPU cores
TINY_PARAMS = json.dumps({"n_filters": 4, "depth": 1})
VOXEL = (0.8, 0.2, 0.2)


def write_stack(path: Path, shape=(9, 48, 48), voxel=VOXEL, seed: int = 0) -> Path:
    """An ImageJ TIFF with a few bright blobs and tubes (so training has foreground)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    vol = np.zeros(shape, np.float32)
    for _ in range(12):
        cz, cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(0, shape[2])
        vol += np.exp(-(((z - cz) * voxel[0] / voxel[1]) ** 2 / 8 + (y - cy) ** 2 / 6 + (x - cx) ** 2 / 6))
    vol += np.exp(-((y - 20) ** 2 + (x - 30) ** 2) / 3.0)  # an axial tube
    data = (vol / vol.max() * 3000 + rng.poisson(20, shape)).astype(np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / voxel[2], 1 / voxel[1]),
                     metadata={"spacing": voxel[0], "unit": "micron", "axes": "ZYX"})
    return path


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


def set_tiny_run(window, steps: int, preview_every: int = 0, method: str = "isonet") -> None:
    mp = window.method_panel
    mp.set_method(method)
    mp.preset.setCurrentText("fast")
    mp.steps.setValue(steps)
    mp.preview_every.setValue(preview_every)
    mp.device.setCurrentText("cpu")
    mp.params.setText(TINY_PARAMS if method == "isonet" else "")
