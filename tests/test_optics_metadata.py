"""Optics from the file's OME metadata (``--psf-optics metadata``), read by ome-types and by real Bio-Formats."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
from cli_helpers import ENV, write_stack

from isoapp.core.errors import ConfigError
from isoapp.data.io import read_volume
from isoapp.physics.optics import optics_from_metadata


def _ome_tiff(path, mode="WideField", na=1.0, immersion="Water", emission=520):
    from ome_types import model as m
    from ome_types import to_xml

    ch = m.Channel(id="Channel:0:0", acquisition_mode=mode, emission_wavelength=emission,
                   emission_wavelength_unit="nm", samples_per_pixel=1)
    pixels = m.Pixels(id="Pixels:0", dimension_order="XYZCT", type="uint16", size_x=32, size_y=32, size_z=9,
                      size_c=1, size_t=1, physical_size_x=0.1, physical_size_y=0.1, physical_size_z=0.4,
                      channels=[ch], tiff_data_blocks=[m.TiffData(plane_count=9)])
    ome = m.OME(instruments=[m.Instrument(id="Instrument:0", objectives=[
        m.Objective(id="Objective:0", lens_na=na, immersion=immersion)])],
        images=[m.Image(id="Image:0", objective_settings=m.ObjectiveSettings(id="Objective:0"), pixels=pixels)])
    data = (np.random.default_rng(0).random((9, 32, 32)) * 1000).astype(np.uint16)
    tifffile.imwrite(path, data, description=to_xml(ome).encode(), metadata=None)
    return path


def test_ome_tiff_optics_become_a_widefield_psf_spec(tmp_path):
    v = read_volume(_ome_tiff(tmp_path / "wf.ome.tif"))
    assert optics_from_metadata(v.metadata["optics"]) == {"kind": "widefield", "na": 1.0, "wavelength_um": 0.52,
                                                          "refractive_index": 1.333}


def test_bioformats_reads_the_same_optics(tmp_path):
    pytest.importorskip("jpype")
    from fiji_bridge.bioformats import read

    try:
        raw = read(_ome_tiff(tmp_path / "wf.ome.tif", mode="LaserScanningConfocalMicroscopy", na=1.4,
                             immersion="Oil"))
    except Exception as exc:  # noqa: BLE001 - the bridge says why Java/Bio-Formats cannot start here
        pytest.skip(f"Bio-Formats unavailable: {exc}")
    opt = optics_from_metadata(raw.metadata["optics"])
    assert opt["kind"] == "confocal" and opt["na"] == pytest.approx(1.4) and opt["refractive_index"] == 1.515


@pytest.mark.parametrize("md,words", [
    ({"acquisition_mode": "WideField", "lens_na": 1.4, "immersion": "Air", "emission_um": 0.52}, "below the refractive"),
    ({"acquisition_mode": "WideField", "lens_na": 1.0, "immersion": "Water"}, "emission wavelength"),
    ({"lens_na": 1.0, "immersion": "Water", "emission_um": 0.52}, "acquisition mode")])
def test_metadata_that_makes_no_psf_says_what_to_give(md, words):
    with pytest.raises(ConfigError, match=words):
        optics_from_metadata(md)


def test_cli_uses_the_files_optics_or_says_in_one_line_that_it_has_none(tmp_path):
    src = _ome_tiff(tmp_path / "wf.ome.tif")
    p = subprocess.run([sys.executable, "-m", "isoapp", "restore", str(src), "-o", str(tmp_path / "out.tif"),
                        "--method", "deconv", "--psf-optics", "metadata", "--check", "none"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "optics from wf's metadata: kind=widefield, na=1" in p.stderr
    plain = write_stack(tmp_path / "plain.tif")
    p = subprocess.run([sys.executable, "-m", "isoapp", "restore", str(plain), "-o", str(tmp_path / "o2.tif"),
                        "--method", "deconv", "--psf-optics", "metadata"], capture_output=True, text=True, env=ENV,
                       timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("isoapp: error:") and "metadata does not give" in p.stderr
