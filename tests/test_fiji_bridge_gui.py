"""fiji_bridge with windows, under Xvfb, each scenario in its own process (one JVM per process).

Run a scenario by hand with ``xvfb-run -a python tests/test_fiji_bridge_gui.py <name>``.
Also holds the PyImageJ/Fiji test, which runs only where FIJI_DIR points at a real Fiji.app.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fiji_bridge import locate  # noqa: E402

XVFB = shutil.which("xvfb-run")
needs_java = pytest.mark.skipif(
    locate.find_java() is None or locate.find_ij_jar() is None,
    reason="needs Java and /usr/share/java/ij.jar (apt-get install default-jre libij-java)")
needs_xvfb = pytest.mark.skipif(XVFB is None, reason="xvfb-run not installed (apt-get install xvfb xauth)")


def _xvfb(scenario: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="xcb")
    start = time.monotonic()
    proc = subprocess.run([XVFB, "-a", "-s", "-screen 0 1280x1024x24", sys.executable, __file__, scenario],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    proc.elapsed = time.monotonic() - start  # type: ignore[attr-defined]
    return proc


def _check(proc: subprocess.CompletedProcess, marker: str) -> None:
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert marker in proc.stdout, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------- scenarios
def scenario_imagej_commands() -> None:
    """IJ.run filters, show, Orthogonal Views, then a clean exit."""
    import numpy as np

    import fiji_bridge
    from fiji_bridge.jvm import jclass

    s = fiji_bridge.connect("imagej")
    assert not s.headless
    rng = np.random.default_rng(0)
    vol = np.zeros((9, 32, 32), np.float32)
    vol[4, 16, 16] = 1000.0
    imp = s.push(vol + rng.random(vol.shape, dtype=np.float32), voxel_size=(2, 0.5, 0.5), title="cmds")
    IJ = jclass("ij.IJ")
    IJ.run(imp, "Gaussian Blur 3D...", "x=2 y=2 z=1")
    blurred = s.pull(imp).data
    assert blurred.max() < 500 and abs(blurred.sum() - (vol.sum() + 0.5 * vol.size)) / vol.sum() < 0.2
    s.show(imp)
    s.push(np.ones((6, 24, 24), np.uint16), title="left-open", show=True)
    assert jclass("ij.WindowManager").getImageCount() == 2
    ov = s.orthogonal_views(imp)
    assert ov is not None and jclass("ij.plugin.Orthogonal_Views").getInstance() is not None
    titles = [str(t) for t in jclass("ij.WindowManager").getImageTitles()]
    assert any(t.startswith("XZ") for t in titles) and any(t.startswith("YZ") for t in titles), titles
    assert s.run_macro('return "" + nImages;') == str(len(titles))
    # both stack windows and Orthogonal Views are left open: the atexit shutdown must not hang
    print("SCENARIO-OK")


def scenario_qt_and_imagej() -> None:
    """A Qt window and an ImageJ window in one process; both closed cleanly."""
    import numpy as np
    from PySide6.QtWidgets import QApplication, QLabel

    import fiji_bridge
    from fiji_bridge.jvm import jclass

    app = QApplication([])
    label = QLabel("isoapp beside ImageJ")
    label.show()
    app.processEvents()
    s = fiji_bridge.connect("imagej")
    imp = s.push(np.random.default_rng(1).random((4, 64, 64), dtype=np.float32), title="beside-qt", show=True)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)
    assert label.isVisible() and imp.getWindow().isShowing()
    assert s.pull("beside-qt").shape == (4, 64, 64)
    s.orthogonal_views(imp)
    s.close()
    assert jclass("ij.plugin.Orthogonal_Views").getInstance() is None
    assert imp.getWindow() is None or not imp.getWindow().isShowing()
    label.close()
    app.processEvents()
    assert not jclass("java.awt.Frame").getFrames() or all(
        not f.isDisplayable() for f in jclass("java.awt.Frame").getFrames())
    print("SCENARIO-OK")


def scenario_cli_push() -> None:
    """``isoapp fiji push FILE --timeout`` shows the stack and returns 0."""
    import tempfile

    import numpy as np

    from isoapp.cli import main
    from isoapp.core.volume import Volume
    from isoapp.data.io import write_volume

    path = write_volume(Volume(np.ones((3, 8, 8), np.float32), voxel_size=(2, 0.3, 0.3), name="p"),
                        Path(tempfile.mkdtemp()) / "p.tif")
    assert main(["fiji", "push", str(path), "--timeout", "1"]) == 0
    print("SCENARIO-OK")


def scenario_cli_push_bioformats() -> None:
    """``isoapp fiji push cells.ics``: Bio-Formats reads the file in the JVM that then shows it."""
    import tempfile

    import numpy as np

    from tests.test_bioformats_reader import write_ics

    arr = np.arange(2 * 3 * 8 * 9, dtype=np.uint16).reshape(2, 3, 8, 9)
    header = write_ics(Path(tempfile.mkdtemp()) / "cells", arr, (1.5, 0.2, 0.2))
    from isoapp.cli import main

    assert main(["fiji", "push", str(header), "--timeout", "1"]) == 0
    print("SCENARIO-OK")


# ---------------------------------------------------------------------------- tests
@needs_java
@needs_xvfb
def test_imagej_commands_orthogonal_views_and_prompt_exit_under_xvfb():
    proc = _xvfb("imagej_commands", timeout=90)
    _check(proc, "SCENARIO-OK")
    assert proc.elapsed < 60, f"exit took too long ({proc.elapsed:.1f} s)"  # type: ignore[attr-defined]


@needs_java
@needs_xvfb
def test_imagej_window_beside_qt_window():
    pytest.importorskip("PySide6")
    _check(_xvfb("qt_and_imagej"), "SCENARIO-OK")


@needs_java
@needs_xvfb
def test_cli_push_shows_the_stack():
    proc = _xvfb("cli_push")
    _check(proc, "SCENARIO-OK")
    assert "opened p: ZYX (3, 8, 8)" in proc.stdout


@needs_java
@needs_xvfb
def test_cli_push_reads_a_bioformats_file_then_shows_it():
    if locate.find_bioformats_jar() is None:
        pytest.skip("bioformats_package.jar not installed: run python installer/bioformats_jar.py")
    proc = _xvfb("cli_push_bioformats")
    _check(proc, "SCENARIO-OK")
    assert "opened cells: CZYX (2, 3, 8, 9)" in proc.stdout


@pytest.mark.skipif(not os.environ.get("FIJI_DIR"), reason="FIJI_DIR not set: the user's Fiji.app is not on this machine")
def test_pyimagej_fiji_gateway():
    code = """
import numpy as np, fiji_bridge
s = fiji_bridge.connect("fiji", headless=True)
assert s.backend == "fiji" and s.gateway is not None
vol = s.pull(s.push(np.arange(60, dtype=np.float32).reshape(3, 4, 5), voxel_size=(2, 0.5, 0.5)))
assert vol.voxel_size == (2.0, 0.5, 0.5) and float(vol.data.sum()) == 1770.0
print("FIJI-OK", s.gateway.getVersion())
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    _check(proc, "FIJI-OK")


if __name__ == "__main__":
    globals()[f"scenario_{sys.argv[1]}"]()
