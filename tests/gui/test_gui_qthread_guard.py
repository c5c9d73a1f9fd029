"""The shared GUI header (tests/gui/conftest.py) fails a test that leaves a QThread running.

The conftest and its helpers are copied beside a tiny test file and run by pytest in a child process,
so the failure it must report does not fail this suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

CASES = '''
from PySide6.QtCore import QThread

KEEP = []


def test_leaves_a_thread_running(qtbot):
    t = QThread()
    t.setObjectName("leaky")
    t.start()  # runs its event loop until quit(): nothing here stops it
    KEEP.append(t)
    qtbot.waitUntil(t.isRunning, timeout=5000)


def test_stops_its_thread(qtbot):
    t = QThread()
    t.setObjectName("tidy")
    t.start()
    KEEP.append(t)
    qtbot.waitUntil(t.isRunning, timeout=5000)
    t.quit()
    assert t.wait(5000)
'''


def test_a_test_that_leaves_a_qthread_running_fails(tmp_path):
    gui = tmp_path / "gui"
    gui.mkdir()
    for name in ("conftest.py", "gui_helpers.py"):
        shutil.copy(HERE / name, gui / name)
    (gui / "test_cases.py").write_text(CASES)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gui: needs PySide6 (offscreen)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(gui)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "ERROR at teardown of test_leaves_a_thread_running" in out, out
    assert "the test left 1 QThread(s) running: ['leaky']" in out, out
    # the tidy test passes; the leaky one errors at teardown, and the guard stopped its thread
    assert re.search(r"\b2 passed, (\d+ warnings?, )?1 error\b", out), out
