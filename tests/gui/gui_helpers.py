"""Plain helpers for the GUI tests (fixtures and the shared header: tests/gui/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def set_tiny_run(window, steps: int, preview_every: int = 0, method: str = "isonet") -> None:
    mp = window.method_panel
    mp.set_method(method)
    mp.preset.setCurrentText("fast")
    mp.steps.setValue(steps)
    mp.preview_every.setValue(preview_every)
    mp.device.setCurrentText("cpu")
    mp.params.setText(TINY_PARAMS if method == "isonet" else "")
