"""Opening a stack whose OME metadata names the optics fills the GUI's Microscope model (real Qt, offscreen)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_optics_metadata import _ome_tiff  # noqa: E402


def test_microscope_model_is_filled_from_the_files_metadata(window, tmp_path):
    p = window.method_panel
    p.na.setValue(0.3)
    window.open_path(_ome_tiff(tmp_path / "conf.ome.tif", mode="LaserScanningConfocalMicroscopy", na=1.4,
                               immersion="Oil", emission=600))
    assert (p.optics_kind.currentText(), p.na.value(), p.wavelength.value(), p.ri.value()) == \
        ("confocal", 1.4, 0.6, 1.515)
    p.na.setValue(0.3)  # a stack whose metadata does not name the optics leaves the user's values alone
    window.open_path(_ome_tiff(tmp_path / "bare.ome.tif", mode=None, na=1.0, emission=None))
    assert p.na.value() == 0.3
