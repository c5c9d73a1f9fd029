"""The napari plugin: manifest, no isoapp.gui import, sample data; the viewer cases run under Xvfb."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
npe2 = pytest.importorskip("npe2")

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "isoapp" / "napari" / "napari.yaml"
XVFB = shutil.which("xvfb-run")


def test_npe2_validate_passes():
    r = subprocess.run([sys.executable, "-m", "npe2", "validate", "--imports", str(MANIFEST)], capture_output=True,
                       text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and "valid" in r.stdout.lower(), r.stdout + r.stderr


def test_plugin_never_imports_isoapp_gui_or_pyside_directly():
    code = ("import sys, isoapp.napari._widget, isoapp.napari._sample\n"
            "print(sorted(m for m in sys.modules if m.startswith('isoapp.gui')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"})
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    import ast

    for src in (ROOT / "isoapp" / "napari").glob("*.py"):
        for node in ast.walk(ast.parse(src.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:  # napari brings its own Qt binding: qtpy only
                assert not name.startswith(("PySide6", "PyQt", "isoapp.gui", "..gui")), (src.name, name)


def test_sample_is_a_noisy_anisotropic_phantom():
    from isoapp.napari._sample import noisy_nuclei

    [(data, meta, kind)] = noisy_nuclei()
    assert kind == "image" and data.ndim == 3
    sz, sy, sx = meta["scale"]
    assert sz / sy == pytest.approx(4.0) and sy == sx
    assert np.std(np.diff(data[:, 60:68, 60:68], axis=2)) > 0  # noise: neighbouring pixels differ


def test_factor_from_scale():
    from isoapp.napari._widget import factor_from_scale

    assert factor_from_scale((2.0, 0.5, 0.5)) == 4.0
    assert factor_from_scale((1, 3.0, 0.5, 0.5)) == 6.0


@pytest.mark.skipif(XVFB is None, reason="xvfb-run not installed (apt-get install xvfb xauth)")
def test_viewer_cases_under_xvfb():
    """tests/napari_cases.py with make_napari_viewer, in its own process under Xvfb (napari needs OpenGL)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "xcb", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([XVFB, "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "-m", "pytest", "-q",
                        "-p", "no:cacheprovider", str(ROOT / "tests" / "napari_cases.py")],
                       capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and "failed" not in r.stdout, r.stdout[-3000:]
