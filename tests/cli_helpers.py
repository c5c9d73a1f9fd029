"""Helpers for tests that run the real command line in child processes (imported by name; tests/ is on
pytest's import path)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
#: the environment of a child ``python -m isoapp``: this checkout first, one thread
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}


def write_stack(path: Path, shape=(9, 24, 24), dz=0.8, dxy=0.2) -> Path:
    """A small calibrated float32 ImageJ TIFF of random values."""
    data = np.random.default_rng(0).random(shape, dtype=np.float32)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / dxy, 1 / dxy),
                     metadata={"spacing": dz, "unit": "micron", "axes": "ZYX"})
    return path
