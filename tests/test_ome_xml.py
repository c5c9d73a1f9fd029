"""OME-XML calibration of OME-TIFF files (parsed by ome-types), on real files with hand-made OME-XML."""

from __future__ import annotations

import logging

import numpy as np
import tifffile

from isoapp.data.io import read_volume

NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def _pixels(i: int, attrs: str) -> str:
    return (f'<Image ID="Image:{i}" Name="s{i}"><Pixels ID="Pixels:{i}" DimensionOrder="XYZCT" Type="uint16" '
            f'SizeX="8" SizeY="6" SizeZ="4" SizeC="1" SizeT="1" {attrs}>'
            f'<Channel ID="Channel:{i}:0" SamplesPerPixel="1"/><TiffData IFD="{4 * i}" PlaneCount="4"/>'
            '</Pixels></Image>')


def _write(path, images: list[str]) -> None:
    xml = f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{NS}">' + "".join(images) + "</OME>"
    data = np.arange(len(images) * 4 * 6 * 8, dtype=np.uint16).reshape(len(images) * 4, 6, 8)
    tifffile.imwrite(path, data, description=xml, photometric="minisblack", metadata=None)


def test_units_and_series_index(tmp_path):
    path = tmp_path / "two.ome.tif"
    _write(path, [
        _pixels(0, 'PhysicalSizeX="0.2" PhysicalSizeY="0.2" PhysicalSizeZ="1.5"'),  # default unit µm
        _pixels(1, 'PhysicalSizeX="1300" PhysicalSizeXUnit="&#197;" PhysicalSizeY="130" PhysicalSizeYUnit="nm" '
                   'PhysicalSizeZ="0.001" PhysicalSizeZUnit="mm"'),
    ])
    v0 = read_volume(path)
    assert v0.voxel_size == (1.5, 0.2, 0.2) and v0.metadata["format"] == "ome-tiff"
    v1 = read_volume(path, dataset="1")
    assert v1.voxel_size == (1.0, 0.13, 0.13)


def test_unparsable_value_is_ignored_with_a_warning(tmp_path, caplog):
    path = tmp_path / "bad.ome.tif"
    _write(path, [_pixels(0, 'PhysicalSizeX="abc" PhysicalSizeY="0.2" PhysicalSizeZ="1.5"')])
    with caplog.at_level(logging.WARNING, logger="isoapp"):
        vol = read_volume(path)
    assert vol.shape == (4, 6, 8)
    assert any("OME metadata cannot be parsed" in r.getMessage() for r in caplog.records)
