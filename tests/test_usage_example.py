"""The library example in docs/USAGE.md runs as written (with fewer training steps)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _example() -> str:
    text = (ROOT / "docs" / "USAGE.md").read_text(encoding="utf-8")
    section = text[text.index("## Library\n"):text.index("## Desktop app")]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_usage_library_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("bioimageio.spec")
    from isoapp.data.io import read_volume, write_volume
    from isoapp.quality.phantoms import make_phantom

    code = _example()
    assert len(code.strip().splitlines()) <= 10, "the example promises ten lines"
    fast = 'Restorer("isonet", preset="fast")'
    assert fast in code
    code = code.replace(fast, 'Restorer("isonet", preset="fast", steps=8, device="cpu")')  # CI: a tiny training
    ph = make_phantom("nuclei", (33, 48, 48), factor=4, seed=0, noise=True, voxel_um=0.2)
    write_volume(ph.degraded, tmp_path / "stack.tif")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "USAGE.md", "exec"), {})

    vol = read_volume(tmp_path / "stack.tif")
    iso = read_volume(tmp_path / "stack_iso.tif")
    zarr = read_volume(tmp_path / "stack_iso.zarr")
    assert iso.shape == zarr.shape == (33, 48, 48)
    assert iso.voxel_size == pytest.approx((0.2, 0.2, 0.2), rel=1e-3)
    assert zarr.dtype == np.uint16 and iso.dtype == np.float32
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "stack_isonet.zip").is_file()
    # the in-memory and the block-wise result are the same restoration (uint16 keeps the input's units)
    a, b = np.asarray(iso.data), np.asarray(zarr.data, np.float32)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
    assert vol.shape == (9, 48, 48)
    assert "psnr_gain_db" in capsys.readouterr().out
