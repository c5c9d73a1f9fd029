"""napari viewer tests of the isoapp plugin; run by tests/test_napari.py under Xvfb (napari needs OpenGL).

Not collected by the main suite (no ``test_`` prefix): run by hand with
``xvfb-run -a python -m pytest -q -p no:cacheprovider tests/napari_cases.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")
pytest.importorskip("napari")

MANIFEST = Path(__file__).resolve().parents[1] / "isoapp" / "napari" / "napari.yaml"
# the project's shared real data sits beside the checkout (../shared/data), as CI lays it out
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei_aniso_4um.tif"


@pytest.fixture
def widget(make_napari_viewer):
    pm = npe2.PluginManager.instance()
    if "isoapp" not in pm._manifests:  # the checkout may not be the installed distribution
        pm.register(npe2.PluginManifest.from_file(MANIFEST))
    viewer = make_napari_viewer()
    viewer.open_sample("isoapp", "noisy_nuclei")
    _, w = viewer.window.add_plugin_dock_widget("isoapp", "Isotropic restoration")
    return viewer, w


def _wait(qtbot, w, timeout=300):
    qtbot.waitUntil(lambda: w.worker is None, timeout=timeout * 1000)


def test_sample_restored_with_the_right_scale(widget, qtbot):
    viewer, w = widget
    src = viewer.layers["noisy nuclei (z x4)"]
    assert w.layer.value is src and w.factor.value == pytest.approx(4.0)
    assert "isonet" in w.method.choices and not w.psf_kind.native.isHidden()
    w.method.value = "linear"
    assert w.psf_kind.native.isHidden()  # linear uses no PSF
    w.run()
    _wait(qtbot, w)
    out = w.restored
    assert out is not None and out.data.shape == ((src.data.shape[0] - 1) * 4 + 1, *src.data.shape[1:])
    np.testing.assert_allclose(out.scale, (src.scale[0] / 4, src.scale[1], src.scale[2]))
    np.testing.assert_allclose(out.data[::4], src.data, atol=1e-4 * float(np.ptp(src.data)))
    assert w.progress.value() == w.progress.maximum()


def test_isonet_runs_and_cancel_stops_it(widget, qtbot):
    viewer, w = widget
    w.method.value = "isonet"
    w.psf_kind.value = "gaussian"
    w.psf_fwhm.value = (1.6, 0.4, 0.4)
    w.steps.value = 4
    w.run()
    _wait(qtbot, w)
    assert w.restored is not None and "isonet" in w.restored.name, w.status.text()
    n = len(viewer.layers)
    w.restored = None
    w.steps.value = 100_000
    w.run()
    qtbot.waitUntil(lambda: w.progress.maximum() > 1, timeout=120_000)  # training has started
    w.cancel()
    _wait(qtbot, w, timeout=120)
    assert w.status.text() == "cancelled" and w.restored is None and len(viewer.layers) == n


def test_bad_layer_and_factor_are_refused_in_the_status_line(widget):
    viewer, w = widget
    viewer.add_image(np.zeros((16, 16), np.float32), name="flat")
    w.reset_choices()
    w.layer.value = viewer.layers["flat"]
    w.run()
    assert w.worker is None and "3D" in w.status.text()
    viewer.add_image(np.zeros((5, 16, 16), np.float32), name="uncalibrated")
    w.reset_choices()
    w.layer.value = viewer.layers["uncalibrated"]
    assert w.factor.value == 1.0
    w.run()
    assert w.worker is None and "factor is 1" in w.status.text()


@pytest.mark.skipif(not REAL.exists(), reason="the shared real data is not on this machine")
def test_real_stack_from_shared_data(widget, qtbot):
    from isoapp.data.io import read_volume

    viewer, w = widget
    vol = read_volume(REAL)
    src = viewer.add_image(vol.data, name="real", scale=vol.voxel_size)
    w.reset_choices()
    w.layer.value = src
    F = vol.voxel_size[0] / (0.5 * (vol.voxel_size[1] + vol.voxel_size[2]))
    assert w.current_factor() == pytest.approx(F)
    w.method.value = "linear"
    t = time.time()
    w.run()
    _wait(qtbot, w)
    assert w.restored.data.shape[0] == int(np.floor((vol.shape[0] - 1) * F + 1e-9)) + 1, time.time() - t
    np.testing.assert_allclose(w.restored.scale, (vol.voxel_size[0] / F, *vol.voxel_size[1:]))


def test_optical_psf_from_the_optics_line(widget, qtbot):
    viewer, w = widget
    w.method.value = "rl"
    w.psf_kind.value = "optical"
    assert not w.psf_optics.native.isHidden() and w.psf_fwhm.native.isHidden()
    n = len(viewer.layers)
    w.psf_optics.value = "widefield,na=1.0"  # no wavelength: refused in the status line, nothing started
    w.run()
    assert w.worker is None and "needs wavelength=" in w.status.text() and len(viewer.layers) == n
    w.psf_optics.value = "widefield,na=1.0,wavelength=0.52,n=1.33"
    w.run()
    _wait(qtbot, w)
    assert w.restored is not None and "rl" in w.restored.name, w.status.text()
